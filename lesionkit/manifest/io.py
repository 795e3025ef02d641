"""Reading and writing manifests: parquet + a JSON record in the key/value metadata.

The metadata record (key ``lesionkit``) holds ``schema_version``, ``classes`` (the class list that
``label`` indexes), ``target`` notes and ``provenance`` (a list, one entry per stage that wrote the file:
stage, lesionkit version, config, input fingerprints, time).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lesionkit import __version__
from lesionkit.errors import InputError, SchemaVersionError
from lesionkit.fsio import atomic_path, check_output
from lesionkit.manifest.schema import METADATA_KEY, SCHEMA_VERSION, coerce


@dataclass
class Manifest:
    """A manifest in memory: the table, its class list, and its provenance chain."""

    df: pd.DataFrame
    classes: list[str]
    provenance: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def root(self) -> Path:
        """Folder that relative path values are resolved against (manifests read from disk hold absolute paths)."""
        return self.path.parent if self.path is not None else Path.cwd()

    def image_paths(self) -> pd.Series:
        """Absolute image paths (``<NA>`` where the manifest has none)."""
        return resolve_paths(self.df["image_path"], self.root)

    def fingerprint(self) -> str:
        return manifest_fingerprint(self.df)


def path_columns(df: pd.DataFrame) -> list[str]:
    """Columns holding file paths: ``image_path`` and every ``*_path`` column (masks, prep outputs, ...).

    On disk they are relative to the manifest's folder when inside it; in memory (after
    :func:`read_manifest`) they are absolute.
    """
    return [c for c in df.columns if c == "image_path" or str(c).endswith("_path")]


def provenance_record(stage: str, config: dict[str, Any], inputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One provenance entry: what stage wrote the file, with which config, from which inputs."""
    return {
        "stage": stage,
        "lesionkit_version": __version__,
        "time_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "config": config,
        "inputs": inputs or [],
    }


def manifest_fingerprint(df: pd.DataFrame) -> str:
    """sha256 over the identity-bearing columns (sample_id, label, patient_id, lesion_id), row order kept.

    Splits store it so a split is never applied to a different manifest by accident.
    """
    cols = [c for c in ("sample_id", "label", "patient_id", "lesion_id") if c in df.columns]
    h = hashlib.sha256()
    for c in cols:
        h.update(c.encode())
        h.update(pd.util.hash_pandas_object(df[c].astype("string"), index=False).to_numpy().tobytes())
    return h.hexdigest()


def resolve_paths(paths: pd.Series, root: Path) -> pd.Series:
    root = Path(root)

    def one(p: Any) -> Any:
        if pd.isna(p):
            return pd.NA
        q = Path(p)
        return str(q if q.is_absolute() else (root / q))

    return paths.map(one).astype("string")


def relativize_paths(paths: pd.Series, root: Path) -> pd.Series:
    """Paths inside ``root`` become relative to it; others are stored absolute."""
    root = Path(root).resolve()

    def one(p: Any) -> Any:
        if pd.isna(p):
            return pd.NA
        q = Path(p)
        q = q.resolve() if q.is_absolute() else q
        if q.is_absolute():
            try:
                return str(q.relative_to(root))
            except ValueError:
                return str(q)
        return str(q)

    return paths.map(one).astype("string")


def write_manifest(manifest: Manifest, path: Path | str, overwrite: bool = False) -> Path:
    """Validate dtypes, then write atomically. ``image_path`` is stored relative to the file's folder when inside it."""
    path = Path(path)
    check_output(path, overwrite)
    df = coerce(manifest.df)
    if df["sample_id"].isna().any():
        raise InputError("manifest has rows without sample_id", hint="every row needs a unique sample_id")
    dup = df["sample_id"][df["sample_id"].duplicated()]
    if len(dup):
        raise InputError(
            f"{len(dup)} duplicate sample_id values (first: {', '.join(map(str, dup.unique()[:5]))})",
            hint="each image must appear once; de-duplicate the source table",
        )
    for c in path_columns(df):  # relative paths in memory are taken as relative to the working directory
        df[c] = relativize_paths(resolve_paths(df[c], Path.cwd()), path.parent)
    record = {
        "schema_version": SCHEMA_VERSION,
        "classes": list(manifest.classes),
        "provenance": list(manifest.provenance),
        **manifest.extra,
    }
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(record, allow_nan=False).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    manifest.path = path
    for c in path_columns(df):
        df[c] = resolve_paths(df[c], path.parent)
    manifest.df = df
    return path


def read_metadata(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise InputError(f"manifest not found: {path}", hint="build one with `lesionkit manifest build --format ...`") from None
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path} is not a readable parquet file ({e})", hint="rebuild it with `lesionkit manifest build`") from None
    meta = schema.metadata or {}
    if METADATA_KEY not in meta:
        raise InputError(
            f"{path} is a parquet file but not a lesionkit manifest (no '{METADATA_KEY.decode()}' metadata)",
            hint="build one with `lesionkit manifest build --format ...`",
        )
    record = json.loads(meta[METADATA_KEY])
    version = record.get("schema_version")
    if not isinstance(version, int):
        raise InputError(f"{path}: metadata has no integer schema_version")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} uses manifest schema version {version}; this lesionkit ({__version__}) reads up to {SCHEMA_VERSION}",
            hint="upgrade lesionkit (`pip install -U lesionkit`) or rebuild the manifest with this version",
        )
    return record


def read_manifest(path: Path | str) -> Manifest:
    """Read a manifest (path columns made absolute); refuses files from a newer schema version."""
    path = Path(path).absolute()  # a relative manifest path must still give absolute path values (not CWD-relative)
    record = read_metadata(path)
    df = coerce(pq.read_table(path).to_pandas())
    for c in path_columns(df):
        df[c] = resolve_paths(df[c], path.parent)
    extra = {k: v for k, v in record.items() if k not in ("schema_version", "classes", "provenance")}
    return Manifest(df=df, classes=list(record.get("classes", [])), provenance=list(record.get("provenance", [])), extra=extra, path=path)
