"""Classical lesion segmentation and field-of-view detection on real data (numbers for benchmarks/RESULTS.md).

1. HAM10000: ``segment_lesion`` on all 10,015 images (200x150 JPEGs, decoded with ``decode_image``) against the
   official masks. The official masks are 600x450; they are resized to the image size (200x150) with
   ``INTER_AREA`` and thresholded at 50 % (a majority vote over each 3x3 block; nearest neighbour would pick one
   pixel of nine). Dice / IoU mean, median, quartiles, fraction with Dice < 0.5, per-diagnosis mean, rejection
   reasons, and the same for the tight mask (``grow=0``). The pipeline's choices (channel, grow, clipping) were
   tuned on a random 2000-image subset (``random.Random(0)`` shuffle of the sorted ids); the held-out 8015 are
   reported separately.
2. Optional ``--channels``: the same pipeline with each candidate channel on the tuning subset (how "blue" was picked).
3. ``detect_fov`` on all HAM10000 and all 2,750 ISIC 2017 images: how many are flagged, by kind.
   ISIC 2017 has no lesion masks for Part 3, so it only gets contact sheets.
4. Contact sheets (PNG, to ``--sheets``): ISIC 2017 with the FOV outline (cyan), FOV crop box (magenta) and the
   lesion mask (green); HAM10000 best / worst / random cases with the official mask (green) and ours (red).

Run: LESIONKIT_REAL_DATA=../shared/data .venv/bin/python benchmarks/bench_lesion_seg.py [--workers 2] [--channels]
     [--sheets /tmp/lesionkit_seg_sheets] [--limit N]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from lesionkit.prep.decode import decode_image
from lesionkit.prep.geometry import (
    CHANNELS,
    center_crop_square,
    detect_fov,
    fov_crop_box,
    lesion_crop_box,
    segment_lesion,
)

REAL = Path(os.environ.get("LESIONKIT_REAL_DATA", "../shared/data"))


def ref_mask(image_id: str, shape: tuple[int, int]) -> np.ndarray:
    m = cv2.imread(str(REAL / "ham10000" / "masks_600x450" / f"{image_id}_segmentation.png"), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise FileNotFoundError(f"official mask missing for {image_id}")
    return cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_AREA) >= 128


def scores(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    inter = int((a & b).sum())
    sa, sb = int(a.sum()), int(b.sum())
    union = sa + sb - inter
    return (1.0 if sa + sb == 0 else 2 * inter / (sa + sb)), (1.0 if union == 0 else inter / union)


def ham_one(args: tuple[str, tuple[str, ...]]) -> dict:
    image_id, channels = args
    cv2.setNumThreads(1)
    img, _ = decode_image(REAL / "ham10000" / "images" / f"{image_id}.jpg")
    ref = ref_mask(image_id, img.shape[:2])
    t0 = time.perf_counter()
    fov = detect_fov(img)
    seg = segment_lesion(img, fov.mask)
    dt = time.perf_counter() - t0
    d, j = scores(seg.mask, ref)
    row = {"id": image_id, "dice": d, "iou": j, "found": seg.found, "reason": seg.reason.split(" (")[0],
           "fov": fov.found, "ms": dt * 1000, "ref_frac": float(ref.mean())}
    row.update(crop_scores(seg, ref, img.shape))
    tight = segment_lesion(img, fov.mask, grow=0)
    row["dice_tight"], row["iou_tight"] = scores(tight.mask, ref)
    for ch in channels:
        row[f"dice_{ch}"] = scores(segment_lesion(img, fov.mask, channel=ch).mask, ref)[0]
    return row


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix
    return ix / ua if ua else 0.0


def crop_scores(seg, ref: np.ndarray, shape: tuple[int, ...], frac: float = 0.5) -> dict:
    """``--resize-mode lesion-crop`` end to end against the official mask: the crop prep makes from our mask (or
    its centre-crop fallback) vs the crop the official mask would give. ``crop_coverage`` = fraction of the
    official lesion inside the crop (1 = nothing cut off); ``crop_lesion_frac`` = official lesion area / crop
    area (target ``frac``, capped when the lesion is large); ``crop_box_iou`` = IoU with the oracle crop."""
    box, _ = lesion_crop_box(seg.mask, frac, shape) if seg.found else (None, "")
    fallback = box is None
    if fallback:
        _, box = center_crop_square(np.empty(shape[:2], np.uint8))
    oracle, _ = lesion_crop_box(ref, frac, shape)
    x0, y0, x1, y1 = box
    inside = int(ref[y0:y1, x0:x1].sum())
    total = int(ref.sum())
    return {"crop_fallback": fallback, "crop_coverage": inside / total if total else 1.0,
            "crop_lesion_frac": inside / max(1, (x1 - x0) * (y1 - y0)),
            "crop_box_iou": box_iou(box, oracle) if oracle is not None else float("nan"),
            "oracle_lesion_frac": (float(ref[oracle[1]:oracle[3], oracle[0]:oracle[2]].mean()) if oracle is not None else float("nan"))}


def fov_one(path: str) -> dict:
    cv2.setNumThreads(1)
    img, _ = decode_image(path)
    f = detect_fov(img)
    kind = "none" if not f.found else ("circle" if f.circle else "ellipse" if f.ellipse else "frame")
    return {"path": path, "found": f.found, "kind": kind, "reason": f.reason.split(" (")[0].split(":")[0]}


def summary(x: np.ndarray) -> dict:
    q = np.percentile(x, [25, 50, 75])
    return {"mean": round(float(x.mean()), 4), "median": round(float(q[1]), 4), "q25": round(float(q[0]), 4),
            "q75": round(float(q[2]), 4), "frac_below_0.5": round(float((x < 0.5).mean()), 4)}


def contour(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], scale: float, thick: int = 1) -> None:
    cs, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cs = [np.round((c + 0.5) * scale - 0.5).astype(np.int32) for c in cs]
    cv2.drawContours(canvas, cs, -1, colour, thick)


def save_sheet(tiles: list[np.ndarray], path: Path, cols: int) -> None:
    if not tiles:
        return
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)]
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


def ham_tile(image_id: str, label: str) -> np.ndarray:
    img, _ = decode_image(REAL / "ham10000" / "images" / f"{image_id}.jpg")
    ref = ref_mask(image_id, img.shape[:2])
    seg = segment_lesion(img)
    sc = 2.0
    can = cv2.resize(img, (int(img.shape[1] * sc), int(img.shape[0] * sc)), interpolation=cv2.INTER_CUBIC)
    contour(can, ref, (0, 255, 0), sc, 2)
    contour(can, seg.mask, (255, 0, 0), sc, 2)
    cv2.putText(can, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
    return can


def isic_tile(path: str) -> np.ndarray:
    img, _ = decode_image(path)
    f = detect_fov(img)
    seg = segment_lesion(img, f.mask)
    sc = 1.0
    can = img.copy()
    if f.found:
        contour(can, f.mask, (0, 255, 255), sc, 1)
        x0, y0, x1, y1 = fov_crop_box(f, img.shape)
        cv2.rectangle(can, (x0, y0), (x1 - 1, y1 - 1), (255, 0, 255), 2)
    contour(can, seg.mask, (0, 255, 0), sc, 2)
    cv2.putText(can, f"{Path(path).stem[-7:]} {'FOV ' + ('circle' if f.circle else 'ellipse' if f.ellipse else 'frame') if f.found else ''}",
                (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
    return can


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--limit", type=int, default=0, help="only the first N HAM10000 images (quick runs)")
    ap.add_argument("--channels", action="store_true", help="also compare every channel on the tuning subset")
    ap.add_argument("--sheets", type=Path, default=Path("/tmp/lesionkit_seg_sheets"))
    args = ap.parse_args()
    if not (REAL / "ham10000" / "masks_600x450").is_dir():
        sys.exit(f"HAM10000 masks not found under {REAL}: set LESIONKIT_REAL_DATA")
    args.sheets.mkdir(parents=True, exist_ok=True)
    import csv

    with open(REAL / "ham10000" / "HAM10000_metadata.csv", newline="") as fh:
        dx = {r["image_id"]: r["dx"] for r in csv.DictReader(fh)}
    ids = sorted(dx)
    shuffled = list(ids)
    random.Random(0).shuffle(shuffled)
    tuning = set(shuffled[:2000])
    if args.limit:
        ids = ids[:args.limit]
    res: dict = {"n_ham": len(ids), "workers": args.workers,
                 "reference_masks": "official 600x450 masks resized to 200x150 with INTER_AREA, >= 50 %"}
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as ex:
        rows = list(ex.map(ham_one, [(i, ()) for i in ids], chunksize=64))
        res["ham_wall_s"] = round(time.perf_counter() - t0, 1)
        res["ms_per_image_fov_plus_seg"] = round(statistics.median(r["ms"] for r in rows), 2)
        d = np.array([r["dice"] for r in rows])
        j = np.array([r["iou"] for r in rows])
        res["dice"] = summary(d)
        res["iou"] = summary(j)
        res["dice_tight_grow0"] = summary(np.array([r["dice_tight"] for r in rows]))
        res["iou_tight_grow0"] = summary(np.array([r["iou_tight"] for r in rows]))
        tun = np.array([r["id"] in tuning for r in rows])
        res["dice_tuning_subset"] = summary(d[tun]) if tun.any() else None
        res["dice_held_out"] = summary(d[~tun]) if (~tun).any() else None
        res["found_frac"] = round(float(np.mean([r["found"] for r in rows])), 4)
        cov = np.array([r["crop_coverage"] for r in rows])
        biou = np.array([r["crop_box_iou"] for r in rows])
        res["lesion_crop"] = {
            "fallback_frac": round(float(np.mean([r["crop_fallback"] for r in rows])), 4),
            "coverage": summary(cov), "frac_coverage_ge_0.95": round(float((cov >= 0.95).mean()), 4),
            "lesion_frac_in_crop": summary(np.array([r["crop_lesion_frac"] for r in rows])),
            "oracle_lesion_frac_in_crop": summary(np.array([r["oracle_lesion_frac"] for r in rows])),
            "box_iou_vs_oracle": summary(biou[np.isfinite(biou)])}
        res["reasons"] = dict(collections.Counter(r["reason"] for r in rows).most_common())
        per = collections.defaultdict(list)
        for r in rows:
            per[dx[r["id"]]].append(r["dice"])
        res["dice_per_dx"] = {k: {"n": len(v), "mean": round(float(np.mean(v)), 4), "median": round(float(np.median(v)), 4)}
                              for k, v in sorted(per.items())}
        fovf = np.array([r["fov"] for r in rows])
        res["ham_fov_flagged"] = int(fovf.sum())
        res["dice_fov_flagged_images"] = round(float(d[fovf].mean()), 4) if fovf.any() else None
        if args.channels:
            sub = [i for i in ids if i in tuning]
            crow = list(ex.map(ham_one, [(i, CHANNELS) for i in sub], chunksize=32))
            res["channel_comparison_tuning_subset"] = {
                ch: summary(np.array([r[f"dice_{ch}"] for r in crow])) for ch in CHANNELS}
        isic = sorted(str(p) for p in (REAL / "isic2017").glob("ISIC-2017_*_Data/*.jpg"))
        frows = list(ex.map(fov_one, isic, chunksize=64))
        ham_kinds = collections.Counter("none" if not r["fov"] else "found" for r in rows)
    res["ham_fov"] = dict(ham_kinds)
    res["isic2017_n"] = len(frows)
    res["isic2017_fov_flagged"] = int(sum(r["found"] for r in frows))
    res["isic2017_fov_kinds"] = dict(collections.Counter(r["kind"] for r in frows))
    res["isic2017_fov_reasons"] = dict(collections.Counter(r["reason"] for r in frows).most_common())

    # contact sheets
    order = np.argsort(d)
    worst = [ham_tile(rows[i]["id"], f"{d[i]:.2f} {dx[rows[i]['id']]}") for i in order[:40]]
    best = [ham_tile(rows[i]["id"], f"{d[i]:.2f} {dx[rows[i]['id']]}") for i in order[::-1][:20]]
    rng = np.random.default_rng(0)
    rand = [ham_tile(rows[i]["id"], f"{d[i]:.2f} {dx[rows[i]['id']]}") for i in rng.choice(len(rows), 40, replace=False)]
    save_sheet(worst, args.sheets / "ham_worst.png", 8)
    save_sheet(best, args.sheets / "ham_best.png", 8)
    save_sheet(rand, args.sheets / "ham_random.png", 8)
    flagged = [r["path"] for r in frows if r["found"]]
    save_sheet([isic_tile(p) for p in rng.choice(flagged, min(48, len(flagged)), replace=False)] if flagged else [],
               args.sheets / "isic2017_fov_flagged.png", 8)
    save_sheet([isic_tile(p) for p in rng.choice(isic, 48, replace=False)], args.sheets / "isic2017_random.png", 8)
    res["sheets"] = str(args.sheets)

    print(json.dumps(res, indent=2))
    print()
    print(f"| HAM10000 (n={len(rows)}) | mean | median | q25 | q75 | Dice<0.5 |")
    print("|---|---:|---:|---:|---:|---:|")
    for k in ("dice", "iou", "dice_tight_grow0", "dice_tuning_subset", "dice_held_out"):
        v = res[k]
        if v:
            print(f"| {k} | {v['mean']:.3f} | {v['median']:.3f} | {v['q25']:.3f} | {v['q75']:.3f} | {v['frac_below_0.5']:.3f} |")
    print()
    print("| dx | n | mean Dice |")
    print("|---|---:|---:|")
    for k, v in res["dice_per_dx"].items():
        print(f"| {k} | {v['n']} | {v['mean']:.3f} |")
    print(f"\ndetect_fov flags {res['ham_fov_flagged']}/{len(rows)} HAM10000 and {res['isic2017_fov_flagged']}/{len(frows)} "
          f"ISIC 2017 images; {res['ms_per_image_fov_plus_seg']} ms per 200x150 image (FOV + segmentation, one core)")


if __name__ == "__main__":
    main()
