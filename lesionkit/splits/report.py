"""What a split looks like: counts, groups, class balance per subset, and leakage (groups shared across subsets)."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pandas as pd

from lesionkit.splits.io import Splits
from lesionkit.splits.plan import GROUP_COLUMNS


def _subsets(splits: Splits) -> list[tuple[str, list[str]]]:
    out = []
    for k, f in enumerate(splits.folds):
        out.append((f"fold{k}/train", f["train"]))
        out.append((f"fold{k}/val", f["val"]))
    if splits.test:
        out.append(("test", splits.test))
    return out


def leakage(df: pd.DataFrame, splits: Splits) -> list[dict[str, Any]]:
    """For each grouping column with values and each pair of subsets that are used together (a fold's train/val,
    and each of them with test): how many groups, and how many images, appear on both sides."""
    by_id = df.set_index(df["sample_id"].astype(str))
    rows = []
    for col in GROUP_COLUMNS:
        if col not in df.columns or not df[col].notna().any():
            continue
        g = by_id[col].astype("string")
        for k, f in enumerate(splits.folds):
            parts = {"train": f["train"], "val": f["val"]}
            if splits.test:
                parts["test"] = splits.test
            for a, b in combinations(parts, 2):
                ga = set(g.reindex(parts[a]).dropna())
                gb = set(g.reindex(parts[b]).dropna())
                shared = ga & gb
                imgs_b = int(g.reindex(parts[b]).isin(shared).sum()) if shared else 0
                rows.append({"column": col, "fold": k, "pair": f"{a}-{b}", "shared_groups": len(shared),
                             f"{b}_images_sharing": imgs_b, "images_sharing": imgs_b,
                             "fraction_of_" + b: round(imgs_b / max(1, len(parts[b])), 4)})
    return rows


def split_report(df: pd.DataFrame, splits: Splits, classes: list[str] | None = None) -> dict[str, Any]:
    """Counts, number of groups, per-class counts and proportions per subset, the largest deviation (percentage
    points) of any class proportion from the whole set, and leakage rows (see :func:`leakage`)."""
    strat = splits.stratify or "label"
    by_id = df.set_index(df["sample_id"].astype(str))
    values = by_id[strat] if strat in by_id.columns else pd.Series("(all)", index=by_id.index)

    def name(v: Any) -> str:
        if pd.isna(v):
            return "(missing)"
        if strat == "label" and classes and 0 <= int(v) < len(classes):
            return classes[int(v)]
        return str(v)

    names = values.map(name)
    used_ids = sorted({i for _, ids in _subsets(splits) for i in ids})
    overall = names.reindex(used_ids).value_counts(normalize=True).sort_index()
    group_col = splits.group_by
    if group_col is None and splits.method.startswith("from-"):  # imported split: count the groups it should respect
        group_col = next((c for c in GROUP_COLUMNS if c in df.columns and df[c].notna().any()), None)
    subsets = []
    worst = 0.0
    for tag, ids in _subsets(splits):
        sub = names.reindex(ids)
        counts = sub.value_counts().reindex(overall.index, fill_value=0)
        props = (counts / max(1, len(ids))).round(6)
        dev = float(((props - overall).abs().max() * 100) if len(ids) else 0.0)
        worst = max(worst, dev)
        n_groups = int(by_id[group_col].reindex(ids).nunique()) if group_col else len(ids)
        subsets.append({"subset": tag, "n": len(ids), "n_groups": n_groups, "counts": {k: int(v) for k, v in counts.items()},
                        "proportions": {k: float(v) for k, v in props.items()}, "max_abs_dev_pp": round(dev, 3)})
    leaks = leakage(df, splits)
    return {
        "n_rows": len(df), "n_used": len(used_ids), "stratify": strat, "group_by": group_col,
        "n_groups": int(df[group_col].nunique()) if group_col else len(df),
        "overall_proportions": {k: round(float(v), 6) for k, v in overall.items()},
        "test_fraction": round(len(splits.test) / max(1, len(used_ids)), 4) if splits.test else 0.0,
        "subsets": subsets, "max_abs_dev_pp": round(worst, 3),
        "leakage": leaks, "shared_groups_total": int(sum(r["shared_groups"] for r in leaks)),
    }
