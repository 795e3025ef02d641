"""prep as a whole: outputs and columns, resumability (incl. kill -9), bad inputs recorded, --strict, workers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionkit import synthetic
from lesionkit.manifest.io import Manifest, read_manifest, write_manifest
from lesionkit.manifest.schema import coerce
from lesionkit.prep.pipeline import PrepConfig, output_stem, prep_image
from lesionkit.prep.run import read_log, run_prep
from tests.conftest import invoke

CHEAP = PrepConfig(size=64, hair="lesionkit", gamma="1.2")


@pytest.fixture(scope="module")
def synth_manifest(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prep") / "synth"
    return synthetic.generate(out, n=24, size=96, seed=3).path


def _bad_inputs(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(60, 200, (80, 100, 3), dtype=np.uint8)
    files = {}
    files["good"] = d / "good.jpg"
    cv2.imwrite(str(files["good"]), rgb)
    files["truncated"] = d / "truncated.jpg"
    files["truncated"].write_bytes(files["good"].read_bytes()[:300])
    files["zero"] = d / "zero.jpg"
    files["zero"].write_bytes(b"")
    files["text"] = d / "text.jpg"
    files["text"].write_text("this is not an image")
    files["tiny"] = d / "tiny.png"
    cv2.imwrite(str(files["tiny"]), rgb[:6, :6])
    files["alpha"] = d / "alpha.png"
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]), "RGBA").save(files["alpha"])
    files["sixteen"] = d / "sixteen.png"
    cv2.imwrite(str(files["sixteen"]), rgb.astype(np.uint16) * 257)
    files["gray"] = d / "gray.png"
    cv2.imwrite(str(files["gray"]), rgb[..., 0])
    return files


def _manifest_of(files: dict[str, Path], path: Path) -> Path:
    df = pd.DataFrame({"sample_id": list(files), "source": "t", "image_path": [str(p) for p in files.values()], "label": 0})
    return write_manifest(Manifest(coerce(df), ["x"]), path)


def test_outputs_columns_and_provenance(synth_manifest, tmp_path):
    out = tmp_path / "p"
    m = run_prep(synth_manifest, out, PrepConfig(size=64, hair="lesionkit", save_masks=True), preview=3)
    back = read_manifest(out / "manifest.parquet")
    df = back.df
    assert len(df) == 24 and df["prep_error"].isna().all()
    assert df["prep_path"].map(lambda p: Path(p).is_file()).all()
    assert df["prep_hair_mask_path"].map(lambda p: Path(p).is_file()).all()
    assert df["hair_frac"].between(0, 1).all() and str(df["hair_frac"].dtype) == "Float32"
    # images with synthetic hair get more hair_frac than images without
    has_hair = (df["hair_dark"] | df["hair_light"]).astype(bool)
    assert df.loc[has_hair, "hair_frac"].mean() > df.loc[~has_hair, "hair_frac"].mean()
    img = cv2.imread(df["prep_path"][0])
    assert max(img.shape[:2]) == 64
    assert back.provenance[-1]["stage"] == "prep" and back.provenance[-1]["config"]["hair"] == "lesionkit"
    assert back.provenance[0]["stage"] == "synth"  # chain kept
    assert df["image_path"].tolist() == read_manifest(synth_manifest).df["image_path"].tolist()  # originals untouched
    assert (out / "preview.png").is_file() and cv2.imread(str(out / "preview.png")).shape[0] == 3 * 192
    assert m.df["sample_id"].tolist() == df["sample_id"].tolist()


def test_rerun_skips_and_config_change_redoes(synth_manifest, tmp_path):
    out = tmp_path / "p"
    run_prep(synth_manifest, out, CHEAP)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    n_lines = len((out / "prep_log.jsonl").read_text().splitlines())
    run_prep(synth_manifest, out, CHEAP)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()} == before  # nothing rewritten
    assert len((out / "prep_log.jsonl").read_text().splitlines()) == n_lines
    run_prep(synth_manifest, out, PrepConfig(size=64, hair="lesionkit", gamma="1.4"))  # new config -> redone
    log = read_log(out / "prep_log.jsonl")
    assert len((out / "prep_log.jsonl").read_text().splitlines()) == n_lines + 24
    assert all(r["gamma"] == pytest.approx(1.4) for r in log.values())
    run_prep(synth_manifest, out, PrepConfig(size=64, hair="lesionkit", gamma="1.4"), overwrite=True)
    assert len((out / "prep_log.jsonl").read_text().splitlines()) == 24


def test_torn_log_line_is_ignored(tmp_path):
    log = tmp_path / "prep_log.jsonl"
    log.write_text(json.dumps({"sample_id": "a", "status": "done"}) + "\n" + '{"sample_id": "b", "sta')
    assert list(read_log(log)) == ["a"]


def test_kill_9_then_resume(synth_manifest, tmp_path):
    out = tmp_path / "p"
    cmd = [str(Path(sys.executable).with_name("lesionkit")), "-q", "--no-progress", "prep", str(synth_manifest),
           "--out", str(out), "--size", "256", "--hair", "lesionkit", "--inpaint", "ink"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / "prep_log.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        if proc.poll() is not None:
            pytest.fail(f"prep exited early: {proc.stderr.read().decode()}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = read_log(log)
    assert 3 <= len(done_before) < 24, "the run must be killed part-way"
    assert not (out / "manifest.parquet").exists()
    res = invoke_cli("prep", synth_manifest, "--out", out, "--size", "256", "--hair", "lesionkit", "--inpaint", "ink")
    assert res.returncode == 0, res.stderr
    assert f"{len(done_before)} already done (skipped)" in res.stderr
    df = read_manifest(out / "manifest.parquet").df
    assert df["prep_error"].isna().all()
    for p in df["prep_path"]:
        assert cv2.imread(p) is not None
    assert not [p for p in (out / "images").iterdir() if p.name.endswith(".tmp")]


def invoke_cli(*args):
    exe = str(Path(sys.executable).with_name("lesionkit"))
    return subprocess.run([exe, "--no-progress", *map(str, args)], capture_output=True, text=True)


def test_bad_inputs_are_recorded_and_the_run_completes(tmp_path, runner):
    files = _bad_inputs(tmp_path / "in")
    mpath = _manifest_of(files, tmp_path / "m.parquet")
    snapshot = {k: p.read_bytes() for k, p in files.items()}
    res = invoke(runner, "prep", mpath, "--out", tmp_path / "p", "--size", "64", "--hair", "lesionkit")
    assert res.exit_code == 0, res.output
    df = read_manifest(tmp_path / "p" / "manifest.parquet").df.set_index("sample_id")
    err = df["prep_error"]
    assert err["truncated"].startswith("truncated image")
    assert err["zero"].startswith("zero-byte file")
    assert err["text"].split(":")[0] in ("unsupported format", "not an image", "unreadable")
    assert err["tiny"].startswith("too small")
    for ok in ("good", "alpha", "sixteen", "gray"):
        assert pd.isna(err[ok]), (ok, err[ok])
        assert cv2.imread(df.loc[ok, "prep_path"]).shape[2] == 3
    assert "alpha" in df.loc["alpha", "decode_notes"]
    assert "16-bit" in df.loc["sixteen", "decode_notes"]
    assert df.loc["gray", "source_mode"] == "L"
    # inputs never modified; failures wrote no image
    assert {k: p.read_bytes() for k, p in files.items()} == snapshot
    assert len(list((tmp_path / "p" / "images").iterdir())) == 4
    assert "prep failures" in res.output
    strict = invoke(runner, "prep", mpath, "--out", tmp_path / "p", "--size", "64", "--hair", "lesionkit", "--strict")
    assert strict.exit_code == 1 and "--strict" in strict.output


def test_sixteen_bit_and_gray_decode_values(tmp_path):
    files = _bad_inputs(tmp_path)
    rgb = np.random.default_rng(0).integers(60, 200, (80, 100, 3), dtype=np.uint8)  # as written (cv2: BGR order)
    six = prep_image(files["sixteen"].read_bytes(), PrepConfig(size=100))
    assert six.image.shape == (80, 100, 3)
    assert np.abs(six.image.astype(int) - rgb[..., ::-1].astype(int)).max() <= 1  # 16-bit v*257 -> v
    gray = prep_image(files["gray"].read_bytes(), PrepConfig(size=100))
    assert (gray.image[..., 0] == gray.image[..., 1]).all() and (gray.image[..., 0] == rgb[..., 0]).all()


def test_workers_give_identical_outputs(synth_manifest, tmp_path):
    run_prep(synth_manifest, tmp_path / "a", CHEAP, workers=1)
    run_prep(synth_manifest, tmp_path / "b", CHEAP, workers=2)
    for p in (tmp_path / "a" / "images").iterdir():
        assert p.read_bytes() == (tmp_path / "b" / "images" / p.name).read_bytes()


def test_foreign_folder_refused_and_flags_validated(synth_manifest, tmp_path, runner):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    res = invoke(runner, "prep", synth_manifest, "--out", foreign, "--overwrite")
    assert res.exit_code == 1 and "not a prep output folder" in res.output
    assert (foreign / "thesis.tex").read_text() == "precious"
    for flag, value in (("--resize-mode", "squash"), ("--hair", "magic"), ("--gamma", "bright"),
                        ("--color-constancy", "retinex"), ("--inpaint", "tattoo"), ("--inpaint-method", "photoshop")):
        r = invoke(runner, "prep", synth_manifest, "--out", tmp_path / "x", flag, value)
        assert r.exit_code == 2 and flag in r.output and "valid:" in r.output, (flag, r.output)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("mode", ["resize", "center-crop", "fov-crop", "lesion-crop"])
def test_resize_modes_record_geometry(synth_manifest, mode):
    df = read_manifest(synth_manifest).df
    row = df.iloc[0]
    res = prep_image(Path(row["image_path"]).read_bytes(), PrepConfig(size=64, resize_mode=mode))
    x0, y0, x1, y1 = res.record["crop_box"]
    assert 0 <= x0 < x1 <= row["width"] and 0 <= y0 < y1 <= row["height"]
    assert max(res.image.shape[:2]) == 64
    if res.record["crop_mode"] != "resize":
        assert res.image.shape[0] == res.image.shape[1] == 64


def test_output_stem_is_safe_and_unique():
    assert output_stem("ISIC_0024306") == "ISIC_0024306"
    a, b = output_stem("mel/img 1"), output_stem("mel_img_1")
    assert "/" not in a and a != b
    assert not output_stem("../../etc/passwd").startswith(".")


def test_batch_worker_equals_one_task_at_a_time(synth_manifest, tmp_path, monkeypatch):
    """run_batch (decode several inputs, then process them) gives the records and files of run_task per input:
    good images, undecodable and missing files, a metadata-only row and an already finished input, also when
    the byte budget flushes after every image."""
    import lesionkit.prep.pipeline as P

    df = read_manifest(synth_manifest).df.head(5)
    bad = _bad_inputs(tmp_path / "bad")
    cfg = PrepConfig(size=64, hair="lesionkit", inpaint=("ink",), save_masks=True)
    dig = cfg.digest()

    def tasks(out: Path) -> list:
        ts = [P.Task(s, str(p), str(out), None, None) for s, p in zip(df["sample_id"], df["image_path"], strict=True)]
        ts.insert(1, P.Task("trunc", str(bad["truncated"]), str(out), None, None))
        ts.insert(3, P.Task("meta", None, str(out), None, None))
        ts.append(P.Task("gone", str(tmp_path / "missing.jpg"), str(out), None, None))
        return ts

    one = tmp_path / "one"
    ref = [P.run_task(t, cfg, dig) for t in tasks(one)]
    assert [r["status"] for r in ref].count("done") == 5 and [r["status"] for r in ref].count("failed") == 3
    for budget in (P.BATCH_BYTES, 1):
        monkeypatch.setattr(P, "BATCH_BYTES", budget)
        out = tmp_path / f"batch{budget}"
        assert P.run_batch(tasks(out), cfg, dig) == ref
        files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
        assert all((out / f).read_bytes() == (one / f).read_bytes() for f in files)
    # an input finished earlier with the same key is skipped inside a batch too
    first = ref[0]
    again = tasks(one)
    again[0] = P.Task(again[0].sample_id, again[0].path, str(one), first["prep_key"], first["prep_path"])
    recs = P.run_batch(again, cfg, dig)
    assert recs[0] == {"sample_id": first["sample_id"], "prep_key": first["prep_key"], "status": "skipped"}
    assert recs[1:] == ref[1:]
