"""``lesionkit demo``: the whole pipeline on generated synthetic data, on the CPU, in a few minutes.

Stages so far: synth → manifest build (synthetic importer) → manifest validate --check-files → split → prep.
Each later stage adds itself here.
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
    generate(outputs["synthetic"], n=n, size=size, seed=seed, workers=workers)

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

    out.print(f"\n[bold green]demo finished[/bold green] in {time.perf_counter() - t0:.1f}s; outputs:")
    for k, v in outputs.items():
        out.print(f"  {k:<14} {v}")
    return outputs
