"""Soft-attention pooling head (lesionkit.models.attention; Datta et al. 2021).

References the tests compare against: torch's own 3-D convolution (the paper's formulation), a NumPy re-computation
of the whole head written with loops, and a planted ground truth (a coloured square at a random position whose
colour is the label: the trained attention must sit on the square).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lesionkit.errors import UsageError
from lesionkit.models.attention import GAMMA_INIT, SoftAttention, SoftAttentionPool
from lesionkit.models.factory import ModelSpec, create_model

# ---------------------------------------------------------------- 1. Conv2d == the paper's Conv3d


def test_conv2d_formulation_equals_explicit_conv3d() -> None:
    torch.manual_seed(0)
    b, c, k, h, w = 2, 6, 3, 5, 7
    att = SoftAttention(c, heads=k).double()
    with torch.no_grad():
        att.conv.bias.uniform_(-0.5, 0.5)  # a non-zero bias is part of the check
    fmap = torch.randn(b, c, h, w, dtype=torch.float64)

    conv3d = nn.Conv3d(1, k, kernel_size=(c, 3, 3), stride=(c, 1, 1), padding=(0, 1, 1)).double()
    with torch.no_grad():
        conv3d.weight.copy_(att.conv.weight.reshape(k, 1, c, 3, 3))
        conv3d.bias.copy_(att.conv.bias)
    vol = fmap.unsqueeze(1)  # [B, 1, C, h, w]: the feature tensor as a one-channel volume
    ref = conv3d(vol)
    assert ref.shape == (b, k, 1, h, w)  # the (C, 3, 3) kernel with stride C collapses the channel axis to 1
    ref_f = F.conv3d(vol, att.conv.weight.unsqueeze(1), att.conv.bias, stride=(c, 1, 1), padding=(0, 1, 1))

    logits = att.conv(fmap)
    torch.testing.assert_close(logits, ref[:, :, 0], atol=1e-6, rtol=0)
    torch.testing.assert_close(logits, ref_f[:, :, 0], atol=1e-6, rtol=0)
    # and the maps: ReLU + softmax over the h*w positions of the Conv3d output
    ref_alpha = torch.softmax(F.relu(ref[:, :, 0]).reshape(b, k, h * w), dim=-1).reshape(b, k, h, w)
    torch.testing.assert_close(att.maps(fmap), ref_alpha, atol=1e-6, rtol=0)


def test_initialisation_matches_keras_he_uniform() -> None:
    torch.manual_seed(0)
    c = 64
    att = SoftAttention(c, heads=16)
    bound = math.sqrt(6.0 / (9 * c))
    wt = att.conv.weight.detach()
    assert wt.shape == (16, c, 3, 3)
    assert float(wt.abs().max()) <= bound
    assert float(wt.abs().max()) > 0.95 * bound  # uniform over the full range, not a narrower default
    assert float(att.conv.bias.detach().abs().max()) == 0.0
    assert float(att.gamma.detach()) == GAMMA_INIT == 1.0


# ---------------------------------------------------------------- 2. maps, shapes, sizes, gradients


@pytest.mark.parametrize("hw", [(1, 1), (1, 4), (3, 1), (5, 5), (7, 4), (8, 8)])
def test_maps_sum_to_one_and_shapes(hw: tuple[int, int]) -> None:
    torch.manual_seed(1)
    h, w = hw
    pool = SoftAttentionPool(12, heads=5).eval()
    assert pool.out_dim == 24
    assert pool.last_maps is None
    fmap = torch.randn(3, 12, h, w)
    out = pool(fmap)
    assert out.shape == (3, 24)
    assert torch.isfinite(out).all()
    alpha = pool.last_maps
    assert alpha is not None and alpha.shape == (3, 5, h, w) and alpha.dtype == torch.float32
    assert not alpha.requires_grad
    torch.testing.assert_close(alpha.sum(dim=(2, 3)), torch.ones(3, 5), atol=1e-6, rtol=0)
    assert (alpha >= 0).all()
    u, alpha2 = pool.attention(fmap)
    assert u.shape == fmap.shape
    torch.testing.assert_close(alpha2, alpha)


def test_single_position_map_is_exact() -> None:
    """h = w = 1: each softmax is over one position (alpha = 1, A = K), so u = gamma * K * F."""
    torch.manual_seed(2)
    k = 4
    pool = SoftAttentionPool(8, heads=k).eval()
    with torch.no_grad():
        pool.gamma.fill_(0.3)
    fmap = torch.randn(2, 8, 1, 1)
    out = pool(fmap)
    f = fmap[:, :, 0, 0]
    torch.testing.assert_close(out, torch.cat([f.relu(), (0.3 * k * f).relu()], dim=1))


def test_gradient_reaches_gamma_and_conv() -> None:
    torch.manual_seed(3)
    pool = SoftAttentionPool(8, heads=4, dropout=0.0)
    fmap = torch.randn(2, 8, 6, 5, requires_grad=True)
    (pool(fmap) * torch.randn(2, 16)).sum().backward()
    att = pool.attention
    assert att.gamma.grad is not None and float(att.gamma.grad.abs()) > 0
    assert att.conv.weight.grad is not None and float(att.conv.weight.grad.abs().sum()) > 0
    assert att.conv.bias.grad is not None
    assert fmap.grad is not None and float(fmap.grad.abs().sum()) > 0


def test_dropout_is_active_only_in_training() -> None:
    torch.manual_seed(4)
    pool = SoftAttentionPool(8, heads=2)  # dropout 0.5, the paper's value
    assert pool.drop.p == 0.5
    fmap = torch.randn(2, 8, 4, 4).abs()
    pool.eval()
    torch.testing.assert_close(pool(fmap), pool(fmap))
    pool.train()
    assert not torch.equal(pool(fmap), pool(fmap))


def test_bf16_autocast() -> None:
    torch.manual_seed(5)
    pool = SoftAttentionPool(16, heads=4).eval()
    fmap = torch.randn(2, 16, 7, 6)
    ref = pool(fmap)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pool(fmap.bfloat16())
    alpha = pool.last_maps
    assert alpha is not None and alpha.dtype == torch.float32  # the softmax ran in float32
    torch.testing.assert_close(alpha.sum(dim=(2, 3)), torch.ones(2, 4), atol=1e-6, rtol=0)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 32)
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.05)


def test_bad_arguments() -> None:
    with pytest.raises(UsageError):
        SoftAttentionPool(8, heads=0)
    with pytest.raises(UsageError):
        SoftAttentionPool(0, heads=2)
    with pytest.raises(UsageError):
        SoftAttentionPool(8, heads=2, dropout=1.0)
    with pytest.raises(ValueError, match=r"\[B, 8, h, w\]"):
        SoftAttentionPool(8, heads=2)(torch.randn(2, 7, 4, 4))


# ---------------------------------------------------------------- 3. hand-checked values against NumPy


def _numpy_head(fmap: np.ndarray, heads: list[tuple[float, float]], gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Naive re-computation with loops. Logit map k = scale_k * F[:, 0] + bias_k (what the conv below computes),
    ReLU, softmax over positions, A = sum_k alpha_k, u = gamma * A * F; then the head: 2x2 / stride 2 max-pool with
    the window clipped at the border (Keras "same"), concat [F, u], ReLU, mean over positions."""
    b, c, h, w = fmap.shape
    u = np.zeros_like(fmap)
    for i in range(b):
        agg = np.zeros((h, w))
        for scale, bias in heads:
            z = np.maximum(scale * fmap[i, 0] + bias, 0.0)
            e = np.exp(z - z.max())
            agg += e / e.sum()
        u[i] = gamma * agg[None] * fmap[i]
    ho, wo = -(-h // 2), -(-w // 2)
    pooled = np.zeros((b, 2 * c))
    for i in range(b):
        both = np.concatenate([fmap[i], u[i]], axis=0)
        for ch in range(2 * c):
            acc = 0.0
            for r in range(ho):
                for q in range(wo):
                    acc += max(both[ch, 2 * r:2 * r + 2, 2 * q:2 * q + 2].max(), 0.0)
            pooled[i, ch] = acc / (ho * wo)
    return u, pooled


def test_attended_features_and_head_match_numpy() -> None:
    rng = np.random.default_rng(6)
    heads = [(1.5, 0.0), (-2.0, 0.3), (0.0, -1.0)]  # the last logit map is -1 everywhere: ReLU -> a uniform map
    c, h, w = 3, 5, 3
    fmap = rng.normal(size=(2, c, h, w))
    pool = SoftAttentionPool(c, heads=len(heads)).double().eval()
    with torch.no_grad():  # a conv whose logit map k is scale_k * (channel 0) + bias_k: centre tap only
        pool.attention.conv.weight.zero_()
        for kk, (scale, bias) in enumerate(heads):
            pool.attention.conv.weight[kk, 0, 1, 1] = scale
            pool.attention.conv.bias[kk] = bias
        pool.gamma.fill_(1.0)
    ft = torch.from_numpy(fmap)
    with torch.no_grad():
        u, alpha = pool.attention(ft)
        out = pool(ft)
    u_ref, pooled_ref = _numpy_head(fmap, heads, gamma=1.0)
    np.testing.assert_allclose(u.numpy(), u_ref, atol=1e-12, rtol=0)
    np.testing.assert_allclose(alpha[:, 2].numpy(), np.full((2, h, w), 1.0 / (h * w)), atol=1e-12, rtol=0)
    np.testing.assert_allclose(out.numpy(), pooled_ref, atol=1e-12, rtol=0)
    with torch.no_grad():
        pool.gamma.fill_(-0.7)  # gamma scales the attention path only
        u2, _ = pool.attention(ft)
        out2 = pool(ft)
    u2_ref, pooled2_ref = _numpy_head(fmap, heads, gamma=-0.7)
    np.testing.assert_allclose(u2.numpy(), u2_ref, atol=1e-12, rtol=0)
    np.testing.assert_allclose(out2.numpy(), pooled2_ref, atol=1e-12, rtol=0)
    assert not np.allclose(pooled2_ref, pooled_ref)  # the gamma change is visible in the reference


# ---------------------------------------------------------------- 4. through lesionkit's model factory


@pytest.mark.parametrize("img_size", [32, 80])  # resnet10t: a 1x1 and a 3x3 feature map
def test_lesionnet_with_soft_attention_head(img_size: int) -> None:
    torch.manual_seed(7)
    model = create_model(ModelSpec("resnet10t", 2, img_size, head="soft-attention", attention_heads=4)).eval()
    assert isinstance(model.pool, SoftAttentionPool)
    assert model.feature_dim == model.pool.out_dim == 2 * 512
    assert model.head.in_features == 1024
    assert "pool.attention.gamma" in model.state_dict()
    x = torch.randn(3, 3, img_size, img_size)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, 2) and torch.isfinite(out).all()
    side = math.ceil(img_size / 32)
    assert model.pool.last_maps is not None and model.pool.last_maps.shape == (3, 4, side, side)


