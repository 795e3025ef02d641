"""Process pools that are safe to start from any state of the parent.

``fork`` after OpenCV (or torch) has started its thread pool can deadlock the child (seen: a child stuck in
``cv2.setNumThreads``). Children therefore come from a ``forkserver`` (a clean process started once) on POSIX,
and from ``spawn`` elsewhere.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from multiprocessing.context import BaseContext
from typing import TypeVar

T = TypeVar("T")
S = TypeVar("S")
R = TypeVar("R")

_MALLOC_TUNED = False


def mp_context(preload: list[str] | None = None) -> BaseContext:
    """Pool context; ``preload`` modules are imported once in the fork server, so each worker does not pay for
    importing them again (OpenCV, scikit-image: ~1 s per worker otherwise). Importing does not start OpenCV's
    thread pool, so forking from the server stays safe."""
    if os.name != "posix":
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    if preload:
        ctx.set_forkserver_preload(preload)
    return ctx


def tune_malloc(mmap_threshold: int = 64 << 20, trim_threshold: int = 128 << 20) -> bool:
    """Make glibc serve buffers up to ``mmap_threshold`` bytes from the heap and keep up to ``trim_threshold``
    bytes of freed memory, so the per-image arrays of a long image loop are reused.

    By default glibc maps every buffer of 128 KiB or more freshly and unmaps it when it is freed, and each new
    mapping is zero-filled page by page. Decoding and labelling 48 camera-size JPEGs caused 316,000 page faults,
    and 13,000 with this setting. Decoding got 9% faster, label-skintone 6%, prep 8%.

    Called in the per-image workers of prep and label-skintone, including the single-process path, where it
    applies to the calling process. The cost is memory: up to ``trim_threshold`` bytes stay reserved. On other
    C libraries it does nothing. Returns whether the setting is in effect.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
        _MALLOC_TUNED = (libc.mallopt(m_mmap_threshold, int(mmap_threshold)) == 1
                         and libc.mallopt(m_trim_threshold, int(trim_threshold)) == 1)
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): keep the allocator's defaults
        _MALLOC_TUNED = False
    return _MALLOC_TUNED


def batched(items: Iterable[T], n: int) -> Iterator[list[T]]:
    """Consecutive lists of ``n`` items (the last may be shorter), lazily: ``itertools.batched`` of Python 3.12."""
    if n < 1:
        raise ValueError(f"batch size must be at least 1 (got {n})")
    it = iter(items)
    while chunk := list(itertools.islice(it, n)):
        yield chunk


def task_batch_size(n_items: int, workers: int, cap: int) -> int:
    """Items per worker task: at most ``cap``, and small enough that every worker gets about four tasks (no
    worker idles while another finishes a long last batch)."""
    return max(1, min(cap, n_items // (max(1, workers) * 4)))


def run_staged(items: Sequence[T], stage: Callable[[T], tuple[R | None, S | None, int]],
               finish: Callable[[T, S], R], max_bytes: int) -> list[R]:
    """A worker task in two phases: ``stage`` every item (read, decode: ``(result, None, 0)`` when that already
    gives the item's final result, else ``(None, staged, bytes held)``), then ``finish`` the staged ones one after
    another, early whenever ``max_bytes`` are held. Running each phase over several items in a row keeps its code
    and data in the CPU caches (after a 24 MP decode the next step otherwise starts cold). Results in item order."""
    out: list[R | None] = [None] * len(items)
    pending: list[tuple[int, S]] = []
    held = 0

    def flush() -> None:
        for j, st in pending:
            out[j] = finish(items[j], st)
        pending.clear()

    for j, item in enumerate(items):
        result, staged, nbytes = stage(item)
        if staged is None:
            out[j] = result
            continue
        pending.append((j, staged))
        held += nbytes
        if held >= max_bytes:
            flush()
            held = 0
    flush()
    return out  # type: ignore[return-value]  # every slot is filled
