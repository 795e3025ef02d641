"""Test-time sweep end to end on a tiny CNN trained here on synthetic data; summary, plots, report, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import invoke


def make_tiny_run(root: Path, n: int = 64, size: int = 32, steps: int = 25) -> Path:
    """Synthetic data + manifest + splits, a timm ``test_resnet`` trained for ``steps`` steps with a plain torch
    loop, saved as ``root/run/checkpoints/best.pt`` (with the config a `lesionkit train` run would record)."""
    from lesionkit.data.cache import build_cache, cache_key
    from lesionkit.data.transforms import build_transform
    from lesionkit.manifest.io import read_manifest
    from lesionkit.models.checkpoint import save_checkpoint
    from lesionkit.models.factory import ModelSpec, create_model, data_config
    from lesionkit.splits.io import read_splits
    from lesionkit.splits.run import run_split
    from lesionkit.synthetic import generate

    generate(root / "synth", n=n, size=size, seed=1)
    mpath = root / "synth" / "manifest.parquet"
    run_split(mpath, root / "splits.json", n_folds=2, seed=0, test_frac=0.3)
    m = read_manifest(mpath)
    sp = read_splits(root / "splits.json", m.fingerprint())
    df = m.df.set_index(m.df["sample_id"].astype(str))
    train_ids = [str(i) for i in sp.fold(0)["train"]]
    cache = build_cache(df.loc[train_ids, "image_path"].astype(str).tolist(), size, root / "cache",
                        cache_key(m.fingerprint(), "image_path", size, train_ids))
    torch.manual_seed(0)
    spec = ModelSpec(name="test_resnet", num_outputs=2, img_size=size)
    net = create_model(spec)
    dcfg = data_config(net)
    tf = build_transform("none", size, train=False, mean=tuple(dcfg["mean"]), std=tuple(dcfg["std"]))
    x = torch.stack([tf(cache[i]) for i in range(len(cache))])
    y = torch.tensor(df.loc[train_ids, "label"].astype(int).to_numpy())
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    run = root / "run"
    dcfg.update({"aug": "none", "cache_size": size, "image_col": "image_path"})
    save_checkpoint(run / "checkpoints" / "best.pt", model=net, spec=spec, classes=list(m.classes),
                    target={"name": "label", "kind": "multiclass", "classes": list(m.classes), "column": "label"},
                    data_cfg=dcfg, meta_encoder=None,
                    config={"manifest": str(mpath), "splits": str(root / "splits.json"), "fold": 0, "target": "label",
                            "image_col": "image_path", "cache_dir": str(root / "cache")},
                    epoch=1, step=steps, best_metric=None)
    return run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("rob"))


def test_sweep_outputs_and_consistency(tiny_run: Path) -> None:
    from lesionkit.evaluate.metrics import multiclass_metrics
    from lesionkit.robustness.run import RobustnessConfig, run_robustness

    out = tiny_run / "rob1"
    rec = run_robustness(RobustnessConfig(run=str(tiny_run), corruptions=["impulse:0.05,0.5", "gaussian_blur:5"],
                                          out=str(out), n_boot=20, batch_size=16, group_by="fitzpatrick", min_group_size=3))
    s = pd.read_parquet(out / "summary.parquet")
    assert set(s["protocol"]) == {"clean", "test"}
    overall = s[(s["group_col"] == "all") & (s["metric"] == "accuracy")]
    assert len(overall) == 4  # clean + 3 cells
    # each cell's metrics.json agrees with its predictions, and delta = value - clean
    clean = json.loads((out / "cells" / "test" / "clean" / "metrics.json").read_text())
    cell = json.loads((out / "cells" / "test" / "impulse" / "0.5" / "metrics.json").read_text())
    pred = pd.read_parquet(out / "cells" / "test" / "impulse" / "0.5" / "predictions.parquet")
    ref = multiclass_metrics(pred["label"].to_numpy(), pred[["prob_benign", "prob_malignant"]].to_numpy(),
                             ["benign", "malignant"])
    assert cell["overall"]["accuracy"]["estimate"] == pytest.approx(ref["accuracy"])
    assert cell["delta"]["accuracy"]["estimate"] == pytest.approx(
        cell["overall"]["accuracy"]["estimate"] - clean["overall"]["accuracy"]["estimate"])
    row = overall[overall["level"] == 0.5].iloc[0]
    assert row["delta_ci_low"] <= row["delta"] <= row["delta_ci_high"]
    # 50% impulse noise must change predictions
    clean_pred = pd.read_parquet(out / "cells" / "test" / "clean" / "predictions.parquet")
    assert not np.allclose(clean_pred["prob_malignant"], pred["prob_malignant"])
    assert (s["group_col"] == "fitzpatrick").any()
    for p in ("summary.csv", "robustness.json", "robustness.html", "plots/accuracy_vs_level.png"):
        assert (out / p).is_file(), p
    assert "Robustness" in (out / "robustness.html").read_text()
    assert rec["cells"][0]["corruption"] == "none"


def test_sweep_is_deterministic_and_matches_numpy_path(tiny_run: Path) -> None:
    """Batched device corruption == numpy corruption of each image before the evaluation transform."""
    from lesionkit.data.transforms import build_transform
    from lesionkit.models.checkpoint import load_checkpoint, model_from_checkpoint
    from lesionkit.robustness.corruptions import apply_numpy, parse_corruption
    from lesionkit.robustness.run import RobustnessConfig, eval_pipeline, load_eval_data
    from lesionkit.robustness.sweep import predict

    ck = load_checkpoint(tiny_run / "checkpoints" / "best.pt")
    data, _ = load_eval_data(ck, RobustnessConfig(run=str(tiny_run)))
    net = model_from_checkpoint(ck)
    spec = parse_corruption("impulse:0.1")
    a, _ = predict(net, data, eval_pipeline(ck, "cpu"), device="cpu", batch_size=7, corruption=spec, level=0.1, seed=3)
    b, _ = predict(net, data, eval_pipeline(ck, "cpu"), device="cpu", batch_size=16, corruption=spec, level=0.1, seed=3)
    assert np.allclose(a, b, atol=1e-6)
    d = ck["data_cfg"]
    tf = build_transform("none", 32, train=False, mean=tuple(d["mean"]), std=tuple(d["std"]))
    with torch.no_grad():
        x = torch.stack([tf(apply_numpy(data.images[i], "impulse", 0.1, seed=3, sample_id=data.ids[i]))
                         for i in range(len(data.ids))])
        ref = torch.softmax(net(x), 1).numpy()
    assert np.allclose(a, ref, atol=1e-5)


def test_cli_list_and_errors(tiny_run: Path, runner) -> None:
    r = invoke(runner, "robustness", "--list")
    assert r.exit_code == 0, r.output
    for name in ("impulse", "gaussian_blur", "motion_blur", "defocus", "jpeg", "hair", "ink"):
        assert name in r.output
    r = invoke(runner, "robustness", str(tiny_run), "-c", "bogus:1")
    assert r.exit_code == 2
    r = invoke(runner, "robustness", str(tiny_run / "nope"))
    assert r.exit_code == 1


def test_cli_noise_shortcut(tiny_run: Path, runner) -> None:
    out = tiny_run / "rob_cli"
    r = invoke(runner, "robustness", str(tiny_run), "--noise", "1%,15%", "--out", str(out), "--n-boot", "10")
    assert r.exit_code == 0, r.output
    s = pd.read_parquet(out / "summary.parquet")
    assert sorted(s[s["corruption"] == "impulse"]["level"].unique()) == [0.01, 0.15]
    r = invoke(runner, "robustness", str(tiny_run), "--noise", "5%", "--out", str(out))
    assert r.exit_code == 1 and "exists" in r.output
