"""Learning-rate range test (Smith 2017; fastai ``lr_find``): train for a few steps while the LR grows
exponentially, record the loss, stop when it diverges, then put the model back exactly as it was.

LR at step ``i`` (0-based) = ``start_lr · (end_lr/start_lr)^(i/(num_steps−1))``. With several param groups (e.g.
discriminative rates) each group keeps its ratio to the largest ``base_lr``; the reported LR is that of the
largest group (the head). Smoothed loss = bias-corrected exponential moving average
``a_i = smooth·a_{i−1} + (1−smooth)·loss_i``, ``s_i = a_i / (1 − smooth^(i+1))``. Divergence: ``s_i > diverge ·
min(s_0..s_i)`` or a non-finite loss (that step is recorded, then the sweep stops).

Three suggestions are computed on the smoothed loss; ``suggest`` picks which becomes ``result.suggestion``:

* ``"valley"`` (default; fastai's default since 2.4, :func:`valley_lr`): half-way through the middle third of the
  longest descending stretch of the curve. Chosen as default because steepest descent latches onto EMA noise on
  flat, noisy curves (measured on resnet10t / synthetic lesions: steepest 5.7e-5, valley 5.4e-3, loss minimum
  3.7e-2).
* ``"steep"``: steepest descent — the most negative least-squares slope ``d s / d log10(lr)`` over a sliding
  window of ±max(1, n/40) points (n = points recorded), searched from point n/10 (the noisy start of the EMA) to
  the minimum of the smoothed loss; with fewer than 5 usable points ``lr(min smoothed loss) / 10``.
* ``"minimum"``: ``lr(min smoothed loss) / 10`` (the classic rule of thumb).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lesionkit.errors import UsageError
from lesionkit.fsio import atomic_path

SUGGESTIONS = ("valley", "steep", "minimum")


@dataclass
class LRFindResult:
    """``lrs`` / ``losses`` / ``smoothed``: one entry per step taken (LR of the largest group; raw and smoothed
    loss). ``suggestion``: the suggested LR by ``method`` ("valley" | "steep" | "minimum", see the module
    docstring); ``valley`` / ``steepest`` / ``min_loss_lr``: the three candidates (``min_loss_lr`` is the LR AT the
    smoothed minimum, the "minimum" suggestion is a tenth of it). ``stopped_early``: diverged before
    ``num_steps``."""

    lrs: list[float]
    losses: list[float]
    suggestion: float
    stopped_early: bool
    smoothed: list[float] = field(default_factory=list)
    min_loss_lr: float = float("nan")
    valley: float = float("nan")
    steepest: float = float("nan")
    method: str = "valley"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()} | {
            "losses": [v if math.isfinite(v) else None for v in self.losses],
            "smoothed": [v if math.isfinite(v) else None for v in self.smoothed],
        }


def _default_forward(model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch = dict(image, target[, meta]) (lesionkit's dataset) or a tuple (x, y)."""
    if isinstance(batch, dict):
        x = batch["image"].to(device, non_blocking=True)
        y = batch["target"].to(device, non_blocking=True)
        meta = batch.get("meta")
        if meta is not None and meta.ndim == 2 and meta.shape[1] > 0:
            return model(x, meta.to(device, non_blocking=True)), y
        return model(x), y
    x, y = batch[0], batch[1]
    return model(x.to(device)), y.to(device)


