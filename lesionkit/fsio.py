"""Atomic writes, output guards and fingerprints.

Every output is written to a temporary sibling and moved into place with ``os.replace``, so a crash
or Ctrl-C leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lesionkit.errors import OutputExistsError


def check_output(path: Path, overwrite: bool, flag: str = "--overwrite") -> None:
    """Refuse to replace an existing ``path`` unless ``overwrite``."""
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"output exists: {path}",
            hint=f"pass {flag} to replace it, or choose another output path",
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()
FILE_MODE = 0o666 & ~_UMASK  # what open() would give: mkstemp / mkdtemp create 0600 / 0700, private to the user
DIR_MODE = 0o777 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=(suffix if suffix is not None else path.suffix) + ".tmp", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, FILE_MODE)  # outputs readable like any other file the user writes
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` (any old one is removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, DIR_MODE)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path | str, obj: Any) -> None:
    """Write JSON (``allow_nan=False``: NaN must be turned into null with a reason before writing)."""
    write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def folder_fingerprint(path: Path | str) -> dict[str, Any]:
    """Cheap fingerprint of a folder of images: file count, total bytes and a hash of names + sizes.

    Content is not hashed (10k+ images); renames, additions, removals and size changes are caught.
    """
    path = Path(path)
    h = hashlib.sha256()
    n = 0
    total = 0
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            st = os.stat(os.path.join(root, name))
            rel = os.path.relpath(os.path.join(root, name), path)
            h.update(f"{rel}\0{st.st_size}\n".encode())
            n += 1
            total += st.st_size
    return {"path": str(path.resolve()), "kind": "folder", "files": n, "bytes": total, "names_sizes_sha256": h.hexdigest()}


def input_fingerprint(path: Path | str) -> dict[str, Any]:
    """Fingerprint of an input: sha256 for a file, :func:`folder_fingerprint` for a folder."""
    path = Path(path)
    if path.is_dir():
        return folder_fingerprint(path)
    return {"path": str(path.resolve()), "kind": "file", "bytes": path.stat().st_size, "sha256": file_sha256(path)}
