"""lesionkit.prep.color: gamma LUT, auto gamma, Shades of Gray (references computed independently in numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lesionkit.errors import InputError, UsageError
from lesionkit.prep.color import (
    LUMA_WEIGHTS,
    apply_gamma,
    auto_gamma,
    gamma_lut,
    shades_of_gray,
)


def _img(seed: int = 0, shape: tuple[int, int] = (48, 64), lo: int = 0, hi: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(lo, hi, size=(*shape, 3), dtype=np.uint8)


def _luma_mean(img: np.ndarray, mask: np.ndarray | None = None) -> float:
    px = img[mask] if mask is not None else img.reshape(-1, 3)
    return float((px.astype(np.float64) / 255.0 @ np.asarray(LUMA_WEIGHTS)).mean())


@pytest.mark.parametrize("g", [0.5, 0.8, 1.2, 1.5, 2.2])
def test_gamma_lut_matches_formula_exactly(g):
    v = np.arange(256, dtype=np.float64)
    ref = np.clip(np.round(255.0 * (v / 255.0) ** (1.0 / g)), 0, 255).astype(np.uint8)
    lut = gamma_lut(g)
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    np.testing.assert_array_equal(lut, ref)
    img = _img(1)
    np.testing.assert_array_equal(apply_gamma(img, g), ref[img])


def test_gamma_convention_above_one_brightens():
    img = _img(2, lo=10, hi=245)
    assert apply_gamma(img, 1.2).astype(int).mean() > img.astype(int).mean()
    assert apply_gamma(img, 0.8).astype(int).mean() < img.astype(int).mean()
    assert gamma_lut(1.2)[128] == 144 and gamma_lut(1.2)[0] == 0 and gamma_lut(1.2)[255] == 255


def test_gamma_one_is_identity():
    img = _img(3)
    np.testing.assert_array_equal(apply_gamma(img, 1.0), img)
    np.testing.assert_array_equal(gamma_lut(1.0), np.arange(256, dtype=np.uint8))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_gamma_rejects_bad_values(bad):
    with pytest.raises(UsageError):
        gamma_lut(bad)


def test_apply_gamma_rejects_non_rgb():
    with pytest.raises(InputError):
        apply_gamma(np.zeros((4, 4), np.uint8), 1.2)
    with pytest.raises(InputError):
        apply_gamma(np.zeros((4, 4, 3), np.float32), 1.2)


@pytest.mark.parametrize("scale, target", [(0.35, 0.5), (0.9, 0.5), (0.6, 0.4), (0.5, 0.6)])
def test_auto_gamma_brings_masked_mean_to_target(scale, target):
    rng = np.random.default_rng(4)
    img = np.clip(rng.normal(200 * scale, 25, size=(64, 64, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[8:40, 10:60] = True
    img[~mask] = 255  # outside the mask is bright: must not influence the estimate
    g = auto_gamma(img, mask=mask, target=target, bounds=(0.2, 5.0))
    assert abs(_luma_mean(apply_gamma(img, g), mask) - target) < 0.005
    # whole-image variant (no saturated surround this time: 255 is a fixed point of every gamma)
    img2 = np.clip(rng.normal(200 * scale, 25, size=(64, 64, 3)), 0, 254).astype(np.uint8)
    g2 = auto_gamma(img2, target=target, bounds=(0.2, 5.0))
    assert abs(_luma_mean(apply_gamma(img2, g2)) - target) < 0.005


def test_auto_gamma_closed_form_direction_and_clamp():
    dark = np.full((16, 16, 3), 60, np.uint8)
    g = auto_gamma(dark, target=0.5)
    assert g > 1.0  # a dark image needs brightening: gamma > 1 by the module's convention
    # the exact single-level solution: 255 * (60/255) ** (1/g) ~ 127.5
    assert abs(g - math.log(60 / 255) / math.log(0.5)) < 0.02
    assert auto_gamma(np.full((8, 8, 3), 5, np.uint8), target=0.5, bounds=(0.5, 2.5)) == 2.5
    assert auto_gamma(np.full((8, 8, 3), 250, np.uint8), target=0.5, bounds=(0.5, 2.5)) == 0.5
    assert auto_gamma(np.zeros((8, 8, 3), np.uint8)) == 1.0
    with pytest.raises(UsageError):
        auto_gamma(dark, target=1.0)


def test_shades_of_gray_removes_known_cast():
    rng = np.random.default_rng(5)
    grey = rng.integers(30, 200, size=(64, 64), dtype=np.uint8)
    neutral = np.stack([grey, grey, grey], -1).astype(np.float64)
    cast = np.array([1.25, 1.0, 0.7])
    img = np.clip(np.rint(neutral * cast), 0, 255).astype(np.uint8)
    for p in (1, 6, float("inf")):
        out, gains = shades_of_gray(img, p=p)
        g = np.asarray(gains)
        # gains proportional to the inverse of the cast
        ratio = g * cast
        assert np.allclose(ratio / ratio.mean(), 1.0, atol=0.01), (p, gains)
        # the corrected image is neutral again: channel means equal within 1%
        means = out.reshape(-1, 3).astype(np.float64).mean(0)
        assert (means.max() - means.min()) / means.mean() < 0.01


def test_shades_of_gray_p1_is_grey_world_by_hand():
    img = _img(6, lo=20, hi=230)
    out, gains = shades_of_gray(img, p=1)
    m = img.reshape(-1, 3).astype(np.float64).mean(0)
    expected = m.mean() / m
    np.testing.assert_allclose(gains, expected, rtol=1e-9)
    ref = np.clip(np.rint(img.astype(np.float64) * expected), 0, 255).astype(np.uint8)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1  # float32 multiply vs float64 reference


def test_shades_of_gray_p6_formula_by_hand():
    img = _img(7, lo=20, hi=230)
    _, gains = shades_of_gray(img, p=6)
    x = img.reshape(-1, 3).astype(np.float64) / 255.0
    e = np.mean(x**6, axis=0) ** (1 / 6)
    np.testing.assert_allclose(gains, e.mean() / e, rtol=1e-9)


def test_shades_of_gray_uses_masked_pixels_only():
    img = np.zeros((40, 40, 3), np.uint8)
    img[:20] = (100, 120, 140)  # inside the mask
    img[20:] = (250, 10, 10)  # outside: a strong red that must be ignored
    mask = np.zeros((40, 40), bool)
    mask[:20] = True
    out, gains = shades_of_gray(img, p=6, mask=mask)
    e = np.array([100, 120, 140], np.float64)
    np.testing.assert_allclose(gains, e.mean() / e, rtol=1e-9)
    assert np.all(np.abs(out[:20].astype(int) - 120) <= 1)  # masked region becomes neutral
    # and the gains are applied to the whole image (outside too)
    assert out[30, 30, 0] == 255 and out[30, 30, 2] == round(10 * gains[2])


def test_shades_of_gray_rejects_p_below_one():
    with pytest.raises(UsageError):
        shades_of_gray(_img(8), p=0.5)


def test_rgb_max_min_equal_numpy_on_views_and_odd_shapes():
    from lesionkit.prep.color import rgb_max, rgb_min

    rng = np.random.default_rng(5)
    for h, w in ((1, 1), (3, 7), (64, 96), (75, 101)):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for view in (img, img[::2, ::2], img[:, ::-1]):  # strided and reversed views are copied first
            mx, mn = rgb_max(view), rgb_min(view)
            assert mx.flags.c_contiguous and mn.flags.c_contiguous
            assert np.array_equal(mx, view.max(-1)) and np.array_equal(mn, view.min(-1))
    with pytest.raises(ValueError, match="RGB uint8"):
        rgb_max(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        rgb_min(np.zeros((4, 4, 3), np.float32))
