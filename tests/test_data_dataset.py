"""ManifestDataset items, cache vs decode equivalence, DataLoader workers (reproducible), and real HAM10000."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lesionkit.data.cache import build_cache, cache_key, fit_square
from lesionkit.data.dataset import ManifestDataset, make_loader
from lesionkit.data.meta import MetaEncoder
from lesionkit.data.samplers import EpochSampler, ShardedEvalSampler
from lesionkit.data.targets import resolve_target
from lesionkit.data.transforms import build_transform
from lesionkit.errors import InputError
from lesionkit.prep.decode import decode_image
from lesionkit.synthetic import generate
from tests.conftest import real_dataset


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("ds") / "syn", n=16, size=64, seed=1)


def test_items_from_cache_equal_items_from_decoding(synth, tmp_path):
    m = synth
    paths = m.image_paths().tolist()
    _, y = resolve_target(m, "malignant")
    enc = MetaEncoder().fit(m.df, "age,sex,site")
    meta = enc.transform(m.df)
    t = build_transform("none", 48, train=False)
    cache = build_cache(paths, 64, tmp_path, cache_key(m.fingerprint(), "image_path", 64, m.df["sample_id"].tolist()))
    a = ManifestDataset(paths, y, t, cache=cache, meta=meta, ids=m.df["sample_id"].tolist())
    b = ManifestDataset(paths, y, t, meta=meta)
    assert len(a) == len(b) == 16 and a.meta_dim == enc.dim
    for i in (0, 7, 15):
        ia, ib = a[i], b[i]
        assert set(ia) == {"image", "target", "index", "meta"}
        assert ia["image"].shape == (3, 48, 48) and ia["image"].dtype == torch.float32
        assert torch.equal(ia["image"], ib["image"])
        assert ia["target"].dtype == torch.int64 and int(ia["target"]) == int(m.df["malignant"][i])
        assert ia["index"] == i
        assert ia["meta"].dtype == torch.float32 and np.array_equal(ia["meta"].numpy(), meta[i])
    none = ManifestDataset(paths, y, t)
    assert none[0]["meta"].shape == (0,) and none.meta_dim == 0
    # without a cache, fit_size gives exactly the pixels a cache of that size holds (train --no-cache, evaluate)
    small = build_cache(paths, 40, tmp_path, cache_key(m.fingerprint(), "image_path", 40, m.df["sample_id"].tolist()))
    fitted = ManifestDataset(paths, y, t, fit_size=40)
    assert fitted.decode_min_side == 80
    for i in (0, 9):
        assert np.array_equal(fitted.load_image(i), small[i]) and fitted.load_image(i).shape == (40, 40, 3)


def test_decode_failure_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really")
    ds = ManifestDataset([str(bad)], np.array([0]), build_transform("none", 32, False), ids=["ISIC_1"])
    with pytest.raises(InputError, match="broken.jpg.*ISIC_1"):
        ds[0]


def test_length_mismatches_are_refused(synth, tmp_path):
    paths = synth.image_paths().tolist()
    t = build_transform("none", 32, False)
    with pytest.raises(InputError, match="targets"):
        ManifestDataset(paths, np.zeros(3), t)
    cache = build_cache(paths[:4], 32, tmp_path, "k4")
    with pytest.raises(InputError, match="holds 4 images"):
        ManifestDataset(paths, np.zeros(len(paths)), t, cache=cache)
    with pytest.raises(InputError, match="metadata"):
        ManifestDataset(paths, np.zeros(len(paths)), t, meta=np.zeros((3, 2)))


def _batches(loader, epoch_sampler=None, epoch=0):
    if epoch_sampler is not None:
        epoch_sampler.set_epoch(epoch)
    return [(b["index"].clone(), b["image"].clone(), b["target"].clone()) for b in loader]


def test_loader_with_workers_is_reproducible_and_matches_in_process(synth, tmp_path):
    paths = synth.image_paths().tolist()
    _, y = resolve_target(synth, "label")
    cache = build_cache(paths, 64, tmp_path, "k")
    ev = ManifestDataset(paths, y, build_transform("seeds", 40, train=False), cache=cache)
    # eval: 2 workers give exactly the in-process batches
    l0 = make_loader(ev, batch_size=5, sampler=ShardedEvalSampler(ev), workers=0)
    l2 = make_loader(ev, batch_size=5, sampler=ShardedEvalSampler(ev), workers=2)
    for (i0, x0, t0), (i2, x2, t2) in zip(_batches(l0), _batches(l2), strict=True):
        assert torch.equal(i0, i2) and torch.equal(x0, x2) and torch.equal(t0, t2)
    # train with augmentation in 2 workers: the same loader seed gives the same batches
    tr = ManifestDataset(paths, y, build_transform("seeds", 40, train=True), cache=cache)
    s = EpochSampler(y, "oversample", seed=3)
    r1 = _batches(make_loader(tr, batch_size=4, sampler=s, workers=2, seed=99), s, epoch=1)
    r2 = _batches(make_loader(tr, batch_size=4, sampler=s, workers=2, seed=99), s, epoch=1)
    r3 = _batches(make_loader(tr, batch_size=4, sampler=s, workers=2, seed=100), s, epoch=1)
    assert len(r1) == len(s) // 4 + (len(s) % 4 > 0)
    assert all(torch.equal(a[1], b[1]) and torch.equal(a[0], b[0]) for a, b in zip(r1, r2, strict=True))
    assert any(not torch.equal(a[1], b[1]) for a, b in zip(r1, r3, strict=True))  # another seed, other augmentation
    assert all(torch.equal(a[0], b[0]) for a, b in zip(r1, r3, strict=True))  # ...but the same sampler order


@pytest.mark.realdata
def test_real_ham10000_targets_meta_and_cache(tmp_path):
    from lesionkit.manifest.build import build_manifest
    from lesionkit.manifest.importers import ImportOptions
    from lesionkit.manifest.io import read_manifest

    src = real_dataset("ham10000")
    out = tmp_path / "ham.parquet"
    build_manifest(ImportOptions(format="ham10000", source=src, out=out, read_image_size=False))
    m = read_manifest(out)
    spec, y = resolve_target(m, "label")
    assert spec.classes == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert np.bincount(y).tolist() == [327, 514, 1099, 115, 1113, 6705, 142]
    spec, yb = resolve_target(m, "malignant")
    assert int(yb.sum()) == 1113 + 514 + 327 and (yb >= 0).all()
    enc = MetaEncoder().fit(m.df, "age,sex,site")
    x = enc.transform(m.df)
    assert x.shape == (10015, enc.dim) and np.isfinite(x).all()
    assert x[:, 1].sum() == m.df["age_approx"].isna().sum()  # age missing indicator
    # every row: exactly one sex feature set
    sex_cols = [i for i, n in enumerate(enc.feature_names()) if n.startswith("sex=")]
    assert (x[:, sex_cols].sum(1) == 1).all()
    paths = m.image_paths().tolist()[:40]
    c = build_cache(paths, 64, tmp_path / "cache", "ham40")
    assert Path(c.path).stat().st_size == 40 * 64 * 64 * 3
    for i in (0, 17, 39):
        img, info = decode_image(paths[i])  # 200x150 JPEG: 150 < 2 x 64, so decoded at full size
        assert img.shape == (150, 200, 3) and info.reduction == 1
        assert np.array_equal(c[i], fit_square(img, 64))
    c = build_cache(paths[:3], 32, tmp_path / "cache", "ham3")  # 150 >= 2 x 32 → DCT-scaled decode at 1/2
    for i in range(3):
        img, info = decode_image(paths[i], min_side=64)
        assert img.shape == (75, 100, 3) and info.reduction == 2
        assert np.array_equal(c[i], fit_square(img, 32))
