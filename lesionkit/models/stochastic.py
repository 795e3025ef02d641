"""Stochastic convolutions: Reekie's "full stochastic split" model for high-resolution lesion images.

Reference: A. Reekie's "stochastic convolutions" for high-resolution melanoma classification (ISIC images; the
lesionkit issue that asked for this model quotes his reference code). A CNN stem is applied to a high-resolution
image (e.g. 1024²) without resizing it: every output channel ``c`` of the stem convolution, for every image ``b``,
convolves its OWN randomly placed window ``(top[b, c], left[b, c])`` of ``S × S`` pixels. ``S`` is chosen so that
the stem output has the usual size (e.g. ``stem_out = 112``: ResNet's 7x7 / stride 2 / padding 3 conv needs
``S = 111·2 + 7 − 6 = 223``), so the rest of the backbone runs unchanged on ``[B, C_out, stem_out, stem_out]``,
at the cost of a 224² network, while the stem as a whole sees fine detail from all over the image. A second
backbone sees the downsized image (e.g. 224²) and the two pooled feature vectors are concatenated before the fully
connected head ("full stochastic split").

Implementation choices (the first two are what the issue asked to change in the reference code):

* windows are sampled uniformly in 2-D, independently per image and per output channel (the reference code only
  ever sampled windows along the image diagonal);
* the stem is one batched gather of all ``B · C_out`` windows plus ONE grouped convolution (``groups = C_out``)
  instead of a Python loop over the output channels (2.6 s per forward in the reference);
* each window is zero-padded by the conv's padding exactly as a standalone crop would be, so a window never
  reads pixels outside itself;
* evaluation is deterministic: the windows come from a generator seeded with ``eval_seed`` at the start of every
  forward call, and ``tta = N`` averages the fused features of ``N`` passes with different windows (stochastic
  test-time augmentation). Because ``LesionNet``'s head is ``Dropout → Linear`` and dropout is off in eval mode,
  the mean of the features gives exactly the mean of the ``N`` logit vectors.

Cost: the stem moves ``B · C_out · C_in · S²`` floats (305 MB for batch 8, 64 channels, 223² windows), so it is
far slower than a plain stem on a 224² image; on CPU oneDNN's grouped convolution with 3 input channels and one
output channel per group is the slow part (``benchmarks/bench_stochastic.py`` measures it).

In training mode the windows come from torch's global RNG (``torch.randint`` on the input's device), so a seeded
lesionkit run stays reproducible and resumable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lesionkit.errors import UsageError

#: Models whose stem can be made stochastic (suggested in errors).
SUPPORTED_EXAMPLES = ("resnet18", "resnet50", "resnet10t")


def _square(value: int | Sequence[int] | str, what: str) -> int:
    """A conv hyper-parameter that must be the same along both axes, as one int."""
    if isinstance(value, str):
        raise UsageError(f"the stochastic stem needs a numeric conv {what}, got {value!r}",
                         hint="use a ResNet-family model, e.g. " + ", ".join(SUPPORTED_EXAMPLES))
    vals = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(set(vals)) != 1:
        raise UsageError(f"the stochastic stem needs a square conv {what}, got {tuple(vals)}",
                         hint="use a ResNet-family model, e.g. " + ", ".join(SUPPORTED_EXAMPLES))
    return int(vals[0])


def conv_geometry(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """``(kernel, stride, padding, dilation)`` of a square 2-D convolution."""
    return (_square(conv.kernel_size, "kernel size"), _square(conv.stride, "stride"),
            _square(conv.padding, "padding"), _square(conv.dilation, "dilation"))


def window_size(conv: nn.Conv2d, out_size: int) -> int:
    """Side ``S`` of the window each output channel convolves so that the conv's output is ``out_size²``:
    ``S = (out_size − 1)·stride + dilation·(kernel − 1) + 1 − 2·padding`` (the window is zero-padded by
    ``padding``). E.g. ResNet's 7x7 / stride 2 / padding 3 stem with ``out_size = 112`` gives 223."""
    k, s, p, d = conv_geometry(conv)
    size = (out_size - 1) * s + d * (k - 1) + 1 - 2 * p
    if out_size < 1 or size < 1:
        raise UsageError(f"stem_out {out_size} gives no valid window for a {k}x{k} / stride {s} / padding {p} conv",
                         hint="use stem_out >= 1 (e.g. 112 for a 1024 px image)")
    return size


