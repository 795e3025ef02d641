"""Skin-tone (ITA) benchmark: every strategy side by side with the published ``bevan`` recipe.

1. Synthetic ground truth (lesionkit.synthetic, 128 px):
   * ``grid``: an L*/b* grid (L* 25..80 step 5, b* 8..26 step 3; kept when hypot(L* - 50, b*) >= 16, ITA in
     (-50, 70) and >= 0.5° from a Kinyanjui edge), 4 variants per point: dark + light hair / ink + ruler /
     dark hair + round field of view (vignette) / everything. Lesions are re-drawn for the new skin L*.
   * ``uniform``: ``make_specs`` (types drawn uniformly, the generator's own confounder rates).
   * ``hard``: large lesions (30-55% of the image), dense hair, FOV, ink, rulers.
   Metrics per Kinyanjui type of ``ita_true``: median |ΔITA| and exact accuracy of ``fitzpatrick_est``.
2. Real data (from $LESIONKIT_REAL_DATA): estimated distribution on HAM10000 and ISIC 2017 (first --real-n
   images of each), PAD-UFES-20 agreement with the 4 human labels.
3. Throughput (images/s) of ``run_label_skintone`` vs decode-only (``decode_image`` of the same files, full size,
   and at the DCT scale label-skintone uses), 1 and 2 workers: the real datasets (when the real section ran) and
   ``--big-n`` generated 6000x4000 camera-size JPEGs (shared with ``bench_prep.py``).

Run: .venv/bin/python benchmarks/bench_skintone.py [--n-uniform 300] [--real-n 600] [--speed-n 400] [--big-n 48]
[--skip synthetic,real,speed] [--out JSON]
Prints JSON and markdown tables. Timings are not asserted anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from lesionkit import synthetic as S
from lesionkit.parallel import mp_context
from lesionkit.skintone.strategies import METHODS, SkinToneConfig, estimate
from lesionkit.skintone.thresholds import PRESETS

KIN = PRESETS["kinyanjui"]


def grid_specs(size: int = 128, seed: int = 7) -> list[S.SampleSpec]:
    base = S.make_specs(400, size, seed)
    variants = [{"hair_dark": True, "hair_light": True, "ink": False, "ruler": False, "fov": False},
                {"hair_dark": False, "hair_light": False, "ink": True, "ruler": True, "fov": False},
                {"hair_dark": True, "hair_light": False, "ink": False, "ruler": False, "fov": True},
                {"hair_dark": True, "hair_light": True, "ink": True, "ruler": True, "fov": True}]
    out, i = [], 0
    for L in np.arange(25, 81, 5.0):
        for b in np.arange(8, 27, 3.0):
            ita = math.degrees(math.atan2(L - 50, b))
            if math.hypot(L - 50, b) < 16 or not -50 < ita < 70 or min(abs(ita - e) for e in KIN.edges) < 0.5:
                continue
            for v in variants:
                sp = base[i % len(base)]
                i += 1
                # the lesion depends on the skin's L* (it is darker): re-draw it (private generator helper)
                les = S._make_lesion(np.random.default_rng([seed, i]), sp.lesion.malignant, float(L))
                out.append(dataclasses.replace(sp, skin_L=float(L), skin_b=float(b), lesion=les,
                                               sample_id=f"grid{i}", **v))
    return out


def hard_specs(n: int, size: int = 128, seed: int = 9) -> list[S.SampleSpec]:
    out = []
    for i, sp in enumerate(S.make_specs(n, size, seed)):
        rng = np.random.default_rng([seed, i, 5])
        les = dataclasses.replace(sp.lesion, frac=float(rng.uniform(0.3, 0.55)))
        out.append(dataclasses.replace(sp, lesion=les, hair_dark=True, hair_light=bool(i % 2), ink=i % 3 == 0,
                                       fov=i % 2 == 0, ruler=i % 4 == 1))
    return out


def _render(spec: S.SampleSpec) -> np.ndarray:
    return S.render_sample(spec)[0]


def _est_all(args: tuple[np.ndarray, str]) -> float:
    import cv2

    cv2.setNumThreads(1)
    img, method = args
    r = estimate(img, SkinToneConfig(method=method))
    return float("nan") if r.ita_deg is None else float(r.ita_deg)


def synthetic_bench(n_uniform: int, n_hard: int, workers: int) -> dict:
    sets = {"grid": grid_specs(), "uniform": S.make_specs(n_uniform, 128, 11), "hard": hard_specs(n_hard)}
    res: dict = {}
    from lesionkit.skintone.run import PRELOAD

    with ProcessPoolExecutor(workers, mp_context=mp_context(PRELOAD)) as ex:
        for name, specs in sets.items():
            imgs = list(ex.map(_render, specs, chunksize=8))
            true = np.array([s.ita_true for s in specs])
            ft = np.array([s.fitzpatrick for s in specs])
            res[name] = {"n": len(specs), "per_type_n": {str(t): int((ft == t).sum()) for t in range(1, 7)}}
            for m in METHODS:
                t0 = time.perf_counter()
                ita = np.array(list(ex.map(_est_all, [(im, m) for im in imgs], chunksize=8)))
                dt = time.perf_counter() - t0
                est = np.array([KIN.index(x) if np.isfinite(x) else 0 for x in ita])
                err = np.abs(ita - true)
                row = {"median_abs_dita": float(np.nanmedian(err)), "p90_abs_dita": float(np.nanpercentile(err, 90)),
                       "bias": float(np.nanmedian(ita - true)), "exact": float(np.mean(est == ft)),
                       "no_estimate": int(np.isnan(ita).sum()), "images_per_s": len(imgs) / dt, "per_type": {}}
                for t in range(1, 7):
                    s = ft == t
                    row["per_type"][str(t)] = {"median_abs_dita": float(np.nanmedian(err[s])) if s.any() else None,
                                               "exact": float(np.mean(est[s] == t)) if s.any() else None}
                res[name][m] = row
                print(f"[synthetic] {name:8s} {m:13s} median|dITA| {row['median_abs_dita']:.2f} exact {row['exact']:.3f}",
                      file=sys.stderr, flush=True)
    return res


def real_bench(root: Path, n: int, work: Path) -> dict:
    from lesionkit.manifest.build import build_manifest
    from lesionkit.manifest.importers import ImportOptions
    from lesionkit.manifest.io import Manifest, read_manifest, write_manifest
    from lesionkit.skintone.run import run_label_skintone, run_skintone_agreement

    out: dict = {}
    for fmt, src in (("ham10000", root / "ham10000"), ("isic2017", root / "isic2017")):
        full = work / f"{fmt}.parquet"
        build_manifest(ImportOptions(format=fmt, source=src, out=full, read_image_size=False))
        m = read_manifest(full)
        sub = work / f"{fmt}_sub.parquet"
        df = m.df.sample(n=min(n, len(m.df)), random_state=0) if n < len(m.df) else m.df
        write_manifest(Manifest(df.reset_index(drop=True), m.classes, m.provenance, m.extra), sub)
        out[fmt] = {}
        for meth in ("mask", "kmeans", "patch-median", "bevan"):
            r = run_label_skintone(sub, work / f"{fmt}_{meth}.parquet", SkinToneConfig(method=meth), workers=2,
                                   plot=work / f"{fmt}_{meth}.png" if meth in ("mask", "bevan") else None)
            d = r.manifest.df
            est = d["fitzpatrick_est"]
            out[fmt][meth] = {"n": len(d), "no_estimate": int(d["skintone_error"].notna().sum()),
                              "ita_median": float(d["ita_deg"].astype(float).median()),
                              "distribution": {str(k): int((est == k).sum()) for k in range(1, 7)},
                              "errors": d["skintone_error"].dropna().str.split(":").str[0].value_counts().to_dict()}
    pad = work / "pad.parquet"
    build_manifest(ImportOptions(format="pad_ufes20", source=root / "pad_ufes20" / "metadata_rows.csv", out=pad,
                                 allow_missing_images=True))
    out["pad_ufes20"] = {}
    for meth in METHODS:
        lab = work / f"pad_{meth}.parquet"
        r = run_label_skintone(pad, lab, SkinToneConfig(method=meth))
        mt = run_skintone_agreement(lab, truth="fitzpatrick",
                                    out_dir=work / f"pad_agreement_{meth}" if meth == "mask" else None)
        d = r.manifest.df
        rows = d[d["fitzpatrick"].notna()]
        out["pad_ufes20"][meth] = {"exact": mt["exact"], "within1": mt["within1"], "kappa": mt["kappa_linear"],
                                   "spearman": mt["spearman_ita_vs_truth"], "coarse": mt["coarse"]["exact"],
                                   "pairs": [[int(a), None if not np.isfinite(b) else round(float(b), 1),
                                              None if not np.isfinite(c) else int(c)]
                                             for a, b, c in zip(rows["fitzpatrick"], rows["ita_deg"].astype(float),
                                                                rows["fitzpatrick_est"].astype(float), strict=True)]}
    return out


def _decode(args: tuple[str, int | None]) -> int:
    from lesionkit.prep.decode import decode_image

    path, side = args
    return decode_image(path, min_side=side)[0].shape[0]


def _decode_pass(paths: list[str], side: int | None, workers: int) -> float:
    t0 = time.perf_counter()
    if workers == 1:
        for p in paths:
            _decode((p, side))
    else:
        from lesionkit.skintone.run import PRELOAD, _init_worker  # one OpenCV thread per process, as label-skintone

        # One fork server serves every pool of this process, and the first pool fixes what it preloads. With
        # label-skintone's list for every pool, the label and decode workers fork from the same warm server, as a
        # label-skintone run's workers do from the one it starts; with the decoder's list only, each label worker
        # would import the skin-tone modules itself (0.3 s per run), a cost no real run has.
        with mp_context(PRELOAD).Pool(workers, initializer=_init_worker) as pool:
            list(pool.imap_unordered(_decode, [(p, side) for p in paths], chunksize=8))
    return len(paths) / (time.perf_counter() - t0)


def speed_sets(root: Path, n: int, work: Path, big_n: int, big_dir: Path) -> dict[str, Path]:
    """Manifests to time: the real datasets (when present; PAD-UFES-20's 7 photos repeated 8x) and ``big_n``
    generated 6000x4000 camera-size JPEGs (``bench_prep.make_jpegs``: the file size where decoding dominates), each
    listed 4 times so that the per-run costs (pool start, manifest writing) are amortised as on a real dataset."""
    import pandas as pd

    from lesionkit.manifest.io import Manifest, read_manifest, write_manifest
    from lesionkit.manifest.schema import coerce

    sets: dict[str, Path] = {}
    for fmt in ("ham10000", "isic2017", "pad_ufes20"):
        full = work / (f"{fmt}.parquet" if fmt != "pad_ufes20" else "pad.parquet")
        if not full.exists():
            continue
        m = read_manifest(full)
        df = m.df[m.df["image_path"].notna()].head(n).reset_index(drop=True)
        if fmt == "pad_ufes20":  # 7 images: repeat them for a stable rate
            df = pd.concat([df] * 8, ignore_index=True)
            df["sample_id"] = [f"{s}_{i}" for i, s in enumerate(df["sample_id"])]
        sets[fmt] = write_manifest(Manifest(df, m.classes), work / f"speed_{fmt}.parquet", overwrite=True)
    if big_n > 0:
        from bench_prep import make_jpegs

        paths = [str(p) for p in make_jpegs(big_dir, big_n, 6000, 4000)] * 4  # each file 4x: fixed costs amortised
        df = pd.DataFrame({"sample_id": [f"big{i}" for i in range(len(paths))], "source": "bench",
                           "image_path": paths, "label": 0})
        sets["jpeg_6000x4000"] = write_manifest(Manifest(coerce(df), ["x"]), work / "speed_big.parquet", overwrite=True)
    return sets


def paired_per_image(paths: list[str], repeats: int) -> dict:
    """One core, in this process: for every batch of ``label-skintone``'s task size (``run.BATCH`` files), decode
    its files at label-skintone's scale, then label them (``label_batch``: decode + estimate) with mask and with
    kmeans; ``repeats`` rounds; per-batch medians; ratios of their sums. Interleaving batch by batch makes this
    the steadiest number on a shared machine."""
    from lesionkit.skintone.run import BATCH, label_batch

    side = SkinToneConfig().work_side
    cfgs = {m: SkinToneConfig(method=m) for m in ("mask", "kmeans")}
    batches = [list(enumerate(paths))[j:j + BATCH] for j in range(0, len(paths), BATCH)]
    t = np.zeros((3, repeats, len(batches)))
    for r in range(repeats):
        for i, items in enumerate(batches):
            t0 = time.perf_counter()
            for _, p in items:
                _decode((p, side))
            t1 = time.perf_counter()
            label_batch(items, cfgs["mask"])
            t2 = time.perf_counter()
            label_batch(items, cfgs["kmeans"])
            t[:, r, i] = (t1 - t0, t2 - t1, time.perf_counter() - t2)
    dec, lm, lk = (float(np.median(t[j], 0).sum()) for j in range(3))
    n = len(paths)
    return {"files": n, "repeats": repeats, "batch": BATCH, "decode_ms": 1000 * dec / n, "mask_ms": 1000 * lm / n,
            "kmeans_ms": 1000 * lk / n, "mask_vs_decode": dec / lm, "kmeans_vs_decode": dec / lk}


def speed_bench(sets: dict[str, Path], work: Path, repeats: int) -> dict:
    """Images/s of ``run_label_skintone`` (mask, kmeans) against decoding the same files (full size, and at the
    DCT scale label-skintone decodes at), 1 and 2 workers; each pass ``repeats`` times, interleaved: the best rate of
    each pass, and the median over repeats of label rate / the scaled-decode rate measured just before it."""
    import cv2

    from lesionkit.manifest.io import read_manifest
    from lesionkit.skintone.run import run_label_skintone

    from lesionkit.parallel import tune_malloc

    cv2.setNumThreads(1)
    tune_malloc()  # as label-skintone's workers (and the decode pools, through the same initializer)
    side = SkinToneConfig().work_side
    res: dict = {}
    for name, manifest in sets.items():
        paths = read_manifest(manifest).df["image_path"].tolist()
        for p in paths:
            Path(p).read_bytes()  # warm the page cache
        res[name] = {"n": len(paths), "work_side": side}
        uniq = list(dict.fromkeys(paths))[:48]
        res[name]["paired_per_image_1_core"] = paired_per_image(uniq, 5)
        print(f"[speed] {name} paired per image: {json.dumps(res[name]['paired_per_image_1_core'])}", file=sys.stderr)
        for w in (1, 2):
            best: dict[str, float] = {}
            ratios: dict[str, list[float]] = {"mask": [], "kmeans": []}
            for _ in range(repeats):
                # full-size decoding is only a reference (the target compares with the scaled decode): a quarter
                # of the files is enough for its rate
                best["decode_full"] = max(best.get("decode_full", 0.0), _decode_pass(paths[: max(8, len(paths) // 4)], None, w))
                dec = _decode_pass(paths, side, w)
                best["decode_scaled"] = max(best.get("decode_scaled", 0.0), dec)
                for meth in ("mask", "kmeans"):
                    t0 = time.perf_counter()
                    run_label_skintone(manifest, work / f"speed_{name}_{meth}_{w}.parquet", SkinToneConfig(method=meth),
                                       workers=w, overwrite=True)
                    rate = len(paths) / (time.perf_counter() - t0)
                    best[f"label_{meth}"] = max(best.get(f"label_{meth}", 0.0), rate)
                    ratios[meth].append(rate / dec)  # paired with the decode pass just before it
            res[name].update({f"{k}_w{w}": v for k, v in best.items()})
            res[name].update({f"ratio_{m}_w{w}_paired_median": float(np.median(r)) for m, r in ratios.items()})
            print(f"[speed] {name} w{w}: {json.dumps({k: round(v, 1) for k, v in best.items()})}", file=sys.stderr)
    return res


def markdown(r: dict) -> str:
    lines = []
    for name, block in r.get("synthetic", {}).items():
        lines.append(f"\n**synthetic {name}** (n={block['n']}; per type n={block['per_type_n']})\n")
        lines.append("| method | median abs dITA | p90 | I | II | III | IV | V | VI | exact all | no estimate |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for m in METHODS:
            row = block[m]
            cells = [f"{100 * row['per_type'][str(t)]['exact']:.0f}% / {row['per_type'][str(t)]['median_abs_dita']:.2f}°"
                     if row["per_type"][str(t)]["exact"] is not None else "-" for t in range(1, 7)]
            lines.append(f"| {m} | {row['median_abs_dita']:.2f}° | {row['p90_abs_dita']:.1f}° | " + " | ".join(cells)
                         + f" | {100 * row['exact']:.1f}% | {row['no_estimate']} |")
    for ds in ("ham10000", "isic2017"):
        if ds in r.get("real", {}):
            lines.append(f"\n**{ds}** estimated distribution (kinyanjui; counts I..VI)\n")
            lines.append("| method | n | I | II | III | IV | V | VI | no estimate | median ITA |")
            lines.append("|---|---|---|---|---|---|---|---|---|---|")
            for m, row in r["real"][ds].items():
                lines.append(f"| {m} | {row['n']} | " + " | ".join(str(row["distribution"][str(k)]) for k in range(1, 7))
                             + f" | {row['no_estimate']} | {row['ita_median']:.1f}° |")
    if "pad_ufes20" in r.get("real", {}):
        lines.append("\n**PAD-UFES-20** (4 images with a human type): [human, ITA, estimate]\n")
        lines.append("| method | exact | ±1 | κ lin | Spearman | coarse | pairs |")
        lines.append("|---|---|---|---|---|---|---|")
        for m, row in r["real"]["pad_ufes20"].items():
            f = lambda v: "-" if v is None else f"{v:.2f}"
            lines.append(f"| {m} | {f(row['exact'])} | {f(row['within1'])} | {f(row['kappa'])} | {f(row['spearman'])} | "
                         f"{f(row['coarse'])} | {row['pairs']} |")
    if "speed" in r:
        lines.append("\n**throughput** (images/s; the target ratio is label / decode at the DCT scale label-skintone "
                     "decodes at; label / full decode for reference)\n")
        lines.append("| data | workers | decode full | decode DCT-scaled | mask | kmeans | mask / scaled | kmeans / scaled "
                     "| paired median mask / kmeans | mask / full |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for ds, row in r["speed"].items():
            for w in (1, 2):
                d, sc = row[f"decode_full_w{w}"], row[f"decode_scaled_w{w}"]
                lm, lk = row[f"label_mask_w{w}"], row[f"label_kmeans_w{w}"]
                pm, pk = row[f"ratio_mask_w{w}_paired_median"], row[f"ratio_kmeans_w{w}_paired_median"]  # run level
                lines.append(f"| {ds} | {w} | {d:.1f} | {sc:.1f} | {lm:.1f} | {lk:.1f} | {lm / sc:.2f} | {lk / sc:.2f} "
                             f"| {pm:.2f} / {pk:.2f} | {lm / d:.2f} |")
    for ds, row in r.get("speed", {}).items():
        pp = row["paired_per_image_1_core"]
        lines.append(f"\n{ds}, paired on one core ({pp['files']} files in batches of {pp['batch']} x {pp['repeats']}): decode "
                     f"{pp['decode_ms']:.2f} ms, label mask {pp['mask_ms']:.2f} ms ({pp['mask_vs_decode']:.3f}), "
                     f"kmeans {pp['kmeans_ms']:.2f} ms ({pp['kmeans_vs_decode']:.3f})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-uniform", type=int, default=300)
    ap.add_argument("--n-hard", type=int, default=200)
    ap.add_argument("--real-n", type=int, default=600)
    ap.add_argument("--speed-n", type=int, default=400)
    ap.add_argument("--big-n", type=int, default=48, help="generated 6000x4000 JPEGs in the speed section (0 = none)")
    ap.add_argument("--big-dir", type=Path, default=Path(tempfile.gettempdir()) / "lesionkit-bench-jpegs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma list of sections to skip: synthetic,real,speed")
    ap.add_argument("--keep", type=Path, default=None, help="keep the real-data outputs (manifests, PNGs) here")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    from lesionkit.console import settings

    settings.progress = False
    skip = set(filter(None, args.skip.split(",")))
    r: dict = {}
    if "synthetic" not in skip:
        r["synthetic"] = synthetic_bench(args.n_uniform, args.n_hard, args.workers)
    root = Path(os.environ.get("LESIONKIT_REAL_DATA", "../shared/data"))
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if root.is_dir() and "real" not in skip:
            r["real"] = real_bench(root, args.real_n, work)
        if "speed" not in skip:
            r["speed"] = speed_bench(speed_sets(root, args.speed_n, work, args.big_n, args.big_dir), work, args.repeats)
    txt = json.dumps(r, indent=1)
    print(txt)
    print(markdown(r))
    if args.out:
        args.out.write_text(txt)


if __name__ == "__main__":
    main()
