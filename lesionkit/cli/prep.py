from __future__ import annotations

from pathlib import Path

import typer


def prep(
    manifest: Path = typer.Argument(..., help="Input manifest (.parquet)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: images/, masks/, prep_log.jsonl, manifest.parquet, preview.png."),
    size: int = typer.Option(512, "--size", help="Output size in pixels (long side for resize; side for square crops)."),
    resize_mode: str = typer.Option("resize", "--resize-mode", help="resize (aspect kept) | center-crop | fov-crop | lesion-crop."),
    pad: bool = typer.Option(False, "--pad", help="With --resize-mode resize: pad to a size×size square."),
    lesion_frac: float = typer.Option(0.5, "--lesion-frac", help="lesion-crop: fraction of the crop the lesion should cover."),
    hair: str = typer.Option("none", "--hair", help="Hair removal preset: none | lesionkit (dark + light hair) | bevan (published reference) | ..."),
    gamma: str = typer.Option("none", "--gamma", help="none | auto (from the skin's mean luminance) | a number (e.g. 1.2 brightens)."),
    color_constancy: str = typer.Option("none", "--color-constancy", help="none | shades-of-gray."),
    sog_p: float = typer.Option(6.0, "--sog-p", help="Minkowski p of shades-of-gray (1 = grey world)."),
    inpaint: str = typer.Option("", "--inpaint", help="Confounders to remove, comma-separated: ink,ruler."),
    inpaint_method: str = typer.Option("mishra", "--inpaint-method", help="mishra (patch dominant colour) | telea | ns."),
    image_format: str = typer.Option("jpg", "--image-format", help="jpg | png."),
    jpeg_quality: int = typer.Option(95, "--jpeg-quality", help="JPEG quality 50-100."),
    save_masks: bool = typer.Option(False, "--save-masks", help="Also write hair / ink / ruler / lesion / FOV masks as PNG."),
    max_pixels: int = typer.Option(178_956_970, "--max-pixels", help="Refuse images with more pixels (decompression bombs)."),
    min_input_side: int = typer.Option(32, "--min-input-side", help="Record images whose short side is smaller as failed (too small)."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes."),
    preview: int = typer.Option(0, "--preview", help="Write preview.png with N rows: original | masks | result."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 if any image failed (the run still completes)."),
    limit: int = typer.Option(None, "--limit", help="Only the first N rows (for trying settings)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo everything (otherwise finished images are skipped)."),
) -> None:
    """Preprocess images: scaled decode, resize / crops, hair removal, confounder inpainting, colour constancy, gamma.

    Resumable: re-running skips images whose input bytes and settings are unchanged; a killed run resumes.
    Failures are recorded per image in the prep_error column and summarised.

    Example: lesionkit prep work/ham.parquet --out work/prep512 --size 512 --hair lesionkit --workers 2 --preview 8
    """
    from lesionkit.prep.pipeline import PrepConfig
    from lesionkit.prep.run import run_prep

    kinds = tuple(k.strip() for k in inpaint.split(",") if k.strip())
    cfg = PrepConfig(size=size, resize_mode=resize_mode, pad=pad, lesion_frac=lesion_frac, hair=hair, gamma=gamma,
                     color_constancy=color_constancy, sog_p=sog_p, inpaint=kinds, inpaint_method=inpaint_method,
                     image_format=image_format, jpeg_quality=jpeg_quality, save_masks=save_masks, max_pixels=max_pixels,
                     min_input_side=min_input_side)
    run_prep(manifest, out, cfg, workers=workers, overwrite=overwrite, strict=strict, preview=preview, limit=limit)
