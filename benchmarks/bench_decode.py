"""Decode speed: full vs DCT-scaled JPEG decoding, OpenCV vs Pillow, and lesionkit's ``decode_image``.

A realistic 6000x4000 camera-size JPEG (smooth skin-like colour field + a lesion-like dark blob + sensor noise,
quality 90, 4:2:0) is synthesised and written to a temporary folder, read back once, and then decoded from the
bytes in memory (as the pipeline does: it reads a file once to hash it). Target short side 512: the scaled
decode uses r = reduction_for(6000, 4000, 512) = 4 (1500x1000). One OpenCV thread (decoding is single-threaded
anyway). Numbers go to benchmarks/RESULTS.md; nothing here is asserted in tests.

Run: .venv/bin/python benchmarks/bench_decode.py [--runs 15] [--target 512]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from lesionkit.prep.decode import decode_image, reduction_for

FLAG = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def synth_jpeg(path: Path, w: int = 6000, h: int = 4000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)

    def field(cells: int) -> np.ndarray:
        g = rng.standard_normal((cells, max(2, int(cells * w / h)))).astype(np.float32)
        return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)

    skin = np.array([205, 160, 140], np.float32)  # light skin, RGB
    shade = 14 * field(5) + 5 * field(40) + 2.5 * field(400)  # illumination, blotches, pores
    img = skin + shade[..., None] * np.array([1.0, 0.9, 0.85], np.float32)
    yy, xx = np.ogrid[0:h, 0:w]
    r = np.hypot((xx - w * 0.52) / (0.16 * w), (yy - h * 0.47) / (0.2 * h)) * (1 + 0.1 * field(8))
    les = np.clip((1.05 - r) / 0.08, 0, 1)[..., None]
    img = img * (1 - les) + (np.array([110, 70, 55], np.float32) + 10 * field(60)[..., None]) * les
    img += rng.normal(0, 3.0, (h, w, 3)).astype(np.float32)  # sensor noise
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)


def median_ms(fn, runs: int) -> dict:
    fn()  # warm-up
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(ts), 1), "min_ms": round(min(ts), 1), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--target", type=int, default=512, help="min short side of the scaled decode")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "camera_6000x4000_q90.jpg"
        synth_jpeg(path)
        data = path.read_bytes()
    buf = np.frombuffer(data, np.uint8)
    w, h = 6000, 4000
    r = reduction_for(w, h, args.target)

    def pil(scale: int) -> np.ndarray:
        im = Image.open(io.BytesIO(data))
        if scale > 1:
            im.draft("RGB", (-(-w // scale), -(-h // scale)))
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))

    res: dict = {"image": "6000x4000 synthetic skin JPEG q90", "bytes": len(data), "target_min_side": args.target,
                 "reduction": r, "scaled_size": f"{-(-w // r)}x{-(-h // r)}", "cv2": cv2.__version__,
                 "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    t = {
        "cv2_imdecode_full": median_ms(lambda: cv2.imdecode(buf, cv2.IMREAD_COLOR), args.runs),
        f"cv2_imdecode_reduced_{r}": median_ms(lambda: cv2.imdecode(buf, FLAG[r]), args.runs),
        "pil_full": median_ms(lambda: pil(1), args.runs),
        f"pil_draft_{r}": median_ms(lambda: pil(r), args.runs),
        "decode_image_full": median_ms(lambda: decode_image(data), args.runs),
        f"decode_image_min_side_{args.target}": median_ms(lambda: decode_image(data, min_side=args.target), args.runs),
    }
    for rr in (2, 8):  # the other scales, for the record
        t[f"cv2_imdecode_reduced_{rr}"] = median_ms(lambda rr=rr: cv2.imdecode(buf, FLAG[rr]), args.runs)
        t[f"pil_draft_{rr}"] = median_ms(lambda rr=rr: pil(rr), args.runs)
    res["timings"] = t
    full = t["cv2_imdecode_full"]["median_ms"]
    res["speedup_cv2_scaled_vs_full"] = round(full / t[f"cv2_imdecode_reduced_{r}"]["median_ms"], 2)
    res["speedup_decode_image_scaled_vs_cv2_full"] = round(full / t[f"decode_image_min_side_{args.target}"]["median_ms"], 2)
    res["speedup_pil_draft_vs_pil_full"] = round(t["pil_full"]["median_ms"] / t[f"pil_draft_{r}"]["median_ms"], 2)
    # quality: the scaled decode vs an INTER_AREA resize of the full decode, and OpenCV vs Pillow at that scale
    small, _ = decode_image(data, min_side=args.target)
    fullimg, _ = decode_image(data)
    area = cv2.resize(fullimg, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    res["scaled_vs_area_resize_mean_abs"] = round(float(np.abs(small.astype(np.int16) - area).mean()), 3)
    res["cv2_vs_pil_scaled_mean_abs"] = round(float(np.abs(small.astype(np.int16) - pil(r)).mean()), 3)
    res["target_met_1.4x"] = res["speedup_decode_image_scaled_vs_cv2_full"] >= 1.4
    print(json.dumps(res, indent=2))
    print()
    print("| decoder | median ms |")
    print("|---|---:|")
    for k, v in t.items():
        print(f"| {k} | {v['median_ms']} |")
    print(f"\nscaled (r={r}) decode_image vs full cv2.imdecode: {res['speedup_decode_image_scaled_vs_cv2_full']}x faster; "
          f"PIL draft vs PIL full: {res['speedup_pil_draft_vs_pil_full']}x")


if __name__ == "__main__":
    main()
