"""Per-group metrics with bootstrap CIs, gaps between groups, equalized-odds / equal-opportunity differences.

For one grouping (e.g. ``sex``), each group gets n and, for a binary target, AUC, sensitivity (TPR), specificity
(TNR) and balanced accuracy at a fixed decision threshold (chosen on validation); for a multi-class target,
accuracy, balanced accuracy and macro one-vs-rest AUC. Groups named ``missing`` and groups with fewer than
``min_group_size`` samples are reported but left out of the comparisons:

* gap of a metric = max − min over the compared groups, with the worst (lowest) and best group;
* equal-opportunity difference = max − min of TPR (fairlearn ``equal_opportunity_difference``);
* equalized-odds difference = max(TPR max − min, FPR max − min) (fairlearn ``equalized_odds_difference``,
  ``agg="worst_case"``).

CIs: the same cluster-bootstrap replicates (:class:`~lesionkit.evaluate.bootstrap.ClusterBootstrap`) over the whole
evaluated set give every group value and every gap, so a gap's interval accounts for both groups' variability.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lesionkit.evaluate.bootstrap import ClusterBootstrap, bootstrap_stats
from lesionkit.evaluate.groups import MISSING, group_order
from lesionkit.evaluate.metrics import (
    RankedScores,
    binary_counts,
    multiclass_metrics,
    rates_from_counts,
)

__all__ = ["BINARY_GROUP_METRICS", "MULTICLASS_GROUP_METRICS", "binary_group_table", "multiclass_group_table"]

BINARY_GROUP_METRICS = ("auc", "sensitivity", "specificity", "balanced_accuracy")
MULTICLASS_GROUP_METRICS = ("accuracy", "balanced_accuracy", "auc_macro_ovr")
SEP = "\x1f"  # joins group and metric names in the flat bootstrap dictionary


def _diff(values: dict[str, float | None]) -> tuple[float | None, str | None, str | None]:
    defined = {g: v for g, v in values.items() if v is not None}
    if len(defined) < 2:
        return None, None, None
    worst = min(defined, key=lambda g: defined[g])
    best = max(defined, key=lambda g: defined[g])
    return defined[best] - defined[worst], worst, best


def _assemble(name: str, levels: list[str], sizes: dict[str, dict[str, float]], compared: list[str],
              cis: dict[str, dict[str, Any]], metrics: tuple[str, ...], extra: tuple[str, ...],
              min_group_size: int, task: str) -> dict[str, Any]:
    groups = []
    for g in levels:
        entry: dict[str, Any] = {"group": g, **sizes[g], "compared": g in compared,
                                 "metrics": {m: cis[f"{g}{SEP}{m}"] for m in metrics}}
        if g not in compared:
            entry["not_compared_reason"] = ("missing value" if g == MISSING
                                            else f"fewer than {min_group_size} samples (--min-group-size)")
        groups.append(entry)
    gaps = {}
    for m in metrics:
        est = {g: cis[f"{g}{SEP}{m}"]["estimate"] for g in compared}
        _, worst, best = _diff(est)
        gaps[m] = {**cis[f"gap{SEP}{m}"], "worst_group": worst, "best_group": best}
        if worst is None:
            gaps[m]["estimate_null_reason"] = "needs at least two compared groups where the metric is defined"
    out: dict[str, Any] = {"column": name, "task": task, "n_groups": len(levels), "compared_groups": compared,
                           "groups": groups, "gaps": gaps}
    for k in extra:
        out[k] = cis[k]
    return out


def binary_group_table(name: str, groups: np.ndarray, y: np.ndarray, score: np.ndarray, threshold: float,
                       boot: ClusterBootstrap, min_group_size: int = 10) -> dict[str, Any]:
    """Per-group binary metrics at ``threshold`` (``score >= threshold`` is positive), gaps, EO / EOpp
    differences, all with bootstrap CIs. ``groups``: group label per row (``missing`` for unknown)."""
    groups = np.asarray(groups).astype(str)
    y = np.asarray(y, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    pred = score >= threshold
    levels = group_order(name, sorted(set(groups.tolist())))
    idx = {g: np.flatnonzero(groups == g) for g in levels}
    ranked = {g: RankedScores(y[i], score[i]) for g, i in idx.items()}
    sizes = {g: {"n": len(i), "n_pos": int(y[i].sum())} for g, i in idx.items()}
    compared = [g for g in levels if g != MISSING and sizes[g]["n"] >= min_group_size]

    def stat(w: np.ndarray | None) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        per: dict[str, dict[str, float | None]] = {}
        for g, i in idx.items():
            wg = None if w is None else w[i]
            tp, fp, tn, fn = binary_counts(y[i], pred[i], wg)
            r = rates_from_counts(tp, fp, tn, fn)
            vals = {"auc": ranked[g].auc(wg), "sensitivity": r["sensitivity"], "specificity": r["specificity"],
                    "balanced_accuracy": r["balanced_accuracy"], "fpr": r["fpr"]}
            per[g] = vals
            for m in BINARY_GROUP_METRICS:
                out[f"{g}{SEP}{m}"] = vals[m]
        for m in BINARY_GROUP_METRICS:
            out[f"gap{SEP}{m}"] = _diff({g: per[g][m] for g in compared})[0]
        tpr_d = _diff({g: per[g]["sensitivity"] for g in compared})[0]
        fpr_d = _diff({g: per[g]["fpr"] for g in compared})[0]
        out["equal_opportunity_difference"] = tpr_d
        out["equalized_odds_difference"] = None if tpr_d is None or fpr_d is None else max(tpr_d, fpr_d)
        return out

    cis = bootstrap_stats(stat, boot)
    res = _assemble(name, levels, sizes, compared, cis, BINARY_GROUP_METRICS,
                    ("equal_opportunity_difference", "equalized_odds_difference"), min_group_size, "binary")
    res["threshold"] = float(threshold)
    return res


def multiclass_group_table(name: str, groups: np.ndarray, y: np.ndarray, proba: np.ndarray, classes: list[str],
                           boot: ClusterBootstrap, min_group_size: int = 10) -> dict[str, Any]:
    """Per-group multi-class accuracy, balanced accuracy and macro OvR AUC with CIs, and their gaps."""
    groups = np.asarray(groups).astype(str)
    y = np.asarray(y, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    levels = group_order(name, sorted(set(groups.tolist())))
    idx = {g: np.flatnonzero(groups == g) for g in levels}
    ranked = {g: [RankedScores(y[i] == k, proba[i, k]) for k in range(len(classes))] for g, i in idx.items()}
    sizes = {g: {"n": len(i)} for g, i in idx.items()}
    compared = [g for g in levels if g != MISSING and sizes[g]["n"] >= min_group_size]

    def stat(w: np.ndarray | None) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        per = {}
        for g, i in idx.items():
            wg = None if w is None else w[i]
            if wg is not None and wg.sum() <= 0:
                per[g] = dict.fromkeys(MULTICLASS_GROUP_METRICS)
            else:
                per[g] = multiclass_metrics(y[i], proba[i], classes, w=wg, ranked=ranked[g], per_class=False)
            for m in MULTICLASS_GROUP_METRICS:
                out[f"{g}{SEP}{m}"] = per[g][m]
        for m in MULTICLASS_GROUP_METRICS:
            out[f"gap{SEP}{m}"] = _diff({g: per[g][m] for g in compared})[0]
        return out

    cis = bootstrap_stats(stat, boot)
    return _assemble(name, levels, sizes, compared, cis, MULTICLASS_GROUP_METRICS, (), min_group_size, "multiclass")
