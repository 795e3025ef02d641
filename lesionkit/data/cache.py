"""Decoded-image cache: every image decoded ONCE into a memory-mapped ``uint8 [n, size, size, 3]`` file.

Training reads pixels from the cache instead of decoding JPEGs every epoch; the file is shared by every epoch,
every run and every DataLoader worker (the OS page cache keeps the hot part in memory once for all of them).

Layout, in ``cache_root``:

* ``<key>.u8`` — raw C-order ``uint8`` array ``[n, size, size, 3]`` (RGB), no header (open with ``np.memmap``).
* ``<key>.json`` — ``kind``, ``version``, ``shape``, ``method``, ``paths_sha256`` (the ordered path list),
  ``files_sha256`` (path, byte size and mtime of every file at build time), ``done`` (True only once complete).
* ``<key>.lock`` — an advisory ``flock`` held while checking/building, so concurrent processes (DDP ranks, two
  runs) build a cache once and the others wait and reuse it.

Pixels. :func:`~lesionkit.prep.decode.decode_image` with ``min_side=2 * size`` (JPEGs decoded at 1/2, 1/4 or 1/8
scale when that still leaves the short side ≥ ``2 * size``), then the central square (side = the short side; an
odd excess puts the extra pixel right/bottom) resized to ``size x size`` with ``INTER_AREA`` when shrinking and
``INTER_CUBIC`` when enlarging (an image already ``size x size`` is copied unchanged). This is the same region as
"resize the short side to ``size``, then centre-crop", without rounding the long side first. The 2x margin keeps
the last resize a real ≥2x area average: on HAM10000 (200x150 JPEGs → 64 px) decoding at 1/2 scale (75 px) and
resizing 75 → 64 put the result 2.05 levels (mean abs) from a Lanczos resize of the full decode, against 0.59
for the full decode + ``INTER_AREA`` (40 images); for camera-size JPEGs the DCT scaling still removes most of the
decoding work (``benchmarks/bench_decode.py``).

Validity. A cache is reused only if its json says ``done``, the version, shape and ordered paths match, every file
still has the size and mtime recorded at build time, and the ``.u8`` has exactly ``n * size * size * 3`` bytes.
Anything else (an interrupted build, a changed image, a different path list) is rebuilt. The build writes a
temporary ``.<key>.u8.<pid>.<random>.tmp`` beside the target, moves it into place with ``os.replace``, and only
then writes the json with ``done: true`` (the commit point); the old json is removed first, so a crash at any point
leaves a cache that is detected as invalid, never a half-filled one that looks valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.errors import InputError, UsageError

__all__ = ["CACHE_VERSION", "ImageCache", "build_cache", "cache_key", "default_cache_root", "fit_square", "open_cache"]

CACHE_VERSION = 2
KIND = "lesionkit.image_cache"
METHOD = ("decode_image(min_side=2*size); central square (side = short side) resized to size x size "
          "(INTER_AREA shrinking, INTER_CUBIC enlarging); RGB uint8")
CHUNK = 32  # images per worker task
# Modules imported once in the forkserver. The server is one per process and keeps the preload list of whoever
# started it first, so the cache build and the DataLoader (lesionkit.data.dataset.make_loader) use the same list
# when torch is loaded: otherwise every DataLoader worker would import torch itself (seconds per worker).
DECODE_PRELOAD = ["cv2", "lesionkit.prep.decode"]
WORKER_PRELOAD = [*DECODE_PRELOAD, "torch", "torchvision", "lesionkit.data.transforms"]
MAX_LISTED = 20  # failures named in an error


def default_cache_root() -> Path:
    """``$LESIONKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/lesionkit/images``, else ``~/.cache/lesionkit/images``."""
    env = os.environ.get("LESIONKIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lesionkit" / "images"


def cache_key(manifest_fingerprint: str, image_col: str, size: int, ids: list[str]) -> str:
    """A file-name-safe key naming the cache of ``ids`` (in this order) from ``image_col`` at ``size`` px.

    ``<image_col>-<size>px-<n>-<20 hex of sha256(version, fingerprint, column, size, ids)>``."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "fp": str(manifest_fingerprint), "col": str(image_col),
                         "size": int(size)}, sort_keys=True).encode())
    for i in ids:
        h.update(str(i).encode())
        h.update(b"\0")
    col = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(image_col))[:40]
    return f"{col}-{int(size)}px-{len(ids)}-{h.hexdigest()[:20]}"


def fit_square(img: np.ndarray, size: int) -> np.ndarray:
    """The central square of ``img`` (RGB uint8 HWC) resized to ``size x size`` (see the module docstring)."""
    import cv2

    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    sq = img[y0:y0 + s, x0:x0 + s]
    if s == size:
        return np.ascontiguousarray(sq)
    interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(sq), (size, size), interpolation=interp)


