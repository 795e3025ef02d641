"""Class activation maps with torch hooks, batched: Grad-CAM, Grad-CAM++, guided backprop and guided Grad-CAM.

Definitions (``A`` = target-layer activations ``[B, K, h, w]``, ``G = d score / d A``, ``score`` = the logit of
the target class; for a one-logit binary model the logit for class 1 and its negative for class 0):

* Grad-CAM (Selvaraju et al. 2017): ``w_k = mean_{ij} G_kij``; ``cam = ReLU(sum_k w_k A_k)``.
* Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with the exponential-score simplification, as pytorch-grad-cam):
  ``a_kij = G² / (2 G² + (sum_ij A_kij) G³ + 1e-6)`` (0 where ``G = 0``), ``w_k = sum_ij a_kij ReLU(G_kij)``.
* Guided backprop (Springenberg et al. 2015): the input gradient of the score with every ``nn.ReLU`` passing back
  only positive gradients at positive inputs; guided Grad-CAM = guided backprop × upsampled Grad-CAM.

:func:`upsample_normalize` brings a low-resolution map to the input size exactly as pytorch-grad-cam does
(min-max to [0, 1], bilinear resize with half-pixel centres, min-max again; ``1e-7`` in the denominators), so the
maps match that library (``tests/test_explain_cam.py`` checks ≤ 1e-5 on timm models).

Speed: the layers before the target layer run without autograd (as in plain inference); the target layer's output
is re-entered as a leaf that requires grad, so only the head (and whatever follows the target layer) is
differentiated, and only down to that layer (``torch.autograd.grad``), never to the weights or the input.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

import torch
import torch.nn.functional as F
from torch import nn

from lesionkit.errors import UsageError
from lesionkit.explain.target_layers import (
    get_module,
    num_prefix_tokens,
    resolve_target_layer,
    spatial_layers,
    tokens_to_map,
)

__all__ = [
    "CAM",
    "METHODS",
    "CAMOutput",
    "cam_from_grads",
    "class_scores",
    "guided_backprop",
    "guided_gradcam",
    "upsample_normalize",
]

METHODS = ("gradcam", "gradcam++")
EPS_NORM = 1e-7  # pytorch-grad-cam's scale_cam_image
EPS_PP = 1e-6  # pytorch-grad-cam's GradCAMPlusPlus


def class_scores(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Per-sample score ``[B]`` whose gradient a CAM explains: ``logits[b, classes[b]]``; for one-logit (binary)
    models the logit itself for class 1 and ``-logit`` for class 0 (evidence for / against the positive class)."""
    classes = classes.to(logits.device).long()
    if logits.ndim == 1:
        logits = logits[:, None]
    if logits.shape[1] == 1:
        sign = torch.where(classes == 1, 1.0, -1.0).to(logits.dtype)
        return logits[:, 0] * sign
    return logits.gather(1, classes[:, None])[:, 0]


def cam_from_grads(acts: torch.Tensor, grads: torch.Tensor, method: str = "gradcam") -> torch.Tensor:
    """Low-resolution CAM ``[B, h, w]`` (≥ 0, unnormalised) from activations and gradients ``[B, K, h, w]``."""
    acts = acts.double()  # float64 sums: the weighted sum over hundreds of channels stays exact to ~1e-12
    grads = grads.double()
    if method == "gradcam":
        w = grads.mean(dim=(2, 3))
    elif method == "gradcam++":
        g2 = grads * grads
        g3 = g2 * grads
        s = acts.sum(dim=(2, 3), keepdim=True)
        aij = g2 / (2 * g2 + s * g3 + EPS_PP)
        aij = torch.where(grads != 0, aij, torch.zeros_like(aij))
        w = (grads.clamp(min=0) * aij).sum(dim=(2, 3))
    else:
        raise UsageError(f"unknown CAM method {method!r}", hint=f"choose one of: {', '.join(METHODS)}")
    return torch.relu((w[:, :, None, None] * acts).sum(dim=1)).float()


