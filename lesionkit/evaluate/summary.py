"""From predictions to ``metrics.json`` content, figures and ``report.html`` (no model, no torch).

:func:`evaluate_predictions` computes everything the stage reports from arrays: multi-class metrics, the binary
target's metrics at 0.5 and at the validation-chosen threshold, calibration, bootstrap CIs, per-group tables and the
most-confused pairs. :func:`write_figures` draws the PNGs and :func:`render_report` (in :mod:`.report`) the HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lesionkit.evaluate.bootstrap import ClusterBootstrap, bootstrap_stats
from lesionkit.evaluate.calibration import binary_reliability, top_label_reliability
from lesionkit.evaluate.fairness import binary_group_table, multiclass_group_table
from lesionkit.evaluate.metrics import (
    RankedScores,
    binary_counts,
    binary_metrics,
    most_confused_pairs,
    multiclass_metrics,
    rates_from_counts,
    threshold_metrics,
)
from lesionkit.evaluate.thresholds import ThresholdChoice

__all__ = ["BinaryTarget", "evaluate_predictions", "write_figures"]

NOT_PROBABILITIES = "rank-averaged ensemble scores are not probabilities"
THRESHOLD_KEYS = ("sensitivity", "specificity", "ppv", "npv", "f1", "f2", "balanced_accuracy")


@dataclass
class BinaryTarget:
    """The binary target evaluated alongside the classes: ``y`` 0/1, ``score`` (probability of the positive
    class(es)), ``name`` and which classes count as positive."""

    y: np.ndarray
    score: np.ndarray
    name: str
    positive_classes: list[str] = field(default_factory=list)


def _threshold_ci(y: np.ndarray, score: np.ndarray, t: float, boot: ClusterBootstrap) -> dict[str, Any]:
    pred = score >= t

    def stat(w):
        r = rates_from_counts(*binary_counts(y, pred, w))
        return {k: r[k] for k in THRESHOLD_KEYS}

    out = threshold_metrics(y, score, t)
    out["ci"] = bootstrap_stats(stat, boot)
    return out


def evaluate_predictions(*, y: np.ndarray, proba: np.ndarray, classes: Sequence[str], boot: ClusterBootstrap,
                         binary: BinaryTarget | None = None, threshold: ThresholdChoice | None = None,
                         groups: pd.DataFrame | None = None, min_tpr: float = 0.8, min_group_size: int = 10,
                         n_bins: int = 15, member_confusions: Sequence[np.ndarray] | None = None,
                         probabilities: bool = True, top_confused: int = 10) -> dict[str, Any]:
    """All metrics of one evaluation (see the module docstring). ``groups``: one column per grouping (labels as
    strings, ``missing`` for unknown), rows aligned with ``y``. ``probabilities=False`` (rank-averaged scores) turns
    log loss, Brier and calibration into nulls with the reason."""
    classes = list(classes)
    y = np.asarray(y, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    ranked = [RankedScores(y == k, proba[:, k]) for k in range(len(classes))]
    mc = multiclass_metrics(y, proba, classes, ranked=ranked)
    mc_keys = ("accuracy", "balanced_accuracy", "auc_macro_ovr", "auc_weighted_ovr", "log_loss", "brier")

    def mc_stat(w):
        m = multiclass_metrics(y, proba, classes, w=w, ranked=ranked, per_class=False)
        return {k: m[k] for k in mc_keys}

    mc["ci"] = bootstrap_stats(mc_stat, boot)
    rel = top_label_reliability(y, proba, n_bins)
    calib: dict[str, Any] = {"top_label": rel.to_dict()}
    mc["ece"] = rel.ece
    if not probabilities:
        reasons = mc.setdefault("null_reasons", {})
        for k in ("log_loss", "brier", "ece"):
            mc[k] = None
            mc["ci"].pop(k, None)
            reasons[k] = NOT_PROBABILITIES
        calib = {"null_reason": NOT_PROBABILITIES}
    out: dict[str, Any] = {"multiclass": mc}
    confs = list(member_confusions) if member_confusions else [np.asarray(mc["confusion_matrix"])]
    out["most_confused"] = most_confused_pairs(confs, classes, top=top_confused)

    if binary is not None:
        yb = np.asarray(binary.y, dtype=bool)
        sb = np.asarray(binary.score, dtype=np.float64)
        rs = RankedScores(yb, sb)
        bm = binary_metrics(yb, sb, min_tpr=min_tpr)
        bm.update({"name": binary.name, "positive_classes": list(binary.positive_classes)})

        def b_stat(w):
            ww = np.ones(len(yb)) if w is None else w
            return {"auc": rs.auc(w), "pauc": rs.pauc(min_tpr, w), "average_precision": rs.average_precision(w),
                    "brier": float(np.sum(ww * (sb - yb) ** 2) / ww.sum()) if ww.sum() > 0 else None}

        bm["ci"] = bootstrap_stats(b_stat, boot)
        bm["at_0.5"] = _threshold_ci(yb, sb, 0.5, boot)
        if threshold is None:
            threshold = ThresholdChoice("fixed", 0.5, "default", len(yb), int(yb.sum()), None, None)
            bm["threshold_warning"] = "no validation predictions: the chosen threshold is the default 0.5"
        bm["threshold"] = threshold.to_dict()
        if not threshold.chosen_on.startswith(("val", "fixed")) or threshold.chosen_on != "val" and "itself" in threshold.chosen_on:
            bm.setdefault("threshold_warning", f"threshold chosen on {threshold.chosen_on}, not on validation")
        bm["at_threshold"] = _threshold_ci(yb, sb, threshold.threshold, boot)
        if probabilities:
            brel = binary_reliability(yb, sb, n_bins)
            calib["binary"] = brel.to_dict()
            bm["ece"] = brel.ece
        else:
            bm["brier"] = bm["ece"] = None
            bm["ci"].pop("brier", None)
            bm.setdefault("null_reasons", {})["brier"] = NOT_PROBABILITIES
        out["binary"] = bm
    out["calibration"] = calib

    tables: dict[str, Any] = {}
    if groups is not None:
        for col in groups.columns:
            g = groups[col].astype(str).to_numpy()
            if binary is not None:
                t = binary_group_table(col, g, binary.y, binary.score, out["binary"]["threshold"]["threshold"], boot,
                                       min_group_size)
                t["multiclass"] = multiclass_group_table(col, g, y, proba, classes, boot, min_group_size)
            else:
                t = multiclass_group_table(col, g, y, proba, classes, boot, min_group_size)
            tables[col] = t
    out["groups"] = tables
    return out


def write_figures(out_dir: Path, *, y: np.ndarray, proba: np.ndarray, classes: Sequence[str], metrics: dict[str, Any],
                  binary: BinaryTarget | None, min_tpr: float) -> tuple[dict[str, Path], dict[str, Path]]:
    """ROC, precision–recall, confusion, reliability and per-group PNGs under ``out_dir``; returns
    ``(plots, group_plots)`` name → path."""
    from lesionkit.evaluate import plots as P

    out_dir = Path(out_dir)
    bt = None if binary is None else (np.asarray(binary.y), np.asarray(binary.score), binary.name)
    figs = {
        "roc": P.roc_plot(out_dir / "roc.png", y, proba, classes, bt, min_tpr),
        "pr": P.pr_plot(out_dir / "pr.png", y, proba, classes, bt),
        "confusion": P.confusion_plot(out_dir / "confusion.png", np.asarray(metrics["multiclass"]["confusion_matrix"]),
                                      classes),
    }
    calib = metrics.get("calibration", {})
    panels = []
    if "top_label" in calib:
        panels.append(("multi-class (top label)", calib["top_label"]))
    if "binary" in calib:
        panels.append((f"binary: {binary.name if binary else ''}", calib["binary"]))
    if panels:
        figs["reliability"] = P.reliability_plot(out_dir / "reliability.png", panels)
    group_figs = {}
    for col, t in metrics.get("groups", {}).items():
        safe = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in col)
        group_figs[col] = P.group_bars_plot(out_dir / f"groups_{safe}.png", t)
    return figs, group_figs
