"""Synthetic: a folder written by ``lesionkit synth`` (``manifest.parquet`` + ``images/`` + ``masks/``).

The folder's own manifest is re-emitted with absolute image and mask paths, keeping every ground-truth
column (``ita_true``, ``skin_L/a/b``, artefact flags, ``lesion_frac``, mask paths). Classes benign / malignant;
``patient_id`` is the grouping key (several images per patient, several per lesion).
"""

from __future__ import annotations

import os

import pandas as pd

from lesionkit.console import warn
from lesionkit.errors import InputError
from lesionkit.manifest.importers import ImportOptions, ImportResult
from lesionkit.manifest.importers._common import attach_images, find_file

NAME = "synthetic"
HELP = "folder written by `lesionkit synth` (manifest.parquet + images/ + masks/); benign/malignant with ground-truth ITA and artefact masks"
CLASSES = ["benign", "malignant"]
MASK_COLUMNS = ["lesion_mask_path", "hair_mask_path", "ink_mask_path", "ruler_mask_path", "fov_mask_path"]
GROUND_TRUTH = ["ita_true", "skin_L", "skin_a", "skin_b", "hair_dark", "hair_light", "ink", "ruler", "fov", "lesion_frac"]


def build(opts: ImportOptions) -> ImportResult:
    from lesionkit.manifest.io import read_manifest

    path = find_file(opts.source, ["manifest.parquet"], "manifest.parquet written by `lesionkit synth`", NAME)
    m = read_manifest(path)
    missing = [c for c in [*GROUND_TRUTH, *MASK_COLUMNS] if c not in m.df.columns]
    if missing or m.classes != CLASSES:
        raise InputError(
            f"{path} is a manifest but not one written by `lesionkit synth`",
            details=[f"missing column(s): {', '.join(missing)}" if missing else f"classes {m.classes} (expected {CLASSES})"],
            hint="generate one with `lesionkit synth --out DIR`, or import this manifest's source with its own --format",
        )
    df = m.df.copy()
    df["source"] = NAME
    if opts.images:
        df = attach_images(df, df["sample_id"], opts.images, NAME, opts.allow_missing_images)
    else:
        df["image_path"] = m.image_paths()
        exists = df["image_path"].map(lambda p: pd.notna(p) and os.path.isfile(p)).astype(bool)
        n_missing = int((~exists).sum())
        if n_missing:
            examples = ", ".join(df.loc[~exists, "sample_id"].head(5).tolist())
            if not opts.allow_missing_images:
                raise InputError(
                    f"--format {NAME}: {n_missing} of {len(df)} images listed in {path} are missing (e.g. {examples})",
                    hint="regenerate the folder with `lesionkit synth --overwrite`, or pass --allow-missing-images",
                )
            warn(f"{n_missing} of {len(df)} images listed in {path} are missing; image_path left empty")
            df.loc[~exists, "image_path"] = pd.NA
    inputs = [path, *[d for d in (path.parent / "images", path.parent / "masks") if d.is_dir()], *opts.images]
    return ImportResult(
        df=df, classes=CLASSES, inputs=inputs,
        notes={"binary_target": "malignant = label (benign 0, malignant 1)", "group_by": "patient_id",
               "fitzpatrick": "derived from ita_true (Kinyanjui thresholds), ground truth rather than a human label"},
    )
