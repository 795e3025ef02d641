"""Model factory: any timm backbone by name + optional metadata-fusion branch + a linear head.

``LesionNet`` = ``timm.create_model(name, num_classes=0)`` (pooled image features, ``F`` floats per image)
→ optionally concatenated with the output of a metadata MLP (``Linear → BatchNorm1d → activation → Dropout`` per
hidden size; the UCLA thesis uses one 256-unit layer, the ISIC 2020 1st place solution 512 → 128) → ``Dropout``
→ ``Linear(F + meta_out, num_outputs)``. A binary target uses ONE output (a logit for the positive class).

Pretrained weights are read from a LOCAL file only (nothing can be downloaded on these machines); a missing or
mismatching file is an :class:`~lesionkit.errors.InputError` whose hint says how to export weights with timm on a
connected machine.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lesionkit.console import debug
from lesionkit.errors import InputError, UsageError

#: Activations accepted for the metadata branch (``ModelSpec.meta_activation``).
META_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,  # "swish" (ISIC 2020 1st place)
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}
#: Pooling heads over the backbone's feature map (``ModelSpec.head``): timm's global pooling, or soft attention
#: (Datta et al. 2021, :mod:`lesionkit.models.attention`).
HEADS = ("linear", "soft-attention")
#: Architectures (``ModelSpec.arch``): one timm backbone, or Reekie's full stochastic split model
#: (:mod:`lesionkit.models.stochastic`).
ARCHS = ("lesionnet", "stochastic-split")


@dataclass
class ModelSpec:
    """Everything needed to rebuild a :class:`LesionNet` (stored in checkpoints as plain types).

    name: timm model name (``timm.list_models()``). num_outputs: logits per image (C classes; 1 for binary).
    img_size: square input side in pixels (passed to timm for models that take it, e.g. ViTs).
    meta_dim: length of the metadata vector (0 = no metadata branch). meta_hidden: hidden sizes of the metadata
    MLP (``()`` = concatenate the raw metadata vector). meta_dropout: dropout probability in [0, 1) after each
    metadata layer. drop_rate: dropout probability in [0, 1) on the fused features before the head.
    in_chans: input channels. meta_activation: one of :data:`META_ACTIVATIONS`. kwargs: extra keyword arguments
    for ``timm.create_model`` (e.g. ``{"drop_path_rate": 0.1}``), plain JSON types only.
    """

    name: str
    num_outputs: int
    img_size: int
    meta_dim: int = 0
    meta_hidden: tuple[int, ...] = (256,)
    meta_dropout: float = 0.3
    drop_rate: float = 0.0
    in_chans: int = 3
    meta_activation: str = "relu"
    kwargs: dict[str, Any] = field(default_factory=dict)
    small_input: bool = False
    # pooling head over the feature map: "linear" (timm global pooling) | "soft-attention" (attention_heads maps)
    head: str = "linear"
    attention_heads: int = 16
    # "lesionnet" | "stochastic-split": img_size is then the high-resolution input; the stem of the first backbone
    # convolves per-channel random windows sized so its output is stem_out², the second backbone sees the image
    # resized to split_low_size²; tta = forward passes averaged in eval mode (stochastic TTA)
    arch: str = "lesionnet"
    split_low_size: int = 224
    stem_out: int = 112
    tta: int = 1
    # debiasing (lesionkit.train.debias): an auxiliary head with this many bias classes on the shared features
    bias_outputs: int = 0

    def __post_init__(self) -> None:
        self.meta_hidden = tuple(int(h) for h in self.meta_hidden)
        problems = []
        if self.num_outputs < 1:
            problems.append(f"num_outputs must be >= 1, got {self.num_outputs}")
        if self.img_size < 1:
            problems.append(f"img_size must be >= 1, got {self.img_size}")
        if self.meta_dim < 0:
            problems.append(f"meta_dim must be >= 0, got {self.meta_dim}")
        if any(h < 1 for h in self.meta_hidden):
            problems.append(f"meta hidden sizes must be >= 1, got {list(self.meta_hidden)}")
        for nm in ("meta_dropout", "drop_rate"):
            v = getattr(self, nm)
            if not 0.0 <= v < 1.0:
                problems.append(f"{nm} must be in [0, 1), got {v}")
        if self.head not in HEADS:
            problems.append(f"head must be one of {list(HEADS)}, got {self.head!r}")
        if self.arch not in ARCHS:
            problems.append(f"arch must be one of {list(ARCHS)}, got {self.arch!r}")
        if self.attention_heads < 1:
            problems.append(f"attention_heads must be >= 1, got {self.attention_heads}")
        if self.tta < 1:
            problems.append(f"tta must be >= 1, got {self.tta}")
        if self.bias_outputs < 0 or self.bias_outputs == 1:
            problems.append(f"bias_outputs must be 0 (no debiasing) or >= 2 bias classes, got {self.bias_outputs}")
        if self.arch == "stochastic-split":
            if self.stem_out < 1 or self.split_low_size < 8:
                problems.append(f"stem_out must be >= 1 and split_low_size >= 8, got {self.stem_out} / "
                                f"{self.split_low_size}")
            if self.split_low_size > self.img_size:
                problems.append(f"split_low_size {self.split_low_size} must not exceed img_size {self.img_size} "
                                "(the low-resolution branch sees a downsized image)")
            if self.head != "linear":
                problems.append("the stochastic split model pools with timm's global pooling (head 'linear')")
        if self.meta_activation not in META_ACTIVATIONS:
            problems.append(f"meta_activation must be one of {sorted(META_ACTIVATIONS)}, got {self.meta_activation!r}")
        if problems:
            raise UsageError("invalid model specification", details=problems)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["meta_hidden"] = list(self.meta_hidden)
        d["kwargs"] = dict(self.kwargs)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(
                f"model spec has unknown keys {unknown} (known: {sorted(known)})",
                hint="the checkpoint was probably written by a newer lesionkit; upgrade lesionkit",
            )
        d = dict(d)
        if "meta_hidden" in d:
            d["meta_hidden"] = tuple(d["meta_hidden"])
        return cls(**d)


def check_model_name(name: str) -> None:
    """Raise :class:`UsageError` listing close matches when ``name`` is not a timm model."""
    import timm

    if timm.is_model(name):
        return
    names = timm.list_models()
    close = difflib.get_close_matches(name, names, n=8, cutoff=0.6)
    wild = timm.list_models(f"*{name}*")[:8] if name else []
    suggestions = list(dict.fromkeys(close + wild))[:10]
    raise UsageError(
        f"unknown timm model --model {name!r}",
        hint="close matches: " + ", ".join(suggestions) if suggestions
        else "list models with: python -c \"import timm; print(timm.list_models('*resnet*'))\"",
    )


def make_small_input_stem(backbone: nn.Module, name: str) -> None:
    """Turn a timm ResNet-family stem into a CIFAR / MedMNIST-style one, in place: the first convolution of
    ``conv1`` becomes 3x3, stride 1 (a 7x7 one is replaced by a fresh 3x3 conv with the same channels) and
    ``maxpool`` becomes the identity. The overall stride drops from 32 to 8 (e.g. 28 px -> 4x4 last features).
    Raises :class:`UsageError` for models without such a stem."""
    conv1, pool = getattr(backbone, "conv1", None), getattr(backbone, "maxpool", None)
    parent, key = backbone, "conv1"
    if isinstance(conv1, nn.Sequential):  # deep / tiered stems (resnet10t, resnet*d): the first conv of the stack
        parent, key = conv1, next((k for k, m in conv1.named_children() if isinstance(m, nn.Conv2d)), None)
        conv1 = getattr(conv1, key) if key is not None else None
    if not isinstance(conv1, nn.Conv2d) or pool is None:
        raise UsageError(f"--small-input needs a ResNet-style stem (conv1 + maxpool); timm model {name!r} has none",
                         hint="use a ResNet-family model, e.g. --model resnet18 or resnet10t")
    if conv1.kernel_size != (3, 3) or conv1.stride != (1, 1):
        new = nn.Conv2d(conv1.in_channels, conv1.out_channels, 3, stride=1, padding=1, bias=conv1.bias is not None)
        setattr(parent, key, new)
    backbone.maxpool = nn.Identity()


def _create_backbone(spec: ModelSpec) -> nn.Module:
    """The network that maps an image batch to pooled features (``num_features`` floats per image): the timm
    backbone (:func:`_timm_backbone`, with the small-input stem when ``spec.small_input``), or for
    ``arch="stochastic-split"`` the two-branch stochastic split feature extractor."""
    if spec.arch == "stochastic-split":
        from lesionkit.models.stochastic import StochasticSplitFeatures

        hi = _timm_backbone(spec)
        lo = _timm_backbone(spec, img_size=spec.split_low_size)
        return StochasticSplitFeatures(hi, lo, name=spec.name, low_size=spec.split_low_size, stem_out=spec.stem_out,
                                       tta=spec.tta)
    backbone = _timm_backbone(spec, global_pool="" if spec.head == "soft-attention" else None)
    if spec.small_input:
        make_small_input_stem(backbone, spec.name)
    return backbone


def _timm_backbone(spec: ModelSpec, img_size: int | None = None, global_pool: str | None = None) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=0)``; ``img_size`` (default ``spec.img_size``) passed
    where the model takes it; ``global_pool=""`` keeps the feature map [B, C, h, w] (soft-attention head)."""
    import timm

    check_model_name(spec.name)
    kw: dict[str, Any] = dict(spec.kwargs)
    kw.setdefault("in_chans", spec.in_chans)
    if global_pool is not None:
        kw["global_pool"] = global_pool
    size = spec.img_size if img_size is None else img_size
    try:
        if "img_size" not in kw:
            try:
                return timm.create_model(spec.name, pretrained=False, num_classes=0, img_size=size, **kw)
            except TypeError as e:  # CNNs do not take img_size (they are size-agnostic)
                if "img_size" not in str(e):
                    raise
        return timm.create_model(spec.name, pretrained=False, num_classes=0, **kw)
    except TypeError as e:
        raise UsageError(
            f"timm model {spec.name!r} rejected the model arguments {sorted(kw)}: {e}",
            hint="remove the offending model keyword argument",
        ) from e


