"""Manifest contract: round trip of nullable dtypes and metadata, schema-version refusal, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from lesionkit.errors import InputError, OutputExistsError, SchemaVersionError
from lesionkit.manifest.io import Manifest, manifest_fingerprint, provenance_record, read_manifest, write_manifest
from lesionkit.manifest.schema import COLUMNS, METADATA_KEY, SCHEMA_VERSION, coerce, dtype_matches


def _frame(tmp_path):
    img = tmp_path / "imgs" / "a.png"
    return pd.DataFrame({
        "sample_id": ["a", "b", "c"],
        "source": ["toy", "toy", "toy"],
        "image_path": [str(img), None, "rel/c.png"],
        "patient_id": ["p1", None, "p2"],
        "label": [0, 1, None],
        "fitzpatrick": [1, None, 6],
        "age_approx": [30.0, np.nan, 5.5],
        "sex": ["male", None, "female"],
        "malignant": [0, 1, None],
        "dx_type": ["histo", "consensus", "histo"],
    })


def test_round_trip_keeps_dtypes_nulls_and_metadata(tmp_path):
    m = Manifest(coerce(_frame(tmp_path)), ["benign", "malignant"],
                 provenance=[provenance_record("test", {"k": 1}, [])], extra={"dataset": "toy"})
    path = write_manifest(m, tmp_path / "m.parquet")
    back = read_manifest(path)
    assert back.classes == ["benign", "malignant"]
    assert back.extra["dataset"] == "toy"
    assert back.provenance[0]["stage"] == "test" and back.provenance[0]["config"] == {"k": 1}
    for name, col in COLUMNS.items():
        assert dtype_matches(back.df[name], col.dtype), (name, back.df[name].dtype)
    assert back.df["fitzpatrick"].tolist()[0] == 1 and back.df["fitzpatrick"].isna().tolist() == [False, True, False]
    assert back.df["label"].isna().tolist() == [False, False, True]
    assert back.df["age_approx"].isna().sum() == 1
    # fitzpatrick is never stored as -1
    assert (back.df["fitzpatrick"].dropna() >= 1).all()
    # an image inside the manifest's folder is stored relative on disk, and read back absolute
    assert pq.read_table(path).column("image_path")[0].as_py() == "imgs/a.png"
    assert back.df["image_path"][0] == str(tmp_path / "imgs" / "a.png")
    assert back.image_paths()[0] == str(tmp_path / "imgs" / "a.png")
    assert back.df["dx_type"].tolist() == ["histo", "consensus", "histo"]


def test_fractional_integer_column_is_refused():
    with pytest.raises((TypeError, ValueError)):
        coerce(pd.DataFrame({"sample_id": ["a"], "label": [0.5]}))


def test_newer_schema_version_is_refused(tmp_path):
    path = write_manifest(Manifest(coerce(_frame(tmp_path)), ["a", "b"]), tmp_path / "m.parquet")
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    rec = json.loads(meta[METADATA_KEY])
    rec["schema_version"] = SCHEMA_VERSION + 1
    meta[METADATA_KEY] = json.dumps(rec).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(SchemaVersionError, match=f"version {SCHEMA_VERSION + 1}"):
        read_manifest(path)


def test_plain_parquet_is_not_a_manifest(tmp_path):
    p = tmp_path / "plain.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(p)
    with pytest.raises(InputError, match="not a lesionkit manifest"):
        read_manifest(p)


def test_existing_output_refused_and_duplicates_leave_nothing(tmp_path):
    m = Manifest(coerce(_frame(tmp_path)), ["a", "b"])
    path = write_manifest(m, tmp_path / "m.parquet")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        write_manifest(Manifest(coerce(_frame(tmp_path)), ["a", "b"]), path)
    dup = coerce(pd.DataFrame({"sample_id": ["x", "x"], "source": "t", "image_path": [None, None], "label": [0, 0]}))
    with pytest.raises(InputError, match="duplicate sample_id"):
        write_manifest(Manifest(dup, ["a"]), tmp_path / "dup.parquet")
    assert not (tmp_path / "dup.parquet").exists()
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_fingerprint_tracks_ids_labels_and_groups(tmp_path):
    df = coerce(_frame(tmp_path))
    f0 = manifest_fingerprint(df)
    assert manifest_fingerprint(df.copy()) == f0
    changed = df.copy()
    changed.loc[0, "label"] = 1
    assert manifest_fingerprint(changed) != f0
    regrouped = df.copy()
    regrouped.loc[1, "patient_id"] = "p1"
    assert manifest_fingerprint(regrouped) != f0


def test_relative_manifest_path_gives_absolute_image_paths(tmp_path, monkeypatch, runner):
    """`make demo` uses a relative workspace: reading ws/synthetic/manifest.parquet must not give CWD-relative paths
    that image_paths() then prefixes a second time (ws/synthetic/ws/synthetic/images/...)."""
    from pathlib import Path

    from lesionkit.synthetic import generate
    from tests.conftest import invoke

    monkeypatch.chdir(tmp_path)
    generate(Path("ws") / "synthetic", n=3, size=32, seed=0)
    m = read_manifest(Path("ws") / "synthetic" / "manifest.parquet")
    for p in [*m.df["image_path"], *m.image_paths()]:
        assert Path(p).is_absolute() and Path(p).is_file(), p
    r = invoke(runner, "manifest", "build", "ws/synthetic", "--format", "synthetic", "--out", "ws/m.parquet")
    assert r.exit_code == 0, r.output