def _paths_sha(paths: Sequence[str]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def _files_sha(paths: Sequence[str]) -> str:
    """sha256 over (path, size, mtime_ns) of every file; a missing file contributes ``-1``."""
    h = hashlib.sha256()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0-1\n".encode())
    return h.hexdigest()


class ImageCache:
    """Read access to a built cache: ``cache[i]`` is image ``i`` as a ``uint8 (size, size, 3)`` array (a copy).

    Picklable: the memory map is not pickled but reopened lazily (read-only) in each process that reads it, so
    DataLoader workers (fork, forkserver or spawn) share the OS page cache instead of copying the array."""

    def __init__(self, path: Path | str, n: int, size: int, reused: bool = False, info: dict[str, Any] | None = None):
        self.path = Path(path)
        self.n = int(n)
        self.size = int(size)
        self.reused = bool(reused)  # True when build_cache found a valid cache and decoded nothing
        self.info = dict(info or {})
        self._mm: np.memmap | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.size, self.size, 3)

    @property
    def array(self) -> np.memmap:
        """The whole cache as a read-only ``np.memmap`` (opened on first use in this process)."""
        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)
        return self._mm

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        i = int(i)
        if not -self.n <= i < self.n:
            raise IndexError(f"image cache index {i} out of range for {self.n} images")
        return np.array(self.array[i])

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_mm"] = None
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)

    def __repr__(self) -> str:
        return f"ImageCache({str(self.path)!r}, n={self.n}, size={self.size}, reused={self.reused})"


def _files(cache_root: Path, key: str) -> tuple[Path, Path, Path]:
    return cache_root / f"{key}.u8", cache_root / f"{key}.json", cache_root / f"{key}.lock"


def _check(cache_root: Path, key: str, paths: Sequence[str], size: int) -> tuple[bool, str, dict[str, Any]]:
    """Whether ``<key>`` is a complete cache of exactly these files at ``size``; the reason when not."""
    u8, js, _ = _files(cache_root, key)
    if not js.is_file():
        return False, "no cache yet" if not u8.exists() else "cache data without a completed record (interrupted build)", {}
    try:
        rec = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        return False, f"unreadable cache record ({e})", {}
    n = len(paths)
    if rec.get("kind") != KIND or rec.get("version") != CACHE_VERSION:
        return False, f"cache record of another kind/version ({rec.get('kind')}, {rec.get('version')})", rec
    if rec.get("done") is not True:
        return False, "the previous build did not finish", rec
    if rec.get("shape") != [n, size, size, 3]:
        return False, f"cache shape {rec.get('shape')} differs from the requested {[n, size, size, 3]}", rec
    if rec.get("paths_sha256") != _paths_sha(paths):
        return False, "the cached path list differs", rec
    try:
        nbytes = u8.stat().st_size
    except OSError:
        return False, "cache data file is missing", rec
    if nbytes != n * size * size * 3:
        return False, f"cache data file has {nbytes} bytes, expected {n * size * size * 3}", rec
    if rec.get("files_sha256") != _files_sha(paths):
        return False, "image files changed (size or modification time) since the cache was built", rec
    return True, "valid", rec


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(lock_path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _decode_into(mm: np.ndarray, i: int, path: str, size: int) -> tuple[int, str, str] | None:
    from lesionkit.prep.decode import DecodeError, decode_image

    try:
        img, _ = decode_image(path, min_side=2 * size)
    except DecodeError as e:
        return (i, e.reason, e.message)
    mm[i] = fit_square(img, size)
    return None


def _decode_chunk(tmp: str, n: int, size: int, items: list[tuple[int, str]]) -> list[tuple[int, str, str]]:
    """Worker: decode ``items`` ((index, path) pairs) straight into the temporary memmap; return failures."""
    import cv2

    cv2.setNumThreads(1)
    mm = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=(n, size, size, 3))
    fails = [f for i, p in items if (f := _decode_into(mm, i, p, size)) is not None]
    mm.flush()
    del mm
    return fails


def open_cache(cache_root: Path | str, key: str) -> ImageCache:
    """Open an existing, completed cache by key (no validation against files; :func:`build_cache` does that)."""
    cache_root = Path(cache_root)
    u8, js, _ = _files(cache_root, key)
    try:
        rec = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"image cache record {js} cannot be read ({e})", hint="rebuild it (lesionkit train builds it)") from None
    if rec.get("kind") != KIND or rec.get("done") is not True or not u8.is_file():
        raise InputError(f"{js} is not a completed lesionkit image cache", hint="rebuild it (lesionkit train builds it)")
    n, size = int(rec["shape"][0]), int(rec["shape"][1])
    return ImageCache(u8, n, size, reused=True, info=rec)


