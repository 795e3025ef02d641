"""Gamma correction and colour constancy (Shades of Gray) for RGB uint8 images.

Conventions
-----------
Images are ``(H, W, 3)`` uint8 RGB; masks are ``(H, W)`` bool (True = use this pixel). Intensities are
normalised to ``x = v / 255`` in ``[0, 1]`` for the formulas below.

Gamma. ``apply_gamma(img, gamma)`` maps every channel value ``v`` to ``round(255 * (v / 255) ** (1 / gamma))``.
So ``gamma > 1`` BRIGHTENS (mid grey 128 -> 144 for gamma 1.2, -> 161 for 1.5), ``gamma < 1`` darkens and
``gamma = 1`` is the identity. This is the "display gamma" reading that matches Mishra et al.'s use of gamma
1.2-1.5 to brighten dark dermoscopy images: ``--gamma 1.2`` brightens. Black (0) and white (255) are fixed.

Colour constancy. :func:`shades_of_gray` estimates the illuminant per channel as the Minkowski p-norm mean
``e_c = (mean(x_c ** p)) ** (1 / p)`` (Finlayson & Trezzi 2004): ``p = 1`` is grey-world, ``p = inf`` is
max-RGB (white patch); ``p = 6`` is the usual choice for dermoscopy (Barata et al. 2015).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from lesionkit.errors import InputError, UsageError

# Rec. 601 luma weights (R, G, B): the "luminance" auto_gamma targets.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def _check_img(img: np.ndarray) -> None:
    if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3):
        got = f"{getattr(img, 'dtype', type(img).__name__)} {getattr(img, 'shape', '')}"
        raise InputError(f"expected an RGB uint8 image of shape (H, W, 3) (got {got})")


def _check_mask(mask: np.ndarray | None, img: np.ndarray) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask).astype(bool)
    if m.shape != img.shape[:2]:
        raise InputError(f"mask shape {m.shape} does not match the image {img.shape[:2]}")
    return m if m.any() else None  # an empty mask means "no information": fall back to the whole image


_ROW3 = np.ones((1, 3), np.uint8)


def rgb_max(img: np.ndarray) -> np.ndarray:
    """``img.max(-1)`` of an RGB uint8 image ``(H, W, 3)`` as a new contiguous ``(H, W)`` uint8 array: a 1x3
    dilation of the interleaved rows anchored at the left puts max(R, G, B) of pixel x at byte 3x (10-40x
    faster than numpy's reduction over a last axis of 3, 2.5x faster than a channel split)."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    return cv2.dilate(np.ascontiguousarray(img).reshape(h, w * 3), _ROW3, anchor=(0, 0))[:, ::3].copy()


def rgb_min(img: np.ndarray) -> np.ndarray:
    """``img.min(-1)`` of an RGB uint8 image ``(H, W, 3)``, as :func:`rgb_max` (a 1x3 erosion)."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    return cv2.erode(np.ascontiguousarray(img).reshape(h, w * 3), _ROW3, anchor=(0, 0))[:, ::3].copy()


def gamma_lut(gamma: float) -> np.ndarray:
    """The 256-entry uint8 lookup table ``lut[v] = round(255 * (v / 255) ** (1 / gamma))`` (round half to even).

    ``gamma > 1`` brightens, ``gamma < 1`` darkens, ``gamma == 1`` is the identity; ``gamma`` must be > 0.
    """
    g = float(gamma)
    if not (g > 0.0 and math.isfinite(g)):
        raise UsageError(f"gamma must be a positive finite number (got {gamma})", hint="e.g. 1.2 (brightens)")
    x = np.arange(256, dtype=np.float64) / 255.0
    return np.clip(np.rint(255.0 * x ** (1.0 / g)), 0, 255).astype(np.uint8)


def apply_gamma(img: np.ndarray, gamma: float) -> np.ndarray:
    """Apply :func:`gamma_lut` to every channel (``cv2.LUT``); returns a new uint8 image of the same shape."""
    _check_img(img)
    return cv2.LUT(img, gamma_lut(gamma))


def _luma_mean_after(hists: np.ndarray, lut: np.ndarray) -> float:
    """Mean Rec. 601 luma in [0, 1] of the image whose per-channel histograms are ``hists`` after ``lut``."""
    vals = lut.astype(np.float64) / 255.0
    n = hists[0].sum()
    return float(sum(w * (h @ vals) for w, h in zip(LUMA_WEIGHTS, hists)) / n)


def auto_gamma(img: np.ndarray, mask: np.ndarray | None = None, target: float = 0.5,
               bounds: tuple[float, float] = (0.5, 2.5)) -> float:
    """The gamma for :func:`apply_gamma` that maps the mean luma of ``img[mask]`` to ``target``, clamped to ``bounds``.

    Luma is Rec. 601 ``Y = 0.299 R + 0.587 G + 0.114 B`` in [0, 1]. ``mask`` (bool HxW) selects the pixels
    that define brightness, e.g. healthy skin or the field of view; ``None`` (or an empty mask) uses every
    pixel. ``target`` is in (0, 1).

    Derivation. With ``y = x ** (1 / gamma)``, a single level ``m`` maps to ``target`` when
    ``gamma = log(m) / log(target)``; applied to the log-average (geometric mean) luma this is exact, since
    ``mean(log y) = mean(log x) / gamma``. That closed form is the starting point; because the arithmetic mean
    of ``x ** (1 / gamma)`` is not ``mean(x) ** (1 / gamma)`` (Jensen) and the LUT rounds to 8 bits, the
    value is then refined by bisection on ``gamma`` (the mean after the actual uint8 LUT is monotone in
    ``gamma``), computed exactly from the per-channel histograms. The result is clamped to ``bounds``; the
    returned gamma is rounded to 1e-4. An all-black or all-white selection returns 1.0 (nothing to fix).
    """
    _check_img(img)
    t = float(target)
    if not 0.0 < t < 1.0:
        raise UsageError(f"auto_gamma target must be in (0, 1) (got {target})", hint="e.g. 0.5")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not 0.0 < lo <= hi:
        raise UsageError(f"auto_gamma bounds must satisfy 0 < low <= high (got {bounds})")
    m = _check_mask(mask, img)
    px = img[m] if m is not None else img.reshape(-1, 3)
    hists = np.stack([np.bincount(px[:, c], minlength=256).astype(np.float64) for c in range(3)])
    luma = (px.astype(np.float64) @ np.asarray(LUMA_WEIGHTS)) / 255.0
    if luma.max() <= 0.0 or luma.min() >= 1.0:
        return 1.0
    # closed form on the log-average of the non-black pixels (log 0 is -inf)
    geo = float(np.exp(np.mean(np.log(np.clip(luma, 1.0 / 255.0, 1.0)))))
    g0 = math.log(geo) / math.log(t) if 0.0 < geo < 1.0 else 1.0
    f = lambda g: _luma_mean_after(hists, gamma_lut(g)) - t  # increasing in g
    if f(lo) >= 0.0:
        return round(lo, 4)
    if f(hi) <= 0.0:
        return round(hi, 4)
    a, b = lo, hi
    g = min(max(g0, lo), hi)
    for _ in range(40):  # bisection, seeded with the closed form
        if f(g) < 0.0:
            a = g
        else:
            b = g
        if b - a < 1e-5:
            break
        g = 0.5 * (a + b)
    # the 8-bit LUT makes f a step function: take whichever end of the final bracket lands closer
    g = a if abs(f(a)) <= abs(f(b)) else b
    return round(float(g), 4)


def shades_of_gray(img: np.ndarray, p: float = 6, mask: np.ndarray | None = None
                   ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Shades-of-Gray colour constancy (Finlayson & Trezzi 2004). Returns ``(corrected uint8 image, (gR, gG, gB))``.

    The illuminant is estimated per channel over ``img[mask]`` (``None`` or empty mask: all pixels) as the
    Minkowski mean ``e_c = (mean(x_c ** p)) ** (1 / p)`` with ``x = v / 255``; ``p = 1`` is grey-world,
    ``p = inf`` (``float('inf')``) is max-RGB, ``p >= 1`` is required. Gains ``g_c = mean(e) / e_c``: after
    correction every channel's p-mean equals the average of the three before, so the estimated illuminant
    becomes grey at the SAME brightness (brightness preserved; the gains' mean is >= 1 by AM-HM, equal to 1 only
    without a cast). The gains are applied to every pixel (also outside ``mask``): ``round(v * g_c)`` clipped
    to [0, 255]. A channel that is all zero in the selection gets gain 1.
    """
    _check_img(img)
    pf = float(p)
    if not (pf >= 1.0):
        raise UsageError(f"shades-of-gray p must be >= 1 or inf (got {p})", hint="p = 6 is the usual choice")
    m = _check_mask(mask, img)
    px = (img[m] if m is not None else img.reshape(-1, 3)).astype(np.float64) / 255.0
    if math.isinf(pf):
        e = px.max(axis=0)
    else:
        e = np.mean(px**pf, axis=0) ** (1.0 / pf)
    valid = e > 0
    if not valid.any():
        return img.copy(), (1.0, 1.0, 1.0)
    ref = float(e[valid].mean())
    gains = np.where(valid, ref / np.where(valid, e, 1.0), 1.0)
    out = np.clip(np.rint(img.astype(np.float32) * gains.astype(np.float32)), 0, 255).astype(np.uint8)
    return out, (float(gains[0]), float(gains[1]), float(gains[2]))


__all__ = ["LUMA_WEIGHTS", "apply_gamma", "auto_gamma", "gamma_lut", "shades_of_gray"]
