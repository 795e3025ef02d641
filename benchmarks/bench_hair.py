"""Hair removal benchmark: synthetic dark + light strands drawn over real hair-free dermoscopy images.

Images: HAM10000 (200x150) that neither the ``bevan`` preset nor the ``lesionkit`` preset finds hair in
(``hair_frac < 0.5 %`` for both), a random ``--n`` of them. Onto each we draw curved, anti-aliased, slightly
tapered strands with known coverage (``alpha``): dark (near-black / brown) and light (white / grey / blond),
0.8-2.5 px wide at 200x150. Ground-truth hair mask = ``alpha >= 0.2``; the soft edge (``0.02 < alpha < 0.2``) is ignored by the mask
scores (neither required nor a false positive). Then per method:

- mask IoU / F1 against the ground truth (dark detections vs dark hair, light vs light, union vs union;
  mean over images),
- PSNR and SSIM (``skimage.metrics``, RGB, data range 255) of the restored image against the hair-free
  original, over the whole image and inside the official HAM10000 lesion mask (600x450, resized with
  INTER_NEAREST): hair removal must not damage the lesion,
- ms / image of ``remove_hair`` (detection + inpainting; single process, wall clock, median over images).

``--size 512`` repeats it with the source images upsampled (bicubic) to a 512 px short side and the strands drawn
at 512 (widths scaled by the same factor), the size prep usually targets.

Also writes contact sheets to ``--sheet-dir`` (default /tmp): synthetic (original | with hair | bevan | lesionkit |
masks: green = found, red = missed, blue = false positive) and real hairy HAM10000 images (the images with the
highest detected hair fraction; original | bevan | lesionkit | masks: red = dark, cyan = light).

Run: LESIONKIT_REAL_DATA=../shared/data .venv/bin/python benchmarks/bench_hair.py [--n 300] [--size 150 512]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from lesionkit.prep.hair import HairParams, get_preset, remove_hair

METHODS = ("bevan", "lesionkit")
GT_ALPHA = 0.2  # a pixel is hair when a strand covers at least 20 % of it
FRINGE_ALPHA = 0.02  # pixels covered 2-20 % are the strand's soft edge: neither required nor counted as false positive


# ----------------------------------------------------------------------------------------------- data


def ham_root() -> Path:
    root = Path(os.environ.get("LESIONKIT_REAL_DATA", "../shared/data")) / "ham10000"
    if not (root / "images").is_dir():
        sys.exit(f"HAM10000 not found at {root}: set LESIONKIT_REAL_DATA")
    return root


def load_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def upsample(img: np.ndarray, short: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = short / min(h, w)
    if s == 1.0:
        return img
    return cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)


def lesion_mask(root: Path, image_id: str, shape: tuple[int, int]) -> np.ndarray:
    m = cv2.imread(str(root / "masks_600x450" / f"{image_id}_segmentation.png"), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 127


def hair_free_ids(root: Path, n: int, seed: int, pool: int) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """``n`` HAM10000 ids without visible hair from a random pool of ``pool``, and for every pooled image the
    lesionkit hair fraction (whole image, outside the lesion).

    Hair-free = outside the official lesion mask (dilated 3 px), ``lesionkit`` finds < 0.5 % hair and ``bevan``
    < 2 % (about its median there: at 200x150 it marks skin texture; fewer than 0.1 % of HAM10000 images have
    ``bevan`` hair_frac < 0.5 % over the whole image). Inside the lesion nothing is required, so images whose
    pigment network or white structures a detector mistakes for hair stay in the set and show up as lesion
    damage (the selection must not hide false positives on lesions).
    """
    from lesionkit.prep.hair import detect_hair

    ids = sorted(p.stem for p in (root / "images").glob("*.jpg"))
    rng = np.random.default_rng(seed)
    cand = [ids[i] for i in rng.permutation(len(ids))[:pool]]
    keep, stats = [], {}
    pb, pl = get_preset("bevan"), get_preset("lesionkit")
    for i in cand:
        img = load_rgb(root / "images" / f"{i}.jpg")
        skin = ~cv2.dilate(lesion_mask(root, i, img.shape[:2]).view(np.uint8), np.ones((7, 7), np.uint8)).view(bool)
        db, dl = detect_hair(img, pb), detect_hair(img, pl)
        stats[i] = (dl.frac, float((dl.mask & skin).mean()))
        if (db.mask & skin).mean() < 0.02 and stats[i][1] < 0.005:
            keep.append(i)
    return keep[:n], stats


# ----------------------------------------------------------------------------------------------- hair overlay


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int = 6) -> np.ndarray:
    g = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(g, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _strand_alpha(rng: np.random.Generator, shape: tuple[int, int], width: float, ss: int = 4) -> np.ndarray:
    """Coverage (0..1, float32) of one curved strand: a cubic Bezier of 0.3-1.2 x the short side through a random
    point, ``width`` px wide, tapering over its last 15-35 % (a hair tip), drawn at ``ss`` x and area-averaged."""
    h, w = shape
    short = min(h, w)
    anchor = np.array([rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h])
    ang = rng.uniform(0, np.pi)
    d = np.array([math.cos(ang), math.sin(ang)])
    nrm = np.array([-d[1], d[0]])
    length = short * rng.uniform(0.3, 1.2)
    f = rng.uniform(0.2, 0.8)
    p0, p3 = anchor - d * length * f, anchor + d * length * (1 - f)
    p1 = p0 + (p3 - p0) / 3 + nrm * length * rng.normal(0, 0.18)
    p2 = p0 + 2 * (p3 - p0) / 3 + nrm * length * rng.normal(0, 0.18)
    t = np.linspace(0, 1, 48)[:, None]
    pts = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
    x0, y0 = np.floor(pts.min(0) - 2 * width - 2).astype(int)
    x1, y1 = np.ceil(pts.max(0) + 2 * width + 2).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    alpha = np.zeros((h, w), np.float32)
    if x1 <= x0 or y1 <= y0:
        return alpha
    canvas = np.zeros(((y1 - y0) * ss, (x1 - x0) * ss), np.uint8)
    tip = rng.uniform(0.15, 0.35)
    tip_at_start = rng.random() < 0.5
    for j in range(len(pts) - 1):
        u = j / (len(pts) - 1)
        v = u if tip_at_start else 1 - u
        wj = width * (min(1.0, v / tip) * 0.7 + 0.3 if v < tip else 1.0)
        a = ((pts[j] - [x0, y0]) * ss * 16).astype(np.int32)
        b = ((pts[j + 1] - [x0, y0]) * ss * 16).astype(np.int32)
        cv2.line(canvas, tuple(int(c) for c in a), tuple(int(c) for c in b), 255, max(1, round(wj * ss)),
                 lineType=cv2.LINE_AA, shift=4)
    small = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    alpha[y0:y1, x0:x1] = small
    return alpha


def overlay_hair(img: np.ndarray, rng: np.random.Generator, px_scale: float = 1.0,
                 n_dark: tuple[int, int] = (3, 12), n_light: tuple[int, int] = (2, 8)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw dark and light strands over ``img`` (RGB uint8). ``px_scale`` multiplies the strand widths (0.8-2.5 px at
    200x150). Returns ``(image with hair, dark coverage, light coverage)`` (coverages float32 0..1)."""
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    shade = 1.0 + 0.08 * _smooth_field(rng, (h, w))[..., None]  # slow colour variation along strands
    cover = {}
    for kind in ("dark", "light"):
        lo, hi = n_dark if kind == "dark" else n_light
        total = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(lo, hi + 1))):
            width = float(rng.choice([0.8, 1.2, 1.8, 2.5], p=[0.3, 0.35, 0.25, 0.1])) * px_scale
            a = _strand_alpha(rng, (h, w), width)
            a = cv2.GaussianBlur(a, (0, 0), 0.4 * px_scale)  # optics / JPEG softness
            if kind == "dark":
                base = rng.choice(["black", "dark brown", "brown"], p=[0.4, 0.4, 0.2])
                col = {"black": rng.uniform(10, 40, 3) * [1.0, 0.9, 0.85],
                       "dark brown": [rng.uniform(40, 70), rng.uniform(25, 45), rng.uniform(15, 35)],
                       "brown": [rng.uniform(70, 100), rng.uniform(45, 65), rng.uniform(30, 45)]}[str(base)]
                opacity = rng.uniform(0.75, 1.0)
            else:
                base = rng.choice(["white", "grey", "blond"], p=[0.4, 0.3, 0.3])
                col = {"white": rng.uniform(225, 250) * np.array([1.0, 1.0, 1.0]) - rng.uniform(0, 8, 3),
                       "grey": rng.uniform(160, 205) * np.array([1.0, 1.0, 1.0]) - rng.uniform(0, 6, 3),
                       "blond": [rng.uniform(205, 235), rng.uniform(180, 205), rng.uniform(120, 160)]}[str(base)]
                opacity = rng.uniform(0.6, 0.95)
            a = a * opacity
            col = np.clip(np.asarray(col, np.float32) * shade, 0, 255)
            out = out * (1 - a[..., None]) + col * a[..., None]
            total = np.maximum(total, a)
        cover[kind] = total
    noisy = out + rng.normal(0, 1.0, out.shape)  # a little sensor noise where the strands are
    out = np.where((cover["dark"] + cover["light"])[..., None] > 0.01, noisy, out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), cover["dark"], cover["light"]