# ---------------------------------------------------------------- 5. planted ground truth: attention finds the square

SIZE, SQUARE, STRIDE = 32, 6, 4


def _squares(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Noise images with one bright SQUARE x SQUARE square at a random position; label 0 = red, 1 = green."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.35, (n, 3, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, 2, n)
    pos = rng.integers(0, SIZE - SQUARE + 1, (n, 2))
    for i, (r, c) in enumerate(pos):
        x[i, :, r:r + SQUARE, c:c + SQUARE] = 0.0
        x[i, y[i], r:r + SQUARE, c:c + SQUARE] = 1.5
    return torch.from_numpy(x), torch.from_numpy(y), pos


def _square_cells(pos: np.ndarray, grid: int) -> torch.Tensor:
    """[N, grid, grid] mask of the feature cells (STRIDE px each) that overlap the square."""
    m = torch.zeros(len(pos), grid, grid)
    for i, (r, c) in enumerate(pos):
        m[i, r // STRIDE:(r + SQUARE - 1) // STRIDE + 1, c // STRIDE:(c + SQUARE - 1) // STRIDE + 1] = 1.0
    return m


class _SquareNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
        )  # stride 4: an 8x8 map at 32 px
        self.pool = SoftAttentionPool(32, heads=4)
        self.fc = nn.Linear(self.pool.out_dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)))


