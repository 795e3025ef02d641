"""Corruption registry: exact impulse counts, blurs vs OpenCV references, LUTs vs hand-computed values, JPEG vs
cv2, overlays, determinism and numpy ↔ torch parity."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from lesionkit.errors import UsageError
from lesionkit.robustness.corruptions import (
    CORRUPTIONS,
    KERNEL_SUM,
    apply_batch,
    apply_numpy,
    defocus_kernel,
    motion_kernel,
    parse_corruption,
    quantise_kernel,
)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    from lesionkit.synthetic import make_specs, render_sample

    imgs = [render_sample(s)[0] for s in make_specs(3, 64, seed=3)]
    # non-square crops so H and W are never swapped silently
    return [np.ascontiguousarray(im[5:53, 2:62]) for im in imgs]


def _mid_grey_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Random image with no pure black or white pixel (so impulse changes are countable)."""
    return np.random.default_rng(seed).integers(1, 255, (h, w, 3), dtype=np.uint8)


def _t(imgs: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()


# ------------------------------------------------------------------------------------------------- impulse


@pytest.mark.parametrize("frac", [0.01, 0.02, 0.05, 0.15, 0.333, 1.0])
@pytest.mark.parametrize("shape", [(48, 60), (37, 41)])
def test_impulse_exact_count_ratio_and_channels(frac: float, shape: tuple[int, int]) -> None:
    img = _mid_grey_image(*shape)
    out = apply_numpy(img, "impulse", frac, seed=7, sample_id="ISIC_0001")
    n = shape[0] * shape[1]
    k = math.floor(frac * n + 0.5)  # documented rounding of F*H*W (half up)
    changed = (out != img).any(axis=2)
    assert changed.sum() == k
    # all channels of a chosen pixel together: every changed pixel is pure black or pure white
    black = (out == 0).all(axis=2)
    white = (out == 255).all(axis=2)
    assert np.array_equal(changed, black | white)
    assert (out[~changed] == img[~changed]).all()
    n_black = math.floor(0.75 * k + 0.5)
    assert black.sum() == n_black and white.sum() == k - n_black
    assert abs(black.sum() - 3 * white.sum()) <= 2  # 3:1 up to the rounding of the split


def test_impulse_small_counts_rounding() -> None:
    img = _mid_grey_image(10, 10)
    for k, b in [(1, 1), (2, 2), (3, 2), (4, 3), (6, 5), (10, 8)]:  # B = floor(0.75 K + 0.5)
        out = apply_numpy(img, "impulse", k / 100, seed=0, sample_id="x")
        assert (out == 0).all(axis=2).sum() == b
        assert (out == 255).all(axis=2).sum() == k - b


def test_impulse_zero_is_identity_and_percent_syntax() -> None:
    img = _mid_grey_image(20, 20)
    assert np.array_equal(apply_numpy(img, "impulse", 0.0, seed=0, sample_id="a"), img)
    assert parse_corruption("impulse:1%,5%,15%").levels == (0.01, 0.05, 0.15)


# ------------------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", [n for n, c in CORRUPTIONS.items() if c.random])
def test_same_seed_and_id_identical_others_differ(name: str, images: list[np.ndarray]) -> None:
    img = images[0]
    lv = CORRUPTIONS[name].default_levels[-1]
    a = apply_numpy(img, name, lv, seed=1, sample_id="s1")
    b = apply_numpy(img.copy(), name, lv, seed=1, sample_id="s1")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, apply_numpy(img, name, lv, seed=1, sample_id="s2"))
    assert not np.array_equal(a, apply_numpy(img, name, lv, seed=2, sample_id="s1"))
    assert not np.array_equal(a, img)


def test_batch_composition_does_not_matter(images: list[np.ndarray]) -> None:
    x = _t(images)
    full = apply_batch(x, "impulse", 0.05, seed=3, sample_ids=["a", "b", "c"])
    alone = apply_batch(x[1:2], "impulse", 0.05, seed=3, sample_ids=["b"])
    assert torch.equal(full[1:2], alone)


