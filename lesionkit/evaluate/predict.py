"""Inference for evaluation: checkpoints → class probabilities, with test-time augmentation and ensembles.

* Models are rebuilt from checkpoints alone (:func:`lesionkit.models.checkpoint.model_from_checkpoint`); the
  pixels follow the checkpoint's data config exactly as training validated: the image is decoded at
  ≥ 2 × ``cache_size`` (scaled JPEG decode), its central square resized to ``cache_size``
  (:func:`lesionkit.data.cache.fit_square`, what the training image cache holds), then the preset's deterministic
  evaluation transform (``build_transform(aug, img_size, train=False, mean, std)``). An existing training cache
  of the same manifest / column / size is reused instead of decoding.
* ``tta="flips8"``: the 8 symmetries of the square (identity, horizontal flip, vertical flip, both, transpose and
  the transpose with each flip — the dihedral group D4, the 8-way TTA of the SEEDS thesis and of the ISIC 2020
  winners); probabilities (not logits) are averaged over the views.
* Binary models (one logit) give ``[1 − σ(z), σ(z)]``; multi-class models the softmax.
* Ensembles (:func:`combine`): ``mean`` of member probabilities, or ``rank``: each member's score for a class is
  replaced by its normalised rank within the evaluated set (``rank / n`` in (0, 1], ties averaged), then
  averaged — the ISIC 2020 winners' rank average. Rank scores order samples but are not probabilities.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lesionkit.errors import InputError, UsageError

__all__ = [
    "ENSEMBLE_METHODS",
    "TTA_MODES",
    "Member",
    "build_eval_dataset",
    "combine",
    "eval_transform",
    "predict_batches",
    "predict_dataset",
    "rank_normalise",
    "resolve_checkpoints",
    "to_probabilities",
    "tta_views",
]

TTA_MODES = ("none", "flips8")
ENSEMBLE_METHODS = ("mean", "rank")


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The views of a batch ``[B, C, H, W]`` for ``mode`` (``none``: ``[x]``; ``flips8``: the 8 elements of D4)."""
    if mode == "none":
        return [x]
    if mode != "flips8":
        raise UsageError(f"--tta {mode!r} is not supported", hint=f"choose one of: {', '.join(TTA_MODES)}")
    t = x.transpose(-2, -1)
    return [x, x.flip(-1), x.flip(-2), x.flip(-2, -1), t, t.flip(-1), t.flip(-2), t.flip(-2, -1)]


