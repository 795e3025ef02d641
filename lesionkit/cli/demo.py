from __future__ import annotations

from pathlib import Path

import typer


def demo(
    workspace: Path = typer.Option(Path("demo-workspace"), "--workspace", "-w", help="Folder for every output of the demo."),
    n: int = typer.Option(240, "--n", help="Number of synthetic images."),
    size: int = typer.Option(128, "--size", help="Synthetic image size in pixels."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    workers: int = typer.Option(2, "--workers", "-j", help="Worker processes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing workspace."),
) -> None:
    """Run the whole pipeline on generated synthetic data (CPU, a few minutes) and print where each output is.

    Example: lesionkit demo --workspace demo-workspace --overwrite
    """
    from lesionkit.demo import run_demo

    run_demo(workspace, n=n, size=size, seed=seed, workers=workers, overwrite=overwrite)
