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
    train_groups: str = typer.Option(None, "--train-groups", help="Train on some groups, test on the rest: COLUMN=V1,V2 (e.g. fitzpatrick=1,2 trains on types I-II, tests on III-VI)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Make grouped, stratified cross-validation folds (or import an official split), with a balance and leakage report.

    Example: lesionkit split work/ham.parquet --out work/ham_splits.json --folds 5 --test-frac 0.2 --seed 0

    Skin-type hold-out (train on I-II, test on III-VI; per-group AUC from `lesionkit evaluate --group-by fitzpatrick_group`):
    lesionkit split work/f17k.parquet --out work/f17k_types12.json --train-groups fitzpatrick=1,2
    """
    from lesionkit.errors import UsageError
    from lesionkit.splits.run import run_split

    chosen = [f for f, v in (("--from-file", from_file), ("--from-column", from_column),
                              ("--train-groups", train_groups)) if v is not None]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} are exclusive", hint="pass one of them")
    if train_groups is not None and test_frac:
        raise UsageError("--train-groups with --test-frac: the test set is every row outside the training groups",
                         hint="drop --test-frac")
    run_split(manifest, out, n_folds=folds, seed=seed, group_by=group_by, stratify=stratify, test_frac=test_frac,
              allow_leakage=allow_leakage, from_file=from_file, id_column=id_column, split_column=split_column,
              from_column=from_column, overwrite=overwrite, train_groups=train_groups)
