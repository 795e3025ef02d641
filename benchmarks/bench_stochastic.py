"""Stochastic convolution stem: batched gather + one grouped conv vs a per-channel Python loop vs a plain stem.

Stem rows (random ``--size``² images, batch ``--batch-size``, a conv of resnet50's ``conv1`` shape: 64 × 3 × 7 × 7,
stride 2, padding 3; every variant produces ``[B, 64, stem_out, stem_out]``):

* ``stochastic (batched)``: :func:`lesionkit.models.stochastic.stochastic_conv` — window sampling, one gather of
  all ``B · 64`` windows, one grouped conv (what :class:`StochasticConv2d` runs);
* ``per-channel loop, shared windows``: the reference's approach — a Python loop over the 64 output channels, each
  cropping ONE window shared by the whole batch and running a one-filter conv;
* ``per-channel loop, per-image windows``: the same semantics as the batched stem (a window per image and
  channel), looping over the 64 channels, each gathering its ``B`` windows at once and running a one-filter conv;
* ``plain stem``: the same conv on an image already resized to ``2 · stem_out`` px (224² for 112²).

Model rows: ``StochasticSplitFeatures(--model)`` (stochastic stem on ``--size``², second backbone on
``--low-size``²; eval mode, ``tta=1``) vs the plain timm ``--model`` on ``--low-size``² images.
Each figure is the best of ``--repeats`` timed calls after one warm-up; ``fwd`` under ``torch.no_grad``,
``fwd+bwd`` with a gradient for the weights only. Nothing is written anywhere.

Run: ``.venv/bin/python benchmarks/bench_stochastic.py [--size 1024] [--stem-out 112] [--batch-size 8]
[--model resnet50] [--low-size 224] [--repeats 2] [--threads 0] [--device cpu|cuda] [--skip-model]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def best_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Fastest of ``repeats`` calls of ``fn`` (after one warm-up call), synchronising CUDA around each."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def loop_stem_shared(x: torch.Tensor, conv: nn.Conv2d, size: int) -> torch.Tensor:
    """Reference-style stochastic stem: one random window per output channel, cropped and convolved in a loop."""
    h, w = x.shape[-2:]
    outs = []
    for c in range(conv.out_channels):
        t = int(torch.randint(0, h - size + 1, ()))
        l = int(torch.randint(0, w - size + 1, ()))  # noqa: E741
        crop = x[:, :, t:t + size, l:l + size]
        bias = None if conv.bias is None else conv.bias[c:c + 1]
        outs.append(F.conv2d(crop, conv.weight[c:c + 1], bias, conv.stride, conv.padding, conv.dilation))
    return torch.cat(outs, 1)


def loop_stem_per_image(x: torch.Tensor, conv: nn.Conv2d, size: int) -> torch.Tensor:
    """Per-image windows, one Python iteration per output channel: gather the channel's ``B`` windows, convolve."""
    from lesionkit.models.stochastic import gather_windows, sample_windows

    b, _, h, w = x.shape
    top, left = sample_windows(b, conv.out_channels, h, w, size, device=x.device)
    outs = []
    for c in range(conv.out_channels):
        win = gather_windows(x, top[:, c:c + 1], left[:, c:c + 1], size)[:, 0]  # [B, C_in, S, S]
        bias = None if conv.bias is None else conv.bias[c:c + 1]
        outs.append(F.conv2d(win, conv.weight[c:c + 1], bias, conv.stride, conv.padding, conv.dilation))
    return torch.cat(outs, 1)


def timed_pair(fn: Callable[[], torch.Tensor], params: list[nn.Parameter], repeats: int,
               device: torch.device) -> tuple[float, float]:
    """(forward seconds, forward+backward seconds) of ``fn``."""
    def fwd() -> None:
        with torch.no_grad():
            fn()

    def fwd_bwd() -> None:
        for p in params:
            p.grad = None
        fn().float().square().mean().backward()

    return best_seconds(fwd, repeats, device), best_seconds(fwd_bwd, repeats, device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="high-resolution image side")
    ap.add_argument("--stem-out", type=int, default=112, help="stem output side")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--model", default="resnet50", help="timm ResNet-family model for the whole-model rows")
    ap.add_argument("--low-size", type=int, default=224, help="low-resolution branch / plain model input side")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave torch's default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip-model", action="store_true", help="time the stems only")
    ap.add_argument("--skip-loop", action="store_true", help="skip the per-channel loops")
    args = ap.parse_args()

    import timm

    from lesionkit.models.stochastic import StochasticSplitFeatures, sample_windows, stochastic_conv, window_size

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False).to(device)
    size = window_size(conv, args.stem_out)
    b = args.batch_size
    x = torch.randn(b, 3, args.size, args.size, device=device)
    x_plain = torch.randn(b, 3, 2 * args.stem_out, 2 * args.stem_out, device=device)

    def batched(method: str) -> torch.Tensor:
        top, left = sample_windows(b, 64, args.size, args.size, size, device=device)
        return stochastic_conv(x, conv.weight, conv.bias, top, left, size, 2, 3, method=method)

    stems: dict[str, Callable[[], torch.Tensor]] = {
        "stochastic: one gather + one grouped conv (CUDA default)": lambda: batched("grouped"),
        "stochastic: per output channel, gather + conv (CPU default)": lambda: batched("per-channel"),
    }
    if not args.skip_loop:
        stems["per-channel loop, shared windows (reference)"] = lambda: loop_stem_shared(x, conv, size)
        stems["per-channel loop, per-image windows"] = lambda: loop_stem_per_image(x, conv, size)
    stems[f"plain stem on {2 * args.stem_out}²"] = lambda: conv(x_plain)
    rows = []
    for name, fn in stems.items():
        assert fn().shape == (b, 64, args.stem_out, args.stem_out)
        fwd, fwd_bwd = timed_pair(fn, [conv.weight], args.repeats, device)
        rows.append({"what": name, "fwd_s": fwd, "fwd_bwd_s": fwd_bwd})
    if not args.skip_model:
        split = StochasticSplitFeatures(timm.create_model(args.model, num_classes=0),
                                        timm.create_model(args.model, num_classes=0), name=args.model,
                                        low_size=args.low_size, stem_out=args.stem_out).to(device).eval()
        plain = timm.create_model(args.model, num_classes=0).to(device).eval()
        x_low = torch.randn(b, 3, args.low_size, args.low_size, device=device)
        for name, model, inp in ((f"StochasticSplitFeatures({args.model}) on {args.size}²", split, x),
                                 (f"plain {args.model} on {args.low_size}²", plain, x_low)):
            fwd, fwd_bwd = timed_pair(lambda model=model, inp=inp: model(inp), list(model.parameters()),
                                      args.repeats, device)
            rows.append({"what": name, "fwd_s": fwd, "fwd_bwd_s": fwd_bwd})
    env = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "threads_set": bool(args.threads), "cpu": platform.processor() or platform.machine(),
           "size": args.size, "stem_out": args.stem_out, "window": size, "batch_size": b,
           "model": None if args.skip_model else args.model, "low_size": args.low_size, "repeats": args.repeats}
    print(json.dumps({"env": env, "results": rows}, indent=2))
    print(f"\n| batch {b}, {args.size}² → {args.stem_out}² (window {size}²) | fwd s | fwd+bwd s |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['fwd_s']:.3f} | {r['fwd_bwd_s']:.3f} |")


if __name__ == "__main__":
    main()
