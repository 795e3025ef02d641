"""Classification metrics on arrays (numpy only; no scikit-learn at run time).

Conventions: ``y`` holds class indices (int, ``0..C-1``), ``proba`` probabilities ``[n, C]`` (rows sum to 1),
``score`` a binary score ``[n]`` (higher = more likely positive), ``w`` optional non-negative sample weights ``[n]``
(the bootstrap passes resampling counts as weights, so a weighted metric equals the metric on the resample).
Every metric that can be undefined (a rate with an empty denominator, an AUC without both classes) returns
``None``; the ``*_metrics`` dictionaries then carry a ``null_reasons`` entry saying why, so ``metrics.json`` never
holds NaN. All rates are fractions in [0, 1]; AUC / AP / pAUC are areas in [0, 1] (pAUC in [0, 1 - min_tpr]).

The AUC, ROC curve, average precision and partial AUC come from :class:`RankedScores`, which sorts the scores once
and then answers each (re-weighted) query in O(n): the bootstrap re-uses one sort for every replicate. Tests compare
every number here with scikit-learn and fairlearn to 1e-9.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "RankedScores",
    "average_precision",
    "binary_counts",
    "binary_metrics",
    "brier_multiclass",
    "confusion_matrix",
    "log_loss",
    "most_confused_pairs",
    "multiclass_metrics",
    "partial_auc_above_tpr",
    "pauc_from_roc",
    "rates_from_counts",
    "ratio",
    "roc_auc",
    "roc_curve",
    "threshold_metrics",
]

EPS = float(np.finfo(np.float64).eps)


def ratio(num: float, den: float) -> float | None:
    """``num / den``, or ``None`` when ``den`` is 0 (an undefined rate)."""
    return None if den <= 0 else float(num) / float(den)


def _weights(w: np.ndarray | None, n: int) -> np.ndarray:
    if w is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    if len(w) != n:
        raise ValueError(f"sample weights have length {len(w)}, expected {n}")
    return w


class RankedScores:
    """Binary labels ``y`` (bool / 0-1) and scores ``s`` sorted once by descending score, with tied scores merged
    into blocks (a tie counts one half, as in the Mann-Whitney statistic and scikit-learn's trapezoidal ROC)."""

    def __init__(self, y: np.ndarray, s: np.ndarray):
        y = np.asarray(y).reshape(-1)
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if len(y) != len(s):
            raise ValueError(f"y has {len(y)} values but scores have {len(s)}")
        if not np.all(np.isfinite(s)):
            raise ValueError("scores contain NaN or infinite values")
        self.n = len(y)
        self.order = np.argsort(-s, kind="mergesort")
        ss = s[self.order]
        new = np.ones(self.n, dtype=bool)
        if self.n > 1:
            new[1:] = ss[1:] != ss[:-1]
        self.block = np.cumsum(new) - 1
        self.n_blocks = int(self.block[-1] + 1) if self.n else 0
        self.thresholds = ss[new]  # descending distinct scores
        self.pos = np.asarray(y, dtype=bool)[self.order]

    def counts(self, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Positive and negative (weighted) counts per score block, highest score first."""
        ws = _weights(w, self.n)[self.order]
        tp = np.bincount(self.block, weights=ws * self.pos, minlength=self.n_blocks)
        fp = np.bincount(self.block, weights=ws * ~self.pos, minlength=self.n_blocks)
        return tp, fp

    def auc(self, w: np.ndarray | None = None) -> float | None:
        """Area under the ROC curve = P(score_pos > score_neg) + ½ P(tie); None without both classes."""
        tp, fp = self.counts(w)
        p, n = tp.sum(), fp.sum()
        if p <= 0 or n <= 0:
            return None
        neg_below = n - np.cumsum(fp)
        return float(np.sum(tp * (neg_below + 0.5 * fp)) / (p * n))

    def roc(self, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(fpr, tpr, thresholds)`` from (0, 0) at threshold +inf to (1, 1); None without both classes.
        A sample is predicted positive when ``score >= threshold``."""
        tp, fp = self.counts(w)
        p, n = tp.sum(), fp.sum()
        if p <= 0 or n <= 0:
            return None
        tpr = np.concatenate([[0.0], np.cumsum(tp) / p])
        fpr = np.concatenate([[0.0], np.cumsum(fp) / n])
        return fpr, tpr, np.concatenate([[np.inf], self.thresholds])

    def average_precision(self, w: np.ndarray | None = None) -> float | None:
        """AP = Σ_k (R_k − R_{k−1}) P_k over descending distinct thresholds (scikit-learn's definition, no
        interpolation); None without positives."""
        tp, fp = self.counts(w)
        p = tp.sum()
        if p <= 0:
            return None
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        den = ctp + cfp
        prec = np.divide(ctp, den, out=np.zeros_like(ctp), where=den > 0)
        return float(np.sum(tp / p * prec))

    def pauc(self, min_tpr: float = 0.8, w: np.ndarray | None = None) -> float | None:
        """Partial AUC above ``min_tpr`` (ISIC 2024): see :func:`pauc_from_roc`."""
        r = self.roc(w)
        return None if r is None else pauc_from_roc(r[0], r[1], min_tpr)


def pauc_from_roc(fpr: np.ndarray, tpr: np.ndarray, min_tpr: float) -> float:
    """Area between a piecewise-linear ROC curve and the horizontal line ``TPR = min_tpr``, over FPR in [0, 1]:
    ∫ max(TPR(f) − min_tpr, 0) df, in [0, 1 − min_tpr]. Segments crossing ``min_tpr`` are clipped exactly.

    This is the ISIC 2024 challenge metric ("pAUC above 80% TPR" for ``min_tpr=0.8``, max 0.2), which the
    challenge computes by flipping labels and scores, taking scikit-learn's McClish-standardised
    ``roc_auc_score(max_fpr=1-min_tpr)`` and undoing the standardisation. It is *not* that standardised value."""
    f0, f1 = fpr[:-1], fpr[1:]
    t0, t1 = tpr[:-1] - min_tpr, tpr[1:] - min_tpr
    df = f1 - f0
    both = (t0 >= 0) & (t1 >= 0)
    area = np.sum(np.where(both, 0.5 * (t0 + t1) * df, 0.0))
    cross = (t0 < 0) != (t1 < 0)
    if np.any(cross):  # one end above the line: a triangle from the crossing point to that end
        a0, a1, d = t0[cross], t1[cross], df[cross]
        dt = a1 - a0
        frac_above = np.where(a1 >= 0, a1 / dt, -a0 / dt)  # fraction of the segment's FPR span above the line
        height = np.where(a1 >= 0, a1, a0)
        area += np.sum(0.5 * frac_above * d * height)
    return float(area)


def roc_auc(y: np.ndarray, score: np.ndarray, w: np.ndarray | None = None) -> float | None:
    """Binary ROC AUC in [0, 1]; ``None`` when ``y`` lacks positives or negatives."""
    return RankedScores(y, score).auc(w)


def roc_curve(y: np.ndarray, score: np.ndarray, w: np.ndarray | None = None):
    """``(fpr, tpr, thresholds)`` (every distinct score a threshold) or None without both classes."""
    return RankedScores(y, score).roc(w)


def average_precision(y: np.ndarray, score: np.ndarray, w: np.ndarray | None = None) -> float | None:
    return RankedScores(y, score).average_precision(w)


def partial_auc_above_tpr(y: np.ndarray, score: np.ndarray, min_tpr: float = 0.8,
                          w: np.ndarray | None = None) -> float | None:
    """ISIC 2024 partial AUC above ``min_tpr`` (in [0, 1 − min_tpr]); see :func:`pauc_from_roc`."""
    return RankedScores(y, score).pauc(min_tpr, w)


# ------------------------------------------------------------------------------------------ thresholded binary


def binary_counts(y: np.ndarray, pred: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """(weighted) ``tp, fp, tn, fn`` of binary predictions ``pred`` against ``y``."""
    y = np.asarray(y, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    ww = _weights(w, len(y))
    return (float(ww[y & pred].sum()), float(ww[~y & pred].sum()), float(ww[~y & ~pred].sum()),
            float(ww[y & ~pred].sum()))


def _fbeta(tp: float, fp: float, fn: float, beta: float) -> float | None:
    b2 = beta * beta
    den = (1 + b2) * tp + b2 * fn + fp
    return None if den <= 0 else (1 + b2) * tp / den


def rates_from_counts(tp: float, fp: float, tn: float, fn: float) -> dict[str, float | None]:
    """Sensitivity (TPR), specificity (TNR), FPR, PPV, NPV, F1, F2, balanced accuracy, accuracy from counts."""
    sens = ratio(tp, tp + fn)
    spec = ratio(tn, tn + fp)
    return {
        "sensitivity": sens, "specificity": spec, "fpr": None if spec is None else 1.0 - spec,
        "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn),
        "f1": _fbeta(tp, fp, fn, 1.0), "f2": _fbeta(tp, fp, fn, 2.0),
        "balanced_accuracy": None if sens is None or spec is None else 0.5 * (sens + spec),
        "accuracy": ratio(tp + tn, tp + fp + tn + fn),
    }


_RATE_REASONS = {
    "sensitivity": "no positives", "fpr": "no negatives", "specificity": "no negatives",
    "ppv": "no positive predictions", "npv": "no negative predictions", "f1": "no positives and no positive predictions",
    "f2": "no positives and no positive predictions", "balanced_accuracy": "needs both classes", "accuracy": "no samples",
}


def threshold_metrics(y: np.ndarray, score: np.ndarray, threshold: float,
                      w: np.ndarray | None = None) -> dict[str, Any]:
    """Confusion counts and rates of ``score >= threshold`` (positive) against binary ``y``."""
    tp, fp, tn, fn = binary_counts(y, np.asarray(score) >= threshold, w)
    out: dict[str, Any] = {"threshold": float(threshold), "tp": tp, "fp": fp, "tn": tn, "fn": fn}
    r = rates_from_counts(tp, fp, tn, fn)
    out.update(r)
    reasons = {k: _RATE_REASONS[k] for k, v in r.items() if v is None}
    if reasons:
        out["null_reasons"] = reasons
    return out


def binary_metrics(y: np.ndarray, score: np.ndarray, *, min_tpr: float = 0.8,
                   w: np.ndarray | None = None) -> dict[str, Any]:
    """Threshold-free binary metrics: n, n_pos, prevalence, AUC, average precision, pAUC above ``min_tpr``, Brier."""
    y = np.asarray(y, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    rs = RankedScores(y, score)
    ww = _weights(w, len(y))
    n, n_pos = float(ww.sum()), float(ww[y].sum())
    out: dict[str, Any] = {"n": n, "n_pos": n_pos, "prevalence": ratio(n_pos, n), "auc": rs.auc(w),
                           "average_precision": rs.average_precision(w), "pauc": rs.pauc(min_tpr, w),
                           "pauc_min_tpr": float(min_tpr), "pauc_max": 1.0 - float(min_tpr),
                           "brier": ratio(float(np.sum(ww * (score - y) ** 2)), n)}
    reasons = {}
    for k in ("auc", "pauc"):
        if out[k] is None:
            reasons[k] = f"needs positives and negatives (n_pos={n_pos:g}, n_neg={n - n_pos:g})"
    if out["average_precision"] is None:
        reasons["average_precision"] = "no positives"
    if out["brier"] is None:
        reasons["brier"] = "no samples"
    if reasons:
        out["null_reasons"] = reasons
    return out


# ------------------------------------------------------------------------------------------------ multi-class


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int, w: np.ndarray | None = None) -> np.ndarray:
    """``[C, C]`` counts: row = true class, column = predicted class (float when weighted, else int64)."""
    y = np.asarray(y, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    flat = y * n_classes + pred
    if w is None:
        return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    return np.bincount(flat, weights=_weights(w, len(y)), minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def log_loss(y: np.ndarray, proba: np.ndarray, w: np.ndarray | None = None) -> float | None:
    """Mean negative log-likelihood of the true class, probabilities clipped to [eps, 1 − eps] (float64 eps), nats."""
    y = np.asarray(y, dtype=np.int64)
    p = np.clip(np.asarray(proba, dtype=np.float64)[np.arange(len(y)), y], EPS, 1 - EPS)
    ww = _weights(w, len(y))
    return ratio(float(-np.sum(ww * np.log(p))), float(ww.sum()))


def brier_multiclass(y: np.ndarray, proba: np.ndarray, w: np.ndarray | None = None) -> float | None:
    """Multi-class Brier score: mean over samples of Σ_c (p_c − 1[y = c])², in [0, 2]."""
    proba = np.asarray(proba, dtype=np.float64)
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(y)), np.asarray(y, dtype=np.int64)] = 1.0
    ww = _weights(w, len(y))
    return ratio(float(np.sum(ww * np.sum((proba - onehot) ** 2, axis=1))), float(ww.sum()))


def multiclass_metrics(y: np.ndarray, proba: np.ndarray, classes: Sequence[str], *,
                       w: np.ndarray | None = None, ranked: Sequence[RankedScores] | None = None,
                       per_class: bool = True) -> dict[str, Any]:
    """Accuracy, balanced accuracy (mean recall over classes present in ``y``), one-vs-rest AUC (macro: mean over
    classes with both positives and negatives; weighted: by class prevalence), log loss, Brier, the confusion
    matrix (rows true, columns predicted = argmax) and per-class AUC / sensitivity / specificity / PPV / NPV / F1.

    ``ranked``: one :class:`RankedScores` per class (``y == c`` vs ``proba[:, c]``) to reuse across bootstrap
    replicates."""
    y = np.asarray(y, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    c = len(classes)
    if proba.ndim != 2 or proba.shape != (len(y), c):
        raise ValueError(f"probabilities have shape {proba.shape}, expected ({len(y)}, {c})")
    pred = np.argmax(proba, axis=1)
    ww = _weights(w, len(y))
    cm = confusion_matrix(y, pred, c, None if w is None else ww)
    n = float(cm.sum())
    support = cm.sum(axis=1)
    recalls = [cm[k, k] / support[k] for k in range(c) if support[k] > 0]
    if ranked is None:
        ranked = [RankedScores(y == k, proba[:, k]) for k in range(c)]
    aucs = [ranked[k].auc(w) for k in range(c)]
    defined = [(a, support[k]) for k, a in enumerate(aucs) if a is not None]
    out: dict[str, Any] = {
        "n": n,
        "accuracy": ratio(float(np.trace(cm)), n),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else None,
        "auc_macro_ovr": float(np.mean([a for a, _ in defined])) if defined else None,
        "auc_weighted_ovr": (float(np.sum([a * s for a, s in defined]) / np.sum([s for _, s in defined]))
                             if defined else None),
        "log_loss": log_loss(y, proba, None if w is None else ww),
        "brier": brier_multiclass(y, proba, None if w is None else ww),
    }
    reasons: dict[str, str] = {}
    skipped = [classes[k] for k, a in enumerate(aucs) if a is None]
    if skipped:
        out["auc_classes_skipped"] = skipped
        if defined:
            reasons["auc_macro_ovr"] = f"averaged over classes with positives and negatives (skipped: {', '.join(skipped)})"
    if not defined:
        reasons["auc_macro_ovr"] = reasons["auc_weighted_ovr"] = "no class has both positives and negatives"
    if not per_class:
        if reasons:
            out["null_reasons"] = reasons
        return out
    out["confusion_matrix"] = cm.tolist()
    pcs = {}
    for k, name in enumerate(classes):
        tp = float(cm[k, k])
        fn = float(support[k] - cm[k, k])
        fp = float(cm[:, k].sum() - cm[k, k])
        tn = n - tp - fn - fp
        r = rates_from_counts(tp, fp, tn, fn)
        entry: dict[str, Any] = {"support": float(support[k]), "auc": aucs[k], "sensitivity": r["sensitivity"],
                                 "specificity": r["specificity"], "ppv": r["ppv"], "npv": r["npv"], "f1": r["f1"]}
        nr = {m: (_RATE_REASONS[m] if m != "auc" else "class absent or the only class present")
              for m, v in entry.items() if v is None}
        if nr:
            entry["null_reasons"] = nr
        pcs[name] = entry
    out["per_class"] = pcs
    if reasons:
        out["null_reasons"] = reasons
    return out


def most_confused_pairs(cms: Sequence[np.ndarray], classes: Sequence[str], top: int = 10) -> list[dict[str, Any]]:
    """Off-diagonal (true → predicted) pairs ranked by the mean row-normalised rate over ``cms`` (one confusion
    matrix per fold / run; Mishra ch. 4 "most confused"). Each entry: true, pred, mean_rate (fraction of the true
    class predicted as ``pred``, averaged over matrices where the true class occurs), mean_count, n_matrices."""
    mats = [np.asarray(m, dtype=np.float64) for m in cms]
    c = len(classes)
    rows = []
    for i in range(c):
        for j in range(c):
            if i == j:
                continue
            rates = [m[i, j] / m[i].sum() for m in mats if m[i].sum() > 0]
            counts = [m[i, j] for m in mats]
            if not rates or max(counts) == 0:
                continue
            rows.append({"true": classes[i], "pred": classes[j], "mean_rate": float(np.mean(rates)),
                         "mean_count": float(np.mean(counts)), "n_matrices": len(mats)})
    rows.sort(key=lambda r: (-r["mean_count"], -r["mean_rate"], r["true"], r["pred"]))
    return rows[:top]