def max_stem_out(conv: nn.Conv2d, height: int, width: int) -> int:
    """Largest ``out_size`` whose window fits into a ``height × width`` image (0 if none does)."""
    k, s, p, d = conv_geometry(conv)
    return max(0, (min(height, width) + 2 * p - d * (k - 1) - 1) // s + 1)


def sample_windows(batch: int, channels: int, height: int, width: int, size: int, *,
                   generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Uniform 2-D window positions: ``(top, left)``, int64 ``[batch, channels]``, top in ``[0, height − size]``,
    left in ``[0, width − size]``, independent per image, channel and axis.

    With ``generator`` the positions are drawn on the generator's device (deterministic for a given seed whatever
    ``device`` is) and moved to ``device``; without it they come from torch's global RNG on ``device``.
    """
    if size > height or size > width:
        raise UsageError(f"a {size}x{size} px window does not fit into a {height}x{width} px image",
                         hint=f"use images of at least {size}x{size} px")
    shape = (batch, channels)
    if generator is None:
        top = torch.randint(0, height - size + 1, shape, device=device)
        left = torch.randint(0, width - size + 1, shape, device=device)
        return top, left
    top = torch.randint(0, height - size + 1, shape, generator=generator, device=generator.device)
    left = torch.randint(0, width - size + 1, shape, generator=generator, device=generator.device)
    return top.to(device), left.to(device)


def gather_windows(x: Tensor, top: Tensor, left: Tensor, size: int) -> Tensor:
    """``out[b, c, i] = x[b, i, top[b, c] : top[b, c] + size, left[b, c] : left[b, c] + size]``:
    ``[B, C, C_in, size, size]`` from ``x [B, C_in, H, W]`` and int ``top, left [B, C]``, in one gather.

    Without an input gradient the windows are indexed out of an ``unfold`` view of ``x`` (copies whole rows of
    ``size`` pixels; about 4x faster on CPU). When ``x`` needs a gradient the gather uses broadcast advanced
    indexing of ``x`` itself, whose backward scatters into an ``x``-sized tensor (the backward of the ``unfold``
    route would materialise the full ``[B, C_in, H−S+1, W−S+1, S, S]`` view)."""
    batch = x.shape[0]
    top, left = top.to(x.device, torch.long), left.to(x.device, torch.long)
    b = torch.arange(batch, device=x.device)
    if not (x.requires_grad and torch.is_grad_enabled()):
        view = x.unfold(2, size, 1).unfold(3, size, 1)  # [B, C_in, H-S+1, W-S+1, S, S], no copy
        return view[b[:, None], :, top, left]  # advanced dims first: [B, C, C_in, S, S]
    ar = torch.arange(size, device=x.device)
    c_in, channels = x.shape[1], top.shape[1]
    rows = (top[:, :, None] + ar).view(batch, channels, 1, size, 1)
    cols = (left[:, :, None] + ar).view(batch, channels, 1, 1, size)
    return x[b.view(batch, 1, 1, 1, 1), torch.arange(c_in, device=x.device).view(1, 1, c_in, 1, 1), rows, cols]


def stochastic_conv(x: Tensor, weight: Tensor, bias: Tensor | None, top: Tensor, left: Tensor, size: int,
                    stride: int, padding: int, dilation: int = 1, method: str = "auto") -> Tensor:
    """Per-channel windowed convolution: output channel ``c`` of image ``b`` is
    ``conv2d(x[b, :, top[b,c]:top[b,c]+size, left[b,c]:left[b,c]+size], weight[c], bias[c], stride, padding,
    dilation)``. ``x [B, C_in, H, W]``, ``weight [C_out, C_in, k, k]``, ``top, left [B, C_out]``.

    One gather of all windows into ``[B, C_out·C_in, size, size]``, then ONE grouped convolution
    (``groups = C_out``: group ``c`` holds the ``C_in`` channels of window ``c`` and the filter ``weight[c]``).
    On CPU the windows are laid out channels-last, which oneDNN runs faster than the contiguous layout for this many
    small groups (forward + backward about 1.7x at batch 8, 1024² → 112², one thread).

    ``method``: ``grouped`` (the above), ``per-channel`` (for each output channel, gather its B windows and run one
    ordinary convolution over the whole batch: C_out calls instead of one, and 1/C_out of the window memory; oneDNN's grouped kernel with 1 output per group is
    2–3x slower than that on CPU, see benchmarks/bench_stochastic.py), or ``auto`` = grouped on CUDA, per-channel
    elsewhere. Both give the same result (tested)."""
    batch, c_in = x.shape[:2]
    c_out = weight.shape[0]
    if weight.shape[1] != c_in:
        raise ValueError(f"weight expects {weight.shape[1]} input channels, x has {c_in}")
    if top.shape != (batch, c_out) or left.shape != (batch, c_out):
        raise ValueError(f"top/left must be [{batch}, {c_out}], got {tuple(top.shape)} / {tuple(left.shape)}")
    if method not in ("auto", "grouped", "per-channel"):
        raise ValueError(f"method must be auto, grouped or per-channel, got {method!r}")
    if method == "auto":
        method = "grouped" if x.device.type == "cuda" else "per-channel"
    if method == "per-channel":  # gathered channel by channel: peak memory 1/C_out of the grouped route
        outs = [F.conv2d(gather_windows(x, top[:, c:c + 1], left[:, c:c + 1], size)[:, 0], weight[c:c + 1],
                         None if bias is None else bias[c:c + 1], stride=stride, padding=padding, dilation=dilation)
                for c in range(c_out)]
        return torch.cat(outs, dim=1)
    windows = gather_windows(x, top, left, size).reshape(batch, c_out * c_in, size, size)
    if x.device.type == "cpu":
        windows = windows.contiguous(memory_format=torch.channels_last)
    return F.conv2d(windows, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=c_out)


class StochasticConv2d(nn.Conv2d):
    """A stem convolution whose output channels each see their own random window of the input (see
    :func:`stochastic_conv`); the output is ``[B, C_out, out_size, out_size]`` whatever the input size.

    It keeps the wrapped conv's ``weight`` / ``bias`` parameters (same objects, same state-dict names, so
    pretrained backbone weights load unchanged). Windows: ``fixed_windows`` when set (tests, visualisation), else
    drawn from ``generator`` when the owner sets one (deterministic evaluation), else from torch's global RNG.
    The positions used by the last call are kept in ``last_windows``.
    """

    def __init__(self, conv: nn.Conv2d, out_size: int):
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise UsageError(f"the stochastic stem needs a plain conv (groups 1, zero padding); got groups "
                             f"{conv.groups}, padding mode {conv.padding_mode!r}",
                             hint="use a ResNet-family model, e.g. " + ", ".join(SUPPORTED_EXAMPLES))
        k, s, p, d = conv_geometry(conv)
        super().__init__(conv.in_channels, conv.out_channels, k, stride=s, padding=p, dilation=d,
                         bias=conv.bias is not None, device="meta")
        self.weight = conv.weight
        self.bias = conv.bias
        self.out_size = int(out_size)
        self.window = window_size(conv, out_size)
        self.generator: torch.Generator | None = None
        self.fixed_windows: tuple[Tensor, Tensor] | None = None
        self.last_windows: tuple[Tensor, Tensor] | None = None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, out_size={self.out_size}, window={self.window}"

    def check_input(self, x: Tensor) -> None:
        """Raise :class:`UsageError` when ``x`` is not ``[B, C_in, H, W]`` with ``H, W >= window``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise UsageError(f"the stochastic stem expects images [B, {self.in_channels}, H, W], got "
                             f"{tuple(x.shape)}")
        h, w = int(x.shape[2]), int(x.shape[3])
        if h < self.window or w < self.window:
            fit = max_stem_out(self, h, w)
            raise UsageError(
                f"the {h}x{w} px image is smaller than the {self.window}x{self.window} px window of the stochastic "
                f"stem (stem_out {self.out_size})",
                hint=f"use an image size of at least {self.window} px (img_size), or stem_out <= {fit} for "
                     f"{h}x{w} px images" if fit >= 1 else f"use an image size of at least {self.window} px",
            )

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        self.check_input(x)
        if self.fixed_windows is not None:
            top, left = self.fixed_windows
        else:
            top, left = sample_windows(x.shape[0], self.out_channels, x.shape[2], x.shape[3], self.window,
                                       generator=self.generator, device=x.device)
        self.last_windows = (top, left)
        s, p, d = self.stride[0], self.padding[0], self.dilation[0]  # type: ignore[index]
        return stochastic_conv(x, self.weight, self.bias, top, left, self.window, s, p, d)


