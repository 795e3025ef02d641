"""Layer groups, discriminative/per-branch LRs, optimisers, LR schedules (vs torch and hand values), losses."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lesionkit.errors import InputError, UsageError
from lesionkit.models.factory import ModelSpec, create_model
from lesionkit.train.losses import build_loss
from lesionkit.train.optim import build_optimizer, discriminative_lrs, layer_groups
from lesionkit.train.schedules import build_scheduler

MODELS = {
    "resnet10t": ModelSpec("resnet10t", 3, 32, meta_dim=4, meta_hidden=(8,)),
    "test_resnet": ModelSpec("test_resnet", 3, 32),
    "efficientnet_b0": ModelSpec("efficientnet_b0", 2, 32, meta_dim=3, meta_hidden=(8,)),
    "vit_tiny": ModelSpec("vit_tiny_patch16_224", 1, 32),
}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {k: create_model(s) for k, s in MODELS.items()}


# ---- discriminative learning rates ------------------------------------------------------------------------------

def test_discriminative_lrs_formula():
    lr, ratio, n = 1e-2, 0.01, 5
    got = discriminative_lrs(lr, ratio, n)
    assert got[0] == pytest.approx(lr * ratio, rel=1e-12) and got[-1] == pytest.approx(lr, rel=1e-12)
    np.testing.assert_allclose(got, np.geomspace(lr * ratio, lr, n), rtol=1e-12)
    q = [b / a for a, b in itertools.pairwise(got)]
    np.testing.assert_allclose(q, [100 ** 0.25] * 4, rtol=1e-12)  # constant ratio (α_opt/α_min)^(1/(L-1))
    amin = lr * ratio
    for i in range(n):  # Mishra eq. 2.9 literally
        assert got[i] == pytest.approx(amin * (lr / amin) ** (i / (n - 1)), rel=1e-12)
    assert discriminative_lrs(0.3, 0.1, 1) == [0.3]
    with pytest.raises(UsageError):
        discriminative_lrs(0.1, 0.0, 3)


# ---- layer groups -----------------------------------------------------------------------------------------------

def _entry_order(model) -> dict[int, int]:
    """Rank of each backbone parameter = order in which its owning module is first entered in a forward pass."""
    order: dict[nn.Module, int] = {}

    def hook(mod, args):  # must return None (a value would replace the module's input)
        order.setdefault(mod, len(order))

    hooks = [mod.register_forward_pre_hook(hook) for mod in model.backbone.modules()]
    model.eval()
    with torch.no_grad():
        meta = torch.zeros(2, model.spec.meta_dim) if model.spec.meta_dim else None
        model(torch.randn(2, 3, 32, 32), meta)
    for h in hooks:
        h.remove()
    rank = {}
    for mod in model.backbone.modules():
        for p in mod.parameters(recurse=False):
            rank[id(p)] = order[mod]
    return rank


@pytest.mark.parametrize("name", list(MODELS))
def test_layer_groups_cover_in_order_head_last(models, name):
    m = models[name]
    groups = layer_groups(m)
    assert len(groups) >= 4
    flat = [id(p) for g in groups for p in g]
    assert len(flat) == len(set(flat)), "a parameter appears twice"
    assert set(flat) == {id(p) for p in m.parameters() if p.requires_grad}
    head = {id(p) for p in m.head.parameters()} | (
        {id(p) for p in m.meta_branch.parameters()} if m.meta_branch is not None else set())
    assert {id(p) for p in groups[-1]} == head
    rank = _entry_order(m)
    spans = [(min(rank[id(p)] for p in g), max(rank[id(p)] for p in g)) for g in groups[:-1]]
    for (_, hi), (lo, _) in itertools.pairwise(spans):
        assert hi < lo, f"{name}: groups not in input→output order: {spans}"
    # merged into fewer groups: still a partition, still ordered, head still alone and last
    g3 = layer_groups(m, n_groups=3)
    assert len(g3) == 3
    assert [id(p) for g in g3 for p in g] == flat
    assert {id(p) for p in g3[-1]} == head
    assert len(layer_groups(m, n_groups=1)) == 1


def test_layer_groups_skip_frozen():
    m = create_model(ModelSpec("test_resnet", 2, 32))
    for p in m.backbone.conv1.parameters():
        p.requires_grad_(False)
    flat = {id(p) for g in layer_groups(m) for p in g}
    assert flat == {id(p) for p in m.parameters() if p.requires_grad}
    assert not any(id(p) in flat for p in m.backbone.conv1.parameters())


# ---- optimisers -------------------------------------------------------------------------------------------------

def _lr_of(opt) -> dict[int, tuple[float, float]]:
    return {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}


def test_build_optimizer_no_decay_on_bias_norm_and_vit_tokens(models):
    for name in ("resnet10t", "vit_tiny"):
        m = models[name]
        opt = build_optimizer(m, "adamw", 1e-3, 0.05)
        assert isinstance(opt, torch.optim.AdamW)
        per = _lr_of(opt)
        names = dict(m.named_parameters())
        assert set(per) == {id(p) for p in m.parameters()}
        for n, p in names.items():
            is_norm = any(isinstance(mod, (nn.BatchNorm2d, nn.LayerNorm, nn.BatchNorm1d))
                          for mn, mod in m.named_modules() if n.rsplit(".", 1)[0] == mn)
            if n.endswith((".bias", "pos_embed", "cls_token")) or is_norm:
                assert per[id(p)][1] == 0.0, n
            else:
                assert per[id(p)][1] == 0.05, n
        assert all(g["base_lr"] == g["lr"] == 1e-3 for g in opt.param_groups)


def test_build_optimizer_branch_and_discriminative_lrs(models):
    m = models["resnet10t"]
    opt = build_optimizer(m, "sgd", 0.1, 1e-4, momentum=0.9, nesterov=True,
                          branch_lrs={"backbone": 0.01, "head": 0.1, "meta": 0.05})
    assert isinstance(opt, torch.optim.SGD)
    assert all(g["momentum"] == 0.9 and g["nesterov"] for g in opt.param_groups)
    per = _lr_of(opt)
    assert all(per[id(p)][0] == 0.01 for p in m.backbone.parameters())
    assert all(per[id(p)][0] == 0.1 for p in m.head.parameters())
    assert all(per[id(p)][0] == 0.05 for p in m.meta_branch.parameters())
    # discriminative on top: group i gets ratio^((L-1-i)/(L-1)) × its branch rate
    opt = build_optimizer(m, "adam", 0.1, 0.0, lr_ratio=0.01, branch_lrs={"meta": 0.05})
    per = _lr_of(opt)
    groups = layer_groups(m)
    mults = discriminative_lrs(1.0, 0.01, len(groups))
    for i, g in enumerate(groups[:-1]):
        assert all(per[id(p)][0] == pytest.approx(0.1 * mults[i]) for p in g)
    assert per[id(next(iter(m.backbone.parameters())))][0] == pytest.approx(0.1 * 0.01)
    assert all(per[id(p)][0] == pytest.approx(0.1) for p in m.head.parameters())
    assert all(per[id(p)][0] == pytest.approx(0.05) for p in m.meta_branch.parameters())
    # merged into 3 layer groups: backbone halves at 0.1·0.01 and 0.1·0.1, head at 0.1
    opt = build_optimizer(m, "sgd", 0.1, 0.0, lr_ratio=0.01, n_groups=3)
    per = _lr_of(opt)
    g3 = layer_groups(m, 3)
    for g, want in zip(g3, [1e-3, 1e-2, 1e-1], strict=True):
        assert all(per[id(p)][0] == pytest.approx(want) for p in g)
    with pytest.raises(UsageError):
        build_optimizer(m, "rmsprop", 0.1, 0.0)
    with pytest.raises(UsageError):
        build_optimizer(m, "sgd", 0.1, 0.0, branch_lrs={"neck": 0.1})


def test_optimizer_step_moves_weights():
    torch.manual_seed(0)
    m = create_model(ModelSpec("test_resnet", 2, 32))
    opt = build_optimizer(m, "sgd", 0.1, 0.0, lr_ratio=0.1)
    before = m.head.weight.detach().clone()
    F.cross_entropy(m(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
    opt.step()
    assert not torch.equal(before, m.head.weight)


# ---- schedules --------------------------------------------------------------------------------------------------

def _opt(*lrs: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs], lr=lrs[0])


def _run(sched, n) -> list[list[float]]:
    out = []
    for _ in range(n):
        out.append([g["lr"] for g in sched.optimizer.param_groups])
        sched.step()
    return out


def test_sgdr_matches_torch_cosine_warm_restarts():
    spe, t0, tm, r, base = 3, 2, 2, 0.05, 0.1
    opt_t = _opt(base)
    ref = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt_t, T_0=t0 * spe, T_mult=tm, eta_min=base * r)
    expected = []
    for _ in range(60):
        expected.append(opt_t.param_groups[0]["lr"])
        opt_t.step()
        ref.step()
    s = build_scheduler(_opt(base), "sgdr", steps_per_epoch=spe, epochs=20, t0=t0, t_mult=tm, min_lr_ratio=r)
    np.testing.assert_allclose([s.lr_at(i)[0] for i in range(60)], expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose([v[0] for v in _run(s, 60)], expected, rtol=1e-12, atol=1e-15)


def test_sgdr_non_integer_t_mult_hand_values():
    # T0 = 10 steps, t_mult 1.3 → cycle lengths 10, 13, round(16.9)=17, round(21.97)=22, round(28.561)=29
    s = build_scheduler(_opt(1.0), "sgdr", steps_per_epoch=10, epochs=7, t0=1, t_mult=1.3)
    assert s.lr_at(0)[0] == 1.0
    assert s.lr_at(10)[0] == 1.0 and s.lr_at(23)[0] == 1.0 and s.lr_at(40)[0] == 1.0  # restarts
    assert s.lr_at(22)[0] == pytest.approx((1 + math.cos(math.pi * 12 / 13)) / 2)
    assert s.lr_at(28)[0] == pytest.approx((1 + math.cos(math.pi * 5 / 17)) / 2)
    assert s.lr_at(61)[0] == pytest.approx((1 + math.cos(math.pi * 21 / 22)) / 2)
    assert s.cycle_ends() == [10, 23, 40, 62]


def test_sgdr_cycle_ends_epochs():
    spe = 5
    s = build_scheduler(_opt(0.1), "sgdr", steps_per_epoch=spe, epochs=7, t0=1, t_mult=2)
    assert [e / spe for e in s.cycle_ends()] == [1, 3, 7]
    assert s.cycle_ends(total_steps=20) == [5, 15]
    # the LR right after each end is the restart (back to base)
    assert all(s.lr_at(e)[0] == pytest.approx(0.1) for e in s.cycle_ends()[:-1])
    w = build_scheduler(_opt(0.1), "sgdr", steps_per_epoch=spe, epochs=8, warmup_epochs=1, t0=1, t_mult=2)
    assert [e / spe for e in w.cycle_ends()] == [2, 4, 8]
    assert build_scheduler(_opt(0.1), "cosine", steps_per_epoch=spe, epochs=7).cycle_ends() == []


def test_warmup_cosine_hand_values():
    base, r = 0.1, 0.1  # 5 epochs × 10 steps, 1 warmup epoch: W=10, cosine over 40 steps
    s = build_scheduler(_opt(base), "cosine", steps_per_epoch=10, epochs=5, warmup_epochs=1, min_lr_ratio=r)
    assert s.lr_at(0)[0] == pytest.approx(0.01)
    assert s.lr_at(4)[0] == pytest.approx(0.05)
    assert s.lr_at(9)[0] == pytest.approx(0.1)
    assert s.lr_at(10)[0] == pytest.approx(0.1)
    assert s.lr_at(30)[0] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))  # halfway: cos(π/2) = 0
    assert s.lr_at(49)[0] == pytest.approx(0.1 * (0.1 + 0.9 * (1 + math.cos(math.pi * 39 / 40)) / 2))
    assert s.lr_at(50)[0] == pytest.approx(0.01)


def test_onecycle_hand_values_and_torch():
    base, T = 0.1, 100
    s = build_scheduler(_opt(base), "onecycle", steps_per_epoch=10, epochs=10)
    assert s.lr_at(0)[0] == pytest.approx(0.004)  # base / 25
    assert s.lr_at(29)[0] == pytest.approx(0.1)  # peak at pct·T − 1 = 29
    assert s.lr_at(10)[0] == pytest.approx(0.1 + (0.004 - 0.1) / 2 * (math.cos(math.pi * 10 / 29) + 1))
    assert s.lr_at(99)[0] == pytest.approx(0.004 / 1e4)
    opt_t = _opt(base)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt_t, max_lr=base, total_steps=T, pct_start=0.3,
                                              cycle_momentum=False)
    expected = []
    for _ in range(T):
        expected.append(opt_t.param_groups[0]["lr"])
        opt_t.step()
        ref.step()
    np.testing.assert_allclose([s.lr_at(i)[0] for i in range(T)], expected, rtol=1e-10)
    w = build_scheduler(_opt(base), "onecycle", steps_per_epoch=10, epochs=10, warmup_epochs=2)
    assert w.lr_at(19)[0] == pytest.approx(0.1)  # peak moved to 0.2·T − 1


def test_step_and_constant_schedules():
    s = build_scheduler(_opt(1.0), "step", steps_per_epoch=4, epochs=10, step_size=2, gamma=0.5)
    assert [s.lr_at(i)[0] for i in (0, 7, 8, 15, 16)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    c = build_scheduler(_opt(1.0), "constant", steps_per_epoch=4, epochs=10, warmup_epochs=1)
    assert [c.lr_at(i)[0] for i in (0, 1, 3, 4, 39)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    with pytest.raises(UsageError):
        build_scheduler(_opt(1.0), "poly", steps_per_epoch=4, epochs=10)
    with pytest.raises(UsageError):
        build_scheduler(_opt(1.0), "cosine", steps_per_epoch=4, epochs=2, warmup_epochs=2)


def test_per_group_base_lrs_scaled_by_same_multiplier():
    s = build_scheduler(_opt(0.1, 0.001), "cosine", steps_per_epoch=10, epochs=2)
    for i in (0, 5, 13, 19):
        a, b = s.lr_at(i)
        assert a / b == pytest.approx(100.0)


@pytest.mark.parametrize("name", ["sgdr", "cosine", "onecycle", "step"])
def test_state_dict_round_trip_resumes_identical_lrs(name):
    kw = {"steps_per_epoch": 7, "epochs": 9, "warmup_epochs": 1 if name != "step" else 0, "t0": 1, "t_mult": 2, "step_size": 2,
              "gamma": 0.3, "min_lr_ratio": 0.01}
    a = build_scheduler(_opt(0.1, 0.02), name, **kw)
    _run(a, 17)
    state = json.loads(json.dumps(a.state_dict()))  # plain types only
    b = build_scheduler(_opt(0.1, 0.02), name, **kw)
    b.load_state_dict(state)
    assert [g["lr"] for g in b.optimizer.param_groups] == [g["lr"] for g in a.optimizer.param_groups]
    assert _run(a, 40) == _run(b, 40)
    c = build_scheduler(_opt(0.1, 0.02), name, **{**kw, "epochs": 10})
    with pytest.raises(InputError, match="differs"):
        c.load_state_dict(state)


# ---- losses -----------------------------------------------------------------------------------------------------

def _data(c=4, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 2, torch.randint(0, c, (n,), generator=g)


def test_focal_gamma0_equals_ce_with_weights_and_smoothing():
    logits, y = _data()
    w = torch.tensor([0.5, 2.0, 1.0, 3.0])
    for eps in (0.0, 0.1):
        focal = build_loss("focal", 4, w, label_smoothing=eps, focal_gamma=0.0)(logits, y)
        ref = F.cross_entropy(logits, y, weight=w, label_smoothing=eps)
        assert focal.item() == pytest.approx(ref.item(), rel=1e-6)


def test_focal_gamma2_hand_value():
    logits, y = _data()
    p = torch.softmax(logits.double(), 1).numpy()
    py = p[np.arange(len(y)), y.numpy()]
    hand = np.mean(-((1 - py) ** 2) * np.log(py))
    assert build_loss("focal", 4, None, focal_gamma=2.0)(logits, y).item() == pytest.approx(hand, rel=1e-5)


def test_ce_label_smoothing_hand_value():
    logits, y = _data()
    eps = 0.2
    logp = torch.log_softmax(logits.double(), 1).numpy()
    hand = np.mean((1 - eps) * -logp[np.arange(len(y)), y.numpy()] + eps * -logp.mean(1))
    got = build_loss("ce", 4, None, label_smoothing=eps)(logits, y).item()
    assert got == pytest.approx(hand, rel=1e-5)
    assert got == pytest.approx(F.cross_entropy(logits, y, label_smoothing=eps).item(), rel=1e-6)


def test_bce_pos_weight_from_balanced_class_weights():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(20, 1, generator=g)
    y = torch.tensor([1] * 4 + [0] * 16)
    n, n1, n0 = 20, 4, 16
    w = torch.tensor([n / (2 * n0), n / (2 * n1)])  # W_c = N/(C·N_c)
    got = build_loss("bce", 2, w)(logits, y).item()
    ref = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([n0 / n1]))(logits.squeeze(1), y.float()).item()
    x = logits.squeeze(1).double().numpy()
    sig = 1 / (1 + np.exp(-x))
    hand = np.mean(-(4.0 * y.numpy() * np.log(sig) + (1 - y.numpy()) * np.log(1 - sig)))
    assert got == pytest.approx(ref, rel=1e-6) and got == pytest.approx(hand, rel=1e-5)
    # "ce" with a single logit is the same binary loss; binary focal with γ=0 and no weights is plain BCE
    assert build_loss("ce", 2, w)(logits, y).item() == pytest.approx(got, rel=1e-6)
    plain = F.binary_cross_entropy_with_logits(logits.squeeze(1), y.float()).item()
    assert build_loss("focal", 2, None, focal_gamma=0.0)(logits, y).item() == pytest.approx(plain, rel=1e-6)
    # binary label smoothing: targets y(1-ε)+ε/2
    ls = build_loss("bce", 2, None, label_smoothing=0.2)(logits, y).item()
    ref_ls = F.binary_cross_entropy_with_logits(logits.squeeze(1), y.float() * 0.8 + 0.1).item()
    assert ls == pytest.approx(ref_ls, rel=1e-6)


def test_losses_ignore_missing_targets_and_validate():
    logits, y = _data()
    y2 = y.clone()
    y2[:5] = -1
    for kind in ("ce", "focal", "bce"):
        loss = build_loss(kind, 4, None)
        assert loss(logits, y2).item() == pytest.approx(loss(logits[5:], y[5:]).item(), rel=1e-6)
    with pytest.raises(UsageError):
        build_loss("hinge", 4, None)
    with pytest.raises(UsageError):
        build_loss("ce", 4, torch.ones(3))
