"""Image transforms: named augmentation presets over ``torchvision.transforms.v2``.

Every transform maps an RGB ``uint8`` ``(H, W, 3)`` numpy array (any size; normally a cache image) to a
``float32 (3, img_size, img_size)`` tensor normalised with ``(x / 255 - mean) / std``. Randomness comes only from
torch's global RNG (``torch.rand`` & co. inside torchvision and the transforms below), so ``torch.manual_seed`` in
the main process, or the DataLoader's per-worker seeding, makes augmentation reproducible.

**Evaluation** (``train=False``, whatever the preset): the central square crop of side
``round(f * min(H, W))`` (offsets ``(H - s) // 2``, ``(W - s) // 2``), resized to ``img_size x img_size``
(bilinear with antialiasing; no resize when already that size), then normalised. Never augmented. The crop
fraction ``f`` is :func:`eval_crop_fraction` of the preset: 416/512 for ``seeds`` (the UCLA thesis' centre
crop), 1 otherwise.

**Presets** (training):

* ``none`` — exactly the evaluation transform (crop fraction 1).
* ``light`` — RandomResizedCrop (area 0.6-1, aspect 3/4-4/3), horizontal and vertical flips p=.5,
  ColorJitter(brightness .1, contrast .1, saturation .05, hue .01) p=.5 (torchvision's, with the hue step through
  OpenCV: :class:`ColorJitter`).
* ``seeds`` — the UCLA thesis list (albumentations semantics re-implemented on v2): random square crop of
  fraction 416/512 (the thesis' 512 → 416 random crop, at any input size), resized to ``img_size``; vertical
  and horizontal flips p=.5; shift-scale-rotate (shift ±0.25 of the side, scale 1±0.25, rotation ±30°,
  reflected border) p=.5; HSV shift (hue ±5, saturation ±10, value ±5 in OpenCV 8-bit HSV units: hue ±10°,
  S and V ±10/255, ±5/255 additive) p=.5; brightness and contrast factors 0.9-1.1 (ColorJitter) p=.5;
  FancyPCA α~N(0, 0.1) p=.2; Gaussian noise with variance 10-50 (in 8-bit levels², σ ≈ 3.2-7.1 levels) p=.2.
  Note: with albumentations' FancyPCA (eigenvalues of the image's own covariance in [0, 1] units) α = 0.1
  moves a HAM10000 image by under one grey level (measured 0.6-0.9 levels per channel), so that step is weak.
* ``heavy`` — RandomResizedCrop (area 0.35-1), flips, random 90° rotations, shift-scale-rotate (±0.1, 1±0.3,
  ±180°) p=.7, HSV shift (±10, ±20, ±10) p=.7, ColorJitter(.25, .25, .2) p=.7, FancyPCA p=.5, Gaussian blur
  (σ 0.1-1.5) p=.2, Gaussian noise (variance 10-80) p=.3, RandomErasing (2-10 % of the area, filled with the
  mean colour) p=.25.

Geometric steps run on ``uint8`` (torchvision's fast uint8 resize; OpenCV ``warpAffine`` for shift-scale-rotate,
as albumentations does), colour steps on ``float32`` in [0, 1] (HSV through OpenCV's float conversion).
Cost on one (shared) core of the dev VM at 224 px from a 276 px cache image: ``seeds`` ≈ 4 ms, evaluation ≈ 1.3 ms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from lesionkit.errors import UsageError

__all__ = [
    "PRESETS", "PRESET_HELP", "SEEDS_CROP_FRACTION", "CenterCropFraction", "ColorJitter", "FancyPCA", "GaussianNoise", "HSVShift", "ImageTransform",
    "RandomCropFraction", "RandomRot90", "ShiftScaleRotate", "build_transform", "cache_size_for", "eval_crop_fraction",
    "hsv_shift",
]

PRESETS = ("none", "light", "seeds", "heavy")
PRESET_HELP = {
    "none": "no augmentation (the evaluation transform)",
    "light": "random resized crop (area 0.6-1), flips, mild colour jitter",
    "seeds": "UCLA thesis list: 416/512 random crop, flips, shift-scale-rotate, HSV, brightness/contrast, FancyPCA, noise",
    "heavy": "strong: resized crop (area 0.35-1), flips, 90° rotations, ±180° rotate, strong colour, blur, noise, erasing",
}
SEEDS_CROP_FRACTION = 416 / 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def eval_crop_fraction(preset: str) -> float:
    """Fraction of the short side kept by the evaluation centre crop of ``preset`` (416/512 for seeds, else 1)."""
    _check_preset(preset)
    return SEEDS_CROP_FRACTION if preset == "seeds" else 1.0


def cache_size_for(preset: str, img_size: int) -> int:
    """Cache side so that the preset's crops need no upsampling: ``ceil(img_size / eval_crop_fraction)``
    (e.g. seeds at 416 → 512, at 224 → 276; other presets → ``img_size``)."""
    return math.ceil(img_size / eval_crop_fraction(preset) - 1e-9)


def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise UsageError(f"--aug {preset!r} is not a preset", hint=f"choose one of: {', '.join(PRESETS)}")


# ----------------------------------------------------------------------------------------------- colour maths


def _hwc(x: torch.Tensor) -> np.ndarray:
    """CHW tensor → C-contiguous HWC numpy array (same dtype), for OpenCV."""
    return np.ascontiguousarray(x.permute(1, 2, 0).numpy())


def _chw(a: np.ndarray, like: Any) -> Any:
    out = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
    return tv_tensors.wrap(out, like=like) if isinstance(like, tv_tensors.TVTensor) else out


def hsv_shift(rgb: np.ndarray, dh_deg: float, ds: float, dv: float) -> np.ndarray:
    """Additive HSV shift of an RGB float32 HWC image in [0, 1] (OpenCV float HSV: H in degrees, S and V in
    [0, 1]): hue + ``dh_deg`` modulo 360, S + ``ds`` and V + ``dv`` clipped to [0, 1]. Returns RGB float32."""
    import cv2

    hsv = cv2.cvtColor(rgb.astype(np.float32, copy=False), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + dh_deg, 360.0)
    np.clip(hsv[..., 1] + ds, 0.0, 1.0, out=hsv[..., 1])
    np.clip(hsv[..., 2] + dv, 0.0, 1.0, out=hsv[..., 2])
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0.0, 1.0)


def _to_float(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0, True
    return x, False


def _back(x: torch.Tensor, was_u8: bool, like: torch.Tensor) -> torch.Tensor:
    x = x.clamp_(0.0, 1.0)
    if was_u8:
        x = (x * 255.0).round_().to(torch.uint8)
    return tv_tensors.wrap(x, like=like) if isinstance(like, tv_tensors.TVTensor) else x


def _range(v: float | Sequence[float], name: str) -> tuple[float, float]:
    if isinstance(v, (int, float)):
        return (-float(v), float(v))
    lo, hi = (float(a) for a in v)
    if lo > hi:
        raise ValueError(f"{name}: range ({lo}, {hi}) is reversed")
    return (lo, hi)


def _uniform(lo: float, hi: float) -> float:
    return lo if lo == hi else float(torch.empty(()).uniform_(lo, hi))


class _RandomTransform(v2.Transform):
    """A v2 transform applied with probability ``p`` (drawn from torch's RNG on every call)."""

    _transformed_types = (tv_tensors.Image, torch.Tensor)

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1] (got {p})")
        self.p = float(p)

    def forward(self, *inputs: Any) -> Any:
        if self.p < 1.0 and float(torch.rand(())) >= self.p:
            return inputs if len(inputs) > 1 else inputs[0]
        return super().forward(*inputs)


