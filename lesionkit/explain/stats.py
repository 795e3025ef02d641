"""Where a CAM's energy lies: fractions inside the lesion, on hair / ink / ruler / sticker masks, on the FOV border.

Masks are brought to the model input geometry with :class:`InputGeometry` — the same region and resize as the
evaluation transform (``lesionkit.data.transforms.build_transform(preset, img_size, train=False)`` applied to the
image fitted to the cache square, :func:`lesionkit.data.cache.fit_square`) — as *soft* masks: each input pixel
holds the fraction of it the mask covers (area-averaged when shrinking), in [0, 1].

For a CAM ``c >= 0`` at input resolution and a soft mask ``m``:

* ``energy(m) = sum(c * m) / sum(c)`` — the fraction of the CAM's energy on the mask, in [0, 1]
  (NaN when the mask is unavailable or the CAM is all zero);
* ``area(m) = mean(m)`` — the fraction of the input the mask covers; a CAM spread uniformly has
  ``energy == area``, so ``energy / area`` > 1 means the model looks at the region more than chance.

``fov_border`` is the complement of the field-of-view mask (the dark surround of a dermoscope; zero area when the
image fills the view).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

__all__ = [
    "KINDS", "InputGeometry", "energy_fractions", "fit_mask_to_image", "summarize",
]

#: Regions measured per image (``fov_border`` = outside the field-of-view mask).
KINDS = ("lesion", "hair", "ink", "ruler", "sticker", "fov_border")
#: Mask files each region is read from (``fov_border`` is computed from the ``fov`` mask).
MASK_OF = {"lesion": "lesion", "hair": "hair", "ink": "ink", "ruler": "ruler", "sticker": "sticker", "fov_border": "fov"}


def _resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Float resize: area averaging when shrinking, bilinear when enlarging (no over/undershoot)."""
    import cv2

    if a.shape[:2] == (h, w):
        return a
    shrink = h <= a.shape[0] and w <= a.shape[1]
    return cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _centre_square(a: np.ndarray, side: int) -> np.ndarray:
    h, w = a.shape[:2]
    return a[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]


@dataclass(frozen=True)
class InputGeometry:
    """The model input's region of an image and its size.

    ``square_size``: the image is first cut to its central square (side = the short side; an odd excess puts
    the extra pixel right / bottom) and resized to ``square_size`` (the training image cache); None = not.
    ``crop_fraction``: then the central square of side ``round(crop_fraction * short side)`` (offsets
    ``(H - s) // 2``, ``(W - s) // 2``) is kept (1.0 = all; 416/512 for the ``seeds`` preset), and resized to
    ``img_size x img_size``. Matches :func:`~lesionkit.data.cache.fit_square` followed by
    :class:`~lesionkit.data.transforms.CenterCropFraction` and the resize of the evaluation transform.
    """

    img_size: int
    crop_fraction: float = 1.0
    square_size: int | None = None

    def crop_side(self, h: int, w: int) -> int:
        return max(1, min(h, w, round(self.crop_fraction * min(h, w))))

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """A mask of the decoded image (``H x W``, bool / 0-1 / 0-255) → soft mask ``float32 [img_size, img_size]``
        in [0, 1] aligned with the model input."""
        a = np.asarray(mask)
        a = (a > 127 if a.dtype == np.uint8 and a.max() > 1 else a > 0.5 if a.dtype != bool else a).astype(np.float32)
        if self.square_size:
            a = _centre_square(a, min(a.shape[:2]))
            a = _resize(a, self.square_size, self.square_size)
        s = self.crop_side(*a.shape[:2])
        a = _centre_square(a, s)
        a = _resize(np.ascontiguousarray(a), self.img_size, self.img_size)
        return np.clip(a, 0.0, 1.0).astype(np.float32)


