"""``lesionkit synth``: generate the synthetic dermoscopy dataset (images, ground-truth masks, manifest)."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    n: int = typer.Option(200, "--n", help="Number of images."),
    size: int = typer.Option(128, "--size", help="Image side in pixels (at least 32)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical images."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to create (images/, masks/, manifest.parquet)."),
    workers: int = typer.Option(1, "--workers", "-j", help="Worker processes (the output does not depend on it)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder written by synth."),
    min_severity: float = typer.Option(0.25, "--min-severity", help="Lower bound in [0, 1] of the melanomas' severity (0.25: some are subtle; higher = an easier task)."),
) -> None:
    """Generate synthetic dermoscopy images with ground-truth skin tone (ITA) and lesion / artefact masks.

    Benign / malignant lesions on skin of Fitzpatrick 1-6 (ITA +70 to -50 degrees) with hair, ink, ruler and field-of-view artefacts, each with its own mask; ita_true and fitzpatrick in the manifest are ground truth. Import with: lesionkit manifest build DIR --format synthetic

    Example: lesionkit synth --n 200 --size 128 --seed 0 --out work/synth
    """
    from lesionkit.errors import UsageError

    if n < 1:
        raise UsageError(f"--n must be at least 1 (got {n})", hint=f"lesionkit synth --n 200 --out {out}")
    if size < 32:
        raise UsageError(f"--size must be at least 32 pixels (got {size})", hint=f"lesionkit synth --size 128 --out {out}")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {workers})", hint=f"lesionkit synth --workers 2 --out {out}")
    if out.suffix == ".parquet":
        raise UsageError(f"--out is a folder, not a manifest file (got {out})",
                         hint=f"lesionkit synth --out {out.with_suffix('')}  (the manifest is written inside it)")
    from lesionkit.synthetic import generate

    if not 0.0 <= min_severity <= 1.0:
        raise UsageError(f"--min-severity must be in [0, 1] (got {min_severity})", hint=f"lesionkit synth --min-severity 0.6 --out {out}")
    generate(out, n=n, size=size, seed=seed, overwrite=overwrite, workers=workers, min_severity=min_severity)
    typer.echo(str(out))
