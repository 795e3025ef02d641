"""Debiasing heads (LNTL, TABE, CLGR): losses against hand / torch references, gradient routing per method,
flag checks, the engine integration on synthetic data, and the example configs of the seed experiments."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lesionkit.errors import UsageError
from lesionkit.train.config import TrainConfig, resolve_static, validate_config
from lesionkit.train.debias import (
    Debiaser,
    bias_class_weights,
    encode_bias,
    grad_reverse,
    grl_coefficient,
    negative_entropy,
    uniform_confusion,
)


def test_grad_reverse_scales_the_gradient_only():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    y = grad_reverse(x, -0.1)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -0.1 * w)


def test_entropy_and_uniform_confusion_match_references():
    logits = torch.randn(6, 4, dtype=torch.float64)
    p = logits.softmax(1).numpy()
    from scipy.stats import entropy

    assert float(negative_entropy(logits)) == pytest.approx(-float(np.mean(entropy(p, axis=1))), abs=1e-6)
    # TABE's confusion loss = cross-entropy with the uniform distribution as soft target (torch's own CE)
    ref = F.cross_entropy(logits.float(), torch.full((6, 4), 0.25))
    assert float(uniform_confusion(logits)) == pytest.approx(float(ref), abs=1e-6)
    assert float(uniform_confusion(torch.zeros(3, 4))) == pytest.approx(math.log(4), abs=1e-7)  # minimum: log K
    assert float(uniform_confusion(torch.tensor([[5.0, 0, 0, 0]]))) > math.log(4) + 1


def test_grl_schedules():
    assert grl_coefficient(-0.1, "constant", 0.3) == -0.1
    assert grl_coefficient(-0.1, "dann", 0.0) == 0.0
    assert grl_coefficient(-0.1, "dann", 1.0) == pytest.approx(-0.1 * (2 / (1 + math.exp(-10)) - 1))
    assert grl_coefficient(-1.0, "dann", 0.5) == pytest.approx(-(2 / (1 + math.exp(-5)) - 1))


def test_bias_class_weights_and_encoding():
    w = bias_class_weights(np.array([0, 0, 0, 1, -1, 2, 2, 2, 2, 2, 2]), 4)
    # N / (K · N_k) over the 10 known codes and the 3 classes present; the absent class gets 0
    assert w.tolist() == pytest.approx([10 / 9, 10 / 3, 10 / 18, 0.0])
    df = pd.DataFrame({"fitz": [1.0, 2.0, np.nan, 3.0, 2.0, 6.0], "one": ["a"] * 6})
    b = encode_bias(df, "fitz", np.array([0, 1, 2, 3]))
    assert b.classes == ["1", "2", "3"] and b.codes.tolist() == [0, 1, -1, 2, 1, -1]  # 6 never seen in training
    with pytest.raises(UsageError, match="at least 2"):
        encode_bias(df, "one", np.arange(6))
    with pytest.raises(UsageError, match="no such column"):
        encode_bias(df, "skin", np.arange(6))


class _Net(nn.Module):
    """A LesionNet-shaped toy: encoder → features; main head; bias head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Linear(5, 8)
        self.head = nn.Linear(8, 1)
        self.aux_head = nn.Linear(8, 3)


def _grads(net: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    net.zero_grad()
    loss.backward()
    return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in net.named_parameters()}


