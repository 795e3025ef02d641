"""Named registry of image corruptions, each as a numpy function (one RGB ``uint8`` image) and a batched torch
function (``NCHW`` tensors on any device) that give **bit-identical** results for the same ``(seed, sample_id)``.

Every corruption works on 8-bit pixel values (before any normalisation) and returns 8-bit values. ``level`` is the
corruption's strength in the unit of its ``unit`` field (see :data:`CORRUPTIONS` or ``lesionkit robustness --list``).

Determinism. A sample's randomness comes from a key: ``blake2b(f"{seed}|{sample_id}|{name}|{params}|{level}")``
(never Python's ``hash()``), so every model, run, device and batch composition sees the same corrupted image.
Per-pixel random numbers come from a counter-based hash (``h = mix32(mix32(i ^ k1) ^ k2)``, the "lowbias32" integer
mixer, with ``i`` the pixel / value index and ``k1, k2`` from the key), computed with the same 32-bit integer
operations in numpy (``uint32``) and torch (``int32`` bit patterns), so the GPU draws exactly what numpy draws
without a host round trip. Overlay
geometry (hair strands, ink marks) is drawn on the CPU with :func:`numpy.random.default_rng` seeded from the key
(OpenCV anti-aliased strokes, :mod:`lesionkit.synthetic` helpers) and blended on the device.

Exactness. Everything is integer arithmetic or correctly rounded IEEE float operations (no transcendental
function evaluated per pixel on the device):

* ``impulse`` (salt-and-pepper) at fraction ``F``: exactly ``K = floor(F*H*W + 0.5)`` pixels change, all three
  channels of a chosen pixel together. The ``K`` pixels with the smallest keys ``(h << 26) | pixel_index`` (unique,
  so the choice has no ties) are chosen; of those, the ``B = floor(0.75*K + 0.5)`` smallest become black (0, 0, 0)
  and the other ``K - B`` white (255, 255, 255): black:white = 3:1 with the black count rounded half up
  (``K = 10`` → 8 black + 2 white; ``K = 2`` → 2 + 0; ``K = 6`` → 5 + 1).
* ``gaussian_noise`` σ (fraction of 255): ``out = clip(floor(x + t[d] + 0.5))`` per value in float32, with ``t``
  the 65536-entry table ``float32(255*σ*Φ⁻¹((j + 0.5)/65536))`` of standard-normal quantiles (so |z| ≤ 4.3) and
  ``d`` a 16-bit draw: value ``2i`` (values counted in channel, row, column order) takes the low half of ``h(i)``,
  value ``2i + 1`` the high half.
* Blurs (``gaussian_blur``, ``motion_blur``, ``defocus``): the float kernel is quantised to integer weights that sum
  to exactly 2**14 (largest-remainder rounding); ``out = (Σ w·x + 2**13) >> 14`` with OpenCV's default border
  (``BORDER_REFLECT_101``). Integer sums stay below 2**24, so the float32 device path is exact. Within 1 level of
  ``cv2.GaussianBlur`` / ``cv2.filter2D`` with the float kernel (tests).
* ``gamma`` / ``brightness`` / ``contrast``: 256-entry look-up tables (per image for contrast, whose pivot is the
  image's mean grey level ``Σ(299 R + 587 G + 114 B) / (1000 H W)``, as torchvision's ``adjust_contrast``).
* ``jpeg``: ``cv2.imencode`` / ``cv2.imdecode`` at the quality (the torch path runs it on the host for any device).
* ``hair`` / ``ink``: opacity canvas ``a`` (0..255) and colour ``c``: ``out = (x*(255 - a) + c*a + 127) // 255``.

Levels are in pixels of the image the corruption is applied to (the model-input-sized cache image in
``lesionkit robustness``).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from lesionkit.errors import UsageError

__all__ = [
    "CORRUPTIONS", "Corruption", "CorruptionSpec", "SampleKey", "apply_batch", "apply_numpy", "black_count",
    "corrupt", "corrupt_batch", "defocus_kernel", "gaussian_kernel", "get_corruption", "impulse_counts",
    "motion_kernel", "parse_corruption", "quantise_kernel", "sample_key",
]

M32 = 0xFFFFFFFF
KERNEL_BITS = 14
KERNEL_SUM = 1 << KERNEL_BITS
TABLE_BITS = 16
INDEX_BITS = 26  # pixel index bits in the impulse sort key (images up to 67 Mpx)


# ------------------------------------------------------------------------------------------------- keys & hashing


@dataclass(frozen=True)
class SampleKey:
    """The random key of one (seed, sample_id, corruption, params, level): two 32-bit hash keys and a 63-bit seed."""

    k1: int
    k2: int
    seed64: int


def _canon(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return repr(float(v))
    return str(v)


def sample_key(seed: int, sample_id: str, name: str, level: float, params: dict[str, Any] | None = None) -> SampleKey:
    """Stable key (blake2b, independent of Python's hash randomisation, platform and process)."""
    p = ",".join(f"{k}={_canon(v)}" for k, v in sorted((params or {}).items()))
    msg = f"{int(seed)}|{sample_id}|{name}|{p}|{_canon(level)}".encode()
    d = hashlib.blake2b(msg, digest_size=16).digest()
    return SampleKey(int.from_bytes(d[0:4], "little"), int.from_bytes(d[4:8], "little"),
                     int.from_bytes(d[8:16], "little") >> 1)


_MUL1 = 0x7FEB352D
_MUL2 = 0x846CA68B


def _signed32(v: int) -> int:
    """The int32 value with the bit pattern of the uint32 ``v``."""
    v &= M32
    return v - (1 << 32) if v >= 1 << 31 else v


def _hash_np(counter: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """32-bit hash ``mix32(mix32(i ^ k1) ^ k2)`` of ``uint32`` counters ("lowbias32" mixer, wrap-around products)."""
    x = counter.astype(np.uint32) ^ np.uint32(k1)
    for rnd in range(2):
        x ^= x >> np.uint32(16)
        x *= np.uint32(_MUL1)
        x ^= x >> np.uint32(15)
        x *= np.uint32(_MUL2)
        x ^= x >> np.uint32(16)
        if rnd == 0:
            x ^= np.uint32(k2)
    return x


def _hash_torch(counter: Any, k1: Any, k2: Any) -> Any:
    """:func:`_hash_np` on ``int32`` tensors holding the uint32 bit patterns (``counter [1, N]``, keys ``[B, 1]``).

    torch has no unsigned 32-bit shifts, so logical shifts are arithmetic shifts masked to the low bits; int32
    products wrap modulo 2**32 on every backend. Half the memory traffic of int64 arithmetic, all in place.
    """
    x = counter ^ k1
    for rnd in range(2):
        x ^= (x >> 16) & 0xFFFF
        x *= _signed32(_MUL1)
        x ^= (x >> 15) & 0x1FFFF
        x *= _signed32(_MUL2)
        x ^= (x >> 16) & 0xFFFF
        if rnd == 0:
            x ^= k2
    return x


@lru_cache(maxsize=1)
def _normal_table() -> np.ndarray:
    from scipy.special import ndtri

    return ndtri((np.arange(1 << TABLE_BITS, dtype=np.float64) + 0.5) / (1 << TABLE_BITS))


# ------------------------------------------------------------------------------------------------- kernels


def quantise_kernel(kernel: np.ndarray, total: int = KERNEL_SUM) -> np.ndarray:
    """Non-negative float kernel → int64 weights summing to exactly ``total`` (largest-remainder rounding)."""
    k = np.asarray(kernel, dtype=np.float64)
    if (k < 0).any() or k.sum() <= 0:
        raise ValueError("kernel weights must be non-negative with a positive sum")
    scaled = k / k.sum() * total
    q = np.floor(scaled).astype(np.int64)
    short = int(total - q.sum())
    if short:
        rem = (scaled - q).ravel()
        order = np.lexsort((np.arange(rem.size), -rem))  # largest remainder first, ties by position
        q.ravel()[order[:short]] += 1
    return q


def gaussian_kernel(k: int, sigma: float = 0.0) -> np.ndarray:
    """2-D float64 ``k x k`` Gaussian, the outer product of ``cv2.getGaussianKernel(k, sigma)`` (σ ≤ 0: OpenCV's
    ``0.3*((k-1)*0.5 - 1) + 0.8``)."""
    import cv2

    g = cv2.getGaussianKernel(int(k), float(sigma), cv2.CV_64F).ravel()
    return np.outer(g, g)


def motion_kernel(length: int, angle_deg: float = 45.0) -> np.ndarray:
    """Line kernel (float64, sums to 1): ``length`` points spaced so the line spans ``length`` pixels along its
    dominant axis, through the kernel centre at ``angle_deg`` (counter-clockwise from +x, image y pointing down),
    each splatted bilinearly with weight ``1/length``. 0° = a row of ones, 45° = the anti-diagonal, 90° = a column.
    Side ``length`` (odd) or ``length + 1`` (even)."""
    n = int(length)
    if n < 1:
        raise ValueError("motion blur length must be >= 1")
    side = 2 * math.ceil((n - 1) / 2) + 1
    c = (side - 1) / 2
    th = math.radians(float(angle_deg))
    dx, dy = math.cos(th), -math.sin(th)
    s = 1.0 / max(abs(dx), abs(dy))
    ker = np.zeros((side, side), np.float64)
    for j in range(n):
        t = (j - (n - 1) / 2) * s
        x, y = c + t * dx, c + t * dy
        x0, y0 = math.floor(x + 1e-9), math.floor(y + 1e-9)
        fx, fy = max(0.0, x - x0), max(0.0, y - y0)
        for yy, xx, w in ((y0, x0, (1 - fx) * (1 - fy)), (y0, x0 + 1, fx * (1 - fy)),
                          (y0 + 1, x0, (1 - fx) * fy), (y0 + 1, x0 + 1, fx * fy)):
            if w > 1e-12:
                ker[min(max(yy, 0), side - 1), min(max(xx, 0), side - 1)] += w / n
    return ker


def defocus_kernel(radius: float) -> np.ndarray:
    """Disk kernel (float64, sums to 1): ones where ``x² + y² ≤ radius²`` on a ``2*ceil(radius) + 1`` grid."""
    r = float(radius)
    if r < 0.5:
        raise ValueError("defocus radius must be >= 0.5 pixels")
    h = math.ceil(r)
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    ker = (xx * xx + yy * yy <= r * r + 1e-9).astype(np.float64)
    return ker / ker.sum()


def _taps(qk: np.ndarray) -> list[tuple[int, int, int]]:
    return [(int(y), int(x), int(qk[y, x])) for y, x in zip(*np.nonzero(qk))]


def _filter_np(img: np.ndarray, qk: np.ndarray) -> np.ndarray:
    r = qk.shape[0] // 2
    h, w = img.shape[:2]
    pad = np.pad(img.astype(np.int32), ((r, r), (r, r), (0, 0)), mode="reflect")
    acc = np.zeros(img.shape, np.int32)
    for y, x, wt in _taps(qk):
        acc += wt * pad[y:y + h, x:x + w]
    return ((acc + (KERNEL_SUM >> 1)) >> KERNEL_BITS).astype(np.uint8)


# OpenCV filters float32 images directly (not through the DFT) below 130 kernel taps: sides up to 11
_CV_DIRECT_MAX_SIDE = 11


def _filter_cv2(x: Any, qk: np.ndarray) -> Any:
    """CPU float32 batch: ``cv2.filter2D`` per image with the integer weights (5x faster than a depthwise conv2d).

    Exact for the same reason as the convolution: every product and partial sum is an integer below 2**24, so
    float32 holds it exactly whatever order OpenCV sums in; ``BORDER_REFLECT_101`` is the numpy path's border.
    """
    import cv2
    import torch

    hwc = x.permute(0, 2, 3, 1).contiguous().numpy()
    out = np.empty_like(hwc)
    k = qk.astype(np.float32)
    for i in range(hwc.shape[0]):
        cv2.filter2D(hwc[i], -1, k, dst=out[i], borderType=cv2.BORDER_REFLECT_101)
    acc = torch.from_numpy(out).permute(0, 3, 1, 2)
    return ((acc + float(KERNEL_SUM >> 1)) * (1.0 / KERNEL_SUM)).floor()


def _filter_torch(x: Any, qk: np.ndarray) -> Any:
    import torch
    import torch.nn.functional as F

    r = qk.shape[0] // 2
    h, w = x.shape[-2:]
    if x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and qk.shape[0] <= _CV_DIRECT_MAX_SIDE:
        return _filter_cv2(x, qk)
    pad = F.pad(x, (r, r, r, r), mode="reflect") if r else x
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.dim() == 4:
        # one depthwise convolution instead of a tap loop: every product and partial sum is an integer below
        # 255 * 2**14 < 2**24, so float32 accumulates them exactly in any order -> bit-identical to the loop
        # (and to the numpy path). Not on CUDA, where float32 convolutions may run in TF32.
        c = x.shape[1]
        wk = torch.as_tensor(qk, dtype=x.dtype).expand(c, 1, *qk.shape).contiguous()
        acc = F.conv2d(pad, wk, groups=c)
        return ((acc + float(KERNEL_SUM >> 1)) * (1.0 / KERNEL_SUM)).floor()
    acc = None
    for y, xx, wt in _taps(qk):
        term = pad[..., y:y + h, xx:xx + w] * float(wt)
        acc = term if acc is None else acc + term
    return ((acc + float(KERNEL_SUM >> 1)) * (1.0 / KERNEL_SUM)).floor()


def _check_kernel_fits(side: int, h: int, w: int, name: str) -> None:
    if side // 2 >= min(h, w):
        raise UsageError(f"{name}: kernel of side {side} is too large for a {h}x{w} image",
                         hint="use a smaller level (kernel radius must be below the image side)")


# ------------------------------------------------------------------------------------------------- the corruptions
# numpy functions: (img uint8 HWC, level, key, params) -> uint8 HWC
# torch functions: (x float32 [B,3,H,W] integer-valued 0..255, level, keys, params) -> same


def impulse_counts(fraction: float, n_pixels: int) -> tuple[int, int]:
    """(changed pixels K, black pixels B) for impulse noise: ``K = floor(F*N + 0.5)``, ``B = black_count(K)``."""
    k = math.floor(float(fraction) * n_pixels + 0.5)
    return k, black_count(k)


def black_count(k: int) -> int:
    """Black pixels among ``k`` impulse pixels: ``floor(0.75*k + 0.5)`` (3:1, half rounded up); white = k - that."""
    return (3 * int(k) + 2) // 4


def _impulse_np(img: np.ndarray, level: float, key: SampleKey, params: dict) -> np.ndarray:
    h, w = img.shape[:2]
    n = h * w
    k, b = impulse_counts(level, n)
    out = img.copy()
    if k == 0:
        return out
    idx = np.arange(n, dtype=np.int64)
    keys = (_hash_np(idx, key.k1, key.k2).astype(np.int64) << INDEX_BITS) | idx
    order_k = _smallest_mask_np(keys, k)
    black = _smallest_mask_np(keys, b)
    flat = out.reshape(n, -1)
    flat[black] = 0
    flat[order_k & ~black] = 255
    return out


def _smallest_mask_np(keys: np.ndarray, k: int) -> np.ndarray:
    if k <= 0:
        return np.zeros(keys.shape, bool)
    if k >= keys.size:
        return np.ones(keys.shape, bool)
    t = np.partition(keys, k - 1)[k - 1]
    return keys <= t


def _smallest_mask_torch(keys: Any, k: int) -> Any:
    import torch

    if k <= 0:
        return torch.zeros(keys.shape, dtype=torch.bool, device=keys.device)
    if k >= keys.shape[1]:
        return torch.ones(keys.shape, dtype=torch.bool, device=keys.device)
    t = torch.topk(keys, k, dim=1, largest=False, sorted=True).values[:, -1:]
    return keys <= t


def _key_tensors(keys: Sequence[SampleKey], device: Any) -> tuple[Any, Any]:
    import torch

    k1 = torch.tensor([_signed32(k.k1) for k in keys], dtype=torch.int32, device=device)[:, None]
    k2 = torch.tensor([_signed32(k.k2) for k in keys], dtype=torch.int32, device=device)[:, None]
    return k1, k2


def _impulse_torch(x: Any, level: float, keys: Sequence[SampleKey], params: dict) -> Any:
    import torch

    bsz, _c, h, w = x.shape
    n = h * w
    k, b = impulse_counts(level, n)
    if k == 0:
        return x
    k1, k2 = _key_tensors(keys, x.device)
    idx = torch.arange(n, dtype=torch.int32, device=x.device)[None, :]
    skey = ((_hash_torch(idx, k1, k2).long() & M32) << INDEX_BITS) | idx.long()
    if k >= n:
        chosen = torch.ones(skey.shape, dtype=torch.bool, device=x.device)
        black = _smallest_mask_torch(skey, b)
    else:  # one partial sort gives both thresholds (the K-th and the B-th smallest key; B <= K)
        kth = torch.topk(skey, k, dim=1, largest=False, sorted=True).values
        chosen = skey <= kth[:, k - 1:k]
        black = skey <= kth[:, b - 1:b] if b > 0 else torch.zeros_like(chosen)
    white = (chosen & ~black).view(bsz, 1, h, w)
    black = black.view(bsz, 1, h, w)
    out = torch.where(black, torch.zeros((), dtype=x.dtype, device=x.device), x)
    return torch.where(white, torch.full((), 255.0, dtype=x.dtype, device=x.device), out)


@lru_cache(maxsize=64)
def _noise_table(level: float) -> np.ndarray:
    """``float32(255 * σ * Φ⁻¹((j + 0.5) / 65536))`` for j < 65536: one noise value per 16-bit draw."""
    return ((255.0 * float(level)) * _normal_table()).astype(np.float32)


def _noise_np(img: np.ndarray, level: float, key: SampleKey) -> np.ndarray:
    h, w, c = img.shape
    n = h * w * c
    bits = _hash_np(np.arange((n + 1) // 2, dtype=np.uint32), key.k1, key.k2)
    draws = np.empty(2 * bits.size, np.uint32)
    draws[0::2] = bits & np.uint32(0xFFFF)
    draws[1::2] = bits >> np.uint32(16)
    # value j in C, H, W order (the device layout) gets the j-th 16-bit draw
    return _noise_table(level)[draws[:n]].reshape(c, h, w).transpose(1, 2, 0)


def _gauss_noise_np(img: np.ndarray, level: float, key: SampleKey, params: dict) -> np.ndarray:
    v = img.astype(np.float32) + _noise_np(img, level, key)
    return np.clip(np.floor(v + np.float32(0.5)), 0, 255).astype(np.uint8)


def _gauss_noise_torch(x: Any, level: float, keys: Sequence[SampleKey], params: dict) -> Any:
    import torch

    bsz, c, h, w = x.shape
    n = c * h * w
    k1, k2 = _key_tensors(keys, x.device)
    bits = _hash_torch(torch.arange((n + 1) // 2, dtype=torch.int32, device=x.device)[None, :], k1, k2)
    draws = torch.stack((bits & 0xFFFF, (bits >> 16) & 0xFFFF), dim=-1).view(bsz, -1)[:, :n]
    table = torch.from_numpy(_noise_table(level)).to(x.device)
    v = x.float() + table[draws].view(bsz, c, h, w)
    return torch.floor(v + 0.5).clamp_(0, 255).to(x.dtype)


def _kernel_for(name: str, level: float, params: dict) -> np.ndarray:
    if name == "gaussian_blur":
        k = round(level)
        if k < 1 or k % 2 == 0:
            raise UsageError(f"gaussian_blur level {level}: the kernel size must be an odd integer",
                             hint="e.g. --corruption gaussian_blur:3,5,7")
        return quantise_kernel(gaussian_kernel(k, float(params.get("sigma", 0.0))))
    if name == "motion_blur":
        return quantise_kernel(motion_kernel(round(level), float(params.get("angle", 45.0))))
    if name == "defocus":
        return quantise_kernel(defocus_kernel(float(level)))
    raise KeyError(name)


def _blur_np(name: str) -> Callable[..., np.ndarray]:
    def fn(img: np.ndarray, level: float, key: SampleKey, params: dict) -> np.ndarray:
        qk = _kernel_for(name, level, params)
        _check_kernel_fits(qk.shape[0], img.shape[0], img.shape[1], name)
        return _filter_np(img, qk)

    return fn


def _blur_torch(name: str) -> Callable[..., Any]:
    def fn(x: Any, level: float, keys: Sequence[SampleKey], params: dict) -> Any:
        qk = _kernel_for(name, level, params)
        _check_kernel_fits(qk.shape[0], x.shape[-2], x.shape[-1], name)
        return _filter_torch(x, qk)

    return fn


def _lut_np_apply(img: np.ndarray, lut: np.ndarray) -> np.ndarray:
    return lut[img]


def _gamma_lut(g: float) -> np.ndarray:
    v = np.arange(256, dtype=np.float64)
    return np.clip(np.floor(255.0 * (v / 255.0) ** float(g) + 0.5), 0, 255).astype(np.uint8)


def _brightness_lut(f: float) -> np.ndarray:
    v = np.arange(256, dtype=np.float64)
    return np.clip(np.floor(v * float(f) + 0.5), 0, 255).astype(np.uint8)


def _global_lut(make: Callable[[float], np.ndarray]) -> tuple[Callable[..., np.ndarray], Callable[..., Any]]:
    def f_np(img: np.ndarray, level: float, key: SampleKey, params: dict) -> np.ndarray:
        return make(level)[img]

    def f_t(x: Any, level: float, keys: Sequence[SampleKey], params: dict) -> Any:
        import torch

        lut = torch.from_numpy(make(level).astype(np.float32)).to(x.device)
        return lut[x.long()]

    return f_np, f_t


def contrast_pivot(img: np.ndarray) -> float:
    """Mean grey level of an RGB uint8 image: ``Σ(299 R + 587 G + 114 B) / (1000 H W)`` (exact integer sum)."""
    s = int((img[..., 0].astype(np.int64) * 299 + img[..., 1].astype(np.int64) * 587
             + img[..., 2].astype(np.int64) * 114).sum())
    return s / (1000 * img.shape[0] * img.shape[1])


def _contrast_np(img: np.ndarray, level: float, key: SampleKey, params: dict) -> np.ndarray:
    m = contrast_pivot(img)
    v = np.arange(256, dtype=np.float64)
    lut = np.clip(np.floor(m + float(level) * (v - m) + 0.5), 0, 255).astype(np.uint8)
    return lut[img]


def _contrast_torch(x: Any, level: float, keys: Sequence[SampleKey], params: dict) -> Any:
    import torch

    bsz, c, h, w = x.shape
    xi = x.long()
    s = (xi[:, 0] * 299 + xi[:, 1] * 587 + xi[:, 2] * 114).sum(dim=(1, 2))  # exact int64
    m = s.double() / float(1000 * h * w)  # correctly rounded, as Python's int / int
    v = torch.arange(256, dtype=torch.float64, device=x.device)[None, :]
    lut = torch.floor(m[:, None] + float(level) * (v - m[:, None]) + 0.5).clamp_(0, 255).to(x.dtype)  # [B, 256]
    return torch.gather(lut, 1, xi.reshape(bsz, -1)).view(bsz, c, h, w)


def _jpeg_np(img: np.ndarray, level: float, key: SampleKey, params: dict) -> np.ndarray:
    import cv2

    q = round(level)
    if not 1 <= q <= 100:
        raise UsageError(f"jpeg quality {level} outside 1..100", hint="e.g. --corruption jpeg:50,20,10")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        raise RuntimeError("cv2.imencode failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _per_sample_host(fn_np: Callable[..., np.ndarray]) -> Callable[..., Any]:
    """Torch wrapper for corruptions computed on the host (JPEG): per sample through numpy, back to the device."""

    def f_t(x: Any, level: float, keys: Sequence[SampleKey], params: dict) -> Any:
        import torch

        host = x.detach().to("cpu", torch.uint8).permute(0, 2, 3, 1).numpy()
        outs = np.stack([fn_np(np.ascontiguousarray(host[i]), level, keys[i], params) for i in range(len(keys))])
        return torch.from_numpy(outs).permute(0, 3, 1, 2).to(x.device, x.dtype)

    return f_t


def _hair_overlay(h: int, w: int, level: float, key: SampleKey) -> tuple[np.ndarray, np.ndarray]:
    """(opacity canvas uint8 HxW, RGB colour uint8[3]) of ``level`` dark hair strands (synthetic.py's Bezier strands)."""
    from lesionkit.synthetic import hair_canvas, hair_draws

    rng = np.random.default_rng(key.seed64)
    s = max(h, w)
    base = rng.uniform(12.0, 55.0)
    colour = np.clip(np.rint([base * 1.15, base, base * 0.82]), 0, 255).astype(np.uint8)
    canvas = hair_canvas(hair_draws(rng, round(level), (0.6, 0.95)), s, (w / 2.0, h / 2.0), 0.45 * s)
    return np.ascontiguousarray(canvas[:h, :w]), colour


INK_COLOURS = ((92, 58, 150), (64, 72, 168), (118, 62, 140))  # surgical-marker violets / blues (RGB)


def _ink_overlay(h: int, w: int, level: float, key: SampleKey) -> tuple[np.ndarray, np.ndarray]:
    """``level`` surgical-ink marks (synthetic.py's rings / dots / strokes around a lesion-sized region)."""
    from lesionkit.synthetic import _draw_ink

    rng = np.random.default_rng(key.seed64)
    s = max(h, w)
    colour = np.clip(np.asarray(INK_COLOURS[int(rng.integers(len(INK_COLOURS)))], np.float64)
                     + rng.uniform(-12, 12, 3), 0, 255).round().astype(np.uint8)
    canvas = np.zeros((s, s), np.uint8)
    for _ in range(round(level)):
        centre = (w / 2.0 + rng.normal(0, 0.06) * s, h / 2.0 + rng.normal(0, 0.06) * s)
        np.maximum(canvas, _draw_ink(rng, s, centre, rng.uniform(0.14, 0.3) * s), out=canvas)
    return np.ascontiguousarray(canvas[:h, :w]), colour


def _blend_np(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.int32)[..., None]
    return ((img.astype(np.int32) * (255 - a) + colour.astype(np.int32) * a + 127) // 255).astype(np.uint8)


def _overlay(make: Callable[[int, int, float, SampleKey], tuple[np.ndarray, np.ndarray]]
             ) -> tuple[Callable[..., np.ndarray], Callable[..., Any]]:
    def f_np(img: np.ndarray, level: float, key: SampleKey, params: dict) -> np.ndarray:
        a, col = make(img.shape[0], img.shape[1], level, key)
        return _blend_np(img, a, col)

    def f_t(x: Any, level: float, keys: Sequence[SampleKey], params: dict) -> Any:
        import torch

        h, w = x.shape[-2:]
        parts = [make(h, w, level, k) for k in keys]
        a = torch.from_numpy(np.stack([p[0] for p in parts])).to(x.device).float()[:, None]
        col = torch.from_numpy(np.stack([p[1] for p in parts])).to(x.device).float()[:, :, None, None]
        # integers below 2**16 throughout, so float32 is exact, and the correctly rounded quotient of an integer
        # by 255 is an integer only when the division is exact: floor() gives the integer floor division
        return torch.floor((x.float() * (255 - a) + col * a + 127) / 255).to(x.dtype)

    return f_np, f_t


# ------------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Corruption:
    """One registered corruption: ``level`` unit, valid range, defaults and the numpy / torch implementations."""

    name: str
    description: str
    unit: str
    default_levels: tuple[float, ...]
    level_range: tuple[float, float]
    random: bool
    kind: str  # noise | blur | colour | compression | domain
    np_fn: Callable[..., np.ndarray] = field(repr=False)
    torch_fn: Callable[..., Any] = field(repr=False)
    params: dict[str, float] = field(default_factory=dict)
    integer: bool = False
    device: str = "any"  # "any" (runs on the tensor's device) or "host" (computed on the CPU)

    def check_level(self, level: float) -> float:
        lo, hi = self.level_range
        lv = float(level)
        if not (lo <= lv <= hi) or math.isnan(lv):
            raise UsageError(f"{self.name} level {level} outside [{lo:g}, {hi:g}] ({self.unit})",
                             hint=f"e.g. --corruption {self.name}:{','.join(f'{v:g}' for v in self.default_levels)}")
        if self.integer and lv != round(lv):
            raise UsageError(f"{self.name} level {level} must be a whole number ({self.unit})",
                             hint=f"e.g. --corruption {self.name}:{','.join(f'{v:g}' for v in self.default_levels)}")
        return lv


_gamma = _global_lut(_gamma_lut)
_bright = _global_lut(_brightness_lut)
_hair = _overlay(_hair_overlay)
_ink = _overlay(_ink_overlay)

CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in [
    Corruption("impulse", "salt-and-pepper: a fraction F of the pixels set to black or white (3:1), all channels",
               "fraction of pixels in [0, 1]", (0.01, 0.02, 0.03, 0.04, 0.05, 0.15), (0.0, 1.0), True, "noise",
               _impulse_np, _impulse_torch),
    Corruption("gaussian_noise", "additive Gaussian noise per channel value, σ in pixel units (fraction of 255)",
               "σ as a fraction of 255 in [0, 1]", (0.02, 0.04, 0.08, 0.12, 0.16), (0.0, 1.0), True, "noise",
               _gauss_noise_np, _gauss_noise_torch),
    Corruption("gaussian_blur", "isotropic Gaussian blur, k x k kernel (σ = OpenCV's rule unless sigma= given)",
               "kernel side k in pixels (odd)", (3, 5, 7, 9), (1, 99), False, "blur",
               _blur_np("gaussian_blur"), _blur_torch("gaussian_blur"), {"sigma": 0.0}, integer=True),
    Corruption("motion_blur", "anisotropic / motion blur: line kernel of length k at angle= degrees (default 45)",
               "line length k in pixels", (5, 7, 9, 11), (1, 99), False, "blur",
               _blur_np("motion_blur"), _blur_torch("motion_blur"), {"angle": 45.0}, integer=True),
    Corruption("defocus", "defocus blur: uniform disk kernel of radius r", "disk radius r in pixels",
               (1, 2, 3, 4), (0.5, 49), False, "blur", _blur_np("defocus"), _blur_torch("defocus")),
    Corruption("gamma", "gamma curve out = 255*(x/255)^γ (γ > 1 darkens)", "exponent γ > 0",
               (0.5, 0.7, 1.5, 2.0), (0.05, 20.0), False, "colour", *_gamma),
    Corruption("brightness", "brightness factor out = f*x (clipped)", "factor f ≥ 0",
               (0.6, 0.8, 1.2, 1.4), (0.0, 10.0), False, "colour", *_bright),
    Corruption("contrast", "contrast factor about the image's mean grey: out = m + c*(x - m)", "factor c ≥ 0",
               (0.5, 0.75, 1.25, 1.5), (0.0, 10.0), False, "colour", _contrast_np, _contrast_torch),
    Corruption("jpeg", "JPEG compression round trip (OpenCV / libjpeg, 4:2:0)", "quality 1..100 (lower = worse)",
               (50, 30, 20, 10, 5), (1, 100), False, "compression", _jpeg_np, _per_sample_host(_jpeg_np),
               integer=True, device="host"),
    Corruption("hair", "synthetic dark hair strands overlaid (anti-aliased quadratic Bezier curves)",
               "number of strands", (5, 10, 20, 40), (0, 500), True, "domain", *_hair, integer=True),
    Corruption("ink", "surgical-ink marks (rings, dots, strokes) around the image centre", "number of marks",
               (1, 2, 3), (0, 20), True, "domain", *_ink, integer=True),
]}

ALIASES = {"noise": "impulse", "salt_pepper": "impulse", "sp": "impulse", "blur": "gaussian_blur",
           "iso_blur": "gaussian_blur", "aniso_blur": "motion_blur", "motion": "motion_blur", "gauss_noise":
           "gaussian_noise", "jpeg_quality": "jpeg"}


def get_corruption(name: str) -> Corruption:
    """The registered corruption ``name`` (aliases: ``noise`` → impulse, ``aniso_blur`` → motion_blur, ...)."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in CORRUPTIONS:
        import difflib

        close = difflib.get_close_matches(key, list(CORRUPTIONS) + list(ALIASES), n=3)
        raise UsageError(f"unknown corruption {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""),
                         hint=f"available: {', '.join(CORRUPTIONS)}; see `lesionkit robustness --list`")
    return CORRUPTIONS[key]


@dataclass(frozen=True)
class CorruptionSpec:
    """A corruption with its parameters and levels, e.g. ``motion_blur(angle=30):5,7,9``."""

    name: str
    levels: tuple[float, ...]
    params: tuple[tuple[str, float], ...] = ()

    @property
    def corruption(self) -> Corruption:
        return CORRUPTIONS[self.name]

    @property
    def param_dict(self) -> dict[str, float]:
        return {**self.corruption.params, **dict(self.params)}

    @property
    def label(self) -> str:
        """Display name: ``name`` or ``name(k=v,...)`` for non-default parameters."""
        if not self.params:
            return self.name
        return f"{self.name}(" + ",".join(f"{k}={v:g}" for k, v in self.params) + ")"

    def __str__(self) -> str:
        return f"{self.label}:{','.join(f'{v:g}' for v in self.levels)}"


_SPEC_RE = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(?:\(([^)]*)\))?\s*(?::\s*(.*))?$")


def parse_corruption(text: str, levels: Sequence[float] | None = None) -> CorruptionSpec:
    """Parse ``NAME[(key=value,...)][:L1,L2,...]`` (levels default to the corruption's defaults).

    Fractions may be written as percentages for ``impulse``: ``impulse:1%,5%``.
    """
    m = _SPEC_RE.match(text or "")
    if not m:
        raise UsageError(f"cannot parse corruption {text!r}", hint="write NAME[(key=value)][:LEVELS], e.g. "
                                                                    "impulse:0.01,0.05 or 'motion_blur(angle=30):5,7'")
    c = get_corruption(m.group(1))
    params: list[tuple[str, float]] = []
    if m.group(2):
        for item in m.group(2).split(","):
            if not item.strip():
                continue
            k, eq, v = item.partition("=")
            k = k.strip()
            if not eq or k not in c.params:
                raise UsageError(f"corruption {text!r}: unknown parameter {k!r}",
                                 hint=f"{c.name} takes: {', '.join(c.params) if c.params else '(no parameters)'}")
            try:
                params.append((k, float(v)))
            except ValueError:
                raise UsageError(f"corruption {text!r}: parameter {k} must be a number (got {v.strip()!r})") from None
        params = [(k, v) for k, v in params if v != c.params[k]]
    if m.group(3) is not None and m.group(3).strip():
        lv = []
        for tok in m.group(3).split(","):
            tok = tok.strip()
            if not tok:
                continue
            try:
                lv.append(float(tok[:-1]) / 100.0 if tok.endswith("%") else float(tok))
            except ValueError:
                raise UsageError(f"corruption {text!r}: level {tok!r} is not a number",
                                 hint=f"e.g. {c.name}:{','.join(f'{v:g}' for v in c.default_levels)}") from None
    else:
        lv = list(levels) if levels is not None else list(c.default_levels)
    if not lv:
        raise UsageError(f"corruption {text!r} has no levels")
    return CorruptionSpec(c.name, tuple(c.check_level(v) for v in lv), tuple(sorted(params)))


# ------------------------------------------------------------------------------------------------- entry points


def _resolve(name: str | Corruption, params: dict[str, Any] | None) -> tuple[Corruption, dict[str, Any]]:
    c = name if isinstance(name, Corruption) else get_corruption(name)
    unknown = set(params or {}) - set(c.params)
    if unknown:
        raise UsageError(f"{c.name}: unknown parameter(s) {sorted(unknown)}",
                         hint=f"{c.name} takes: {', '.join(c.params) if c.params else '(no parameters)'}")
    return c, {**c.params, **(params or {})}


def _key_params(c: Corruption, p: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in p.items() if v != c.params.get(k)}


def apply_numpy(image: np.ndarray, name: str | Corruption, level: float, *, seed: int, sample_id: str,
                params: dict[str, Any] | None = None) -> np.ndarray:
    """Corrupt one RGB ``uint8 (H, W, 3)`` image; returns a new ``uint8`` array (input untouched)."""
    c, p = _resolve(name, params)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) array, got {getattr(image, 'dtype', type(image))} "
                         f"{getattr(image, 'shape', '')}")
    lv = c.check_level(level)
    key = sample_key(seed, str(sample_id), c.name, lv, _key_params(c, p))
    return c.np_fn(np.ascontiguousarray(image), lv, key, p)


corrupt = apply_numpy


def apply_batch(images: Any, name: str | Corruption, level: float, *, seed: int, sample_ids: Sequence[str],
                params: dict[str, Any] | None = None) -> Any:
    """Corrupt a batch ``[B, 3, H, W]`` (``uint8``, or float holding values in [0, 255]) on its own device.

    Float inputs are rounded to whole levels first (corruptions are defined on 8-bit images). Returns a tensor of
    the input's dtype and device, equal pixel for pixel to :func:`apply_numpy` on each image.
    """
    import torch

    c, p = _resolve(name, params)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected a [B, 3, H, W] tensor, got {getattr(images, 'shape', type(images))}")
    if len(sample_ids) != images.shape[0]:
        raise ValueError(f"{len(sample_ids)} sample ids for a batch of {images.shape[0]}")
    lv = c.check_level(level)
    kp = _key_params(c, p)
    keys = [sample_key(seed, str(s), c.name, lv, kp) for s in sample_ids]
    dtype = images.dtype
    with torch.no_grad():
        x = images.float() if dtype == torch.uint8 else images.float().round().clamp(0, 255)
        x = x.contiguous()
        y = c.torch_fn(x, lv, keys, p)
        return y.to(torch.uint8) if dtype == torch.uint8 else y.to(dtype)


corrupt_batch = apply_batch


def list_corruptions() -> list[dict[str, Any]]:
    """Rows for ``--list``: name, kind, unit, default levels, parameters, random, device, description."""
    return [{"name": c.name, "kind": c.kind, "unit": c.unit, "default_levels": list(c.default_levels),
             "params": dict(c.params), "random": c.random, "device": c.device, "description": c.description}
            for c in CORRUPTIONS.values()]