# ----------------------------------------------------------------------------------------------- metrics


def iou_f1(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    tp = float(np.count_nonzero(pred & gt))
    fp = float(np.count_nonzero(pred & ~gt))
    fn = float(np.count_nonzero(~pred & gt))
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn)


def psnr_ssim(ref: np.ndarray, img: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """PSNR (dB, capped at 60 for identical images) and SSIM (skimage, RGB, data range 255, mean of the SSIM map)
    over the whole image and over ``region``."""
    from skimage.metrics import structural_similarity

    diff = (ref.astype(np.float64) - img.astype(np.float64)) ** 2
    _, smap = structural_similarity(ref, img, channel_axis=2, data_range=255, full=True)
    smap = smap.mean(axis=2)

    def psnr(mse: float) -> float:
        return 60.0 if mse <= 255.0**2 * 1e-6 else min(60.0, 10 * math.log10(255.0**2 / mse))

    out = {"psnr": psnr(float(diff.mean())), "ssim": float(smap.mean())}
    out["psnr_lesion"] = psnr(float(diff[region].mean())) if region.any() else float("nan")
    out["ssim_lesion"] = float(smap[region].mean()) if region.any() else float("nan")
    return out


def evaluate(params: dict[str, HairParams], samples: list[dict], repeat_timing: int = 3) -> dict[str, dict]:
    """Metrics per method (and for the unrestored image) over ``samples`` (dicts: clean, hairy, dark_gt, light_gt,
    fringe, lesion). Means over images, except ``ms`` (median over images of the fastest of ``repeat_timing``
    runs of ``remove_hair``)."""
    res: dict[str, dict] = {}
    for name, p in [("no removal", None), *params.items()]:
        acc: dict[str, list[float]] = {}

        def add(key: str, value: float, acc: dict[str, list[float]] = acc) -> None:
            acc.setdefault(key, []).append(value)

        for s in samples:
            if p is None:
                out = s["hairy"]
            else:
                times = []
                for _ in range(repeat_timing):
                    t0 = time.perf_counter()
                    out, det = remove_hair(s["hairy"], p)
                    times.append((time.perf_counter() - t0) * 1000)
                add("ms", min(times))
                gd, gl, fringe = s["dark_gt"], s["light_gt"], s["fringe"]
                for key, pred, gt in (("dark", det.dark, gd), ("light", det.light, gl), ("all", det.mask, gd | gl)):
                    iou, f1 = iou_f1(pred & ~fringe, gt)
                    add(f"iou_{key}", iou)
                    add(f"f1_{key}", f1)
                # recall of each hair type by the union mask (grey hair on pink skin is darker than the skin in the
                # red channel, so the dark detector may find it: it is still removed)
                for key, gt in (("dark", gd), ("light", gl)):
                    add(f"recall_any_{key}", float((det.mask & gt).sum() / max(gt.sum(), 1)))
                add("false_pos_frac", float((det.mask & ~(gd | gl | fringe)).mean()))
                # the same method on the hair-free original: whatever it changes there is damage
                clean_out, clean_det = remove_hair(s["clean"], p)
                les = s["lesion"]
                add("clean_hair_frac", clean_det.frac)
                add("clean_hair_frac_in_lesion", float(clean_det.mask[les].mean()) if les.any() else 0.0)
                c = psnr_ssim(s["clean"], clean_out, les)
                add("clean_psnr_lesion", c["psnr_lesion"])
                add("clean_ssim_lesion", c["ssim_lesion"])
            for k, v in psnr_ssim(s["clean"], out, s["lesion"]).items():
                add(k, v)
        res[name] = {k: round(float(np.nanmedian(v)) if k == "ms" else float(np.nanmean(v)), 4) for k, v in acc.items()}
    return res


# ----------------------------------------------------------------------------------------------- sheets


def _mask_viz(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    v = np.full(pred.shape + (3,), 30, np.uint8)
    v[pred & gt] = (0, 200, 0)
    v[~pred & gt] = (230, 30, 30)
    v[pred & ~gt] = (60, 120, 255)
    return v


def _dl_viz(img: np.ndarray, dark: np.ndarray, light: np.ndarray) -> np.ndarray:
    v = (img // 3).astype(np.uint8)
    v[dark] = (255, 40, 40)
    v[light] = (0, 230, 230)
    return v


def write_sheet(rows: list[list[np.ndarray]], path: Path, scale: int = 1) -> None:
    gap = 3
    lines = []
    for r in rows:
        h = max(t.shape[0] for t in r)
        cells = []
        for t in r:
            t = np.pad(t, ((0, h - t.shape[0]), (0, gap), (0, 0)), constant_values=255)
            cells.append(t)
        lines.append(np.pad(np.hstack(cells), ((0, gap), (0, 0), (0, 0)), constant_values=255))
    width = max(line.shape[1] for line in lines)
    sheet = np.vstack([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines])
    if scale != 1:
        sheet = cv2.resize(sheet, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


# ----------------------------------------------------------------------------------------------- main


def make_samples(root: Path, ids: list[str], size: int | None, seed: int) -> list[dict]:
    out = []
    for k, i in enumerate(ids):
        clean = load_rgb(root / "images" / f"{i}.jpg")
        native = min(clean.shape[:2])
        if size is not None:
            clean = upsample(clean, size)
        rng = np.random.default_rng([seed, k])
        hairy, ad, al = overlay_hair(clean, rng, px_scale=min(clean.shape[:2]) / native)
        cover = np.maximum(ad, al)
        out.append({"id": i, "clean": clean, "hairy": hairy, "dark_gt": ad >= GT_ALPHA, "light_gt": al >= GT_ALPHA,
                    "fringe": (cover > FRINGE_ALPHA) & (cover < GT_ALPHA),
                    "lesion": lesion_mask(root, i, clean.shape[:2])})
    return out


def markdown(results: dict) -> str:
    lines = []
    for size, res in results["synthetic_hair"].items():
        lines.append(f"\n**{size}**: {results['n_images']} hair-free HAM10000 images + synthetic dark and light hair "
                     "(F1 on the ground-truth mask, soft edge ignored; PSNR / SSIM of the restored image against the "
                     "hair-free original; 'clean' = the method run on the hair-free original)\n")
        lines.append("| method | F1 dark | F1 light | F1 all | IoU all | PSNR | SSIM | PSNR lesion | SSIM lesion | "
                     "clean: lesion px marked | clean: SSIM lesion | ms/img |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for m, r in res.items():
            def g(k: str, fmt: str = "{:.3f}", r: dict = r) -> str:
                return fmt.format(r[k]) if k in r else "-"
            lines.append(f"| {m} | {g('f1_dark')} | {g('f1_light')} | {g('f1_all')} | {g('iou_all')} | "
                         f"{g('psnr', '{:.2f}')} | {g('ssim', '{:.4f}')} | {g('psnr_lesion', '{:.2f}')} | "
                         f"{g('ssim_lesion', '{:.4f}')} | {g('clean_hair_frac_in_lesion', '{:.2%}')} | "
                         f"{g('clean_ssim_lesion', '{:.4f}')} | {g('ms', '{:.1f}')} |")
    return "\n".join(lines)


def real_sheets(root: Path, stats: dict[str, tuple[float, float]], params: dict[str, HairParams], out: Path) -> dict:
    """Real images, no ground truth: original | bevan | lesionkit | bevan mask | lesionkit mask (red = dark,
    cyan = light). HAM10000: the 8 pooled images with the most lesionkit hair outside the lesion (real hair) and
    the 4 with the most hair overall (where false positives on lesions would show); ISIC 2017: 6 random images."""
    def row(img: np.ndarray) -> list[np.ndarray]:
        outs = [remove_hair(img, p) for p in params.values()]
        return [img, *(o for o, _ in outs), *(_dl_viz(img, d.dark, d.light) for _, d in outs)]

    by_skin = sorted(stats, key=lambda i: -stats[i][1])[:8]
    by_all = [i for i in sorted(stats, key=lambda i: -stats[i][0]) if i not in by_skin][:4]
    write_sheet([row(load_rgb(root / "images" / f"{i}.jpg")) for i in by_skin + by_all], out / "hair_bench_real_hairy.png",
                scale=2)
    shown = {"ham10000_most_hair_outside_lesion": by_skin, "ham10000_most_hair_overall": by_all}
    isic = sorted((root.parent / "isic2017" / "ISIC-2017_Training_Data").glob("*.jpg"))
    if isic:
        pick = [isic[i] for i in np.random.default_rng(7).permutation(len(isic))[:6]]
        write_sheet([row(load_rgb(f)) for f in pick], out / "hair_bench_real_isic2017.png")
        shown["isic2017_random"] = [f.stem for f in pick]
    return shown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300, help="number of hair-free images")
    ap.add_argument("--pool", type=int, default=2500, help="random HAM10000 images scanned for hair-free ones")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", nargs="+", default=["native", "512"], help="'native' (200x150) and/or short sides")
    ap.add_argument("--sheet-dir", type=Path, default=Path("/tmp"))
    ap.add_argument("--no-sheets", action="store_true")
    args = ap.parse_args()
    cv2.setNumThreads(1)  # timings: one thread (prep runs one image per worker process)
    root = ham_root()
    t0 = time.perf_counter()
    ids, stats = hair_free_ids(root, args.n, args.seed, args.pool)
    params = {m: get_preset(m) for m in METHODS}
    results: dict = {
        "n_images": len(ids), "pool": args.pool, "hair_free_in_pool": sum(
            1 for i in stats if stats[i][1] < 0.005),
        "gt_alpha": GT_ALPHA, "fringe_alpha": FRINGE_ALPHA, "seed": args.seed,
        "machine": {"cpu_count": os.cpu_count(), "cv2_threads": cv2.getNumThreads(), "python": sys.version.split()[0],
                    "opencv": cv2.__version__},
        "params": {m: p.__dict__ for m, p in params.items()}, "synthetic_hair": {},
    }
    for size in args.size:
        sz = None if size == "native" else int(size)
        samples = make_samples(root, ids, sz, args.seed)
        label = "native 200x150" if sz is None else f"short side {sz}"
        results["synthetic_hair"][label] = evaluate(params, samples)
        if not args.no_sheets:
            rows = []
            for s in samples[:8]:
                outs = [remove_hair(s["hairy"], p) for p in params.values()]
                gt = s["dark_gt"] | s["light_gt"]
                rows.append([s["clean"], s["hairy"], *(o for o, _ in outs),
                             *(_mask_viz(d.mask & ~s["fringe"], gt) for _, d in outs)])
            write_sheet(rows, args.sheet_dir / f"hair_bench_synthetic_{size}.png", scale=2 if sz is None else 1)
    if not args.no_sheets:
        results["real_images_shown"] = real_sheets(root, stats, params, args.sheet_dir)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(results, indent=2, default=str))
    print(markdown(results))


if __name__ == "__main__":
    main()
