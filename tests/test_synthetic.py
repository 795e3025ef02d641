"""The synthetic generator's ground truth: skin tone (ITA), masks, class signal, metadata, determinism, atomic output."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image
from skimage.color import rgb2lab
from skimage.measure import label as connected, regionprops

from lesionkit import synthetic
from lesionkit.errors import InputError, OutputExistsError, UsageError
from lesionkit.manifest.io import read_manifest
from lesionkit.manifest.schema import COLUMNS, dtype_matches

N = 160
SIZE = 128
MASKS = ("lesion", "hair", "ink", "ruler", "fov")
GT_DTYPES = {
    "ita_true": "Float32", "skin_L": "Float32", "skin_a": "Float32", "skin_b": "Float32", "lesion_frac": "Float32",
    "hair_dark": "boolean", "hair_light": "boolean", "ink": "boolean", "ruler": "boolean", "fov": "boolean",
}


def ita(L, b):
    """Written out here (not imported) so the test does not trust the code under test."""
    return np.degrees(np.arctan2(np.asarray(L, float) - 50.0, np.asarray(b, float)))


def kinyanjui(ita_deg: float) -> int:
    return int(np.select([ita_deg > 55, ita_deg > 41, ita_deg > 28, ita_deg > 19, ita_deg > 10], [1, 2, 3, 4, 5], 6))


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def load_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L", f"{path} is not single-channel"
        m = np.asarray(im)
    assert set(np.unique(m)) <= {0, 255}, f"{path} is not 0/255"
    return m > 0


def row_masks(root: Path, row) -> dict[str, np.ndarray]:
    return {k: load_mask(root / row[f"{k}_mask_path"]) for k in MASKS}


def skin_of(ms: dict[str, np.ndarray]) -> np.ndarray:
    return ms["fov"] & ~ms["lesion"] & ~ms["hair"] & ~ms["ink"] & ~ms["ruler"]


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("synth") / "ds"
    m = synthetic.generate(out, n=N, size=SIZE, seed=0, workers=2)
    assert m.path == out / "manifest.parquet"
    return out, read_manifest(out / "manifest.parquet").df


# ------------------------------------------------------------------------------------------ skin tone


def test_ita_matches_ground_truth_from_light_to_very_dark(synth):
    root, df = synth
    # 5 images per Fitzpatrick type, spread over each type's ITA range (type 6 reaches very dark skin)
    parts = []
    for fitz, g in df.groupby(df["fitzpatrick"].astype(int)):
        g = g.sort_values("ita_true")
        rows = np.linspace(0, len(g) - 1, 5).round().astype(int)
        if fitz == 6:  # the three darkest images, then two spread over the rest of type 6
            rows = np.r_[0, 1, 2, np.linspace(3, len(g) - 1, 2).round().astype(int)]
        parts.append(g.iloc[rows])
    pick = pd.concat(parts)
    assert len(pick) == 30 and pick["sample_id"].is_unique and set(pick["fitzpatrick"].astype(int)) == {1, 2, 3, 4, 5, 6}
    assert pick["ita_true"].max() > 55 and (pick["ita_true"] < 10).sum() >= 5 and (pick["ita_true"] < -30).sum() >= 3
    for _, r in pick.iterrows():
        lab = rgb2lab(load_rgb(root / r["image_path"]))
        skin = skin_of(row_masks(root, r))
        assert skin.sum() > 500, r["sample_id"]
        px = lab[skin]
        truth = float(r["ita_true"])
        # the ground truth is internally consistent ...
        assert abs(ita(r["skin_L"], r["skin_b"]) - truth) < 1e-3
        # ... and is what a measurement of the image gives: mean colour, mean and median per-pixel ITA
        assert abs(px[:, 0].mean() - r["skin_L"]) < 0.1 and abs(px[:, 2].mean() - r["skin_b"]) < 0.1, r["sample_id"]
        assert abs(ita(px[:, 0].mean(), px[:, 2].mean()) - truth) < 0.5, r["sample_id"]
        per_pixel = ita(px[:, 0], px[:, 2])
        assert abs(per_pixel.mean() - truth) < 0.5, r["sample_id"]
        assert abs(np.median(per_pixel) - truth) < 0.5, r["sample_id"]
        # the texture is real (not a flat colour that would make the check trivial)
        assert px[:, 0].std() > 0.5


def test_ita_needs_the_masks(synth):
    """Negative control: measured over lesion + artefacts too, ITA is off -- so the check above can fail."""
    root, df = synth
    errors = []
    for _, r in df.head(40).iterrows():
        lab = rgb2lab(load_rgb(root / r["image_path"]))
        px = lab[row_masks(root, r)["fov"]]
        errors.append(abs(ita(px[:, 0].mean(), px[:, 2].mean()) - float(r["ita_true"])))
    assert np.median(errors) > 1.0


def test_fitzpatrick_is_derived_from_true_ita(synth):
    _, df = synth
    assert (df["fitzpatrick"].astype(int) == df["ita_true"].map(lambda v: kinyanjui(float(v)))).all()
    assert synthetic.fitzpatrick_from_ita(55.0) == 2 and synthetic.fitzpatrick_from_ita(55.01) == 1
    assert synthetic.fitzpatrick_from_ita(10.0) == 6 and synthetic.fitzpatrick_from_ita(-45) == 6
    assert df["skin_L"].between(24.9, 82.1).all() and df["skin_b"].between(8, 30).all() and df["skin_a"].between(4, 20).all()


def test_skin_tone_range_of_the_plan():
    specs = synthetic.make_specs(600, 64, seed=11)
    itas = np.array([s.ita_true for s in specs])
    assert itas.max() > 65 and itas.min() < -45
    counts = np.bincount([s.fitzpatrick for s in specs], minlength=7)[1:]
    assert counts.min() > 0.1 * len(specs), counts  # every type well represented


# ------------------------------------------------------------------------------------------ masks


def test_masks_are_consistent_with_the_manifest(synth):
    root, df = synth
    for _, r in df.iterrows():
        img = load_rgb(root / r["image_path"])
        assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
        ms = row_masks(root, r)
        assert all(m.shape == (SIZE, SIZE) for m in ms.values())
        assert ms["lesion"].any()
        assert abs(ms["lesion"].mean() - float(r["lesion_frac"])) < 1e-6
        assert ms["hair"].any() == bool(r["hair_dark"] or r["hair_light"]), r["sample_id"]
        assert ms["ink"].any() == bool(r["ink"])
        assert ms["ruler"].any() == bool(r["ruler"])
        if r["fov"]:
            assert not ms["fov"].all() and not ms["fov"][0, 0] and not ms["fov"][-1, -1]
            assert img[0, 0].max() < 40 and img[-1, -1].max() < 40  # dark corners
        else:
            assert ms["fov"].all()
    for flag in ("hair_dark", "hair_light", "ink", "ruler", "fov"):
        assert 0.05 < df[flag].mean() < 0.8, flag  # each artefact present in a subset


def test_hair_contrast_dark_and_light(synth):
    root, df = synth
    seen = {"dark": 0, "light": 0}
    for _, r in df.iterrows():
        if r["hair_dark"] == r["hair_light"]:
            continue
        lab = rgb2lab(load_rgb(root / r["image_path"]))
        ms = row_masks(root, r)
        hair = ms["hair"] & ms["fov"] & ~ms["lesion"] & ~ms["ink"] & ~ms["ruler"]
        if hair.sum() < 10:
            continue
        diff = lab[..., 0][hair].mean() - lab[..., 0][skin_of(ms)].mean()
        if r["hair_dark"]:
            assert diff < -3, (r["sample_id"], diff)
            seen["dark"] += 1
        else:
            assert diff > 2, (r["sample_id"], diff)
            seen["light"] += 1
    assert seen["dark"] >= 10 and seen["light"] >= 3, seen


def test_render_sample_masks_split_hair_by_kind():
    spec = next(s for s in synthetic.make_specs(80, 96, seed=5) if s.hair_dark and s.hair_light)
    img, ms = synthetic.render_sample(spec)
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8
    assert ms["hair_dark"].any() and ms["hair_light"].any()
    assert np.array_equal(ms["hair"], ms["hair_dark"] | ms["hair_light"])


# ------------------------------------------------------------------------------------------ classes


def test_malignant_lesions_are_more_irregular_and_more_colourful(synth):
    root, df = synth
    stats = []
    for _, r in df.iterrows():
        ms = row_masks(root, r)
        region = max(regionprops(connected(ms["lesion"])), key=lambda p: p.area)
        compact = 4 * np.pi * region.area / region.perimeter**2
        inner = ms["lesion"].copy()
        for _ in range(2):  # erode twice (skip the blended border)
            inner[1:-1, 1:-1] &= inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:]
        inner &= ~ms["hair"] & ~ms["ink"] & ~ms["ruler"]
        lab = rgb2lab(load_rgb(root / r["image_path"]))[inner]
        colour_sd = float(np.sqrt(lab.var(axis=0).sum())) if len(lab) > 10 else np.nan
        stats.append((int(r["malignant"]), region.solidity, compact, colour_sd, float(r["lesion_frac"])))
    s = pd.DataFrame(stats, columns=["mal", "solidity", "compact", "colour_sd", "frac"])
    ben, mal = s[s.mal == 0], s[s.mal == 1]
    assert mal.solidity.mean() < ben.solidity.mean() - 0.01
    assert mal.compact.mean() < ben.compact.mean() - 0.05
    assert mal.colour_sd.mean() > 2 * ben.colour_sd.mean()

    def auc(pos: pd.Series, neg: pd.Series) -> float:
        p, n = pos.to_numpy()[:, None], neg.to_numpy()[None, :]
        return float((p > n).mean() + 0.5 * (p == n).mean())

    # size alone is a weak cue (overlapping distributions); shape is a strong one
    assert 0.45 < auc(mal.frac, ben.frac) < 0.8
    assert auc(-mal.solidity, -ben.solidity) > 0.8


def test_classes_balanced_and_labels_consistent(synth):
    _, df = synth
    assert 0.25 < df["malignant"].mean() < 0.55
    assert (df["label"].astype(int) == df["malignant"].astype(int)).all()
    assert set(df.loc[df["malignant"] == 1, "diagnosis"]) == {"melanoma"}
    assert set(df.loc[df["malignant"] == 0, "diagnosis"]) == {"nevus"}
    assert (df.loc[df["malignant"] == 0, "lesion_colours"] <= 2).all()
    assert (df.loc[df["malignant"] == 1, "lesion_colours"] >= 2).all()


def test_confounders_are_independent_of_the_class():
    specs = synthetic.make_specs(4000, 64, seed=3)
    mal = np.array([s.malignant for s in specs])
    for flag in ("hair_dark", "hair_light", "ink", "ruler", "fov"):
        v = np.array([getattr(s, flag) for s in specs])
        assert abs(v[mal].mean() - v[~mal].mean()) < 0.05, flag


# ------------------------------------------------------------------------------------------ metadata / manifest


def test_patients_and_lesions(synth):
    _, df = synth
    per_patient = df.groupby("patient_id").size()
    assert per_patient.max() >= 3 and per_patient.min() >= 1 and per_patient.max() <= 4
    assert (per_patient >= 2).sum() >= 10
    assert (df.groupby("lesion_id")["patient_id"].nunique() == 1).all()  # a lesion belongs to one patient
    assert (df.groupby("lesion_id")["malignant"].nunique() == 1).all()  # and has one diagnosis
    assert (df.groupby("lesion_id").size() >= 2).any()
    assert (df.groupby("patient_id")["lesion_id"].nunique() == 2).any()
    # images of one patient share skin tone (up to small per-image variation), sex
    assert df.groupby("patient_id")["ita_true"].agg(lambda s: s.max() - s.min()).max() < 8
    assert (df.groupby("patient_id")["sex"].nunique() == 1).all()
    assert df["age_approx"].between(15, 90).all() and df["anatom_site"].notna().all()


def test_manifest_follows_the_contract(synth):
    root, df = synth
    m = read_manifest(root / "manifest.parquet")
    assert m.classes == ["benign", "malignant"]
    for name, col in COLUMNS.items():
        assert dtype_matches(df[name], col.dtype), (name, df[name].dtype, col.dtype)
    for name, dtype in GT_DTYPES.items():
        assert str(df[name].dtype) == dtype, (name, df[name].dtype)
    on_disk = pq.read_table(root / "manifest.parquet")
    for k in MASKS:
        c = df[f"{k}_mask_path"]
        assert isinstance(c.dtype, pd.StringDtype)
        assert not any(p.startswith("/") for p in on_disk.column(f"{k}_mask_path").to_pylist())  # stored relative
        assert c.map(lambda p: (root / p).is_file()).all()
    assert all(p.startswith("images/") for p in on_disk.column("image_path").to_pylist())
    assert m.image_paths().map(lambda p: Path(p).is_file()).all()
    assert df["split"].isna().all() and (df["source"] == "synthetic").all()
    assert df["sample_id"].is_unique and (df["height"] == SIZE).all() and (df["width"] == SIZE).all()
    prov = m.provenance[-1]
    assert prov["stage"] == "synth" and prov["config"]["n"] == N and prov["config"]["seed"] == 0
    assert prov["config"]["size"] == SIZE


# ------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_bytes_any_workers_different_seed_differs(tmp_path):
    a = synthetic.generate(tmp_path / "a", n=10, size=64, seed=7, workers=1)
    b = synthetic.generate(tmp_path / "b", n=10, size=64, seed=7, workers=2)
    c = synthetic.generate(tmp_path / "c", n=10, size=64, seed=8, workers=1)
    da, db, dc = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b"), tree_digest(tmp_path / "c")
    assert len(da) == 10 * 6 and da == db
    cols = [c for c in a.df.columns if c.endswith("_path")]  # absolute in memory: a/... vs b/...
    pd.testing.assert_frame_equal(a.df.drop(columns=cols), b.df.drop(columns=cols))
    for col in cols:
        assert [os.path.relpath(p, tmp_path / "a") for p in a.df[col]] == [os.path.relpath(p, tmp_path / "b") for p in b.df[col]]
    assert set(da.values()).isdisjoint(v for k, v in dc.items() if k.startswith("images/"))
    assert not a.df["ita_true"].equals(c.df["ita_true"])


def test_render_is_pure_and_plan_prefix_stable():
    specs = synthetic.make_specs(25, 64, seed=2)
    assert synthetic.make_specs(10, 64, seed=2) == specs[:10]
    i1, m1 = synthetic.render_sample(specs[7])
    synthetic.render_sample(specs[3])  # no hidden state between calls
    i2, m2 = synthetic.render_sample(specs[7])
    assert np.array_equal(i1, i2) and all(np.array_equal(m1[k], m2[k]) for k in m1)


def test_larger_size_keeps_ground_truth():
    spec = [s for s in synthetic.make_specs(30, 256, seed=4) if s.ita_true < 10][0]
    img, ms = synthetic.render_sample(spec)
    assert img.shape == (256, 256, 3)
    px = rgb2lab(img)[ms["fov"] & ~ms["lesion"] & ~ms["hair"] & ~ms["ink"] & ~ms["ruler"]]
    assert abs(ita(px[:, 0].mean(), px[:, 2].mean()) - spec.ita_true) < 0.5


# ------------------------------------------------------------------------------------------ output safety


def test_refuses_existing_output_and_replaces_with_overwrite(tmp_path):
    out = tmp_path / "ds"
    synthetic.generate(out, n=3, size=48, seed=1)
    before = tree_digest(out)
    with pytest.raises(OutputExistsError):
        synthetic.generate(out, n=4, size=48, seed=2)
    assert tree_digest(out) == before
    m = synthetic.generate(out, n=4, size=48, seed=2, overwrite=True)
    assert len(m.df) == 4 and len(tree_digest(out)) == 4 * 6
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temp or .old folders left


def test_overwrite_never_replaces_a_foreign_folder(tmp_path):
    out = tmp_path / "mydata"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError):
        synthetic.generate(out, n=2, size=48, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"


def test_nothing_half_written_on_failure(tmp_path, monkeypatch):
    real = synthetic.render_sample
    calls = {"n": 0}

    def flaky(spec):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("boom")
        return real(spec)

    monkeypatch.setattr(synthetic, "render_sample", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        synthetic.generate(tmp_path / "ds", n=6, size=48, workers=1)
    assert list(tmp_path.iterdir()) == []
    # and a failed --overwrite keeps the previous output intact
    monkeypatch.setattr(synthetic, "render_sample", real)
    synthetic.generate(tmp_path / "ds", n=3, size=48, seed=1)
    before = tree_digest(tmp_path / "ds")
    calls["n"] = 0
    monkeypatch.setattr(synthetic, "render_sample", flaky)
    with pytest.raises(RuntimeError):
        synthetic.generate(tmp_path / "ds", n=6, size=48, overwrite=True)
    assert tree_digest(tmp_path / "ds") == before
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_generate_validates_arguments(tmp_path):
    for kwargs in ({"n": 0}, {"n": 2, "size": 16}, {"n": 2, "workers": 0}):
        with pytest.raises(UsageError):
            synthetic.generate(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------ importer + CLI


def test_importer_re_emits_absolute_paths(synth, tmp_path):
    from lesionkit.manifest.build import build_manifest
    from lesionkit.manifest.importers import ImportOptions

    root, df = synth
    out = tmp_path / "elsewhere" / "synth.parquet"
    build_manifest(ImportOptions(format="synthetic", source=root, out=out))
    m = read_manifest(out)
    assert m.classes == ["benign", "malignant"] and len(m.df) == N
    assert list(m.df["sample_id"]) == list(df["sample_id"])
    assert m.image_paths().map(lambda p: Path(p).is_file()).all()
    for k in MASKS:
        paths = m.df[f"{k}_mask_path"]
        assert paths.map(lambda p: Path(p).is_absolute() and Path(p).is_file()).all()
        assert (paths.map(lambda p: Path(p).name) == df[f"{k}_mask_path"].map(lambda p: Path(p).name)).all()
    for c in GT_DTYPES:
        pd.testing.assert_series_equal(m.df[c], df[c], check_names=False)
    assert m.provenance[-1]["stage"] == "manifest build"


def test_importer_errors(tmp_path):
    from lesionkit.manifest.importers import ImportOptions, get

    importer = get("synthetic")
    src = tmp_path / "ds"
    synthetic.generate(src, n=3, size=48)
    next((src / "images").iterdir()).unlink()
    with pytest.raises(InputError, match="missing"):
        importer.build(ImportOptions(format="synthetic", source=src, out=tmp_path / "m.parquet"))
    res = importer.build(ImportOptions(format="synthetic", source=src, out=tmp_path / "m.parquet", allow_missing_images=True))
    assert res.df["image_path"].isna().sum() == 1
    with pytest.raises(InputError):
        importer.build(ImportOptions(format="synthetic", source=tmp_path / "nothing", out=tmp_path / "m.parquet"))


def test_manifest_build_cli_with_synthetic_format(synth, tmp_path, runner):
    from tests.conftest import invoke

    root, _ = synth
    out = tmp_path / "cli.parquet"
    res = invoke(runner, "manifest", "build", root, "--format", "synthetic", "--out", out)
    assert res.exit_code == 0, res.output
    assert len(read_manifest(out).df) == N


def _synth_app():
    import typer

    from lesionkit.cli.synth import synth

    app = typer.Typer()
    app.command("synth")(synth)
    app.command("other")(lambda: None)  # two commands so "synth" is a subcommand, as in lesionkit
    return app


def test_cli_synth(tmp_path, runner):
    from lesionkit.cli.synth import synth

    doc = synth.__doc__
    assert doc.strip().splitlines()[0].strip() and "Example: lesionkit synth --n 200 --size 128 --seed 0 --out work/synth" in doc
    app = _synth_app()
    out = tmp_path / "s"
    res = runner.invoke(app, ["synth", "--n", "4", "--size", "48", "--seed", "3", "--out", str(out), "-j", "1"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(out)
    assert len(read_manifest(out / "manifest.parquet").df) == 4
    res = runner.invoke(app, ["synth", "--n", "4", "--size", "48", "--out", str(out)])
    assert isinstance(res.exception, OutputExistsError)
    for bad in (["--n", "0"], ["--size", "16"], ["--workers", "0"]):
        res = runner.invoke(app, ["synth", *bad, "--out", str(tmp_path / "t")])
        assert isinstance(res.exception, UsageError) and res.exception.hint, bad
    res = runner.invoke(app, ["synth", "--out", str(tmp_path / "t.parquet")])
    assert isinstance(res.exception, UsageError)
    assert not (tmp_path / "t").exists()
