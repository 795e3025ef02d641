"""Bootstrap confidence intervals that resample clusters (patients or lesions), with an explicit seed.

Images of one patient (or one lesion) are correlated, so resampling images would make intervals too narrow.
A replicate draws K clusters with replacement from the K clusters present (the cluster bootstrap); every image
of a drawn cluster enters with the number of times its cluster was drawn. Statistics are computed with these
counts as *sample weights* (``w``), which equals computing them on the materialised resample but needs no copy.

Replicate ``b`` uses ``numpy.random.default_rng([seed, b])``, so replicate b is the same resample for every
statistic (per-group values and the gaps between groups come from the same resamples) and runs are reproducible.
Intervals are percentile intervals ``[q(α/2), q(1 − α/2)]`` over the replicates where the statistic is defined
(``n_valid`` says how many; an AUC is undefined in a replicate without both classes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ClusterBootstrap", "bootstrap_stats", "ci_entry", "cluster_codes"]


def cluster_codes(df: pd.DataFrame, prefer: tuple[str, ...] = ("patient_id", "lesion_id")) -> tuple[np.ndarray, str]:
    """Integer cluster code per row from the first column of ``prefer`` that has any value (rows without a value
    become their own cluster); ``("image", codes 0..n-1)`` when none has. Returns ``(codes, unit)``."""
    n = len(df)
    for col in prefer:
        if col in df.columns and df[col].notna().any():
            s = df[col].astype("string")
            codes = pd.factorize(s, use_na_sentinel=True)[0].astype(np.int64)
            missing = codes < 0
            if missing.any():
                codes[missing] = codes.max(initial=-1) + 1 + np.arange(int(missing.sum()))
            return codes, col
    return np.arange(n, dtype=np.int64), "image"


@dataclass
class ClusterBootstrap:
    """Weights of ``n_boot`` cluster-bootstrap replicates over rows with cluster ``codes`` (any integers)."""

    codes: np.ndarray
    n_boot: int = 1000
    seed: int = 0
    alpha: float = 0.05

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes)
        _, self._dense = np.unique(self.codes, return_inverse=True)
        self.n_clusters = int(self._dense.max() + 1) if len(self._dense) else 0

    def weights(self, b: int) -> np.ndarray:
        """Row weights (how often each row's cluster was drawn) of replicate ``b``."""
        rng = np.random.default_rng([int(self.seed), int(b)])
        draws = rng.integers(0, self.n_clusters, size=self.n_clusters)
        counts = np.bincount(draws, minlength=self.n_clusters)
        return counts[self._dense].astype(np.float64)

    def __iter__(self) -> Iterator[np.ndarray]:
        for b in range(self.n_boot):
            yield self.weights(b)

    def describe(self) -> dict[str, Any]:
        return {"n_boot": self.n_boot, "seed": self.seed, "alpha": self.alpha, "n_clusters": self.n_clusters,
                "interval": "percentile"}


def ci_entry(estimate: float | None, values: list[float], n_boot: int, alpha: float) -> dict[str, Any]:
    """``{"estimate", "ci_low", "ci_high", "n_valid"}`` (+ ``null_reason`` when no replicate was defined)."""
    out: dict[str, Any] = {"estimate": estimate, "ci_low": None, "ci_high": None, "n_valid": len(values)}
    if values:
        lo, hi = np.quantile(np.asarray(values, dtype=np.float64), [alpha / 2, 1 - alpha / 2])
        out["ci_low"], out["ci_high"] = float(lo), float(hi)
    elif n_boot > 0:
        out["null_reason"] = "undefined in every bootstrap replicate"
    if estimate is None:
        out["estimate_null_reason"] = "undefined on the evaluated samples"
    return out


def bootstrap_stats(stat: Callable[[np.ndarray | None], Mapping[str, float | None]],
                    boot: ClusterBootstrap) -> dict[str, dict[str, Any]]:
    """Point estimates (``stat(None)``) and percentile CIs of every scalar ``stat`` returns, over ``boot``'s
    replicates (``stat(w)`` with replicate weights; values that are None in a replicate are left out)."""
    est = dict(stat(None))
    reps: dict[str, list[float]] = {k: [] for k in est}
    for w in boot:
        for k, v in stat(w).items():
            if v is not None and np.isfinite(v):
                reps.setdefault(k, []).append(float(v))
    return {k: ci_entry(est.get(k), reps.get(k, []), boot.n_boot, boot.alpha) for k in est}
