"""Transforms: evaluation = hand-computed crop + resize + normalise; presets; the custom v2 transforms vs references."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import hsv2rgb, rgb2hsv
from torchvision import tv_tensors

from lesionkit.data.transforms import (
    PRESETS,
    SEEDS_CROP_FRACTION,
    FancyPCA,
    GaussianNoise,
    HSVShift,
    RandomCropFraction,
    ShiftScaleRotate,
    build_transform,
    cache_size_for,
    eval_crop_fraction,
    hsv_shift,
)
from lesionkit.errors import UsageError

MEAN = (0.5, 0.4, 0.3)
STD = (0.2, 0.25, 0.3)


def image(h: int = 80, w: int = 100, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth_image(n: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth colourful image (gradients + a blob), so interpolation differences stay small."""
    yy, xx = np.mgrid[0:n, 0:n] / n
    r = 0.5 + 0.4 * np.sin(3 * xx + seed)
    g = 0.4 + 0.3 * np.cos(2 * yy)
    b = 0.3 + 0.2 * xx * yy + 0.3 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.4) ** 2) / 0.02)
    return (np.clip(np.stack([r, g, b], -1), 0, 1) * 255).round().astype(np.uint8)


def hand_eval(img: np.ndarray, size: int, frac: float) -> np.ndarray:
    """Central square of side round(frac * short), PIL bilinear resize, (x/255 - mean) / std, CHW."""
    h, w = img.shape[:2]
    s = round(frac * min(h, w))
    y0, x0 = (h - s) // 2, (w - s) // 2
    crop = img[y0:y0 + s, x0:x0 + s]
    if s != size:
        crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))
    ref = (crop.astype(np.float64) / 255 - np.array(MEAN)) / np.array(STD)
    return ref.transpose(2, 0, 1)


@pytest.mark.parametrize("preset", PRESETS)
def test_eval_transform_equals_hand_computed(preset):
    img = image()
    t = build_transform(preset, 48, train=False, mean=MEAN, std=STD)
    torch.manual_seed(0)
    a = t(img)
    torch.manual_seed(123)
    b = t(img)
    assert a.dtype == torch.float32 and a.shape == (3, 48, 48) and a.is_contiguous()
    assert torch.equal(a, b)  # deterministic: never augmented, whatever the RNG
    ref = hand_eval(img, 48, eval_crop_fraction(preset))
    levels = np.abs(a.numpy() - ref) * np.array(STD)[:, None, None] * 255
    assert levels.max() <= 1.0 + 1e-4  # PIL's bilinear and torchvision's antialiased uint8 resize agree within 1 level


