from __future__ import annotations

import typer


def gradcam(
    run: str = typer.Argument(..., help="Run directory written by `lesionkit train` (config.yaml + checkpoints/)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last | PATH to a checkpoint file."),
    split: str = typer.Option("val", "--split", help="Images to explain: val (the run's fold) | test | train | all."),
    manifest: str = typer.Option("", "--manifest", help="Manifest (default: the run's)."),
    splits: str = typer.Option("", "--splits", help="splits.json (default: the run's)."),
    fold: int = typer.Option(None, "--fold", help="Fold for --split val/train (default: the run's)."),
    method: str = typer.Option("gradcam,gradcam++", "--method", help="CAM methods, comma-separated: gradcam, gradcam++. "
                               "The first one feeds the statistics."),
    guided: bool = typer.Option(True, "--guided/--no-guided", help="Guided Grad-CAM panel for the selected images."),
    layer: str = typer.Option("", "--layer", help="Target layer name (default: the last feature stage, e.g. backbone.layer4). "
                              "A wrong name lists the valid ones."),
    select: str = typer.Option("errors,correct", "--select", help="Comma-separated: errors | correct | random | "
                               "most-confident | ids. One contact sheet per selection."),
    n: int = typer.Option(16, "--n", help="Images per selection."),
    ids: str = typer.Option("", "--ids", help="Sample ids for --select ids, comma-separated."),
    cam_class: str = typer.Option("pred", "--class", help="Class the CAM explains: pred | true | a class name."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random selections."),
    lesion_masks: str = typer.Option("", "--lesion-masks", help="Folder of ground-truth lesion masks (e.g. the "
                                      "official HAM10000 masks_600x450); used before any other lesion mask."),
    lesion_mask_pattern: str = typer.Option("{sample_id}_segmentation.png", "--lesion-mask-pattern",
                                            help="File name of a lesion mask in --lesion-masks."),
    mask_source: str = typer.Option("auto", "--mask-source", help="auto (ground truth, else prep) | truth | prep | none."),
    occlusion: bool = typer.Option(True, "--occlusion/--no-occlusion", help="Occlusion test: predictions with the "
                                   "lesion (mask, else centre third) hidden, and with only the lesion visible."),
    occlusion_fill: str = typer.Option("mean", "--occlusion-fill", help="mean (each image's visible mean colour) | zero."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per batch."),
    workers: int = typer.Option(0, "--workers", "-j", help="Image-loading worker processes."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    limit: int = typer.Option(None, "--limit", help="Only the first N images of the split (for trying settings)."),
    tag: str = typer.Option("", "--tag", help="Output folder name under RUN/gradcam/ (default: the split)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing RUN/gradcam/TAG."),
) -> None:
    """Grad-CAM / Grad-CAM++ / guided Grad-CAM of a trained run: overlays, contact sheets, attention statistics
    (CAM energy on the lesion, hair, ink, ruler and FOV border masks) and an occlusion test.

    Writes RUN/gradcam/TAG/: gradcam.parquet, cams.npz, overlays/, contact_<selection>.png, gradcam.json.

    Example: lesionkit gradcam runs/demo --split val --select errors,correct --n 12 --class pred
    """
    from lesionkit.explain.run import GradcamConfig, run_gradcam

    def items(s: str) -> tuple[str, ...]:
        return tuple(v.strip() for v in s.split(",") if v.strip())

    cfg = GradcamConfig(
        run_dir=run, checkpoint=checkpoint, manifest=manifest,
        splits=splits, split=split, fold=fold, methods=items(method), guided=guided, layer=layer,
        select=items(select), n=n, ids=items(ids), cam_class=cam_class, seed=seed,
        lesion_masks=lesion_masks, lesion_mask_pattern=lesion_mask_pattern,
        mask_source=mask_source, occlusion=occlusion, occlusion_fill=occlusion_fill, batch_size=batch_size,
        workers=workers, device=device, limit=limit, tag=tag, overwrite=overwrite,
    )
    run_gradcam(cfg)
