"""``splits.json``: schema version, manifest fingerprint, seed, grouping, stratification, folds, test ids, report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesionkit import __version__
from lesionkit.errors import InputError, SchemaVersionError
from lesionkit.fsio import write_json_atomic

SPLITS_SCHEMA_VERSION = 1
KIND = "lesionkit.splits"


@dataclass
class Splits:
    """Folds (each ``{"train": ids, "val": ids}``) and an optional held-out ``test`` id list, with how they were made."""

    folds: list[dict[str, list[str]]]
    test: list[str]
    method: str
    group_by: str | None
    stratify: str | None
    seed: int | None
    manifest_fingerprint: str = ""
    manifest: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_folds(self) -> int:
        return len(self.folds)

    def fold(self, k: int) -> dict[str, list[str]]:
        if not 0 <= k < len(self.folds):
            raise InputError(f"fold {k} does not exist: the splits file has folds 0..{len(self.folds) - 1}",
                             hint=f"pass --fold between 0 and {len(self.folds) - 1}")
        return self.folds[k]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SPLITS_SCHEMA_VERSION, "kind": KIND, "lesionkit_version": __version__,
            "manifest": self.manifest, "manifest_fingerprint": self.manifest_fingerprint,
            "method": self.method, "seed": self.seed, "group_by": self.group_by, "stratify": self.stratify,
            "params": self.params, "n_folds": self.n_folds, "folds": self.folds, "test": self.test,
            "report": self.report, "provenance": self.provenance,
        }


def write_splits(splits: Splits, path: Path) -> Path:
    write_json_atomic(path, splits.to_json())
    return path


def read_splits(path: Path | str, manifest_fingerprint: str | None = None) -> Splits:
    """Read ``splits.json``; refuses newer schema versions and (if given) a different manifest fingerprint."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"splits file not found: {path}", hint="make one with `lesionkit split MANIFEST --out splits.json`") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON ({e})", hint="re-create it with `lesionkit split`") from None
    if obj.get("kind") != KIND:
        raise InputError(f"{path} is not a lesionkit splits file (kind={obj.get('kind')!r})", hint="make one with `lesionkit split`")
    version = obj.get("schema_version")
    if not isinstance(version, int) or version > SPLITS_SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} has splits schema version {version}; this lesionkit ({__version__}) reads up to {SPLITS_SCHEMA_VERSION}",
            hint="upgrade lesionkit or re-create the splits with this version",
        )
    if manifest_fingerprint is not None and obj.get("manifest_fingerprint") != manifest_fingerprint:
        raise InputError(
            f"{path} was made for a different manifest ({obj.get('manifest')}): the fingerprints of ids/labels/groups differ",
            hint="re-run `lesionkit split` on the manifest you are using",
        )
    return Splits(
        folds=obj["folds"], test=obj.get("test", []), method=obj["method"], group_by=obj.get("group_by"),
        stratify=obj.get("stratify"), seed=obj.get("seed"), manifest_fingerprint=obj.get("manifest_fingerprint", ""),
        manifest=obj.get("manifest", ""), params=obj.get("params", {}), report=obj.get("report", {}),
        provenance=obj.get("provenance", {}),
    )