def test_eval_without_resize_is_exact_normalisation():
    img = image(48, 48)
    out = build_transform("none", 48, train=False, mean=MEAN, std=STD)(img).numpy()
    np.testing.assert_allclose(out, hand_eval(img, 48, 1.0), atol=1e-5)
    # seeds at eval: centre crop 416/512 of a 512 image is exactly the central 416 pixels, no resize at img_size 416
    big = image(512, 512, seed=3)
    out = build_transform("seeds", 416, train=False, mean=MEAN, std=STD)(big).numpy()
    ref = (big[48:464, 48:464].astype(np.float64) / 255 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(out, ref.transpose(2, 0, 1), atol=1e-5)
    assert cache_size_for("seeds", 416) == 512 and cache_size_for("seeds", 224) == 276 and cache_size_for("light", 224) == 224


def test_train_none_equals_eval():
    img = image()
    tr = build_transform("none", 40, train=True, mean=MEAN, std=STD)
    ev = build_transform("none", 40, train=False, mean=MEAN, std=STD)
    for seed in range(3):
        torch.manual_seed(seed)
        assert torch.equal(tr(img), ev(img))


@pytest.mark.parametrize("preset", ["light", "seeds", "heavy"])
def test_train_presets_augment_reproducibly(preset):
    img = smooth_image(64)
    t = build_transform(preset, 48, train=True, mean=MEAN, std=STD)
    ev = build_transform(preset, 48, train=False, mean=MEAN, std=STD)(img)
    torch.manual_seed(11)
    a = [t(img) for _ in range(6)]
    torch.manual_seed(11)
    b = [t(img) for _ in range(6)]
    for x, y in zip(a, b, strict=True):
        assert x.shape == (3, 48, 48) and x.dtype == torch.float32
        assert torch.equal(x, y)  # same torch seed → same augmentation
    assert not torch.equal(a[0], a[1])  # successive draws differ
    assert all(not torch.allclose(x, ev, atol=1e-3) for x in a)  # augmented ≠ the eval view (crop always random)
    t2 = pickle.loads(pickle.dumps(t))  # DataLoader workers receive a pickled copy
    torch.manual_seed(11)
    assert torch.equal(t2(img), a[0])


def test_seeds_random_crop_is_a_crop_of_the_right_size():
    x = torch.arange(100 * 80, dtype=torch.int32).reshape(1, 100, 80).repeat(3, 1, 1)
    crop = RandomCropFraction(SEEDS_CROP_FRACTION)
    seen = set()
    torch.manual_seed(0)
    for _ in range(50):
        c = crop(x)
        s = round(SEEDS_CROP_FRACTION * 80)
        assert c.shape == (3, s, s)
        top, left = divmod(int(c[0, 0, 0]), 80)
        assert torch.equal(c, x[:, top:top + s, left:left + s])
        seen.add((top, left))
    assert len(seen) > 20  # positions vary


def test_hsv_shift_zero_is_identity_and_shift_matches_skimage():
    img = tv_tensors.Image(torch.from_numpy(image(24, 24)).permute(2, 0, 1))
    same = HSVShift((0, 0), (0, 0), (0, 0), p=1.0)(img)
    assert same.dtype == torch.uint8 and torch.equal(same, img)  # RGB → HSV → RGB runs and rounds back exactly
    x = img.float() / 255
    fsame = HSVShift((0, 0), (0, 0), (0, 0), p=1.0)(x)
    assert fsame.dtype == torch.float32 and torch.allclose(fsame, x, atol=1e-6)
    out = HSVShift((5, 5), (10, 10), (-5, -5), p=1.0)(x)
    ref = rgb2hsv(x.permute(1, 2, 0).numpy())  # skimage: independent reference (H in [0, 1))
    ref[..., 0] = (ref[..., 0] + 5 / 180) % 1.0  # 5 OpenCV 8-bit hue units = 10 degrees
    ref[..., 1] = np.clip(ref[..., 1] + 10 / 255, 0, 1)
    ref[..., 2] = np.clip(ref[..., 2] - 5 / 255, 0, 1)
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), hsv2rgb(ref), atol=1e-5)
    # a pure hue rotation by 120 degrees permutes the channels of a saturated colour: red → green
    red = np.zeros((2, 2, 3), np.float32)
    red[..., 0] = 0.8
    np.testing.assert_allclose(hsv_shift(red, 120.0, 0.0, 0.0)[0, 0], [0, 0.8, 0], atol=1e-5)


def test_random_transform_probability():
    x = torch.full((3, 8, 8), 0.5)
    t = HSVShift(5, 10, 5, p=0.5)
    torch.manual_seed(0)
    changed = sum(not torch.equal(t(x), x) for _ in range(400))
    assert 160 <= changed <= 240  # p = .5 of 400: sd 10
    never = HSVShift(5, 10, 5, p=0.0)
    assert all(torch.equal(never(x), x) for _ in range(20))


def test_fancy_pca_zero_alpha_is_identity_and_shift_follows_principal_axis():
    img = tv_tensors.Image(torch.from_numpy(image(16, 16)).permute(2, 0, 1))
    assert torch.equal(FancyPCA(alpha=[0, 0, 0], p=1.0)(img), img)
    # colours vary only along d = (1, 1, 0)/sqrt(2) around a mid grey: one non-zero eigenvalue = that variance
    rng = np.random.default_rng(0)
    tcoef = rng.uniform(-0.2, 0.2, (32, 32))
    d = np.array([1, 1, 0]) / math.sqrt(2)
    x = 0.5 + tcoef[None] * d[:, None, None]
    lam = np.var(tcoef.ravel(), ddof=1) * 1.0  # variance along d (unit vector)
    xt = torch.from_numpy(x.astype(np.float32))
    a = 0.3
    out = FancyPCA(alpha=[a, a, a], p=1.0)(xt)
    delta = (out - xt).mean(dim=(1, 2)).double().numpy()
    assert abs(abs(delta @ d) - a * lam) < 1e-5  # magnitude α·λ along the principal axis (its sign is arbitrary)
    assert np.linalg.norm(delta - (delta @ d) * d) < 1e-6  # nothing off the axis
    # the image-wide offset is constant (a colour shift, not a per-pixel change)
    assert torch.allclose(out - xt, (out - xt)[:, :1, :1].expand_as(xt), atol=1e-6)