def _stem_path(backbone: nn.Module, name: str) -> str:
    """Dotted path of the stem convolution: ``conv1``, or the first conv of a deep-stem ``conv1`` Sequential."""
    conv1 = getattr(backbone, "conv1", None)
    if isinstance(conv1, nn.Conv2d):
        return "conv1"
    if isinstance(conv1, nn.Sequential):
        key = next((k for k, m in conv1.named_children() if isinstance(m, nn.Conv2d)), None)
        if key is not None:
            return f"conv1.{key}"
    raise UsageError(f"the stochastic split model needs a ResNet-style stem (conv1); timm model {name!r} has none",
                     hint="use a ResNet-family model, e.g. --model " + ", ".join(SUPPORTED_EXAMPLES))


def install_stochastic_stem(backbone: nn.Module, name: str, out_size: int) -> str:
    """Replace the stem convolution of a timm ResNet-family ``backbone`` in place by a :class:`StochasticConv2d`
    wrapping its weights; returns the stem's dotted path. Raises :class:`UsageError` for other architectures."""
    path = _stem_path(backbone, name)
    parent_path, _, key = path.rpartition(".")
    parent = backbone.get_submodule(parent_path) if parent_path else backbone
    setattr(parent, key, StochasticConv2d(getattr(parent, key), out_size))
    return path


