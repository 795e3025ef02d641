"""Helpers shared by importers: strict CSV reading, image lookup, label mapping, header-only image sizes."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from lesionkit.console import info, warn
from lesionkit.errors import InputError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def find_file(source: Path, candidates: Sequence[str], what: str, fmt: str) -> Path:
    """``source`` itself when it is a file, else the first of ``candidates`` inside the folder ``source``."""
    source = Path(source)
    if source.is_file():
        return source
    if not source.exists():
        raise InputError(f"--format {fmt}: source not found: {source}", hint=f"pass the {what} or the folder that holds it")
    for c in candidates:
        if (source / c).is_file():
            return source / c
    raise InputError(
        f"--format {fmt}: no {what} in {source} (looked for: {', '.join(candidates)})",
        hint=f"pass the {what} itself as SOURCE",
    )


def read_csv(path: Path, required: Iterable[str], fmt: str) -> pd.DataFrame:
    """Read a CSV as strings (``<NA>`` for empty cells); clear errors for encoding and missing columns."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype="string", keep_default_na=True, encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path} is not UTF-8 (byte {e.object[e.start:e.start + 1]!r} at offset {e.start})",
            hint=f"re-encode it, e.g. `iconv -f latin1 -t utf-8 {path} > fixed.csv`, and pass fixed.csv",
        ) from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} is empty", hint="pass the dataset's metadata CSV") from None
    except pd.errors.ParserError as e:
        raise InputError(f"{path} is not a well-formed CSV: {e}") from None
    df.columns = [c.strip() for c in df.columns]
    require_columns(df, required, path, fmt)
    return df


def require_columns(df: pd.DataFrame, required: Iterable[str], path: Path, fmt: str) -> None:
    required = list(required)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)} for --format {fmt}",
            details=[f"expected: {', '.join(required)}", f"found:    {', '.join(map(str, df.columns))}"],
            hint=f"is this the right file for --format {fmt}? `lesionkit manifest build --format list` describes each layout",
        )


def check_unique(ids: pd.Series, path: Path, column: str) -> None:
    dup = ids[ids.duplicated(keep=False)].dropna()
    if len(dup):
        first = list(dict.fromkeys(dup.tolist()))[:5]
        raise InputError(
            f"{path}: {dup.nunique()} {column} value(s) appear more than once ({len(dup)} rows), e.g. {', '.join(first)}",
            hint="each image must be listed once; remove the duplicate rows (e.g. with pandas drop_duplicates) and rerun",
        )


def index_metadata(meta: pd.DataFrame, id_col: str, ids: pd.Series, path: Path, what: str, hint: str) -> tuple[pd.DataFrame, pd.Series]:
    """Index a metadata table by its (stripped, unique) ``id_col``; return it and which ``ids`` it covers.

    No overlap at all is an error (wrong file); partial overlap is reported and the rest left ``<NA>``.
    """
    meta = meta.copy()
    meta[id_col] = meta[id_col].str.strip()
    check_unique(meta[id_col], path, id_col)
    meta = meta.set_index(id_col)
    matched = ids.isin(meta.index)
    if not matched.any():
        raise InputError(f"{path}: none of its {id_col} values match {what}", hint=hint)
    if not matched.all():
        warn(f"{path.name}: no metadata for {int((~matched).sum())} of {len(ids)} images (left empty)")
    return meta, matched


def map_labels(names: pd.Series, classes: list[str], path: Path, column: str) -> pd.Series:
    """Class names -> Int16 indices into ``classes``; unknown names are an error that lists them."""
    index = {c: i for i, c in enumerate(classes)}
    known = names.isna() | names.isin(list(index))
    if not known.all():
        bad = names[~known].value_counts()
        raise InputError(
            f"{path}: column {column} has value(s) outside the class list: "
            + ", ".join(f"{k!r} ({v} rows)" for k, v in bad.head(10).items()),
            details=[f"class list: {', '.join(classes)}"],
            hint="fix the values, or build with --format folder / a custom class list",
        )
    return names.map(index).astype("Int16")


