from __future__ import annotations

from pathlib import Path

import typer


def split(
    manifest: Path = typer.Argument(..., help="Manifest (.parquet)."),
    out: Path = typer.Option(..., "--out", "-o", help="splits.json to write."),
    folds: int = typer.Option(5, "--folds", "-k", help="Number of cross-validation folds."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed + manifest → same split)."),
    group_by: str = typer.Option("auto", "--group-by", help="auto (patient_id, else lesion_id) | patient_id | lesion_id | none | COLUMN."),
    stratify: str = typer.Option("label", "--stratify", help="Column whose proportions each fold keeps (label, malignant, ...)."),
    test_frac: float = typer.Option(0.0, "--test-frac", help="Hold out a grouped, stratified test set first (rounded to 1/k: 0.2 → 1/5)."),
    allow_leakage: bool = typer.Option(False, "--allow-leakage", help="Allow an image-level split of a dataset with patient/lesion groups."),
    from_file: Path = typer.Option(None, "--from-file", help="Import an official split: CSV with an id column and a split column."),
    id_column: str = typer.Option(None, "--id-column", help="Id column of --from-file (default: first of sample_id, image_id, image_name, ...)."),
    split_column: str = typer.Option("split", "--split-column", help="Split column of --from-file (values train/val/test)."),
    from_column: str = typer.Option(None, "--from-column", help="Use the manifest's own official split column (e.g. split)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Make grouped, stratified cross-validation folds (or import an official split), with a balance and leakage report.

    Example: lesionkit split work/ham.parquet --out work/ham_splits.json --folds 5 --test-frac 0.2 --seed 0
    """
    from lesionkit.errors import UsageError
    from lesionkit.splits.run import run_split

    if from_file is not None and from_column is not None:
        raise UsageError("--from-file and --from-column are exclusive", hint="pass one of them")
    run_split(manifest, out, n_folds=folds, seed=seed, group_by=group_by, stratify=stratify, test_frac=test_frac,
              allow_leakage=allow_leakage, from_file=from_file, id_column=id_column, split_column=split_column,
              from_column=from_column, overwrite=overwrite)
