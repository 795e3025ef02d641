"""``lesionkit demo``: the whole pipeline on generated synthetic data, on the CPU, in a few minutes.

Stages: synth → manifest build (synthetic importer) → manifest validate --check-files → split → prep →
label-skintone (+ agreement with the ground-truth skin tone) → train → evaluate → gradcam → robustness.
The synthetic melanomas are drawn at severity >= 0.6 (clear cues) so that three CPU epochs learn something.
"""

from __future__ import annotations

import time
from pathlib import Path

from lesionkit.console import err, out, settings
from lesionkit.fsio import check_output
from rich.markup import escape


def run_demo(workspace: Path, n: int = 240, size: int = 128, seed: int = 0, workers: int = 2, overwrite: bool = False) -> dict[str, Path]:
    """Run every existing stage on ``n`` synthetic images in ``workspace``; returns the outputs by name."""
    import shutil

    from lesionkit.manifest.build import build_manifest
    from lesionkit.manifest.importers import ImportOptions
    from lesionkit.manifest.validate import render_problems, validate_manifest
    from lesionkit.prep.pipeline import PrepConfig
    from lesionkit.prep.run import run_prep
    from lesionkit.splits.run import run_split
    from lesionkit.synthetic import generate

    workspace = Path(workspace)
    check_output(workspace, overwrite)
    if workspace.exists():
        shutil.rmtree(workspace)
    workspace.mkdir(parents=True)
    outputs: dict[str, Path] = {}
    t0 = time.perf_counter()

    def step(name: str) -> None:
        if settings.verbosity >= 0:
            err.print(f"[bold cyan]== {escape(name)}[/bold cyan] ({time.perf_counter() - t0:.1f}s)", highlight=False)

    step(f"synth: {n} synthetic dermoscopy images at {size}px with ground-truth masks")
    outputs["synthetic"] = workspace / "synthetic"
    generate(outputs["synthetic"], n=n, size=size, seed=seed, workers=workers, min_severity=0.6)

    step("manifest build --format synthetic")
    outputs["manifest"] = workspace / "manifest.parquet"
    build_manifest(ImportOptions(format="synthetic", source=outputs["synthetic"], out=outputs["manifest"]))

    step("manifest validate --check-files")
    problems, stats = validate_manifest(outputs["manifest"], check_files=True, workers=workers)
    render_problems(outputs["manifest"], problems, stats)

    step("split: 5 grouped folds + 20% held-out test")
    outputs["splits"] = workspace / "splits.json"
    run_split(outputs["manifest"], outputs["splits"], n_folds=5, seed=seed, test_frac=0.2)

    step("prep: field-of-view crop to 128 px, ink + ruler inpainting, dark + light hair removal, preview sheet")
    outputs["prep"] = workspace / "prep"
    run_prep(outputs["manifest"], outputs["prep"],
             PrepConfig(size=size, resize_mode="fov-crop", hair="lesionkit", inpaint=("ink", "ruler"), save_masks=True),
             workers=workers, preview=8)
    outputs["prep manifest"] = outputs["prep"] / "manifest.parquet"
    outputs["prep preview"] = outputs["prep"] / "preview.png"

    step("label-skintone: ITA from the original images (healthy-skin mask, Kinyanjui thresholds) + agreement with the ground truth")
    from lesionkit.skintone.run import run_label_skintone, run_skintone_agreement
    from lesionkit.skintone.strategies import SkinToneConfig

    outputs["skintone manifest"] = workspace / "skintone.parquet"
    run_label_skintone(outputs["prep manifest"], outputs["skintone manifest"], SkinToneConfig(method="mask"),
                       thresholds="kinyanjui", workers=workers)
    outputs["skintone agreement"] = workspace / "skintone_agreement"
    run_skintone_agreement(outputs["skintone manifest"], truth="fitzpatrick", truth_ita="ita_true",
                           out_dir=outputs["skintone agreement"])

    step("train: resnet10t, 8 epochs at 48 px on the prepped images (fold 0), target malignant")
    from lesionkit.train.config import TrainConfig
    from lesionkit.train.run import run_train

    outputs["run"] = workspace / "runs" / "demo"
    run_train(TrainConfig(manifest=str(outputs["skintone manifest"]), splits=str(outputs["splits"]), image_col="prep_path",
                          target="malignant", model="resnet10t", img_size=48, epochs=8, batch_size=32,
                          num_workers=min(workers, 2), lr=3e-3, aug="light", device="cpu",
                          cache_dir=str(workspace / "cache"), run_dir=str(outputs["run"])))
    outputs["checkpoint"] = outputs["run"] / "checkpoints" / "best.pt"

    step("evaluate: test split, threshold chosen on validation, per-skin-tone / sex / age tables with bootstrap CIs")
    from lesionkit.evaluate.run import EvalConfig, run_evaluate

    ev = run_evaluate(EvalConfig(run=outputs["run"], split="test", group_by="auto", n_boot=200, workers=workers))
    outputs["eval report"] = Path(ev["report"])

    step("gradcam: Grad-CAM / Grad-CAM++ on the validation fold, attention on lesion / hair / ink / ruler masks, occlusion test")
    from lesionkit.explain.run import GradcamConfig, run_gradcam

    run_gradcam(GradcamConfig(run_dir=str(outputs["run"]), split="val", select=("errors", "correct"), n=8,
                              batch_size=32, layer="backbone.layer3"))  # 3x3 maps at 48 px (layer4 would be 2x2)
    outputs["gradcam"] = outputs["run"] / "gradcam" / "val"

    step("robustness: test-time sweep (impulse 1/5/15 %, 5x5 Gaussian blur, 5-px 45° motion blur)")
    from lesionkit.robustness.run import RobustnessConfig, run_robustness

    outputs["robustness"] = outputs["run"] / "robustness"
    run_robustness(RobustnessConfig(run=str(outputs["run"]), out=str(outputs["robustness"]),
                                    corruptions=["impulse:0.01,0.05,0.15", "gaussian_blur:5", "motion_blur:5"],
                                    n_boot=100, batch_size=64, workers=0, overwrite=True))
    outputs["robustness report"] = outputs["robustness"] / "robustness.html"

    out.print(f"\n[bold green]demo finished[/bold green] in {time.perf_counter() - t0:.1f}s; outputs:")
    for k, v in outputs.items():
        out.print(f"  {k:<18} {v}")
    return outputs
