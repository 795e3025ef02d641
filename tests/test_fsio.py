"""Atomic outputs: moved into place whole, removed on failure, and as readable as any file the user writes."""

from __future__ import annotations

import os
import stat

import pytest

from lesionkit.fsio import atomic_dir, atomic_path, write_json_atomic


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_atomic_outputs_respect_the_umask_not_mkstemp_0600(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    with atomic_dir(tmp_path / "d") as d:
        (d / "f.txt").write_text("x")
    assert _mode(tmp_path / "a.json") == 0o666 & ~umask  # mkstemp alone leaves 0600
    assert _mode(tmp_path / "d") == 0o777 & ~umask  # mkdtemp alone leaves 0700
    if umask & 0o044 == 0:
        assert _mode(tmp_path / "a.json") & 0o044 and _mode(tmp_path / "d") & 0o055


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
