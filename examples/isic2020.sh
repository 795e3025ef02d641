#!/usr/bin/env bash
# ISIC 2020 metadata (images optional): patient-grouped folds stratified by the malignant target.
set -euo pipefail
ISIC2020=${ISIC2020:-../shared/data/isic2020}   # folder with ISIC_2020_Training_GroundTruth_v2.csv (+ train/ images)
WORK=${WORK:-work/isic2020}
mkdir -p "$WORK"
lesionkit manifest build "$ISIC2020" --format isic2020 --out "$WORK/manifest.parquet" --allow-missing-images --overwrite
lesionkit manifest show "$WORK/manifest.parquet"
lesionkit split "$WORK/manifest.parquet" --out "$WORK/splits.json" --folds 5 --test-frac 0.2 --stratify malignant --overwrite
