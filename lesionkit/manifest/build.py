"""``manifest build``: run an importer, enforce the contract, record provenance, write atomically."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from lesionkit.console import info
from lesionkit.fsio import check_output, input_fingerprint
from lesionkit.manifest import importers
from lesionkit.manifest.io import Manifest, provenance_record, write_manifest
from lesionkit.manifest.schema import coerce


def build_manifest(opts: importers.ImportOptions, overwrite: bool = False) -> Manifest:
    """Import ``opts.source`` with the ``opts.format`` importer and write the manifest to ``opts.out``."""
    module = importers.get(opts.format)
    check_output(opts.out, overwrite)  # before any long work
    result = module.build(opts)
    df = coerce(result.df)
    config = {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, list) else v)
              for k, v in asdict(opts).items()}
    inputs = [input_fingerprint(p) for p in dict.fromkeys(result.inputs)]
    manifest = Manifest(
        df=df,
        classes=result.classes,
        provenance=[provenance_record("manifest build", config, inputs)],
        extra={"dataset": opts.format, **({"notes": result.notes} if result.notes else {})},
    )
    write_manifest(manifest, opts.out, overwrite=overwrite)
    n_img = int(df["image_path"].notna().sum())
    info(f"wrote {opts.out}: {len(df)} rows, {n_img} with images, {len(result.classes)} classes")
    return manifest
