"""Multi-process training helpers: ``torchrun`` environment, rank-0 discipline, exact gathering of predictions.

``torchrun --nproc_per_node N -m lesionkit train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and the
rendezvous address); :func:`init_distributed` joins the process group with NCCL on CUDA and gloo on CPU. Without
those variables everything runs in one process and the helpers are no-ops. Only rank 0 writes files and prints
(:func:`is_main`). Validation uses a sharded sampler without padding (rank ``r`` gets rows ``r::N``), and
:func:`gather_eval` concatenates every rank's ``(row index, outputs)`` and checks every row appears exactly once,
so metrics equal a single-process evaluation (no duplicated padding samples).
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from lesionkit.errors import LesionkitError, UsageError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` in ``[0, world_size)``, its ``local_rank`` on the node, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"  # "cpu" or "cuda:K"
    backend: str | None = None  # "nccl" | "gloo" | None (single process)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_INFO = DistInfo()


def env_world_size() -> int:
    """World size announced by torchrun (1 when not launched by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_distributed(device: str) -> DistInfo:
    """Join the torchrun process group if the environment asks for one; ``device`` is ``cpu`` or ``cuda``.

    CUDA: one GPU per process (``cuda:LOCAL_RANK``), NCCL. CPU: gloo. Idempotent.
    """
    global _INFO
    world = env_world_size()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        dev = "cuda:0" if device == "cuda" else "cpu"
        if device == "cuda":
            torch.cuda.set_device(0)
        _INFO = DistInfo(0, 1, 0, dev, None)
        return _INFO
    if device == "cuda":
        n = torch.cuda.device_count()
        if local >= n:
            raise UsageError(f"torchrun started {world} processes on this node but only {n} CUDA device(s) are visible "
                             f"(LOCAL_RANK {local})", hint=f"use --nproc_per_node {n} or fewer")
        torch.cuda.set_device(local)
        backend, dev = "nccl", f"cuda:{local}"
    else:
        backend, dev = "gloo", "cpu"
    if not dist.is_initialized():
        kw = {"device_id": torch.device(dev)} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, timeout=_dt.timedelta(minutes=30), **kw)
    _INFO = DistInfo(dist.get_rank(), dist.get_world_size(), local, dev, backend)
    return _INFO


def info() -> DistInfo:
    return _INFO


def is_main() -> bool:
    """True on rank 0 (and in single-process runs): the only process that writes files and prints."""
    return _INFO.rank == 0


def barrier() -> None:
    if _INFO.distributed:
        if _INFO.backend == "nccl":
            dist.barrier(device_ids=[_INFO.local_rank])
        else:
            dist.barrier()


def cleanup() -> None:
    global _INFO
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _INFO = DistInfo()


def broadcast_object(obj: object, src: int = 0) -> object:
    """``obj`` from rank ``src`` on every rank (pickled; for small decisions such as 'stop now' or a found LR)."""
    if not _INFO.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sum over ranks (float64)."""
    if not _INFO.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_INFO.device if _INFO.backend == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def all_gather_objects(obj: object) -> list[object]:
    if not _INFO.distributed:
        return [obj]
    out: list[object] = [None] * _INFO.world_size
    dist.all_gather_object(out, obj)
    return out


def merge_shards(shards: list[tuple[np.ndarray, np.ndarray]], n_expected: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-rank ``(indices, values)`` and order by index; every index in ``[0, n_expected)`` exactly once.

    Raises :class:`LesionkitError` naming missing / duplicated indices otherwise (which would bias the metrics).
    """
    idx = np.concatenate([np.asarray(s[0], dtype=np.int64).reshape(-1) for s in shards]) if shards else np.zeros(0, np.int64)
    vals = np.concatenate([np.asarray(s[1]) for s in shards], axis=0) if shards else np.zeros((0,))
    counts = np.bincount(idx, minlength=n_expected) if len(idx) else np.zeros(n_expected, np.int64)
    if len(counts) > n_expected or (counts != 1).any():
        missing = np.flatnonzero(counts[:n_expected] == 0)
        dup = np.flatnonzero(counts > 1)
        raise LesionkitError(
            f"validation gather is not exact: {len(idx)} predictions for {n_expected} samples "
            f"({len(missing)} missing, {len(dup)} duplicated, {max(0, len(counts) - n_expected)} out of range)",
            hint="this is a bug in the evaluation sampler (it must shard without padding); please report it",
            details=[f"missing rows (first 10): {missing[:10].tolist()}", f"duplicated rows (first 10): {dup[:10].tolist()}"],
        )
    order = np.argsort(idx, kind="stable")
    return idx[order], vals[order]


def gather_eval(indices: np.ndarray, values: np.ndarray, n_expected: int) -> tuple[np.ndarray, np.ndarray]:
    """Gather ``(row index, per-row outputs)`` from every rank onto every rank, exactly once per row, index-ordered."""
    shards = all_gather_objects((np.asarray(indices), np.asarray(values)))
    return merge_shards(shards, n_expected)  # type: ignore[arg-type]
