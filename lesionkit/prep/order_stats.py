"""Order statistics without numpy's generic overhead, for the small per-image arrays of prep and label-skintone.

``np.median`` spends most of its time on argument handling, NaN checks and a ``mean`` call when the array holds a
few thousand values; :func:`median` does one partial sort.
"""

from __future__ import annotations

import numpy as np

__all__ = ["median", "median_u8", "percentile_linear", "percentile_linear_u8"]


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


def _u8_cumulative(img: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    import cv2

    m = None if mask is None else np.ascontiguousarray(mask).view(np.uint8)
    return np.cumsum(cv2.calcHist([np.ascontiguousarray(img)], [0], m, [256], [0, 256]).ravel(), dtype=np.float64)


def _u8_rank(cum: np.ndarray, k: int) -> int:
    """The ``k``-th smallest value (0-based) from a cumulative 256-bin histogram."""
    return int(np.searchsorted(cum, k + 1))


def median_u8(img: np.ndarray, mask: np.ndarray | None = None) -> float:
    """``np.median(img[mask])`` of a uint8 array (``mask``: bool of the same shape, None = all; at least one pixel)
    from one histogram: no copy of the selected pixels, no sort."""
    cum = _u8_cumulative(img, mask)
    n = int(cum[-1])
    if n == 0:
        raise ValueError("median of an empty selection")
    hi = _u8_rank(cum, n // 2)
    return float(hi) if n % 2 else (_u8_rank(cum, n // 2 - 1) + hi) / 2.0


def percentile_linear_u8(img: np.ndarray, mask: np.ndarray | None, q: float) -> float:
    """``np.percentile(img[mask], q)`` (default "linear" method) of a uint8 array from one histogram."""
    cum = _u8_cumulative(img, mask)
    n = int(cum[-1])
    if n == 0:
        raise ValueError("percentile of an empty selection")
    pos = q / 100.0 * (n - 1)
    lo = int(np.floor(pos))
    a, b = float(_u8_rank(cum, lo)), float(_u8_rank(cum, min(lo + 1, n - 1)))
    return a + (b - a) * (pos - lo)
