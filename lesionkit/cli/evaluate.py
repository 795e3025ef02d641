from __future__ import annotations

from pathlib import Path

import typer


def evaluate(
    run: Path = typer.Argument(..., help="Run directory written by `lesionkit train` (RUN/checkpoints, RUN/config.yaml)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last | snapshots (SGDR snapshot ensemble) | snapshots:K (the last K snapshots) | PATH of a .pt file."),
    manifest: Path = typer.Option(None, "--manifest", help="Manifest (default: the one the run was trained on)."),
    splits: Path = typer.Option(None, "--splits", help="splits.json (default: the run's)."),
    split: str = typer.Option("test", "--split", help="test | val (the run's validation fold)."),
    ids: Path = typer.Option(None, "--ids", help="Evaluate these sample ids instead (text: one per line; csv/parquet: sample_id column)."),
    tta: str = typer.Option("none", "--tta", help="none | flips8 (identity, flips and transposes: the 8 symmetries of the square)."),
    ensemble: list[Path] = typer.Option(None, "--ensemble", help="Another run to ensemble with RUN (repeatable)."),
    ensemble_method: str = typer.Option("mean", "--ensemble-method", help="mean (of probabilities) | rank (average of normalised ranks, ISIC 2020 winners)."),
    threshold: str = typer.Option("youden", "--threshold", help="Binary decision threshold chosen on VALIDATION predictions: youden | gmean | sensitivity:0.9 | fixed:0.5."),
    positive: str = typer.Option("auto", "--positive", help="Binary target of a multi-class model: auto (malignant diagnoses: mel, bcc, akiec, scc...) | none | CLASS[,CLASS]."),
    pauc_min_tpr: float = typer.Option(0.8, "--pauc-min-tpr", help="Partial AUC above this TPR (ISIC 2024: 0.8, max 0.2)."),
    group_by: str = typer.Option("auto", "--group-by", help="Comma-separated groups: fitzpatrick_est,fitzpatrick,ita_category,sex,age_bin,anatom_site,hair,ink (auto: those present), fitzpatrick_group / fitzpatrick_est_group (I-II, III-IV, V-VI) | none."),
    min_group_size: int = typer.Option(10, "--min-group-size", help="Groups smaller than this are reported but left out of gaps / fairness differences."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap replicates for 95% CIs (patients / lesions resampled when the manifest has them); 0 = no CIs."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass."),
    workers: int = typer.Option(2, "--workers", "-j", help="DataLoader worker processes (0 = decode in this process)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    amp: str = typer.Option("auto", "--amp", help="auto (bf16 on CUDA, off on CPU) | off | bf16 | fp16."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Decode images even when the training image cache exists."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the PNG figures (faster; the report keeps its tables)."),
    tag: str = typer.Option(None, "--tag", help="Output name under RUN/eval/ (default: SPLIT-CHECKPOINT-TTA)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default RUN/eval/TAG)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
) -> None:
    """Evaluate a trained run: predictions, metrics with bootstrap CIs, per-group fairness tables, plots, report.html.

    Writes RUN/eval/TAG/{predictions.parquet, metrics.json, *.png, report.html}. The binary target's threshold is
    chosen on the run's validation fold and applied to the evaluated split.

    Example: lesionkit evaluate runs/ham-r18 --split test --tta flips8 --group-by sex,age_bin,anatom_site
    """
    from lesionkit.evaluate.run import EvalConfig, run_evaluate

    cfg = EvalConfig(run=run, checkpoint=checkpoint, manifest=manifest, splits=splits, split=split, ids=ids, tta=tta,
                     ensemble=list(ensemble or []), ensemble_method=ensemble_method, threshold=threshold,
                     positive=positive, pauc_min_tpr=pauc_min_tpr, group_by=group_by, min_group_size=min_group_size,
                     n_boot=n_boot, seed=seed, batch_size=batch_size, workers=workers, device=device, amp=amp,
                     cache=not no_cache, plots=not no_plots, tag=tag, out=out, overwrite=overwrite)
    run_evaluate(cfg)