# ----------------------------------------------------------------------------------------------- transforms


class ColorJitter(v2.ColorJitter):
    """``torchvision.transforms.v2.ColorJitter`` (same arguments, random draws and order of the four steps) whose
    hue step runs through OpenCV's float HSV (:func:`hsv_shift`) for float ``(3, H, W)`` images: equal to
    torchvision's ``adjust_hue`` to ~1e-6 and 3x faster (0.85 vs 2.8 ms at 224 px; torchvision's hue step was
    most of the ``light`` preset's cost). Other inputs (uint8, batches) use torchvision's kernels throughout."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        x = inpt.as_subclass(torch.Tensor)
        if params["hue_factor"] is None or x.ndim != 3 or x.shape[0] != 3 or not x.is_floating_point():
            return super().transform(inpt, params)
        out = inpt
        for fn_id in params["fn_idx"]:
            if fn_id == 3:
                rgb = _hwc(out.as_subclass(torch.Tensor).to(torch.float32))
                out = _chw(hsv_shift(rgb, float(params["hue_factor"]) * 360.0, 0.0, 0.0), inpt).to(x.dtype)
            else:
                out = super().transform(out, {**params, "fn_idx": [fn_id]})
        return out


class HSVShift(_RandomTransform):
    """Additive HSV shift with albumentations' ``HueSaturationValue`` units (OpenCV 8-bit HSV): hue in units of
    2° (so ``hue_shift=5`` → ±10°), saturation and value in levels of 255. Each shift is drawn uniformly from
    ``(-limit, limit)`` (or the given ``(lo, hi)``) per call; hue wraps around, S and V are clipped to [0, 1].
    Works on uint8 (converted to float, rounded back) or float [0, 1] images ``(3, H, W)``; the conversion is
    OpenCV's float RGB ↔ HSV (see :func:`hsv_shift`), exact to ~1e-6, so a zero shift is the identity."""

    def __init__(self, hue_shift: float | Sequence[float] = 5, sat_shift: float | Sequence[float] = 10,
                 val_shift: float | Sequence[float] = 5, p: float = 0.5) -> None:
        super().__init__(p)
        self.hue = _range(hue_shift, "hue_shift")
        self.sat = _range(sat_shift, "sat_shift")
        self.val = _range(val_shift, "val_shift")

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"dh": _uniform(*self.hue) / 180.0, "ds": _uniform(*self.sat) / 255.0, "dv": _uniform(*self.val) / 255.0}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        x = inpt.as_subclass(torch.Tensor)
        u8 = x.dtype == torch.uint8
        rgb = _hwc(x).astype(np.float32) / 255.0 if u8 else _hwc(x.to(torch.float32))
        out = hsv_shift(rgb, params["dh"] * 360.0, params["ds"], params["dv"])
        if u8:
            out = np.rint(out * 255.0).astype(np.uint8)
        return _chw(out, inpt)


