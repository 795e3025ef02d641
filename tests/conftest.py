"""Shared fixtures. Real data comes from $LESIONKIT_REAL_DATA (e.g. ../shared/data); tests needing it skip cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lesionkit.console import settings


def _real_root() -> Path | None:
    v = os.environ.get("LESIONKIT_REAL_DATA")
    if not v:
        return None
    p = Path(v).expanduser()
    return p if p.is_dir() else None


REAL = _real_root()


@pytest.fixture
def real_data() -> Path:
    """Root of the real datasets; skips the test (with the reason) when it is not available."""
    if REAL is None:
        pytest.skip("real data not available: set LESIONKIT_REAL_DATA=../shared/data (the Makefile does when it exists)")
    return REAL


def real_dataset(name: str) -> Path:
    if REAL is None or not (REAL / name).exists():
        pytest.skip(f"real dataset {name} not available under LESIONKIT_REAL_DATA ({REAL})")
    return REAL / name


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def _reset_console_settings():
    """The CLI sets process-wide verbosity/progress; restore defaults between tests."""
    old = (settings.verbosity, settings.progress)
    yield
    settings.verbosity, settings.progress = old


def invoke(runner: CliRunner, *args: str):
    from lesionkit.cli.app import app

    return runner.invoke(app, [str(a) for a in args])
