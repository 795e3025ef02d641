"""Skin tone: Lab vs independent references, ITA/atan2, thresholds, strategies on synthetic ground truth, bad
inputs, agreement metrics vs scikit-learn / scipy, and the two CLI stages."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from lesionkit import synthetic
from lesionkit.errors import UsageError
from lesionkit.manifest.io import Manifest, read_manifest, write_manifest
from lesionkit.manifest.schema import coerce
from lesionkit.skintone.agreement import (
    agreement_metrics,
    confusion,
    linear_weighted_kappa,
    spearman,
)
from lesionkit.skintone.lab import lab_to_ita, rgb_to_lab
from lesionkit.skintone.run import label_image, run_label_skintone
from lesionkit.skintone.strategies import (
    BEVAN_PATCHES,
    SkinToneConfig,
    estimate,
    lightest_mode,
    patch_boxes,
    robust_colour,
)
from lesionkit.skintone.thresholds import PRESETS, categorize, parse_thresholds
from tests.conftest import invoke

# ----------------------------------------------------------------------------------------------- Lab / ITA


def test_lab_matches_skimage_and_opencv_float():
    from skimage import color

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    greys = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1)[None]
    for x in (img, greys):
        ref = color.rgb2lab(x)
        assert np.abs(rgb_to_lab(x) - ref).max() < 1e-3
        # OpenCV on float32 in [0, 1] is an independent implementation; it approximates (within ~0.4)
        cvlab = cv2.cvtColor(x.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
        assert np.abs(cvlab - ref).max() < 0.5
    # OpenCV's 8-bit Lab is scaled and rounded: only after rescaling is it Lab at all (never used for ITA)
    raw = cv2.cvtColor(img, cv2.COLOR_RGB2Lab).astype(np.float64)
    rescaled = np.stack([raw[..., 0] * 100 / 255, raw[..., 1] - 128, raw[..., 2] - 128], -1)
    assert np.abs(rescaled - color.rgb2lab(img)).max() < 1.5
    assert np.abs(raw - color.rgb2lab(img)).max() > 50
    # pixel lists work too
    assert rgb_to_lab(img.reshape(-1, 3)).shape == (2000, 3)


def test_ita_uses_atan2():
    assert lab_to_ita(60.0, 10.0) == pytest.approx(45.0)
    assert lab_to_ita(40.0, 10.0) == pytest.approx(-45.0)
    # negative b*: atan((L-50)/b) would say -45 (dark); atan2 says 135 (a light, bluish colour)
    assert lab_to_ita(60.0, -10.0) == pytest.approx(135.0)
    assert lab_to_ita(50.0 + 10 * math.tan(math.radians(30)), 10.0) == pytest.approx(30.0)
    np.testing.assert_allclose(lab_to_ita(np.array([60.0, 40.0]), np.array([10.0, 10.0])), [45.0, -45.0])
    # the same formula as the synthetic ground truth
    assert lab_to_ita(63.2, 14.1) == pytest.approx(float(synthetic.ita_deg(63.2, 14.1)))


# ----------------------------------------------------------------------------------------------- thresholds


def test_threshold_presets_and_boundaries():
    k = PRESETS["kinyanjui"]
    assert [k.index(v) for v in (70, 55.01, 55, 41.01, 41, 28, 19.5, 19, 10.01, 10, -60)] == [1, 1, 2, 2, 3, 4, 4, 5, 5, 6, 6]
    for v in np.linspace(-60, 80, 281):  # the synthetic generator's ground-truth mapping uses the same edges
        assert k.index(v) == synthetic.fitzpatrick_from_ita(v)
    assert PRESETS["groh-empirical"].edges == (45, 28, 17, 5, -20)
    d = PRESETS["del-bino"]
    assert d.edges == (55, 41, 28, 10, -30) and d.categories[0] == "very light" and d.categories[-1] == "dark"
    assert d.index(-31) == 6 and d.index(-30) == 6 and d.index(0) == 5
    ita = np.array([60, 50, 30, 20, 15, 0, np.nan])
    np.testing.assert_array_equal(categorize(ita, k), [1, 2, 3, 4, 5, 6, 0])
    c = parse_thresholds("50,40,30,20,10")
    assert c.name == "custom" and c.index(45) == 2
    assert parse_thresholds("kinyanjui") is k
    for bad in ("50,40,30,20", "10,20,30,40,50", "foo", "50,40,40,20,10"):
        with pytest.raises(UsageError):
            parse_thresholds(bad)


# ----------------------------------------------------------------------------------------------- robust estimators


def test_robust_colour_and_lightest_mode():
    rng = np.random.default_rng(1)
    skin_L, skin_b = rng.normal(62, 1.5, 3000), rng.normal(15, 1.0, 3000)
    # 35% lesion (darker), 5% ink (b* very negative), 3% ruler (bright)
    les_L, les_b = rng.normal(35, 4, 1600), rng.normal(22, 3, 1600)
    L = np.concatenate([skin_L, les_L, rng.normal(40, 3, 230), rng.normal(92, 1, 140)])
    b = np.concatenate([skin_b, les_b, rng.normal(-35, 4, 230), rng.normal(4, 1, 140)])
    lo, hi = lightest_mode(L)
    assert lo <= 60 and 64 <= hi < 85  # the skin mode, not the ruler (3%) nor the lesion
    mL, mb, keep = robust_colour(L, b, start=(L >= lo) & (L < hi))
    assert mL == pytest.approx(62, abs=0.3) and mb == pytest.approx(15, abs=0.3)
    assert keep[:3000].mean() > 0.9 and keep[3000:].mean() < 0.02
    # a lesion larger than the skin: the lighter mode still wins (lesions are darker)
    L2 = np.concatenate([skin_L[:1000], les_L, les_L])
    lo2, _ = lightest_mode(L2)
    assert lo2 > 45


# ----------------------------------------------------------------------------------------------- strategies


def _specs_all_types(n_per: int = 2, size: int = 128) -> list[synthetic.SampleSpec]:
    """Synthetic specs covering every type, with hair, ink and a round field of view forced on some."""
    specs = synthetic.make_specs(80, size, seed=5)
    out = []
    for t in range(1, 7):
        mine = [s for s in specs if s.fitzpatrick == t][:n_per]
        for j, s in enumerate(mine):
            out.append(dataclasses.replace(s, hair_dark=True, hair_light=j == 0, ink=j == 1, fov=j == 0))
    return out


@pytest.fixture(scope="module")
def rendered():
    return [(s, synthetic.render_sample(s)[0]) for s in _specs_all_types()]


@pytest.mark.parametrize("method", ["mask", "kmeans"])
def test_robust_methods_recover_synthetic_ita(rendered, method):
    cfg = SkinToneConfig(method=method)
    errs, exact = [], 0
    for spec, img in rendered:
        r = estimate(img, cfg)
        assert r.error is None, r.error
        errs.append(abs(r.ita_deg - spec.ita_true))
        exact += PRESETS["kinyanjui"].index(r.ita_deg) == spec.fitzpatrick
        assert 0 < r.skin_frac <= 1 and r.skin_pixels > 100 and r.spread is not None
    assert np.median(errs) < 0.5 and max(errs) < 3.0
    assert exact >= len(rendered) - 1


def test_patch_methods(rendered):
    _spec, img = rendered[0]
    b = estimate(img, SkinToneConfig(method="bevan"))
    assert b.error is None and len(b.patches) == 8 and b.ita_deg == pytest.approx(max(b.patches))
    p = estimate(img, SkinToneConfig(method="patch-median"))
    assert p.error is None and len(p.patches) == 8
    fin = [v for v in p.patches if np.isfinite(v)]
    assert p.ita_deg == pytest.approx(float(np.median(fin)))
    # patch layout: the published 256-px positions, and scaled boxes that stay inside any image
    assert BEVAN_PATCHES[0] == (230, 250, 115, 135) and len(set(BEVAN_PATCHES)) == 8
    assert patch_boxes(256, 256)[6] == (20, 40, 20, 40)
    for h, w in ((150, 200), (33, 500), (1000, 40)):
        for r0, r1, c0, c1 in patch_boxes(h, w):
            assert 0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w


def test_bevan_atan2_on_a_bluish_light_image():
    # a uniform light colour with negative b*: atan would read it as very dark (type VI), atan2 as very light
    from skimage import color

    lab = np.zeros((64, 64, 3))
    lab[..., 0], lab[..., 1], lab[..., 2] = 70.0, 5.0, -6.0
    img = np.clip(np.rint(color.lab2rgb(lab) * 255), 0, 255).astype(np.uint8)
    r = estimate(img, SkinToneConfig(method="bevan"))
    L, b = rgb_to_lab(img[:1, :1])[0, 0, [0, 2]]
    assert r.ita_deg == pytest.approx(lab_to_ita(L, b), abs=0.05)
    assert r.ita_deg > 90
    assert math.degrees(math.atan((L - 50) / b)) < -60  # what the published code computed


def test_bad_images_get_reasons_not_sentinels():
    cfg = SkinToneConfig()
    grey = np.repeat(np.random.default_rng(0).integers(30, 220, (96, 96, 1), dtype=np.uint8), 3, 2)
    for method in ("mask", "kmeans", "patch-median", "bevan"):
        r = estimate(grey, SkinToneConfig(method=method))
        assert r.ita_deg is None and "grayscale" in r.error
        r = estimate(np.zeros((96, 96, 3), np.uint8), SkinToneConfig(method=method))
        assert r.ita_deg is None and "black" in r.error
    # a skin image inside a huge black border: only the skin is measured
    spec = dataclasses.replace(synthetic.make_specs(1, 64, seed=2)[0], hair_dark=False, hair_light=False, ink=False,
                               ruler=False, fov=False)
    img, _ = synthetic.render_sample(spec)
    framed = np.zeros((256, 256, 3), np.uint8)
    framed[96:160, 96:160] = img
    r = estimate(framed, cfg)
    assert r.error is None and abs(r.ita_deg - spec.ita_true) < 2.0
    from skimage import color

    # a magenta colour cast (b* < 0 on the skin, as in some HAM10000 images): named, not "too little skin"
    lab = np.zeros((96, 96, 3))
    lab[...] = (66.0, 19.0, -8.0)
    lab[30:60, 30:60] = (40.0, 20.0, 15.0)
    img = np.clip(np.rint(color.lab2rgb(lab + np.random.default_rng(1).normal(0, 0.6, lab.shape)) * 255), 0, 255)
    for method in ("mask", "kmeans"):
        r = estimate(img.astype(np.uint8), SkinToneConfig(method=method))
        assert r.ita_deg is None and r.error.startswith("colour cast"), (method, r)
    # almost no visible skin (97% covered by a blue-violet marker / sticker colour): an explicit reason
    lab = np.zeros((128, 128, 3))
    lab[...] = (40.0, 30.0, -40.0)
    lab[:20, :20] = (66.0, 9.0, 15.0)
    noise = np.random.default_rng(0).normal(0, 0.6, lab.shape)
    img = np.clip(np.rint(color.lab2rgb(lab + noise) * 255), 0, 255).astype(np.uint8)
    for method in ("mask", "kmeans"):
        r = estimate(img, SkinToneConfig(method=method))
        assert r.ita_deg is None and "too little visible skin" in r.error, (method, r)


def test_label_image_decode_and_grey_files(tmp_path):
    cfg = SkinToneConfig()
    bad = tmp_path / "trunc.jpg"
    _ok, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 150, np.uint8))
    bad.write_bytes(buf.tobytes()[:200])
    assert "decode failed" in label_image(str(bad), cfg)["skintone_error"]
    g = tmp_path / "g.png"
    cv2.imwrite(str(g), np.full((64, 64), 128, np.uint8))
    assert "grayscale" in label_image(str(g), cfg)["skintone_error"]
    assert "no image" in label_image(None, cfg)["skintone_error"]


@pytest.mark.parametrize("method", ["mask", "bevan"])
def test_label_batch_equals_one_image_at_a_time(tmp_path, monkeypatch, method):
    """Decoding a batch before measuring it changes nothing: every record (errors included, in any position)
    equals label_image's; a small byte budget flushes the batch early with the same records."""
    import lesionkit.skintone.run as R
    from lesionkit.synthetic import make_specs, render_sample

    cfg = SkinToneConfig(method=method)
    paths: list[str | None] = []
    for i, spec in enumerate(make_specs(5, 160, 3)):
        p = tmp_path / f"s{i}.png"
        cv2.imwrite(str(p), cv2.cvtColor(render_sample(spec)[0], cv2.COLOR_RGB2BGR))
        paths.append(str(p))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    paths[2:2] = [str(bad), None]
    items = list(enumerate(paths))
    single = {i: label_image(p, cfg) for i, p in items}
    assert dict(R.label_batch(items, cfg)) == single
    monkeypatch.setattr(R, "BATCH_BYTES", 1)  # every decoded image flushes the batch
    assert dict(R.label_batch(items, cfg)) == single
    assert sum(r.get("skintone_error") is not None for r in single.values()) >= 2  # the bad file and the <NA> row
    assert sum(r.get("ita_deg") is not None for r in single.values()) >= 4


