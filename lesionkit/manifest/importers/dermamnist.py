"""DermaMNIST (MedMNIST v2 / MedMNIST+): ``dermamnist.npz`` (``dermamnist_64/128/224.npz``) with
``{train,val,test}_{images,labels}``; images uint8 (N, H, W, 3) RGB, labels (N, 1) in 0..6.

The images only exist inside the array file, so the importer writes each one as a PNG into
``<out stem>_images/`` beside ``--out`` (atomically: a temporary folder renamed into place once every image is
written). That folder is replaced only together with its manifest: if it exists while ``--out`` does not, the
build stops rather than overwrite it. ``sample_id`` = ``dermamnist_<split>_<index:05d>`` (index within the
split), ``split`` = the official split. The seven classes are HAM10000's, in the same order (DermaMNIST is
HAM10000 resized); ``malignant`` = mel / bcc / akiec. DermaMNIST has no lesion ids: its official split leaks
lesions between train and test (see the dermamnist_c_corrected split for a leak-free alternative).
"""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from lesionkit.console import info
from lesionkit.errors import InputError, OutputExistsError, UsageError
from lesionkit.fsio import atomic_dir
from lesionkit.manifest.importers import ImportOptions, ImportResult
from lesionkit.manifest.importers._common import find_file
from lesionkit.manifest.importers.ham10000 import CLASSES as HAM_CLASSES
from lesionkit.manifest.importers.ham10000 import MALIGNANT as HAM_MALIGNANT

NAME = "dermamnist"
HELP = "MedMNIST dermamnist.npz (any size); writes PNGs to <out stem>_images/ beside --out; HAM10000's 7 classes, official split"
CLASSES = list(HAM_CLASSES)
MALIGNANT = set(HAM_MALIGNANT)
SPLITS = ("train", "val", "test")
KEYS = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels")]
NPZ_FILES = ["dermamnist.npz", "dermamnist_28.npz", "dermamnist_64.npz", "dermamnist_128.npz", "dermamnist_224.npz"]


def images_dir(out: Path) -> Path:
    """Where the PNGs of a manifest written to ``out`` go: ``<out stem>_images/`` beside it."""
    out = Path(out)
    return out.with_name(f"{out.stem}_images")


def _load(npz: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(npz, allow_pickle=False) as f:
            found = list(f.files)
            missing = [k for k in KEYS if k not in found]
            if missing:
                raise InputError(
                    f"--format {NAME}: {npz} lacks array(s) {', '.join(missing)}",
                    details=[f"expected: {', '.join(KEYS)}", f"found:    {', '.join(found) or '(none)'}"],
                    hint="pass the MedMNIST dermamnist.npz (https://medmnist.com)",
                )
            return {k: f[k] for k in KEYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"--format {NAME}: {npz} is not a readable .npz file ({e})",
                         hint="pass the MedMNIST dermamnist.npz (download it again if it is truncated)") from None


def _check(arrays: dict[str, np.ndarray], npz: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(
                f"--format {NAME}: {npz}: {split}_images must be uint8 (N, H, W, 3) RGB; found {images.dtype} {images.shape}",
                hint="pass the MedMNIST dermamnist.npz",
            )
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or len(labels) != len(images):
            raise InputError(
                f"--format {NAME}: {npz}: {split}_labels must be (N, 1) with N = {len(images)} (the number of "
                f"{split}_images); found {labels.shape}",
                hint="pass the MedMNIST dermamnist.npz",
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise InputError(f"--format {NAME}: {npz}: {split}_labels must be integers; found {labels.dtype}")
        bad = (labels < 0) | (labels >= len(CLASSES))
        if bad.any():
            raise InputError(
                f"--format {NAME}: {npz}: {split}_labels has {int(bad.sum())} value(s) outside 0..{len(CLASSES) - 1} "
                f"(e.g. {sorted(set(labels[bad].tolist()))[:5]} at index {np.flatnonzero(bad)[:5].tolist()})",
                details=[f"class list: {', '.join(CLASSES)}"],
                hint="DermaMNIST has 7 classes; is this another MedMNIST dataset?",
            )
        out[split] = (images, labels.astype(np.int64))
    return out


def _write_png(args: tuple[str, np.ndarray]) -> None:
    import cv2

    path, rgb = args
    if not cv2.imwrite(path, np.ascontiguousarray(rgb[..., ::-1])):  # OpenCV writes BGR
        raise OSError(f"could not write {path}")


def build(opts: ImportOptions) -> ImportResult:
    if opts.images:
        raise UsageError(f"--images is not used by --format {NAME}: the images are inside the .npz",
                         hint=f"lesionkit manifest build dermamnist.npz --format {NAME} --out dermamnist.parquet")
    npz = find_file(opts.source, NPZ_FILES, "dermamnist .npz file", NAME)
    data = _check(_load(npz), npz)

    target = images_dir(opts.out)
    if target.exists() and not Path(opts.out).exists():
        raise OutputExistsError(
            f"image folder exists: {target} (but its manifest {opts.out} does not)",
            hint=f"remove {target} (left by an earlier build?) or choose another --out",
        )
    target = target.absolute()

    rows, jobs = [], []
    for split, (images, labels) in data.items():
        for i, (img, lab) in enumerate(zip(images, labels.tolist(), strict=True)):
            sid = f"{NAME}_{split}_{i:05d}"
            rows.append((sid, split, lab, img.shape[0], img.shape[1]))
            jobs.append((f"{sid}.png", img))
    info(f"{NAME}: writing {len(jobs)} PNGs to {target}")
    with atomic_dir(target) as tmp:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as ex:
            list(ex.map(_write_png, [(str(tmp / name), img) for name, img in jobs], chunksize=256))

    sid, split, label, height, width = (list(c) for c in zip(*rows, strict=True)) if rows else ([],) * 5
    dx = [CLASSES[k] for k in label]
    df = pd.DataFrame(
        {
            "sample_id": pd.array(sid, dtype="string"),
            "source": NAME,
            "image_path": pd.array([str(target / f"{s}.png") for s in sid], dtype="string"),
            "label": pd.array(label, dtype="Int16"),
            "diagnosis": pd.array(dx, dtype="string"),
            "malignant": pd.array([int(d in MALIGNANT) for d in dx], dtype="Int8"),
            "split": pd.array(split, dtype="string"),
            "height": pd.array(height, dtype="Int32"),
            "width": pd.array(width, dtype="Int32"),
        }
    )
    return ImportResult(
        df=df, classes=CLASSES, inputs=[npz],
        notes={"binary_target": "malignant = mel | bcc | akiec", "images_dir": str(target),
               "split": "official MedMNIST split (leaks lesions between splits: no lesion ids)"},
    )