def feature_dim(backbone: nn.Module) -> int:
    """Length of the pooled feature vector ``backbone(x)`` returns with ``num_classes=0``."""
    dim = getattr(backbone, "head_hidden_size", None) or getattr(backbone, "num_features", None)
    if not dim:
        raise UsageError(f"cannot tell the feature size of {type(backbone).__name__} (no num_features)")
    return int(dim)


class LesionNet(nn.Module):
    """timm backbone (pooled features, or a soft-attention head over its feature map) ⊕ optional metadata MLP
    → dropout → linear head; optionally an auxiliary bias head on the same fused features (debiasing).

    ``forward(x, meta=None, with_features=False)``: ``x`` float [B, in_chans, H, W] (normalised); ``meta`` float
    [B, meta_dim] (required when ``spec.meta_dim > 0``). Returns logits [B, num_outputs], or ``(logits, features)``
    with ``with_features=True`` (the fused features the heads see, for the debiasing losses).
    """

    def __init__(self, spec: ModelSpec, backbone: nn.Module | None = None):
        super().__init__()
        self.spec = spec
        self.backbone = backbone if backbone is not None else _create_backbone(spec)
        self.pool: nn.Module | None = None
        if spec.head == "soft-attention":
            from lesionkit.models.attention import SoftAttentionPool

            self.pool = SoftAttentionPool(feature_dim(self.backbone), heads=spec.attention_heads)
            self.feature_dim = int(self.pool.out_dim)
        else:
            self.feature_dim = feature_dim(self.backbone)
        meta_out = 0
        self.meta_branch: nn.Sequential | None = None
        if spec.meta_dim > 0:
            layers: list[nn.Module] = []
            d = spec.meta_dim
            for h in spec.meta_hidden:
                layers += [nn.Linear(d, h), nn.BatchNorm1d(h), META_ACTIVATIONS[spec.meta_activation](),
                           nn.Dropout(spec.meta_dropout)]
                d = h
            self.meta_branch = nn.Sequential(*layers) if layers else nn.Sequential(nn.Identity())
            meta_out = d
        self.head_drop = nn.Dropout(spec.drop_rate)
        self.head = nn.Linear(self.feature_dim + meta_out, spec.num_outputs)
        self.aux_head = nn.Linear(self.feature_dim + meta_out, spec.bias_outputs) if spec.bias_outputs else None

    def forward_features(self, x: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        """Fused features [B, feature_dim + meta_out] (image features, then metadata features)."""
        f = self.backbone(x)
        if self.pool is not None:
            if f.ndim != 4:
                raise UsageError(f"--head soft-attention needs a CNN feature map [B, C, h, w]; timm model "
                                 f"{self.spec.name!r} gives shape {tuple(f.shape)}",
                                 hint="use --head linear with this model, or a CNN (resnet, efficientnet, convnext)")
            f = self.pool(f)
        if self.meta_branch is not None:
            if meta is None or meta.ndim != 2 or meta.shape[1] != self.spec.meta_dim:
                found = None if meta is None else tuple(meta.shape)
                raise ValueError(f"model expects metadata of shape [B, {self.spec.meta_dim}], got {found}")
            f = torch.cat([f, self.meta_branch(meta.to(f.dtype))], dim=1)
        return f

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None,
                with_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        f = self.forward_features(x, meta)
        logits = self.head(self.head_drop(f))
        return (logits, f) if with_features else logits


def _fetch_hint(name: str) -> str:
    return (
        "weights cannot be downloaded on this machine; on a connected machine run "
        f"`python -c \"import timm,torch; m=timm.create_model('{name}', pretrained=True); "
        f"torch.save(m.state_dict(),'{name}.pth')\"`, copy {name}.pth here, then pass `--pretrained {name}.pth` "
        "(or `--pretrained none` for random initialisation)"
    )


def _read_state_dict(path: Path, name: str) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"cannot read pretrained weights {path}: {type(e).__name__}: {e}", hint=_fetch_hint(name)) from e
    if isinstance(obj, Mapping):
        if obj.get("format") == "lesionkit-checkpoint" and "state_dict" in obj:  # a lesionkit run
            obj = {k[len("backbone."):]: v for k, v in obj["state_dict"].items() if k.startswith("backbone.")}
        else:
            for key in ("state_dict_ema", "state_dict", "model"):
                if key in obj and isinstance(obj[key], Mapping):
                    obj = obj[key]
                    break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"pretrained file {path} does not hold a state dict of tensors", hint=_fetch_hint(name))
    sd: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        k = re.sub(r"^(module\.|_orig_mod\.)+", "", k)
        sd[k] = v
    return sd


