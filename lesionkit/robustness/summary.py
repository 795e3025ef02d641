"""The long summary table of a robustness run: one row per (protocol, corruption, level, group, metric).

Columns: ``protocol`` (test | train-corrupt | matched), ``corruption`` (label, ``none`` for the clean baseline),
``corruption_name``, ``level`` (NaN for clean), ``group_col`` / ``group`` (``all`` for every image, else the
skin-tone column and its group), ``n``, ``metric`` (accuracy | balanced_accuracy | auc; fractions in [0, 1]),
``value``, ``ci_low``, ``ci_high`` (cluster-bootstrap percentile CI), ``delta`` (value − clean value of the same
rows, NaN for clean) with ``delta_ci_low`` / ``delta_ci_high`` (paired bootstrap). Written as ``summary.parquet``
and ``summary.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lesionkit.robustness.sweep import HEADLINE_METRICS

__all__ = ["SUMMARY_COLUMNS", "pivot_table", "summary_frame", "write_summary"]

SUMMARY_COLUMNS = ["protocol", "corruption", "corruption_name", "level", "group_col", "group", "n", "metric", "value",
                   "ci_low", "ci_high", "delta", "delta_ci_low", "delta_ci_high"]


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _rows(base: dict[str, Any], block: dict[str, Any], delta: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    for m in HEADLINE_METRICS:
        e = block[m]
        d = (delta or {}).get(m) or {}
        rows.append({**base, "metric": m, "value": _num(e.get("estimate")), "ci_low": _num(e.get("ci_low")),
                     "ci_high": _num(e.get("ci_high")), "delta": _num(d.get("estimate")),
                     "delta_ci_low": _num(d.get("ci_low")), "delta_ci_high": _num(d.get("ci_high"))})
    return rows


def summary_frame(cells: list[dict[str, Any]]) -> pd.DataFrame:
    """Cells (``{"protocol", "spec", "level", "metrics"}`` from :func:`~lesionkit.robustness.sweep.cell_metrics`)
    → the long table (see the module docstring)."""
    rows: list[dict[str, Any]] = []
    for c in cells:
        spec = c["spec"]
        m = c["metrics"]
        base = {"protocol": "clean" if spec is None else c["protocol"],
                "corruption": "none" if spec is None else spec.label,
                "corruption_name": "none" if spec is None else spec.name,
                "level": float("nan") if c["level"] is None else float(c["level"])}
        rows += _rows({**base, "group_col": "all", "group": "all", "n": m["n"]}, m["overall"], m.get("delta"))
        for col, groups in m.get("per_group", {}).items():
            for g, b in groups.items():
                rows += _rows({**base, "group_col": col, "group": g, "n": b["n"]}, b, b.get("delta"))
    df = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    for col in ("protocol", "corruption", "corruption_name", "group_col", "group", "metric"):
        df[col] = df[col].astype("string")
    df["n"] = df["n"].astype("int64")
    return df


def write_summary(df: pd.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    """``summary.parquet`` and ``summary.csv`` in ``out_dir`` (atomic)."""
    from lesionkit.fsio import atomic_path

    out_dir = Path(out_dir)
    pq, csv = out_dir / "summary.parquet", out_dir / "summary.csv"
    with atomic_path(pq) as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    return pq, csv


def pivot_table(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Overall rows of ``metric`` as a compact table: protocol, corruption, level, value, CI, delta (percent points
    are ``100 *`` these fractions)."""
    sel = df[(df["group_col"] == "all") & (df["metric"] == metric)]
    cols = ["protocol", "corruption", "level", "n", "value", "ci_low", "ci_high", "delta", "delta_ci_low", "delta_ci_high"]
    order = sel["protocol"].map(lambda p: 0 if p == "clean" else 1)
    return (sel.assign(_o=order).sort_values(["_o", "protocol", "corruption", "level"])[cols]
            .reset_index(drop=True))

def group_deltas(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Per-group deltas of ``metric``: rows = (protocol, corruption, level), columns = groups."""
    sel = df[(df["group_col"] != "all") & (df["metric"] == metric) & df["level"].notna()]
    if sel.empty:
        return pd.DataFrame()
    return sel.pivot_table(index=["protocol", "corruption", "level"], columns="group", values="delta",
                           aggfunc="first", observed=True).replace({np.nan: None})