def _minmax(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(dim=1).values[:, None, None]
    x = x - lo
    hi = x.reshape(x.shape[0], -1).max(dim=1).values[:, None, None]
    return x / (EPS_NORM + hi)


def upsample_normalize(cam: torch.Tensor, size: tuple[int, int] | int) -> torch.Tensor:
    """``[B, h, w]`` → ``[B, H, W]`` in [0, 1]: min-max, bilinear resize (half-pixel centres, as ``cv2.resize``),
    clamp at 0, min-max (pytorch-grad-cam's ``scale_cam_image`` twice). An all-zero map stays all zero."""
    if isinstance(size, int):
        size = (size, size)
    x = _minmax(cam.float())
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return _minmax(x.clamp(min=0))


@dataclass
class CAMOutput:
    """``logits`` ``[B, n_outputs]``; ``maps[method]`` low-resolution CAMs ``[B, h, w]`` (≥ 0, unnormalised);
    ``scores`` ``[B]`` (the explained score per sample); ``layer`` the target layer's name."""

    logits: torch.Tensor
    scores: torch.Tensor
    maps: dict[str, torch.Tensor]
    layer: str


class CAM:
    """Grad-CAM / Grad-CAM++ of ``model`` at one layer, for a batch at a time.

    ``model(x)`` (or ``model(x, meta)``) must return logits ``[B, n_outputs]``; ``layer``: a module name (default:
    :func:`~lesionkit.explain.target_layers.default_target_layer`). The model is used in eval mode and not changed
    (one forward hook, removed by :meth:`close` / the context manager).
    """

    def __init__(self, model: nn.Module, layer: str | None = None, methods: Sequence[str] = ("gradcam",)) -> None:
        for m in methods:
            if m not in METHODS:
                raise UsageError(f"unknown CAM method {m!r}", hint=f"choose from: {', '.join(METHODS)}")
        self.model = model.eval()
        self.layer, self.module = resolve_target_layer(model, layer)
        self.methods = tuple(methods)
        self.prefix = num_prefix_tokens(model)
        self._leaf: torch.Tensor | None = None
        self._active = False  # the hook acts only inside __call__ (plain forwards of the model are untouched)
        self._handle = self.module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: object, out: object) -> torch.Tensor | None:
        if not self._active:
            return None
        if not isinstance(out, torch.Tensor):
            raise UsageError(f"layer {self.layer!r} returns {type(out).__name__}, not a tensor",
                             hint="choose a layer with a spatial output: " + ", ".join(spatial_layers(self.model)))
        torch.set_grad_enabled(True)  # layers after the target layer record a graph (restored in __call__)
        leaf = out.detach().requires_grad_(True)
        self._leaf = leaf
        return leaf.clone()  # a non-leaf, so in-place ops after the layer are allowed

    def _as_map(self, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 4:
            return t
        if t.ndim == 3:
            try:
                return tokens_to_map(t, self.prefix)
            except ValueError:
                pass
        raise UsageError(f"layer {self.layer!r} output has shape {tuple(t.shape)}, not a spatial map",
                         hint="choose a layer with a spatial output: " + ", ".join(spatial_layers(self.model)))

    def __call__(self, x: torch.Tensor, classes: torch.Tensor | None = None, meta: torch.Tensor | None = None) -> CAMOutput:
        """CAMs of ``classes`` (``[B]`` long; None = the predicted class) for the normalised batch ``x``."""
        self._leaf = None
        prev = torch.is_grad_enabled()
        self._active = True
        try:
            torch.set_grad_enabled(False)
            logits = self.model(x) if meta is None or meta.numel() == 0 else self.model(x, meta)
            if self._leaf is None:
                raise UsageError(f"layer {self.layer!r} was not called in the forward pass",
                                 hint="choose a layer that runs: " + ", ".join(spatial_layers(self.model)))
            if logits.ndim == 1:
                logits = logits[:, None]
            if classes is None:
                classes = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
            scores = class_scores(logits, classes)
            (grads,) = torch.autograd.grad(scores.sum(), self._leaf)
        finally:
            self._active = False
            torch.set_grad_enabled(prev)
        acts = self._as_map(self._leaf.detach())
        grads = self._as_map(grads)
        maps = {m: cam_from_grads(acts, grads, m) for m in self.methods}
        self._leaf = None
        return CAMOutput(logits=logits.detach(), scores=scores.detach(), maps=maps, layer=self.layer)

    def close(self) -> None:
        self._handle.remove()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _GuidedReLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g * (x > 0).to(g.dtype) * (g > 0).to(g.dtype)


class GuidedReLU(nn.Module):
    """ReLU whose backward passes only positive gradients at positive inputs (guided backpropagation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GuidedReLUFn.apply(x)


def guided_model(model: nn.Module) -> tuple[nn.Module, int]:
    """A deep copy of ``model`` (eval mode) with every ``nn.ReLU`` replaced by :class:`GuidedReLU`; returns it and
    the number of replaced modules (0 for models with other activations: guided backprop is then the plain
    input gradient)."""
    g = copy.deepcopy(model).eval()
    n = 0
    for parent in list(g.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, GuidedReLU())
                n += 1
    return g, n


def guided_backprop(gmodel: nn.Module, x: torch.Tensor, classes: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
    """Guided-backprop input gradients ``[B, C, H, W]`` of the class scores, with ``gmodel`` from
    :func:`guided_model` (samples are independent in eval mode, so one backward serves the batch)."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = gmodel(x) if meta is None or meta.numel() == 0 else gmodel(x, meta)
        if logits.ndim == 1:
            logits = logits[:, None]
        (g,) = torch.autograd.grad(class_scores(logits, classes).sum(), x)
    return g.detach()


def guided_gradcam(gb: torch.Tensor, cam01: torch.Tensor) -> torch.Tensor:
    """Guided Grad-CAM ``[B, C, H, W]``: guided backprop × the upsampled CAM ``[B, H, W]`` (pixel-wise)."""
    return gb * cam01[:, None].to(gb.dtype)


def deprocess(img: torch.Tensor) -> torch.Tensor:
    """A signed map ``[C, H, W]`` → uint8 ``[H, W, C]`` for display: standardise, ×0.1 + 0.5, clip (pytorch-grad-cam's
    ``deprocess_image``)."""
    a = img.detach().float().permute(1, 2, 0)
    a = (a - a.mean()) / (a.std(unbiased=False) + 1e-5) * 0.1 + 0.5
    return (a.clamp(0, 1) * 255).to(torch.uint8)


def layer_module(model: nn.Module, name: str) -> nn.Module:
    """The module called ``name`` (alias of :func:`~lesionkit.explain.target_layers.get_module`)."""
    return get_module(model, name)
