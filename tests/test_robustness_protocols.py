"""Protocols 2 / 3: retraining through the train engine with the corruption in the training pixel pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory) -> Path:
    from lesionkit.splits.run import run_split
    from lesionkit.synthetic import generate
    from lesionkit.train.config import TrainConfig
    from lesionkit.train.run import run_train

    root = tmp_path_factory.mktemp("robp")
    generate(root / "synth", n=48, size=32, seed=2)
    run_split(root / "synth" / "manifest.parquet", root / "splits.json", n_folds=2, seed=0, test_frac=0.3)
    cfg = TrainConfig(manifest=str(root / "synth" / "manifest.parquet"), splits=str(root / "splits.json"),
                      model="test_resnet", img_size=32, aug="none", batch_size=16, num_workers=0, epochs=1,
                      cache_dir=str(root / "cache"), device="cpu", run_dir=str(root / "run"), lr=3e-3,
                      progress=False)
    run_train(cfg)
    return root / "run"


def test_corrupted_dataset_wraps_training_pixels(engine_run: Path) -> None:
    from lesionkit.robustness.corruptions import apply_numpy
    from lesionkit.train import run as R
    from lesionkit.train.config import TrainConfig, resolve_static

    cfg = resolve_static(TrainConfig.from_yaml(engine_run / "config.yaml"))
    inp = R.load_inputs(cfg)
    clean = R.build_data(cfg, inp, [0.5] * 3, [0.25] * 3)
    data = R.build_data(cfg.replace(corruption="impulse:0.2", corruption_seed=4), inp, [0.5] * 3, [0.25] * 3)
    for ds, ref in ((data.train_set, clean.train_set), (data.val_set, clean.val_set)):
        for i in range(3):
            want = apply_numpy(ref.load_image(i), "impulse", 0.2, seed=4, sample_id=ref.ids[i])
            assert np.array_equal(ds.load_image(i), want)
            assert not np.array_equal(ds.load_image(i), ref.load_image(i))
        assert ds[0]["image"].shape == ref[0]["image"].shape
    import pickle

    assert np.array_equal(pickle.loads(pickle.dumps(data.train_set)).load_image(1), data.train_set.load_image(1))


def test_matched_protocol_trains_and_tests(engine_run: Path) -> None:
    from lesionkit.robustness.run import RobustnessConfig, run_robustness

    out = engine_run / "rob_matched"
    rec = run_robustness(RobustnessConfig(run=str(engine_run), corruptions=["impulse:0.3"], protocol="matched",
                                          out=str(out), n_boot=10, batch_size=16, epochs=1, device="cpu"))
    child = out / "train" / "impulse_0.3"
    assert (child / "checkpoints").is_dir()
    tr = json.loads((child / "robustness_train.json").read_text())
    assert tr["corruption"] == "impulse" and tr["level"] == 0.3
    assert json.loads((child / "run.json").read_text())["status"] in ("finished", "early_stopped")
    from lesionkit.train.config import TrainConfig

    replay = TrainConfig.from_yaml(child / "config.yaml")  # the corruption is in the child's own config
    assert (replay.corruption, replay.corruption_seed) == ("impulse:0.3", 0)
    cell = json.loads((out / "cells" / "matched" / "impulse" / "0.3" / "metrics.json").read_text())
    assert cell["tested_with"] == {"corruption": "impulse", "level": 0.3}
    s = pd.read_parquet(out / "summary.parquet")
    assert set(s["protocol"]) == {"clean", "matched"}
    assert [c["protocol"] for c in rec["cells"]] == ["test", "matched"]
    # a second call reuses the finished child run (no retraining), and train-corrupt tests it clean
    rec2 = run_robustness(RobustnessConfig(run=str(engine_run), corruptions=["impulse:0.3"], protocol="train-corrupt",
                                           out=str(out), n_boot=10, batch_size=16, epochs=1, device="cpu",
                                           overwrite=True))
    assert rec2["cells"][1]["protocol"] == "train-corrupt"
    cell2 = json.loads((out / "cells" / "train-corrupt" / "impulse" / "0.3" / "metrics.json").read_text())
    assert cell2["tested_with"] == "clean"
