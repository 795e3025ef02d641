"""Stochastic convolutions / full stochastic split model (lesionkit.models.stochastic)."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from lesionkit.errors import UsageError
from lesionkit.models.factory import ModelSpec, create_model, data_config
from lesionkit.models.stochastic import (
    StochasticConv2d,
    StochasticSplitFeatures,
    max_stem_out,
    sample_windows,
    stochastic_conv,
    window_size,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small CPU models run ~30x slower with 2 OpenMP threads on this shared 2-core machine; restore afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _naive(x, weight, bias, top, left, size, stride, padding, dilation):
    """Reference: for every image and output channel, crop the window and convolve it with that one filter."""
    batch, c_out = top.shape
    out = []
    for b in range(batch):
        chans = []
        for c in range(c_out):
            t, l = int(top[b, c]), int(left[b, c])
            crop = x[b:b + 1, :, t:t + size, l:l + size]
            chans.append(F.conv2d(crop, weight[c:c + 1], None if bias is None else bias[c:c + 1], stride=stride,
                                  padding=padding, dilation=dilation))
        out.append(torch.cat(chans, 1))
    return torch.cat(out, 0)


def _split_spec(**kw) -> ModelSpec:
    base = {"name": "resnet10t", "num_outputs": 2, "img_size": 96, "arch": "stochastic-split",
            "split_low_size": 32, "stem_out": 12, "tta": 2}
    base.update(kw)
    return ModelSpec(**base)


@pytest.mark.parametrize("method", ["grouped", "per-channel"])
@pytest.mark.parametrize(("k", "s", "p", "d"), [(3, 2, 1, 1), (7, 2, 3, 1), (3, 1, 0, 2)])
def test_stochastic_conv_matches_naive_per_window_conv(k, s, p, d, method):
    g = torch.Generator().manual_seed(k + s + p + d)
    conv = nn.Conv2d(3, 5, k, stride=s, padding=p, dilation=d)
    out_size = 6
    size = window_size(conv, out_size)
    assert (size + 2 * p - d * (k - 1) - 1) // s + 1 == out_size  # the window gives exactly out_size
    x = torch.randn(2, 3, size + 9, size + 4, generator=g)  # non-square image
    w = torch.randn(5, 3, k, k, generator=g)
    bias = torch.randn(5, generator=g)
    top, left = sample_windows(2, 5, x.shape[2], x.shape[3], size, generator=g)
    ref = _naive(x, w, bias, top, left, size, s, p, d)
    got = stochastic_conv(x, w, bias, top, left, size, s, p, d, method=method)
    assert got.shape == (2, 5, out_size, out_size)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # the input-gradient gather path: same values, and the same gradients for the image and the filters
    xa, wa = x.clone().requires_grad_(), w.clone().requires_grad_()
    xb, wb = x.clone().requires_grad_(), w.clone().requires_grad_()
    up = torch.randn(ref.shape, generator=g)
    got = stochastic_conv(xa, wa, bias, top, left, size, s, p, d, method=method)
    (got * up).sum().backward()
    (_naive(xb, wb, bias, top, left, size, s, p, d) * up).sum().backward()
    torch.testing.assert_close(got.detach(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(wa.grad, wb.grad, atol=1e-4, rtol=1e-5)
    # the weight gradient of the no-input-gradient path too
    wc = w.clone().requires_grad_()
    (stochastic_conv(x, wc, bias, top, left, size, s, p, d, method=method) * up).sum().backward()
    torch.testing.assert_close(wc.grad, wb.grad, atol=1e-4, rtol=1e-5)


def test_same_window_everywhere_equals_plain_conv_of_the_crop():
    g = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False)
    size = window_size(conv, 10)
    assert size == 9 * 2 + 7 - 6
    x = torch.randn(3, 3, 40, 50, generator=g)
    t, l = 5, 17
    top, left = torch.full((3, 8), t), torch.full((3, 8), l)
    got = stochastic_conv(x, conv.weight, None, top, left, size, 2, 3)
    ref = F.conv2d(x[:, :, t:t + size, l:l + size], conv.weight, None, stride=2, padding=3)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_window_size_of_resnet_stems():
    r50 = timm.create_model("resnet50", num_classes=0).conv1
    assert window_size(r50, 112) == 223  # 111*2 + 7 - 2*3
    assert F.conv2d(torch.zeros(1, 3, 223, 223), r50.weight, stride=2, padding=3).shape[-1] == 112
    assert max_stem_out(r50, 1024, 1024) == 512  # a 7x7/2/3 conv maps 1024 px to 512
    deep = timm.create_model("resnet10t", num_classes=0).conv1[0]  # 3x3 / 2 / 1
    assert window_size(deep, 12) == 23
    fit = max_stem_out(deep, 20, 30)
    assert window_size(deep, fit) <= 20 < window_size(deep, fit + 1)


def test_sample_windows_cover_the_image_in_2d():
    h, w, size = 100, 80, 20
    top, left = sample_windows(64, 64, h, w, size, generator=torch.Generator().manual_seed(0))
    assert top.shape == left.shape == (64, 64) and top.dtype == left.dtype == torch.int64
    assert int(top.min()) == 0 and int(top.max()) == h - size  # both span the full range ...
    assert int(left.min()) == 0 and int(left.max()) == w - size
    r = torch.corrcoef(torch.stack([top.flatten().double(), left.flatten().double()]))[0, 1]
    assert abs(float(r)) < 0.1  # ... independently (the reference only sampled the diagonal: r = 1)
    assert float((top == left).double().mean()) < 0.05
    assert len(torch.unique(top[0])) > 30 and not torch.equal(top[0], top[1])  # per channel and per image
    a = sample_windows(4, 8, h, w, size, generator=torch.Generator().manual_seed(3))
    b = sample_windows(4, 8, h, w, size, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    torch.manual_seed(5)
    c = sample_windows(4, 8, h, w, size)
    torch.manual_seed(5)
    assert all(torch.equal(u, v) for u, v in zip(c, sample_windows(4, 8, h, w, size)))  # global RNG in training
    with pytest.raises(UsageError):
        sample_windows(1, 1, 10, 30, 20)


def test_eval_is_deterministic_and_tta_averages_passes():
    torch.manual_seed(0)
    model = create_model(_split_spec(tta=3, drop_rate=0.3)).eval()
    feats = model.backbone
    assert isinstance(feats, StochasticSplitFeatures) and feats.tta == 3 and feats.eval_seed == 0
    stem = feats.hi.conv1[0]
    assert isinstance(stem, StochasticConv2d) and stem.window == 23
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        f1, f2 = feats(x), feats(x)
        logits = model(x)
        assert torch.equal(f1, f2)
        # by hand: the generator seeded with eval_seed draws (top, left) once per pass, in order
        g = torch.Generator().manual_seed(0)
        passes = []
        for _ in range(3):
            stem.fixed_windows = sample_windows(2, stem.out_channels, 96, 96, 23, generator=g)
            passes.append(feats.hi(x))
        stem.fixed_windows = None
        lo = feats.lo(F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False))
        assert not torch.allclose(passes[0], passes[1], atol=1e-4)  # the passes see different windows
        per_pass = [torch.cat([h, lo], 1) for h in passes]
        torch.testing.assert_close(f1, torch.stack(per_pass).mean(0), atol=1e-5, rtol=1e-5)
        # linear head, dropout off in eval: the mean feature gives the mean of the per-pass logits
        torch.testing.assert_close(logits, torch.stack([model.head(f) for f in per_pass]).mean(0), atol=1e-5,
                                   rtol=1e-5)
        feats.eval_seed = 1
        assert not torch.allclose(feats(x), f1, atol=1e-4)
        feats.train()
        torch.manual_seed(7)
        a = feats(x)
        b = feats(x)
        torch.manual_seed(7)
        c = feats(x)
    assert not torch.allclose(a, b, atol=1e-4)  # training draws new windows every call ...
    torch.testing.assert_close(a, c)  # ... from the global RNG (seeded runs reproduce)


def test_create_model_forward_backward_and_errors():
    torch.manual_seed(0)
    model = create_model(_split_spec())
    assert model.head.in_features == model.backbone.num_features == 512 + 512
    x = torch.randn(2, 3, 96, 96)
    out = model(x)
    assert out.shape == (2, 2)
    out.square().sum().backward()
    stem_w = model.backbone.hi.conv1[0].weight
    assert stem_w.grad is not None and float(stem_w.grad.abs().sum()) > 0
    assert float(model.backbone.lo.conv1[0].weight.grad.abs().sum()) > 0
    assert model.eval()(x).shape == (2, 2)
    assert data_config(model)["input_size"] == [3, 96, 96]

    r18 = create_model(_split_spec(name="resnet18", num_outputs=1, tta=1)).eval()
    assert r18(x).shape == (2, 1)
    assert r18.backbone.window == 23 and isinstance(r18.backbone.hi.conv1, StochasticConv2d)
    plain_keys = set(timm.create_model("resnet18", num_classes=0).state_dict())
    assert set(r18.backbone.hi.state_dict()) == plain_keys  # timm/pretrained weights load unchanged

    with pytest.raises(UsageError) as ei:
        create_model(_split_spec(name="efficientnet_b0"))
    assert "efficientnet_b0" in ei.value.message and "resnet18" in (ei.value.hint or "")
    with pytest.raises(UsageError) as ei:
        model(torch.randn(2, 3, 20, 20))
    assert "23x23" in ei.value.message and "stem_out <= 10" in (ei.value.hint or "")


def _stripes_or_flat(n: int, g: torch.Generator, size: int = 96, patch: int = 40):
    """Images with a flat-colour background and a flat-colour patch at a random place; label 1 adds a period-2
    stripe texture to the patch (zero mean, so it vanishes when the image is downsized). Returns the images, the
    labels and the same images without the stripes."""
    y = torch.randint(0, 2, (n,), generator=g)
    x = (torch.rand(n, 3, 1, 1, generator=g) * 2 - 1).expand(n, 3, size, size).clone()
    col = torch.rand(n, 3, 1, 1, generator=g) * 2 - 1
    stripes = 0.8 * torch.tensor([1.0, -1.0]).repeat(patch // 2)
    flat = x.clone()
    for i in range(n):
        t, l = torch.randint(0, size - patch + 1, (2,), generator=g).tolist()
        flat[i, :, t:t + patch, l:l + patch] = col[i]
        x[i, :, t:t + patch, l:l + patch] = col[i] + (stripes if y[i] else 0.0)
    noise = 0.05 * torch.randn(x.shape, generator=g)
    return x + noise, y, flat + noise


def test_learns_a_label_visible_only_at_high_resolution():
    g = torch.Generator().manual_seed(0)
    x_tr, y_tr, flat_tr = _stripes_or_flat(512, g)
    x_te, y_te, _ = _stripes_or_flat(256, g)
    low = 16

    def down(t):
        return F.interpolate(t, size=(low, low), mode="bilinear", antialias=True, align_corners=False)

    assert float((x_tr - flat_tr).abs().max()) > 0.7  # the stripes are there at full resolution ...
    residue = (down(x_tr) - down(flat_tr)).abs()
    assert float(residue.mean()) < 0.005 and float(residue.max()) < 0.1  # ... and gone (but patch edges) at 16 px

    def fit_and_score(model: nn.Module, train: torch.Tensor, test: torch.Tensor) -> float:
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(40):
            idx = torch.randint(0, len(train), (32,))
            loss = F.binary_cross_entropy_with_logits(model(train[idx]).squeeze(1), y_tr[idx].float())
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            return float(((model(test).squeeze(1) > 0).long() == y_te).float().mean())

    torch.manual_seed(0)
    acc = fit_and_score(create_model(_split_spec(num_outputs=1, split_low_size=low, tta=2)), x_tr, x_te)
    assert acc > 0.8, acc  # chance is ~0.5; 0.95-0.99 over seeds 0-2 when written
    # control: the same backbone trained the same way on the downsized images alone stays at chance (0.48-0.50)
    torch.manual_seed(0)
    control = fit_and_score(timm.create_model("resnet10t", num_classes=1), down(x_tr), down(x_te))
    assert control < 0.65, control


def test_gradcam_default_layer_is_the_low_resolution_branch():
    """Each stem channel of the high-resolution branch sees its own random window, so only the low-resolution
    branch's maps are in image coordinates: Grad-CAM's default layer must come from it."""
    from lesionkit.explain.target_layers import default_target_layer

    model = create_model(_split_spec())
    assert default_target_layer(model) == "backbone.lo.layer4"