def test_gaussian_noise_variance_in_8bit_levels():
    x = torch.full((3, 128, 128), 0.5)
    torch.manual_seed(0)
    out = GaussianNoise(var=(30, 30), p=1.0)(x)
    sd_levels = float((out - x).std() * 255)
    assert sd_levels == pytest.approx(math.sqrt(30), rel=0.03)
    u8 = tv_tensors.Image(torch.full((3, 8, 8), 128, dtype=torch.uint8))
    assert GaussianNoise(var=(30, 30), p=1.0)(u8).dtype == torch.uint8


def test_shift_scale_rotate_geometry():
    img = torch.from_numpy(smooth_image(64).astype(np.float32) / 255).permute(2, 0, 1).contiguous()
    same = ShiftScaleRotate.warp(img, 0.0, 1.0, 0.0, 0.0)
    assert torch.allclose(same, img, atol=1e-5)
    right = ShiftScaleRotate.warp(img, 0.0, 1.0, 0.25, 0.0)  # +0.25 of the width = 16 px to the right
    assert torch.allclose(right[:, :, 16:], img[:, :, :48], atol=1e-5)
    assert torch.allclose(right[:, :, :16], img[:, :, 1:17].flip(-1), atol=1e-5)  # reflect-101 border, no black
    down = ShiftScaleRotate.warp(img, 0.0, 1.0, 0.0, -0.125)  # -0.125 of the height = 8 px up
    assert torch.allclose(down[:, :56], img[:, 8:], atol=1e-5)
    rot = ShiftScaleRotate.warp(img, 90.0, 1.0, 0.0, 0.0)
    assert torch.allclose(rot, torch.rot90(img, 1, dims=(1, 2)), atol=1e-4)  # +90 = counter-clockwise
    u8 = (img * 255).round().to(torch.uint8)
    r8 = ShiftScaleRotate.warp(u8, 90.0, 1.0, 0.0, 0.0)
    assert r8.dtype == torch.uint8 and torch.equal(r8, torch.rot90(u8, 1, dims=(1, 2)))
    # 2x about the centre: output pixel i samples input coordinate i / 2 + 15.75 (pixel centres at integers), so
    # output 16 + 2k interpolates inputs 23 + k and 24 + k with weights 1/4 and 3/4 along each axis
    zoom = ShiftScaleRotate.warp(img, 0.0, 2.0, 0.0, 0.0)
    a, b = slice(23, 39), slice(24, 40)
    ref = (0.0625 * img[:, a, a] + 0.1875 * img[:, a, b] + 0.1875 * img[:, b, a] + 0.5625 * img[:, b, b])
    assert torch.allclose(zoom[:, 16:48:2, 16:48:2], ref, atol=1e-5)


def test_preset_errors():
    with pytest.raises(UsageError, match="none, light, seeds, heavy"):
        build_transform("strong", 32, True)
    with pytest.raises(ValueError, match="uint8"):
        build_transform("none", 32, False)(np.zeros((32, 32, 3), np.float32))


def test_color_jitter_equals_torchvision_with_the_same_draws():
    """Same seed → same factors and step order as torchvision's ColorJitter; the OpenCV hue step agrees to 1e-5
    (pure colours, greys, black and white included); uint8 input falls back to torchvision's kernels exactly."""
    from torchvision.transforms import v2

    from lesionkit.data.transforms import ColorJitter

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 40, 50, generator=g)
    x[:, :5, :5] = 0.5
    x[:, 5:10, :5] = 0.0
    x[:, 10:15, :5] = 1.0
    x[:, 15:20, :5] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    kw = {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.2}
    for seed in range(40):
        torch.manual_seed(seed)
        ref = v2.ColorJitter(**kw)(x)
        torch.manual_seed(seed)
        out = ColorJitter(**kw)(x)
        assert out.dtype == ref.dtype and out.shape == ref.shape
        assert torch.allclose(out, ref, atol=1e-5), (seed, float((out - ref).abs().max()))
    u8 = (x * 255).round().to(torch.uint8)
    torch.manual_seed(1)
    ref = v2.ColorJitter(**kw)(u8)
    torch.manual_seed(1)
    assert torch.equal(ColorJitter(**kw)(u8), ref)
