from __future__ import annotations

from pathlib import Path

import typer


def label_skintone(
    manifest: Path = typer.Argument(..., help="Input manifest (.parquet): raw or prepped; it is never modified."),
    out: Path = typer.Option(..., "--out", "-o", help="New manifest to write (.parquet) with the skin-tone columns."),
    method: str = typer.Option("mask", "--method", "-m", help="mask (default: healthy-skin mask + robust median) | kmeans | patch-median | bevan (published recipe, atan2)."),
    thresholds: str = typer.Option("kinyanjui", "--thresholds", "-t", help="kinyanjui | groh-empirical | del-bino | five decreasing ITA edges, e.g. 55,41,28,19,10."),
    image_col: str = typer.Option("image_path", "--image-col", help="Path column to read (default: the original images, before gamma / colour constancy)."),
    work_side: int = typer.Option(64, "--work-side", help="Short side (px) images are reduced to before measuring (default 64; not for bevan: 256x256)."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes."),
    plot: Path = typer.Option(None, "--plot", help="Also write the estimated skin-tone distribution as a PNG."),
    limit: int = typer.Option(None, "--limit", help="Only the first N rows (for trying settings)."),
    max_pixels: int = typer.Option(178_956_970, "--max-pixels", help="Refuse images with more pixels (decompression bombs)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out / --plot."),
) -> None:
    """Estimate skin tone (ITA, category, Fitzpatrick estimate) for every image of a manifest.

    Adds ita_deg (atan2 on CIELab D65), ita_L, ita_b, skin_pixels, skin_frac, ita_spread, ita_category,
    fitzpatrick_est (an estimate from colour; the human `fitzpatrick` column is kept as is) and skintone_error
    (the reason when no estimate is possible: grayscale, black, no visible skin, undecodable).

    Example: lesionkit label-skintone work/ham.parquet --out work/ham_skintone.parquet --workers 2 --plot work/ham_skintone.png
    """
    from lesionkit.skintone.run import run_label_skintone
    from lesionkit.skintone.strategies import SkinToneConfig

    cfg = SkinToneConfig(method=method, work_side=work_side)
    run_label_skintone(manifest, out, cfg, thresholds=thresholds, image_col=image_col, workers=workers,
                       overwrite=overwrite, limit=limit, plot=plot, max_pixels=max_pixels)


def skintone_agreement(
    manifest: Path = typer.Argument(..., help="Manifest written by label-skintone (.parquet)."),
    truth: str = typer.Option("fitzpatrick", "--truth", help="Column with the human Fitzpatrick types 1..6."),
    pred: str = typer.Option("fitzpatrick_est", "--pred", help="Column with the estimated types 1..6."),
    truth_ita: str = typer.Option(None, "--truth-ita", help="Reference ITA column (e.g. synthetic ita_true) for median |ΔITA|."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for agreement.json, confusion.csv, ita_by_type.png, estimated_distribution.png."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files in --out."),
) -> None:
    """Agreement of estimated skin tone with human Fitzpatrick labels.

    Exact and ±1 accuracy per human type, confusion matrix, linear-weighted Cohen's κ, Spearman ρ between
    ita_deg and the human type, coarse I–II / III–IV / V–VI agreement; plots of ITA per human type and of the
    estimated vs human distribution.

    Example: lesionkit skintone-agreement work/pad_skintone.parquet --truth fitzpatrick --out work/pad_agreement
    """
    from lesionkit.skintone.run import run_skintone_agreement

    run_skintone_agreement(manifest, truth=truth, pred=pred, out_dir=out, truth_ita=truth_ita, overwrite=overwrite)
