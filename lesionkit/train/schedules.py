"""Per-optimizer-step learning-rate schedules as pure functions of the step index.

Every schedule is a multiplier ``m(s)`` of each param group's ``base_lr`` (so discriminative / per-branch rates keep
their ratios): the LR used by the ``(s+1)``-th optimizer step is ``base_lr · m(s)``, ``s = 0, 1, …``. Like torch's
schedulers, :meth:`Schedule.step` is called after each ``optimizer.step()``. Notation: ``S`` = steps per epoch,
``T = S·epochs`` total steps, ``W = round(warmup_epochs·S)`` warmup steps, ``r = min_lr_ratio``.

* warmup (all but onecycle): ``m(s) = (s+1)/W`` for ``s < W`` (linear, reaching 1 on the last warmup step); the
  schedules below then run on ``t = s − W``.
* ``constant``: ``m = 1``.
* ``step``: ``m = gamma^floor(t / round(step_size·S))`` (``step_size`` in epochs).
* ``cosine``: ``m = r + (1−r)·(1 + cos(π·min(t, T−W)/(T−W)))/2``.
* ``onecycle`` (torch ``OneCycleLR``, cosine annealing, no momentum cycling): up from ``1/div_factor`` to 1 over
  the first ``pct·T`` steps, ``pct = warmup_epochs/epochs`` (0.3 when no warmup), then down to ``final``
  = ``r`` if r > 0 else ``1/(div_factor·final_div_factor)``. Phase ends at ``E1 = pct·T − 1`` and ``T − 1``;
  ``m(s) = cos_anneal(1/div, 1, s/E1)`` for ``s ≤ E1`` else ``cos_anneal(1, final, (s−E1)/(T−1−E1))`` with
  ``cos_anneal(a, b, p) = b + (a−b)·(1 + cos(π·p))/2``.
* ``sgdr`` (Loshchilov & Hutter, cosine annealing with warm restarts): cycle ``i`` lasts
  ``T_i = max(1, round(round(t0·S)·t_mult^i))`` steps; within a cycle at position ``c``,
  ``m = r + (1−r)·(1 + cos(π·c/T_i))/2``. For integer ``t_mult`` this equals torch's
  ``CosineAnnealingWarmRestarts(T_0=round(t0·S), T_mult=t_mult, eta_min=r·base_lr)`` stepped once per optimizer step.
  :meth:`Schedule.cycle_ends` lists where each cycle finishes (for snapshot-ensemble checkpoints).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lesionkit.errors import InputError, UsageError

SCHEDULES = ("constant", "step", "cosine", "onecycle", "sgdr")


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


class Schedule:
    """A learning-rate schedule over optimizer steps; see the module docstring for the formulas.

    ``step_count`` = optimizer steps done; the optimizer's groups hold ``lr_at(step_count)`` at all times.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        name: str,
        *,
        steps_per_epoch: int,
        epochs: float,
        warmup_epochs: float = 0.0,
        t0: float = 1.0,
        t_mult: float = 2.0,
        step_size: float = 30.0,
        gamma: float = 0.1,
        min_lr_ratio: float = 0.0,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ):
        name = name.lower()
        problems = []
        if name not in SCHEDULES:
            problems.append(f"unknown --schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
        if steps_per_epoch < 1:
            problems.append(f"steps per epoch must be >= 1, got {steps_per_epoch} (is the training set empty?)")
        if not epochs > 0:
            problems.append(f"--epochs must be > 0, got {epochs}")
        if warmup_epochs < 0 or (epochs > 0 and warmup_epochs >= epochs and name != "constant"):
            problems.append(f"--warmup-epochs must be in [0, epochs={epochs}), got {warmup_epochs}")
        if name == "sgdr" and not t0 > 0:
            problems.append(f"--t0 must be > 0 epochs, got {t0}")
        if name == "sgdr" and t_mult < 1:
            problems.append(f"--t-mult must be >= 1, got {t_mult}")
        if name == "step" and not step_size > 0:
            problems.append(f"--step-size must be > 0 epochs, got {step_size}")
        if name == "step" and not gamma > 0:
            problems.append(f"--gamma must be > 0, got {gamma}")
        if not 0 <= min_lr_ratio <= 1:
            problems.append(f"--min-lr-ratio must be in [0, 1], got {min_lr_ratio}")
        if name == "onecycle" and (div_factor <= 0 or final_div_factor <= 0):
            problems.append("onecycle div factors must be > 0")
        if problems:
            raise UsageError("invalid learning-rate schedule", details=problems)
        self.optimizer = optimizer
        self.name = name
        self.config: dict[str, Any] = {
            "name": name, "steps_per_epoch": int(steps_per_epoch), "epochs": float(epochs),
            "warmup_epochs": float(warmup_epochs), "t0": float(t0), "t_mult": float(t_mult),
            "step_size": float(step_size), "gamma": float(gamma), "min_lr_ratio": float(min_lr_ratio),
            "div_factor": float(div_factor), "final_div_factor": float(final_div_factor),
        }
        self.total_steps = max(1, round(steps_per_epoch * epochs))
        self.warmup_steps = 0 if name == "onecycle" else round(warmup_epochs * steps_per_epoch)
        self.pct_start = (warmup_epochs / epochs) if warmup_epochs > 0 else 0.3
        self.t0_steps = max(1, round(t0 * steps_per_epoch))
        self.step_size_steps = max(1, round(step_size * steps_per_epoch))
        for g in optimizer.param_groups:
            g.setdefault("base_lr", g["lr"])
        self.base_lrs = [float(g["base_lr"]) for g in optimizer.param_groups]
        self.step_count = 0
        self._apply()

    # ---- the pure part ---------------------------------------------------------------------------------------
    def _cycle_len(self, i: int) -> int:
        return max(1, round(self.t0_steps * self.config["t_mult"] ** i))

    def multiplier(self, step: int) -> float:
        """``m(step)``: the factor applied to every group's ``base_lr`` at optimizer step ``step`` (≥ 0)."""
        s = max(0, int(step))
        c = self.config
        r = c["min_lr_ratio"]
        if self.name == "onecycle":
            T = self.total_steps
            s = min(s, T - 1)
            e1 = self.pct_start * T - 1
            init = 1.0 / c["div_factor"]
            final = r if r > 0 else init / c["final_div_factor"]
            if s <= e1:
                return _cos_anneal(init, 1.0, s / e1) if e1 > 0 else 1.0
            span = (T - 1) - e1
            return _cos_anneal(1.0, final, (s - e1) / span) if span > 0 else final
        W = self.warmup_steps
        if s < W:
            return (s + 1) / W
        t = s - W
        if self.name == "constant":
            return 1.0
        if self.name == "step":
            return c["gamma"] ** (t // self.step_size_steps)
        if self.name == "cosine":
            span = self.total_steps - W
            if span <= 0:
                return 1.0
            return r + (1 - r) * (1 + math.cos(math.pi * min(t, span) / span)) / 2
        # sgdr
        i = 0
        length = self._cycle_len(0)
        while t >= length:
            t -= length
            i += 1
            length = self._cycle_len(i)
        return r + (1 - r) * (1 + math.cos(math.pi * t / length)) / 2

    def lr_at(self, step: int) -> list[float]:
        """Learning rate of each param group at optimizer step ``step`` (a pure function of ``step``)."""
        m = self.multiplier(step)
        return [b * m for b in self.base_lrs]

    def cycle_ends(self, total_steps: int | None = None) -> list[int]:
        """SGDR: the step counts at which a cycle is complete (``step_count`` values after :meth:`step`), up to
        ``total_steps`` (default: the whole schedule). Warmup shifts them by ``W``. Empty for other schedules.

        E.g. ``t0=1, t_mult=2``, 7 epochs of S steps → ``[S, 3S, 7S]`` (ends of epochs 1, 3 and 7).
        """
        if self.name != "sgdr":
            return []
        total = self.total_steps if total_steps is None else int(total_steps)
        ends = []
        pos = self.warmup_steps
        i = 0
        while True:
            pos += self._cycle_len(i)
            if pos > total:
                return ends
            ends.append(pos)
            i += 1

    # ---- the stateful part -----------------------------------------------------------------------------------
    def _apply(self) -> None:
        for g, lr in zip(self.optimizer.param_groups, self.lr_at(self.step_count), strict=True):
            g["lr"] = lr

    def step(self) -> None:
        """Advance one optimizer step and set every group's ``lr`` to :meth:`lr_at` of the new step count."""
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return self.lr_at(self.step_count)

    def state_dict(self) -> dict[str, Any]:
        """Plain types: ``config``, ``step_count``, ``base_lrs``."""
        return {"config": dict(self.config), "step_count": int(self.step_count), "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Resume: restores the step count and base rates and sets the optimizer's current LRs.

        ``strict``: the saved schedule configuration must equal this one (else InputError listing the differences).
        """
        saved = state.get("config", {})
        if strict:
            diff = [f"{k}: saved {saved.get(k)!r}, now {v!r}" for k, v in self.config.items() if saved.get(k) != v]
            if diff:
                raise InputError(
                    "cannot resume: the learning-rate schedule differs from the checkpoint's",
                    hint="resume with the run's own configuration (lesionkit train --config runs/NAME/config.yaml)",
                    details=diff,
                )
        if len(state["base_lrs"]) != len(self.optimizer.param_groups):
            raise InputError(
                f"cannot resume: checkpoint schedule has {len(state['base_lrs'])} param groups, "
                f"the optimizer has {len(self.optimizer.param_groups)}",
                hint="resume with the run's own configuration (lesionkit train --config runs/NAME/config.yaml)",
            )
        self.step_count = int(state["step_count"])
        self.base_lrs = [float(b) for b in state["base_lrs"]]
        for g, b in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            g["base_lr"] = b
        self._apply()


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    *,
    steps_per_epoch: int,
    epochs: float,
    warmup_epochs: float = 0.0,
    t0: float = 1.0,
    t_mult: float = 2.0,
    step_size: float = 30.0,
    gamma: float = 0.1,
    min_lr_ratio: float = 0.0,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """Build a :class:`Schedule` (``name`` in :data:`SCHEDULES`); epochs-valued arguments may be fractional."""
    return Schedule(
        optimizer, name, steps_per_epoch=steps_per_epoch, epochs=epochs, warmup_epochs=warmup_epochs, t0=t0,
        t_mult=t_mult, step_size=step_size, gamma=gamma, min_lr_ratio=min_lr_ratio, div_factor=div_factor,
        final_div_factor=final_div_factor,
    )