# ----------------------------------------------------------------------------------------------- agreement


def test_agreement_metrics_vs_references():
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    truth = rng.integers(1, 7, 300)
    pred = np.clip(truth + rng.choice([-2, -1, 0, 0, 0, 1], 300), 1, 6)
    C = confusion(truth, pred)
    assert C.sum() == 300 and C[0].sum() == (truth == 1).sum()
    assert linear_weighted_kappa(C) == pytest.approx(cohen_kappa_score(truth, pred, weights="linear"))
    ita = 70 - 12 * truth + rng.normal(0, 6, 300)
    assert spearman(ita, truth) == pytest.approx(spearmanr(ita, truth).statistic)
    t = truth.astype(float)
    p = pred.astype(float)
    t[:5] = np.nan  # unknown human type: not scored
    p[5:9] = np.nan  # no estimate: lost coverage, counted
    m = agreement_metrics(t, p, ita)
    assert m["n_with_truth"] == 295 and m["n_used"] == 291 and m["n_no_estimate"] == 4
    used = np.isfinite(t) & np.isfinite(p)
    assert m["exact"] == pytest.approx(np.mean(truth[used] == pred[used]))
    assert m["within1"] == pytest.approx(np.mean(np.abs(truth[used] - pred[used]) <= 1))
    for ty in range(1, 7):
        s = used & (truth == ty)
        assert m["per_type"][str(ty)]["exact"] == pytest.approx(np.mean(pred[s] == ty))
    g = lambda x: (x - 1) // 2
    assert m["coarse"]["exact"] == pytest.approx(np.mean(g(truth[used]) == g(pred[used])))
    assert m["spearman_ita_vs_truth"] < -0.8
    json.dumps(m, allow_nan=False)
    # a hand-checked tiny case
    h = agreement_metrics(np.array([1, 1, 3, 6]), np.array([1, 2, 3, 4]))
    assert h["exact"] == 0.5 and h["within1"] == 0.75 and h["per_type"]["6"]["within1"] == 0.0
    assert h["per_type"]["2"]["exact"] is None