@pytest.mark.parametrize("method", ["lntl", "tabe", "clgr"])
def test_each_loss_reaches_only_the_parameters_the_method_assigns(method):
    """Reference: each term's gradient computed on its own with plain autograd, then combined by hand."""
    # imbalanced bias classes (6, 2 and 1 rows: unequal weights) and one unknown row
    x, y, b = torch.randn(10, 5), torch.randint(0, 2, (10,)).float(), torch.tensor([0, 0, 0, -1, 0, 1, 2, 0, 1, 0])
    cw = bias_class_weights(b.numpy(), 3)
    assert len(set(cw.tolist())) == 3  # unequal class weights: the weighting is exercised
    lam, coef = 0.5, -0.3
    net = _Net()
    deb = Debiaser(method, lam, coef, "constant", cw)
    f = net.enc(x)
    main = F.binary_cross_entropy_with_logits(net.head(f)[:, 0], y)
    total, parts = deb.loss(net.aux_head, f, b, main, 0.0)
    got = _grads(net, total)

    def term(kind: str) -> dict[str, torch.Tensor]:
        f = net.enc(x)
        if kind == "main":
            return _grads(net, F.binary_cross_entropy_with_logits(net.head(f)[:, 0], y))
        if kind == "adv":
            z = net.aux_head(f)
            p = z.softmax(1)
            adv = (p * p.log()).sum(1).mean() if method == "lntl" else -(z.log_softmax(1)).mean()
            return _grads(net, adv)
        k = b >= 0
        return _grads(net, F.cross_entropy(net.aux_head(f)[k], b[k], weight=cw))

    g_main, g_adv, g_aux = term("main"), term("adv"), term("aux")
    enc_coef = 0.0 if method == "tabe" else coef
    for n in ("enc.weight", "enc.bias"):
        assert torch.allclose(got[n], g_main[n] + lam * g_adv[n] + enc_coef * g_aux[n], atol=1e-6), n
    for n in ("head.weight", "head.bias"):
        assert torch.allclose(got[n], g_main[n], atol=1e-6), n
    for n in ("aux_head.weight", "aux_head.bias"):  # only the bias classification loss trains the bias head
        assert torch.allclose(got[n], g_aux[n], atol=1e-6), n
    assert float(parts["bias_n"]) == 9


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(manifest="m.parquet", splits="s.json", device="cpu", **kw)


def test_flag_checks_name_the_problem():
    with pytest.raises(UsageError, match="needs --bias-col"):
        validate_config(_cfg(debias="lntl"))
    with pytest.raises(UsageError, match="only apply with --debias"):
        validate_config(_cfg(bias_col="fitzpatrick"))
    with pytest.raises(UsageError, match="PREDICT the bias"):
        validate_config(_cfg(debias="lntl", bias_col="f", no_grl=True))
    validate_config(_cfg(debias="lntl", bias_col="f", no_grl=True, force_no_grl=True))
    with pytest.raises(UsageError, match="no gradient reversal"):
        validate_config(_cfg(debias="tabe", bias_col="f", grl_coef=-0.1))
    with pytest.raises(UsageError, match="is TABE"):
        validate_config(_cfg(debias="clgr", bias_col="f", no_grl=True))
    with pytest.raises(UsageError, match="positive coefficient"):
        validate_config(_cfg(debias="clgr", bias_col="f", grl_coef=0.1))
    r = resolve_static(_cfg(debias="clgr", bias_col="f"))
    assert (r.debias_weight, r.grl_coef) == (0.03, -0.1)
    r = resolve_static(_cfg(debias="lntl", bias_col="f"))
    assert (r.debias_weight, r.grl_coef) == (0.01, -0.1)
    assert resolve_static(_cfg(debias="tabe", bias_col="f")).grl_coef is None


EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_are_valid(path):
    cfg = TrainConfig.from_yaml(path).replace(manifest="m.parquet", splits="s.json", device="cpu")
    validate_config(cfg)
    assert "lesionkit train --config examples/configs/" + path.name in path.read_text()


def test_examples_cover_every_seed_method():
    names = {p.stem for p in EXAMPLES}
    assert {"debias_lntl", "debias_tabe", "debias_clgr", "soft_attention", "stochastic_split", "snapshot_sgdr"} <= names


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict[str, Path]:
    from lesionkit.splits.run import run_split
    from lesionkit.synthetic import generate

    root = tmp_path_factory.mktemp("debias")
    generate(root / "syn", n=160, size=48, seed=3, workers=2, min_severity=0.7)
    run_split(root / "syn" / "manifest.parquet", root / "splits.json", n_folds=3, seed=0)
    return {"root": root, "manifest": root / "syn" / "manifest.parquet", "splits": root / "splits.json"}


