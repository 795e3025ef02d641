"""CIELab (D65, 2° observer) from sRGB uint8: the one Lab implementation every skin-tone strategy uses.

Pinned implementation: the exact CIE formulas (sRGB decoding through an exact 256-entry table, the sRGB → XYZ
matrix and the D65 white point of :func:`skimage.color.rgb2lab`, ``f(t) = t^(1/3)`` above ``(6/29)^3``), in
float32 with OpenCV kernels for speed (``cv2.LUT``, ``cv2.transform``, ``cv2.pow``: about 0.15 ms for 128x128 on
one core vs 15 ms for skimage), so it agrees with scikit-image to float32 precision (tested: max |Δ| < 1e-3).

Why not OpenCV: ``cv2.cvtColor(float32 RGB in [0, 1], COLOR_RGB2Lab)`` approximates the sRGB curve and the cube
root; on synthetic skin it reads b* about +0.2 high and L* about -0.05 low (mean over skin pixels), which moves
ITA by about -0.5° — a systematic error of the size of the targets. It is only ever used here as an
independent check in the tests. OpenCV's 8-bit Lab (``COLOR_RGB2Lab`` on uint8) is scaled (L* x 255/100,
a*/b* + 128) and rounded to integers: never used for ITA.

Units: L* in [0, 100], a* and b* roughly in [-128, 127].
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["D65", "LAB_IMPLEMENTATION", "SRGB_TO_LINEAR", "XYZ_FROM_RGB", "lab_to_ita", "rgb_to_lab"]

LAB_IMPLEMENTATION = "lesionkit-numpy-cie-d65 (matches skimage.color.rgb2lab)"
D65 = np.array([0.95047, 1.0, 1.08883])  # the white point skimage.color uses by default (2° observer)
XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])  # skimage.color.colorconv.xyz_from_rgb


def _srgb_table() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)


SRGB_TO_LINEAR = _srgb_table()  # 8-bit sRGB code value -> linear RGB in [0, 1] (exact, float64)
_LUT32 = SRGB_TO_LINEAR.astype(np.float32)
_EPS = (6.0 / 29.0) ** 3
_KAPPA = 1.0 / (3.0 * (6.0 / 29.0) ** 2)
_LUT_CV = _LUT32.reshape(256, 1)
_M_CV = (XYZ_FROM_RGB / D65[:, None]).astype(np.float32)  # cv2.transform: dst = M @ src per pixel


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELab of sRGB uint8 colours ``(..., 3)`` (an image ``(H, W, 3)`` or a pixel list ``(N, 3)``) as float32.

    L* in [0, 100]; a*, b* in about [-128, 127]. D65 white, 2° observer, as :func:`skimage.color.rgb2lab`.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
        raise ValueError(f"expected sRGB uint8 colours with 3 channels in the last axis, got {rgb.dtype} {rgb.shape}")
    shape = rgb.shape
    img = np.ascontiguousarray(rgb.reshape(-1, 1, 3))
    xyz = cv2.transform(cv2.LUT(img, _LUT_CV), _M_CV)  # X/Xn, Y/Yn, Z/Zn
    np.maximum(xyz, 0.0, out=xyz)
    f = cv2.pow(xyz, 1.0 / 3.0)
    small = xyz <= _EPS
    if small.any():
        f[small] = xyz[small] * np.float32(_KAPPA) + np.float32(4.0 / 29.0)
    f = f.reshape(shape)
    out = np.empty(shape, np.float32)
    out[..., 0] = 116.0 * f[..., 1] - 16.0
    out[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    out[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return out


def lab_to_ita(L: np.ndarray | float, b: np.ndarray | float) -> np.ndarray | float:
    """Individual typology angle in degrees, ``atan2(L* - 50, b*) * 180 / pi`` (in (-180, 180]; skin: about -90..90).

    ``atan2`` and not ``atan((L* - 50) / b*)``: with ``atan`` a negative b* flips the sign (a light, slightly
    blue pixel reads as very dark) and b* = 0 divides by zero. Scalars in, float out; arrays in, float64 array out.
    """
    out = np.degrees(np.arctan2(np.asarray(L, dtype=np.float64) - 50.0, np.asarray(b, dtype=np.float64)))
    return float(out) if np.ndim(out) == 0 else out
