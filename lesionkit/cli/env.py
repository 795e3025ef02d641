from __future__ import annotations

import json

import typer


def env(as_json: bool = typer.Option(False, "--json", help="Print as JSON (for scripts).")) -> None:
    """Print Python / torch / torchvision / timm / OpenCV / numpy versions, CUDA and GPUs, CPU count (paste it in bug reports).

    Example: lesionkit env --json
    """
    from lesionkit.console import out
    from lesionkit.envinfo import collect

    info = collect()
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    from rich.table import Table

    t = Table(show_header=False, box=None)
    for k, v in info.items():
        t.add_row(k, ", ".join(v) if isinstance(v, list) else str(v))
    out.print(t)
