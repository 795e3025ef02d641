"""ISIC 2017 Part 3: ``ISIC-2017_{Training,Validation,Test_v2}_Part3_GroundTruth.csv`` + images (+ metadata).

Ground truth has two 0/1 flags per image (``melanoma``, ``seborrheic_keratosis``); an image with neither is a
nevus, so the three classes (alphabetical) are melanoma / nevus / seborrheic_keratosis. A row with both flags
set is contradictory and stops the build. ``split`` is the official train / val / test split (whichever of
the three ground-truth files are present); ``malignant`` = melanoma. The optional
``ISIC-2017_*_Data_metadata.csv`` files add age (``unknown`` -> <NA>) and sex. ISIC 2017 has no patient or
lesion ids, so grouped re-splitting is not possible: use the official split. ``*_superpixels.png`` files in
the image folders are ignored.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lesionkit.console import info
from lesionkit.errors import InputError
from lesionkit.manifest.importers import ImportOptions, ImportResult
from lesionkit.manifest.importers._common import (
    add_image_sizes, attach_images, check_unique, index_metadata, map_labels, normalise_sex, read_csv, to_float,
)

NAME = "isic2017"
HELP = ("folder with ISIC-2017_{Training,Validation,Test_v2}_Part3_GroundTruth.csv (+ _Data_metadata.csv) and "
        "ISIC-2017_*_Data/ images; melanoma / nevus / seborrheic_keratosis, official split")
CLASSES = ["melanoma", "nevus", "seborrheic_keratosis"]
# split -> the token in the official file and folder names
SPLITS = {"train": "Training", "val": "Validation", "test": "Test_v2"}
GT_COLUMNS = ["image_id", "melanoma", "seborrheic_keratosis"]
META_COLUMNS = ["image_id", "age_approximate", "sex"]


def gt_name(split: str) -> str:
    return f"ISIC-2017_{SPLITS[split]}_Part3_GroundTruth.csv"


def meta_name(split: str) -> str:
    return f"ISIC-2017_{SPLITS[split]}_Data_metadata.csv"


def image_dir_name(split: str) -> str:
    return f"ISIC-2017_{SPLITS[split]}_Data"


def _flag(raw: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """A 0/1 ground-truth column ("0.0"/"1.0" in the official files) as booleans; anything else is an error."""
    text = raw[column].str.strip()
    num = pd.to_numeric(text, errors="coerce")
    bad = num.isna() | ~num.isin([0, 1])
    if bad.any():
        ids = raw.loc[bad, "image_id"].head(5).tolist()
        values = text[bad].fillna("<empty>").unique()[:5].tolist()
        raise InputError(
            f"{path}: column {column} must be 0 or 1 in every row; {int(bad.sum())} row(s) are not "
            f"(values {', '.join(map(repr, values))}; e.g. {', '.join(map(str, ids))})",
            hint="check that this is the official ISIC 2017 Part 3 ground truth",
        )
    return num.astype(bool)


def _read_split(folder: Path, split: str) -> tuple[pd.DataFrame, list[Path]]:
    gt_path = folder / gt_name(split)
    gt = read_csv(gt_path, GT_COLUMNS, NAME)
    gt["image_id"] = gt["image_id"].str.strip()
    check_unique(gt["image_id"], gt_path, "image_id")
    mel = _flag(gt, "melanoma", gt_path)
    sk = _flag(gt, "seborrheic_keratosis", gt_path)
    both = mel & sk
    if both.any():
        ids = gt.loc[both, "image_id"].tolist()
        raise InputError(
            f"{gt_path}: {len(ids)} image(s) are flagged both melanoma and seborrheic_keratosis: {', '.join(ids[:10])}"
            + (" ..." if len(ids) > 10 else ""),
            hint="each image has at most one of the two flags (neither = nevus); fix those rows",
        )
    diagnosis = pd.Series("nevus", index=gt.index, dtype="string")
    diagnosis[mel] = "melanoma"
    diagnosis[sk] = "seborrheic_keratosis"
    df = pd.DataFrame({"sample_id": gt["image_id"], "diagnosis": diagnosis, "split": split})
    inputs = [gt_path]

    meta_path = folder / meta_name(split)
    if meta_path.is_file():
        meta = read_csv(meta_path, META_COLUMNS, NAME)
        meta, _ = index_metadata(meta, "image_id", df["sample_id"], meta_path, gt_path.name,
                                 hint=f"is {meta_path.name} from the same ISIC 2017 release?")
        df["age_approx"] = to_float(df["sample_id"].map(meta["age_approximate"]))
        df["sex"] = normalise_sex(df["sample_id"].map(meta["sex"]))
        inputs.append(meta_path)
    return df, inputs


def build(opts: ImportOptions) -> ImportResult:
    folder = Path(opts.source)
    if not folder.exists():
        raise InputError(f"--format {NAME}: source not found: {folder}",
                         hint="pass the folder that holds the ISIC-2017_*_Part3_GroundTruth.csv files")
    if not folder.is_dir():
        raise InputError(f"--format {NAME}: SOURCE must be a folder, got the file {folder}",
                         hint=f"pass the folder that holds it: {folder.parent}")
    present = [s for s in SPLITS if (folder / gt_name(s)).is_file()]
    if not present:
        raise InputError(
            f"--format {NAME}: no ISIC 2017 Part 3 ground truth in {folder} "
            f"(looked for: {', '.join(gt_name(s) for s in SPLITS)})",
            hint="download the Part 3 ground truth from the ISIC 2017 challenge page and put the CSVs in that folder",
        )
    if len(present) < len(SPLITS):
        info(f"isic2017: importing split(s) {', '.join(present)} only "
             f"({', '.join(gt_name(s) for s in SPLITS if s not in present)} not found)")

    parts, inputs = [], []
    for split in present:
        df, used = _read_split(folder, split)
        parts.append(df)
        inputs += used
    df = pd.concat(parts, ignore_index=True)
    check_unique(df["sample_id"], folder, "image_id (across the split files)")
    for col, dtype in (("age_approx", "Float32"), ("sex", pd.CategoricalDtype(["female", "male"]))):
        if col not in df:
            df[col] = pd.Series(pd.NA, index=df.index, dtype=dtype)
        else:
            df[col] = df[col].astype(dtype)

    df["label"] = map_labels(df["diagnosis"], CLASSES, folder, "diagnosis (from melanoma / seborrheic_keratosis)")
    df["malignant"] = (df["diagnosis"] == "melanoma").astype("Int8")
    df["source"] = NAME

    dirs = opts.images or [folder / image_dir_name(s) for s in SPLITS]
    df = attach_images(df, df["sample_id"], dirs, NAME, opts.allow_missing_images)
    df = add_image_sizes(df, opts.read_image_size)
    return ImportResult(
        df=df, classes=CLASSES, inputs=[*inputs, *[d for d in dirs if d.is_dir()]],
        notes={"binary_target": "malignant = melanoma", "split": "official ISIC 2017 train / val / test",
               "group_by": "none (ISIC 2017 has no patient or lesion ids)"},
    )