def build_cache(paths: list[str], size: int, cache_root: Path, key: str, workers: int = 0) -> ImageCache:
    """Decode every image of ``paths`` once into ``<cache_root>/<key>.u8`` (or reuse a valid cache); see the module
    docstring for pixels, layout and validity.

    ``size``: side in pixels (≥ 8). ``workers``: 0 decodes in this process; ≥ 1 uses that many worker processes
    (forkserver), each decoding straight into the memory-mapped temporary file. Every image that cannot be
    decoded is collected first; then one :class:`InputError` names them (path and reason) and nothing is kept.
    """
    from lesionkit.console import info, track
    from lesionkit.fsio import write_json_atomic

    size = int(size)
    if size < 8:
        raise UsageError(f"image cache size must be at least 8 pixels (got {size})", hint="e.g. --img-size 224")
    if workers < 0:
        raise UsageError(f"workers must be >= 0 (got {workers})", hint="e.g. --workers 2")
    bad = [i for i, p in enumerate(paths) if p is None or (isinstance(p, float) and math.isnan(p)) or str(p) in ("", "<NA>")]
    if bad:
        raise InputError(f"{len(bad)} rows have no image path (first row indices: {bad[:10]})",
                         hint="drop rows without images before training, or rebuild the manifest with their images")
    paths = [str(p) for p in paths]
    n = len(paths)
    if n == 0:
        raise InputError("no images to cache (empty path list)", hint="check the split: the selected fold has no rows")
    cache_root = Path(cache_root)
    cache_root.mkdir(parents=True, exist_ok=True)
    u8, js, lock = _files(cache_root, key)
    with _locked(lock):
        ok, reason, rec = _check(cache_root, key, paths, size)
        if ok:
            info(f"image cache: reusing {u8} ({n} images at {size}px)")
            return ImageCache(u8, n, size, reused=True, info=rec)
        for stale in cache_root.glob(f".{key}.u8.*.tmp"):  # left by a killed build (we hold the lock)
            stale.unlink(missing_ok=True)
        nbytes = n * size * size * 3
        free = shutil.disk_usage(cache_root).free + (u8.stat().st_size if u8.exists() else 0)
        if free < nbytes + (64 << 20):
            raise InputError(f"not enough disk space for the image cache in {cache_root}: need {nbytes / 2**30:.2f} GiB, "
                             f"{free / 2**30:.2f} GiB free", hint="pass --cache-dir on a larger disk, or a smaller --img-size")
        info(f"image cache: building {u8.name} ({n} images at {size}px, {nbytes / 2**20:.0f} MiB; {reason})")
        js.unlink(missing_ok=True)  # from here on an interruption can never leave a record that looks complete
        record = {"kind": KIND, "version": CACHE_VERSION, "shape": [n, size, size, 3], "dtype": "uint8",
                  "layout": "C-order NHWC RGB, no header", "method": METHOD, "key": key,
                  "paths_sha256": _paths_sha(paths), "files_sha256": _files_sha(paths), "done": False}
        write_json_atomic(js, record)
        tmp = cache_root / f".{key}.u8.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.truncate(nbytes)
            failures = _fill(tmp, paths, size, workers, track)
            if failures:
                failures.sort()
                details = [f"{paths[i]}: {reason} ({msg})" for i, reason, msg in failures[:MAX_LISTED]]
                if len(failures) > MAX_LISTED:
                    details.append(f"... and {len(failures) - MAX_LISTED} more")
                raise InputError(
                    f"{len(failures)} of {n} images could not be decoded for the image cache "
                    f"(first: {paths[failures[0][0]]}: {failures[0][1]})",
                    hint="fix or remove these rows (`lesionkit manifest validate MANIFEST --check-files` lists every "
                         "unreadable image), then run again", details=details)
            with open(tmp, "r+b") as f:
                os.fsync(f.fileno())
            os.replace(tmp, u8)
        except BaseException:
            tmp.unlink(missing_ok=True)
            js.unlink(missing_ok=True)
            raise
        record["done"] = True
        write_json_atomic(js, record)
    return ImageCache(u8, n, size, reused=False, info=record)


def _fill(tmp: Path, paths: list[str], size: int, workers: int, track: Any) -> list[tuple[int, str, str]]:
    n = len(paths)
    items = list(enumerate(paths))
    if workers == 0 or n <= CHUNK:
        mm = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=(n, size, size, 3))
        fails = [f for i, p in track(items, total=n, description="image cache")
                 if (f := _decode_into(mm, i, p, size)) is not None]
        mm.flush()
        del mm
        return fails
    from lesionkit.parallel import mp_context

    chunks = [items[k:k + CHUNK] for k in range(0, n, CHUNK)]

    def run() -> Iterator[tuple[int, str, str] | None]:
        ctx = mp_context(preload=WORKER_PRELOAD if "torch" in sys.modules else DECODE_PRELOAD)
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=ctx) as ex:
            for chunk, res in zip(chunks, ex.map(_decode_chunk, [str(tmp)] * len(chunks), [n] * len(chunks),
                                                 [size] * len(chunks), chunks), strict=True):
                yield from res
                yield from [None] * (len(chunk) - len(res))

    return [f for f in track(run(), total=n, description="image cache") if f is not None]
