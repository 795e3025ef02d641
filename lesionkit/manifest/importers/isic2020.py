"""ISIC 2020: ``ISIC_2020_Training_GroundTruth_v2.csv`` (with lesion_id) or the Kaggle ``train.csv`` layout.

Classes benign / malignant from ``target``; ``diagnosis`` keeps the fine diagnosis. Images
(``<image_name>.jpg``) are optional with ``--allow-missing-images`` (metadata-only manifest for split planning).
"""

from __future__ import annotations

import pandas as pd

from lesionkit.errors import InputError
from lesionkit.manifest.importers import ImportOptions, ImportResult
from lesionkit.manifest.importers._common import (
    add_image_sizes, attach_images, check_unique, find_file, normalise_sex, normalise_site, read_csv, to_float,
)

NAME = "isic2020"
HELP = "ISIC_2020_Training_GroundTruth_v2.csv or Kaggle train.csv (+ train/ or jpeg/train/ images); benign/malignant"
CLASSES = ["benign", "malignant"]
COLUMNS = ["image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge", "diagnosis", "target"]
IMAGE_DIRS = ["train", "jpeg/train", "ISIC_2020_Training_JPEG", "images"]


def build(opts: ImportOptions) -> ImportResult:
    csv = find_file(opts.source, ["ISIC_2020_Training_GroundTruth_v2.csv", "ISIC_2020_Training_GroundTruth.csv", "train.csv"],
                    "ISIC 2020 ground-truth CSV", NAME)
    raw = read_csv(csv, COLUMNS, NAME)
    check_unique(raw["image_name"], csv, "image_name")
    target = pd.to_numeric(raw["target"], errors="coerce")
    bad = target.notna() & ~target.isin([0, 1]) | (raw["target"].notna() & target.isna())
    if bad.any():
        raise InputError(f"{csv}: column target must be 0 or 1; found {raw['target'][bad].unique()[:5].tolist()}",
                         hint="check that this is the ISIC 2020 training ground truth")
    df = pd.DataFrame(
        {
            "sample_id": raw["image_name"].str.strip(),
            "source": NAME,
            "patient_id": raw["patient_id"].str.strip(),
            "lesion_id": raw["lesion_id"].str.strip() if "lesion_id" in raw else pd.NA,
            "label": target.astype("Int16"),
            "diagnosis": raw["diagnosis"].str.strip().str.lower(),
            "malignant": target.astype("Int8"),
            "age_approx": to_float(raw["age_approx"]),
            "sex": normalise_sex(raw["sex"]),
            "anatom_site": normalise_site(raw["anatom_site_general_challenge"]),
        }
    )
    if "benign_malignant" in raw:
        df["benign_malignant"] = raw["benign_malignant"].str.strip()
    dirs = opts.images or [csv.parent / d for d in IMAGE_DIRS]
    df = attach_images(df, df["sample_id"], dirs, NAME, opts.allow_missing_images)
    df = add_image_sizes(df, opts.read_image_size)
    return ImportResult(df=df, classes=CLASSES, inputs=[csv, *[d for d in dirs if d.is_dir()]],
                        notes={"binary_target": "malignant = target", "group_by": "patient_id"})
