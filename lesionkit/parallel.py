"""Process pools that are safe to start from any state of the parent.

``fork`` after OpenCV (or torch) has started its thread pool can deadlock the child (seen: a child stuck in
``cv2.setNumThreads``). Children therefore come from a ``forkserver`` (a clean process started once) on POSIX,
and from ``spawn`` elsewhere.
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.context import BaseContext


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