def index_images(dirs: Sequence[Path], exts: Sequence[str] = IMAGE_EXTS, recursive: bool = True) -> dict[str, str]:
    """Map file stem -> absolute path for images under ``dirs`` (first found wins). One directory walk."""
    found: dict[str, str] = {}
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        walker = os.walk(d) if recursive else [(str(d), [], os.listdir(d))]
        for root, subdirs, files in walker:
            subdirs.sort()
            for name in sorted(files):
                stem, ext = os.path.splitext(name)
                if ext.lower() in exts and stem not in found:
                    found[stem] = os.path.abspath(os.path.join(root, name))
    return found


def attach_images(
    df: pd.DataFrame,
    ids: pd.Series,
    dirs: Sequence[Path],
    fmt: str,
    allow_missing: bool,
    stem_suffixes: Sequence[str] = ("",),
) -> pd.DataFrame:
    """Fill ``image_path`` by looking up ``ids`` (+ optional stem suffixes) in ``dirs``.

    Missing images stop the build (count + first examples) unless ``allow_missing``, which leaves
    ``image_path`` ``<NA>`` for them (a metadata-only manifest, e.g. for split planning).
    """
    dirs = [Path(d) for d in dirs]
    existing = [d for d in dirs if d.is_dir()]
    index = index_images(existing) if existing else {}
    paths = []
    for i in ids.tolist():
        p = pd.NA
        for suf in stem_suffixes:
            p = index.get(f"{i}{suf}", pd.NA)
            if p is not pd.NA:
                break
        paths.append(p)
    out = df.copy()
    out["image_path"] = pd.array(paths, dtype="string")
    missing = out["image_path"].isna()
    n_missing = int(missing.sum())
    if n_missing:
        examples = ", ".join(map(str, ids[missing].head(5).tolist()))
        where = ", ".join(map(str, dirs)) or "(no image folder given or found)"
        if not allow_missing:
            raise InputError(
                f"--format {fmt}: {n_missing} of {len(out)} images not found in {where} (e.g. {examples})",
                hint="pass the image folder with --images DIR, or --allow-missing-images for a metadata-only manifest",
            )
        warn(f"{n_missing} of {len(out)} images not found in {where}; image_path left empty (metadata-only rows)")
    return out


def _size(path: str) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:  # header only, no decode
            w, h = im.size
            return h, w
    except Exception:
        return -1, -1


def add_image_sizes(df: pd.DataFrame, enabled: bool = True) -> pd.DataFrame:
    """Fill ``height``/``width`` from image headers (no decode); unreadable headers stay ``<NA>``."""
    out = df.copy()
    n = len(out)
    h = np.full(n, -1, dtype=np.int64)
    w = np.full(n, -1, dtype=np.int64)
    have = out["image_path"].notna().to_numpy() if "image_path" in out else np.zeros(n, bool)
    if enabled and have.any():
        paths = out.loc[have, "image_path"].tolist()
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as ex:
            sizes = list(ex.map(_size, paths, chunksize=64))
        h[have] = [s[0] for s in sizes]
        w[have] = [s[1] for s in sizes]
        bad = int(sum(1 for s in sizes if s[0] < 0))
        if bad:
            info(f"{bad} image header(s) unreadable; `lesionkit manifest validate --check-files` lists them")
    out["height"] = pd.array(np.where(h >= 0, h, 0), dtype="Int32")
    out["width"] = pd.array(np.where(w >= 0, w, 0), dtype="Int32")
    out.loc[h < 0, ["height", "width"]] = pd.NA
    return out


def normalise_sex(s: pd.Series) -> pd.Series:
    """male/female in any case; anything else (unknown, empty) -> <NA>."""
    low = s.astype("string").str.strip().str.lower()
    low = low.replace({"m": "male", "f": "female"})
    return low.where(low.isin(["male", "female"]), pd.NA).astype(pd.CategoricalDtype(["female", "male"]))


def normalise_site(s: pd.Series) -> pd.Series:
    low = s.astype("string").str.strip().str.lower()
    return low.where(~low.isin(["unknown", "", "nan"]), pd.NA)


def to_float(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("Float32")