# ----------------------------------------------------------------------------------------------- stages / CLI


@pytest.fixture(scope="module")
def synth_manifest(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("st") / "synth"
    return synthetic.generate(out, n=24, size=96, seed=4).path


def test_cli_label_and_agreement(synth_manifest, runner, tmp_path):
    before = read_manifest(synth_manifest).df.copy()
    out = tmp_path / "st.parquet"
    r = invoke(runner, "label-skintone", synth_manifest, "--out", out, "--plot", tmp_path / "dist.png")
    assert r.exit_code == 0, r.output
    m = read_manifest(out)
    df = m.df
    for col, dtype in (("ita_deg", "Float32"), ("fitzpatrick_est", "Int8"), ("skintone_error", "string"),
                       ("skin_pixels", "Int32")):
        assert str(df[col].dtype) == dtype
    assert str(df["ita_category"].dtype) == "category"
    assert df["skintone_error"].isna().all() and df["ita_deg"].notna().all()
    assert (df["fitzpatrick"] == before["fitzpatrick"]).all()  # human / ground-truth column untouched
    assert np.median(np.abs(df["ita_deg"].astype(float) - df["ita_true"].astype(float))) < 1.0
    prov = m.provenance[-1]
    assert prov["stage"] == "label-skintone" and prov["config"]["method"] == "mask"
    assert prov["config"]["image_col"] == "image_path" and prov["config"]["thresholds"]["name"] == "kinyanjui"
    pd.testing.assert_frame_equal(read_manifest(synth_manifest).df, before)  # input never modified
    assert cv2.imread(str(tmp_path / "dist.png")) is not None
    # refuses to overwrite; refuses to write onto its input
    assert invoke(runner, "label-skintone", synth_manifest, "--out", out).exit_code == 1
    assert invoke(runner, "label-skintone", synth_manifest, "--out", synth_manifest, "--overwrite").exit_code == 2
    assert invoke(runner, "label-skintone", synth_manifest, "--out", tmp_path / "x.parquet", "--method", "nope").exit_code == 2
    r = invoke(runner, "label-skintone", synth_manifest, "--out", tmp_path / "x.parquet", "--image-col", "nope_path")
    assert r.exit_code == 1 and "lesion_mask_path" in r.output
    # agreement against the synthetic ground truth
    r = invoke(runner, "skintone-agreement", out, "--truth", "fitzpatrick", "--truth-ita", "ita_true", "--out",
               tmp_path / "agree")
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "agree" / "agreement.json").read_text())
    assert res["n_used"] == 24 and res["exact"] >= 22 / 24 and res["median_abs_delta_ita"] < 1.0
    for name in ("ita_by_type.png", "estimated_distribution.png"):
        img = cv2.imread(str(tmp_path / "agree" / name))
        assert img is not None and img.shape[0] > 300
    assert (tmp_path / "agree" / "confusion.csv").read_text().startswith("truth\\estimated,1,2,3,4,5,6")
    # an unlabelled manifest cannot be scored: the error says what to run
    r = invoke(runner, "skintone-agreement", synth_manifest)
    assert r.exit_code == 1 and "label-skintone" in r.output


