"""lesionkit.prep.decode: every input mode built here with Pillow / OpenCV and compared with an independent reference."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from lesionkit.prep.decode import DecodeError, decode_image, reduction_for

RED, GREEN, BLUE, WHITE = (230, 20, 20), (20, 200, 20), (20, 20, 230), (240, 240, 240)


def upright() -> np.ndarray:
    """An asymmetric 80x120 (HxW) picture: red top-left block, blue right strip, green bottom band, white rest."""
    img = np.full((80, 120, 3), WHITE, np.uint8)
    img[:30, :40] = RED
    img[:, -20:] = BLUE
    img[-20:, :-20] = GREEN
    return img


def smooth(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colourful image (JPEG round trips are close to it)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.random.default_rng(seed).uniform(0, 6, 3)
    img = np.stack([128 + 90 * np.sin(x / 37.0 + r[0]), 120 + 80 * np.cos(y / 29.0 + r[1]),
                    110 + 70 * np.sin((x + y) / 51.0 + r[2])], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg_bytes(img: np.ndarray | Image.Image, quality: int = 95, **kw) -> bytes:
    pil = img if isinstance(img, Image.Image) else Image.fromarray(img)
    b = io.BytesIO()
    pil.save(b, "JPEG", quality=quality, **kw)
    return b.getvalue()


def png_bytes(pil: Image.Image, **kw) -> bytes:
    b = io.BytesIO()
    pil.save(b, "PNG", **kw)
    return b.getvalue()


def with_orientation(displayed: np.ndarray, o: int) -> bytes:
    """A JPEG whose stored pixels, shown with EXIF orientation ``o``, look like ``displayed`` (inverse by hand)."""
    stored = {1: displayed, 3: np.rot90(displayed, 2), 6: np.rot90(displayed, 1), 8: np.rot90(displayed, -1),
              2: displayed[:, ::-1], 4: displayed[::-1], 5: displayed.transpose(1, 0, 2),
              7: np.rot90(displayed, 2).transpose(1, 0, 2)}[o]
    ex = Image.Exif()
    ex[0x0112] = o
    return jpeg_bytes(np.ascontiguousarray(stored), exif=ex.tobytes())


def block_colours(img: np.ndarray) -> dict[str, np.ndarray]:
    h, w = img.shape[:2]
    return {"top_left": img[5:20, 5:25].reshape(-1, 3).mean(0), "right": img[h // 2 - 5:h // 2 + 5, w - 12:w - 4].reshape(-1, 3).mean(0),
            "bottom": img[h - 12:h - 4, 40:60].reshape(-1, 3).mean(0), "middle": img[40:50, 60:80].reshape(-1, 3).mean(0)}


# ----------------------------------------------------------------------------------------------- reduction


@pytest.mark.parametrize(("w", "h", "min_side", "expected"), [
    (6000, 4000, 512, 4),  # 4000/8 = 500 < 512, 4000/4 = 1000
    (6000, 4000, 500, 8),  # ceil(4000/8) = 500 >= 500
    (6000, 4000, None, 1),
    (600, 450, 224, 2),  # 225 >= 224
    (600, 450, 226, 1),  # 225 < 226 -> not 2x smaller
    (200, 150, 224, 1),  # upscaling target: full size
    (4001, 3001, 376, 8),  # ceil(3001/8) = 376
    (4001, 3001, 377, 4),
    (100, 100, 0, 1),
])
def test_reduction_for(w, h, min_side, expected):
    assert reduction_for(w, h, min_side) == expected
    assert reduction_for(h, w, min_side) == expected  # only the short side matters


@pytest.mark.parametrize(("w", "h", "min_side", "min_long", "expected"), [
    (6000, 4000, None, 512, 8),  # fit the long side: 750x500 still has a 750 >= 512 long side
    (6000, 4000, None, 751, 4),  # ceil(6000/8) = 750 < 751
    (6000, 4000, 512, 512, 4),  # both bounds: the short side decides
    (600, 450, None, 300, 2),
    (600, 450, None, 301, 1),
    (100, 100, None, None, 1),
])
def test_reduction_for_long_side(w, h, min_side, min_long, expected):
    assert reduction_for(w, h, min_side, min_long) == expected
    assert reduction_for(h, w, min_side, min_long) == expected


def test_decode_for_uses_the_long_side_only_when_resizing():
    from lesionkit.prep.pipeline import PrepConfig, decode_for

    data = jpeg_bytes(smooth(400, 600), quality=90)
    img, info = decode_for(data, PrepConfig(size=150, resize_mode="resize"))  # long side 600 / 4 = 150
    assert info.reduction == 4 and img.shape[:2] == (100, 150)
    img, info = decode_for(data, PrepConfig(size=150, resize_mode="center-crop"))  # short side 400 / 2 = 200
    assert info.reduction == 2 and img.shape[:2] == (200, 300)


def test_jpeg_with_a_large_trailer_after_eoi_decodes():
    data = jpeg_bytes(smooth(120, 160), quality=90)
    img, _ = decode_image(data + b"\0" * 100_000)  # EOI is not in the last 64 KiB: the full scan finds it
    ref, _ = decode_image(data)
    assert np.array_equal(img, ref)


# ----------------------------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("o", [3, 6, 8])
def test_exif_orientation_puts_pixels_where_expected(o):
    ref = upright()
    img, info = decode_image(with_orientation(ref, o))
    assert img.shape == ref.shape and img.dtype == np.uint8 and img.flags.c_contiguous
    assert (info.orig_height, info.orig_width) == (80, 120) and info.exif_transposed
    c = block_colours(img)
    assert np.abs(c["top_left"] - RED).max() < 25
    assert np.abs(c["right"] - BLUE).max() < 25
    assert np.abs(c["bottom"] - GREEN).max() < 25
    assert np.abs(c["middle"] - WHITE).max() < 25
    assert np.abs(img.astype(int) - ref).mean() < 4


@pytest.mark.parametrize("o", range(1, 9))
def test_all_orientations_match_pillow_and_reduced_decode(o):
    ref = upright()
    data = with_orientation(ref, o)
    img, info = decode_image(data)
    pil = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert img.shape == pil.shape == ref.shape
    assert np.abs(img.astype(int) - pil).max() <= 2  # same libjpeg, independent orientation code
    assert info.exif_transposed == (o != 1)
    small, sinfo = decode_image(data, min_side=40)  # short side 80 -> 1/2 scale
    assert sinfo.reduction == 2 and small.shape == (40, 60, 3)
    c = block_colours(cv2.resize(small, (120, 80), interpolation=cv2.INTER_NEAREST))
    assert np.abs(c["top_left"] - RED).max() < 30 and np.abs(c["right"] - BLUE).max() < 30


# ----------------------------------------------------------------------------------------------- modes


def test_cmyk_jpeg_colours_close_to_rgb_original():
    ref = smooth(96, 128)
    img, info = decode_image(jpeg_bytes(Image.fromarray(ref).convert("CMYK")))
    assert info.source_mode == "CMYK"
    assert img.shape == ref.shape
    assert np.abs(img.astype(int) - ref).mean() < 2.0
    small, sinfo = decode_image(jpeg_bytes(Image.fromarray(ref).convert("CMYK")), min_side=24)
    assert sinfo.reduction == 4 and small.shape == (24, 32, 3)
    area = cv2.resize(ref, (32, 24), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - area).mean() < 3.0


def test_16bit_rgb_png_scaled_to_8bit(tmp_path):
    rng = np.random.default_rng(1)
    rgb16 = rng.integers(0, 65536, (30, 40, 3), dtype=np.uint16)
    path = tmp_path / "x16.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    img, info = decode_image(path)
    assert info.source_mode == "RGB;16" and any("16-bit" in n for n in info.notes)
    assert img.dtype == np.uint8 and img.shape == (30, 40, 3)
    assert np.abs(img.astype(int) - (rgb16 >> 8)).max() <= 1
    assert np.array_equal(img, np.rint(rgb16 / 257.0).astype(np.uint8))  # the documented rounding


def test_16bit_gray_png(tmp_path):
    g16 = np.linspace(0, 65535, 50 * 20).reshape(20, 50).astype(np.uint16)
    path = tmp_path / "g16.png"
    assert cv2.imwrite(str(path), g16)
    img, info = decode_image(path.read_bytes())
    assert info.source_mode == "I;16"
    assert np.array_equal(img[..., 0], img[..., 2]) and np.array_equal(img[..., 0], img[..., 1])
    assert np.abs(img[..., 0].astype(int) - (g16 >> 8)).max() <= 1
    assert img[0, 0, 0] == 0 and img[-1, -1, 0] == 255


def test_16bit_gray_tiff_through_pillow():
    g16 = np.linspace(0, 65535, 32 * 24).reshape(24, 32).astype(np.uint16)
    b = io.BytesIO()
    Image.fromarray(g16).save(b, "TIFF")
    img, info = decode_image(b.getvalue())
    assert info.source_mode.startswith("I;16") and info.format == "TIFF"
    assert np.abs(img[..., 1].astype(int) - (g16 >> 8)).max() <= 1


def test_rgba_png_drops_alpha():
    ref = smooth(40, 50)
    alpha = np.tile(np.linspace(0, 255, 50, dtype=np.uint8), (40, 1))
    img, info = decode_image(png_bytes(Image.fromarray(np.dstack([ref, alpha]), "RGBA")))
    assert info.source_mode == "RGBA" and "alpha dropped" in info.notes
    assert np.array_equal(img, ref)


def test_la_and_palette_png():
    g = smooth(30, 30)[..., 0]
    img, info = decode_image(png_bytes(Image.fromarray(np.dstack([g, g]), "LA")))
    assert info.source_mode == "LA" and "alpha dropped" in info.notes
    assert np.array_equal(img[..., 0], g) and np.array_equal(img[..., 2], g)
    pal = Image.fromarray(upright()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    img, info = decode_image(png_bytes(pal))
    assert info.source_mode == "P"
    assert np.array_equal(img, np.asarray(pal.convert("RGB")))


def test_grayscale_jpeg_and_png():
    g = smooth(48, 64)[..., 1]
    img, info = decode_image(jpeg_bytes(Image.fromarray(g, "L")))
    assert info.source_mode == "L" and img.shape == (48, 64, 3)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.abs(img[..., 0].astype(int) - g).mean() < 2
    img, info = decode_image(png_bytes(Image.fromarray(g, "L")))
    assert info.source_mode == "L" and np.array_equal(img[..., 2], g)
    bw = Image.fromarray((g > 128).astype(np.uint8) * 255).convert("1")
    img, info = decode_image(png_bytes(bw))
    assert set(np.unique(img)) <= {0, 255} and np.array_equal(img[..., 0] > 0, g > 128)


def test_other_formats_and_path_input(tmp_path):
    ref = smooth(30, 44)
    for fmt in ("BMP", "TIFF", "WEBP"):
        b = io.BytesIO()
        Image.fromarray(ref).save(b, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
        img, info = decode_image(b.getvalue())
        assert info.format == fmt and np.array_equal(img, ref), fmt
    p = tmp_path / "a.jpg"
    p.write_bytes(jpeg_bytes(ref))
    a, _ = decode_image(p)
    b_, _ = decode_image(str(p))
    c, _ = decode_image(p.read_bytes())
    assert np.array_equal(a, b_) and np.array_equal(a, c)


# ----------------------------------------------------------------------------------------------- DCT scaling


def test_reduced_decode_matches_area_resize_of_full_decode():
    ref = smooth(600, 800, seed=3)
    data = jpeg_bytes(ref, quality=92)
    full, finfo = decode_image(data)
    assert finfo.reduction == 1
    for min_side, r in ((150, 4), (75, 8), (300, 2), (301, 1)):
        img, info = decode_image(data, min_side=min_side)
        assert info.reduction == r
        assert (info.orig_height, info.orig_width) == (600, 800)
        assert img.shape == (-(-600 // r), -(-800 // r), 3)
        if r > 1:
            area = cv2.resize(full, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA)
            assert np.abs(img.astype(int) - area).mean() < 1.5, r


def test_non_jpeg_is_never_reduced():
    img, info = decode_image(png_bytes(Image.fromarray(smooth(200, 300))), min_side=50)
    assert info.reduction == 1 and img.shape == (200, 300, 3)


# ----------------------------------------------------------------------------------------------- errors


def patch_jpeg_size(data: bytes, w: int, h: int) -> bytes:
    i = data.index(b"\xff\xc0")
    return data[:i + 5] + struct.pack(">HH", h, w) + data[i + 9:]


def test_bomb_refused_from_header_before_decoding():
    data = jpeg_bytes(smooth(64, 64))
    forged = patch_jpeg_size(data, 60000, 50000)  # 3 Gpx: decoding it would need ~9 GB
    with pytest.raises(DecodeError) as e:
        decode_image(forged)
    assert e.value.reason == "too many pixels"
    assert "60000x50000" in str(e.value) and "178,956,970" in str(e.value) and "--max-pixels" in str(e.value)
    with pytest.raises(DecodeError) as e:
        decode_image(data, max_pixels=64 * 64 - 1)
    assert e.value.reason == "too many pixels"
    assert decode_image(data, max_pixels=64 * 64)[0].shape == (64, 64, 3)
    png = png_bytes(Image.fromarray(smooth(64, 64)))
    i = png.index(b"IHDR")
    forged_png = png[:i + 4] + struct.pack(">II", 70000, 70000) + png[i + 12:]
    with pytest.raises(DecodeError) as e:
        decode_image(forged_png)
    assert e.value.reason == "too many pixels" and "70000x70000" in str(e.value)
    b = io.BytesIO()
    Image.fromarray(smooth(64, 64)).save(b, "BMP")
    with pytest.raises(DecodeError) as e:
        decode_image(b.getvalue(), max_pixels=1000)
    assert e.value.reason == "too many pixels"


def test_too_small():
    with pytest.raises(DecodeError) as e:
        decode_image(jpeg_bytes(smooth(16, 40)), min_pixels_side=32)
    assert e.value.reason == "too small"


def test_zero_byte(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    for src in (p, b""):
        with pytest.raises(DecodeError) as e:
            decode_image(src)
        assert e.value.reason == "zero-byte file"


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("frac", [0.05, 0.5, 0.97])
def test_truncated_jpeg_detected(progressive, frac):
    data = jpeg_bytes(smooth(240, 320), quality=90, progressive=progressive)
    with pytest.raises(DecodeError) as e:
        decode_image(data[: int(len(data) * frac)])
    assert e.value.reason == "truncated image"
    with pytest.raises(DecodeError) as e:
        decode_image(data[:-2])  # only the end-of-image marker missing
    assert e.value.reason == "truncated image"
    with pytest.raises(DecodeError) as e:
        decode_image(data[: int(len(data) * frac)], min_side=60)
    assert e.value.reason == "truncated image"


def test_truncated_png_and_other_formats():
    png = png_bytes(Image.fromarray(smooth(100, 100)))
    for cut in (len(png) // 2, len(png) - 12):
        with pytest.raises(DecodeError) as e:
            decode_image(png[:cut])
        assert e.value.reason == "truncated image"
    b = io.BytesIO()
    Image.fromarray(smooth(100, 100)).save(b, "BMP")
    with pytest.raises(DecodeError) as e:
        decode_image(b.getvalue()[:5000])
    assert e.value.reason == "truncated image"


def test_not_an_image_and_unsupported(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is a text file, not a picture\n" * 20)
    with pytest.raises(DecodeError) as e:
        decode_image(p)
    assert e.value.reason == "not an image"
    with pytest.raises(DecodeError) as e:
        decode_image(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    assert e.value.reason == "unsupported format" and "HEIC" in str(e.value)
    with pytest.raises(DecodeError) as e:
        decode_image(tmp_path / "missing.png")
    assert e.value.reason == "unreadable file"
    garbage = bytearray(jpeg_bytes(smooth(64, 64)))
    sos = garbage.index(b"\xff\xda")
    garbage[sos + 20:sos + 400] = b"\xff\x00" * 190  # scrambled entropy data, EOI intact
    try:
        img, _ = decode_image(bytes(garbage))  # libjpeg may decode garbage as (wrong) pixels: fine, not a crash
        assert img.shape == (64, 64, 3)
    except DecodeError as err:
        assert err.reason == "corrupt image"


def test_real_ham10000_jpegs_decode(real_data: Path):
    paths = sorted((real_data / "ham10000" / "images").glob("*.jpg"))[:20]
    assert paths
    for p in paths:
        img, info = decode_image(p)
        ref = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(img, ref)
        assert (info.orig_width, info.orig_height) == (200, 150) and info.source_mode == "RGB"
