"""Class imbalance and distributed sampling: loss class weights, the training sampler, the exact eval sampler.

* :func:`class_weights` — ``balanced``: ``W_c = N / (C · N_c)`` (Nguyen et al.; identical to scikit-learn's
  ``compute_class_weight("balanced")``), ``none``: all ones, or an explicit list.
* :class:`EpochSampler` — the training order of one epoch is a pure function of ``(seed, epoch, mode)`` (numpy
  ``Generator`` seeded with ``SeedSequence([seed, epoch])``), identical on every rank, then padded to a multiple of
  ``num_replicas`` by repeating its first indices and sharded ``indices[rank::num_replicas]`` (the semantics of
  ``torch.utils.data.DistributedSampler``). Modes: ``none`` a permutation (or ``0..n-1`` with
  ``shuffle=False``); ``balanced`` n draws with replacement, each row weighted ``1 / (C · N_c)`` so every class is
  drawn with probability 1/C; ``oversample`` every row once plus random draws (with replacement) from each
  minority class up to the majority count (UCLA thesis), then shuffled — ``C · max_c N_c`` indices per epoch.
* :class:`ShardedEvalSampler` — rank ``r`` gets ``r, r + R, r + 2R, ...``: no padding, no duplicates, so
  gathering predictions by index gives every validation sample exactly once (metrics are exact).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence, Sized
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Sampler

from lesionkit.errors import InputError, UsageError

__all__ = ["SAMPLER_MODES", "EpochSampler", "ShardedEvalSampler", "class_weights", "parse_class_weights"]

SAMPLER_MODES = ("none", "balanced", "oversample")


def parse_class_weights(value: str | Sequence[float]) -> str | list[float]:
    """``--class-weights`` text → ``"balanced"``, ``"none"`` or a list of floats (``"1,2.5,4"``)."""
    if not isinstance(value, str):
        return [float(v) for v in value]
    v = value.strip().lower()
    if v in ("balanced", "none"):
        return v
    try:
        return [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--class-weights {value!r} is neither balanced, none nor a comma-separated list of numbers",
                         hint="e.g. --class-weights balanced, or --class-weights 1,3.5") from None


def _counts(targets: np.ndarray, n_classes: int) -> np.ndarray:
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    t = t[t >= 0]
    if len(t) and t.max() >= n_classes:
        raise InputError(f"targets hold class index {int(t.max())} but there are only {n_classes} classes")
    return np.bincount(t, minlength=n_classes)


def class_weights(targets: np.ndarray, n_classes: int, mode: str | Sequence[float],
                  classes: Sequence[str] | None = None) -> torch.Tensor:
    """Per-class loss weights, ``float32 [n_classes]``.

    ``targets``: class indices of the TRAINING rows (-1 = missing, ignored). ``mode``: ``"balanced"`` →
    ``N / (C · N_c)`` with N the labelled rows and C = ``n_classes`` (a class without training rows raises
    :class:`InputError`: its weight would be infinite); ``"none"`` → ones; a list (or ``"1,2,3"``) of
    ``n_classes`` finite non-negative numbers → as given."""
    mode = parse_class_weights(mode) if isinstance(mode, str) else [float(v) for v in mode]
    if mode == "none":
        return torch.ones(n_classes, dtype=torch.float32)
    if mode == "balanced":
        counts = _counts(targets, n_classes)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            names = [classes[i] if classes is not None else str(i) for i in empty]
            raise InputError(f"--class-weights balanced: class(es) {', '.join(names)} have no training rows "
                             "(weight N / (C · 0) is undefined)",
                             hint="use --class-weights none or an explicit list, or a split whose training folds "
                                  "contain every class")
        w = counts.sum() / (n_classes * counts.astype(np.float64))
        return torch.tensor(w, dtype=torch.float32)
    w = np.asarray(mode, dtype=np.float64)
    if w.shape != (n_classes,):
        raise UsageError(f"--class-weights has {w.size} values but the target has {n_classes} classes",
                         hint=f"give {n_classes} comma-separated numbers, or balanced / none")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise UsageError(f"--class-weights must be finite and >= 0 (got {w.tolist()})")
    return torch.tensor(w, dtype=torch.float32)


class EpochSampler(Sampler[int]):
    """Training sampler; see the module docstring. Call :meth:`set_epoch` before each epoch (as with
    ``DistributedSampler``). ``shuffle`` only affects ``none`` (``balanced`` and ``oversample`` are random by
    definition). Rows with target -1 may not be used with ``balanced`` / ``oversample``."""

    def __init__(self, targets: np.ndarray, mode: Literal["none", "balanced", "oversample"] = "none", seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, shuffle: bool = True) -> None:
        if mode not in SAMPLER_MODES:
            raise UsageError(f"--sampler {mode!r} is not a sampler", hint=f"choose one of: {', '.join(SAMPLER_MODES)}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.targets = np.asarray(targets, dtype=np.int64).reshape(-1)
        if len(self.targets) == 0:
            raise InputError("the training set is empty", hint="check --fold and the splits file")
        if mode != "none" and (self.targets < 0).any():
            raise InputError(f"--sampler {mode} needs a class for every training row; "
                             f"{int((self.targets < 0).sum())} rows have a missing target",
                             hint="drop rows whose target is missing before sampling")
        self.mode = mode
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = bool(shuffle)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def epoch_length(self) -> int:
        """Indices per epoch over all ranks, before padding."""
        if self.mode == "oversample":
            counts = np.bincount(self.targets)
            return int((counts > 0).sum() * counts.max())
        return len(self.targets)

    def epoch_indices(self, epoch: int | None = None) -> np.ndarray:
        """The whole epoch's index list (all ranks, unpadded): a pure function of (seed, epoch, mode)."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
        t = self.targets
        n = len(t)
        if self.mode == "none":
            return rng.permutation(n) if self.shuffle else np.arange(n)
        counts = np.bincount(t)
        present = np.flatnonzero(counts)
        if self.mode == "balanced":
            w = 1.0 / (len(present) * counts[t].astype(np.float64))
            return rng.choice(n, size=n, replace=True, p=w / w.sum())
        big = counts.max()
        parts = [np.arange(n)]
        for c in present:
            if counts[c] < big:
                parts.append(rng.choice(np.flatnonzero(t == c), size=big - counts[c], replace=True))
        return rng.permutation(np.concatenate(parts))

    def __iter__(self) -> Iterator[int]:
        idx = self.epoch_indices()
        total = len(self) * self.num_replicas
        if total > len(idx):  # pad by repeating the start (DistributedSampler), cycling when the epoch is tiny
            idx = np.concatenate([idx, np.resize(idx, total - len(idx))])
        return iter(idx[self.rank:total:self.num_replicas].tolist())

    def __len__(self) -> int:
        return math.ceil(self.epoch_length / self.num_replicas)

    def state_dict(self) -> dict[str, int | str | bool]:
        return {"mode": self.mode, "seed": self.seed, "epoch": self.epoch, "shuffle": self.shuffle}

    def load_state_dict(self, d: dict) -> None:
        self.seed = int(d["seed"])
        self.epoch = int(d["epoch"])


class ShardedEvalSampler(Sampler[int]):
    """Deterministic evaluation sampler: rank ``r`` of ``num_replicas`` gets ``range(r, n, num_replicas)``.

    No padding: ranks may get different counts (differ by at most one); every index appears on exactly one rank."""

    def __init__(self, data: int | Sized, num_replicas: int = 1, rank: int = 0) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.n = int(data) if isinstance(data, (int, np.integer)) else len(data)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.num_replicas))
