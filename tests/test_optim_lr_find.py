"""LR range test: exponential sweep, early stop on divergence, exact restore, suggestion, plot."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lesionkit.errors import UsageError
from lesionkit.models.factory import ModelSpec, create_model
from lesionkit.train.losses import build_loss
from lesionkit.train.lr_find import (
    LRFindResult,
    lr_range_test,
    plot_lr_find,
    suggest_lr,
    valley_lr,
)
from lesionkit.train.optim import build_optimizer


def _toy_loader(n_batches=8, bs=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 3, generator=g)
    batches = []
    for _ in range(n_batches):
        x = torch.randn(bs, 6, generator=g)
        batches.append((x, (x @ w).argmax(1)))
    return batches


def _toy_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 3))


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_lr_range_test_stops_on_divergence_and_restores_exactly():
    model = _toy_model()
    model.eval()  # mode must be restored too
    before = _snapshot(model)
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    res = lr_range_test(model, _toy_loader(), nn.CrossEntropyLoss(),
                        lambda m: torch.optim.SGD(m.parameters(), lr=1.0, momentum=0.9),
                        start_lr=1e-4, end_lr=1e4, num_steps=200)
    assert res.stopped_early and len(res.lrs) < 200
    assert len(res.lrs) == len(res.losses) == len(res.smoothed)
    # exponential sweep: constant log step (end/start)^(1/(num_steps-1))
    np.testing.assert_allclose(np.diff(np.log(res.lrs)), math.log(1e8) / 199, rtol=1e-9)
    assert res.lrs[0] == pytest.approx(1e-4)
    last = res.smoothed[-1]
    assert (not math.isfinite(res.losses[-1])) or last > 4.0 * min(res.smoothed[:-1])
    assert res.method == "valley" and res.suggestion == res.valley == valley_lr(res.lrs, res.smoothed)
    for lr in (res.valley, res.steepest):
        assert res.lrs[0] < lr < res.lrs[-1]
    assert res.steepest <= res.min_loss_lr
    after = model.state_dict()
    assert set(after) == set(before)
    for k in before:
        assert torch.equal(after[k], before[k]), f"{k} not restored bit-exactly"
    assert not model.training
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_lr_range_test_lesionnet_dict_batches_with_meta(tmp_path):
    torch.manual_seed(0)
    model = create_model(ModelSpec("test_resnet", 3, 32, meta_dim=2, meta_hidden=(8,)))
    model.train()
    before = _snapshot(model)
    batches = [{"image": torch.randn(4, 3, 32, 32), "target": torch.tensor([0, 1, 2, 1]),
                "meta": torch.randn(4, 2), "index": torch.arange(4)} for _ in range(2)]
    res = lr_range_test(model, batches, build_loss("ce", 3, None),
                        lambda m: build_optimizer(m, "adamw", 1e-3, 0.01, lr_ratio=0.1),
                        start_lr=1e-5, end_lr=1e-2, num_steps=5, device="cpu", suggest="minimum")
    assert res.suggestion == pytest.approx(res.min_loss_lr / 10)
    assert len(res.lrs) == 5 and not res.stopped_early
    assert res.lrs[-1] == pytest.approx(1e-2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.training
    png = plot_lr_find(res, tmp_path / "lr_find.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_suggest_lr_steepest_descent_of_known_curve():
    lrs = list(np.logspace(-6, 0, 121))
    x = np.log10(lrs)
    smoothed = list(2.0 - np.tanh(2.0 * (x + 3.0)) + 0.5 * np.clip(x + 1.0, 0, None) ** 2)  # steepest at 1e-3
    sug, at_min = suggest_lr(lrs, smoothed)
    assert sug == pytest.approx(1e-3, rel=0.13)  # grid step is 10^0.05 ≈ 1.12
    assert at_min > sug
    short, _ = suggest_lr([1e-3, 1e-2, 1e-1], [1.0, 0.5, 3.0])
    assert short == pytest.approx(1e-3)  # too few points → lr at the minimum / 10


def test_valley_lr_hand_value():
    lrs = list(np.logspace(-5, 0, 60))
    smoothed = [3.0 - 0.05 * i for i in range(30)] + [1.6 + 0.1 * i for i in range(30)]
    assert valley_lr(lrs, smoothed) == lrs[0 + 9 + 4]  # descent 0..29: start + ⌊29/3⌋ + ⌊29/6⌋
    bumpy = [2.0, 2.5, 1.0] + [3.0 - 0.05 * i for i in range(20)] + [9.0]
    # longest strictly descending subsequence: 3.0, 2.95, …, 2.05 (indices 3..22, length 20; the early 2.0/2.5/1.0
    # cannot precede it) → start = 22 − 20 + 1 = 3 → index 3 + ⌊19/3⌋ + ⌊19/6⌋ = 12
    assert valley_lr(lrs[: len(bumpy)], bumpy) == lrs[12]


def test_lr_find_plot_and_validation(tmp_path):
    lrs = list(np.logspace(-5, 0, 60))
    x = np.log10(lrs)
    losses = list(1.1 - 0.6 * np.tanh(1.5 * (x + 2.5)) + np.exp(3 * (x + 0.5)))
    steep, at_min = suggest_lr(lrs, losses)
    res = LRFindResult(lrs=lrs, losses=losses, suggestion=valley_lr(lrs, losses), stopped_early=True,
                       smoothed=losses, min_loss_lr=at_min, valley=valley_lr(lrs, losses), steepest=steep)
    out = plot_lr_find(res, tmp_path / "sub" / "plot.png")
    assert out.stat().st_size > 5000
    assert sorted(p.name for p in out.parent.iterdir()) == ["plot.png"]
    d = res.to_dict()
    assert d["suggestion"] == res.suggestion and len(d["lrs"]) == 60
    with pytest.raises(UsageError):
        lr_range_test(_toy_model(), _toy_loader(), nn.CrossEntropyLoss(),
                      lambda m: torch.optim.SGD(m.parameters(), lr=1.0), start_lr=1.0, end_lr=0.1)
    with pytest.raises(UsageError):
        lr_range_test(_toy_model(), _toy_loader(), nn.CrossEntropyLoss(),
                      lambda m: torch.optim.SGD(m.parameters(), lr=1.0), suggest="best")
