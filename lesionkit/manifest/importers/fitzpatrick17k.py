"""Fitzpatrick17k: ``fitzpatrick17k.csv`` (md5hash, fitzpatrick_scale, fitzpatrick_centaur, label,
nine_partition_label, three_partition_label, qc, url, url_alphanum) + optional images ``<md5hash>.jpg``.

``sample_id`` = md5hash. ``fitzpatrick`` = the human ``fitzpatrick_scale`` annotation with the source's
``-1`` (unknown) stored as <NA>; ``fitzpatrick_centaur`` (the second, Centaur Labs annotation) is kept the
same way as an extra Int8 column. Classes come from ``--label-from`` (label: 114 conditions |
nine_partition_label | three_partition_label, the default: benign / malignant / non-neoplastic), sorted; all
three label columns are kept as extra string columns (the fine ``label`` as ``fine_label``, since ``label``
is the class index) and ``diagnosis`` is the fine label. ``malignant`` = three_partition_label == malignant.
The source image URLs are largely dead: without an image folder, build with ``--allow-missing-images``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lesionkit.errors import InputError, UsageError
from lesionkit.manifest.importers import ImportOptions, ImportResult
from lesionkit.manifest.importers._common import add_image_sizes, attach_images, check_unique, find_file, map_labels, read_csv
from lesionkit.manifest.schema import FITZPATRICK_RANGE

NAME = "fitzpatrick17k"
HELP = ("fitzpatrick17k.csv (+ images/<md5hash>.jpg); classes from --label-from label | nine_partition_label | "
        "three_partition_label (default); Fitzpatrick -1 -> <NA>")
LABEL_COLUMNS = ["label", "nine_partition_label", "three_partition_label"]
DEFAULT_LABEL = "three_partition_label"
# the default class list (three_partition_label); the actual list is the sorted values of --label-from
CLASSES = ["benign", "malignant", "non-neoplastic"]
COLUMNS = ["md5hash", "fitzpatrick_scale", "fitzpatrick_centaur", *LABEL_COLUMNS]
OPTIONAL_COLUMNS = ["qc", "url", "url_alphanum"]
IMAGE_DIRS = ["images"]
# extra column names for the label columns (``label`` itself is the class index in a manifest)
EXTRA_NAMES = {"label": "fine_label", "nine_partition_label": "nine_partition_label",
               "three_partition_label": "three_partition_label"}


def fitzpatrick_type(raw: pd.Series, ids: pd.Series, path: Path, column: str, fmt: str) -> pd.Series:
    """Fitzpatrick skin type as Int8 1..6; ``-1`` and empty cells are unknown (<NA>), never kept as -1.

    Integer-valued floats ("3.0") are accepted; anything else (0, 7, 2.5, text) stops the build.
    """
    text = raw.astype("string").str.strip()
    num = pd.to_numeric(text, errors="coerce")
    unknown = text.isna() | (num == -1)
    lo, hi = FITZPATRICK_RANGE
    ok = unknown | (num.notna() & (np.mod(num.fillna(0), 1) == 0) & num.between(lo, hi))
    if not ok.all():
        values = text[~ok].value_counts()
        raise InputError(
            f"--format {fmt}: {path}: column {column} must be a Fitzpatrick type {lo}..{hi} (or -1 / empty for unknown); "
            f"{int((~ok).sum())} row(s) are not: "
            + ", ".join(f"{k!r} ({v} rows)" for k, v in values.head(5).items())
            + f"; e.g. {', '.join(map(str, ids[~ok].head(5).tolist()))}",
            hint="fix or blank those cells",
        )
    return num.where(~unknown).astype("Int8")


def build(opts: ImportOptions) -> ImportResult:
    label_from = opts.label_from or DEFAULT_LABEL
    if label_from not in LABEL_COLUMNS:
        raise UsageError(f"--label-from {label_from!r} is not a label column of {NAME}",
                         hint=f"valid: {', '.join(LABEL_COLUMNS)} (default {DEFAULT_LABEL})")
    csv = find_file(opts.source, ["fitzpatrick17k.csv"], "fitzpatrick17k.csv", NAME)
    raw = read_csv(csv, COLUMNS, NAME)
    ids = raw["md5hash"].str.strip()
    if ids.isna().any():
        raise InputError(f"{csv}: {int(ids.isna().sum())} row(s) have no md5hash", hint="every row needs its image hash")
    check_unique(ids, csv, "md5hash")
    labels = {c: raw[c].str.strip() for c in LABEL_COLUMNS}
    chosen = labels[label_from]
    classes = sorted(chosen.dropna().unique().tolist())
    three = labels["three_partition_label"].str.lower()
    df = pd.DataFrame(
        {
            "sample_id": ids,
            "source": NAME,
            "label": map_labels(chosen, classes, csv, label_from),
            "diagnosis": labels["label"],
            "malignant": (three == "malignant").astype("Int8"),  # <NA> where three_partition_label is empty
            "fitzpatrick": fitzpatrick_type(raw["fitzpatrick_scale"], ids, csv, "fitzpatrick_scale", NAME),
            "fitzpatrick_centaur": fitzpatrick_type(raw["fitzpatrick_centaur"], ids, csv, "fitzpatrick_centaur", NAME),
            **{EXTRA_NAMES[c]: labels[c] for c in LABEL_COLUMNS},
            **{c: raw[c].str.strip() for c in OPTIONAL_COLUMNS if c in raw.columns},
        }
    )
    dirs = opts.images or [csv.parent / d for d in IMAGE_DIRS]
    df = attach_images(df, df["sample_id"], dirs, NAME, opts.allow_missing_images)
    df = add_image_sizes(df, opts.read_image_size)
    return ImportResult(
        df=df, classes=classes, inputs=[csv, *[d for d in dirs if d.is_dir()]],
        notes={"label_from": label_from, "binary_target": "malignant = three_partition_label == malignant",
               "fitzpatrick": "fitzpatrick_scale (human); -1 = unknown -> <NA>; fitzpatrick_centaur kept as an extra column",
               "group_by": "none (no patient or lesion ids)"},
    )