def test_run_completes_on_bad_inputs_and_workers_agree(synth_manifest, tmp_path):
    m = read_manifest(synth_manifest)
    d = tmp_path / "bad"
    d.mkdir()
    cv2.imwrite(str(d / "grey.png"), np.full((64, 64), 100, np.uint8))
    cv2.imwrite(str(d / "black.png"), np.zeros((64, 64, 3), np.uint8))
    (d / "text.jpg").write_text("not an image")
    extra = pd.DataFrame({"sample_id": ["grey", "black", "text", "nopath"], "source": "t",
                          "image_path": [str(d / "grey.png"), str(d / "black.png"), str(d / "text.jpg"), None],
                          "label": 0})
    df = pd.concat([m.df.head(6), coerce(extra)], ignore_index=True)
    src = write_manifest(Manifest(coerce(df), m.classes), tmp_path / "mixed.parquet")
    r1 = run_label_skintone(src, tmp_path / "a.parquet", SkinToneConfig(method="kmeans"), thresholds="del-bino")
    r2 = run_label_skintone(src, tmp_path / "b.parquet", SkinToneConfig(method="kmeans"), thresholds="del-bino",
                            workers=2)
    a, b = r1.manifest.df, r2.manifest.df
    pd.testing.assert_series_equal(a["ita_deg"], b["ita_deg"])
    err = a.set_index("sample_id")["skintone_error"]
    assert "grayscale" in err["grey"] and "black" in err["black"] and "decode failed" in err["text"] and "no image" in err["nopath"]
    assert a["skintone_error"].head(6).isna().all()
    assert a.set_index("sample_id")["fitzpatrick_est"][["grey", "black", "text", "nopath"]].isna().all()
    assert set(a["ita_category"].dropna()) <= set(PRESETS["del-bino"].categories)


