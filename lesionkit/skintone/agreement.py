"""Agreement of estimated skin-tone types with human (or ground-truth) Fitzpatrick types.

All metrics are over the images that have BOTH a human type (1..6) and an estimate; images with a human type
but no estimate (``skintone_error``) are counted separately as lost coverage, never silently dropped.

* exact and ±1 accuracy overall and per human type (fractions in [0, 1]; ``None`` where a type has no image);
* confusion matrix (rows: human type 1..6, columns: estimated type 1..6);
* linear-weighted Cohen's κ (in [-1, 1]); Spearman ρ between the continuous ``ita_deg`` and the human type
  (negative when they agree: a larger ITA is lighter skin, a larger type darker);
* coarse groups I–II / III–IV / V–VI: accuracy and 3x3 confusion;
* with a continuous reference ITA (synthetic ``ita_true``): median |ΔITA| overall and per type (degrees).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["COARSE_GROUPS", "agreement_metrics", "coarse", "confusion", "linear_weighted_kappa", "spearman"]

TYPES = (1, 2, 3, 4, 5, 6)
COARSE_GROUPS = ("I-II", "III-IV", "V-VI")


def confusion(truth: np.ndarray, pred: np.ndarray, labels: tuple[int, ...] = TYPES) -> np.ndarray:
    """Counts ``C[i, j]`` of (truth = labels[i], pred = labels[j]); values outside ``labels`` are ignored."""
    idx = {v: i for i, v in enumerate(labels)}
    C = np.zeros((len(labels), len(labels)), np.int64)
    for t, p in zip(np.asarray(truth).tolist(), np.asarray(pred).tolist(), strict=True):
        if t in idx and p in idx:
            C[idx[t], idx[p]] += 1
    return C


def linear_weighted_kappa(C: np.ndarray) -> float | None:
    """Cohen's κ with linear weights ``|i - j| / (k - 1)`` from a k x k confusion matrix; ``None`` when undefined
    (no data, or both raters constant and equal: expected disagreement 0)."""
    C = np.asarray(C, dtype=np.float64)
    n = C.sum()
    k = C.shape[0]
    if n == 0 or k < 2:
        return None
    i, j = np.indices(C.shape)
    W = np.abs(i - j) / (k - 1)
    E = np.outer(C.sum(1), C.sum(0)) / n
    denom = (W * E).sum()
    if denom == 0:
        return None
    return float(1.0 - (W * C).sum() / denom)


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation (average ranks for ties); ``None`` with < 3 pairs or a constant input."""
    from scipy.stats import rankdata

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 3:
        return None
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def coarse(types: np.ndarray) -> np.ndarray:
    """Type 1..6 -> coarse group 0 (I–II), 1 (III–IV), 2 (V–VI)."""
    return (np.asarray(types, dtype=np.int64) - 1) // 2


def _frac(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def agreement_metrics(truth: np.ndarray, pred: np.ndarray, ita: np.ndarray | None = None,
                      truth_ita: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of ``pred`` (estimated type 1..6, NaN / <NA> = no estimate) against ``truth`` (human type 1..6,
    NaN = unknown). ``ita``: the continuous estimate (degrees) for Spearman ρ; ``truth_ita``: a reference ITA
    for |ΔITA|. Arrays of equal length; returns plain JSON-ready values (``None`` where undefined)."""
    t = np.asarray(truth, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    has_t = np.isfinite(t) & np.isin(t, TYPES)
    both = has_t & np.isfinite(p)
    tt, pp = t[both].astype(np.int64), p[both].astype(np.int64)
    n = int(both.sum())
    C = confusion(tt, pp)
    diff = np.abs(tt - pp)
    per_type: dict[str, Any] = {}
    for ty in TYPES:
        s = tt == ty
        m = int(s.sum())
        row: dict[str, Any] = {"n": m, "n_no_estimate": int((has_t & ~np.isfinite(p) & (t == ty)).sum()),
                               "exact": _frac(int((diff[s] == 0).sum()), m),
                               "within1": _frac(int((diff[s] <= 1).sum()), m)}
        if ita is not None:
            iv = np.asarray(ita, dtype=np.float64)[both][s]
            row["ita_median"] = float(np.median(iv)) if m else None
        if truth_ita is not None:
            d = np.abs(np.asarray(ita, dtype=np.float64)[both][s] - np.asarray(truth_ita, dtype=np.float64)[both][s])
            row["median_abs_delta_ita"] = float(np.median(d)) if m else None
        per_type[str(ty)] = row
    Cc = confusion(coarse(tt), coarse(pp), (0, 1, 2))
    out: dict[str, Any] = {
        "n_with_truth": int(has_t.sum()),
        "n_used": n,
        "n_no_estimate": int((has_t & ~np.isfinite(p)).sum()),
        "coverage": _frac(n, int(has_t.sum())),
        "exact": _frac(int((diff == 0).sum()), n),
        "within1": _frac(int((diff <= 1).sum()), n),
        "kappa_linear": linear_weighted_kappa(C),
        "spearman_ita_vs_truth": None,
        "per_type": per_type,
        "confusion": {"rows": "truth type 1..6", "cols": "estimated type 1..6", "matrix": C.tolist()},
        "coarse": {"groups": list(COARSE_GROUPS), "exact": _frac(int(np.trace(Cc)), n),
                   "kappa_linear": linear_weighted_kappa(Cc), "matrix": Cc.tolist()},
    }
    if ita is not None:
        iv = np.asarray(ita, dtype=np.float64)
        ok = has_t & np.isfinite(iv)
        out["spearman_ita_vs_truth"] = spearman(iv[ok], t[ok])
    if truth_ita is not None and ita is not None:
        d = np.abs(np.asarray(ita, dtype=np.float64) - np.asarray(truth_ita, dtype=np.float64))
        d = d[np.isfinite(d)]
        out["median_abs_delta_ita"] = float(np.median(d)) if d.size else None
        out["p90_abs_delta_ita"] = float(np.percentile(d, 90)) if d.size else None
    for k, v in list(out.items()):  # JSON: no NaN
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
    return out
