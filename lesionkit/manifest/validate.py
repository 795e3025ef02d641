"""``manifest validate``: every problem at once (columns, dtypes, ids, labels, values, files), then exit 1 if any.

``--check-files`` decodes every image in a process pool and lists the unreadable ones (zero-byte,
not an image, truncated); the run always completes.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from lesionkit.console import out, track
from lesionkit.errors import ValidationFailed
from lesionkit.fsio import write_json_atomic
from lesionkit.manifest.io import read_metadata, resolve_paths
from lesionkit.manifest.schema import (
    COLUMNS,
    FITZPATRICK_RANGE,
    SEX_VALUES,
    SPLIT_VALUES,
    dtype_matches,
    dtype_name,
)
from lesionkit.parallel import mp_context


@dataclass
class Problem:
    kind: str
    column: str | None
    message: str
    count: int = 1
    examples: list[str] = field(default_factory=list)


def _examples(values: pd.Series, k: int = 5) -> list[str]:
    return [str(v) for v in values.head(k).tolist()]


def check_image(path: str) -> str | None:
    """Decode one image fully. ``None`` when it decodes; otherwise the reason (zero-byte, not an image, truncated...)."""
    from PIL import Image

    try:
        size = os.path.getsize(path)
    except OSError as e:
        return f"cannot stat: {e.strerror}"
    if size == 0:
        return "zero-byte file"
    try:
        with Image.open(path) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                return "empty image"
    except Image.DecompressionBombError as e:
        return f"decompression bomb: {e}"
    except Exception as e:  # PIL raises OSError/SyntaxError/ValueError depending on the codec
        msg = str(e)
        if "truncated" in msg.lower():
            return "truncated image"
        return f"unreadable: {type(e).__name__}: {msg}"
    return None


def _check_chunk(paths: list[str]) -> list[str | None]:
    return [check_image(p) for p in paths]


def check_image_files(paths: list[str], workers: int = 2, chunk: int = 64) -> list[str | None]:
    """Decode ``paths`` with ``workers`` processes; returns one reason (or ``None``) per path, in order."""
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    results: list[str | None] = []
    if workers <= 1:
        for c in track(chunks, len(chunks), "check-files", unit="chunk"):
            results.extend(_check_chunk(c))
        return results
    with mp_context().Pool(workers) as pool:
        for r in track(pool.imap(_check_chunk, chunks), len(chunks), f"check-files ({chunk} img/chunk)", unit="chunk"):
            results.extend(r)
    return results


def validate_frame(df: pd.DataFrame, classes: list[str], root: Path) -> list[Problem]:
    """All contract problems of a raw (not yet coerced) manifest table."""
    problems: list[Problem] = []
    missing = [c for c, col in COLUMNS.items() if col.required and c not in df.columns]
    if missing:
        problems.append(Problem("missing column", ", ".join(missing), f"required column(s) missing: {', '.join(missing)}", len(missing)))
    for name, col in COLUMNS.items():
        if name in df.columns and df[name].notna().any() and not dtype_matches(df[name], col.dtype):
            problems.append(Problem("wrong dtype", name, f"expected {col.dtype}, found {dtype_name(df[name])}"))
    if not classes:
        problems.append(Problem("no class list", None, "file metadata has an empty class list"))
    if "sample_id" in df.columns:
        ids = df["sample_id"]
        if ids.isna().any():
            problems.append(Problem("missing sample_id", "sample_id", "rows without sample_id", int(ids.isna().sum())))
        dup = ids[ids.duplicated(keep=False) & ids.notna()]
        if len(dup):
            problems.append(Problem("duplicate sample_id", "sample_id", f"{dup.nunique()} id(s) on {len(dup)} rows",
                                    int(dup.nunique()), _examples(pd.Series(dup.unique()))))
    if "label" in df.columns and classes:
        lab = pd.to_numeric(df["label"], errors="coerce")
        bad = lab.notna() & ((lab < 0) | (lab >= len(classes)) | (lab % 1 != 0))
        if bad.any():
            problems.append(Problem("label outside class list", "label",
                                    f"labels must be 0..{len(classes) - 1} ({len(classes)} classes: {', '.join(classes)})",
                                    int(bad.sum()), _examples(df.loc[bad, "sample_id"].astype(str) + "=" + lab[bad].astype(str))))
    lo, hi = FITZPATRICK_RANGE
    allowed = {
        "fitzpatrick": (lambda s: pd.to_numeric(s, errors="coerce").between(lo, hi), f"human Fitzpatrick type {lo}..{hi} or <NA> (never -1)"),
        "malignant": (lambda s: pd.to_numeric(s, errors="coerce").isin([0, 1]), "0 / 1 or <NA>"),
        "split": (lambda s: s.astype("string").isin(list(SPLIT_VALUES)), f"one of {', '.join(SPLIT_VALUES)} or <NA>"),
        "sex": (lambda s: s.astype("string").isin(list(SEX_VALUES)), f"one of {', '.join(SEX_VALUES)} or <NA>"),
        "age_approx": (lambda s: pd.to_numeric(s, errors="coerce").between(0, 120), "years in 0..120 or <NA>"),
    }
    for name, (ok, expected) in allowed.items():
        if name not in df.columns:
            continue
        s = df[name]
        bad = s.notna() & ~ok(s).fillna(False).astype(bool)
        if bad.any():
            problems.append(Problem("value out of range", name, f"expected {expected}", int(bad.sum()),
                                    _examples(df.loc[bad, "sample_id"].astype(str) + "=" + s[bad].astype(str))))
    if "image_path" in df.columns:
        paths = resolve_paths(df["image_path"], root)
        have = paths.notna()
        exists = paths[have].map(os.path.exists)
        gone = exists[~exists.astype(bool)]
        if len(gone):
            problems.append(Problem("missing file", "image_path", f"image files not found (relative paths resolve against {root})",
                                    len(gone), _examples(paths[gone.index])))
    return problems


def validate_manifest(path: Path, check_files: bool = False, workers: int = 2) -> tuple[list[Problem], dict[str, Any]]:
    """Validate the manifest at ``path``. Unreadable files / newer schema versions raise; everything else is collected."""
    path = Path(path)
    record = read_metadata(path)  # raises with a clear message for non-manifests / newer schema
    df = pq.read_table(path).to_pandas()
    classes = list(record.get("classes", []))
    problems = validate_frame(df, classes, path.parent)
    stats: dict[str, Any] = {"rows": len(df), "classes": len(classes)}
    if check_files and "image_path" in df.columns:
        paths = resolve_paths(df["image_path"], path.parent)
        todo = paths[paths.notna()]
        todo = todo[todo.map(os.path.exists).astype(bool)]
        t0 = time.perf_counter()
        reasons = check_image_files(todo.tolist(), workers=workers)
        el = time.perf_counter() - t0
        stats.update(checked=len(todo), seconds=round(el, 3), images_per_s=round(len(todo) / el, 1) if el > 0 else None)
        bad = [(p, r) for p, r in zip(todo.tolist(), reasons, strict=True) if r]
        by_reason: dict[str, list[str]] = {}
        for p, r in bad:
            by_reason.setdefault(r.split(":")[0], []).append(f"{p} ({r})")
        for reason, items in by_reason.items():
            problems.append(Problem("unreadable image", "image_path", reason, len(items), items[:10]))
    return problems, stats


def render_problems(path: Path, problems: list[Problem], stats: dict[str, Any], report: Path | None = None) -> None:
    """Print the problems as one table; raise :class:`ValidationFailed` (exit 1) when there are any."""
    from rich.markup import escape
    from rich.table import Table

    if report is not None:
        write_json_atomic(report, {"manifest": str(path), "ok": not problems, "stats": stats, "problems": [asdict(p) for p in problems]})
    if "checked" in stats:
        out.print(f"decoded {stats['checked']} images in {stats['seconds']}s ({stats['images_per_s']} images/s)")
    if not problems:
        out.print(f"[green]OK[/green] {path}: {stats['rows']} rows, {stats['classes']} classes, no problems")
        return
    t = Table("problem", "column", "count", "details", "examples", title=f"{path}: {len(problems)} problem(s)")
    for p in problems:
        t.add_row(p.kind, p.column or "", str(p.count), escape(p.message), escape("\n".join(p.examples)))
    out.print(t)
    raise ValidationFailed(
        f"{len(problems)} problem(s) in {path} (table above)",
        hint="rebuild the manifest with `lesionkit manifest build ... --overwrite` after fixing the source, or fix/remove the listed files",
    )
