"""Soft-attention pooling head (``--head soft-attention``).

Reference: S. K. Datta, M. A. Shaikh, S. N. Srihari, M. Gao, "Soft-Attention Improves Skin Cancer Classification
Performance", MICCAI iMIMIC workshop 2021 (arXiv:2105.03358); used again by Nguyen et al. 2022 on dermoscopy.

Given the last feature map ``F`` [B, C, h, w] of a CNN backbone:

1. **Attention maps.** A 3-D convolution over ``F`` viewed as a one-channel volume [B, 1, C, h, w] with a (C, 3, 3)
   kernel, K output channels ("heads"), stride (C, 1, 1) and padding (0, 1, 1) gives K logit maps [B, K, 1, h, w].
   Its kernel spans the whole channel axis at every position, so it is exactly ``Conv2d(C, K, 3, padding=1)`` with
   the weight [K, 1, C, 3, 3] reshaped to [K, C, 3, 3]; that is how it is computed here (the test suite checks the
   equality against ``torch.nn.functional.conv3d``). ReLU, then a softmax over the h*w positions of each map gives
   ``alpha`` [B, K, h, w], every map summing to 1.
2. **Aggregation** (the authors' ``aggregate=True``): ``A = sum_k alpha_k`` [B, 1, h, w] (sums to K), and the
   attended features ``u = gamma * A ⊙ F`` with ``gamma`` a learnable scalar.
3. **Pooling** (the authors' IRv2 + SA / ResNet50 + SA heads): 2x2 max-pooling with stride 2 of ``u`` and of ``F``
   (Keras ``padding="same"``, i.e. ``ceil_mode``: a map with an odd side or a side of 1 keeps its last row/column),
   concatenation on channels (``F`` first, then ``u``) -> [B, 2C, ceil(h/2), ceil(w/2)], ReLU, dropout (0.5 in the
   paper).
4. **Global average pooling** to [B, 2C]: lesionkit's step to turn the map into a vector for its linear head (the
   authors' IRv2 + SA flattens the map into a dense layer, which ties the head to one input size; public ResNet50 +
   SA re-implementations end with global average pooling too).

Choices where the paper and the authors' public Keras layer differ, or leave a value open:

* ``gamma``: the paper's equation has a learnable scalar; the public Keras layer has none (its ``gamma`` weights are
  commented out, one of them with a zero initialiser as in SAGAN), i.e. it uses ``gamma = 1`` fixed. Here ``gamma``
  is learnable and starts at **1.0**, so the model at initialisation is the authors' Keras model. A zero start (SAGAN
  style) would switch the attention path off at initialisation: ``u = 0`` and the attention convolution would get
  no gradient until ``gamma`` has moved away from 0.
* ReLU before the softmax: present in the authors' later layer (the one with ``he_uniform``), absent in an early
  copy; the issue asks for it, so it is applied.
* Initialisation: the attention kernel is He-uniform (bound ``sqrt(6 / (9 C))``, as Keras ``he_uniform`` on the
  (C, 3, 3) kernel) and its bias zero, as in the authors' layer.
* Precision: under bf16/fp16 autocast the convolution runs in the low precision, the softmax and ``gamma * A ⊙ F``
  in float32; the pooled output is cast back to the feature map's dtype. The maps returned are float32 (float64
  for a float64 feature map).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lesionkit.errors import UsageError

#: Initial value of the learnable scale ``gamma`` (1.0 = the authors' Keras layer, which has no scale).
GAMMA_INIT = 1.0


def _check_positive(name: str, value: int, hint: str) -> None:
    if int(value) < 1:
        raise UsageError(f"soft attention: {name} must be >= 1, got {value}", hint=hint)


def _check_fmap(fmap: Tensor, channels: int) -> None:
    if fmap.ndim != 4 or fmap.shape[1] != channels:
        raise ValueError(f"soft attention expects a feature map [B, {channels}, h, w], got {tuple(fmap.shape)}")


def _wide(dtype: torch.dtype) -> torch.dtype:
    """float32 for half / bfloat16 (and float32), float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


def spatial_softmax(logits: Tensor) -> Tensor:
    """Softmax over the h*w positions of each map of ``logits`` [B, K, h, w], in at least float32."""
    b, k, h, w = logits.shape
    flat = logits.to(_wide(logits.dtype)).reshape(b, k, h * w)
    return torch.softmax(flat, dim=-1).reshape(b, k, h, w)


