"""The ``label-skintone`` and ``skintone-agreement`` stages over manifests.

``label-skintone`` reads each image of a manifest (``image_path``, the original, by default: prep's gamma and
colour constancy shift L* and b*), estimates ITA with one strategy (:mod:`lesionkit.skintone.strategies`) over a
streaming process pool, and writes a NEW manifest with the added columns (:data:`SKINTONE_COLUMNS`) and a
provenance record. The input manifest is never modified. Every image gets either an estimate or a
``skintone_error`` reason; the run always completes.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lesionkit.console import info, out, track, warn
from lesionkit.errors import InputError, UsageError
from lesionkit.fsio import check_output, write_json_atomic, write_text_atomic
from lesionkit.manifest.io import (
    Manifest,
    provenance_record,
    read_manifest,
    write_manifest,
)
from lesionkit.parallel import batched, mp_context, task_batch_size
from lesionkit.skintone.lab import LAB_IMPLEMENTATION
from lesionkit.skintone.strategies import SkinToneConfig, estimate
from lesionkit.skintone.thresholds import ThresholdSet, parse_thresholds

__all__ = ["SKINTONE_COLUMNS", "LabelResult", "label_image", "run_label_skintone", "run_skintone_agreement"]

PRELOAD = ["lesionkit.skintone.strategies", "lesionkit.prep.decode", "lesionkit.prep.geometry", "lesionkit.prep.hair",
           "lesionkit.prep.confounders"]

# columns label-skintone adds, with their dtypes
SKINTONE_COLUMNS: dict[str, str] = {
    "ita_deg": "Float32",  # ITA in degrees, atan2(L* - 50, b*) * 180 / pi
    "ita_L": "Float32",  # L* the estimate was computed from
    "ita_b": "Float32",  # b* the estimate was computed from
    "skin_pixels": "Int32",  # pixels used (at the working size)
    "skin_frac": "Float32",  # their fraction of the working image, [0, 1]
    "ita_spread": "Float32",  # IQR of per-pixel (or per-patch) ITA, degrees
    "ita_patches": "string",  # per-patch ITA (patch methods), comma-separated, "nan" = patch dropped
    "ita_category": "category",  # category name of the threshold preset
    "fitzpatrick_est": "Int8",  # 1..6 estimated from ITA (NOT the human `fitzpatrick`)
    "skintone_error": "string",  # why there is no estimate (<NA> when there is one)
}
GRAY_MODES = {"L", "LA", "La", "1", "I;16", "I;16B", "I;16L", "I;16N", "I", "L;1", "L;2", "L;4"}


# Images decoded before they are measured, per worker task (see :func:`label_batch`), and the most decoded pixel
# bytes held at once (a large PNG is measured on its own).
BATCH = 8
BATCH_BYTES = 32 << 20


def _decode(path: str | None, cfg: SkinToneConfig, max_pixels: int) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """The decoded RGB image (DCT-scaled to the working size), or a record with the ``skintone_error`` reason."""
    from lesionkit.prep.decode import DecodeError, decode_image

    if path is None:
        return None, {"skintone_error": "no image: the image column is <NA> for this row"}
    try:
        img, dinfo = decode_image(path, min_side=256 if cfg.method == "bevan" else cfg.work_side,
                                  max_pixels=max_pixels, min_pixels_side=8)
    except DecodeError as e:
        return None, {"skintone_error": f"decode failed: {e.reason} ({e.message})"}
    if dinfo.source_mode in GRAY_MODES:
        return None, {"skintone_error": f"grayscale image: stored as mode {dinfo.source_mode}, no colour, so b* and "
                                        "ITA are undefined"}
    return img, None


def _record(res: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"skin_pixels": res.skin_pixels, "skin_frac": res.skin_frac, "skintone_error": res.error}
    if res.error is None:
        rec.update(ita_deg=res.ita_deg, ita_L=res.L, ita_b=res.b, ita_spread=res.spread)
    if res.patches is not None:
        rec["ita_patches"] = ",".join("nan" if not np.isfinite(v) else f"{v:.2f}" for v in res.patches)
    return rec


def label_batch(items: list[tuple[int, str | None]], cfg: SkinToneConfig,
                max_pixels: int = 178_956_970) -> list[tuple[int, dict[str, Any]]]:
    """Label several images (``(index, path)`` pairs): decode each and reduce it to the working size, then
    measure them one after the other (:func:`lesionkit.parallel.run_staged`, at most :data:`BATCH_BYTES` of
    decoded pixels held): 3.2 -> 2.6 ms per image for 6000x4000 JPEGs, the same results.
    Returns ``(index, record)`` pairs in item order; a record holds the :data:`SKINTONE_COLUMNS` values except
    the category columns, or a ``skintone_error`` reason."""
    from lesionkit.parallel import run_staged
    from lesionkit.skintone.strategies import to_work

    def stage(item: tuple[int, str | None]) -> tuple[Any, Any, int]:
        img, err = _decode(item[1], cfg, max_pixels)
        if err is not None:
            return (item[0], err), None, 0
        return None, (img, None if cfg.method == "bevan" else to_work(img, cfg.work_side)), img.nbytes

    def finish(item: tuple[int, str | None], st: tuple[np.ndarray, np.ndarray | None]) -> tuple[int, dict[str, Any]]:
        return item[0], _record(estimate(st[0], cfg, work=st[1]))

    return run_staged(items, stage, finish, BATCH_BYTES)


def label_image(path: str | None, cfg: SkinToneConfig, max_pixels: int = 178_956_970) -> dict[str, Any]:
    """Decode one image (DCT-scaled to the working size) and estimate its skin tone: a record of the
    :data:`SKINTONE_COLUMNS` values except the category columns. Decode failures become ``skintone_error``."""
    return label_batch([(0, path)], cfg, max_pixels)[0][1]


def _init_worker() -> None:
    import cv2

    from lesionkit.parallel import tune_malloc

    cv2.setNumThreads(1)  # parallelism comes from processes
    tune_malloc()  # per-image buffers reused instead of mapped and zero-filled for every image


@dataclass(frozen=True)
class LabelResult:
    manifest: Manifest
    elapsed_s: float
    images_per_s: float


def _records_to_frame(df: pd.DataFrame, records: list[dict[str, Any]], thr: ThresholdSet) -> pd.DataFrame:
    res = df.copy()
    existing = [c for c in SKINTONE_COLUMNS if c in res.columns]
    if existing:
        warn(f"replacing existing columns {', '.join(existing)} (the input manifest is not modified)")
        res = res.drop(columns=existing)
    for col, dtype in SKINTONE_COLUMNS.items():
        if col in ("ita_category", "fitzpatrick_est"):
            continue
        vals = [r.get(col) for r in records]
        res[col] = pd.array([pd.NA if v is None else v for v in vals], dtype=dtype)
    ita = res["ita_deg"].to_numpy(dtype=np.float64, na_value=np.nan)
    idx = np.where(np.isfinite(ita), 1 + (ita[:, None] <= np.asarray(thr.edges)).sum(1), 0)
    res["fitzpatrick_est"] = pd.array([pd.NA if k == 0 else int(k) for k in idx], dtype="Int8")
    cats = pd.CategoricalDtype(list(thr.categories), ordered=True)
    res["ita_category"] = pd.Series([None if k == 0 else thr.categories[k - 1] for k in idx], index=res.index,
                                    dtype="object").astype(cats)
    if res["ita_patches"].isna().all():
        res = res.drop(columns=["ita_patches"])
    return res


def _prep_colour_steps(m: Manifest) -> list[str]:
    """Colour-changing prep steps recorded in the manifest's provenance (gamma, colour constancy)."""
    steps = []
    for p in m.provenance:
        if p.get("stage") == "prep":
            c = p.get("config", {})
            if str(c.get("gamma", "none")) != "none":
                steps.append(f"gamma {c.get('gamma')}")
            if str(c.get("color_constancy", "none")) != "none":
                steps.append(f"colour constancy {c.get('color_constancy')}")
    return steps


