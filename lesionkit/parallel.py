"""Process pools that are safe to start from any state of the parent.

``fork`` after OpenCV (or torch) has started its thread pool can deadlock the child (seen: a child stuck in
``cv2.setNumThreads``). Children therefore come from a ``forkserver`` (a clean process started once) on POSIX,
and from ``spawn`` elsewhere.
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.context import BaseContext


def mp_context() -> BaseContext:
    return multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
