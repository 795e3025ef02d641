"""``lesionkit manifest build | validate | show``."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Build, validate and inspect manifests (one parquet row per image).", no_args_is_help=True)


@app.command("build")
def build(
    source: Path = typer.Argument(None, help="The dataset's CSV / .npz / folder (see --format list)."),
    format: str = typer.Option(..., "--format", "-f", help="Dataset layout; `--format list` lists them."),
    out: Path = typer.Option(None, "--out", "-o", help="Manifest to write (.parquet)."),
    images: list[Path] = typer.Option(None, "--images", help="Image folder(s), if not in the usual place beside SOURCE. Repeatable."),
    allow_missing_images: bool = typer.Option(False, "--allow-missing-images", help="Metadata-only rows for images not found (e.g. for split planning)."),
    label_from: str = typer.Option(None, "--label-from", help="Column to take classes from, for formats with several (fitzpatrick17k: label | nine_partition_label | three_partition_label)."),
    metadata: Path = typer.Option(None, "--metadata", help="Extra metadata CSV (isic2018/isic2019: age, sex, site, lesion_id)."),
    no_image_size: bool = typer.Option(False, "--no-image-size", help="Skip reading image headers for height/width."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Import a dataset into a manifest.

    Example: lesionkit manifest build ../shared/data/ham10000 --format ham10000 --out work/ham.parquet
    """
    from lesionkit.errors import UsageError
    from lesionkit.manifest import importers

    if format == "list":
        from rich.table import Table

        from lesionkit.console import out as console

        t = Table("format", "what SOURCE is")
        for name, help_ in importers.describe():
            t.add_row(name, help_)
        console.print(t)
        return
    importers.get(format)  # unknown format -> lists valid ones
    if source is None:
        raise UsageError("missing SOURCE (the dataset's CSV, .npz or folder)", hint=f"lesionkit manifest build PATH --format {format} --out manifest.parquet")
    if out is None:
        raise UsageError("missing --out (the manifest to write)", hint=f"lesionkit manifest build {source} --format {format} --out manifest.parquet")
    if out.suffix != ".parquet":
        raise UsageError(f"--out must end in .parquet (got {out})", hint=f"--out {out.with_suffix('.parquet')}")
    from lesionkit.manifest.build import build_manifest

    opts = importers.ImportOptions(
        format=format, source=source, out=out, images=list(images or []), allow_missing_images=allow_missing_images,
        label_from=label_from, metadata=metadata, read_image_size=not no_image_size,
    )
    build_manifest(opts, overwrite=overwrite)
    typer.echo(str(out))


@app.command("validate")
def validate(
    manifest: Path = typer.Argument(..., help="Manifest (.parquet) to check."),
    check_files: bool = typer.Option(False, "--check-files", help="Decode every image and list unreadable / zero-byte / truncated ones."),
    workers: int = typer.Option(2, "--workers", "-j", min=1, help="Processes for --check-files."),
    report: Path = typer.Option(None, "--report", help="Also write the problems as JSON here."),
) -> None:
    """Report every problem at once (columns, dtypes, duplicate ids, labels, missing files); exit 1 if any.

    Example: lesionkit manifest validate work/ham.parquet --check-files --workers 2
    """
    from lesionkit.manifest.validate import render_problems, validate_manifest

    problems, stats = validate_manifest(manifest, check_files=check_files, workers=workers)
    render_problems(manifest, problems, stats, report)


@app.command("show")
def show(
    manifest: Path = typer.Argument(..., help="Manifest (.parquet)."),
    rows: int = typer.Option(0, "--rows", "-n", help="Also print the first N rows."),
) -> None:
    """Print schema, class counts per split, grouping columns and the provenance chain.

    Example: lesionkit manifest show work/ham.parquet --rows 5
    """
    from lesionkit.manifest.show import show_manifest

    show_manifest(manifest, rows=rows)