def max_pool_same(x: Tensor) -> Tensor:
    """2x2 max-pooling with stride 2 and Keras ``padding="same"``: [B, C, h, w] -> [B, C, ceil(h/2), ceil(w/2)];
    a window that runs past the last row/column takes the maximum of the values inside the map."""
    return F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)


class SoftAttention(nn.Module):
    """K attention maps over a feature map and the features they weight.

    The maps come from a 3-D convolution over the feature tensor viewed as [B, 1, C, h, w] with a (C, 3, 3) kernel,
    K output channels, stride (C, 1, 1), padding (0, 1, 1) -- the same linear map as ``Conv2d(C, K, 3, padding=1)``,
    which is how it is computed -- then ReLU and a softmax over the h*w positions of each map.

    ``forward(fmap)`` -> ``(u, alpha)``: ``u = gamma * A ⊙ F`` [B, C, h, w] in ``fmap``'s dtype with
    ``A = sum_k alpha_k``, and the maps ``alpha`` [B, K, h, w] (float32, or float64 for a float64 ``fmap``; each
    summing to 1 over positions).
    """

    def __init__(self, channels: int, heads: int = 16):
        super().__init__()
        _check_positive("channels", channels, hint="pass the channel count of the backbone's feature map")
        _check_positive("heads", heads, hint="use e.g. --attention-heads 16 (the paper's value)")
        self.channels = int(channels)
        self.heads = int(heads)
        self.conv = nn.Conv2d(self.channels, self.heads, kernel_size=3, padding=1)
        self.gamma = nn.Parameter(torch.tensor(GAMMA_INIT))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-uniform kernel (bound sqrt(6 / fan_in), fan_in = 9 C) and zero bias, as the authors' Keras layer."""
        bound = math.sqrt(6.0 / (self.channels * 9))
        nn.init.uniform_(self.conv.weight, -bound, bound)
        nn.init.zeros_(self.conv.bias)
        with torch.no_grad():
            self.gamma.fill_(GAMMA_INIT)

    def maps(self, fmap: Tensor) -> Tensor:
        """The attention maps ``alpha`` [B, K, h, w] (at least float32) of ``fmap`` [B, C, h, w]."""
        _check_fmap(fmap, self.channels)
        return spatial_softmax(F.relu(self.conv(fmap)))

    def forward(self, fmap: Tensor) -> tuple[Tensor, Tensor]:
        alpha = self.maps(fmap)
        aggregated = alpha.sum(dim=1, keepdim=True)  # [B, 1, h, w], sums to K over positions
        wide = _wide(fmap.dtype)
        u = self.gamma.to(wide) * aggregated.to(wide) * fmap.to(wide)
        return u.to(fmap.dtype), alpha


class SoftAttentionPool(nn.Module):
    """Soft-attention pooling head: feature map [B, C, h, w] -> pooled features [B, 2C] (``out_dim``).

    ``concat(maxpool(F), maxpool(gamma * A ⊙ F))`` -> ReLU -> Dropout(dropout) -> global average pooling; the
    max-pooling is 2x2 / stride 2 with Keras ``padding="same"`` (so h or w == 1 work). The final global average
    pooling is lesionkit's step to get a vector for the linear head. The first C features are the max-pooled
    features, the last C the attention path (the authors' order). ``last_maps``: the detached float32 maps
    ``alpha`` [B, K, h, w] of the last forward, for inspection and plots (None before the first forward).
    """

    def __init__(self, channels: int, heads: int = 16, dropout: float = 0.5):
        super().__init__()
        if not 0.0 <= float(dropout) < 1.0:
            raise UsageError(f"soft attention: dropout must be in [0, 1), got {dropout}", hint="use e.g. 0.5")
        self.attention = SoftAttention(channels, heads)
        self.drop = nn.Dropout(float(dropout))
        self.out_dim: int = 2 * self.attention.channels
        self.last_maps: Tensor | None = None

    @property
    def gamma(self) -> nn.Parameter:
        return self.attention.gamma

    def forward(self, fmap: Tensor) -> Tensor:
        u, alpha = self.attention(fmap)
        self.last_maps = alpha.detach()
        x = torch.cat([max_pool_same(fmap), max_pool_same(u)], dim=1)
        x = self.drop(F.relu(x))
        return x.mean(dim=(2, 3))
