"""End-to-end prep throughput vs decode-only throughput on the same large JPEGs, and 2 workers vs 1.

Targets (issue 3): prep to 512 px with hair removal >= 80% of the decode-only throughput of the same files on
the same cores; 2 workers >= 1.8x one worker.

Run: .venv/bin/python benchmarks/bench_prep.py [--n 48] [--width 6000 --height 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from lesionkit.manifest.io import Manifest, write_manifest
from lesionkit.manifest.schema import coerce
from lesionkit.prep.decode import decode_image
from lesionkit.prep.pipeline import PrepConfig
from lesionkit.prep.run import _init_worker, run_prep


def make_jpegs(d: Path, n: int, w: int, h: int) -> list[Path]:
    """Skin-like large JPEGs: smooth illumination + a dark lesion blob + hair-like lines + sensor noise, quality 90."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.full((h, w), c, np.float32) for c in (150, 165, 200)], -1)  # BGR skin
    shade = 1 - 0.25 * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2)
    paths = []
    for i in range(n):
        img = base * shade[..., None]
        cx, cy, r = w * (0.4 + 0.2 * rng.random()), h * (0.4 + 0.2 * rng.random()), min(w, h) * (0.1 + 0.1 * rng.random())
        blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2)))
        img = img * (1 - 0.55 * blob[..., None])
        img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
        for _ in range(6):
            p0 = tuple(int(v) for v in rng.integers(0, [w, h]))
            p1 = tuple(int(v) for v in rng.integers(0, [w, h]))
            cv2.line(img, p0, p1, (30, 30, 40), max(2, w // 800), cv2.LINE_AA)
        p = d / f"big_{i:03d}.jpg"
        cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(p)
    return paths


def _decode_only(path: str) -> int:
    img, _ = decode_image(Path(path).read_bytes(), min_side=512)
    return img.shape[0]


def decode_throughput(paths: list[Path], workers: int) -> float:
    t0 = time.perf_counter()
    if workers == 1:
        _init_worker()
        for p in paths:
            _decode_only(str(p))
    else:
        with get_context("fork").Pool(workers, initializer=_init_worker) as pool:
            list(pool.imap_unordered(_decode_only, [str(p) for p in paths], chunksize=4))
    return len(paths) / (time.perf_counter() - t0)


def prep_throughput(manifest: Path, out: Path, cfg: PrepConfig, workers: int) -> float:
    t0 = time.perf_counter()
    run_prep(manifest, out, cfg, workers=workers, overwrite=True)
    return pd.read_parquet(out / "manifest.parquet").shape[0] / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--hair", default="lesionkit")
    args = ap.parse_args()
    from lesionkit.console import settings

    settings.verbosity = -1
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        paths = make_jpegs(d, args.n, args.width, args.height)
        df = pd.DataFrame({"sample_id": [p.stem for p in paths], "source": "bench", "image_path": [str(p) for p in paths], "label": 0})
        mpath = write_manifest(Manifest(coerce(df), ["x"]), d / "m.parquet")
        cfg = PrepConfig(size=512, hair=args.hair)
        res = {"n": args.n, "source": f"{args.width}x{args.height} JPEG q90", "cpu_count": os.cpu_count(), "hair": args.hair}
        for w in (1, 2):
            dec = decode_throughput(paths, w)
            pre = prep_throughput(mpath, d / f"out{w}", cfg, w)
            res[f"workers_{w}"] = {"decode_only_img_s": round(dec, 2), "prep_img_s": round(pre, 2), "prep_vs_decode": round(pre / dec, 3)}
        res["prep_2_vs_1_workers"] = round(res["workers_2"]["prep_img_s"] / res["workers_1"]["prep_img_s"], 3)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
