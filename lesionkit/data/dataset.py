"""A torch ``Dataset`` over manifest rows, and a DataLoader factory whose workers are safe and reproducible.

Items are dicts: ``image`` (float32 CHW from the transform), ``target`` (int64 scalar tensor; -1 = missing),
``index`` (int, the row's position in this dataset, so predictions can be joined back to ``ids``) and ``meta``
(float32 ``[dim]``; ``zeros(0)`` without metadata). Pixels come from an :class:`~lesionkit.data.cache.ImageCache`
(row ``i`` = cache image ``i``) when given, otherwise each call decodes the file with
:func:`~lesionkit.prep.decode.decode_image` (decode and augmentation both run in DataLoader worker processes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lesionkit.data.cache import WORKER_PRELOAD, ImageCache
from lesionkit.errors import InputError

__all__ = ["ManifestDataset", "make_loader", "worker_init"]


class ManifestDataset(Dataset):
    """Rows ``0..n-1`` of a manifest selection: ``paths[i]`` (absolute image path), ``targets[i]`` (class index,
    -1 missing), optional ``cache`` (same row order, ``len(cache) == n``), ``meta`` (``float32 [n, dim]`` from
    :class:`~lesionkit.data.meta.MetaEncoder`) and ``ids`` (sample ids, for reporting).

    ``decode_min_side`` (no cache only): JPEGs are decoded at the smallest DCT scale whose short side is still ≥
    this many pixels, several times faster for large camera images; use twice the side the transform crops to
    (as the cache does) so the final resize still averages ≥ 2x2 pixels."""

    def __init__(self, paths: list[str], targets: np.ndarray, transform: Callable[[np.ndarray], torch.Tensor],
                 cache: ImageCache | None = None, meta: np.ndarray | None = None, ids: list[str] | None = None,
                 decode_min_side: int | None = None, fit_size: int | None = None) -> None:
        n = len(paths)
        self.paths = [str(p) for p in paths]
        self.targets = np.asarray(targets, dtype=np.int64).reshape(-1)
        if len(self.targets) != n:
            raise InputError(f"dataset has {n} image paths but {len(self.targets)} targets")
        if cache is not None and len(cache) != n:
            raise InputError(f"image cache {cache.path} holds {len(cache)} images but the dataset has {n} rows",
                             hint="rebuild the cache for this selection of rows (its key must include the row ids)")
        if meta is not None:
            meta = np.ascontiguousarray(meta, dtype=np.float32)
            if meta.ndim != 2 or meta.shape[0] != n:
                raise InputError(f"metadata matrix has shape {meta.shape}, expected ({n}, dim)")
        if ids is not None and len(ids) != n:
            raise InputError(f"dataset has {n} rows but {len(ids)} ids")
        self.transform = transform
        self.cache = cache
        self.meta = meta
        self.ids = None if ids is None else [str(i) for i in ids]
        self.fit_size = int(fit_size) if fit_size else None
        self.decode_min_side = decode_min_side if decode_min_side is not None or not self.fit_size else 2 * self.fit_size
        self._no_meta = torch.zeros(0, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def meta_dim(self) -> int:
        return 0 if self.meta is None else int(self.meta.shape[1])

    def load_image(self, i: int) -> np.ndarray:
        """Row ``i``'s pixels, RGB uint8 ``(H, W, 3)``: from the cache, or decoded (InputError naming the file)."""
        if self.cache is not None:
            return self.cache[i]
        from lesionkit.prep.decode import DecodeError, decode_image

        path = self.paths[i]
        try:
            img, _ = decode_image(path, min_side=self.decode_min_side)
        except DecodeError as e:
            sid = f" (sample {self.ids[i]})" if self.ids is not None else ""
            raise InputError(f"cannot decode {path}{sid}: {e.reason} ({e.message})",
                             hint="fix or remove the row (`lesionkit manifest validate MANIFEST --check-files` lists "
                                  "unreadable images)") from None
        if self.fit_size and img.shape[:2] != (self.fit_size, self.fit_size):
            from lesionkit.data.cache import fit_square

            img = fit_square(img, self.fit_size)
        return img

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        img = self.transform(self.load_image(i))
        meta = self._no_meta if self.meta is None else torch.from_numpy(self.meta[i].copy())
        return {"image": img, "target": torch.tensor(int(self.targets[i]), dtype=torch.int64), "index": i, "meta": meta}


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one OpenCV / torch thread per worker (processes give the parallelism), and
    numpy's legacy global RNG seeded from the worker's torch seed (augmentation itself only uses torch's RNG)."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    np.random.seed(torch.initial_seed() % 2**32)


def make_loader(dataset: Dataset, *, batch_size: int, sampler: Sampler[int] | None = None, shuffle: bool = False,
                workers: int = 0, drop_last: bool = False, pin_memory: bool = False, seed: int | None = None,
                persistent_workers: bool = False, prefetch_factor: int | None = 4,
                start_method: str = "forkserver") -> DataLoader:
    """A DataLoader with safe, reproducible workers.

    ``workers > 0`` uses ``start_method`` (default ``forkserver``, with torch / torchvision / OpenCV preloaded in the
    server so workers start in milliseconds: plain ``fork`` after OpenCV or torch started threads can deadlock a
    child, see :mod:`lesionkit.parallel`). ``seed``: the loader's own ``torch.Generator``, from which each epoch's
    worker seeds are drawn, so augmentation in workers is reproducible; re-seed ``loader.generator`` per epoch
    (e.g. with ``seed * 1000003 + epoch``) to make every epoch's augmentation a pure function of (seed, epoch).
    """
    gen = None
    if seed is not None:
        gen = torch.Generator()
        gen.manual_seed(int(seed))
    kwargs: dict[str, Any] = {}
    if workers > 0:
        import multiprocessing

        ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            ctx.set_forkserver_preload(WORKER_PRELOAD)
        kwargs.update(multiprocessing_context=ctx, worker_init_fn=worker_init, persistent_workers=persistent_workers,
                      prefetch_factor=prefetch_factor)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle if sampler is None else False,
                      num_workers=workers, drop_last=drop_last, pin_memory=pin_memory, generator=gen, **kwargs)

