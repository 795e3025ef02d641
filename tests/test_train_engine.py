"""Training engine on synthetic data (CPU): learning, exact resume, checkpoints, snapshots, lr-find, DDP (gloo)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lesionkit.train.config import TrainConfig


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict[str, Path]:
    """400 synthetic images (64 px, clear melanomas), lesion-cropped by prep (malignancy cues then fill the frame), 3 grouped folds."""
    from lesionkit.prep.pipeline import PrepConfig
    from lesionkit.prep.run import run_prep
    from lesionkit.splits.run import run_split
    from lesionkit.synthetic import generate

    root = tmp_path_factory.mktemp("train")
    # melanomas at severity >= 0.7 (the default 0.25 makes some subtle: a tiny CNN on ~270 training images then
    # plateaus near AUC 0.84, which would test the data, not the engine)
    generate(root / "syn", n=400, size=64, seed=0, workers=2, min_severity=0.7)
    run_prep(root / "syn" / "manifest.parquet", root / "prep", PrepConfig(size=64, resize_mode="lesion-crop"), workers=2)
    run_split(root / "prep" / "manifest.parquet", root / "splits.json", n_folds=3, seed=0)
    return {"root": root, "manifest": root / "prep" / "manifest.parquet", "splits": root / "splits.json",
            "cache": root / "cache"}


def _cfg(s: dict[str, Path], name: str, **kw) -> TrainConfig:
    base = {"manifest": str(s["manifest"]), "splits": str(s["splits"]), "target": "malignant", "model": "test_resnet",
                "image_col": "prep_path",
                "img_size": 32, "epochs": 2, "batch_size": 16, "num_workers": 0, "lr": 3e-3, "aug": "light", "device": "cpu",
                "cache_dir": str(s["cache"]), "run_dir": str(s["root"] / "runs" / name), "progress": False}
    return TrainConfig(**{**base, **kw})


def _evaluate(ckpt_path: Path, s: dict[str, Path], fold: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Independent single-process evaluation of a checkpoint on the fold's validation rows (PIL decode)."""
    from PIL import Image

    from lesionkit.data.cache import fit_square
    from lesionkit.data.meta import MetaEncoder
    from lesionkit.data.transforms import build_transform
    from lesionkit.manifest.io import read_manifest
    from lesionkit.models.checkpoint import model_from_checkpoint
    from lesionkit.splits.io import read_splits

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model = model_from_checkpoint(ckpt)
    dc = ckpt["data_cfg"]
    m = read_manifest(s["manifest"])
    ids = read_splits(s["splits"]).fold(fold)["val"]
    df = m.df.set_index("sample_id").loc[ids]
    tf = build_transform(dc["aug"], dc["input_size"][1], False, tuple(dc["mean"]), tuple(dc["std"]))
    x = torch.stack([tf(fit_square(np.asarray(Image.open(p).convert("RGB")), dc["cache_size"]))
                     for p in df[dc["image_col"]]])
    meta = None
    if ckpt["meta_encoder"]:
        meta = torch.from_numpy(MetaEncoder.from_dict(ckpt["meta_encoder"]).transform(df.reset_index()))
    with torch.no_grad():
        logits = model(x, meta) if meta is not None else model(x)
    return df["malignant"].to_numpy().astype(int), logits.numpy()


def _history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


