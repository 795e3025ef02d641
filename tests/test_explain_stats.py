"""Masks at the model input geometry, energy fractions, occlusion regions, selections."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from lesionkit.data.cache import fit_square
from lesionkit.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_transform,
    eval_crop_fraction,
)
from lesionkit.explain.occlusion import (
    centre_third,
    occlude,
    occlusion_regions,
    probabilities,
)
from lesionkit.explain.run import select_samples
from lesionkit.explain.stats import (
    InputGeometry,
    energy_fractions,
    fit_mask_to_image,
    map_through_prep,
    summarize,
)


def _picture(h: int, w: int, centre: tuple[int, int], axes: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    img = np.full((h, w, 3), (200, 160, 140), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, centre, axes, 20, 0, 360, 255, -1)
    img[mask > 0] = (40, 20, 90)
    return img, mask


def _input_region(img: np.ndarray, preset: str, size: int, square: int | None) -> np.ndarray:
    """Where the dark ellipse lands in the model input (from the real evaluation transform)."""
    tf = build_transform(preset, size, train=False)
    x = tf(fit_square(img, square) if square else img)
    rgb = x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    return (rgb[0] < 0.47).numpy()  # red channel: 200/255 skin vs 40/255 lesion, threshold half way


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize(("preset", "square"), [("none", 80), ("seeds", 79), ("none", None), ("seeds", None)])
def test_masks_land_where_the_transform_puts_the_pixels(preset: str, square: int | None) -> None:
    # a 150x200 picture (HAM10000's aspect) with an off-centre lesion near the crop border
    img, mask = _picture(150, 200, (70, 60), (34, 22))
    region = _input_region(img, preset, 64, square)
    geo = InputGeometry(img_size=64, crop_fraction=eval_crop_fraction(preset), square_size=square)
    soft = geo.mask(mask)
    assert soft.shape == (64, 64) and soft.dtype == np.float32 and 0 <= soft.min() and soft.max() <= 1
    assert _iou(soft > 0.5, region) > 0.9
    ys, xs = np.nonzero(region)
    ys2, xs2 = np.nonzero(soft > 0.5)
    assert abs(ys.mean() - ys2.mean()) < 0.6 and abs(xs.mean() - xs2.mean()) < 0.6
    # the test can fail: ignoring the crop (resizing the whole picture) misplaces the lesion
    wrong = cv2.resize(mask, (64, 64), interpolation=cv2.INTER_AREA) > 127
    assert _iou(wrong, region) < 0.8


def test_mask_at_another_resolution_is_fitted_and_other_aspects_refused() -> None:
    _, mask = _picture(450, 600, (300, 200), (90, 60))  # like the official 600x450 HAM10000 masks
    small = fit_mask_to_image(mask, (150, 200))
    assert small is not None and small.shape == (150, 200)
    ref = cv2.resize(mask, (200, 150), interpolation=cv2.INTER_AREA) > 127
    assert _iou(small, ref) > 0.95
    assert fit_mask_to_image(mask, (200, 200)) is None


def test_map_through_prep_follows_the_crop() -> None:
    _, mask = _picture(300, 400, (250, 150), (40, 30))
    # prep cropped the central 300x300 square and resized it to 128
    mapped = map_through_prep(mask, (50, 0, 350, 300), (300, 400), (128, 128))
    ref = cv2.resize(mask[:, 50:350], (128, 128), interpolation=cv2.INTER_AREA) > 127
    assert mapped is not None and _iou(mapped, ref) > 0.95
    # a mask stored at half resolution maps the same way
    half = cv2.resize(mask, (200, 150), interpolation=cv2.INTER_NEAREST)
    assert _iou(map_through_prep(half, (50, 0, 350, 300), (300, 400), (128, 128)), ref) > 0.9


def test_energy_fractions_by_hand() -> None:
    cam = torch.zeros(2, 4, 4)
    cam[0, 0, 0] = 3.0
    cam[0, 3, 3] = 1.0
    masks = torch.zeros(2, 2, 4, 4)
    masks[0, 0, :2, :2] = 1.0  # holds the 3.0
    masks[0, 1, 3, 3] = 0.5  # half-covered pixel with 1.0
    avail = torch.tensor([[True, True], [True, False]])
    e, a = energy_fractions(cam, masks, avail)
    assert e[0, 0].item() == pytest.approx(0.75)
    assert e[0, 1].item() == pytest.approx(0.125)
    assert a[0, 0].item() == pytest.approx(4 / 16) and a[0, 1].item() == pytest.approx(0.5 / 16)
    assert np.isnan(e[1, 0].item())  # all-zero CAM
    assert np.isnan(e[1, 1].item()) and np.isnan(a[1, 1].item())  # mask unavailable


def test_uniform_cam_energy_equals_area() -> None:
    m = (torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    e, a = energy_fractions(torch.ones(1, 32, 32), m, torch.tensor([[True]]))
    assert e.item() == pytest.approx(a.item())


def test_occlusion_regions_and_fill() -> None:
    les = torch.zeros(2, 32, 32)
    les[0, 10:14, 10:14] = 1.0
    reg = occlusion_regions(les, torch.tensor([True, True]), dilate=1)
    assert reg[0, 9:15, 9:15].all() and reg[0].sum() == 36  # dilated by one pixel
    assert torch.equal(reg[1], centre_third(32))  # empty mask → centre third
    x = torch.randn(2, 3, 32, 32)
    xo = occlude(x, reg, "mean")
    keep = ~reg[0]
    assert torch.allclose(xo[0][:, reg[0]], x[0][:, keep].mean(dim=1, keepdim=True).expand(3, 36), atol=1e-5)
    assert torch.equal(xo[0][:, keep], x[0][:, keep])
    assert torch.all(occlude(x, reg, "zero")[0][:, reg[0]] == 0)
    p = probabilities(torch.tensor([[0.0], [2.0]]))
    assert torch.allclose(p.sum(1), torch.ones(2)) and p[1, 1] > 0.88


def test_selections() -> None:
    df = pd.DataFrame({"sample_id": list("abcdef"), "correct": [True, False, False, True, True, False],
                       "prob_pred": [0.9, 0.6, 0.95, 0.5, 0.99, 0.7]})
    assert select_samples(df, "errors", 2) == [2, 5]
    assert select_samples(df, "most-confident", 3) == [4, 2, 0]
    assert set(select_samples(df, "correct", 10)) == {0, 3, 4}
    assert select_samples(df, "random", 3, seed=1) == select_samples(df, "random", 3, seed=1)
    assert select_samples(df, "ids", 1, ids=["f", "a"]) == [5, 0]


def test_summaries_by_group() -> None:
    df = pd.DataFrame({"g": ["x", "x", "y"], "lesion_energy": [0.2, 0.4, np.nan], "lesion_area": [0.1, 0.1, np.nan]})
    rows = summarize(df, "g", kinds=("lesion",))
    assert rows[0]["g"] == "all" and rows[0]["n"] == 3 and rows[0]["lesion_energy"] == pytest.approx(0.3)
    assert rows[2]["g"] == "y" and rows[2]["lesion_energy"] is None and rows[2]["lesion_n"] == 0
