"""Order statistics without numpy's generic overhead, for the small per-image arrays of prep and label-skintone.

``np.median`` spends most of its time on argument handling, NaN checks and a ``mean`` call when the array holds a
few thousand values; :func:`median` does one partial sort.
"""

from __future__ import annotations

import numpy as np

__all__ = ["median", "percentile_linear"]


def median(x: np.ndarray) -> float:
    """The median of a non-empty 1-D array (NaN-free): the middle value, or the mean of the two middle values
    (computed in float64) for an even size. Equal to ``np.median`` up to float32 rounding of that mean."""
    n = x.size
    if n == 0:
        raise ValueError("median of an empty array")
    k = n // 2
    if n % 2:
        return float(np.partition(x, k)[k])
    p = np.partition(x, (k - 1, k))
    return (float(p[k - 1]) + float(p[k])) / 2.0


def percentile_linear(x: np.ndarray, q: float) -> float:
    """``np.percentile(x, q)`` (default "linear" method) of a non-empty 1-D array with one partial sort: the
    value at fractional rank ``q / 100 * (n - 1)``, interpolated between its two neighbours."""
    n = x.size
    if n == 0:
        raise ValueError("percentile of an empty array")
    pos = q / 100.0 * (n - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, n - 1)
    p = np.partition(x, (lo, hi)) if hi != lo else np.partition(x, lo)
    a, b = float(p[lo]), float(p[hi])
    return a + (b - a) * (pos - lo)