class _Draws(torch.utils.data.Dataset):
    """Item i = (i, a torch draw, a numpy draw, a Python draw): what a transform would see from each RNG."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int):
        import random

        return i, torch.rand(2), float(np.random.rand()), random.random()


def test_seeded_dataset_draws_restores_and_batches(monkeypatch):
    """Each sample's draws are those after seeding all three RNGs with derive_seed(seed, "aug", epoch, rank, pos),
    whatever batch it is loaded in; main-process loading leaves the global states as they were; torch.manual_seed
    (which also reseeds every CUDA device and costs 0.24 ms) is not called."""
    import random

    from lesionkit.train.engine import SeededDataset, derive_seed

    ds = SeededDataset(_Draws(), seed=5, rank=1)
    keys = [(2, 7, 3), (2, 8, 4), (3, 0, 3)]
    expect = []
    for e, pos, i in keys:
        sd = derive_seed(5, "aug", e, 1, pos)
        torch.manual_seed(sd)
        np.random.seed(sd % 2**32)
        random.seed(sd)
        expect.append((i, torch.rand(2), float(np.random.rand()), random.random()))
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())

    def forbidden(*a, **k):
        raise AssertionError("torch.manual_seed called")

    monkeypatch.setattr(torch, "manual_seed", forbidden)
    got = ds.__getitems__(keys)
    assert [ds[k][0] for k in keys] == [k[2] for k in keys]
    singles = [ds[k] for k in keys]
    for a, b, c in zip(got, singles, expect):
        assert a[0] == b[0] == c[0] and torch.equal(a[1], c[1]) and torch.equal(b[1], c[1])
        assert a[2] == b[2] == c[2] and a[3] == b[3] == c[3]
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1]) and random.getstate() == before[2]
    # through a DataLoader (which calls __getitems__ with each batch's keys)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=[keys[:2], keys[2:]], num_workers=0)
    batches = list(loader)
    assert torch.equal(batches[0][1], torch.stack([expect[0][1], expect[1][1]]))
    assert torch.equal(batches[1][1][0], expect[2][1])


def test_learns_synthetic_malignant(synth):
    from lesionkit.train.run import run_train

    # 12 epochs: with 10, seed 0 reached 0.898 after a fresh install (opencv-python-headless 5.1.0.95,
    # numpy 2.4.6), seeds 1 and 2 0.946 / 0.924; 12 epochs give 0.936
    cfg = _cfg(synth, "learn", model="resnet10t", epochs=12, img_size=32, aug="light", lr=3e-3, schedule="cosine")
    rec = run_train(cfg)
    assert rec["status"] == "finished"
    assert rec["best"]["value"] > 0.9, rec["best"]
    run = Path(cfg.run_dir)
    hist = _history(run)
    assert list(hist[0]) == ["epoch", "step", "lr_first", "lr_last", "train_loss", "val_loss", "val_acc", "val_bacc",
                             "val_auc", "time_s", "is_best"]
    assert len(hist) == 12 and [int(float(r["epoch"])) for r in hist] == list(range(1, 13))
    # best.pt evaluated independently reproduces the best AUC in history
    from sklearn.metrics import roc_auc_score

    y, logits = _evaluate(run / "checkpoints" / "best.pt", synth)
    best_row = max(hist, key=lambda r: float(r["val_auc"]))
    assert roc_auc_score(y, logits[:, 0]) == pytest.approx(float(best_row["val_auc"]), abs=1e-6)


def test_resume_equivalence_snapshots_meta_and_checkpoint(synth):
    """2 epochs straight == 1 epoch (stopped) + --resume (with 2 DataLoader workers) for 1 more; SGDR snapshots;
    metadata fusion; checkpoints load with weights_only=True and carry what later stages need."""
    from lesionkit.train.run import run_train

    common = {"deterministic": True, "drop_rate": 0.2, "meta": ["age", "sex", "site"], "schedule": "sgdr", "t0": 1.0,
                  "t_mult": 1.0, "eval_every": "half", "sampler": "balanced", "optimizer": "sgd", "lr": 0.05}
    a = _cfg(synth, "straight", **common)
    run_train(a)
    b = _cfg(synth, "resumed", **common, stop_after=1)
    rec1 = run_train(b)
    assert rec1["status"] == "stopped" and rec1["epochs_done"] == 1
    rec2 = run_train(b.replace(stop_after=None, resume=True, num_workers=2))
    assert rec2["status"] == "finished" and rec2["resumed_from"]["epoch"] == 1

    ra, rb = Path(a.run_dir), Path(b.run_dir)
    ca = torch.load(ra / "checkpoints" / "last.pt", weights_only=True)
    cb = torch.load(rb / "checkpoints" / "last.pt", weights_only=True)
    assert ca["step"] == cb["step"] > 0
    for k, v in ca["state_dict"].items():
        assert torch.equal(v, cb["state_dict"][k]), k
    for sa, sb in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values(), strict=True):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert ca["scheduler"] == cb["scheduler"]
    ha, hb = _history(ra), _history(rb)
    assert [r["epoch"] for r in hb] == ["0.5", "1.0", "1.5", "2.0"]
    for x, y in zip(ha, hb, strict=True):
        assert {k: v for k, v in x.items() if k != "time_s"} == {k: v for k, v in y.items() if k != "time_s"}
    # snapshot checkpoints at the end of each 1-epoch SGDR cycle
    assert sorted(p.name for p in (ra / "checkpoints").glob("snapshot_cycle*.pt")) == ["snapshot_cycle1.pt",
                                                                                        "snapshot_cycle2.pt"]
    snap = torch.load(ra / "checkpoints" / "snapshot_cycle2.pt", weights_only=True)
    assert all(torch.equal(v, ca["state_dict"][k]) for k, v in snap["state_dict"].items())
    # what later stages need
    assert ca["classes"] == ["benign", "malignant"] and ca["target"]["kind"] == "binary"
    assert ca["model_spec"]["name"] == "test_resnet" and ca["model_spec"]["meta_dim"] > 0
    assert ca["data_cfg"]["input_size"] == [3, 32, 32] and len(ca["data_cfg"]["mean"]) == 3
    assert ca["meta_encoder"] is not None and ca["config"]["target"] == "malignant"
    # the saved config replays
    replay = TrainConfig.from_yaml(ra / "config.yaml")
    assert replay.meta == ["age_approx", "sex", "anatom_site"] or replay.meta == ["age", "sex", "site"]
    assert replay.loss == "bce" and replay.t_mult == 1.0
    # last.pt metrics == an independent evaluation of the checkpoint
    from sklearn.metrics import roc_auc_score

    y, logits = _evaluate(ra / "checkpoints" / "last.pt", synth)
    assert roc_auc_score(y, logits[:, 0]) == pytest.approx(float(ha[-1]["val_auc"]), abs=1e-6)


def test_bf16_autocast_on_cpu_takes_effect(synth):
    """--amp bf16 runs the same autocast path as on CUDA (focal loss, metadata branch): finite losses, a checkpoint
    that loads with weights_only=True, and weights that differ from the same run in float32 (the flag is used)."""
    import math

    from lesionkit.train.run import run_train

    # 32 px: at 16 px test_resnet's layer4 convolves a 1x1 map (3x3, stride 2), and torch 2.14's CPU bf16 backward of
    # that degenerate convolution returns weight gradients of 1e31 (float32 gives 0.1): a kernel bug, not ours
    common = {"epochs": 1, "img_size": 32, "loss": "focal", "meta": ["age", "sex", "site"]}
    runs = {}
    for amp in ("bf16", "off"):
        cfg = _cfg(synth, f"amp_{amp}", amp=amp, **common)
        rec = run_train(cfg)
        assert rec["status"] == "finished"
        h = _history(Path(cfg.run_dir))[-1]
        assert math.isfinite(float(h["train_loss"])) and math.isfinite(float(h["val_loss"]))
        runs[amp] = torch.load(Path(cfg.run_dir) / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
        assert runs[amp]["config"]["amp"] == amp
    a, b = runs["bf16"]["state_dict"], runs["off"]["state_dict"]
    assert any(v.is_floating_point() and not torch.equal(v, b[k]) for k, v in a.items())
    assert all(v.dtype == b[k].dtype for k, v in a.items())  # autocast leaves the stored weights in float32


def test_run_dir_guards_and_resume_mismatch(synth):
    from lesionkit.errors import OutputExistsError, UsageError
    from lesionkit.train.run import run_train

    cfg = _cfg(synth, "guard", epochs=1, img_size=16, stop_after=None)
    run_train(cfg)
    with pytest.raises(OutputExistsError, match="run directory exists"):
        run_train(cfg)
    with pytest.raises(UsageError, match="options differ") as ei:
        run_train(cfg.replace(resume=True, lr=1e-2))
    assert any(d.startswith("lr:") for d in ei.value.details)
    with pytest.raises(UsageError, match="--fold 7"):
        run_train(cfg.replace(fold=7, overwrite=True))
    rec = run_train(cfg.replace(overwrite=True, epochs=1))
    assert rec["status"] == "finished"


def test_lr_find_writes_plot_and_restores_weights(synth, tmp_path):
    from lesionkit.train.run import run_lr_find

    rec = run_lr_find(_cfg(synth, "lrf", lr_find_steps=25, lr_find_start=1e-5, lr_find_end=10.0), out_dir=tmp_path)
    assert (tmp_path / "lr_find.png").stat().st_size > 5000
    data = json.loads((tmp_path / "lr_find.json").read_text())
    assert 1e-5 <= data["suggestion"] <= 10.0 and len(data["lrs"]) <= 25
    assert rec["suggestion"] == data["suggestion"]


@pytest.mark.dist
def test_ddp_two_process_gloo(synth):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not available")
    run = synth["root"] / "runs" / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "lesionkit", "--no-progress", "train", str(synth["manifest"]), "--splits", str(synth["splits"]),
           "--image-col", "prep_path",
           "--target", "malignant", "--model", "test_resnet", "--img-size", "32", "--epochs", "1",
           "--batch-size", "16", "--num-workers", "0", "--device", "cpu", "--cache-dir", str(synth["cache"]),
           "--run-dir", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rj = json.loads((run / "run.json").read_text())
    assert rj["world_size"] == 2 and rj["backend"] == "gloo" and rj["status"] == "finished"
    # rank 0 alone wrote and logged: exactly the run files, one line per check
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml", "history.csv", "run.json"]
    assert res.stderr.count("epoch 1/1: train_loss") == 1
    hist = _history(run)
    # each rank trained half the (padded) data: steps per epoch = ceil(n_train / 2) // batch
    assert rj["steps_per_epoch"] == (rj["n_train"] + 1) // 2 // 16
    from sklearn.metrics import accuracy_score, roc_auc_score

    y, logits = _evaluate(run / "checkpoints" / "last.pt", synth)
    assert len(y) == rj["n_val"]
    assert roc_auc_score(y, logits[:, 0]) == pytest.approx(float(hist[-1]["val_auc"]), abs=1e-6)
    assert accuracy_score(y, logits[:, 0] > 0) == pytest.approx(float(hist[-1]["val_acc"]), abs=1e-9)
