"""Occlusion test (Mishra 2019, §4.3): hide the lesion and see what the model still predicts.

For each image the *region* is the lesion mask at the model input (soft mask > 0.5, dilated by
``dilate = max(1, round(img_size / 32))`` pixels to cover the blurred border) or, where no lesion mask is
available, the centre third (rows and columns ``[S // 3, S - S // 3)``). Two variants are predicted:

* **lesion occluded** (background only): the region is filled; a model that still classifies these correctly
  uses the surroundings (skin, hair, ink, rulers, the FOV border) rather than the lesion;
* **lesion only**: everything outside the region is filled.

Fill (in the normalised input space): ``mean`` — each image's mean colour over the pixels that stay visible
(per channel), so the patch carries no edge or colour cue of its own; ``zero`` — 0, the normalisation mean
(ImageNet mean colour for timm models).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["FILLS", "centre_third", "occlude", "occlusion_regions", "probabilities"]

FILLS = ("mean", "zero")


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities ``[B, C]``: softmax, or ``[1 - p, p]`` with ``p = sigmoid`` for one-logit models."""
    if logits.ndim == 1:
        logits = logits[:, None]
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits.float())
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits.float(), dim=1)


def centre_third(size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool ``[size, size]``, True on rows and columns ``[size // 3, size - size // 3)``."""
    m = torch.zeros(size, size, dtype=torch.bool, device=device)
    a, b = size // 3, size - size // 3
    m[a:b, a:b] = True
    return m


def occlusion_regions(lesion: torch.Tensor, available: torch.Tensor, dilate: int | None = None) -> torch.Tensor:
    """Regions to occlude ``[B, S, S]`` bool: dilated ``lesion > 0.5`` where ``available[b]`` (and the mask is not
    empty), else the centre third. ``lesion`` ``[B, S, S]`` soft masks in [0, 1]."""
    b, s, _ = lesion.shape
    d = max(1, round(s / 32)) if dilate is None else int(dilate)
    hard = (lesion > 0.5).float()[:, None]
    if d > 0:
        hard = F.max_pool2d(hard, kernel_size=2 * d + 1, stride=1, padding=d)
    hard = hard[:, 0] > 0
    use = available.to(lesion.device) & hard.flatten(1).any(dim=1)
    centre = centre_third(s, lesion.device).expand(b, s, s)
    return torch.where(use[:, None, None], hard, centre)


def occlude(x: torch.Tensor, region: torch.Tensor, fill: str = "mean") -> torch.Tensor:
    """``x`` ``[B, C, H, W]`` (normalised) with ``region`` ``[B, H, W]`` replaced by the fill (see module docs)."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS} (got {fill!r})")
    r = region[:, None].to(x.dtype)
    if fill == "zero":
        value = torch.zeros(x.shape[0], x.shape[1], 1, 1, dtype=x.dtype, device=x.device)
    else:
        keep = 1 - r
        value = (x * keep).sum(dim=(2, 3), keepdim=True) / keep.sum(dim=(2, 3), keepdim=True).clamp(min=1)
    return x * (1 - r) + value * r