# ------------------------------------------------------------------------------------------------- blurs vs OpenCV


def _close_to(ref: np.ndarray, out: np.ndarray) -> None:
    d = np.abs(ref.astype(np.int32) - out.astype(np.int32))
    assert d.max() <= 1, d.max()
    assert (d == 0).mean() > 0.9


@pytest.mark.parametrize("k", [3, 5, 7, 9])
@pytest.mark.parametrize("sigma", [0.0, 1.5])
def test_gaussian_blur_matches_cv2(k: int, sigma: float, images: list[np.ndarray]) -> None:
    spec = parse_corruption(f"gaussian_blur(sigma={sigma}):{k}")
    for img in images:
        out = apply_numpy(img, "gaussian_blur", k, seed=0, sample_id="x", params=spec.param_dict)
        _close_to(cv2.GaussianBlur(img, (k, k), sigma), out)


@pytest.mark.parametrize("k", [5, 7, 9])
def test_motion_blur_45_matches_cv2_filter2d_antidiagonal(k: int, images: list[np.ndarray]) -> None:
    line = np.fliplr(np.eye(k)) / k  # 45°: up-right, i.e. the anti-diagonal with image y pointing down
    for img in images:
        out = apply_numpy(img, "motion_blur", k, seed=0, sample_id="x")
        _close_to(cv2.filter2D(img, -1, line, borderType=cv2.BORDER_REFLECT_101), out)


def test_motion_blur_0_and_90_and_any_angle(images: list[np.ndarray]) -> None:
    img = images[1]
    row = np.zeros((7, 7))
    row[3] = 1 / 7
    out0 = apply_numpy(img, "motion_blur", 7, seed=0, sample_id="x", params={"angle": 0.0})
    _close_to(cv2.filter2D(img, -1, row), out0)
    out90 = apply_numpy(img, "motion_blur", 7, seed=0, sample_id="x", params={"angle": 90.0})
    _close_to(cv2.filter2D(img, -1, row.T), out90)
    for ang in (30.0, 117.0):
        ker = motion_kernel(9, ang)
        assert ker.sum() == pytest.approx(1.0)
        assert np.allclose(ker, ker[::-1, ::-1])  # a line through the centre: 180° symmetric
        ys, xs = np.nonzero(ker > 1e-12)
        c = (ker.shape[0] - 1) / 2
        th = math.radians(ang)
        dist = np.abs((xs - c) * math.sin(th) + (ys - c) * math.cos(th))  # distance to the line y' = -tan(θ) x'
        assert dist.max() < 1.0
        out = apply_numpy(img, "motion_blur", 9, seed=0, sample_id="x", params={"angle": ang})
        _close_to(cv2.filter2D(img, -1, ker), out)


@pytest.mark.parametrize("r", [1, 2, 3.5])
def test_defocus_matches_cv2_filter2d_disk(r: float, images: list[np.ndarray]) -> None:
    h = math.ceil(r)
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    disk = (np.hypot(xx, yy) <= r).astype(np.float64)
    disk /= disk.sum()
    assert np.allclose(disk, defocus_kernel(r))
    for img in images:
        _close_to(cv2.filter2D(img, -1, disk), apply_numpy(img, "defocus", r, seed=0, sample_id="x"))


def test_quantised_kernels_sum_exactly() -> None:
    for ker in (motion_kernel(7, 33.0), defocus_kernel(2.5), np.outer(*(2 * [cv2.getGaussianKernel(9, 0).ravel()]))):
        q = quantise_kernel(ker)
        assert q.sum() == KERNEL_SUM and (q >= 0).all()
        assert np.abs(q / KERNEL_SUM - ker / ker.sum()).max() <= 1 / KERNEL_SUM


# ------------------------------------------------------------------------------------------------- colour / jpeg