def test_engine_trains_with_clgr_and_records_the_bias_head(synth):
    from lesionkit.models.checkpoint import load_checkpoint, model_from_checkpoint
    from lesionkit.train.run import run_train

    run = synth["root"] / "runs" / "clgr"
    cfg = TrainConfig(manifest=str(synth["manifest"]), splits=str(synth["splits"]), target="malignant",
                      model="test_resnet", img_size=32, epochs=2, batch_size=16, num_workers=0, lr=3e-3, device="cpu",
                      cache_dir=str(synth["root"] / "cache"), run_dir=str(run), progress=False, debias="clgr",
                      bias_col="fitzpatrick", eval_every="half")
    assert run_train(cfg.replace(stop_after=1))["status"] == "stopped"
    rec = run_train(cfg.replace(resume=True))  # the bias head, its LR group and the GRL resume with the rest
    assert rec["status"] == "finished"
    assert rec["debias"]["column"] == "fitzpatrick" and rec["debias"]["grl_coef"] == -0.1
    k = len(rec["debias"]["classes"])
    assert k >= 3 and sum(rec["debias"]["train_counts"].values()) == rec["n_train"]
    with open(run / "history.csv", newline="") as f:
        hist = list(csv.DictReader(f))
    assert len(hist) == 4 and {"train_aux_loss", "train_adv_loss", "train_bias_acc"} <= set(hist[0])
    for r in hist:
        assert 0 <= float(r["train_bias_acc"]) <= 1 and float(r["train_aux_loss"]) > 0
        assert float(r["train_adv_loss"]) >= math.log(k) - 1e-4  # the uniform confusion loss is >= log K
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["model_spec"]["bias_outputs"] == k and ckpt["extra"]["bias"]["method"] == "clgr"
    opt_groups = {g.get("branch"): g["lr"] for g in ckpt["optimizer"]["param_groups"]}
    assert "aux" in opt_groups
    model = model_from_checkpoint(ckpt)  # evaluation ignores the bias head
    out = model(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 1)


def _planted(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """32 px images: label = colour of a central square (red vs blue); planted bias = a 4x4 'ink' mark on a
    random edge (none / green / violet), independent of the label and visible to the encoder."""
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 3, n)
    y = rng.integers(0, 2, n)
    x = 0.6 + rng.normal(0, 0.05, (n, 3, 32, 32)).astype(np.float32)
    marks = [None, (0.1, 0.7, 0.2), (0.5, 0.1, 0.6)]
    for i in range(n):
        r, c = rng.integers(8, 18, 2)
        x[i, :, r:r + 7, c:c + 7] = np.array((0.9, 0.3, 0.2) if y[i] else (0.3, 0.3, 0.8))[:, None, None]
        if marks[b[i]] is not None:
            k = rng.integers(2, 28)
            rr, cc = [(0, k), (28, k), (k, 0), (k, 28)][rng.integers(0, 4)]
            x[i, :, rr:rr + 4, cc:cc + 4] = np.array(marks[b[i]])[:, None, None]
    return torch.from_numpy((x - 0.5) / 0.25), torch.from_numpy(y), torch.from_numpy(b)


