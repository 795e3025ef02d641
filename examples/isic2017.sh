#!/usr/bin/env bash
# ISIC 2017 Part 3: three classes with the official train / val / test split.
set -euo pipefail
ISIC2017=${ISIC2017:-../shared/data/isic2017}
WORK=${WORK:-work/isic2017}
mkdir -p "$WORK"
lesionkit manifest build "$ISIC2017" --format isic2017 --out "$WORK/manifest.parquet" --overwrite
lesionkit manifest validate "$WORK/manifest.parquet" --check-files
lesionkit split "$WORK/manifest.parquet" --out "$WORK/official_split.json" --from-column split --overwrite
