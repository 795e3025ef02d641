#!/usr/bin/env bash
# Fitzpatrick17k metadata (human Fitzpatrick labels; -1 becomes <NA>). Pass IMAGES=folder of <md5hash>.jpg if you have them.
set -euo pipefail
F17K=${F17K:-../shared/data/fitzpatrick17k/fitzpatrick17k.csv}
WORK=${WORK:-work/fitzpatrick17k}
mkdir -p "$WORK"
if [ -n "${IMAGES:-}" ]; then imgs=(--images "$IMAGES"); else imgs=(--allow-missing-images); fi
lesionkit manifest build "$F17K" --format fitzpatrick17k --label-from three_partition_label "${imgs[@]}" \
    --out "$WORK/manifest.parquet" --overwrite
lesionkit manifest show "$WORK/manifest.parquet"
