"""Which layer a CAM is computed on: the last feature stage of a timm model by default, any named module on request.

Default: the module named by the last entry of timm's ``feature_info`` (``layer4`` for ResNets, ``stages.3`` for
ConvNeXt, ``blocks.6`` for EfficientNet-B0, ``features.norm5`` for DenseNet, ``blocks.11`` for ViT-Ti), i.e. the
deepest feature map, at the model's coarsest stride. For a :class:`~lesionkit.models.factory.LesionNet` the name
is prefixed with ``backbone.`` (``backbone.lo.`` for the stochastic split model: its low-resolution branch is the
one whose maps are in image coordinates). Models without ``feature_info`` fall back to the last module whose output is a
spatial map.

A *valid* target layer is a module whose output is a spatial map: ``[B, C, h, w]`` (CNNs) or a token sequence
``[B, N, C]`` whose last ``h * w`` tokens form a square grid (ViTs; leading class / register tokens are dropped).
:func:`spatial_layers` finds them with one forward pass on a small dummy input.
"""

from __future__ import annotations

import difflib
import math

import torch
from torch import nn

from lesionkit.errors import UsageError

__all__ = ["default_target_layer", "get_module", "resolve_target_layer", "spatial_layers", "tokens_to_map"]


def _backbone(model: nn.Module) -> tuple[nn.Module, str]:
    """The timm network inside ``model`` and the prefix of its module names (``"backbone."`` for a LesionNet)."""
    bb = getattr(model, "backbone", None)
    lo = getattr(bb, "lo", None)
    if isinstance(lo, nn.Module) and hasattr(lo, "feature_info"):
        # stochastic split model: only the low-resolution branch's maps are in image coordinates (each stem
        # channel of the high-resolution branch sees its own random window)
        return lo, "backbone.lo."
    if isinstance(bb, nn.Module) and hasattr(bb, "feature_info"):
        return bb, "backbone."
    return model, ""


def num_prefix_tokens(model: nn.Module) -> int | None:
    """Class / register tokens before the patch tokens of a ViT-like timm model (None when not declared)."""
    bb, _ = _backbone(model)
    n = getattr(bb, "num_prefix_tokens", None)
    return int(n) if n is not None else None


def tokens_to_map(t: torch.Tensor, prefix: int | None = None) -> torch.Tensor:
    """``[B, N, C]`` tokens → ``[B, C, h, w]``: drops ``prefix`` leading tokens (default: ``N - h*w`` with the
    largest square ``h*w <= N``) and lays the rest out row-major. Raises ValueError when no square grid remains."""
    b, n, c = t.shape
    if prefix is None:
        side = math.isqrt(n)
        prefix = n - side * side
    side = math.isqrt(n - prefix)
    if side * side != n - prefix or side == 0:
        raise ValueError(f"{n} tokens minus {prefix} prefix tokens do not form a square grid")
    return t[:, prefix:, :].transpose(1, 2).reshape(b, c, side, side)


def default_target_layer(model: nn.Module) -> str:
    """Name of the default CAM layer: the last timm ``feature_info`` stage (prefixed ``backbone.`` in a LesionNet)."""
    bb, prefix = _backbone(model)
    info = getattr(bb, "feature_info", None)
    if info is not None:
        try:
            entries = list(info) if not hasattr(info, "get_dicts") else info.get_dicts()
        except TypeError:
            entries = []
        names = dict(model.named_modules())
        for entry in reversed(entries):
            mod = entry.get("module") if isinstance(entry, dict) else None
            if mod and prefix + mod in names:
                return prefix + mod
    layers = spatial_layers(model)
    if not layers:
        raise UsageError(f"{type(model).__name__} has no layer with a spatial output (no Grad-CAM target layer)")
    return layers[-1]


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (as in ``model.named_modules()``); UsageError listing valid names otherwise."""
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    valid = spatial_layers(model)
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
    raise UsageError(
        f"--layer {name!r} is not a layer of this model",
        details=[f"close matches: {', '.join(close)}" if close else "no close match",
                 f"valid target layers (modules with a spatial output, input to output): {', '.join(valid)}"],
        hint=f"the default is {default_target_layer(model)!r}; pass one of the names above to --layer",
    )


@torch.no_grad()
def spatial_layers(model: nn.Module, input_size: int = 64, in_chans: int | None = None) -> list[str]:
    """Names of the modules whose output is a spatial map, in execution order (one forward on a zero image of
    ``input_size`` px, batch of 2; the model is put in eval mode for the pass and restored)."""
    was_training = model.training
    model.eval()
    spec = getattr(model, "spec", None)
    if in_chans is None:
        in_chans = int(getattr(spec, "in_chans", 3))
    size = int(getattr(spec, "img_size", input_size)) if spec is not None else input_size
    prefix = num_prefix_tokens(model)
    found: list[str] = []
    handles = []

    def hook(name: str):
        def fn(module: nn.Module, args: object, out: object) -> None:
            if not isinstance(out, torch.Tensor) or name in found:
                return
            if out.ndim == 4:
                found.append(name)
            elif out.ndim == 3 and prefix is not None:
                try:
                    tokens_to_map(out, prefix)
                    found.append(name)
                except ValueError:
                    pass
        return fn

    for name, mod in model.named_modules():
        if name:
            handles.append(mod.register_forward_hook(hook(name)))
    try:
        p = next(model.parameters(), None)
        x = torch.zeros(2, in_chans, size, size, device=p.device if p is not None else "cpu")
        meta_dim = int(getattr(spec, "meta_dim", 0) or 0)
        if meta_dim:
            model(x, torch.zeros(2, meta_dim, device=x.device))
        else:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return found


def resolve_target_layer(model: nn.Module, name: str | None = None) -> tuple[str, nn.Module]:
    """``(name, module)`` of the CAM layer: ``name`` when given (validated; a wrong name lists the valid ones),
    else :func:`default_target_layer`."""
    name = name or default_target_layer(model)
    return name, get_module(model, name)
