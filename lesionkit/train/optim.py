"""Optimisers with layer groups, discriminative (layer-wise) and per-branch learning rates.

* :func:`layer_groups` splits a :class:`~lesionkit.models.factory.LesionNet` into parameter groups ordered from the
  input to the output: the backbone by timm's coarse ``group_matcher`` (e.g. ResNet: stem, layer1..layer4;
  EfficientNet: stem, block stages, head conv; ViT: embeddings, each block, final norm), then the head together with
  the metadata branch as the last group.
* :func:`discriminative_lrs`: rates log-spaced from ``lr·ratio`` (first group) to ``lr`` (head),
  α_i = α_min·(α_opt/α_min)^(i/(L−1)) (Mishra, eq. 2.9).
* :func:`build_optimizer`: SGD (momentum, Nesterov) / Adam / AdamW over those groups; no weight decay on biases,
  normalisation weights (every parameter with ≤ 1 dimension) and timm's ``no_weight_decay()`` names (ViT position
  embedding, class token); optional per-branch learning rates (backbone / head / metadata branch, UCLA thesis).
  Every param group records ``base_lr`` (the rate the schedule multiplies), ``name``, ``branch``, ``layer_group``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from lesionkit.console import debug
from lesionkit.errors import UsageError
from lesionkit.models.checkpoint import unwrap_model

OPTIMIZERS = ("sgd", "adam", "adamw")
BRANCHES = ("backbone", "head", "meta", "aux")


def _backbone_groups(backbone: nn.Module) -> list[list[nn.Parameter]]:
    named = [(n, p) for n, p in backbone.named_parameters() if p.requires_grad]
    if not named:
        return []
    matcher = None
    if hasattr(backbone, "group_matcher"):
        try:
            matcher = backbone.group_matcher(coarse=True)
        except Exception:  # noqa: BLE001 - fall back to module order below
            matcher = None
    if matcher:
        from timm.models._manipulate import group_with_matcher

        grouped = group_with_matcher(named, matcher, return_values=True)
        return [list(grouped[k]) for k in sorted(grouped) if grouped[k]]
    # No timm matcher: one group per top-level child module, in registration order (≈ forward order), with
    # parameters held directly by the backbone first.
    order: dict[str, int] = {name: i + 1 for i, (name, _) in enumerate(backbone.named_children())}
    buckets: dict[int, list[nn.Parameter]] = {}
    for n, p in named:
        top = n.split(".", 1)[0]
        buckets.setdefault(order.get(top, 0) if "." in n else 0, []).append(p)
    return [buckets[k] for k in sorted(buckets)]


def layer_groups(model: nn.Module, n_groups: int | None = None) -> list[list[nn.Parameter]]:
    """Trainable parameters of a LesionNet in ordered groups, input → output, head (+ metadata branch) last.

    ``n_groups``: total number of groups wanted including the head group (≥ 2), or None for all of timm's coarse
    backbone groups + 1. Backbone groups are merged into ``n_groups − 1`` contiguous runs of near-equal group count
    (fewer if the backbone has fewer groups). Every trainable parameter appears exactly once; frozen ones
    (``requires_grad=False``) are left out.
    """
    m = unwrap_model(model)
    if not hasattr(m, "backbone") or not hasattr(m, "head"):
        raise TypeError(f"layer_groups needs a LesionNet (with .backbone and .head), got {type(m).__name__}")
    groups = _backbone_groups(m.backbone)
    if n_groups is not None:
        if n_groups < 1:
            raise UsageError(f"number of layer groups must be >= 1, got {n_groups}")
        if n_groups == 1:
            backbone_ids = {id(p) for g in groups for p in g}
            rest = [p for p in m.parameters() if p.requires_grad and id(p) not in backbone_ids]
            return [[p for g in groups for p in g] + rest]
        k = min(n_groups - 1, len(groups))
        if k and k < len(groups):
            parts = np.array_split(np.arange(len(groups)), k)
            groups = [[p for i in part for p in groups[int(i)]] for part in parts]
    backbone_ids = {id(p) for g in groups for p in g}
    head = [p for p in m.parameters() if p.requires_grad and id(p) not in backbone_ids]
    return [g for g in groups if g] + ([head] if head else [])


def discriminative_lrs(lr: float, ratio: float, n: int) -> list[float]:
    """``n`` learning rates log-spaced from ``lr·ratio`` (first, input side) to ``lr`` (last, head).

    α_i = α_min·(α_opt/α_min)^(i/(n−1)) with α_opt = lr, α_min = lr·ratio, i = 0..n−1 (Mishra eq. 2.9);
    ``n == 1`` → ``[lr]``. ``ratio`` > 0 (typically 0.01–0.1).
    """
    if n < 1:
        raise UsageError(f"number of learning rates must be >= 1, got {n}")
    if not lr > 0:
        raise UsageError(f"learning rate must be > 0, got {lr}")
    if not ratio > 0:
        raise UsageError(f"--lr-ratio must be > 0, got {ratio}")
    if n == 1:
        return [float(lr)]
    lo = lr * ratio
    return [float(lo * (lr / lo) ** (i / (n - 1))) for i in range(n)]


def _no_decay_names(m: nn.Module) -> set[str]:
    names: set[str] = set()
    fn = getattr(m.backbone, "no_weight_decay", None) if hasattr(m, "backbone") else None
    if callable(fn):
        try:
            names |= {f"backbone.{n}" for n in fn()}
        except Exception as e:  # noqa: BLE001 - optional timm hook
            debug(f"no_weight_decay() of the backbone failed ({e}); decaying all weights with >= 2 dims")
    return names


def _branch_of(m: nn.Module) -> dict[int, str]:
    out: dict[int, str] = {}
    if hasattr(m, "backbone"):
        out.update({id(p): "backbone" for p in m.backbone.parameters()})
    if getattr(m, "meta_branch", None) is not None:
        out.update({id(p): "meta" for p in m.meta_branch.parameters()})
    if getattr(m, "aux_head", None) is not None:  # the debiasing bias head
        out.update({id(p): "aux" for p in m.aux_head.parameters()})
    return out


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    nesterov: bool = True,
    lr_ratio: float | None = None,
    branch_lrs: Mapping[str, float] | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    n_groups: int | None = None,
) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW over the trainable parameters of ``model`` (a LesionNet, possibly wrapped).

    lr: the head's learning rate (> 0). weight_decay ≥ 0, applied to weights with ≥ 2 dims only (not to
    biases, norm weights or timm ``no_weight_decay()`` params). momentum/nesterov: SGD only (Nesterov needs
    momentum > 0). lr_ratio: when set, discriminative rates over :func:`layer_groups` — group i gets
    ``discriminative_lrs(1, lr_ratio, L)[i]`` × its branch rate (so the head keeps its rate).
    branch_lrs: ``{"backbone": x, "head": y, "meta": z, "aux": a}`` per-branch rates (``aux`` = the debiasing
    bias head); missing keys use ``lr``.
    n_groups: with ``lr_ratio``, the number of layer groups (head included) passed to :func:`layer_groups`
    (None = every timm coarse group + head).
    Each param group carries ``lr``, ``base_lr`` (= initial lr), ``weight_decay``, ``name``, ``branch``,
    ``layer_group``.
    """
    name = name.lower()
    if name not in OPTIMIZERS:
        raise UsageError(f"unknown --optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not lr > 0:
        raise UsageError(f"--lr must be > 0, got {lr}")
    if weight_decay < 0:
        raise UsageError(f"--weight-decay must be >= 0, got {weight_decay}")
    branch_lrs = dict(branch_lrs or {})
    bad = sorted(set(branch_lrs) - set(BRANCHES))
    if bad:
        raise UsageError(f"unknown branch(es) {bad} in branch learning rates; known: {', '.join(BRANCHES)}")
    for b, v in branch_lrs.items():
        if not v > 0:
            raise UsageError(f"learning rate of branch {b!r} must be > 0, got {v}")
    rate = {b: float(branch_lrs.get(b, lr)) for b in BRANCHES}

    m = unwrap_model(model)
    if lr_ratio is not None:
        groups = layer_groups(m, n_groups)
        mults = discriminative_lrs(1.0, lr_ratio, len(groups))
    else:
        groups = [[p for p in m.parameters() if p.requires_grad]]
        mults = [1.0]
    if not any(groups):
        raise UsageError("the model has no trainable parameters")
    branch = _branch_of(m)
    names = {id(p): n for n, p in m.named_parameters()}
    no_decay = _no_decay_names(m)

    param_groups: list[dict] = []
    for gi, (params, mult) in enumerate(zip(groups, mults, strict=True)):
        buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
        for p in params:
            decay = p.ndim > 1 and names.get(id(p)) not in no_decay
            buckets.setdefault((branch.get(id(p), "head"), decay), []).append(p)
        for (b, decay), ps in buckets.items():
            g_lr = rate[b] * mult
            param_groups.append({
                "params": ps, "lr": g_lr, "base_lr": g_lr, "weight_decay": weight_decay if decay else 0.0,
                "name": f"g{gi}.{b}.{'decay' if decay else 'no_decay'}", "branch": b, "layer_group": gi,
            })

    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=momentum, nesterov=bool(nesterov and momentum > 0),
                               weight_decay=weight_decay)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(param_groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