class StochasticSplitFeatures(nn.Module):
    """Full stochastic split feature extractor: ``cat([hi(x), lo(resize(x, low_size))], 1)``.

    ``hi`` and ``lo`` are timm backbones created with ``num_classes=0``; ``hi``'s stem convolution is replaced by
    a :class:`StochasticConv2d` producing ``stem_out²`` maps. ``forward(x)``: ``x [B, C, H, W]`` (normalised,
    ``H, W >= window``) → ``[B, num_features]``, ``num_features = hi.num_features + lo.num_features``.

    Training mode: one pass, windows from torch's global RNG. Eval mode: deterministic; a generator seeded with
    ``eval_seed`` at the start of every call draws the windows of ``tta`` passes and the ``hi`` features are
    averaged (the ``lo`` branch is deterministic and runs once). The mean of the fused features fed to a linear
    head (dropout is off in eval) equals the mean of the ``tta`` logit vectors, i.e. stochastic TTA.
    """

    def __init__(self, hi: nn.Module, lo: nn.Module, *, name: str, low_size: int, stem_out: int, tta: int = 1,
                 eval_seed: int = 0):
        super().__init__()
        if tta < 1:
            raise UsageError(f"tta must be >= 1, got {tta}")
        if low_size < 1:
            raise UsageError(f"low_size must be >= 1, got {low_size}")
        self.hi = hi
        self.lo = lo
        self.name = name
        self.low_size = int(low_size)
        self.tta = int(tta)
        self.eval_seed = int(eval_seed)
        self.stem_path = install_stochastic_stem(hi, name, stem_out)
        from lesionkit.models.factory import feature_dim  # factory imports this module lazily

        self.num_features = feature_dim(hi) + feature_dim(lo)
        self.pretrained_cfg = dict(getattr(hi, "pretrained_cfg", None) or {})

    @property
    def stem(self) -> StochasticConv2d:
        """The stochastic stem convolution inside ``hi`` (kept only there, so the state dict has it once)."""
        stem = self.hi.get_submodule(self.stem_path)
        assert isinstance(stem, StochasticConv2d)
        return stem

    @property
    def window(self) -> int:
        """Side of each stem window in pixels."""
        return self.stem.window

    def low_input(self, x: Tensor) -> Tensor:
        """The image as the low-resolution branch sees it (antialiased bilinear resize to ``low_size²``)."""
        return F.interpolate(x, size=(self.low_size, self.low_size), mode="bilinear", antialias=True,
                             align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        stem = self.stem
        stem.check_input(x)
        lo_feat = self.lo(self.low_input(x))
        if self.training:
            hi_feat = self.hi(x)
        else:
            stem.generator = torch.Generator().manual_seed(self.eval_seed)
            try:
                hi_feat = torch.stack([self.hi(x) for _ in range(self.tta)]).mean(0)
            finally:
                stem.generator = None
        return torch.cat([hi_feat, lo_feat.to(hi_feat.dtype)], dim=1)