def _window_slopes(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Least-squares slope dy/dx over the window [i−k, i+k] (clipped to the ends) at every point i."""
    out = np.empty(len(x))
    for i in range(len(x)):
        a, b = max(0, i - k), min(len(x), i + k + 1)
        xs, ys = x[a:b], y[a:b]
        xc = xs - xs.mean()
        den = float((xc * xc).sum())
        out[i] = float((xc * (ys - ys.mean())).sum() / den) if den > 0 else 0.0
    return out


def valley_lr(lrs: list[float], smoothed: list[float]) -> float:
    """fastai's "valley" suggestion: find the longest strictly descending subsequence of the smoothed loss
    (ending at index ``end``, length ``m``, ``start = end − m + 1``); return the LR at
    ``start + ⌊(end − start)/3⌋ + ⌊(end − start)/6⌋`` (half-way through its middle third)."""
    s = np.asarray(smoothed, dtype=float)
    n = int(np.isfinite(s).cumprod().sum())  # the finite prefix
    if n == 0:
        return float("nan")
    s = s[:n]
    lds = np.ones(n, dtype=int)
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if s[i] < s[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[max_end] < lds[i]:
            max_end = i
            max_start = max_end - lds[max_end] + 1  # fastai has no "+ 1" (an index of −1 for a full descent)
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def suggest_lr(lrs: list[float], smoothed: list[float]) -> tuple[float, float]:
    """(steepest-descent LR, LR at the smoothed minimum) — see "steep" in the module docstring."""
    s = np.asarray(smoothed, dtype=float)
    lr = np.asarray(lrs, dtype=float)
    n = int(np.isfinite(s).cumprod().sum())  # the finite prefix (a NaN/inf loss ends the sweep)
    if n == 0:
        return float("nan"), float("nan")
    s, lr = s[:n], lr[:n]
    i_min = int(np.argmin(s))
    lo = max(1, n // 10)
    if i_min - lo + 1 < 5:
        return float(lr[i_min] / 10), float(lr[i_min])
    k = max(1, n // 40)
    slopes = _window_slopes(np.log10(lr), s, k)[lo : i_min + 1]
    return float(lr[lo + int(np.argmin(slopes))]), float(lr[i_min])


def lr_range_test(
    model: nn.Module,
    loader: Iterable,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer_factory: Callable[[nn.Module], torch.optim.Optimizer],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    smooth: float = 0.98,
    diverge: float = 4.0,
    device: torch.device | str | None = None,
    forward: Callable[[nn.Module, Any, torch.device], tuple[torch.Tensor, torch.Tensor]] | None = None,
    grad_clip: float | None = None,
    suggest: str = "valley",
) -> LRFindResult:
    """Exponential LR sweep from ``start_lr`` to ``end_lr`` over ``num_steps`` optimizer steps (the loader is
    re-iterated if it runs out). ``optimizer_factory(model)`` builds the optimizer (its groups' ``base_lr`` or ``lr``
    set the ratios between groups). ``forward(model, batch, device) -> (logits, targets)`` (default: lesionkit's
    dict batches or ``(x, y)`` tuples). Afterwards the model's parameters and buffers, its train/eval mode and the
    torch CPU/CUDA RNG states are restored bit-exactly; the optimizer is discarded (its state is never kept)."""
    if not (0 < start_lr < end_lr):
        raise UsageError(f"need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    if num_steps < 2:
        raise UsageError(f"lr-find needs >= 2 steps, got {num_steps}")
    if not 0 <= smooth < 1:
        raise UsageError(f"smoothing must be in [0, 1), got {smooth}")
    if suggest not in SUGGESTIONS:
        raise UsageError(f"unknown LR suggestion method {suggest!r}; choose one of {', '.join(SUGGESTIONS)}")
    if not diverge > 1:
        raise UsageError(f"divergence factor must be > 1, got {diverge}")
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    forward = forward or _default_forward

    saved_state = copy.deepcopy(model.state_dict())
    was_training = model.training
    rng_cpu = torch.get_rng_state()
    rng_cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    optimizer = optimizer_factory(model)
    bases = [float(g.get("base_lr", g["lr"])) for g in optimizer.param_groups]
    top = max(bases)
    ratios = [b / top for b in bases]
    mult = (end_lr / start_lr) ** (1.0 / (num_steps - 1))

    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    avg = 0.0
    best = math.inf
    stopped_early = False
    try:
        model.train()
        it = iter(loader)
        for i in range(num_steps):
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                try:
                    batch = next(it)
                except StopIteration:
                    raise UsageError("lr-find got an empty data loader (no training samples)") from None
            lr = start_lr * mult**i
            for g, r in zip(optimizer.param_groups, ratios, strict=True):
                g["lr"] = lr * r
            optimizer.zero_grad(set_to_none=True)
            logits, target = forward(model, batch, device)
            loss = loss_fn(logits, target)
            value = float(loss.detach())
            lrs.append(lr)
            losses.append(value)
            if not math.isfinite(value):
                smoothed.append(float("nan"))
                stopped_early = i < num_steps - 1
                break
            avg = smooth * avg + (1 - smooth) * value
            s = avg / (1 - smooth ** (i + 1))
            smoothed.append(s)
            best = min(best, s)
            if s > diverge * best:
                stopped_early = i < num_steps - 1
                break
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
    finally:
        optimizer.zero_grad(set_to_none=True)
        del optimizer
        model.load_state_dict(saved_state)
        model.train(was_training)
        torch.set_rng_state(rng_cpu)
        if rng_cuda is not None:
            torch.cuda.set_rng_state_all(rng_cuda)
    steepest, min_lr = suggest_lr(lrs, smoothed)
    valley = valley_lr(lrs, smoothed)
    suggestion = {"valley": valley, "steep": steepest, "minimum": min_lr / 10}[suggest]
    return LRFindResult(lrs=lrs, losses=losses, suggestion=suggestion, stopped_early=stopped_early,
                        smoothed=smoothed, min_loss_lr=min_lr, valley=valley, steepest=steepest, method=suggest)


def plot_lr_find(result: LRFindResult, path: Path | str, title: str | None = None) -> Path:
    """Write the loss-vs-LR curve (log x axis; raw and smoothed loss; the suggestion marked) as a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    lrs = np.asarray(result.lrs, dtype=float)
    raw = np.asarray(result.losses, dtype=float)
    sm = np.asarray(result.smoothed, dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    try:
        ax.plot(lrs, raw, color="0.75", lw=1, label="loss")
        ax.plot(lrs[: len(sm)], sm, color="C0", lw=2, label="smoothed loss")
        fin_sm = sm[np.isfinite(sm)]
        fin_raw = raw[np.isfinite(raw)]
        if fin_sm.size and fin_raw.size:  # exploding tail losses would flatten the interesting part
            lo = float(min(fin_raw.min(), fin_sm.min()))
            hi = float(min(fin_sm.max(), 1.5 * fin_sm[0]))
            hi = max(hi, float(fin_sm[0]))
            if hi > lo:
                ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        marks = [("valley", result.valley, "s", "C2"), ("steep", result.steepest, "o", "C3"),
                 ("minimum", result.min_loss_lr / 10, "^", "C4")]
        for method, lr_m, marker, colour in marks:
            if not math.isfinite(lr_m) or not len(lrs):
                continue
            j = int(np.argmin(np.abs(np.log(lrs) - math.log(lr_m))))
            chosen = method == result.method
            if chosen:
                ax.axvline(lr_m, color=colour, ls="--", lw=1)
            ax.plot([lr_m], [sm[j] if j < len(sm) else raw[j]], marker, color=colour, ms=8 if chosen else 6,
                    label=f"{method}: {lr_m:.2e}" + ("  ← suggested" if chosen else ""))
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (head group)")
        ax.set_ylabel("training loss")
        stop = "stopped on divergence" if result.stopped_early else "full sweep"
        ax.set_title(title or f"LR range test ({len(lrs)} steps, {stop})")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="best")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
