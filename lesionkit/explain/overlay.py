"""Pictures of CAMs: per-image panels (image | CAM | overlay [| guided Grad-CAM]) and contact sheets.

Colours: the CAM is drawn with OpenCV's JET colormap (blue = 0, red = 1); the overlay is ``0.5 * image + 0.5 *
heatmap`` (pytorch-grad-cam's ``show_cam_on_image``). The lesion outline (from the lesion mask, when available) is
drawn in white on the overlay so "inside the lesion" can be judged by eye. Text is rendered with OpenCV's Hershey
font on a dark strip above the pictures. Everything is RGB uint8; PNGs are written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lesionkit.fsio import atomic_path

__all__ = ["contact_sheet", "heatmap", "outline", "overlay", "panel", "write_png"]

TILE = 192  # minimum side of one picture in a panel / contact sheet (small inputs are upscaled)


def heatmap(cam01: np.ndarray) -> np.ndarray:
    """``[H, W]`` in [0, 1] → RGB uint8 JET heatmap."""
    import cv2

    u8 = np.uint8(np.clip(cam01, 0, 1) * 255)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, cam01: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """``weight * image + (1 - weight) * heatmap`` (RGB uint8)."""
    out = weight * image.astype(np.float32) + (1 - weight) * heatmap(cam01).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def _up(img: np.ndarray, side: int) -> np.ndarray:
    import cv2

    if img.shape[0] >= side:
        return img
    return cv2.resize(img, (side, side), interpolation=cv2.INTER_CUBIC if img.ndim == 3 else cv2.INTER_LINEAR)


def outline(img: np.ndarray, mask: np.ndarray | None, colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    import cv2

    if mask is None or not (mask > 0.5).any():
        return img
    m = _up((mask > 0.5).astype(np.float32), img.shape[0]) > 0.5
    cnts, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = img.copy()
    cv2.drawContours(out, cnts, -1, colour, max(1, img.shape[0] // 160), lineType=cv2.LINE_AA)
    return out


def _caption(width: int, lines: Sequence[str], scale: float = 0.42) -> np.ndarray:
    import cv2

    line_h = int(22 * scale / 0.42)
    strip = np.full((line_h * len(lines) + 6, width, 3), 24, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(strip, text, (4, line_h * (i + 1) - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1,
                    cv2.LINE_AA)
    return strip


def panel(image: np.ndarray, cam01: np.ndarray, lines: Sequence[str], lesion: np.ndarray | None = None,
          guided: np.ndarray | None = None, tile: int = TILE) -> np.ndarray:
    """One image's panel: image | CAM | overlay (lesion outlined) [| guided Grad-CAM], captioned with ``lines``."""
    side = max(tile, image.shape[0])
    pics = [_up(image, side), _up(heatmap(cam01), side), outline(_up(overlay(image, cam01), side), lesion)]
    if guided is not None:
        pics.append(_up(guided, side))
    gap = np.full((side, 4, 3), 255, np.uint8)
    row = np.concatenate([x for p in pics for x in (p, gap)][:-1], axis=1)
    return np.concatenate([_caption(row.shape[1], lines), row], axis=0)


def contact_sheet(tiles: Sequence[np.ndarray], captions: Sequence[Sequence[str]], title: str,
                  ncols: int | None = None, tile: int = TILE) -> np.ndarray:
    """A grid of captioned pictures (e.g. overlays) under a title line; ``ncols`` default ``ceil(sqrt(n))`` (≤ 6)."""
    import cv2

    n = len(tiles)
    ncols = ncols or max(1, min(6, math.ceil(math.sqrt(max(n, 1)))))
    cells = []
    for img, cap in zip(tiles, captions, strict=True):
        pic = _up(img, tile)
        if pic.shape[0] != tile:
            pic = cv2.resize(pic, (tile, tile), interpolation=cv2.INTER_AREA)
        cells.append(np.concatenate([_caption(tile, cap, 0.38), pic], axis=0))
    if not cells:
        cells = [np.full((tile, tile, 3), 24, np.uint8)]
        ncols = 1
    ch, cw = cells[0].shape[:2]
    nrows = math.ceil(len(cells) / ncols)
    pad = 4
    sheet = np.full((nrows * (ch + pad) + pad, ncols * (cw + pad) + pad, 3), 255, np.uint8)
    for i, c in enumerate(cells):
        r, k = divmod(i, ncols)
        y, x = pad + r * (ch + pad), pad + k * (cw + pad)
        sheet[y:y + c.shape[0], x:x + c.shape[1]] = c
    head = _caption(sheet.shape[1], [title], 0.5)
    return np.concatenate([head, sheet], axis=0)


def write_png(path: Path | str, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG atomically."""
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