def _train_planted(method: str, weight: float, coef: float, seed: int = 0, steps: int = 120):
    """Train a LesionNet (resnet10t) with the library's Debiaser exactly as the engine uses it; returns held-out
    main accuracy, the bias head's held-out accuracy, and a freshly fitted linear probe's held-out accuracy."""
    from sklearn.linear_model import LogisticRegression

    from lesionkit.models.factory import ModelSpec, create_model
    from lesionkit.train.debias import DEFAULT_AUX_LR_MULT

    torch.manual_seed(seed)
    x, y, b = _planted(384, seed)
    net = create_model(ModelSpec("resnet10t", 1, 32, bias_outputs=3))
    main_params = [p for n, p in net.named_parameters() if not n.startswith("aux_head")]
    opt = torch.optim.AdamW([{"params": main_params, "lr": 2e-3},
                             {"params": list(net.aux_head.parameters()), "lr": 2e-3 * DEFAULT_AUX_LR_MULT[method]}])
    deb = Debiaser(method, weight, coef, "constant", bias_class_weights(b.numpy(), 3))
    g = torch.Generator().manual_seed(seed)
    net.train()
    for s in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=g)
        logits, f = net(x[idx], with_features=True)
        main = F.binary_cross_entropy_with_logits(logits[:, 0], y[idx].float())
        loss, _ = deb.loss(net.aux_head, f, b[idx], main, s / steps)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    xt, yt, bt = _planted(384, seed + 100)
    with torch.no_grad():
        f_tr, f_te = net.forward_features(x), net.forward_features(xt)
        acc = float(((net(xt)[:, 0] > 0).long() == yt).float().mean())
        head_acc = float((net.aux_head(f_te).argmax(1) == bt).float().mean())
    probe = LogisticRegression(max_iter=2000).fit(f_tr.numpy(), b.numpy())
    return acc, head_acc, float(probe.score(f_te.numpy(), bt.numpy()))


def test_planted_bias_the_bias_head_can_no_longer_read_it_while_the_task_learns():
    """Control: TABE with weight 0 is a bias head trained on detached features (no debiasing at all). Each
    method drives its bias head to chance (1/3) or below on held-out images, while the main task is still
    learned. A linear probe fitted afresh on the debiased features still reads the mark (printed, not
    asserted): adversarial unlearning hides the bias from its adversary, it does not erase it from the features
    (Elazar & Goldberg 2018) — per-group evaluation remains the test that matters."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # pytest -n 2 runs two workers on two cores
    try:
        _check_planted()
    finally:
        torch.set_num_threads(threads)


def _check_planted() -> None:
    base_acc, base_head, base_probe = _train_planted("tabe", 0.0, 0.0)
    assert base_acc >= 0.9 and base_head >= 0.55, (base_acc, base_head)
    # LNTL at its published weight; the confusion weight at 0.3 (the published 0.03 is too weak to act within
    # these 120 steps: TABE's bias head then stayed at 0.48 against 0.65 for the control)
    for method, weight, coef in (("lntl", 0.01, -0.1), ("tabe", 0.3, 0.0), ("clgr", 0.3, -0.1)):
        acc, head, probe = _train_planted(method, weight, coef)
        print(f"{method}: main acc {acc:.3f}, bias head {head:.3f} (control {base_head:.3f}), "
              f"fresh probe {probe:.3f} (control {base_probe:.3f})")
        assert acc >= 0.8, (method, acc)
        # near chance (1/3) and well below the control; not bounded below: the GRL can push the adversary
        # to systematically WRONG answers (CLGR, seed 1: 0.005), the bias then being encoded the other way round
        assert head <= min(0.5, base_head - 0.2), (method, head, base_head)


def test_a_batch_without_known_bias_values_trains_the_main_task_only():
    net = _Net()
    x, y = torch.randn(4, 5), torch.ones(4)
    f = net.enc(x)
    main = F.binary_cross_entropy_with_logits(net.head(f)[:, 0], y)
    total, parts = Debiaser("clgr", 0.0, -0.1, "constant", torch.ones(3)).loss(net.aux_head, f, torch.full((4,), -1),
                                                                             main, 0.5)
    assert float(parts["aux_loss"]) == 0.0 and float(parts["bias_n"]) == 0
    assert float(total.detach()) == pytest.approx(float(main.detach()))
    g = _grads(net, total)
    assert float(g["aux_head.weight"].abs().sum()) == 0.0


def test_runaway_grl_warning():
    from lesionkit.train.debias import runaway_warning

    assert runaway_warning(1.2, 6, "clgr") is None  # near chance (log 6 = 1.79)
    assert runaway_warning(None, 6, "clgr") is None
    msg = runaway_warning(18.4, 6, "clgr")
    assert msg and "overpowering" in msg and "--grl-schedule dann" in msg
    assert runaway_warning(18.4, 6, "tabe") is None  # no GRL: a high loss is the head's own problem
