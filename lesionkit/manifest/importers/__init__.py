"""Importers: one module per dataset layout, registered by name (``lesionkit manifest build --format NAME``).

Each module defines ``NAME``, ``HELP`` (one line) and ``build(opts: ImportOptions) -> ImportResult``.
Modules are imported lazily, so listing formats is cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from lesionkit.errors import UsageError

# name -> module (relative to this package)
_MODULES: dict[str, str] = {
    "ham10000": "ham10000",
    "isic2017": "isic2017",
    "isic2018": "isic_onehot",
    "isic2019": "isic_onehot",
    "isic2020": "isic2020",
    "fitzpatrick17k": "fitzpatrick17k",
    "pad_ufes20": "pad_ufes20",
    "dermamnist": "dermamnist",
    "folder": "folder",
    "synthetic": "synthetic",
}


@dataclass
class ImportOptions:
    """What the user asked for. ``source`` is the dataset's CSV or folder; ``out`` is the manifest to write
    (importers that must materialise images, e.g. DermaMNIST, write them beside it)."""

    format: str
    source: Path
    out: Path
    images: list[Path] = field(default_factory=list)
    allow_missing_images: bool = False
    label_from: str | None = None
    metadata: Path | None = None
    read_image_size: bool = True


@dataclass
class ImportResult:
    """Rows (core + extra columns, ``image_path`` absolute or ``<NA>``), the class list, and the inputs read."""

    df: pd.DataFrame
    classes: list[str]
    inputs: list[Path]
    notes: dict[str, Any] = field(default_factory=dict)


def names() -> list[str]:
    return list(_MODULES)


def get(name: str) -> ModuleType:
    if name not in _MODULES:
        raise UsageError(
            f"unknown --format '{name}'",
            hint=f"valid formats: {', '.join(_MODULES)} (`lesionkit manifest build --format list` describes them)",
        )
    return importlib.import_module(f"{__name__}.{_MODULES[name]}")


def describe() -> list[tuple[str, str]]:
    """(format, one-line description of what SOURCE is) for every registered importer."""
    rows = []
    for n in _MODULES:
        module = get(n)
        rows.append((n, module.help_for(n) if hasattr(module, "help_for") else module.HELP))
    return rows
