#!/usr/bin/env bash
# HAM10000: manifest -> validate (decode every image) -> 5 lesion-grouped folds + 20% test; and the official
# DermaMNIST / DermaMNIST-C splits imported with their leakage report.
set -euo pipefail
HAM=${HAM:-../shared/data/ham10000}        # folder with HAM10000_metadata.csv and images/
WORK=${WORK:-work/ham10000}
mkdir -p "$WORK"
lesionkit manifest build "$HAM" --format ham10000 --out "$WORK/manifest.parquet" --overwrite
lesionkit manifest validate "$WORK/manifest.parquet" --check-files --workers 2
lesionkit split "$WORK/manifest.parquet" --out "$WORK/splits.json" --folds 5 --test-frac 0.2 --seed 0 --overwrite
lesionkit split "$WORK/manifest.parquet" --out "$WORK/dermamnist_official.json" --overwrite \
    --from-file "$HAM/splits/dermamnist_official.csv"
lesionkit split "$WORK/manifest.parquet" --out "$WORK/dermamnist_c.json" --overwrite \
    --from-file "$HAM/splits/dermamnist_c_corrected.csv"