def test_gamma_brightness_contrast_vs_hand_luts(images: list[np.ndarray]) -> None:
    img = images[2]
    for g in (0.5, 2.0):
        lut = np.array([min(255, max(0, math.floor(255 * (v / 255) ** g + 0.5))) for v in range(256)], np.uint8)
        assert np.array_equal(apply_numpy(img, "gamma", g, seed=0, sample_id="x"), lut[img])
    for f in (0.6, 1.4):
        lut = np.array([min(255, max(0, math.floor(v * f + 0.5))) for v in range(256)], np.uint8)
        assert np.array_equal(apply_numpy(img, "brightness", f, seed=0, sample_id="x"), lut[img])
    for c in (0.5, 1.5):
        m = float((img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).mean())
        lut = np.array([min(255, max(0, math.floor(m + c * (v - m) + 0.5))) for v in range(256)], np.uint8)
        assert np.array_equal(apply_numpy(img, "contrast", c, seed=0, sample_id="x"), lut[img])
    assert np.array_equal(apply_numpy(img, "gamma", 1.0, seed=0, sample_id="x"), img)


@pytest.mark.parametrize("q", [50, 10, 5])
def test_jpeg_matches_cv2(q: int, images: list[np.ndarray]) -> None:
    img = images[0]
    _ok, buf = cv2.imencode(".jpg", img[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, q])
    ref = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    out = apply_numpy(img, "jpeg", q, seed=0, sample_id="x")
    assert np.array_equal(out, ref)


def test_gaussian_noise_statistics() -> None:
    img = np.full((128, 128, 3), 128, np.uint8)
    out = apply_numpy(img, "gaussian_noise", 0.04, seed=0, sample_id="x").astype(np.float64) - 128
    assert abs(out.mean()) < 0.1
    assert out.std() == pytest.approx(0.04 * 255, rel=0.02)
    # P(|round(σ z)| <= 10) = P(|z| < 10.5 / σ) after rounding to whole levels
    assert abs(np.mean(np.abs(out) <= 10) - math.erf(10.5 / (0.04 * 255) / math.sqrt(2))) < 0.01


# ------------------------------------------------------------------------------------------------- overlays


def test_hair_and_ink_overlays(images: list[np.ndarray]) -> None:
    img = np.full((64, 80, 3), (205, 160, 140), np.uint8)  # light skin
    prev = 0
    for n in (5, 20, 40):
        out = apply_numpy(img, "hair", n, seed=0, sample_id="x")
        changed = (out != img).any(axis=2)
        assert changed.mean() > prev  # more strands cover more pixels
        prev = changed.mean()
        assert (out[changed].astype(int).sum(1) < img[0, 0].astype(int).sum()).all()  # hair is darker
    ink = apply_numpy(img, "ink", 2, seed=0, sample_id="x")
    ch = (ink != img).any(axis=2)
    assert 0.002 < ch.mean() < 0.5
    strong = ink[ch & ((ink.astype(int) - img).__abs__().sum(2) > 60)]
    assert (strong[:, 2] >= strong[:, 1]).all()  # violet / blue marker: blue at least green
    assert np.array_equal(apply_numpy(img, "hair", 0, seed=0, sample_id="x"), img)


# ------------------------------------------------------------------------------------------------- parity


def _parity(images: list[np.ndarray], device: str) -> None:
    ids = ["ISIC_1", "ISIC_2", "ISIC_3"]
    x = _t(images).to(device)
    for name, c in CORRUPTIONS.items():
        specs = [(lv, None) for lv in (c.default_levels[0], c.default_levels[-1])]
        if name == "motion_blur":
            specs.append((7, {"angle": 30.0}))
        for lv, params in specs:
            ref = np.stack([apply_numpy(im, name, lv, seed=5, sample_id=s, params=params) for im, s in zip(images, ids)])
            nhwc = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2)  # non-contiguous view
            for xin in (x, x.float(), nhwc):
                got = apply_batch(xin, name, lv, seed=5, sample_ids=ids, params=params)
                assert got.dtype == xin.dtype and got.device == xin.device
                got = got.to("cpu", torch.uint8).permute(0, 2, 3, 1).numpy()
                assert np.array_equal(got, ref), f"{name} {lv} {params} {xin.dtype}: {(got != ref).sum()} differ"


