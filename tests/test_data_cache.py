"""Decoded-image cache: contents = direct decode, reuse without decoding, corrupt files, interrupted builds."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lesionkit.data import cache as cache_mod
from lesionkit.data.cache import (
    ImageCache,
    build_cache,
    cache_key,
    fit_square,
    open_cache,
)
from lesionkit.errors import InputError
from lesionkit.prep.decode import decode_image
from lesionkit.synthetic import generate


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> list[str]:
    """Ten synthetic 64 px PNGs, plus a 90x60 JPEG and a 40x50 PNG (non-square, one smaller than the cache)."""
    root = tmp_path_factory.mktemp("synth")
    m = generate(root / "ds", n=10, size=64, seed=3)
    paths = m.image_paths().tolist()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:60, 0:90]
    wide = np.stack([xx * 2.5, yy * 4, (xx + yy) * 1.5], -1).clip(0, 255).astype(np.uint8)
    Image.fromarray(wide).save(root / "wide.jpg", quality=92)
    Image.fromarray(rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)).save(root / "small.png")
    return [*paths, str(root / "wide.jpg"), str(root / "small.png")]


def test_cache_equals_direct_decode_at_native_size(synth, tmp_path):
    paths = synth[:10]
    c = build_cache(paths, 64, tmp_path, "k64")
    assert not c.reused and len(c) == 10 and c.size == 64 and c.path == tmp_path / "k64.u8"
    for i, p in enumerate(paths):
        img, _ = decode_image(p)
        got = c[i]
        assert got.dtype == np.uint8 and got.shape == (64, 64, 3)
        assert np.array_equal(got, img)  # 64 px images at 64 px: bit-exact
    rec = json.loads((tmp_path / "k64.json").read_text())
    assert rec["done"] is True and rec["shape"] == [10, 64, 64, 3]
    assert (tmp_path / "k64.u8").stat().st_size == 10 * 64 * 64 * 3


def test_cache_resizes_central_square(synth, tmp_path):
    c = build_cache(synth, 48, tmp_path, "k48")
    for i, p in enumerate(synth):
        img, _ = decode_image(p)
        h, w = img.shape[:2]
        s = min(h, w)
        sq = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        interp = cv2.INTER_AREA if s > 48 else cv2.INTER_CUBIC
        ref = cv2.resize(np.ascontiguousarray(sq), (48, 48), interpolation=interp)
        assert np.array_equal(c[i], ref), p
    # the wide JPEG: its central 60x60 square starts at x = 15 (a gradient in x, so an offset would show)
    img, _ = decode_image(synth[10])
    assert np.array_equal(fit_square(img, 60), img[:, 15:75])


def test_second_build_reuses_without_decoding(synth, tmp_path, monkeypatch):
    paths = synth[:6]
    c1 = build_cache(paths, 32, tmp_path, "k")
    mtime = (tmp_path / "k.u8").stat().st_mtime_ns
    data = np.array(c1.array)

    def boom(*a, **k):
        raise AssertionError("decode_image called although the cache is valid")

    monkeypatch.setattr("lesionkit.prep.decode.decode_image", boom)
    c2 = build_cache(paths, 32, tmp_path, "k")
    assert c2.reused and (tmp_path / "k.u8").stat().st_mtime_ns == mtime
    assert np.array_equal(np.array(c2.array), data)
    c3 = open_cache(tmp_path, "k")
    assert len(c3) == 6 and np.array_equal(c3[5], data[5])


def test_changed_image_or_path_list_triggers_rebuild(synth, tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    paths = [str(shutil.copy(p, src / Path(p).name)) for p in synth[:4]]
    root = tmp_path / "cache"
    build_cache(paths, 32, root, "k")
    # replace one image's content (different size on disk and mtime)
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(paths[2])
    os.utime(paths[2], ns=(1, 1))
    c = build_cache(paths, 32, root, "k")
    assert not c.reused and (c[2] == 200).all()
    # same key but a different path list → rebuild, not a silent mix-up
    c = build_cache(paths[::-1], 32, root, "k")
    assert not c.reused and (c[1] == 200).all()


def test_corrupt_images_raise_input_error_naming_them(synth, tmp_path):
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    data = Path(synth[10]).read_bytes()
    trunc = bad_dir / "truncated.jpg"
    trunc.write_bytes(data[: len(data) // 2])
    junk = bad_dir / "junk.png"
    junk.write_bytes(b"this is not an image at all")
    root = tmp_path / "cache"
    with pytest.raises(InputError) as e:
        build_cache([synth[0], str(trunc), synth[1], str(junk)], 32, root, "bad")
    text = str(e.value)
    assert "2 of 4 images" in text and "truncated.jpg" in text and "junk.png" in text and "truncated image" in text
    assert sorted(os.listdir(root)) == ["bad.lock"]  # no data, no record, no temporary file left


def test_interrupted_builds_are_not_mistaken_for_a_cache(synth, tmp_path):
    paths = synth[:5]
    # (1) a killed build: a partial temporary file and a full-size data file without a record
    (tmp_path / ".k.u8.12345.deadbeef.tmp").write_bytes(b"\0" * 1000)
    (tmp_path / "k.u8").write_bytes(b"\0" * (5 * 32 * 32 * 3))
    c = build_cache(paths, 32, tmp_path, "k")
    assert not c.reused and c[0].any()  # decoded, not the zeros
    assert not list(tmp_path.glob(".k.u8.*.tmp"))  # stale temporary removed
    good = np.array(c.array)
    # (2) a record that never reached done (crash between data and record)
    rec = json.loads((tmp_path / "k.json").read_text())
    rec["done"] = False
    (tmp_path / "k.json").write_text(json.dumps(rec))
    with open(tmp_path / "k.u8", "r+b") as f:
        f.write(b"\0" * 4096)
    c = build_cache(paths, 32, tmp_path, "k")
    assert not c.reused and np.array_equal(np.array(c.array), good)
    # (3) a truncated data file with a 'done' record
    with open(tmp_path / "k.u8", "r+b") as f:
        f.truncate(100)
    c = build_cache(paths, 32, tmp_path, "k")
    assert not c.reused and np.array_equal(np.array(c.array), good)


def test_workers_give_identical_bytes(synth, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "CHUNK", 3)  # several chunks over a process pool
    a = build_cache(synth, 40, tmp_path / "a", "k", workers=0)
    b = build_cache(synth, 40, tmp_path / "b", "k", workers=2)
    assert np.array_equal(np.array(a.array), np.array(b.array))


def test_cache_is_picklable_and_reopens_lazily(synth, tmp_path):
    c = build_cache(synth[:3], 32, tmp_path, "k")
    _ = c[0]
    assert c._mm is not None
    c2 = pickle.loads(pickle.dumps(c))
    assert c2._mm is None and np.array_equal(c2[2], c[2]) and isinstance(c2, ImageCache)
    with pytest.raises(IndexError):
        c[3]


def test_cache_key():
    k = cache_key("f" * 64, "image_path", 224, ["a", "b"])
    assert k == cache_key("f" * 64, "image_path", 224, ["a", "b"])
    assert k.startswith("image_path-224px-2-") and "/" not in k
    others = {cache_key("e" * 64, "image_path", 224, ["a", "b"]), cache_key("f" * 64, "prep_path", 224, ["a", "b"]),
              cache_key("f" * 64, "image_path", 256, ["a", "b"]), cache_key("f" * 64, "image_path", 224, ["b", "a"]),
              cache_key("f" * 64, "image_path", 224, ["ab"])}
    assert k not in others and len(others) == 5
    assert "/" not in cache_key("x", "a/b c", 8, [])


def test_missing_paths_are_refused_up_front(tmp_path):
    with pytest.raises(InputError, match="no image path"):
        build_cache(["/x.png", None], 32, tmp_path, "k")
