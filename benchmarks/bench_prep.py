"""End-to-end prep throughput vs decode-only throughput on the same large JPEGs, and 2 workers vs 1.

Targets (issue 3): prep to 512 px with hair removal >= 80% of the decode-only throughput of the same files on
the same cores; 2 workers >= 1.8x one worker.

Decode-only = reading each file and decoding it exactly as prep does (:func:`lesionkit.prep.pipeline.decode_for`:
the same DCT reduction), in the same kind of process pool (forkserver with the prep modules preloaded). Each
measurement includes the pool start, as a user's run does; ``pool_start_s`` is reported separately. Each pair
(decode, prep) is measured ``--repeats`` times, interleaved, and the best time is kept (the machine is shared).
With one worker the CPU-time rates are reported too, and a paired per-image measurement on one core (each file
decoded, then prepped, file by file, several rounds, per-file medians): the steadiest number on a shared machine. Also reported: a naive full-resolution ``cv2.imdecode`` pass, the decode a pipeline without DCT scaling does.

Run: .venv/bin/python benchmarks/bench_prep.py [--n 96] [--width 6000 --height 4000] [--resize-mode resize]
Generated JPEGs are kept in --jpeg-dir (default /tmp/lesionkit-bench-jpegs) and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from lesionkit.manifest.io import Manifest, write_manifest
from lesionkit.manifest.schema import coerce
from lesionkit.parallel import mp_context
from lesionkit.prep.pipeline import PrepConfig, decode_for
from lesionkit.prep.run import PRELOAD, _init_worker, run_prep


def make_jpegs(d: Path, n: int, w: int, h: int) -> list[Path]:
    """Skin-like large JPEGs: smooth illumination + a dark lesion blob + hair-like lines + sensor noise, quality 90."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.full((h, w), c, np.float32) for c in (150, 165, 200)], -1)  # BGR skin
    shade = 1 - 0.25 * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2)
    paths = []
    for i in range(n):
        p = d / f"big_{w}x{h}_{i:03d}.jpg"
        paths.append(p)
        cx, cy, r = w * (0.4 + 0.2 * rng.random()), h * (0.4 + 0.2 * rng.random()), min(w, h) * (0.1 + 0.1 * rng.random())
        lines = [(tuple(int(v) for v in rng.integers(0, [w, h])), tuple(int(v) for v in rng.integers(0, [w, h]))) for _ in range(6)]
        if p.exists():
            continue
        blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2)))
        img = base * shade[..., None] * (1 - 0.55 * blob[..., None])
        img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
        for p0, p1 in lines:
            cv2.line(img, p0, p1, (30, 30, 40), max(2, w // 800), cv2.LINE_AA)
        tmp = p.with_suffix(".tmp.jpg")
        cv2.imwrite(str(tmp), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        os.replace(tmp, p)  # a killed run never leaves a truncated JPEG to be reused
    return paths


_CFG: PrepConfig | None = None


def _decode_only(path: str) -> int:
    img, _ = decode_for(Path(path).read_bytes(), _CFG)
    return img.shape[0]


def _full_decode(path: str) -> int:
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR).shape[0]


def _set_cfg(cfg: PrepConfig) -> None:
    global _CFG
    _CFG = cfg
    _init_worker()


def pool_start(workers: int) -> float:
    t0 = time.perf_counter()
    with mp_context(PRELOAD).Pool(workers, initializer=_init_worker) as pool:
        pool.map(abs, range(workers))
    return time.perf_counter() - t0


_CPU: dict[str, float] = {}


def pass_throughput(fn, paths: list[Path], workers: int, cfg: PrepConfig) -> float:
    c0 = time.process_time()
    t0 = time.perf_counter()
    if workers == 1:
        _set_cfg(cfg)
        for p in paths:
            fn(str(p))
    else:
        with mp_context(PRELOAD).Pool(workers, initializer=_set_cfg, initargs=(cfg,)) as pool:
            list(pool.imap_unordered(fn, [str(p) for p in paths], chunksize=1))
    _CPU["last"] = len(paths) / (time.process_time() - c0)
    return len(paths) / (time.perf_counter() - t0)


def paired_per_image(paths: list[Path], cfg: PrepConfig, out: Path, repeats: int) -> dict:
    """One core, in this process: for every batch of prep's task size (``pipeline.BATCH`` files), decode its files as
    prep does, then run prep's worker on them (``run_batch``: read, hash, decode, process, encode, write);
    ``repeats`` rounds; the per-batch median of each; the ratio of their sums. Interleaving batch by batch makes
    this the steadiest number on a shared machine (the pool runs above swing by +-5% from run to run)."""
    from lesionkit.prep.pipeline import BATCH, Task, run_batch

    _set_cfg(cfg)
    tasks = [Task(p.stem, str(p), str(out), None, None) for p in paths]
    batches = [list(range(j, min(j + BATCH, len(paths)))) for j in range(0, len(paths), BATCH)]
    run_batch(tasks[:1], cfg, cfg.digest())
    td = np.zeros((repeats, len(batches)))
    tp = np.zeros((repeats, len(batches)))
    for r in range(repeats):
        for i, idx in enumerate(batches):
            t0 = time.perf_counter()
            for k in idx:
                _decode_only(str(paths[k]))
            t1 = time.perf_counter()
            run_batch([tasks[k] for k in idx], cfg, cfg.digest())
            tp[r, i] = time.perf_counter() - t1
            td[r, i] = t1 - t0
    dec, pre = float(np.median(td, 0).sum()), float(np.median(tp, 0).sum())
    return {"decode_ms": round(1000 * dec / len(paths), 2), "prep_ms": round(1000 * pre / len(paths), 2),
            "prep_vs_decode": round(dec / pre, 3), "files": len(paths), "batch": BATCH, "repeats": repeats}


def prep_throughput(manifest: Path, out: Path, cfg: PrepConfig, workers: int) -> float:
    c0 = time.process_time()
    t0 = time.perf_counter()
    run_prep(manifest, out, cfg, workers=workers, overwrite=True)
    n = pd.read_parquet(out / "manifest.parquet").shape[0]
    _CPU["last"] = n / (time.process_time() - c0)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--hair", default="lesionkit")
    ap.add_argument("--resize-mode", default="resize")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--paired-repeats", type=int, default=5, help="rounds of the per-image paired measurement")
    ap.add_argument("--jpeg-dir", type=Path, default=Path(tempfile.gettempdir()) / "lesionkit-bench-jpegs")
    args = ap.parse_args()
    from lesionkit.console import settings

    settings.verbosity = -1
    paths = make_jpegs(args.jpeg_dir, args.n, args.width, args.height)
    cfg = PrepConfig(size=512, hair=args.hair, resize_mode=args.resize_mode)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        df = pd.DataFrame({"sample_id": [p.stem for p in paths], "source": "bench", "image_path": [str(p) for p in paths], "label": 0})
        mpath = write_manifest(Manifest(coerce(df), ["x"]), d / "m.parquet")
        res: dict = {"n": args.n, "source": f"{args.width}x{args.height} JPEG q90", "cpu_count": os.cpu_count(),
                     "hair": args.hair, "resize_mode": args.resize_mode, "size": 512,
                     "pool_start_s_2_workers": round(pool_start(2), 3)}
        with open(paths[0], "rb") as f:
            _, info = decode_for(f.read(), cfg)
        res["decode_reduction"] = info.reduction
        full = pass_throughput(_full_decode, paths[: max(8, args.n // 4)], 1, cfg)
        for w in (1, 2):
            dec, pre, dec_cpu, pre_cpu = 0.0, 0.0, 0.0, 0.0
            for _ in range(args.repeats):
                dec = max(dec, pass_throughput(_decode_only, paths, w, cfg))
                dec_cpu = max(dec_cpu, _CPU["last"])
                pre = max(pre, prep_throughput(mpath, d / f"out{w}", cfg, w))
                pre_cpu = max(pre_cpu, _CPU["last"])
            res[f"workers_{w}"] = {"decode_only_img_s": round(dec, 2), "prep_img_s": round(pre, 2), "prep_vs_decode": round(pre / dec, 3)}
            if w == 1:  # one process: CPU time is what the work costs, whatever else runs on the machine
                res["workers_1"].update(decode_only_img_per_cpu_s=round(dec_cpu, 2), prep_img_per_cpu_s=round(pre_cpu, 2),
                                        prep_vs_decode_cpu=round(pre_cpu / dec_cpu, 3))
        res["paired_per_image_1_core"] = paired_per_image(paths[:48], cfg, d / "paired", args.paired_repeats)
        res["full_cv2_imdecode_img_s_1_worker"] = round(full, 2)
        res["prep_vs_full_decode_1_worker"] = round(res["workers_1"]["prep_img_s"] / full, 3)
        res["decode_2_vs_1_workers"] = round(res["workers_2"]["decode_only_img_s"] / res["workers_1"]["decode_only_img_s"], 3)
        res["prep_2_vs_1_workers"] = round(res["workers_2"]["prep_img_s"] / res["workers_1"]["prep_img_s"], 3)
    print(json.dumps(res, indent=2))
    print("\n| workers | decode-only img/s | prep img/s | prep / decode |\n|---|---|---|---|")
    for w in (1, 2):
        r = res[f"workers_{w}"]
        print(f"| {w} | {r['decode_only_img_s']} | {r['prep_img_s']} | {r['prep_vs_decode']} |")
    pp = res["paired_per_image_1_core"]
    print(f"\npaired, one core ({pp['files']} files in batches of {pp['batch']} x {pp['repeats']}): decode {pp['decode_ms']} ms, "
          f"prep {pp['prep_ms']} ms -> prep / decode {pp['prep_vs_decode']}")
    print(f"\n2 vs 1 worker: prep {res['prep_2_vs_1_workers']}x, decode {res['decode_2_vs_1_workers']}x; "
          f"pool start {res['pool_start_s_2_workers']} s; prep vs naive full decode {res['prep_vs_full_decode_1_worker']}")


if __name__ == "__main__":
    main()
