"""Training options: impossible combinations rejected (naming the flag), YAML replay, exact eval gathering, metrics."""

from __future__ import annotations

import numpy as np
import pytest

from lesionkit.errors import LesionkitError, UsageError
from lesionkit.train.config import (
    TrainConfig,
    config_differences,
    resolve_static,
    validate_config,
)
from lesionkit.train.distributed import merge_shards
from lesionkit.train.engine import (
    EpochBatchSampler,
    classification_metrics,
    derive_seed,
    improved,
)
from tests.conftest import invoke

BASE = {"manifest": "m.parquet", "splits": "s.json", "device": "cpu"}


def _err(**kw) -> str:
    with pytest.raises(UsageError) as ei:
        validate_config(TrainConfig(**{**BASE, **kw}))
    e = ei.value
    return "\n".join([e.message, *e.details])


@pytest.mark.parametrize("kw, flag", [
    ({"amp": "fp16"}, "--amp fp16"),
    ({"t_mult": 2.0}, "--t-mult"),
    ({"t0": 1.0, "schedule": "cosine"}, "--t0"),
    ({"step_size": 2.0, "schedule": "sgdr"}, "--step-size"),
    ({"lr_ratio": 0.1, "lr_head": 1e-3}, "--lr-ratio and --lr-head"),
    ({"lr": "auto", "lr_backbone": 1e-4}, "--lr auto"),
    ({"fold": -1}, "--fold"),
    ({"focal_gamma": 2.0, "loss": "ce"}, "--focal-gamma"),
    ({"nesterov": True, "optimizer": "adam"}, "--nesterov"),
    ({"resume": True, "overwrite": True}, "--resume and --overwrite"),
    ({"warmup_epochs": 1.0, "schedule": "onecycle"}, "--warmup-epochs"),
    ({"class_weights": "1,x"}, "--class-weights"),
    ({"lr_ratio": 2.0}, "--lr-ratio"),
    ({"device": "cuda"}, "--device cuda"),
    ({"lr_meta": 1e-3}, "--lr-meta"),
    ({"cache_size": 16, "img_size": 32}, "--cache-size"),
    ({"small_input": True, "pretrained": "resnet18.pth"}, "--small-input with --pretrained"),
    ({"corruption": "impulse:0.01,0.05"}, "exactly one level"),
    ({"corruption": "sunburn:0.3"}, "--corruption sunburn:0.3"),
])
def test_impossible_combinations_are_rejected(kw, flag):
    if kw.get("device") == "cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA present")
    assert flag in _err(**kw)


def test_all_problems_reported_at_once():
    msg = _err(amp="fp16", t_mult=3.0, epochs=0)
    assert "--amp fp16" in msg and "--t-mult" in msg and "--epochs" in msg


def test_valid_config_passes_and_resolves():
    cfg = TrainConfig(**BASE, schedule="sgdr", optimizer="sgd", aug="seeds", img_size=416)
    validate_config(cfg)
    r = resolve_static(cfg)
    assert (r.t0, r.t_mult, r.nesterov, r.amp, r.channels_last) == (1.0, 2.0, True, "off", False)
    assert r.cache_size == 512 and r.eval_batch_size == 2 * cfg.batch_size and r.cache_dir


def test_yaml_roundtrip_and_differences(tmp_path):
    cfg = resolve_static(TrainConfig(**BASE, meta=["age_approx", "sex"], lr="auto", lr_ratio=0.1))
    text = cfg.to_yaml(tmp_path / "config.yaml")
    assert "lr: auto" in text
    back = TrainConfig.from_yaml(tmp_path / "config.yaml")
    assert back == cfg
    assert config_differences(cfg, back.replace(num_workers=7, resume=True)) == []
    diffs = config_differences(cfg, back.replace(epochs=99))
    assert len(diffs) == 1 and diffs[0].startswith("epochs")
    (tmp_path / "bad.yaml").write_text("epochz: 3\n")
    with pytest.raises(LesionkitError, match="epochz"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")


def test_cli_rejects_fp16_on_cpu(runner, tmp_path):
    res = invoke(runner, "train", tmp_path / "m.parquet", "--splits", tmp_path / "s.json", "--amp", "fp16",
                 "--device", "cpu")
    assert res.exit_code == 2
    assert "--amp fp16" in res.output


def test_cli_help_has_example(runner):
    for cmd in ("train", "lr-find"):
        res = invoke(runner, cmd, "--help")
        assert res.exit_code == 0 and "Example: lesionkit" in res.output


def test_merge_shards_exact_and_ordered():
    n = 11
    shards = [(np.arange(r, n, 3), np.arange(r, n, 3)[:, None] * 10.0) for r in range(3)]
    idx, vals = merge_shards(shards, n)
    assert idx.tolist() == list(range(n))
    assert vals[:, 0].tolist() == [10.0 * i for i in range(n)]
    dup = [shards[0], shards[1], shards[2], (np.array([0]), np.array([[0.0]]))]
    with pytest.raises(LesionkitError, match="1 duplicated"):
        merge_shards(dup, n)
    with pytest.raises(LesionkitError, match="missing"):
        merge_shards(shards[:2], n)


def test_metrics_match_sklearn():
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + np.eye(4)[y] * 1.5
    m = classification_metrics(y, logits, binary=False)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-12)
    assert m["acc"] == pytest.approx((logits.argmax(1) == y).mean())
    assert m["bacc"] == pytest.approx(balanced_accuracy_score(y, logits.argmax(1)))
    yb = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + yb
    mb = classification_metrics(yb, s[:, None], binary=True)
    assert mb["auc"] == pytest.approx(roc_auc_score(yb, s))
    assert mb["acc"] == pytest.approx(((s > 0) == yb).mean())
    assert classification_metrics(np.zeros(5, int), np.zeros((5, 1)), True)["auc"] is None


def test_improved_modes():
    assert improved(0.8, None, "max", 0.0)
    assert improved(0.81, 0.8, "max", 0.0) and not improved(0.805, 0.8, "max", 0.01)
    assert improved(0.5, 0.6, "min", 0.0) and not improved(float("nan"), 0.6, "min", 0.0)
    assert not improved(None, 0.5, "max", 0.0)


class _S:
    def __init__(self, n):
        self.n, self.epoch = n, 0

    def set_epoch(self, e):
        self.epoch = e

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter(np.random.default_rng(self.epoch).permutation(self.n).tolist())


def test_epoch_batch_sampler_resume_skips_batches():
    bs = EpochBatchSampler(_S(10), 3, drop_last=True)
    bs.set_epoch(2)
    full = list(bs)
    assert len(full) == len(bs) == 3 and all(len(b) == 3 for b in full)
    assert [k[1] for b in full for k in b] == list(range(9))  # positions within the epoch
    bs.set_epoch(2, start_batch=1)
    assert list(bs) == full[1:]
    assert derive_seed(0, "aug", 1, 0, 5) == derive_seed(0, "aug", 1, 0, 5) != derive_seed(0, "aug", 1, 0, 6)
