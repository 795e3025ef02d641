"""Calibration: reliability bins and expected calibration error (ECE).

Bins are ``n_bins`` equal-width intervals of [0, 1]: ``[0, 1/n], (1/n, 2/n], ..., ((n-1)/n, 1]`` (a value on an
inner edge falls in the lower bin, as in scikit-learn's ``calibration_curve``). ECE = Σ_b (n_b / n) · |acc_b − conf_b|,
a fraction in [0, 1]:

* binary (``binary_reliability``): confidence = the positive-class probability, "accuracy" = the fraction of
  positives in the bin (the calibration curve);
* multi-class (``top_label_reliability``): confidence = the top-class probability, accuracy = the fraction of
  samples whose top class is the true class (Guo et al. 2017).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Reliability", "binary_reliability", "reliability", "top_label_reliability"]


@dataclass
class Reliability:
    """Per-bin counts, mean confidence and observed frequency (None for empty bins) and the ECE / MCE."""

    edges: np.ndarray  # [n_bins + 1]
    count: np.ndarray  # [n_bins] (weighted) samples per bin
    confidence: np.ndarray  # [n_bins] mean confidence (NaN where empty)
    frequency: np.ndarray  # [n_bins] observed accuracy / positive fraction (NaN where empty)
    ece: float | None
    mce: float | None  # maximum calibration error over non-empty bins

    def to_dict(self) -> dict[str, Any]:
        def clean(a: np.ndarray) -> list[float | None]:
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {"n_bins": len(self.count), "edges": [float(e) for e in self.edges], "count": [float(c) for c in self.count],
                "confidence": clean(self.confidence), "frequency": clean(self.frequency), "ece": self.ece, "mce": self.mce}


def reliability(confidence: np.ndarray, outcome: np.ndarray, n_bins: int = 15,
                w: np.ndarray | None = None) -> Reliability:
    """Bin ``confidence`` (in [0, 1]) and average ``outcome`` (0/1) per bin; ECE and MCE over non-empty bins."""
    conf = np.clip(np.asarray(confidence, dtype=np.float64).reshape(-1), 0.0, 1.0)
    out = np.asarray(outcome, dtype=np.float64).reshape(-1)
    ww = np.ones_like(conf) if w is None else np.asarray(w, dtype=np.float64).reshape(-1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], conf)
    cnt = np.bincount(ids, weights=ww, minlength=n_bins)
    s_conf = np.bincount(ids, weights=ww * conf, minlength=n_bins)
    s_out = np.bincount(ids, weights=ww * out, minlength=n_bins)
    nz = cnt > 0
    mconf = np.full(n_bins, np.nan)
    freq = np.full(n_bins, np.nan)
    mconf[nz] = s_conf[nz] / cnt[nz]
    freq[nz] = s_out[nz] / cnt[nz]
    total = cnt.sum()
    if total <= 0:
        return Reliability(edges, cnt, mconf, freq, None, None)
    gap = np.abs(freq[nz] - mconf[nz])
    return Reliability(edges, cnt, mconf, freq, float(np.sum(cnt[nz] / total * gap)), float(gap.max()))


def binary_reliability(y: np.ndarray, p_pos: np.ndarray, n_bins: int = 15, w: np.ndarray | None = None) -> Reliability:
    """Calibration of a positive-class probability against 0/1 labels."""
    return reliability(p_pos, np.asarray(y, dtype=bool), n_bins, w)


def top_label_reliability(y: np.ndarray, proba: np.ndarray, n_bins: int = 15,
                          w: np.ndarray | None = None) -> Reliability:
    """Top-label calibration of multi-class probabilities ``[n, C]``."""
    proba = np.asarray(proba, dtype=np.float64)
    pred = np.argmax(proba, axis=1)
    return reliability(proba[np.arange(len(pred)), pred], pred == np.asarray(y), n_bins, w)
