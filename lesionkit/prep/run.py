"""Run prep over a manifest: resumable log, streaming process pool, output manifest, summary, preview sheet."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lesionkit.console import info, out, track, warn
from lesionkit.errors import LesionkitError, OutputExistsError
from lesionkit.fsio import atomic_path, write_json_atomic
from lesionkit.manifest.io import (
    Manifest,
    provenance_record,
    read_manifest,
    write_manifest,
)
from lesionkit.parallel import batched, mp_context, task_batch_size
from lesionkit.prep.pipeline import BATCH, PrepConfig, Task, prep_image, run_batch

LOG = "prep_log.jsonl"
PRELOAD = ["lesionkit.prep.pipeline", "lesionkit.prep.decode", "lesionkit.prep.geometry", "lesionkit.prep.hair",
           "lesionkit.prep.color", "lesionkit.prep.confounders"]
OWNED = ("images", "masks", LOG, "manifest.parquet", "preview.png", "prep_config.json")

# columns a prep record may add to the manifest, with their dtypes
PREP_COLUMNS: dict[str, str] = {
    "prep_path": "string", "prep_error": "string", "prep_key": "string",
    "orig_height": "Int32", "orig_width": "Int32", "decode_reduction": "Int8", "source_mode": "string",
    "decode_notes": "string", "fov_found": "boolean", "crop_mode": "string", "crop_reason": "string",
    "crop_box": "string", "lesion_frac_est": "Float32", "upscaled": "boolean", "hair_frac": "Float32",
    "ink_frac": "Float32", "ruler_detected": "boolean", "sticker_detected": "boolean", "cc_gains": "string", "gamma": "Float32",
    "out_height": "Int32", "out_width": "Int32",
}


def read_log(path: Path) -> dict[str, dict[str, Any]]:
    """Latest record per sample from an append-only JSON-lines log; a torn last line (killed run) is ignored."""
    records: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return records
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "sample_id" in rec:
                records[rec["sample_id"]] = rec
    return records


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        is_prep = (out_dir / LOG).exists() or (out_dir / "prep_config.json").exists()
        if not is_prep:
            raise OutputExistsError(
                f"{out_dir} exists and is not a prep output folder (no {LOG})",
                hint="choose a new --out folder; prep never deletes a folder it did not create",
            )
        if overwrite:
            import shutil

            for name in OWNED:
                p = out_dir / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    # temp files of a killed run
    for sub in ("images", "masks"):
        d = out_dir / sub
        if d.is_dir():
            for p in d.iterdir():
                if p.name.startswith(".") and p.name.endswith(".tmp"):
                    p.unlink(missing_ok=True)


def _init_worker() -> None:
    import cv2

    from lesionkit.parallel import tune_malloc

    cv2.setNumThreads(1)  # parallelism comes from processes
    tune_malloc()  # per-image buffers reused instead of mapped and zero-filled for every image


def _tasks(df: pd.DataFrame, out_dir: Path, done: dict[str, dict[str, Any]]) -> Iterator[Task]:
    for sid, path in zip(df["sample_id"].tolist(), df["image_path"].tolist(), strict=True):
        prev = done.get(sid, {})
        ok = prev.get("status") in ("done", "skipped") and prev.get("prep_path")
        yield Task(sample_id=sid, path=None if pd.isna(path) else str(path), out_dir=str(out_dir),
                   done_key=prev.get("prep_key") if ok else None, done_path=prev.get("prep_path") if ok else None)


def records_to_columns(df: pd.DataFrame, records: dict[str, dict[str, Any]], out_dir: Path) -> pd.DataFrame:
    """Join per-image records onto the manifest rows (paths made absolute under ``out_dir``)."""
    rows = [records.get(sid, {"prep_error": "not processed"}) for sid in df["sample_id"].tolist()]
    res = df.copy()
    extra_paths = sorted({k for r in rows for k in r if k.startswith("prep_") and k.endswith("_mask_path")})
    for col, dtype in PREP_COLUMNS.items():
        vals = []
        for r in rows:
            v = r.get(col)
            if col == "crop_box" and v is not None:
                v = ",".join(map(str, v))
            elif col == "cc_gains" and v is not None:
                v = ",".join(f"{g:.5f}" for g in v)
            vals.append(pd.NA if v is None else v)
        if col in ("prep_path",):
            vals = [pd.NA if v is pd.NA else str(out_dir / v) for v in vals]
        if all(v is pd.NA for v in vals) and col not in ("prep_path", "prep_error"):
            continue  # a step that did not run adds no column
        res[col] = pd.array(vals, dtype=dtype)
    for col in extra_paths:
        res[col] = pd.array([pd.NA if r.get(col) is None else str(out_dir / r[col]) for r in rows], dtype="string")
    return res


def run_prep(manifest_path: Path, out_dir: Path, cfg: PrepConfig, workers: int = 1, overwrite: bool = False,
             strict: bool = False, preview: int = 0, limit: int | None = None) -> Manifest:
    """Process every image of the manifest into ``out_dir`` (resumable) and write ``out_dir/manifest.parquet``."""
    cfg.validate()
    m = read_manifest(manifest_path)
    df = m.df if limit is None else m.df.head(limit)
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)
    write_json_atomic(out_dir / "prep_config.json", asdict(cfg))
    done = read_log(out_dir / LOG)
    digest = cfg.digest()
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    records = dict(done)
    t0 = time.perf_counter()
    worker = partial(run_batch, cfg=cfg, cfg_digest=digest)
    with open(out_dir / LOG, "a", encoding="utf-8") as log:
        def consume(results: Iterator[dict[str, Any]]) -> None:
            for rec in track(results, len(df), "prep"):
                counts[rec["status"]] += 1
                if rec["status"] == "skipped":
                    records[rec["sample_id"]] = {**done[rec["sample_id"]], "status": "skipped"}
                    continue
                records[rec["sample_id"]] = rec
                if rec["status"] == "failed":
                    reasons[rec["prep_error"].split(":")[0]] += 1
                log.write(json.dumps(rec, allow_nan=False) + "\n")
                log.flush()  # survives kill -9 (the kernel has the bytes)

        batches = batched(_tasks(df, out_dir, done), task_batch_size(len(df), workers, BATCH))
        if workers <= 1:
            _init_worker()
            consume(rec for recs in map(worker, batches) for rec in recs)
        else:
            with mp_context(PRELOAD).Pool(workers, initializer=_init_worker) as pool:
                consume(rec for recs in pool.imap_unordered(worker, batches) for rec in recs)
    elapsed = time.perf_counter() - t0
    processed = counts["done"] + counts["failed"]

    res = records_to_columns(df, records, out_dir)
    prov = [*m.provenance, provenance_record("prep", asdict(cfg), [{"path": str(Path(manifest_path).resolve()),
                                                                     "kind": "manifest", "fingerprint": m.fingerprint()}])]
    out_m = Manifest(df=res, classes=m.classes, provenance=prov, extra=m.extra)
    write_manifest(out_m, out_dir / "manifest.parquet", overwrite=True)

    rate = processed / elapsed if elapsed > 0 else 0.0
    info(f"prep: {counts['done']} processed, {counts['skipped']} already done (skipped), {counts['failed']} failed "
         f"in {elapsed:.1f}s ({rate:,.1f} images/s, {workers} worker(s))")
    if reasons:
        from rich.table import Table

        t = Table("failure", "images", title="prep failures (details in the prep_error column)")
        for r, n in reasons.most_common():
            t.add_row(r, str(n))
        out.print(t)
    if preview:
        write_preview(res, cfg, out_dir / "preview.png", preview)
        info(f"preview: {out_dir / 'preview.png'}")
    out.print(f"wrote {out_dir / 'manifest.parquet'}")
    n_failed = int(res["prep_error"].notna().sum())
    if strict and n_failed:
        raise LesionkitError(f"{n_failed} image(s) failed prep (--strict)",
                             hint=f"see the prep_error column: lesionkit manifest show {out_dir / 'manifest.parquet'}")
    return out_m


MASK_COLOURS = {"hair": (255, 0, 0), "ink": (0, 90, 255), "ruler": (255, 220, 0), "sticker": (0, 220, 220), "lesion": (0, 255, 0), "fov": (255, 0, 255)}


def write_preview(df: pd.DataFrame, cfg: PrepConfig, path: Path, n: int, thumb: int = 192) -> None:
    """Contact sheet: one row per image — original | masks over the processed geometry | result."""
    import cv2

    from lesionkit.prep.decode import decode_image

    ok = df[df["prep_error"].isna()].head(n)
    rows = []
    for _, r in ok.iterrows():
        data = Path(r["image_path"]).read_bytes()
        orig, _ = decode_image(data, min_side=thumb)
        res = prep_image(data, cfg)
        before = _fit(orig, thumb)
        overlay = res.geometry_only.copy() if res.geometry_only is not None else res.image.copy()
        for name, colour in MASK_COLOURS.items():
            mk = res.masks.get(name)
            if mk is None:
                continue
            if name in ("lesion", "fov"):
                cnts, _ = cv2.findContours(mk.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                cv2.drawContours(overlay, cnts, -1, colour, max(1, overlay.shape[0] // 150))
            else:
                overlay[mk] = (0.35 * overlay[mk] + 0.65 * np.array(colour)).astype(np.uint8)
        row = np.concatenate([before, _fit(overlay, thumb), _fit(res.image, thumb)], axis=1)
        label = f"{r['sample_id']}"[:28]
        cv2.putText(row, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(row)
    if not rows:
        warn("no successfully processed image to preview")
        return
    sheet = np.concatenate(rows, axis=0)
    ok_, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def _fit(img: np.ndarray, size: int) -> np.ndarray:
    """Letterbox into size×size (aspect kept) for the contact sheet."""
    import cv2

    h, w = img.shape[:2]
    s = size / max(h, w)
    small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((size, size, 3), np.uint8)
    y, x = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas
