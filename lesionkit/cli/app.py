"""Root of the ``lesionkit`` command: global options, error rendering, command registration.

Heavy libraries (torch, cv2, pandas) are imported inside commands so ``lesionkit --help`` stays fast.
"""

from __future__ import annotations

import sys
import traceback

import typer
from rich.markup import escape
from typer.core import TyperGroup

from lesionkit import __version__
from lesionkit.console import err, settings
from lesionkit.errors import LesionkitError


def render_error(error: LesionkitError) -> None:
    """Short message + details + hint on stderr; the traceback only with ``-v``."""
    if settings.verbosity >= 1:
        err.print(traceback.format_exc(), markup=False, highlight=False)
    err.print(f"[bold red]error:[/bold red] {escape(error.message)}", highlight=False)
    for line in error.details:
        err.print(f"  {line}", highlight=False, markup=False)
    if error.hint:
        err.print(f"[cyan]hint:[/cyan] {escape(error.hint)}", highlight=False)


class LesionkitGroup(TyperGroup):
    """Turns :class:`LesionkitError` into a clean message and its exit code (1 error, 2 usage) for every subcommand."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except LesionkitError as e:
            render_error(e)
            raise typer.Exit(e.exit_code) from None


app = typer.Typer(
    cls=LesionkitGroup,
    name="lesionkit",
    help="Skin-lesion classification research toolkit: manifests, grouped splits, synthetic data, prep, training, evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lesionkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail; -v also shows tracebacks on errors."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and results."),
    no_progress: bool = typer.Option(
        False, "--no-progress", help="No progress bars (automatic when stderr is not a terminal: plain periodic lines instead)."
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Global options apply to every command: `lesionkit -v manifest validate ...`."""
    settings.verbosity = -1 if quiet else verbose
    settings.progress = not no_progress


def _register() -> None:
    from lesionkit.cli import (
        demo,
        env,
        evaluate,
        gradcam,
        manifest,
        prep,
        robustness,
        skintone,
        split,
        synth,
        train,
    )

    app.command("demo", help=demo.demo.__doc__)(demo.demo)
    app.command("synth", help=synth.synth.__doc__)(synth.synth)
    app.add_typer(manifest.app, name="manifest")
    app.command("split", help=split.split.__doc__)(split.split)
    app.command("prep", help=prep.prep.__doc__)(prep.prep)
    app.command("label-skintone", help=skintone.label_skintone.__doc__)(skintone.label_skintone)
    app.command("skintone-agreement", help=skintone.skintone_agreement.__doc__)(skintone.skintone_agreement)
    app.command("train", help=train.train.__doc__)(train.train)
    app.command("lr-find", help=train.lr_find.__doc__)(train.lr_find)
    app.command("evaluate", help=evaluate.evaluate.__doc__)(evaluate.evaluate)
    app.command("gradcam", help=gradcam.gradcam.__doc__)(gradcam.gradcam)
    app.command("robustness", help=robustness.robustness.__doc__)(robustness.robustness)
    app.command("env", help=env.env.__doc__)(env.env)


_register()


def main() -> None:
    """Console-script entry point (exit codes: 0 ok, 1 error, 2 usage, 130 interrupted)."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        err.print("[red]interrupted[/red]: partial outputs were removed")
        sys.exit(130)
