"""manifest validate: every problem at once; --check-files lists unreadable images and completes."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lesionkit.manifest.io import Manifest, read_metadata, write_manifest
from lesionkit.manifest.schema import METADATA_KEY, coerce
from lesionkit.manifest.validate import check_image, check_image_files, validate_manifest
from tests.conftest import invoke


def _images(tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    rng = np.random.default_rng(0)
    good = d / "good.jpg"
    cv2.imwrite(str(good), rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    truncated = d / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    zero = d / "zero.png"
    zero.write_bytes(b"")
    text = d / "text.png"
    text.write_text("not an image")
    png = d / "good.png"
    cv2.imwrite(str(png), rng.integers(0, 255, (10, 10), dtype=np.uint8))
    return good, truncated, zero, text, png


def test_check_image_classifies_failures(tmp_path):
    good, truncated, zero, text, png = _images(tmp_path)
    assert check_image(str(good)) is None
    assert check_image(str(png)) is None
    assert check_image(str(truncated)) == "truncated image"
    assert check_image(str(zero)) == "zero-byte file"
    assert check_image(str(text)).startswith("unreadable")
    # the pool returns reasons in input order
    assert check_image_files([str(zero), str(good), str(truncated)], workers=2, chunk=1) == ["zero-byte file", None, "truncated image"]


def test_check_files_lists_bad_images_and_completes(tmp_path, runner):
    good, truncated, zero, text, png = _images(tmp_path)
    df = pd.DataFrame({"sample_id": [p.stem + p.suffix for p in (good, truncated, zero, text, png)], "source": "t",
                       "image_path": [str(p) for p in (good, truncated, zero, text, png)], "label": 0})
    path = write_manifest(Manifest(coerce(df), ["x"]), tmp_path / "m.parquet")
    problems, stats = validate_manifest(path, check_files=True, workers=2)
    assert stats["checked"] == 5
    kinds = {p.message: p for p in problems}
    assert set(kinds) == {"truncated image", "zero-byte file", "unreadable"}
    res = invoke(runner, "manifest", "validate", path, "--check-files", "--report", tmp_path / "r.json")
    assert res.exit_code == 1
    assert "truncated.jpg" in res.output and "zero.png" in res.output and "text.png" in res.output
    assert (tmp_path / "r.json").exists()


def test_all_problems_reported_at_once(tmp_path, runner):
    # write a broken manifest directly (bypassing write_manifest's own checks)
    df = pd.DataFrame({
        "sample_id": ["a", "a", "b", "c"],
        "source": ["t"] * 4,
        "image_path": [str(tmp_path / "missing.jpg")] * 4,
        "label": pd.array([0, 5, 1, -1], dtype="Int16"),
        "fitzpatrick": pd.array([-1, 3, 7, None], dtype="Int8"),
        "split": ["train", "holdout", "test", None],
        "age_approx": pd.array([30, 40, 50, 60], dtype="Int64"),
    })
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**table.schema.metadata, METADATA_KEY: b'{"schema_version": 1, "classes": ["x", "y"]}'})
    path = tmp_path / "broken.parquet"
    pq.write_table(table, path)
    assert read_metadata(path)["classes"] == ["x", "y"]
    problems, _ = validate_manifest(path)
    found = {(p.kind, p.column) for p in problems}
    assert ("duplicate sample_id", "sample_id") in found
    assert ("label outside class list", "label") in found
    assert ("value out of range", "fitzpatrick") in found
    assert ("value out of range", "split") in found
    assert ("wrong dtype", "age_approx") in found
    assert ("missing file", "image_path") in found
    labels = next(p for p in problems if p.kind == "label outside class list")
    assert labels.count == 2
    fitz = next(p for p in problems if p.column == "fitzpatrick")
    assert fitz.count == 2 and "never -1" in fitz.message
    res = invoke(runner, "manifest", "validate", path)
    assert res.exit_code == 1
    for word in ("duplicate sample_id", "label outside class list", "fitzpatrick", "missing file", "8 problem(s)"):
        assert word in res.output


def test_validate_ok_exits_zero(tmp_path, runner):
    good, *_ = _images(tmp_path)
    df = pd.DataFrame({"sample_id": ["g"], "source": "t", "image_path": [str(good)], "label": [0]})
    path = write_manifest(Manifest(coerce(df), ["x"]), tmp_path / "m.parquet")
    res = invoke(runner, "manifest", "validate", path, "--check-files", "-j", "1")
    assert res.exit_code == 0, res.output
    assert "OK" in res.output


@pytest.mark.realdata
def test_real_ham10000_validates(real_data, runner, tmp_path):
    out = tmp_path / "ham.parquet"
    res = invoke(runner, "manifest", "build", real_data / "ham10000", "--format", "ham10000", "--out", out, "--no-image-size")
    assert res.exit_code == 0, res.output
    problems, stats = validate_manifest(out)
    assert problems == [] and stats["rows"] == 10015
