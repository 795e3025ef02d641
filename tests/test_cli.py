"""CLI conventions: every command has --help, errors are short messages with the right exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lesionkit import __version__
from tests.conftest import invoke

COMMANDS = [
    [], ["env"], ["manifest"], ["manifest", "build"], ["manifest", "validate"], ["manifest", "show"], ["split"],
    ["synth"], ["demo"], ["prep"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help_of_every_command(runner, cmd):
    res = invoke(runner, *cmd, "--help")
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output
    if cmd and cmd != ["manifest"]:
        assert "Example: lesionkit" in res.output  # every command documents a runnable example


def test_version(runner):
    res = invoke(runner, "--version")
    assert res.exit_code == 0 and __version__ in res.output


def test_env_json(runner):
    res = invoke(runner, "env", "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    for key in ("python", "torch", "torchvision", "timm", "opencv", "numpy", "cuda_available", "gpus", "cpu_count"):
        assert key in info


def test_unknown_command_is_usage_error(runner):
    assert invoke(runner, "frobnicate").exit_code == 2


def test_error_is_short_without_traceback_and_has_hint(runner, tmp_path):
    res = invoke(runner, "manifest", "show", tmp_path / "nope.parquet")
    assert res.exit_code == 1
    assert "manifest not found" in res.output and "hint:" in res.output
    assert "Traceback" not in res.output
    verbose = invoke(runner, "-v", "manifest", "show", tmp_path / "nope.parquet")
    assert verbose.exit_code == 1 and "Traceback" in verbose.output


def test_root_help_is_fast_and_does_not_import_torch():
    code = "import sys; from lesionkit.cli.app import app; assert 'torch' not in sys.modules and 'cv2' not in sys.modules, sorted(m for m in sys.modules if m in ('torch','cv2','pandas'))"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_show_prints_schema_classes_and_provenance(runner, tmp_path):
    from lesionkit.manifest.io import Manifest, provenance_record, write_manifest
    from lesionkit.manifest.schema import coerce
    import pandas as pd

    df = coerce(pd.DataFrame({"sample_id": ["a", "b"], "source": "t", "image_path": [None, None], "label": [0, 1],
                              "lesion_id": ["L", "L"], "split": ["train", "test"], "fitzpatrick": [2, None]}))
    p = write_manifest(Manifest(df, ["ben", "mal"], [provenance_record("unit test", {"x": 1}, [])]), tmp_path / "m.parquet")
    res = invoke(runner, "manifest", "show", p, "--rows", "2")
    assert res.exit_code == 0, res.output
    for word in ("sample_id", "Int16", "ben", "mal", "train", "test", "lesion_id", "unit test", "unknown: 1"):
        assert word in res.output


def test_demo_runs_every_stage(runner, tmp_path):
    ws = tmp_path / "ws"
    res = invoke(runner, "demo", "--workspace", ws, "--n", "40", "--size", "64", "--workers", "1")
    assert res.exit_code == 0, res.output
    for name in ("synthetic/manifest.parquet", "manifest.parquet", "splits.json", "prep/manifest.parquet", "prep/preview.png"):
        assert (ws / name).exists(), name
    assert "demo finished" in res.output
    obj = json.loads((ws / "splits.json").read_text())
    assert obj["report"]["shared_groups_total"] == 0 and obj["n_folds"] == 5
    again = invoke(runner, "demo", "--workspace", ws, "--n", "40", "--size", "64")
    assert again.exit_code == 1 and "--overwrite" in again.output