def test_numpy_torch_parity_cpu(images: list[np.ndarray]) -> None:
    _parity(images, "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_numpy_torch_parity_cuda(images: list[np.ndarray]) -> None:
    _parity(images, "cuda")


# ------------------------------------------------------------------------------------------------- parsing


def test_parse_and_errors() -> None:
    s = parse_corruption("motion_blur(angle=30):5,7")
    assert s.name == "motion_blur" and s.levels == (5.0, 7.0) and s.param_dict["angle"] == 30.0
    assert s.label == "motion_blur(angle=30)"
    assert parse_corruption("aniso_blur").levels == CORRUPTIONS["motion_blur"].default_levels
    assert parse_corruption("motion_blur(angle=45):5").label == "motion_blur"  # default parameter dropped
    with pytest.raises(UsageError, match="did you mean"):
        parse_corruption("impuls:0.1")
    with pytest.raises(UsageError, match="outside"):
        parse_corruption("impulse:1.5")
    with pytest.raises(UsageError, match="odd"):
        apply_numpy(np.zeros((20, 20, 3), np.uint8), "gaussian_blur", 4, seed=0, sample_id="x")
    with pytest.raises(UsageError, match="unknown parameter"):
        parse_corruption("impulse(angle=3):0.1")


def _lowbias32_reference(x: int) -> int:
    """The published lowbias32 mixer in plain Python integers (the reference for the vectorised hashes)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_counter_hash_matches_python_reference() -> None:
    from lesionkit.robustness.corruptions import _hash_np, _hash_torch, _signed32

    k1, k2 = 0xDEADBEEF, 0x9E3779B9
    counters = np.array([0, 1, 2, 12345, 2**31 - 1, 2**31, 2**32 - 1], dtype=np.uint32)
    ref = [_lowbias32_reference(_lowbias32_reference(int(c) ^ k1) ^ k2) for c in counters]
    assert _hash_np(counters, k1, k2).tolist() == ref
    t = torch.from_numpy(counters.view(np.int32).copy())[None, :]
    key = lambda k: torch.tensor([[_signed32(k)]], dtype=torch.int32)  # noqa: E731
    got = _hash_torch(t, key(k1), key(k2))[0].numpy().view(np.uint32)
    assert got.tolist() == ref


def test_gaussian_noise_parity_odd_value_count() -> None:
    # 37 x 41 x 3 values is odd: the last 16-bit draw uses only the low half of the last hash
    img = _mid_grey_image(37, 41, seed=2)
    ref = apply_numpy(img, "gaussian_noise", 0.1, seed=1, sample_id="odd")
    got = apply_batch(_t([img]), "gaussian_noise", 0.1, seed=1, sample_ids=["odd"])
    assert np.array_equal(got.permute(0, 2, 3, 1).numpy()[0], ref)
    # the three channels of a pixel get different draws (values are counted channel by channel)
    flat = np.full((37, 41, 3), 128, np.uint8)
    out = apply_numpy(flat, "gaussian_noise", 0.1, seed=1, sample_id="odd").astype(int)
    assert (out[..., 0] != out[..., 1]).mean() > 0.9


@pytest.mark.parametrize("side", [3, 7, 11, 13])
def test_cpu_blur_paths_equal_integer_tap_loop(side: int) -> None:
    # sides <= 11 run through cv2.filter2D, 13 through the depthwise convolution: both must equal the integer loop
    from lesionkit.robustness.corruptions import _filter_np, _filter_torch

    rng = np.random.default_rng(side)
    qk = quantise_kernel(rng.random((side, side)) ** 3)  # asymmetric: a flipped (convolution) kernel would differ
    imgs = [_mid_grey_image(31, 45, seed=s) for s in range(2)]
    got = _filter_torch(_t(imgs).float(), qk).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for g, im in zip(got, imgs):
        assert np.array_equal(g, _filter_np(im, qk))
