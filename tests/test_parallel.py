"""lesionkit.parallel: the allocator setting of the per-image workers."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import resource, sys
import cv2
import numpy as np
from lesionkit.parallel import tune_malloc
on = tune_malloc() if sys.argv[1] == "on" else False
rng = np.random.default_rng(0)
img = cv2.GaussianBlur((rng.random((1000, 1500, 3)) * 255).astype(np.uint8), (0, 0), 2)
buf = cv2.imencode(".jpg", img)[1]
for _ in range(3):  # warm-up
    cv2.imdecode(buf, cv2.IMREAD_COLOR)
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):  # an image loop: decode, resize, convert (buffers freed every round)
    a = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    b = cv2.resize(a, (750, 500), interpolation=cv2.INTER_AREA).astype(np.float32)
print(int(on), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tune_malloc_reuses_large_buffers():
    def run(mode: str) -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
        on, faults = out.stdout.split()
        return int(on), int(faults)

    on, tuned = run("on")
    _, default = run("off")
    if not on:
        pytest.skip("not glibc: tune_malloc leaves the allocator alone")
    # default glibc maps the 4.5 MB decoded image afresh every round (~700 page faults each); tuned, reused
    assert default > 30 * 200
    assert tuned < default / 20


def test_tune_malloc_is_idempotent():
    from lesionkit.parallel import tune_malloc

    assert tune_malloc() == tune_malloc()


def test_batched_and_task_batch_size():
    from lesionkit.parallel import batched, task_batch_size

    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched(iter([]), 4)) == []
    assert list(batched("ab", 5)) == [["a", "b"]]
    with pytest.raises(ValueError):
        list(batched([1], 0))
    assert task_batch_size(192, 2, 8) == 8  # 24 tasks for 2 workers
    assert task_batch_size(24, 1, 8) == 6  # about four tasks per worker
    assert task_batch_size(5, 2, 8) == 1
    assert task_batch_size(0, 4, 8) == 1


def test_run_staged_order_and_byte_budget():
    from lesionkit.parallel import run_staged

    log: list[str] = []

    def stage(x: int):
        log.append(f"s{x}")
        return (-x, None, 0) if x % 3 == 0 else (None, x * 10, 4)

    def finish(x: int, st: int) -> int:
        log.append(f"f{x}")
        return st + x

    items = [1, 2, 3, 4, 5]
    assert run_staged(items, stage, finish, max_bytes=100) == [11, 22, -3, 44, 55]
    assert log == ["s1", "s2", "s3", "s4", "s5", "f1", "f2", "f4", "f5"]  # all staged first, then finished
    log.clear()
    assert run_staged(items, stage, finish, max_bytes=8) == [11, 22, -3, 44, 55]
    assert log == ["s1", "s2", "f1", "f2", "s3", "s4", "s5", "f4", "f5"]  # flushed once 8 bytes are held
    assert run_staged([], stage, finish, 8) == []
