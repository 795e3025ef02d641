"""ISIC 2018 Task 3 and ISIC 2019: one-hot ground-truth CSV (``image`` + one 0/1 column per class) + images.

The same layout serves ``--format isic2018`` (MEL, NV, BCC, AKIEC, BKL, DF, VASC) and ``--format isic2019``
(MEL, NV, BCC, AK, BKL, DF, VASC, SCC, UNK). Classes are the class columns lowercased, in file order; the
2019 ``UNK`` class is dropped when no row has it (the training ground truth has none). Every row must have
exactly one 1. ``malignant`` = mel / bcc / akiec (2018) or ak (2019) / scc; ``UNK`` rows are <NA>. Other
columns (e.g. the 2019 test set's ``score_weight``) are kept as extra columns.

``--metadata`` (or, when absent, an official metadata file beside the CSV) adds age / sex / site / lesion_id:
the 2019 ``ISIC_2019_Training_Metadata.csv`` layout (image, age_approx, anatom_site_general, lesion_id, sex)
or the 2018 ``ISIC2018_Task3_*_LesionGroupings.csv`` (image, lesion_id, diagnosis_confirm_type). The
official split is taken from the ground-truth file name (``..._Training_...`` -> train, ``Validation`` -> val,
``Test`` -> test). Images ``<image>.jpg`` (2019 also ``<image>_downsampled.jpg``) are looked up beside the CSV.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from lesionkit.console import info
from lesionkit.errors import InputError
from lesionkit.manifest.importers import ImportOptions, ImportResult
from lesionkit.manifest.importers._common import (
    add_image_sizes, attach_images, check_unique, find_file, index_metadata, map_labels, normalise_sex, normalise_site, read_csv,
    require_columns, to_float,
)

NAMES = ("isic2018", "isic2019")
NAME = "isic2018"  # the module also serves "isic2019"; messages use opts.format
HELP = "one-hot ground-truth CSV (image + class columns) + images; --format isic2018 (7 classes) or isic2019 (8-9 classes)"
_HELP = {
    "isic2018": "ISIC2018_Task3_{Training,Validation,Test}_GroundTruth.csv (image + one-hot MEL NV BCC AKIEC BKL DF VASC) + "
                "ISIC2018_Task3_*_Input/ images; --metadata LesionGroupings.csv adds lesion_id",
    "isic2019": "ISIC_2019_{Training,Test}_GroundTruth.csv (image + one-hot MEL NV BCC AK BKL DF VASC SCC UNK; unk dropped if unused) "
                "+ ISIC_2019_*_Input/ images; --metadata ISIC_2019_Training_Metadata.csv adds age/sex/site/lesion_id",
}
# the class columns, in the official files' order
CLASS_COLUMNS = {
    "isic2018": ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"],
    "isic2019": ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"],
}
CLASSES = {fmt: [c.lower() for c in cols] for fmt, cols in CLASS_COLUMNS.items()}
OPTIONAL_CLASS_COLUMNS = {"UNK"}  # dropped from the class list when no row has it
MALIGNANT = {"mel", "bcc", "akiec", "ak", "scc"}
GT_FILES = {
    "isic2018": [
        *(f"ISIC2018_Task3_{s}_GroundTruth.csv" for s in ("Training", "Validation", "Test")),
        *(f"ISIC2018_Task3_{s}_GroundTruth/ISIC2018_Task3_{s}_GroundTruth.csv" for s in ("Training", "Validation", "Test")),
    ],
    "isic2019": ["ISIC_2019_Training_GroundTruth.csv", "ISIC_2019_Test_GroundTruth.csv"],
}
META_FILES = {
    "isic2018": [
        *(f"ISIC2018_Task3_{s}_LesionGroupings.csv" for s in ("Training", "Validation", "Test")),
        *(f"ISIC2018_Task3_{s}_GroundTruth/ISIC2018_Task3_{s}_LesionGroupings.csv" for s in ("Training", "Validation", "Test")),
    ],
    "isic2019": ["ISIC_2019_Training_Metadata.csv", "ISIC_2019_Test_Metadata.csv"],
}
IMAGE_DIRS = {
    "isic2018": [f"ISIC2018_Task3_{s}_Input" for s in ("Training", "Validation", "Test")],
    "isic2019": ["ISIC_2019_Training_Input", "ISIC_2019_Test_Input"],
}
# metadata column -> manifest column
META_MAP = {"age_approx": "age_approx", "sex": "sex", "anatom_site_general": "anatom_site",
            "lesion_id": "lesion_id", "diagnosis_confirm_type": "dx_type"}
_SPLIT_RE = re.compile(r"_(Training|Validation|Test)_", re.IGNORECASE)
_SPLIT_OF = {"training": "train", "validation": "val", "test": "test"}


def help_for(name: str) -> str:
    return _HELP.get(name, HELP)


def _format(opts: ImportOptions) -> str:
    if opts.format not in NAMES:
        raise InputError(f"isic_onehot serves --format {' / '.join(NAMES)}, not {opts.format!r}")
    return opts.format


def _split_from_name(path: Path) -> str | None:
    m = _SPLIT_RE.search(path.name)
    return _SPLIT_OF[m.group(1).lower()] if m else None


def _one_hot(raw: pd.DataFrame, columns: list[str], path: Path, fmt: str) -> pd.DataFrame:
    """The class columns as 0/1 integers; non-0/1 values and rows without exactly one 1 are errors."""
    num = raw[columns].apply(lambda s: pd.to_numeric(s.str.strip(), errors="coerce"))
    bad_value = (num.isna() | ~num.isin([0, 1])).any(axis=1)
    if bad_value.any():
        ids = raw.loc[bad_value, "image"].head(5).tolist()
        values = sorted({v for c in columns for v in raw.loc[bad_value, c].fillna("<empty>").tolist()} - {"0", "1", "0.0", "1.0"})
        raise InputError(
            f"--format {fmt}: {path}: class columns must hold 0 or 1; {int(bad_value.sum())} row(s) do not "
            f"(values {', '.join(map(repr, values[:5]))}; e.g. {', '.join(ids)})",
            hint="this importer reads hard one-hot labels; soft or missing labels are not supported",
        )
    num = num.astype(int)
    ones = num.sum(axis=1)
    wrong = ones != 1
    if wrong.any():
        ids = raw.loc[wrong, "image"].tolist()
        kinds = ones[wrong].value_counts().sort_index()
        raise InputError(
            f"--format {fmt}: {path}: {len(ids)} row(s) do not have exactly one class set "
            f"({', '.join(f'{v} row(s) with {k}' for k, v in kinds.items())}): {', '.join(ids[:10])}"
            + (" ..." if len(ids) > 10 else ""),
            hint="each image must belong to exactly one of " + ", ".join(columns),
        )
    return num


def _metadata(df: pd.DataFrame, path: Path, fmt: str) -> pd.DataFrame:
    meta = read_csv(path, ["image"], fmt)
    known = [c for c in META_MAP if c in meta.columns]
    if not known:
        require_columns(meta, ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"], path, fmt)
    meta, _ = index_metadata(meta, "image", df["sample_id"], path, "the ground truth",
                             hint="pass the metadata file of the same ISIC release and set (Training / Test)")
    out = df.copy()
    for col in known:
        values = out["sample_id"].map(meta[col])
        target = META_MAP[col]
        if target == "age_approx":
            out[target] = to_float(values)
        elif target == "sex":
            out[target] = normalise_sex(values)
        elif target == "anatom_site":
            out[target] = normalise_site(values)
        else:
            out[target] = values.astype("string").str.strip()
    return out


def build(opts: ImportOptions) -> ImportResult:
    fmt = _format(opts)
    csv = find_file(opts.source, GT_FILES[fmt], f"{fmt} ground-truth CSV", fmt)
    expected = CLASS_COLUMNS[fmt]
    raw = read_csv(csv, ["image", *[c for c in expected if c not in OPTIONAL_CLASS_COLUMNS]], fmt)
    raw["image"] = raw["image"].str.strip()
    check_unique(raw["image"], csv, "image")
    class_cols = [c for c in raw.columns if c in expected]  # file order
    onehot = _one_hot(raw, class_cols, csv, fmt)
    dropped = [c for c in class_cols if c in OPTIONAL_CLASS_COLUMNS and onehot[c].sum() == 0]
    class_cols = [c for c in class_cols if c not in dropped]
    classes = [c.lower() for c in class_cols]
    names = pd.Series(onehot[class_cols].idxmax(axis=1).str.lower(), index=raw.index, dtype="string")

    diagnosis = names
    malignant = names.isin(list(MALIGNANT)).astype("Int8")
    malignant[names == "unk"] = pd.NA
    df = pd.DataFrame(
        {
            "sample_id": raw["image"],
            "source": fmt,
            "label": map_labels(names, classes, csv, "/".join(class_cols)),
            "diagnosis": diagnosis,
            "malignant": malignant,
            "split": _split_from_name(csv),
        }
    )
    for c in raw.columns:
        if c != "image" and c not in expected:
            df[c if c not in df.columns else f"{c}_source"] = raw[c]
    inputs = [csv]

    meta_path = opts.metadata
    if meta_path is None:
        for cand in META_FILES[fmt]:
            p = csv.parent / Path(cand).name
            if p.is_file() and _split_from_name(p) == _split_from_name(csv):
                meta_path = p
                info(f"{fmt}: using metadata {p} (pass --metadata to choose another)")
                break
    if meta_path is not None:
        meta_path = Path(meta_path)
        if not meta_path.is_file():
            raise InputError(f"--format {fmt}: --metadata file not found: {meta_path}",
                             hint="pass the metadata CSV (e.g. ISIC_2019_Training_Metadata.csv) or leave --metadata out")
        df = _metadata(df, meta_path, fmt)
        inputs.append(meta_path)

    # the official zips unpack to sibling folders: <x>_GroundTruth/<csv> beside <x>_Input/
    dirs = opts.images or list(dict.fromkeys(
        [*(base / d for base in (csv.parent, csv.parent.parent) for d in IMAGE_DIRS[fmt]), csv.parent]))
    df = attach_images(df, df["sample_id"], dirs, fmt, opts.allow_missing_images, stem_suffixes=("", "_downsampled"))
    df = add_image_sizes(df, opts.read_image_size)
    notes = {"binary_target": "malignant = " + " | ".join(c for c in classes if c in MALIGNANT)
             + ("; unk = unknown" if "unk" in classes else "")}
    if dropped:
        notes["dropped_classes"] = [c.lower() for c in dropped]
    if "lesion_id" in df and df["lesion_id"].notna().any():
        notes["group_by"] = "lesion_id"
    # the folders the images came from (not all of csv.parent, which may hold much else)
    image_dirs = sorted({Path(p).parent for p in df["image_path"].dropna().tolist()})
    return ImportResult(df=df, classes=classes, inputs=[*inputs, *image_dirs], notes=notes)
