"""The manifest contract: one parquet row per image, typed nullable columns, self-describing metadata.

Core columns and their pandas dtypes are listed in :data:`COLUMNS`. Importers may add dataset-specific
columns (e.g. ``dx_type``); later stages add their own (``prep_path``, ``ita_deg``, ...). Missing values are
always ``<NA>`` — never a sentinel such as ``-1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

SCHEMA_VERSION = 1
METADATA_KEY = b"lesionkit"

SPLIT_VALUES = ("train", "val", "test")
SEX_VALUES = ("female", "male")
FITZPATRICK_RANGE = (1, 6)


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    required: bool
    doc: str


COLUMNS: dict[str, Column] = {
    c.name: c
    for c in [
        Column("sample_id", "string", True, "unique id of the image (e.g. ISIC_0024306)"),
        Column("source", "category", True, "dataset the row came from (ham10000, isic2020, synthetic, ...)"),
        Column("image_path", "string", True, "image file; relative to the manifest's folder when inside it; <NA> = metadata only"),
        Column("patient_id", "string", False, "patient identifier (grouping for splits)"),
        Column("lesion_id", "string", False, "lesion identifier (grouping for splits)"),
        Column("label", "Int16", True, "index into the class list stored in the file metadata; <NA> = unlabelled"),
        Column("diagnosis", "category", False, "diagnosis as the source spells it"),
        Column("malignant", "Int8", False, "binary target: 1 malignant, 0 benign, <NA> unknown"),
        Column("split", "category", False, "the source's official split: train / val / test"),
        Column("fitzpatrick", "Int8", False, "HUMAN-annotated Fitzpatrick type 1..6 (never -1: unknown is <NA>)"),
        Column("age_approx", "Float32", False, "age in years (approximate)"),
        Column("sex", "category", False, "female / male"),
        Column("anatom_site", "category", False, "anatomical site"),
        Column("height", "Int32", False, "image height in pixels"),
        Column("width", "Int32", False, "image width in pixels"),
    ]
}

def _to_category(s: pd.Series) -> pd.Series:
    s = s.astype("string")
    return s.astype(pd.CategoricalDtype(sorted(s.dropna().unique())))


def coerce(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with every core column present (``<NA>`` when absent) in its contract dtype.

    Values are converted, never invented: float ages stay floats, integer-valued columns must hold
    integers (a fractional label raises). Core columns come first, extra columns keep their order.
    """
    out = {}
    n = len(df)
    for name, col in COLUMNS.items():
        if name not in df.columns:
            out[name] = pd.Series([pd.NA] * n, dtype=col.dtype, index=df.index)
            continue
        s = df[name]
        if col.dtype == "category":
            out[name] = s if isinstance(s.dtype, pd.CategoricalDtype) else _to_category(s)
        elif col.dtype == "string":
            out[name] = s.astype("string")
        elif col.dtype.startswith("Int"):
            num = pd.to_numeric(s, errors="raise")
            out[name] = num.astype(col.dtype)  # raises on fractional values
        else:
            out[name] = pd.to_numeric(s, errors="raise").astype(col.dtype)
    extra = [c for c in df.columns if c not in COLUMNS]
    res = pd.DataFrame(out, index=df.index)
    for c in extra:
        res[c] = df[c]
    return res.reset_index(drop=True)


def dtype_name(s: pd.Series) -> str:
    return "category" if isinstance(s.dtype, pd.CategoricalDtype) else str(s.dtype)


def dtype_matches(s: pd.Series, expected: str) -> bool:
    name = dtype_name(s)
    if expected == "string":
        return isinstance(s.dtype, pd.StringDtype)
    return name == expected
