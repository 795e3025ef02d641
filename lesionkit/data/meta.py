"""Patient metadata as a model input (``--meta age,sex,site``): a fitted, serialisable encoder.

Fit on the TRAINING rows only (so validation statistics never leak), then :meth:`MetaEncoder.transform` any rows.
Per column, in the order given:

* **numeric** (numbers and booleans; e.g. ``age_approx`` in years): two features — the value standardised with the
  training mean and population standard deviation (``ddof=0``; a constant or empty column uses std 1), imputed
  with 0 (= the training mean) where missing, and a missing indicator (1.0 missing, 0.0 present).
* **categorical** (categories and strings; e.g. ``sex``, ``anatom_site``): a one-hot over the categories seen in
  the training rows (sorted as strings) plus one ``missing/unknown`` indicator, which is 1.0 for a missing value
  and for a value never seen in training. Exactly one of the ``k + 1`` features is 1.

Aliases: ``age`` → ``age_approx``, ``site`` / ``location`` → ``anatom_site``. The encoding (column kinds, means,
stds, categories) round-trips through :meth:`MetaEncoder.to_dict` / :meth:`MetaEncoder.from_dict` as plain JSON
types, so it is saved in the checkpoint and evaluation encodes exactly as training did.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from lesionkit.errors import InputError, UsageError

__all__ = ["ALIASES", "MetaEncoder", "parse_meta_columns"]

ALIASES = {"age": "age_approx", "site": "anatom_site", "location": "anatom_site", "localization": "anatom_site"}
ENCODER_VERSION = 1
MISSING = "missing/unknown"


def parse_meta_columns(spec: str | list[str] | None) -> list[str]:
    """``"age,sex,site"`` (or a list) → canonical column names with aliases applied, duplicates removed."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for it in items:
        c = str(it).strip()
        if not c or c.lower() == "none":
            continue
        c = ALIASES.get(c, c)
        if c not in out:
            out.append(c)
    return out


def _kind(s: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(s.dtype) or (
            pd.api.types.is_numeric_dtype(s.dtype) and not isinstance(s.dtype, pd.CategoricalDtype)):
        return "numeric"
    return "categorical"


def _numeric(s: pd.Series) -> np.ndarray:
    """float64 with NaN for missing (nullable ints/bools/floats all accepted)."""
    if pd.api.types.is_bool_dtype(s.dtype):
        s = s.astype("boolean").astype("Float64")
    return pd.to_numeric(s, errors="coerce").astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)


def _strings(s: pd.Series) -> list[str | None]:
    return [None if pd.isna(v) else str(v) for v in s.astype("object")]