def run_label_skintone(manifest_path: Path | str, out_path: Path | str, cfg: SkinToneConfig | None = None,
                       thresholds: str | ThresholdSet = "kinyanjui", image_col: str = "image_path", workers: int = 1,
                       overwrite: bool = False, limit: int | None = None, plot: Path | str | None = None,
                       max_pixels: int = 178_956_970) -> LabelResult:
    """Estimate the skin tone of every image of a manifest; write a new manifest to ``out_path``.

    ``image_col``: the path column to read (default the original ``image_path``). ``plot``: also write the
    estimated distribution as a PNG. Returns the written manifest, the elapsed time and the image rate.
    """
    cfg = cfg or SkinToneConfig()
    cfg.validate()
    thr = parse_thresholds(thresholds)
    manifest_path, out_path = Path(manifest_path), Path(out_path)
    if workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {workers})", hint="e.g. --workers 2")
    if out_path.suffix != ".parquet":
        raise UsageError(f"--out must end in .parquet (got {out_path})", hint=f"--out {out_path.with_suffix('.parquet')}")
    if out_path.resolve() == manifest_path.resolve():
        raise UsageError(f"--out is the input manifest ({manifest_path}); label-skintone never modifies its input",
                         hint="write a new file, e.g. --out " + str(manifest_path.with_name(manifest_path.stem + "_skintone.parquet")))
    check_output(out_path, overwrite)
    if plot is not None:
        check_output(Path(plot), overwrite)
    m = read_manifest(manifest_path)
    if image_col not in m.df.columns:
        cols = [c for c in m.df.columns if c == "image_path" or str(c).endswith("_path")]
        raise InputError(f"{manifest_path} has no column {image_col!r}",
                         hint=f"path columns in this manifest: {', '.join(cols) or 'none'}; pass one with --image-col")
    if image_col != "image_path":
        steps = _prep_colour_steps(m)
        if steps:
            warn(f"reading {image_col}: these images went through {', '.join(steps)}, which shift L* and b* "
                 "(ITA is then not the skin's colour); the default --image-col image_path reads the originals")
    df = m.df if limit is None else m.df.head(limit)
    paths = [None if pd.isna(p) else str(p) for p in df[image_col].tolist()]
    records: list[dict[str, Any]] = [{} for _ in paths]
    t0 = time.perf_counter()
    worker = partial(label_batch, cfg=cfg, max_pixels=max_pixels)
    batches = batched(enumerate(paths), task_batch_size(len(paths), workers, BATCH))
    with ExitStack() as stack:
        if workers == 1 or len(paths) < 2:
            _init_worker()
            results: Any = map(worker, batches)
        else:
            pool = stack.enter_context(mp_context(PRELOAD).Pool(min(workers, len(paths)), initializer=_init_worker))
            results = pool.imap_unordered(worker, batches)
        for i, rec in track((r for batch in results for r in batch), len(paths), "label-skintone"):
            records[i] = rec
    elapsed = time.perf_counter() - t0
    res = _records_to_frame(df, records, thr)
    config = {**asdict(cfg), "thresholds": {"name": thr.name, "edges": list(thr.edges),
                                              "categories": list(thr.categories)},
              "image_col": image_col,
              "image_source": "original images (before gamma / colour constancy)" if image_col == "image_path"
              else f"column {image_col}",
              "lab": LAB_IMPLEMENTATION, "ita": "atan2(L* - 50, b*) * 180 / pi", "max_pixels": max_pixels,
              "limit": limit}
    prov = [*m.provenance, provenance_record("label-skintone", config, [
        {"path": str(manifest_path.resolve()), "kind": "manifest", "fingerprint": m.fingerprint()}])]
    out_m = Manifest(df=res, classes=m.classes, provenance=prov, extra=m.extra)
    write_manifest(out_m, out_path, overwrite=overwrite)
    rate = len(paths) / elapsed if elapsed > 0 else 0.0
    _summary(res, thr, cfg, elapsed, rate, workers)
    if plot is not None:
        from lesionkit.skintone.plots import plot_estimated_distribution

        plot_estimated_distribution(res["fitzpatrick_est"].to_numpy(dtype=np.float64, na_value=np.nan), thr, plot,
                                    n_error=int(res["skintone_error"].notna().sum()),
                                    title=f"Estimated skin tone ({cfg.method}) of {manifest_path.name}")
        info(f"plot: {plot}")
    out.print(f"wrote {out_path}")
    return LabelResult(out_m, elapsed, rate)


