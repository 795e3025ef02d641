"""A folder of class folders: ``SOURCE/<class>/**/<image>`` (any of the usual image extensions).

Class names are the sorted sub-folder names; images are found recursively under each class folder (hidden
files and folders are skipped). ``sample_id`` = the image's path relative to SOURCE without its extension, with
``/`` separators (e.g. ``mel/patient3/img_001``). An empty class folder stops the build (a class without
examples is almost always a mistake). No clinical metadata: ``malignant`` and the grouping columns are <NA>.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from lesionkit.console import warn
from lesionkit.errors import InputError, UsageError
from lesionkit.manifest.importers import ImportOptions, ImportResult
from lesionkit.manifest.importers._common import IMAGE_EXTS, add_image_sizes, map_labels

NAME = "folder"
HELP = "a folder with one sub-folder per class (SOURCE/<class>/**/*.jpg|png|...); classes = sorted sub-folder names"
CLASSES: list[str] = []  # taken from the sub-folder names of SOURCE


def _images_under(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTS:
                found.append(Path(root) / name)
    return found


def build(opts: ImportOptions) -> ImportResult:
    if opts.images:
        raise UsageError(f"--images is not used by --format {NAME}: SOURCE is the image folder",
                         hint=f"lesionkit manifest build IMAGES_DIR --format {NAME} --out manifest.parquet")
    source = Path(opts.source)
    if not source.exists():
        raise InputError(f"--format {NAME}: source not found: {source}", hint="pass the folder that holds one sub-folder per class")
    if not source.is_dir():
        raise InputError(f"--format {NAME}: SOURCE must be a folder, got the file {source}",
                         hint="pass the folder that holds one sub-folder per class")
    classes = sorted(d.name for d in source.iterdir() if d.is_dir() and not d.name.startswith("."))
    loose = [f for f in source.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS]
    if not classes:
        raise InputError(
            f"--format {NAME}: {source} has no sub-folders"
            + (f" ({len(loose)} image(s) directly inside it)" if loose else ""),
            hint=f"put the images in one sub-folder per class, e.g. {source}/benign/ and {source}/malignant/",
        )
    if loose:
        warn(f"{len(loose)} image(s) directly in {source} are not in a class folder and were skipped (e.g. {loose[0].name})")

    rows = []
    empty = []
    for cls in classes:
        found = _images_under(source / cls)
        if not found:
            empty.append(cls)
        for p in found:
            rel = p.relative_to(source).with_suffix("").as_posix()
            rows.append((rel, cls, str(p.absolute())))
    if empty:
        raise InputError(
            f"--format {NAME}: {len(empty)} class folder(s) under {source} hold no images: {', '.join(empty)}",
            details=[f"image extensions: {', '.join(IMAGE_EXTS)}"],
            hint="remove the empty folders (or add their images); every sub-folder of SOURCE is a class",
        )
    ids = pd.Series([r[0] for r in rows], dtype="string")
    dup = ids.duplicated(keep=False)
    if dup.any():
        same = [str(Path(r[2]).relative_to(source.absolute())) for r, d in zip(rows, dup, strict=True) if d]
        raise InputError(
            f"--format {NAME}: {int(ids[dup].nunique())} image(s) differ only by extension, so their sample_id "
            f"would repeat: {', '.join(same[:6])}",
            hint="keep one file per image (remove or rename the copies)",
        )
    names = pd.Series([r[1] for r in rows], dtype="string")
    df = pd.DataFrame(
        {
            "sample_id": ids,
            "source": NAME,
            "image_path": pd.Series([r[2] for r in rows], dtype="string"),
            "label": map_labels(names, classes, source, "class folder"),
            "diagnosis": names,
        }
    )
    df = add_image_sizes(df, opts.read_image_size)
    return ImportResult(df=df, classes=classes, inputs=[source], notes={"classes_from": "sub-folder names"})