def _evaluate(net: _SquareNet, x: torch.Tensor, pos: np.ndarray) -> tuple[torch.Tensor, float, float]:
    """(logits, mean attention mass on the square's cells, mean area share of those cells)."""
    net.eval()
    with torch.no_grad():
        logits = net(x)
    maps = net.pool.last_maps
    assert maps is not None
    agg = maps.mean(dim=1)  # A / K: sums to 1 over the grid
    cells = _square_cells(pos, agg.shape[-1])
    return logits, float((agg * cells).sum(dim=(1, 2)).mean()), float(cells.mean(dim=(1, 2)).mean())


def _train_squares(seed: int, steps: int = 60, batch: int = 32) -> dict[str, float]:
    torch.manual_seed(seed)
    x, y, _ = _squares(steps * batch, seed)
    x_te, y_te, pos_te = _squares(300, seed + 1000)
    net = _SquareNet()
    _, mass_init, _ = _evaluate(net, x_te, pos_te)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for s in range(steps):
        sl = slice(s * batch, (s + 1) * batch)
        opt.zero_grad()
        F.cross_entropy(net(x[sl]), y[sl]).backward()
        opt.step()
    logits, mass, share = _evaluate(net, x_te, pos_te)
    acc = float((logits.argmax(1) == y_te).float().mean())
    return {"acc": acc, "mass": mass, "mass_init": mass_init, "share": share}


def test_trained_attention_sits_on_the_planted_square() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is much faster on a busy machine, and deterministic
    try:
        r = _train_squares(seed=0)
    finally:
        torch.set_num_threads(threads)
    print(f"held-out accuracy {r['acc']:.3f}; attention mass on the square's cells {r['mass']:.3f} "
          f"(untrained {r['mass_init']:.3f}) vs their area share {r['share']:.3f}")
    assert r["acc"] >= 0.9  # chance is 0.5
    assert r["mass_init"] < 1.5 * r["share"]  # untrained maps are close to uniform ...
    assert r["mass"] > 5 * r["share"]  # ... trained ones put most of their mass on the square
    assert r["mass"] > 0.4


def test_soft_attention_on_a_token_model_is_a_clear_usage_error():
    import pytest

    from lesionkit.errors import UsageError
    from lesionkit.models.factory import ModelSpec, create_model

    model = create_model(ModelSpec("test_vit", 2, 32, head="soft-attention", attention_heads=2))
    with pytest.raises(UsageError, match="needs a CNN feature map"):
        model(torch.zeros(1, 3, 32, 32))