def _summary(df: pd.DataFrame, thr: ThresholdSet, cfg: SkinToneConfig, elapsed: float, rate: float,
             workers: int) -> None:
    from rich.table import Table

    n = len(df)
    n_err = int(df["skintone_error"].notna().sum())
    info(f"label-skintone ({cfg.method}, {thr.name}): {n - n_err} estimated, {n_err} without an estimate, "
         f"in {elapsed:.1f}s ({rate:,.1f} images/s, {workers} worker(s))")
    t = Table("fitzpatrick_est", "ita_category", "ITA interval", "images", "%", title="estimated skin tone")
    for k, (name, desc) in enumerate(zip(thr.categories, thr.describe(), strict=True), start=1):
        c = int((df["fitzpatrick_est"] == k).sum())
        t.add_row(str(k), name, desc.split(": ", 1)[1], str(c), f"{100 * c / max(1, n - n_err):.1f}")
    out.print(t)
    if n_err:
        reasons = Counter(str(r).split(":")[0] for r in df["skintone_error"].dropna())
        t2 = Table("skintone_error", "images", title="images without an estimate (full reason in skintone_error)")
        for r, c in reasons.most_common():
            t2.add_row(r, str(c))
        out.print(t2)


# ----------------------------------------------------------------------------------------------- agreement


