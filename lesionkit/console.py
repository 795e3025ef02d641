"""Console output: results on stdout, messages and progress on stderr.

Verbosity and progress are process-wide settings the CLI sets from ``-v/-q/--no-progress``. Progress
bars are drawn only when stderr is a terminal; otherwise (CI, pipes, ``--no-progress``) a plain line is
logged every few seconds so long work is still visible in logs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from rich.console import Console
from rich.markup import escape

T = TypeVar("T")


@dataclass
class Settings:
    verbosity: int = 0  # -1 quiet, 0 normal, 1+ verbose
    progress: bool = True
    plain_interval_s: float = 5.0


settings = Settings()
# Not a terminal (CI logs, pipes, files): wide enough that tables are not squeezed into 80 columns.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)  # results (stdout)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)  # messages / progress (stderr)


def info(msg: str) -> None:
    """A progress/decision message on stderr (plain text: paths and values are never read as markup)."""
    if settings.verbosity >= 0:
        err.print(escape(msg), highlight=False)


def debug(msg: str) -> None:
    if settings.verbosity >= 1:
        err.print(f"[dim]{escape(msg)}[/dim]", highlight=False)


def warn(msg: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(msg)}", highlight=False)


def _bars_enabled() -> bool:
    return settings.progress and settings.verbosity >= 0 and sys.stderr.isatty()


def track(items: Iterable[T], total: int | None, description: str, unit: str = "img") -> Iterator[T]:
    """Iterate ``items`` showing progress (rich bar on a TTY, plain periodic lines otherwise) with a rate."""
    if _bars_enabled():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        class Rate(TextColumn):
            def render(self, task):  # type: ignore[override]
                speed = task.finished_speed or task.speed
                return TextColumn(f"{speed:,.1f} {unit}/s" if speed else "").render(task)

        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(""), TimeRemainingColumn(),
            console=err, transient=False,
        ) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)
        return
    start = last = time.monotonic()
    n = 0
    for item in items:
        yield item
        n += 1
        now = time.monotonic()
        if settings.progress and settings.verbosity >= 0 and now - last >= settings.plain_interval_s:
            last = now
            pct = f" ({100 * n / total:.1f}%)" if total else ""
            info(f"{description}: {n}/{total if total else '?'}{pct}, {n / (now - start):,.1f} {unit}/s")
    if settings.verbosity >= 0 and settings.progress and n and time.monotonic() - start >= settings.plain_interval_s:
        el = time.monotonic() - start
        info(f"{description}: done {n} in {el:.1f}s ({n / el:,.1f} {unit}/s)")