class MetaEncoder:
    """Encodes metadata columns to a ``float32 [n, dim]`` matrix; see the module docstring for the encoding."""

    def __init__(self) -> None:
        self.columns: list[dict[str, Any]] = []  # {"name", "kind": "numeric", "mean", "std"} | {"name", "kind": "categorical", "categories"}
        self.fitted = False

    # ---------------------------------------------------------------------------------------------------- fit

    def fit(self, df: pd.DataFrame, cols: list[str] | str) -> MetaEncoder:
        """Learn the encoding from ``df`` (the TRAINING rows only). ``cols`` may use the aliases. Returns self."""
        names = parse_meta_columns(cols)
        if not names:
            raise UsageError("--meta: no columns given", hint="e.g. --meta age,sex,site")
        missing = [c for c in names if c not in df.columns]
        if missing:
            avail = [str(c) for c in df.columns if not str(c).endswith("_path") and c not in ("sample_id", "image_path")]
            raise UsageError(f"--meta: column(s) {', '.join(missing)} not in the manifest",
                             hint=f"available columns: {', '.join(avail)} (aliases: age, sex, site)")
        self.columns = []
        for c in names:
            s = df[c]
            if _kind(s) == "numeric":
                x = _numeric(s)
                x = x[~np.isnan(x)]
                mean = float(x.mean()) if len(x) else 0.0
                std = float(x.std()) if len(x) else 0.0
                if not math.isfinite(std) or std <= 1e-12:
                    std = 1.0
                self.columns.append({"name": c, "kind": "numeric", "mean": mean, "std": std})
            else:
                cats = sorted({v for v in _strings(s) if v is not None})
                self.columns.append({"name": c, "kind": "categorical", "categories": cats})
        self.fitted = True
        return self

    # ---------------------------------------------------------------------------------------------------- use

    @property
    def dim(self) -> int:
        """Width of the encoded matrix: 2 per numeric column, (categories + 1) per categorical column."""
        return sum(2 if c["kind"] == "numeric" else len(c["categories"]) + 1 for c in self.columns)

    def feature_names(self) -> list[str]:
        """One name per output column, e.g. ``age_approx``, ``age_approx=missing``, ``sex=female``, ``sex=missing/unknown``."""
        out: list[str] = []
        for c in self.columns:
            if c["kind"] == "numeric":
                out += [c["name"], f"{c['name']}=missing"]
            else:
                out += [f"{c['name']}={v}" for v in c["categories"]] + [f"{c['name']}={MISSING}"]
        return out

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Encode ``df`` → ``float32 [len(df), dim]`` (C-contiguous). Missing columns raise :class:`InputError`."""
        if not self.fitted:
            raise RuntimeError("MetaEncoder.transform called before fit()")
        absent = [c["name"] for c in self.columns if c["name"] not in df.columns]
        if absent:
            raise InputError(f"metadata column(s) {', '.join(absent)} are missing from the table being encoded",
                             hint="use a manifest with the same metadata columns as the one the model was trained on")
        n = len(df)
        out = np.zeros((n, self.dim), np.float32)
        j = 0
        for c in self.columns:
            s = df[c["name"]]
            if c["kind"] == "numeric":
                x = _numeric(s)
                miss = np.isnan(x)
                out[:, j] = np.where(miss, 0.0, (x - c["mean"]) / c["std"])
                out[:, j + 1] = miss
                j += 2
            else:
                cats = c["categories"]
                index = {v: i for i, v in enumerate(cats)}
                k = len(cats)
                pos = np.array([index.get(v, k) if v is not None else k for v in _strings(s)], dtype=np.int64)
                if n:
                    out[np.arange(n), j + pos] = 1.0
                j += k + 1
        return out

    def fit_transform(self, df: pd.DataFrame, cols: list[str] | str) -> np.ndarray:
        return self.fit(df, cols).transform(df)

    # ---------------------------------------------------------------------------------------------------- io

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: ``{"version", "columns": [...], "dim", "feature_names"}``."""
        return {"version": ENCODER_VERSION, "columns": [dict(c) for c in self.columns], "dim": self.dim,
                "feature_names": self.feature_names()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetaEncoder:
        """Rebuild from :meth:`to_dict`; a malformed record raises :class:`InputError`."""
        enc = cls()
        try:
            if int(d.get("version", 0)) > ENCODER_VERSION:
                raise ValueError(f"encoder version {d.get('version')} is newer than this lesionkit's {ENCODER_VERSION}")
            cols = []
            for c in d["columns"]:
                if c["kind"] == "numeric":
                    cols.append({"name": str(c["name"]), "kind": "numeric", "mean": float(c["mean"]), "std": float(c["std"])})
                elif c["kind"] == "categorical":
                    cols.append({"name": str(c["name"]), "kind": "categorical", "categories": [str(v) for v in c["categories"]]})
                else:
                    raise ValueError(f"unknown column kind {c['kind']!r}")
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"metadata encoder record is malformed: {e}",
                             hint="the checkpoint was not written by this lesionkit; retrain with `lesionkit train`") from None
        enc.columns = cols
        enc.fitted = True
        if "dim" in d and int(d["dim"]) != enc.dim:
            raise InputError(f"metadata encoder record says dim {d['dim']} but its columns give {enc.dim}",
                             hint="the checkpoint is corrupt; retrain with `lesionkit train`")
        return enc

    def __repr__(self) -> str:
        return f"MetaEncoder(columns={[c['name'] for c in self.columns]}, dim={self.dim})"