def _thresholds_of(m: Manifest) -> ThresholdSet | None:
    for p in reversed(m.provenance):
        if p.get("stage") == "label-skintone":
            t = p.get("config", {}).get("thresholds", {})
            try:
                return ThresholdSet(t["name"], tuple(t["edges"]), tuple(t["categories"]))
            except (KeyError, TypeError, UsageError):
                return None
    return None


def run_skintone_agreement(manifest_path: Path | str, truth: str = "fitzpatrick", pred: str = "fitzpatrick_est",
                           out_dir: Path | str | None = None, truth_ita: str | None = None,
                           overwrite: bool = False) -> dict[str, Any]:
    """Agreement of ``pred`` (and the continuous ``ita_deg``) with the human types in ``truth``.

    Prints tables; with ``out_dir`` writes ``agreement.json``, ``confusion.csv``, ``ita_by_type.png`` and
    ``estimated_distribution.png`` there (atomically; existing files refused unless ``overwrite``).
    ``truth_ita``: a reference ITA column (e.g. synthetic ``ita_true``) for median |ΔITA|.
    """
    from lesionkit.skintone.agreement import agreement_metrics
    from lesionkit.skintone.plots import plot_estimated_distribution, plot_ita_by_type

    manifest_path = Path(manifest_path)
    m = read_manifest(manifest_path)
    df = m.df
    problems = []
    for col, what in ((truth, "human Fitzpatrick types (--truth)"), (pred, "estimated types (--pred)"),
                      ("ita_deg", "estimated ITA")):
        if col not in df.columns:
            problems.append(f"column {col!r} ({what}) is missing")
    if truth_ita is not None and truth_ita not in df.columns:
        problems.append(f"column {truth_ita!r} (--truth-ita) is missing")
    if problems:
        raise InputError(f"{manifest_path} cannot be scored", details=problems,
                         hint=f"label it first: lesionkit label-skintone {manifest_path} --out labelled.parquet; "
                              "--truth names the human column (e.g. fitzpatrick)")
    t = pd.to_numeric(df[truth], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isfinite(t) & ~np.isin(t, (1, 2, 3, 4, 5, 6))
    if bad.any():
        raise InputError(f"column {truth!r} has {int(bad.sum())} values outside 1..6 (e.g. {t[bad][:3].tolist()})",
                         hint="unknown types must be <NA>, never -1 (manifest importers do this)")
    if not np.isfinite(t).any():
        raise InputError(f"column {truth!r} has no human type in {manifest_path} (all <NA>)",
                         hint="choose a dataset with human labels (fitzpatrick17k, PAD-UFES-20, synthetic)")
    p = pd.to_numeric(df[pred], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    ita = pd.to_numeric(df["ita_deg"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    ref = pd.to_numeric(df[truth_ita], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan) \
        if truth_ita else None
    metrics = agreement_metrics(t, p, ita, ref)
    thr = _thresholds_of(m) or parse_thresholds("kinyanjui")
    metrics["inputs"] = {"manifest": str(manifest_path.resolve()), "fingerprint": m.fingerprint(), "truth": truth,
                         "pred": pred, "truth_ita": truth_ita, "thresholds": {"name": thr.name, "edges": list(thr.edges)},
                         "method": next((pp.get("config", {}).get("method") for pp in reversed(m.provenance)
                                         if pp.get("stage") == "label-skintone"), None)}
    _print_agreement(metrics, truth)
    if out_dir is not None:
        out_dir = Path(out_dir)
        files = {k: out_dir / k for k in ("agreement.json", "confusion.csv", "ita_by_type.png",
                                          "estimated_distribution.png")}
        for f in files.values():
            check_output(f, overwrite)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(files["agreement.json"], metrics)
        C = metrics["confusion"]["matrix"]
        lines = ["truth\\estimated," + ",".join(str(k) for k in range(1, 7))]
        lines += [f"{k}," + ",".join(str(v) for v in row) for k, row in zip(range(1, 7), C, strict=True)]
        write_text_atomic(files["confusion.csv"], "\n".join(lines) + "\n")
        plot_ita_by_type(ita, t, thr, files["ita_by_type.png"],
                         title=f"Estimated ITA per {truth} type ({manifest_path.name})")
        plot_estimated_distribution(p, thr, files["estimated_distribution.png"], truth=t,
                                    n_error=int(np.sum(~np.isfinite(p))), truth_label=truth,
                                    title=f"Estimated vs {truth} skin-tone distribution ({manifest_path.name})")
        out.print(f"wrote {out_dir}/: {', '.join(files)}")
    return metrics


def _fmt(v: Any, pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


def _print_agreement(mt: dict[str, Any], truth: str) -> None:
    from rich.table import Table

    t = Table("type", "n", "exact", "±1", "no estimate", *(["median ITA"] if any(
        r.get("ita_median") is not None for r in mt["per_type"].values()) else []),
        *(["median |ΔITA|"] if "median_abs_delta_ita" in mt else []), title=f"agreement with {truth} per type")
    for k, r in mt["per_type"].items():
        row = [k, str(r["n"]), _fmt(r["exact"]), _fmt(r["within1"]), str(r["n_no_estimate"])]
        if any(x.get("ita_median") is not None for x in mt["per_type"].values()):
            row.append("-" if r.get("ita_median") is None else f"{r['ita_median']:.1f}°")
        if "median_abs_delta_ita" in mt:
            row.append("-" if r.get("median_abs_delta_ita") is None else f"{r['median_abs_delta_ita']:.2f}°")
        t.add_row(*row)
    out.print(t)
    out.print(f"overall: n={mt['n_used']} of {mt['n_with_truth']} with {truth} (coverage {_fmt(mt['coverage'])}), "
              f"exact {_fmt(mt['exact'])}, ±1 {_fmt(mt['within1'])}, linear-weighted κ {_fmt(mt['kappa_linear'], False)}, "
              f"Spearman ρ(ITA, {truth}) {_fmt(mt['spearman_ita_vs_truth'], False)}, coarse I-II/III-IV/V-VI "
              f"exact {_fmt(mt['coarse']['exact'])}"
              + (f", median |ΔITA| {mt['median_abs_delta_ita']:.2f}°" if mt.get("median_abs_delta_ita") is not None
                 else ""))
    C = Table("truth \\ est", *[str(k) for k in range(1, 7)], title="confusion (rows: truth, columns: estimate)")
    for k, row in enumerate(mt["confusion"]["matrix"], start=1):
        C.add_row(str(k), *[str(v) for v in row])
    out.print(C)