@pytest.mark.realdata
def test_pad_ufes_agreement_runs(real_data, tmp_path):
    from lesionkit.manifest.build import build_manifest
    from lesionkit.manifest.importers import ImportOptions
    from lesionkit.skintone.run import run_skintone_agreement

    src = tmp_path / "pad.parquet"
    build_manifest(ImportOptions(format="pad_ufes20", source=real_data / "pad_ufes20" / "metadata_rows.csv", out=src,
                                 allow_missing_images=True))
    res = run_label_skintone(src, tmp_path / "pad_st.parquet")
    df = res.manifest.df
    has_img = df["image_path"].notna()
    assert df.loc[has_img, "ita_deg"].notna().all() and df.loc[~has_img, "skintone_error"].notna().all()
    mt = run_skintone_agreement(tmp_path / "pad_st.parquet", truth="fitzpatrick")
    assert mt["n_used"] == 4


def test_too_little_skin_at_64_px_is_measured_again_at_128():
    """Very dark skin (ITA -42°) around a large lesion under dense dark and light hair and ink: at the default
    64 px working size the skin left between them is below the minimum, at 128 px it is not; estimate() retries
    once at twice the working size and says so in ``notes``."""
    from lesionkit.skintone.strategies import mask_method, to_work

    sp = synthetic.make_specs(200, 128, 9)[135]
    frac = float(np.random.default_rng([9, 135, 5]).uniform(0.3, 0.55))
    sp = dataclasses.replace(sp, lesion=dataclasses.replace(sp.lesion, frac=frac), hair_dark=True, hair_light=True,
                             ink=True, fov=False, ruler=False)
    img = synthetic.render_sample(sp)[0]
    cfg = SkinToneConfig(method="mask", work_side=64)
    first = mask_method(to_work(img, 64), cfg)
    assert first.ita_deg is None and first.error.startswith("too little visible skin")
    res = estimate(img, cfg)
    assert res.error is None and abs(res.ita_deg - sp.ita_true) < 2.0
    assert any("measured at 128 px" in n for n in res.notes)
    # no larger image to retry on: the reason stands
    small = to_work(img, 64)
    assert estimate(small, cfg).error.startswith("too little visible skin")


