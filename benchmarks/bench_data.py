"""Training input pipeline: image-cache build throughput, and DataLoader images/s from the cache vs decoding JPEGs.

Images: the first ``--n`` HAM10000 JPEGs (200x150) when ``LESIONKIT_REAL_DATA`` is set (and not
``--source synthetic``), else ``--n`` synthetic images written as JPEG (q90) at ``--synthetic-size`` px (default
1024, closer to dermoscope output than HAM10000's thumbnails) to a temporary folder. The cache side is
``cache_size_for(preset, img_size)`` (seeds at 128 px → 158 px). Measured:

* cache build (decode every image once into the memory-mapped file) with 0 and 2 worker processes, and the
  validity check of a second build that reuses the cache;
* one epoch through ``make_loader`` (batch 64) with 0 and 2 workers, from the cache or decoding each JPEG
  (``decode_min_side = 2 * cache size``, as the cache does), for the ``none`` preset (eval-like: crop + resize +
  normalise) and the training preset (``--preset``, default seeds). The forkserver is started before timing.

Nothing here is asserted in tests. Run:
``LESIONKIT_REAL_DATA=../shared/data .venv/bin/python benchmarks/bench_data.py [--n 2000] [--img-size 128]``;
``.venv/bin/python benchmarks/bench_data.py --source synthetic --n 300 --synthetic-size 1024``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def images(n: int, synth_size: int, tmp: Path, source: str) -> tuple[list[str], str]:
    real = os.environ.get("LESIONKIT_REAL_DATA")
    if source != "synthetic" and real and (Path(real) / "ham10000" / "images").is_dir():
        paths = sorted(str(p) for p in (Path(real) / "ham10000" / "images").glob("*.jpg"))[:n]
        return paths, f"HAM10000 JPEG 200x150 (first {len(paths)})"
    import cv2

    from lesionkit.synthetic import make_specs, render_sample

    out = tmp / "jpeg"
    out.mkdir()
    paths = []
    for spec in make_specs(n, size=synth_size, seed=0):
        img, _ = render_sample(spec)
        p = out / f"{spec.sample_id}.jpg"
        cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(str(p))
    return paths, f"synthetic JPEG q90 {synth_size}x{synth_size} ({n})"


def epoch_rate(loader) -> float:
    t0 = time.perf_counter()
    n = 0
    for batch in loader:
        n += batch["image"].shape[0]
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--img-size", type=int, default=128)
    ap.add_argument("--preset", default="seeds")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--synthetic-size", type=int, default=1024)
    ap.add_argument("--source", choices=["auto", "synthetic"], default="auto",
                    help="auto: HAM10000 when LESIONKIT_REAL_DATA is set, else synthetic JPEGs")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = ap.parse_args()

    from lesionkit.console import settings
    from lesionkit.data.cache import build_cache
    from lesionkit.data.dataset import ManifestDataset, make_loader
    from lesionkit.data.transforms import build_transform, cache_size_for

    settings.verbosity = -1
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        paths, what = images(args.n, args.synthetic_size, tmp, args.source)
        n = len(paths)
        size = cache_size_for(args.preset, args.img_size)
        res: dict = {"images": what, "n": n, "img_size": args.img_size, "cache_size": size, "preset": args.preset,
                     "batch_size": args.batch_size, "cpus": os.cpu_count(), "torch": torch.__version__,
                     "python": platform.python_version(), "cache_build": {}, "loader": {}}
        cache = None
        for w in args.workers:
            root = tmp / f"cache_w{w}"
            t0 = time.perf_counter()
            cache = build_cache(paths, size, root, "bench", workers=w)
            dt = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = build_cache(paths, size, root, "bench", workers=w)
            reuse = time.perf_counter() - t0
            assert again.reused
            res["cache_build"][f"workers={w}"] = {"s": round(dt, 2), "img_per_s": round(n / dt, 1),
                                                   "reuse_check_s": round(reuse, 3)}
        res["cache_bytes"] = cache.path.stat().st_size
        y = np.zeros(n, dtype=np.int64)
        # start the forkserver (imports torch/torchvision/cv2 once) outside the timings
        warm = ManifestDataset(paths[:4], y[:4], build_transform("none", args.img_size, False), cache=None)
        for _ in make_loader(warm, batch_size=2, workers=max(args.workers)):
            pass
        for preset in ("none", args.preset):
            tr = build_transform(preset, args.img_size, train=True)
            for source in ("cache", "decode"):
                ds = ManifestDataset(paths, y, tr, cache=cache if source == "cache" else None,
                                     decode_min_side=2 * size)
                for w in args.workers:
                    torch.manual_seed(0)
                    loader = make_loader(ds, batch_size=args.batch_size, shuffle=True, workers=w, seed=0)
                    res["loader"][f"{preset}/{source}/workers={w}"] = round(epoch_rate(loader), 1)
        print(json.dumps(res, indent=2))
        print()
        print(f"{what}; cache {size}px ({res['cache_bytes'] / 2**20:.0f} MiB), img_size {args.img_size}, "
              f"batch {args.batch_size}, {os.cpu_count()} CPUs")
        print()
        print("| cache build | s | images/s | reuse check s |")
        print("|---|---|---|---|")
        for k, v in res["cache_build"].items():
            print(f"| {k} | {v['s']} | {v['img_per_s']} | {v['reuse_check_s']} |")
        print()
        print("| preset | source | " + " | ".join(f"images/s, {w} workers" for w in args.workers) + " |")
        print("|---|---|" + "---|" * len(args.workers))
        for preset in ("none", args.preset):
            for source in ("cache", "decode"):
                vals = [str(res["loader"][f"{preset}/{source}/workers={w}"]) for w in args.workers]
                print(f"| {preset} | {source} | " + " | ".join(vals) + " |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