def fit_mask_to_image(mask: np.ndarray, shape: tuple[int, int], tol: float = 0.02) -> np.ndarray | None:
    """A mask stored at another resolution of the same picture (e.g. the official HAM10000 600x450 masks for
    200x150 images) resized to ``shape`` (nearest neighbour, bool). None when the aspect ratios differ by more
    than ``tol`` (relative): the mask then belongs to another geometry and is not used."""
    import cv2

    h, w = mask.shape[:2]
    H, W = shape
    m = mask > (127 if mask.dtype == np.uint8 and mask.max() > 1 else 0)
    if (h, w) == (H, W):
        return m
    if abs((h / w) / (H / W) - 1.0) > tol:
        return None
    return cv2.resize(m.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0


def map_through_prep(mask: np.ndarray, crop_box: tuple[int, int, int, int], orig_hw: tuple[int, int],
                     out_hw: tuple[int, int]) -> np.ndarray | None:
    """A mask in the ORIGINAL image geometry → the geometry of a ``lesionkit prep`` output: crop by ``crop_box``
    (``x0, y0, x1, y1`` in original pixels, scaled to the mask's resolution), fit the long side into the output
    (aspect kept) and centre it on the ``out_hw`` canvas (prep's ``--pad``). None when the mask's aspect ratio does
    not match the original image."""
    import cv2

    h, w = mask.shape[:2]
    oh, ow = orig_hw
    if abs((h / w) / (oh / ow) - 1.0) > 0.02:
        return None
    sx, sy = w / ow, h / oh
    x0, y0, x1, y1 = crop_box
    x0, x1 = int(np.floor(x0 * sx)), int(np.ceil(x1 * sx))
    y0, y1 = int(np.floor(y0 * sy)), int(np.ceil(y1 * sy))
    m = (mask > (127 if mask.dtype == np.uint8 and mask.max() > 1 else 0)).astype(np.float32)[y0:y1, x0:x1]
    if m.size == 0:
        return None
    H, W = out_hw
    ch, cw = m.shape
    scale = max(H, W) / max(ch, cw)
    rh, rw = (H, max(1, round(cw * scale))) if ch >= cw else (max(1, round(ch * scale)), W)
    rh, rw = min(rh, H), min(rw, W)
    r = cv2.resize(m, (rw, rh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((H, W), np.float32)
    yo, xo = (H - rh) // 2, (W - rw) // 2
    canvas[yo:yo + rh, xo:xo + rw] = r
    return canvas > 0.5


def energy_fractions(cam: torch.Tensor, masks: torch.Tensor, available: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy and area fractions for a batch.

    ``cam`` ``[B, H, W]`` (≥ 0), ``masks`` ``[B, K, H, W]`` soft masks in [0, 1] aligned with it, ``available``
    ``[B, K]`` bool. Returns ``(energy, area)``, each ``[B, K]`` float64 in [0, 1], NaN where the mask is not
    available (and energy NaN where the CAM sums to zero).
    """
    cam = cam.double().clamp(min=0)
    m = masks.double()
    total = cam.sum(dim=(1, 2))
    inside = (cam[:, None] * m).sum(dim=(2, 3))
    energy = inside / total[:, None]
    energy = torch.where(total[:, None] > 0, energy, torch.full_like(energy, float("nan")))
    area = m.mean(dim=(2, 3))
    nan = torch.full_like(energy, float("nan"))
    return torch.where(available, energy, nan), torch.where(available, area, nan)


def summarize(df: pd.DataFrame, by: str, kinds: tuple[str, ...] = KINDS) -> list[dict]:
    """Mean energy and area per region for each value of column ``by`` (plus ``"all"``): a list of plain dicts
    ``{by: value, n, <kind>_energy, <kind>_area, <kind>_n}`` (means over images with that mask; None if none)."""
    groups: list[tuple[object, pd.DataFrame]] = [("all", df)]
    if by in df.columns:
        groups += [(k, g) for k, g in df.groupby(by, observed=True, sort=True)]
    rows = []
    for key, g in groups:
        row: dict = {by: key if not isinstance(key, (np.generic,)) else key.item(), "n": len(g)}
        for k in kinds:
            for stat in ("energy", "area"):
                col = f"{k}_{stat}"
                vals = g[col].dropna() if col in g else pd.Series(dtype=float)
                row[col] = None if vals.empty else float(vals.mean())
            col = f"{k}_energy"
            row[f"{k}_n"] = int(g[col].notna().sum()) if col in g else 0
        rows.append(row)
    return rows


def as_mapping_row(energy: torch.Tensor, area: torch.Tensor, kinds: tuple[str, ...] = KINDS) -> list[Mapping[str, float]]:
    """Per-image dicts ``{<kind>_energy, <kind>_area}`` from :func:`energy_fractions` outputs."""
    e, a = energy.cpu().numpy(), area.cpu().numpy()
    return [{**{f"{k}_energy": float(e[i, j]) for j, k in enumerate(kinds)},
             **{f"{k}_area": float(a[i, j]) for j, k in enumerate(kinds)}} for i in range(e.shape[0])]
