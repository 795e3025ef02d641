"""Confounder detection and inpainting benchmark (lesionkit.prep.confounders). Numbers are printed, never asserted.

1. Synthetic (lesionkit.synthetic, ground-truth masks): ink mask IoU / F1, ink false alarms on ink-free images,
   ruler detection precision / recall and mask IoU, ms/image of each detector.
2. Restoration vs a CLEAN reference: the same spec re-rendered with the ink and ruler drawn at 1/255 opacity
   (``_draw_ink`` / ``_draw_ruler`` wrapped at run time so the random stream, the masks and therefore every
   other pixel are identical; the residual tint is < 0.5 of an 8-bit level). SSIM (skimage, per-pixel map
   averaged over the region) and PSNR inside the marks (ground truth dilated by 2 px); SSIM in the 8 px ring
   around them (unchanged pixels whose 7x7 windows see the fill) and PSNR over marks + ring, for mishra / telea / ns, with the detected masks (end to end, ``remove_confounders``) and with
   the ground-truth masks (inpainting alone), plus ms/image.
3. Real images (when LESIONKIT_REAL_DATA is set): ISIC 2017 (all 2,750 by default) -> how many images get a
   ruler / scale bar, a sticker, ink; contact sheets of flagged and unflagged images; the 7 PAD-UFES-20 photos
   with the ink mask overlaid. Sheets are written to --sheets (default /tmp); LOOK at them.

Run: LESIONKIT_REAL_DATA=../shared/data .venv/bin/python benchmarks/bench_confounders.py [--n 200] [--size 256]
     [--isic-n 0 (= all)] [--workers 2] [--sheets /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np


def _clean_render(spec):
    """Render ``spec`` with ink and ruler at 1/255 opacity (same random stream and masks as the normal render)."""
    import lesionkit.synthetic as S

    ink, ruler = S._draw_ink, S._draw_ruler
    S._draw_ink = lambda *a, **k: (ink(*a, **k) > 0).astype(np.uint8)
    S._draw_ruler = lambda *a, **k: tuple((c > 0).astype(np.uint8) for c in ruler(*a, **k))
    try:
        return S.render_sample(spec)
    finally:
        S._draw_ink, S._draw_ruler = ink, ruler


def _region_scores(out: np.ndarray, ref: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """(SSIM averaged over ``region`` of the full SSIM map, PSNR over ``region``)."""
    from skimage.metrics import structural_similarity

    _, smap = structural_similarity(ref, out, channel_axis=-1, data_range=255, full=True)
    ssim = float(smap.mean(axis=-1)[region].mean())
    mse = float(np.mean((out[region].astype(np.float64) - ref[region].astype(np.float64)) ** 2))
    psnr = float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
    return ssim, psnr


def _iou_f1(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    inter = float((pred & gt).sum())
    union = float((pred | gt).sum())
    return inter / union if union else 1.0, 2 * inter / (pred.sum() + gt.sum()) if (pred.sum() + gt.sum()) else 1.0


def synthetic(n: int, size: int, seed: int) -> dict:
    from lesionkit.prep.confounders import (
        INPAINT_METHODS,
        detect_ink,
        detect_ruler,
        inpaint,
        remove_confounders,
    )
    from lesionkit.prep.geometry import lesion_margin_px, segment_lesion
    from lesionkit.synthetic import make_specs, render_sample

    cv2.setNumThreads(1)
    ink_iou, ink_f1, ink_fp, ink_fp_nolesion, t_ink, t_ruler = [], [], [], [], [], []
    tp = fp = fn = tn = 0
    ruler_iou = []
    rest: dict[str, dict[str, list[float]]] = {}
    t_inp: dict[str, list[float]] = {m: [] for m in INPAINT_METHODS}
    k5 = np.ones((5, 5), np.uint8)
    for spec in make_specs(n, size, seed):
        img, m = render_sample(spec)
        fov = m["fov"] if spec.fov else None
        t0 = time.perf_counter()
        ink = detect_ink(img, fov_mask=fov, lesion_mask=m["lesion"])
        t_ink.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        det = detect_ruler(img, lesion_mask=m["lesion"])
        t_ruler.append(time.perf_counter() - t0)
        if m["ink"].any():
            i, f = _iou_f1(ink, m["ink"])
            ink_iou.append(i)
            ink_f1.append(f)
        else:
            ink_fp.append(bool(ink.any()))
            if spec.malignant:
                ink_fp_nolesion.append(bool(detect_ink(img, fov_mask=fov).any()))
        if m["ruler"].any():
            tp += det.ruler
            fn += not det.ruler
            if det.ruler:
                ruler_iou.append(_iou_f1(det.ruler_mask, m["ruler"])[0])
        else:
            fp += det.ruler
            tn += not det.ruler
        marks = m["ink"] | m["ruler"]
        if not marks.any():
            continue
        ref, _ = _clean_render(spec)
        inside = cv2.dilate(marks.astype(np.uint8), k5) > 0
        ring = (cv2.dilate(inside.astype(np.uint8), np.ones((17, 17), np.uint8)) > 0) & ~inside
        if fov is not None:
            inside &= fov
            ring &= fov
        kinds = {k for k in ("ink", "ruler") if m[k].any()}
        near = inside | ring

        def score(tag: str, out: np.ndarray) -> None:
            s_in, p_in = _region_scores(out, ref, inside)
            s_ring, _ = _region_scores(out, ref, ring)
            _, p_near = _region_scores(out, ref, near)
            for key, v in (("ssim_in", s_in), ("psnr_in", p_in), ("ssim_ring", s_ring), ("psnr_near", p_near)):
                rest.setdefault(tag, {}).setdefault(key, []).append(v)

        score("unrestored", img)
        gt_mask = cv2.dilate(marks.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        for method in INPAINT_METHODS:
            t0 = time.perf_counter()
            out_det, _ = remove_confounders(img, kinds, method, fov_mask=fov, lesion_mask=m["lesion"])
            t_inp[method].append(time.perf_counter() - t0)
            out_gt = inpaint(img, gt_mask, method, lesion_mask=m["lesion"])
            score(f"{method} (detected masks)", out_det)
            score(f"{method} (ground-truth masks)", out_gt)
        # as `lesionkit prep` runs it: the lesion mask from segment_lesion (grown by a margin of skin), with and
        # without telling the fill about that margin
        seg = segment_lesion(img, fov)
        for tag, margin in (("no margin", 0), ("margin", lesion_margin_px(img.shape))):
            out_seg, _ = remove_confounders(img, kinds, "mishra", fov_mask=fov, lesion_mask=seg.mask if seg.found else None,
                                            lesion_margin=margin)
            score(f"mishra (detected masks, segmented lesion, {tag})", out_seg)
    ms = lambda xs: round(1000 * float(np.mean(xs)), 1)
    return {
        "n": n, "size": size, "seed": seed,
        "ink": {"images_with_ink": len(ink_iou), "iou_mean": round(float(np.mean(ink_iou)), 3),
                "iou_median": round(float(np.median(ink_iou)), 3), "iou_p10": round(float(np.percentile(ink_iou, 10)), 3),
                "f1_mean": round(float(np.mean(ink_f1)), 3),
                "false_alarm_images": f"{sum(ink_fp)}/{len(ink_fp)}",
                "false_alarm_malignant_without_lesion_mask": f"{sum(ink_fp_nolesion)}/{len(ink_fp_nolesion)}",
                "ms_per_image": ms(t_ink)},
        "ruler": {"positives": tp + fn, "negatives": fp + tn, "recall": round(tp / max(1, tp + fn), 3),
                  "precision": round(tp / max(1, tp + fp), 3), "false_alarm_rate": round(fp / max(1, fp + tn), 3),
                  "mask_iou_mean": round(float(np.mean(ruler_iou)), 3) if ruler_iou else None,
                  "mask_iou_median": round(float(np.median(ruler_iou)), 3) if ruler_iou else None,
                  "ms_per_image": ms(t_ruler)},
        "restoration": {k: {kk: round(float(np.mean([x for x in vv if np.isfinite(x)])), 3) for kk, vv in v.items()}
                        | {"images": len(v["ssim_in"])} for k, v in rest.items()},
        "remove_confounders_ms_per_image": {k: ms(v) for k, v in t_inp.items()},
    }


def _isic_one(path: str) -> dict:
    cv2.setNumThreads(1)
    from lesionkit.prep.confounders import detect_ink, detect_ruler

    img = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    t0 = time.perf_counter()
    det = detect_ruler(img)
    t1 = time.perf_counter()
    ink = detect_ink(img)
    t2 = time.perf_counter()
    return {"path": path, "ruler": det.ruler, "scale_bar": "scale bar" in det.reason,
            "strip": "ruler ticks" in det.reason, "sticker": det.sticker, "ink_frac": float(ink.mean()),
            "ruler_frac": float(det.ruler_mask.mean()), "reason": det.reason, "ms_ruler": 1000 * (t1 - t0),
            "ms_ink": 1000 * (t2 - t1)}


def _overlay(img: np.ndarray, ruler: np.ndarray, sticker: np.ndarray, ink: np.ndarray) -> np.ndarray:
    ov = img.astype(np.float32)
    for m_, col in ((ruler, (255, 0, 0)), (sticker, (255, 255, 0)), (ink, (0, 255, 0))):
        ov[m_] = 0.35 * ov[m_] + 0.65 * np.array(col, np.float32)
    return ov.astype(np.uint8)


def _sheet(rows: list[dict], out: Path, cols: int = 4, tile: int = 256) -> None:
    from lesionkit.prep.confounders import detect_ink, detect_ruler

    tiles = []
    for r in rows:
        img = cv2.cvtColor(cv2.imread(r["path"]), cv2.COLOR_BGR2RGB)
        det = detect_ruler(img)
        ink = detect_ink(img)
        pair = np.concatenate([img, _overlay(img, det.ruler_mask, det.sticker_mask, ink)], 1)
        pair = cv2.resize(pair, (2 * tile, tile), interpolation=cv2.INTER_AREA)
        cv2.putText(pair, Path(r["path"]).stem[-7:] + " " + det.reason[:75], (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33,
                    (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(pair)
    if not tiles:
        return
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.concatenate([np.concatenate(tiles[i:i + cols], 1) for i in range(0, len(tiles), cols)], 0)
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def real(root: Path, isic_n: int, workers: int, sheets: Path) -> dict:
    from lesionkit.prep.confounders import detect_ink, detect_ruler

    files = sorted(str(p) for p in root.glob("isic2017/ISIC-2017_*_Data/*.jpg"))
    if isic_n:
        files = files[:: max(1, len(files) // isic_n)][:isic_n]
    with ProcessPoolExecutor(max_workers=workers) as ex:
        res = list(ex.map(_isic_one, files, chunksize=16))
    rng = np.random.default_rng(0)
    pick = lambda rs, k: [rs[i] for i in sorted(rng.choice(len(rs), min(k, len(rs)), replace=False))]
    cats = {
        "ruler_strip": [r for r in res if r["strip"]],
        "scale_bar": [r for r in res if r["scale_bar"] and not r["strip"]],
        "sticker": [r for r in res if r["sticker"]],
        "ink": [r for r in res if r["ink_frac"] > 0.001],
        "unflagged": [r for r in res if not r["ruler"] and not r["sticker"] and r["ink_frac"] <= 0.001],
    }
    written = []
    for name, rs in cats.items():
        out = sheets / f"confounders_isic_{name}.png"
        _sheet(pick(rs, 24), out)
        written.append(str(out))
    # PAD-UFES-20: ink on smartphone photos
    pad = []
    tiles = []
    for p in sorted((root / "pad_ufes20" / "images").glob("*.png")):
        img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        ink = detect_ink(img)
        det = detect_ruler(img)
        pad.append({"image": p.name, "size": list(img.shape[:2]), "ink_frac": round(float(ink.mean()), 5),
                    "ruler": det.ruler, "sticker": det.sticker})
        thick = cv2.dilate(ink.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0  # visible at thumbnail size
        pair = np.concatenate([img, _overlay(img, det.ruler_mask, det.sticker_mask, thick)], 1)
        tiles.append(cv2.resize(pair, (768, 384), interpolation=cv2.INTER_AREA))
    if tiles:
        while len(tiles) % 2:
            tiles.append(np.zeros_like(tiles[0]))
        out = sheets / "confounders_pad_ufes20_ink.png"
        cv2.imwrite(str(out), cv2.cvtColor(np.concatenate([np.concatenate(tiles[i:i + 2], 1)
                                                           for i in range(0, len(tiles), 2)], 0), cv2.COLOR_RGB2BGR))
        written.append(str(out))
    n = len(res)
    return {
        "isic2017": {"images": n, **{k: len(v) for k, v in cats.items()},
                     "ruler_any": sum(r["ruler"] for r in res),
                     "ms_ruler_per_image": round(float(np.mean([r["ms_ruler"] for r in res])), 1),
                     "ms_ink_per_image": round(float(np.mean([r["ms_ink"] for r in res])), 1)},
        "pad_ufes20": pad,
        "sheets": written,
    }


def markdown(res: dict) -> str:
    s = res["synthetic"]
    lines = [f"Synthetic: {s['n']} images, {s['size']} px, seed {s['seed']}", "",
             "| detector | result |", "|---|---|",
             f"| ink mask ({s['ink']['images_with_ink']} images with ink) | IoU mean {s['ink']['iou_mean']} "
             f"(median {s['ink']['iou_median']}, p10 {s['ink']['iou_p10']}), F1 {s['ink']['f1_mean']} |",
             f"| ink false alarms (images without ink; malignant without lesion mask) | {s['ink']['false_alarm_images']}; "
             f"{s['ink']['false_alarm_malignant_without_lesion_mask']} |",
             f"| ruler ({s['ruler']['positives']} with / {s['ruler']['negatives']} without) | recall {s['ruler']['recall']}, "
             f"precision {s['ruler']['precision']}, mask IoU {s['ruler']['mask_iou_mean']} (median {s['ruler']['mask_iou_median']}) |",
             f"| ms/image | ink {s['ink']['ms_per_image']}, ruler+sticker {s['ruler']['ms_per_image']}, "
             + ", ".join(f"remove_confounders/{k} {v}" for k, v in s["remove_confounders_ms_per_image"].items()) + " |",
             "", "| restoration vs clean render | SSIM inside | PSNR inside (dB) | SSIM ring 8 px | PSNR inside+ring (dB) |",
             "|---|---|---|---|---|"]
    for k, v in s["restoration"].items():
        lines.append(f"| {k} | {v['ssim_in']} | {v['psnr_in']} | {v['ssim_ring']} | {v['psnr_near']} |")
    if "real" in res:
        r = res["real"]["isic2017"]
        lines += ["", f"ISIC 2017 ({r['images']} images): ruler strip {r['ruler_strip']}, scale bar only {r['scale_bar']}, "
                      f"sticker {r['sticker']}, ink > 0.1% {r['ink']}, nothing {r['unflagged']}; "
                      f"ms/image ruler {r['ms_ruler_per_image']}, ink {r['ms_ink_per_image']}",
                  "PAD-UFES-20 ink fraction: " + ", ".join(f"{p['image']} {p['ink_frac']}" for p in res["real"]["pad_ufes20"])]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--isic-n", type=int, default=0, help="ISIC 2017 images to scan (0 = all 2,750)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sheets", type=Path, default=Path("/tmp"))
    ap.add_argument("--skip-real", action="store_true")
    args = ap.parse_args()
    res = {"cpu_count": os.cpu_count(), "python": sys.version.split()[0], "cv2": cv2.__version__,
           "synthetic": synthetic(args.n, args.size, args.seed)}
    root = os.environ.get("LESIONKIT_REAL_DATA")
    if root and Path(root).is_dir() and not args.skip_real:
        args.sheets.mkdir(parents=True, exist_ok=True)
        res["real"] = real(Path(root), args.isic_n, args.workers, args.sheets)
    print(json.dumps(res, indent=2))
    print()
    print(markdown(res))


if __name__ == "__main__":
    main()
