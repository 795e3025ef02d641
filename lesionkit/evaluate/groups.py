"""Subgroup columns for ``--group-by``: read from the manifest, some derived (documented here).

* ``age_bin`` from ``age_approx`` (years): ``<30``, ``30-44``, ``45-59``, ``60-74``, ``75+`` (left-closed bins:
  30 → ``30-44``, 75 → ``75+``);
* ``hair`` from the prep column ``hair_frac`` (fraction of pixels masked as hair, [0, 1]): ``hair`` when
  ``hair_frac > 0``, else ``no hair``;
* ``ink`` from ``ink_frac`` (fraction of pixels masked as skin-marker ink): ``ink`` when ``ink_frac > 0``, else
  ``no ink``;
* ``fitzpatrick`` (human label) and ``fitzpatrick_est`` (from ITA) as ``I``..``VI``;
* ``fitzpatrick_group`` / ``fitzpatrick_est_group``: the same types in the coarse groups ``I-II``, ``III-IV``,
  ``V-VI`` (the seed's skin-type protocol trains on I–II and reports III–IV and V–VI);
* any other column (``sex``, ``anatom_site``, ``ita_category``, ...) as its string values.

Missing values are the group ``missing``: reported, but never counted in gaps / fairness differences.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lesionkit.errors import UsageError

__all__ = ["AGE_BINS", "DEFAULT_GROUP_BY", "MISSING", "derive_group", "parse_group_by", "source_column"]

DEFAULT_GROUP_BY = ("fitzpatrick_est", "fitzpatrick", "ita_category", "sex", "age_bin", "anatom_site", "hair", "ink")
AGE_BINS = (0.0, 30.0, 45.0, 60.0, 75.0, np.inf)
AGE_LABELS = ("<30", "30-44", "45-59", "60-74", "75+")
MISSING = "missing"
_DERIVED = {"age_bin": "age_approx", "hair": "hair_frac", "ink": "ink_frac", "fitzpatrick_group": "fitzpatrick",
            "fitzpatrick_est_group": "fitzpatrick_est"}
_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI"}
_COARSE = {1: "I-II", 2: "I-II", 3: "III-IV", 4: "III-IV", 5: "V-VI", 6: "V-VI"}
_ROMAN_TO_INT = {v: k for k, v in _ROMAN.items()}


def source_column(name: str) -> str:
    """The manifest column a group is read from (``age_bin`` → ``age_approx``, ``hair`` → ``hair_frac``...)."""
    return _DERIVED.get(name, name)


def parse_group_by(text: str | None) -> tuple[list[str], bool]:
    """``--group-by`` → (names, explicit). ``auto`` / empty = :data:`DEFAULT_GROUP_BY` (absent columns skipped);
    ``none`` = no groups; otherwise a comma-separated list (absent columns are an error)."""
    if text is None or text.strip().lower() in ("", "auto"):
        return list(DEFAULT_GROUP_BY), False
    if text.strip().lower() == "none":
        return [], True
    names = [t.strip() for t in text.split(",") if t.strip()]
    if len(set(names)) != len(names):
        raise UsageError(f"--group-by {text!r} names a column twice")
    return names, True


def derive_group(df: pd.DataFrame, name: str) -> pd.Series:
    """Group label per row (strings; ``missing`` where the source value is missing). Raises KeyError when the
    source column is absent."""
    col = source_column(name)
    if col not in df.columns:
        raise KeyError(col)
    s = df[col]
    if name == "age_bin":
        v = pd.to_numeric(s, errors="coerce").astype("float64")
        out = pd.cut(v, bins=list(AGE_BINS), right=False, labels=list(AGE_LABELS))
        return out.astype("string").fillna(MISSING).astype(str)
    if name in ("hair", "ink"):
        v = pd.to_numeric(s, errors="coerce").astype("float64")
        lab = np.where(v > 0, name, f"no {name}").astype(object)
        lab[v.isna().to_numpy()] = MISSING
        return pd.Series(lab, index=df.index, dtype=object).astype(str)
    if name in ("fitzpatrick_group", "fitzpatrick_est_group"):
        return s.map(_coarse_type).astype(str)
    if name in ("fitzpatrick", "fitzpatrick_est") and pd.api.types.is_numeric_dtype(s.dtype):
        v = pd.to_numeric(s, errors="coerce")
        return v.map(lambda x: MISSING if pd.isna(x) else _ROMAN.get(int(x), str(int(x)))).astype(str)
    return s.astype("string").fillna(MISSING).astype(str)


def _coarse_type(v: object) -> str:
    """A Fitzpatrick type (1..6, 1.0.., or "I".."VI") → ``I-II`` / ``III-IV`` / ``V-VI``; anything else missing."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return MISSING
    if isinstance(v, str):
        k = _ROMAN_TO_INT.get(v.strip().upper())
        if k is None and v.strip().lstrip("-").isdigit():
            k = int(v.strip())
    else:
        f = float(v)  # type: ignore[arg-type]
        k = int(f) if f.is_integer() else None
    return _COARSE.get(k, MISSING) if k is not None else MISSING


def group_order(name: str, levels: list[str]) -> list[str]:
    """Levels in a natural order (age bins and Fitzpatrick types ascending, else sorted), ``missing`` last."""
    coarse = ["I-II", "III-IV", "V-VI"]
    known = {"age_bin": list(AGE_LABELS), "fitzpatrick": list(_ROMAN.values()), "fitzpatrick_est": list(_ROMAN.values()),
             "fitzpatrick_group": coarse, "fitzpatrick_est_group": coarse}
    ref = known.get(name, [])
    present = [x for x in levels if x != MISSING]
    out = [x for x in ref if x in present] + sorted(x for x in present if x not in ref)
    return out + ([MISSING] if MISSING in levels else [])