def load_pretrained_backbone(backbone: nn.Module, path: Path, name: str, in_chans: int = 3) -> None:
    """Load a local state dict into ``backbone`` (strict except for classifier keys), or raise InputError.

    Uses the model module's timm ``checkpoint_filter_fn`` when it has one (key remapping, ViT position-embedding
    resampling for another ``img_size``) and adapts the first conv for ``in_chans != 3`` like timm does.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"pretrained weights file not found: {path}", hint=_fetch_hint(name))
    sd = _read_state_dict(path, name)
    filt = getattr(sys.modules.get(type(backbone).__module__), "checkpoint_filter_fn", None)
    if filt is not None:
        try:
            sd = filt(sd, backbone)
        except Exception as e:  # noqa: BLE001 - the strict load below reports the real mismatch
            debug(f"timm checkpoint filter of {name} failed ({type(e).__name__}: {e}); loading keys as they are")
    cfg = getattr(backbone, "pretrained_cfg", {}) or {}
    first_conv = cfg.get("first_conv")
    if in_chans != 3 and isinstance(first_conv, str) and f"{first_conv}.weight" in sd:
        from timm.models._manipulate import adapt_input_conv

        w = sd[f"{first_conv}.weight"]
        if w.ndim == 4 and w.shape[1] != in_chans:
            sd[f"{first_conv}.weight"] = adapt_input_conv(in_chans, w)
    classifiers = cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    own = backbone.state_dict()
    dropped = [k for k in sd if any(k.startswith(c + ".") for c in classifiers) and k not in own]
    for k in dropped:
        del sd[k]
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shape = sorted(f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                   for k in set(sd) & set(own) if sd[k].shape != own[k].shape)
    if missing or unexpected or shape:
        details = []
        if missing:
            details.append(f"{len(missing)} missing keys, e.g. {missing[:5]}")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[:5]}")
        if shape:
            details.append(f"{len(shape)} shape mismatches, e.g. {shape[:3]}")
        raise InputError(
            f"pretrained weights {path} do not match timm model {name!r}",
            hint="pass weights saved from the same architecture. " + _fetch_hint(name),
            details=details,
        )
    backbone.load_state_dict(sd, strict=True)


def create_model(spec: ModelSpec, pretrained: Path | str | None = None) -> LesionNet:
    """Build a :class:`LesionNet`; ``pretrained`` = a local weights file (``.pth``/``.pt``/``.safetensors``) for
    the backbone, or None/"none" for random initialisation (the head and metadata branch are always fresh)."""
    model = LesionNet(spec)
    if pretrained is not None and str(pretrained).lower() != "none":
        if spec.arch == "stochastic-split":  # the same ImageNet weights for both branches (the stem keeps its keys)
            for branch in (model.backbone.hi, model.backbone.lo):
                load_pretrained_backbone(branch, Path(pretrained), spec.name, spec.in_chans)
        else:
            load_pretrained_backbone(model.backbone, Path(pretrained), spec.name, spec.in_chans)
    return model


def data_config(model: LesionNet) -> dict[str, Any]:
    """Preprocessing of the model as plain types: ``input_size`` [C, H, W] (H = W = ``spec.img_size``), ``mean`` and
    ``std`` (per channel, for pixel values scaled to [0, 1]), ``interpolation`` (str), ``crop_pct`` (float)."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config(model=model.backbone)
    spec = model.spec
    mean = [float(v) for v in cfg["mean"]]
    std = [float(v) for v in cfg["std"]]
    if len(mean) != spec.in_chans:  # e.g. a 1-channel model: the channel mean of the RGB statistics
        mean = [sum(mean) / len(mean)] * spec.in_chans
        std = [sum(std) / len(std)] * spec.in_chans
    return {
        "input_size": [int(spec.in_chans), int(spec.img_size), int(spec.img_size)],
        "mean": mean,
        "std": std,
        "interpolation": str(cfg.get("interpolation", "bilinear")),
        "crop_pct": float(cfg.get("crop_pct", 1.0)),
    }