class FancyPCA(_RandomTransform):
    """PCA colour augmentation (Krizhevsky et al. 2012, as albumentations' ``FancyPCA``): the eigenvectors
    ``p_i`` and eigenvalues ``λ_i`` of the 3x3 covariance of THIS image's RGB values in [0, 1], and
    ``x += Σ_i α_i λ_i p_i`` with ``α_i ~ N(0, alpha_std)`` drawn per call (``alpha`` fixes them, for tests).
    With α = 0 the image is returned unchanged."""

    def __init__(self, alpha_std: float = 0.1, p: float = 0.2, alpha: Sequence[float] | None = None) -> None:
        super().__init__(p)
        self.alpha_std = float(alpha_std)
        self.alpha = None if alpha is None else [float(a) for a in alpha]

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        a = torch.tensor(self.alpha) if self.alpha is not None else torch.randn(3) * self.alpha_std
        return {"alpha": a.to(torch.float64)}

    @staticmethod
    def offset(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The RGB offset ``Σ α_i λ_i p_i`` (float64, shape (3,)) for float image ``x`` (3, H, W) in [0, 1]."""
        pix = x.reshape(3, -1).to(torch.float64)
        cov = torch.cov(pix)
        lam, vec = torch.linalg.eigh(cov)  # ascending; order does not matter for the sum with iid α
        return vec @ (alpha * lam.clamp(min=0))

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        x, u8 = _to_float(inpt.as_subclass(torch.Tensor))
        d = self.offset(x, params["alpha"]).to(x.dtype)
        return _back(x + d[:, None, None], u8, inpt)


class GaussianNoise(_RandomTransform):
    """Additive Gaussian noise, per pixel and channel, with variance drawn uniformly from ``var`` in 8-bit levels²
    (albumentations ``GaussNoise(var_limit=(10, 50))``: σ = sqrt(var) / 255 on [0, 1] images); clipped to [0, 1]."""

    def __init__(self, var: Sequence[float] = (10.0, 50.0), p: float = 0.2) -> None:
        super().__init__(p)
        self.var = _range(var, "var")
        if self.var[0] < 0:
            raise ValueError("variance must be >= 0")

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"sigma": math.sqrt(_uniform(*self.var)) / 255.0}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["sigma"] == 0:
            return inpt
        x, u8 = _to_float(inpt.as_subclass(torch.Tensor))
        return _back(x + torch.randn_like(x) * params["sigma"], u8, inpt)


class ShiftScaleRotate(_RandomTransform):
    """Albumentations-style ``ShiftScaleRotate``: rotate by θ ~ U(±rotate°) and scale by s ~ U(1 ± scale) about the
    image centre, then shift by (dx·W, dy·H) with dx, dy ~ U(±shift) (positive = right / down); bilinear,
    border reflected without repeating the edge (``cv2.warpAffine``, ``BORDER_REFLECT_101``, as albumentations).
    Fixed values may be given as ``(v, v)`` ranges (tests). uint8 or float images."""

    def __init__(self, shift: float | Sequence[float] = 0.25, scale: float | Sequence[float] = 0.25,
                 rotate: float | Sequence[float] = 30.0, p: float = 0.5) -> None:
        super().__init__(p)
        self.shift = _range(shift, "shift")
        sc = _range(scale, "scale")
        self.scale = (1.0 + sc[0], 1.0 + sc[1])
        if self.scale[0] <= 0:
            raise ValueError("scale range must stay above 0")
        self.rotate = _range(rotate, "rotate")

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"angle": _uniform(*self.rotate), "s": _uniform(*self.scale),
                "dx": _uniform(*self.shift), "dy": _uniform(*self.shift)}

    @staticmethod
    def matrix(h: int, w: int, angle: float, s: float, dx: float, dy: float) -> np.ndarray:
        """The 2x3 forward map (output = M · input, pixel centres at integers): rotation by ``angle`` degrees
        (counter-clockwise) and scale ``s`` about ``((w - 1) / 2, (h - 1) / 2)``, then a shift of ``(dx·w, dy·h)``."""
        import cv2

        m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, s)
        m[0, 2] += dx * w
        m[1, 2] += dy * h
        return m

    @classmethod
    def warp(cls, x: torch.Tensor, angle: float, s: float, dx: float, dy: float) -> torch.Tensor:
        """Apply the map to ``x`` (C, H, W; uint8 or float32) with ``cv2.warpAffine``: bilinear, border
        ``BORDER_REFLECT_101`` (albumentations' default: the edge pixel is not repeated)."""
        import cv2

        h, w = x.shape[-2:]
        src = _hwc(x if x.dtype == torch.uint8 else x.to(torch.float32))
        out = cv2.warpAffine(src, cls.matrix(h, w, angle, s, dx, dy), (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT_101)
        if out.ndim == 2:
            out = out[..., None]
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = self.warp(inpt.as_subclass(torch.Tensor), params["angle"], params["s"], params["dx"], params["dy"])
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


class RandomRot90(_RandomTransform):
    """Rotate by k·90°, k uniform in {0, 1, 2, 3} (dermoscopy has no canonical orientation)."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"k": int(torch.randint(0, 4, ()))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["k"] == 0:
            return inpt
        out = torch.rot90(inpt.as_subclass(torch.Tensor), params["k"], dims=(-2, -1)).contiguous()
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


def _square(h: int, w: int, fraction: float) -> int:
    return max(1, min(h, w, round(fraction * min(h, w))))


class _FractionCrop(v2.Transform):
    """Base of the square crops whose side is a fraction in (0, 1] of the short side."""

    _transformed_types = (tv_tensors.Image, torch.Tensor)

    def __init__(self, fraction: float) -> None:
        super().__init__()
        if not 0 < fraction <= 1:
            raise ValueError(f"crop fraction must be in (0, 1] (got {fraction})")
        self.fraction = float(fraction)


class CenterCropFraction(_FractionCrop):
    """Central square of side ``round(fraction * min(H, W))``; offsets ``(H - s) // 2`` and ``(W - s) // 2``."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        h, w = inpt.shape[-2:]
        s = _square(h, w, self.fraction)
        if (s, s) == (h, w):
            return inpt
        return F.crop(inpt, (h - s) // 2, (w - s) // 2, s, s)


class RandomCropFraction(_FractionCrop):
    """A square of side ``round(fraction * min(H, W))`` at a uniformly random position (the thesis' 512 → 416 crop
    at ``fraction`` 416/512, for any input size)."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = flat_inputs[0].shape[-2:]
        s = _square(h, w, self.fraction)
        top = int(torch.randint(0, h - s + 1, ()))
        left = int(torch.randint(0, w - s + 1, ()))
        return {"top": top, "left": left, "s": s}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.crop(inpt, params["top"], params["left"], params["s"], params["s"])


# ----------------------------------------------------------------------------------------------- presets


class ImageTransform:
    """Callable ``uint8 (H, W, 3)`` numpy → normalised ``float32 (3, img_size, img_size)`` tensor. Picklable
    (DataLoader workers). ``pipeline`` is the ``v2.Compose`` applied after conversion to a uint8 CHW image."""

    def __init__(self, preset: str, img_size: int, train: bool, mean: Sequence[float], std: Sequence[float],
                 pipeline: v2.Compose, crop_fraction: float) -> None:
        self.preset = preset
        self.img_size = int(img_size)
        self.train = bool(train)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.pipeline = pipeline
        self.crop_fraction = float(crop_fraction)

    def __call__(self, img: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(img, np.ndarray):
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"expected an RGB uint8 (H, W, 3) array, got {img.dtype} {img.shape}")
            t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        elif isinstance(img, torch.Tensor):
            if img.dtype != torch.uint8 or img.ndim != 3 or img.shape[0] != 3:
                raise ValueError(f"expected an RGB uint8 (3, H, W) tensor, got {img.dtype} {tuple(img.shape)}")
            t = img
        else:
            raise TypeError(f"expected a numpy array or tensor, got {type(img).__name__}")
        out = self.pipeline(tv_tensors.Image(t))
        return out.as_subclass(torch.Tensor).contiguous()

    def to_dict(self) -> dict[str, Any]:
        """Plain-type description (for ``data_cfg`` in checkpoints)."""
        return {"preset": self.preset, "img_size": self.img_size, "train": self.train, "mean": list(self.mean),
                "std": list(self.std), "crop_fraction": self.crop_fraction}

    def __repr__(self) -> str:
        return (f"ImageTransform(preset={self.preset!r}, img_size={self.img_size}, train={self.train}, "
                f"crop_fraction={self.crop_fraction:.4f})\n{self.pipeline}")


def _resize(img_size: int) -> v2.Resize:
    return v2.Resize((img_size, img_size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)


def _tail(mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def build_transform(preset: str, img_size: int, train: bool, mean: tuple = IMAGENET_MEAN,
                    std: tuple = IMAGENET_STD) -> ImageTransform:
    """The transform of ``preset`` (one of :data:`PRESETS`) at ``img_size`` px; ``train=False`` gives the
    deterministic evaluation transform (see the module docstring). ``mean``/``std`` per RGB channel, on [0, 1]."""
    _check_preset(preset)
    if int(img_size) < 8:
        raise UsageError(f"--img-size must be at least 8 (got {img_size})", hint="e.g. --img-size 224")
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise UsageError(f"mean/std must have 3 values with std > 0 (got {mean}, {std})")
    frac = eval_crop_fraction(preset)
    n = int(img_size)
    if not train or preset == "none":
        steps: list[Any] = [CenterCropFraction(frac), _resize(n), *_tail(mean, std)]
    elif preset == "light":
        steps = [
            v2.RandomResizedCrop(n, scale=(0.6, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(0.5), v2.RandomVerticalFlip(0.5),
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomApply([ColorJitter(brightness=0.1, contrast=0.1, saturation=0.05, hue=0.01)], p=0.5),
            v2.Normalize(list(mean), list(std)),
        ]
    elif preset == "seeds":
        steps = [
            RandomCropFraction(SEEDS_CROP_FRACTION), _resize(n),
            v2.RandomVerticalFlip(0.5), v2.RandomHorizontalFlip(0.5),
            ShiftScaleRotate(shift=0.25, scale=0.25, rotate=30.0, p=0.5),
            v2.ToDtype(torch.float32, scale=True),
            HSVShift(hue_shift=5, sat_shift=10, val_shift=5, p=0.5),
            v2.RandomApply([v2.ColorJitter(brightness=(0.9, 1.1), contrast=(0.9, 1.1))], p=0.5),
            FancyPCA(alpha_std=0.1, p=0.2),
            GaussianNoise(var=(10.0, 50.0), p=0.2),
            v2.Normalize(list(mean), list(std)),
        ]
    else:  # heavy
        steps = [
            v2.RandomResizedCrop(n, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(0.5), v2.RandomVerticalFlip(0.5), RandomRot90(),
            ShiftScaleRotate(shift=0.1, scale=0.3, rotate=180.0, p=0.7),
            v2.ToDtype(torch.float32, scale=True),
            HSVShift(hue_shift=10, sat_shift=20, val_shift=10, p=0.7),
            v2.RandomApply([v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.2)], p=0.7),
            FancyPCA(alpha_std=0.1, p=0.5),
            v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 1.5))], p=0.2),
            GaussianNoise(var=(10.0, 80.0), p=0.3),
            v2.Normalize(list(mean), list(std)),
            v2.RandomErasing(p=0.25, scale=(0.02, 0.1), ratio=(0.3, 3.3), value=0),
        ]
    return ImageTransform(preset, n, bool(train), mean, std, v2.Compose(steps), frac)