def to_probabilities(logits: torch.Tensor, binary: bool) -> torch.Tensor:
    """``[B, C]`` probabilities (float32): softmax, or ``[1 − σ, σ]`` for a one-logit binary model."""
    logits = logits.float()
    if binary:
        p = torch.sigmoid(logits.reshape(-1))
        return torch.stack([1.0 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def _autocast(device: torch.device, amp: str):
    import contextlib

    if device.type == "cuda" and amp in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict_batches(models: Sequence[nn.Module], batches: Any, n: int, n_classes: int, *, binary: bool,
                    tta: str = "none", device: torch.device | str = "cpu", amp: str = "off",
                    channels_last: bool = False) -> np.ndarray:
    """Probabilities ``float32 [M, n, C]`` (M = len(models)) for batches of dicts with ``image`` ``[B, C, H, W]``,
    ``index`` (row positions in 0..n-1) and optional ``meta``. Every row must appear exactly once.

    The loop is kept lean: one host→device copy per batch, forward + softmax on the device, one device→host copy
    per batch and model (see ``benchmarks/bench_evaluate.py`` for the overhead against a bare forward loop)."""
    device = torch.device(device)
    out = torch.empty((len(models), n, n_classes), dtype=torch.float32)
    seen = torch.zeros(n, dtype=torch.bool)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for batch in batches:
        x = batch["image"].to(device, non_blocking=True).to(memory_format=fmt)
        meta = batch.get("meta")
        meta = meta.to(device, non_blocking=True) if meta is not None and meta.numel() else None
        idx = torch.as_tensor(batch["index"], dtype=torch.long)
        views = tta_views(x, tta)
        for m, model in enumerate(models):
            acc = None
            for v in views:
                with _autocast(device, amp):
                    logits = model(v, meta) if meta is not None else model(v)
                p = to_probabilities(logits, binary)
                acc = p if acc is None else acc.add_(p)
            if len(views) > 1:
                acc.div_(len(views))
            out[m, idx] = acc.cpu()
        seen[idx] = True
    if not bool(seen.all()):
        missing = int((~seen).sum())
        raise RuntimeError(f"inference missed {missing} of {n} rows (loader did not yield every index once)")
    return out.numpy()


def rank_normalise(scores: np.ndarray) -> np.ndarray:
    """Normalised ranks along axis 0 (``rank / n`` in (0, 1], ties get their average rank)."""
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64)
    return rankdata(s, axis=0, method="average") / max(len(s), 1)


def combine(member_scores: np.ndarray, method: str = "mean") -> np.ndarray:
    """Ensemble ``[M, n, ...]`` member scores → ``[n, ...]``: ``mean`` of probabilities or ``rank`` average."""
    member_scores = np.asarray(member_scores, dtype=np.float64)
    if method == "mean":
        return member_scores.mean(axis=0)
    if method == "rank":
        return np.mean([rank_normalise(s) for s in member_scores], axis=0)
    raise UsageError(f"--ensemble-method {method!r} is not supported", hint=f"choose one of: {', '.join(ENSEMBLE_METHODS)}")


# -------------------------------------------------------------------------------------------------- members


@dataclass
class Member:
    """One model of an evaluation: which run, which checkpoint file, the loaded checkpoint dict."""

    run_dir: Path
    path: Path
    kind: str  # best | last | snapshot | file
    ckpt: dict[str, Any] = field(repr=False)
    sha256: str = ""

    @property
    def run_name(self) -> str:
        return self.run_dir.name

    def describe(self) -> dict[str, Any]:
        c = self.ckpt
        return {"run": str(self.run_dir), "run_name": self.run_name, "path": str(self.path), "kind": self.kind,
                "sha256": self.sha256, "epoch": c.get("epoch"), "step": c.get("step"),
                "best_metric": c.get("best_metric"), "model": c.get("model_spec", {}).get("name")}


def _snapshot_count(which: str) -> int | None:
    """``snapshots`` → None (all); ``snapshots:K`` → K (the last K cycles)."""
    if which == "snapshots":
        return None
    k = which.split(":", 1)[1]
    if not k.isdigit() or int(k) < 1:
        raise UsageError(f"--checkpoint {which}: expected snapshots:K with K >= 1 (the last K SGDR snapshots)",
                         hint="e.g. --checkpoint snapshots:2")
    return int(k)


def resolve_checkpoints(run_dir: Path, which: str) -> list[tuple[Path, str]]:
    """Checkpoint files of ``run_dir`` for ``--checkpoint`` (``best`` | ``last`` | ``snapshots`` (every SGDR
    cycle-end snapshot) | ``snapshots:K`` (the last K: the first cycles' snapshots are short-trained) | a file)."""
    ck = Path(run_dir) / "checkpoints"
    if which in ("best", "last"):
        p = ck / f"{which}.pt"
        if not p.is_file():
            have = sorted(x.name for x in ck.glob("*.pt")) if ck.is_dir() else []
            raise InputError(f"{p} not found (the run has: {', '.join(have) or 'no checkpoints'})",
                             hint="train the run with `lesionkit train` or pick --checkpoint "
                                  + ("last" if which == "best" else "best"))
        return [(p, which)]
    if which == "snapshots" or which.startswith("snapshots:"):
        last = _snapshot_count(which)
        snaps = sorted(ck.glob("snapshot_cycle*.pt"), key=lambda q: int("".join(ch for ch in q.stem if ch.isdigit()) or 0))
        if not snaps:
            raise InputError(f"{ck} has no snapshot_cycle*.pt checkpoints",
                             hint="snapshots are written at the end of SGDR cycles: `lesionkit train ... --schedule sgdr`")
        if last is not None and last > len(snaps):
            raise UsageError(f"--checkpoint {which}: the run has only {len(snaps)} snapshot(s)",
                             hint=f"pass --checkpoint snapshots:{len(snaps)} or fewer")
        return [(p, "snapshot") for p in (snaps[-last:] if last else snaps)]
    p = Path(which)
    if not p.is_file():
        raise UsageError(f"--checkpoint {which!r}: not best/last/snapshots and not a file",
                         hint="pass best, last, snapshots or the path of a .pt checkpoint")
    return [(p, "file")]


# ---------------------------------------------------------------------------------------------------- data


def eval_transform(data_cfg: dict[str, Any]) -> tuple[Callable[[np.ndarray], torch.Tensor], int]:
    """(transform of an RGB uint8 image already fitted to ``cache_size``, cache_size) from a checkpoint's data config."""
    from lesionkit.data.transforms import build_transform, cache_size_for

    aug = str(data_cfg.get("aug", "none"))
    size = int(data_cfg["input_size"][-1])
    cache_size = int(data_cfg.get("cache_size") or cache_size_for(aug, size))
    tf = build_transform(aug, size, train=False, mean=tuple(data_cfg["mean"]), std=tuple(data_cfg["std"]))
    return tf, cache_size


class _CacheRows:
    def __init__(self, cache: Any, rows: np.ndarray):
        self.cache, self.rows = cache, np.asarray(rows, dtype=np.int64)
        self.path, self.size = cache.path, cache.size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.cache[int(self.rows[i])]


def _existing_cache(manifest: Any, image_col: str, size: int, cache_dir: str | None) -> tuple[Any, np.ndarray] | None:
    """The training stage's image cache of this manifest (every row with an image) when it already exists."""
    from lesionkit.data.cache import build_cache, cache_key, default_cache_root

    df = manifest.df
    have = df[image_col].notna().to_numpy()
    rows = np.flatnonzero(have)
    ids = df["sample_id"].astype(str).to_numpy()[rows].tolist()
    key = cache_key(manifest.fingerprint(), image_col, size, ids)
    root = Path(cache_dir) if cache_dir else default_cache_root()
    if not (root / f"{key}.json").is_file():
        return None
    paths = [str(p) for p in df[image_col].to_numpy()[rows]]
    try:
        cache = build_cache(paths, size, root, key, workers=0)  # validates; reuses when valid
    except Exception:  # noqa: BLE001 - a stale/broken cache only means decoding on the fly
        return None
    to_cache = np.full(len(df), -1, dtype=np.int64)
    to_cache[rows] = np.arange(len(rows))
    return cache, to_cache


def build_eval_dataset(manifest: Any, rows: np.ndarray, targets: np.ndarray, ckpt: dict[str, Any],
                       use_cache: bool = True) -> Any:
    """A :class:`~lesionkit.data.dataset.ManifestDataset` over manifest positions ``rows`` with the checkpoint's
    evaluation preprocessing and metadata encoding."""
    from lesionkit.data.dataset import ManifestDataset

    dcfg = dict(ckpt.get("data_cfg") or {})
    cfg = dict(ckpt.get("config") or {})
    image_col = str(dcfg.get("image_col") or cfg.get("image_col") or "image_path")
    df = manifest.df
    if image_col not in df.columns:
        raise InputError(f"the checkpoint reads images from column `{image_col}`, which {manifest.path} lacks",
                         hint="evaluate on the manifest the run was trained on (or one with the same prep columns)")
    tf, cache_size = eval_transform(dcfg)
    sub = df.iloc[rows]
    meta = None
    if ckpt.get("meta_encoder"):
        from lesionkit.data.meta import MetaEncoder

        meta = MetaEncoder.from_dict(ckpt["meta_encoder"]).transform(sub)
    paths = [str(p) for p in sub[image_col].to_numpy()]
    cache_view = None
    if use_cache and cfg.get("cache", True):
        found = _existing_cache(manifest, image_col, cache_size, cfg.get("cache_dir"))
        if found is not None:
            cache_view = _CacheRows(found[0], found[1][rows])
    return ManifestDataset(paths, targets, tf, cache=cache_view, meta=meta,
                           ids=sub["sample_id"].astype(str).tolist(), fit_size=cache_size)


def predict_dataset(models: Sequence[nn.Module], dataset: Any, n_classes: int, *, binary: bool, tta: str,
                    device: torch.device, batch_size: int, workers: int, amp: str = "off",
                    channels_last: bool = False, description: str = "predict") -> tuple[np.ndarray, float]:
    """``([M, n, C] probabilities, seconds)`` for every row of ``dataset`` (sequential, no padding)."""
    from lesionkit.console import track
    from lesionkit.data.dataset import make_loader

    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, workers=workers,
                         pin_memory=device.type == "cuda")
    t0 = time.perf_counter()
    nb = len(loader)
    probs = predict_batches(models, track(loader, nb, description, unit="batch"), len(dataset), n_classes,
                            binary=binary, tta=tta, device=device, amp=amp, channels_last=channels_last)
    return probs, time.perf_counter() - t0
