"""PAD-UFES-20: ``metadata.csv`` (patient_id, lesion_id, age, gender, fitspatrick, region, diagnostic, img_id,
biopsed, diameter_1, diameter_2, ...) + smartphone clinical photos (``images/`` or ``imgs_part_1/2/3``).

Six classes from ``diagnostic`` (lowercased): ack, bcc, mel, nev, scc, sek. ``malignant`` = bcc / mel / scc.
ACK (actinic keratosis) is *precancerous*, not malignant: it is counted as benign (0) in the binary target,
which is a modelling choice — filter or relabel it if your question needs otherwise. ``fitzpatrick`` comes
from the dataset's own column ``fitspatrick`` (sic; floats like ``3.0``; empty = <NA>; it is only recorded
for some, mostly biopsied, lesions). Groups: ``patient_id`` (several lesions per patient) and ``lesion_id``
(several photos per lesion). ``biopsed`` and ``diameter_1``/``diameter_2`` (mm) are kept as extra columns.
"""

from __future__ import annotations

import pandas as pd

from lesionkit.errors import InputError
from lesionkit.manifest.importers import ImportOptions, ImportResult
from lesionkit.manifest.importers._common import (
    add_image_sizes, attach_images, check_unique, find_file, map_labels, normalise_sex, normalise_site, read_csv, to_float,
)
from lesionkit.manifest.importers.fitzpatrick17k import fitzpatrick_type

NAME = "pad_ufes20"
HELP = "PAD-UFES-20 metadata.csv + images/ (or imgs_part_1/2/3); 6 classes (ack precancerous, counted benign), patient/lesion groups"
CLASSES = ["ack", "bcc", "mel", "nev", "scc", "sek"]
MALIGNANT = {"bcc", "mel", "scc"}
COLUMNS = ["patient_id", "lesion_id", "age", "gender", "fitspatrick", "region", "diagnostic", "img_id", "biopsed",
           "diameter_1", "diameter_2"]
IMAGE_DIRS = ["images", "imgs_part_1", "imgs_part_2", "imgs_part_3"]


def _bool(s: pd.Series, path, column: str) -> pd.Series:
    low = s.str.strip().str.lower()
    mapped = low.map({"true": True, "false": False, "1": True, "0": False}, na_action="ignore")
    bad = low.notna() & mapped.isna()
    if bad.any():
        raise InputError(f"{path}: column {column} must be True / False; found {low[bad].unique()[:5].tolist()}",
                         hint="check that this is the PAD-UFES-20 metadata.csv")
    return mapped.astype("boolean")


def build(opts: ImportOptions) -> ImportResult:
    csv = find_file(opts.source, ["metadata.csv", "metadata_rows.csv"], "PAD-UFES-20 metadata.csv", NAME)
    raw = read_csv(csv, COLUMNS, NAME)
    img = raw["img_id"].str.strip()
    if img.isna().any():
        raise InputError(f"{csv}: {int(img.isna().sum())} row(s) have no img_id", hint="every row needs its image file name")
    check_unique(img, csv, "img_id")
    stem = img.str.replace(r"\.[A-Za-z0-9]+$", "", regex=True)
    check_unique(stem, csv, "img_id (without extension)")
    dx = raw["diagnostic"].str.strip().str.lower()
    df = pd.DataFrame(
        {
            "sample_id": stem,
            "source": NAME,
            "patient_id": raw["patient_id"].str.strip(),
            "lesion_id": raw["lesion_id"].str.strip(),
            "label": map_labels(dx, CLASSES, csv, "diagnostic"),
            "diagnosis": dx,
            "malignant": dx.isin(list(MALIGNANT)).astype("Int8").where(dx.notna()),
            "fitzpatrick": fitzpatrick_type(raw["fitspatrick"], stem, csv, "fitspatrick", NAME),
            "age_approx": to_float(raw["age"]),
            "sex": normalise_sex(raw["gender"]),
            "anatom_site": normalise_site(raw["region"]),
            "biopsed": _bool(raw["biopsed"], csv, "biopsed"),
            "diameter_1": to_float(raw["diameter_1"]),
            "diameter_2": to_float(raw["diameter_2"]),
        }
    )
    dirs = opts.images or [csv.parent / d for d in IMAGE_DIRS]
    df = attach_images(df, df["sample_id"], dirs, NAME, opts.allow_missing_images)
    df = add_image_sizes(df, opts.read_image_size)
    return ImportResult(
        df=df, classes=CLASSES, inputs=[csv, *[d for d in dirs if d.is_dir()]],
        notes={"binary_target": "malignant = bcc | mel | scc (ack is precancerous, counted benign)",
               "group_by": "patient_id"},
    )