def test_iqr_equals_numpy_percentiles():
    from lesionkit.skintone.strategies import _iqr

    rng = np.random.default_rng(7)
    for n in (2, 3, 10, 101, 4000):
        x = rng.normal(0, 20, n).astype(np.float64)
        if n > 10:
            x[::5] = np.nan  # NaNs are dropped
        f = x[np.isfinite(x)]
        q1, q3 = np.percentile(f, [25, 75])
        assert _iqr(x) == pytest.approx(q3 - q1, abs=1e-12)
    assert _iqr(np.array([1.0, np.nan])) is None


@pytest.mark.parametrize("shape", [(500, 750), (501, 751), (450, 600), (150, 200), (3000, 4000), (64, 900), (65, 64)])
def test_to_work_is_a_box_average_of_the_right_size(shape):
    """Halvings then one INTER_AREA step: the target size, and within a few levels of a direct INTER_AREA."""
    import cv2

    from lesionkit.skintone.strategies import to_work

    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) % 256)], -1).astype(np.uint8)
    out = to_work(img, 64)
    s = 64 / min(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    assert out.shape == (size[1], size[0], 3)
    ref = cv2.resize(img, size, interpolation=cv2.INTER_AREA).astype(np.float64)
    smooth = out[..., :2].astype(np.float64) - ref[..., :2]  # the two ramps (the third channel wraps at 255)
    assert np.abs(smooth).mean() < 1.5
    assert to_work(img[:50, :60], 64).shape == (50, 60, 3)  # smaller images are never upscaled
