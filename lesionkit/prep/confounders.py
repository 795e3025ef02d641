"""Surgical-marker ink, rulers and stickers: detection and inpainting.

Images are ``(H, W, 3)`` uint8 RGB, masks ``(H, W)`` bool. Colours are CIELab as OpenCV computes it from
float RGB in [0, 1] (D65; L* in [0, 100], a* and b* roughly [-128, 127]).

Ink (:func:`detect_ink`). Skin, lesions and hair have Lab hues between about 10° and 90° (red-orange-brown,
a* > 0, b* > 0). Surgical markers are violet / purple (a* > 0, b* < 0), blue (b* << 0) or green (a* << 0).
A pixel is ink-coloured when (1) its own hue is outside the skin sector (violet/blue: hue in
[-150°, -3°]; green: hue beyond 100° with a* < 0), (2) its chroma is high, (3) it deviates from the image's
own background colour (median a*, b* of ``fov & ~lesion``) TOWARDS blue/violet/green, measured as
``dev = max(b_ref - b*, a_ref - a*)``, and (4) it is not pale (L* <= 78 for seeds, 88 for the rest) nor near
black (L* >= 12). (3) keeps the bluish cast of some dermoscopes (whole background at hue -95°) from firing,
(4) pale pink / lilac backgrounds. Strong pixels (chroma, dev >= ``InkParams.strong`` = (18, 16)) seed the
mask; weak pixels (>= ``weak`` = (8, 7)) are added when 8-connected to a seed (hysteresis: the anti-aliased
fringe of a stroke). Blue-grey veils and blue-white structures of melanomas are unsaturated (chroma < ~12),
so they do not seed; when ``lesion_mask`` is given, seeds inside it need twice the strong thresholds.
Without ``fov_mask``, the dark surround of a dermoscope (L* < 22 touching the border) and 3% of the image
around it are excluded (its chromatic fringe), and so are components touching the image border that cover
less than 0.3% of the image (the coloured fringe of a bright vignette). Components smaller than ``min_area`` (12 px at 256 px) and
components touching a sticker (below) are dropped; a 3x3 closing joins broken strokes.

Rulers (:func:`detect_ruler`), two detectors whose masks are united:

* Tick runs (:func:`_find_ruler`), aimed at rulers along the border (and the synthetic generator's rulers).
  The tick response is black-hat minus white top-hat of L* (9 px square at 256 px): dark ticks are positive,
  the gaps between them negative, so a comb gives a full-contrast periodic signal of either polarity. For
  orientations every 3° within ±24° of horizontal and of vertical the response is rotated so that candidate
  ticks are vertical, smoothed along them (3 px) and every other row is cut into windows of half the image
  side (step 1/4 window). A window's periodicity score for period T (3 px to 12% of the side) is
  ``min(a(T), a(2T), a(T) - a(T/2), a(2T) - a(1.5T))`` from its normalised autocorrelation ``a``: near 1 for
  equally spaced ticks of any duty cycle, <= 0 for smooth texture, ~0 for two unrelated strands. Runs of
  windows scoring >= 0.45 (RMS >= 2.5 L*) are candidates; the longest is accepted when its mean score is
  >= 0.55, it has >= 7 ticks over >= 30% of the side, and the response's gradient energy is >= 75% across the
  ticks ("coherence": ruler ticks are parallel, hair crossing a line is not). Mask: the rows where the ticks
  stay periodic x the span of the tick chain; when the pixels between the ticks are brighter than the skin
  beyond them (a ruler strip) the mask grows to the whole strip, otherwise it is the tick pixels (of the
  polarity farther from the skin colour, long ticks included) dilated by 1 px.
* Printed scale bars (:func:`_find_scale_bar`), any orientation (the mm bars on the contact plate of many
  ISIC / MSK images): long straight thin dark lines (Hough on the thresholded black-hat, >= 25% of the side)
  with, along one side, >= 10 tick peaks whose gaps are regular (within ±35% of the median gap, or twice it)
  for >= 70% of the gaps, and an autocorrelation score >= 0.2 (noise peaks can look regular). Mask: the line
  and its ticks within the bar's strip.

Not covered: rulers with ticks closer than 3 px (e.g. the synthetic rulers at 128 px, where recall drops),
rulers tilted by more than 24° without a baseline, text / numbers printed on rulers, round dermoscope borders
(see the FOV step).

Stickers (part of :func:`detect_ruler` when ``stickers=True``): uniformly coloured blobs (local colour std < 6
in a 5 px window at 256 px) of cool colour (hue < -65° or > 100°, chroma >= 18) or vivid warm print
(chroma >= 55, touching the border or L* >= 65), at least 0.4% of the image, solid (>= 0.8 x convex hull),
thick (inscribed radius >= 2% of the side), and >= 25 ΔE from the image's median colour (a colour cast is not
an object). Violet blobs are left to :func:`detect_ink`. This covers the round coloured stickers of ISIC (blue,
teal, green, orange, yellow); not white / transparent stickers.

Inpainting. :func:`inpaint_mishra` is Mishra et al.'s patch k-means fill; ``"telea"`` and ``"ns"`` are
:func:`cv2.inpaint`. :func:`remove_confounders` detects, dilates the masks by 2 px per 256 px of the short
side (anti-aliased fringes) and inpaints.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from lesionkit.errors import InputError, UsageError
from lesionkit.prep.order_stats import median

INPAINT_METHODS: tuple[str, ...] = ("mishra", "telea", "ns")
CONFOUNDER_KINDS: tuple[str, ...] = ("ink", "ruler")


# ----------------------------------------------------------------------------------------------- helpers


def _check_img(img: np.ndarray, what: str = "image") -> None:
    if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3):
        got = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise InputError(f"{what} must be an RGB uint8 array of shape (H, W, 3) (got {got})")


def _as_mask(mask: np.ndarray | None, shape: tuple[int, int], name: str) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask).astype(bool)
    if m.shape != tuple(shape):
        raise InputError(f"{name} has shape {m.shape}, the image is {tuple(shape)}")
    return m


def _lab(img: np.ndarray) -> np.ndarray:
    """Float32 Lab (L* 0-100) of a uint8 RGB image."""
    return cv2.cvtColor(img.astype(np.float32) * np.float32(1.0 / 255.0), cv2.COLOR_RGB2Lab)


def _working(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image downscaled (INTER_AREA) so its long side is at most ``max_side``; returns (image, factor <= 1)."""
    h, w = img.shape[:2]
    f = min(1.0, max_side / max(h, w))
    if f >= 1.0:
        return img, 1.0
    return cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA), f


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == tuple(shape):
        return mask
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


# ----------------------------------------------------------------------------------------------- stickers


def _sticker_mask(img: np.ndarray, lab: np.ndarray | None = None) -> np.ndarray:
    """Uniform, strongly coloured blobs (round stickers); see the module docstring. Bool HxW."""
    h, w = img.shape[:2]
    short = min(h, w)
    if lab is None:
        lab = _lab(img)
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    chroma = np.hypot(a, b)
    hue = np.degrees(np.arctan2(b, a))
    cool = (hue < -65.0) | (hue > 100.0)  # blue, cyan, green
    warm = (hue >= 0.0) & (hue <= 100.0)  # orange, yellow, red
    cand = (L >= 30.0) & ((cool & (chroma >= 18.0)) | (warm & (L >= 50.0) & (chroma >= 50.0)))
    # uniform: low local colour variation (stickers are flat print; skin, lesions and ink strokes are textured)
    k = max(3, int(round(short / 64)) | 1)
    var = np.zeros((h, w), np.float32)
    for c in range(3):
        ch = np.ascontiguousarray(lab[..., c])
        mu = cv2.blur(ch, (k, k))
        var += cv2.blur(ch * ch, (k, k)) - mu * mu
    cand &= np.sqrt(np.maximum(var, 0.0)) < 6.0
    cand = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_OPEN, _disk(max(1, short // 128))) > 0
    if not cand.any():
        return np.zeros((h, w), bool)
    ref = np.median(lab.reshape(-1, 3), axis=0)  # the image's typical (skin / background) colour
    n, lab_img, stats, _ = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=8)
    out = np.zeros((h, w), bool)
    min_area = 0.004 * h * w
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < min_area:
            continue
        x, y, bw, bh = stats[i, :4]
        comp = lab_img[y:y + bh, x:x + bw] == i
        colour = lab[y:y + bh, x:x + bw][comp].mean(axis=0)
        c_chroma = float(np.hypot(colour[1], colour[2]))
        c_hue = float(np.degrees(np.arctan2(colour[2], colour[1])))
        touches = x == 0 or y == 0 or x + bw == w or y + bh == h
        if float(np.linalg.norm(colour - ref)) < 25.0:  # a colour cast of the whole image, not an object
            continue
        if -65.0 <= c_hue < 0.0:  # violet / purple: surgical ink, left to detect_ink
            continue
        if 0.0 <= c_hue <= 100.0 and not (c_chroma >= 55.0 and (touches or colour[0] >= 65.0)):
            continue  # warm colours: only vivid orange / yellow print (lesions reach C* ~55 at L* < 65)
        cu8 = comp.astype(np.uint8)
        cnts, _ = cv2.findContours(cu8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull_area = cv2.contourArea(cv2.convexHull(np.concatenate(cnts)))
        if hull_area <= 0 or stats[i, cv2.CC_STAT_AREA] < 0.8 * hull_area:
            continue
        if float(cv2.distanceTransform(np.pad(cu8, 1), cv2.DIST_L2, 5).max()) < 0.02 * short:
            continue
        out[y:y + bh, x:x + bw] |= comp
    if out.any():  # the anti-aliased / shaded rim of a sticker
        out = cv2.dilate(out.astype(np.uint8), _disk(max(1, short // 128))) > 0
    return out


# ----------------------------------------------------------------------------------------------- ink


@dataclass(frozen=True)
class InkParams:
    """Thresholds of :func:`detect_ink` (chroma and deviation in Lab units; areas in pixels at 256 px short side).

    strong: (chroma, dev) a seed pixel needs; weak: (chroma, dev) a pixel connected to a seed needs.
    min_area: smallest component kept (scaled with the image area); max_side: detection runs on a copy whose
    long side is at most this many pixels (the mask is scaled back).
    """

    strong: tuple[float, float] = (18.0, 16.0)
    weak: tuple[float, float] = (8.0, 7.0)
    min_area: float = 12.0
    min_L: float = 12.0  # darker pixels have unreliable chroma (noise, JPEG)
    max_L_strong: float = 78.0  # marker ink is mid-dark; pale pink / lilac backgrounds are not ink
    max_L_weak: float = 88.0
    border_speck: float = 0.003  # without fov_mask: components touching the border smaller than this share go
    max_side: int = 768


def _ink_hue(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    hue = np.degrees(np.arctan2(b, a))
    violet_blue = (hue >= -150.0) & (hue <= -3.0)
    green = (hue >= 100.0) | (hue <= -150.0)  # 100..210 degrees, wrapping through 180
    return violet_blue | (green & (a < 0))


def _dark_surround(L: np.ndarray, level: float = 22.0) -> np.ndarray:
    """Dark regions (L* < ``level`` after a small blur) connected to the image border: a dermoscope's vignette."""
    h, w = L.shape
    dark = (cv2.blur(L, (5, 5)) < level).astype(np.uint8)
    if not dark.any():
        return np.zeros((h, w), bool)
    _, lab = cv2.connectedComponents(dark, connectivity=8)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    border = border[border > 0]
    return np.isin(lab, border) if border.size else np.zeros((h, w), bool)


def detect_ink(img: np.ndarray, fov_mask: np.ndarray | None = None, lesion_mask: np.ndarray | None = None,
               params: InkParams | None = None) -> np.ndarray:
    """Mask (bool HxW) of violet / purple / blue / green surgical-marker ink. See the module docstring.

    ``fov_mask``: pixels inside the dermoscope's field of view (outside is never ink and is not used for the
    background colour). ``lesion_mask``: the lesion; it is excluded from the background colour and seeds inside
    it need twice the thresholds (melanoma blue-grey areas). Both optional.
    """
    _check_img(img)
    p = params or InkParams()
    H, W = img.shape[:2]
    fov = _as_mask(fov_mask, (H, W), "fov_mask")
    les = _as_mask(lesion_mask, (H, W), "lesion_mask")
    work, f = _working(img, p.max_side)
    h, w = work.shape[:2]
    if f < 1.0:
        fov = _resize_mask(fov, (h, w)) if fov is not None else None
        les = _resize_mask(les, (h, w)) if les is not None else None
    sigma = 0.5 * max(1.0, min(h, w) / 256.0)
    lab = cv2.GaussianBlur(_lab(work), (0, 0), sigma)
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    bg = (L > 15.0) & (L < 97.0)
    if fov is not None:
        bg &= fov
    if les is not None:
        bg &= ~les
    if bg.sum() < 0.05 * h * w:  # background too small to estimate: use every reasonably lit pixel
        bg = (L > 15.0) & (L < 97.0)
    if not bg.any():
        return np.zeros((H, W), bool)
    ref_a = median(a[bg])
    ref_b = median(b[bg])
    chroma = np.hypot(a, b)
    dev = np.maximum(ref_b - b, ref_a - a)
    hue_ok = _ink_hue(a, b) & (L >= p.min_L)
    weak = hue_ok & (chroma >= p.weak[0]) & (dev >= p.weak[1]) & (L <= p.max_L_weak)
    strong = hue_ok & (chroma >= p.strong[0]) & (dev >= p.strong[1]) & (L <= p.max_L_strong)
    if les is not None:
        strong &= ~les | ((chroma >= 2 * p.strong[0]) & (dev >= 2 * p.strong[1]))
    if fov is not None:
        weak &= fov
        strong &= fov
    else:
        # no field-of-view mask: the dark surround of a dermoscope (dark regions touching the border) and its
        # chromatic fringe are not ink
        surround = _dark_surround(L)
        if surround.any():
            near = cv2.dilate(surround.astype(np.uint8), _disk(max(2, int(round(0.03 * min(h, w)))))) > 0
            weak &= ~near
            strong &= ~near
    if not strong.any():
        return np.zeros((H, W), bool)
    # hysteresis: weak components that contain a seed
    n, labels, stats, _ = cv2.connectedComponentsWithStats(weak.astype(np.uint8), connectivity=8)
    seeded = np.zeros(n, bool)
    seeded[np.unique(labels[strong])] = True
    seeded[0] = False
    scale = (h * w) / (256.0 * 256.0)
    min_area = max(4.0, p.min_area * scale)
    keep = seeded & (stats[:, cv2.CC_STAT_AREA] >= min_area)
    mask = keep[labels]
    if not mask.any():
        return np.zeros((H, W), bool)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)) > 0
    n2, lab2, st2, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    drop = np.zeros(n2, bool)
    stick = _sticker_mask(work, None)
    if stick.any():  # blobs that belong to a sticker
        drop[np.unique(lab2[stick & mask])] = True
    if fov is None:
        # small specks touching the image border: the coloured fringe of a dermoscope's vignette (real marker
        # strokes reaching the border are long)
        x, y, bw, bh, area = (st2[:, i] for i in range(5))
        border = (x == 0) | (y == 0) | (x + bw == w) | (y + bh == h)
        drop |= border & (area < p.border_speck * h * w)
    drop[0] = False
    if drop.any():
        mask &= ~drop[lab2]
    if fov is not None:
        mask &= fov
    return _resize_mask(mask, (H, W))


# ----------------------------------------------------------------------------------------------- rulers


@dataclass
class RulerDetection:
    """Result of :func:`detect_ruler`.

    mask: bool HxW, ruler (and sticker) pixels. detected: a ruler or a sticker was found. score: the ruler
    evidence (fraction of a window's AC power on the tick period and its harmonics, averaged over the best
    run; 0 when no candidate), in [0, 1]. reason: a one-line human explanation. side: where the ruler lies
    ("top" / "bottom" / "left" / "right" / "inside" / None). period_px: tick spacing in pixels of the input
    image (None without a ruler). angle_deg: ruler direction (0 = horizontal, 90 = vertical).
    ruler_mask / sticker_mask: the two parts of ``mask``.
    """

    mask: np.ndarray
    detected: bool
    score: float
    reason: str
    ruler: bool = False
    sticker: bool = False
    side: str | None = None
    period_px: float | None = None
    angle_deg: float | None = None
    ruler_mask: np.ndarray | None = field(default=None, repr=False)
    sticker_mask: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RulerParams:
    """Parameters of :func:`detect_ruler` (lengths as fractions of the short side unless noted)."""

    max_angle: float = 24.0  # search ± this many degrees around horizontal and vertical
    angle_step: float = 3.0
    min_period_px: float = 3.0  # tick spacing range; the upper end is max_period of the short side
    max_period: float = 0.12
    min_extent: float = 0.3  # a ruler's ticks span at least this fraction of the short side
    min_ticks: int = 7
    score_threshold: float = 0.45  # periodicity score (see _window_periodicity) a window needs
    accept_score: float = 0.55  # mean window score of the best run needed to report a ruler
    min_coherence: float = 0.75  # share of the tick response's gradient energy across the ticks
    min_amplitude: float = 2.5  # L* units: RMS of the tick response in a ruler window
    bar_min_ticks: int = 10  # a printed scale bar: ticks beside its baseline at regular spacing ...
    bar_regular_frac: float = 0.7  # ... for at least this share of the gaps, 3 px or more apart ...
    bar_score: float = 0.2  # ... and periodic by the autocorrelation score (noise peaks can look regular)
    max_side: int = 512


def _tick_response(L: np.ndarray, k: int) -> np.ndarray:
    """Signed thin-structure response: black-hat minus white top-hat of L* (k x k square). Dark ticks are
    positive, the bright gaps between them negative (and vice versa for light ticks), so a comb of ticks gives a
    full-contrast periodic signal whatever its polarity and duty cycle."""
    ker = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    bh = cv2.morphologyEx(L, cv2.MORPH_BLACKHAT, ker)
    th = cv2.morphologyEx(L, cv2.MORPH_TOPHAT, ker)
    return bh - th


def _rotation(shape: tuple[int, int], angle: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Affine matrix rotating an image of ``shape`` by ``angle`` degrees about its centre into an expanded canvas."""
    h, w = shape
    M = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)  # pixel centres are integers
    c, s = abs(M[0, 0]), abs(M[0, 1])
    nw, nh = int(math.ceil(h * s + w * c - 1e-6)), int(math.ceil(h * c + w * s - 1e-6))
    M[0, 2] += (nw - w) / 2.0
    M[1, 2] += (nh - h) / 2.0
    return M, (nh, nw)


def _window_periodicity(prof: np.ndarray, win: int, hop: int, periods: tuple[int, int], min_amplitude: float = 0.0
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Periodicity of each row of ``prof`` (rows x cols) in windows of ``win`` samples every ``hop``, for integer
    periods ``periods[0] .. periods[1]`` (<= win / 4).

    With ``a(t)`` the normalised (unbiased) autocorrelation of the mean-removed window, the score of a period
    ``T`` is ``min(a(T), a(2 T), a(T) - a(T / 2), a(2 T) - a(1.5 T))`` in [-1, 1]: equally spaced ticks (any
    duty cycle) give peaks near 1 at T and 2T with troughs half-way (score near 1); smooth texture decays
    monotonically (no trough: score <= 0); two unrelated strands at distance d give a peak at d but none at 2d. Returns (score, period,
    RMS amplitude, starts), the first three of shape (rows, n_windows); ``period`` is the smallest candidate
    scoring >= 0.85 x the best. Windows with NaN samples or an RMS below ``min_amplitude`` are not analysed
    (score -1).
    """
    cols = prof.shape[1]
    starts = np.arange(0, max(1, cols - win + 1), hop)
    idx = starts[:, None] + np.arange(win)[None, :]
    seg = prof[:, idx]  # rows x nwin x win
    seg = seg - seg.mean(axis=2, keepdims=True)
    amp = np.sqrt(np.mean(seg * seg, axis=2))  # NaN where the window leaves the image
    score = np.full(amp.shape, -1.0, np.float32)
    period = np.zeros(amp.shape, np.float32)
    todo = np.nonzero(amp >= max(min_amplitude, 1e-6))  # False for NaN
    if todo[0].size == 0:
        return score, period, np.nan_to_num(amp, nan=0.0).astype(np.float32), starts
    import scipy.fft  # here, not at module level: 0.14 s of every worker pool's start for a ruler-only step

    x = seg[todo].astype(np.float32)  # n x win
    t0, t1 = int(periods[0]), int(periods[1])
    nl = 2 * t1 + 2  # largest integer lag needed
    nfft = scipy.fft.next_fast_len(win + nl + 1, real=True)  # linear (not circular) correlation up to lag nl
    X = scipy.fft.rfft(x, n=nfft, axis=1, workers=1)
    ac = scipy.fft.irfft(X.real * X.real + X.imag * X.imag, n=nfft, axis=1, workers=1)[:, :nl + 1]
    ac /= (win - np.arange(nl + 1, dtype=np.float32))  # unbiased
    ac /= ac[:, :1] + 1e-6
    # half-step lag grid: ach[:, j] = a(j / 2) (linear interpolation between integer lags)
    ach = np.empty((ac.shape[0], 2 * nl + 1), np.float32)
    ach[:, 0::2] = ac
    ach[:, 1::2] = 0.5 * (ac[:, :-1] + ac[:, 1:])
    # integer periods T = t0..t1: a(T) at j = 2T, a(T/2) at j = T, a(2T) at j = 4T, a(1.5T) at j = 3T (views)
    aT, a2T = ach[:, 2 * t0:2 * t1 + 1:2], ach[:, 4 * t0:4 * t1 + 1:4]
    sc = np.minimum(np.minimum(aT, a2T), np.minimum(aT - ach[:, t0:t1 + 1], a2T - ach[:, 3 * t0:3 * t1 + 1:3]))
    best = sc.max(axis=1)
    first = np.argmax(sc >= 0.85 * best[:, None], axis=1)
    score[todo] = best
    period[todo] = first + t0
    return score, period, np.nan_to_num(amp, nan=0.0).astype(np.float32), starts


def _runs(ok: np.ndarray) -> np.ndarray:
    """Length of the run of True ending at each position along axis 1 (vectorised over rows)."""
    run = np.zeros(ok.shape, np.int32)
    run[:, 0] = ok[:, 0]
    for j in range(1, ok.shape[1]):
        run[:, j] = (run[:, j - 1] + 1) * ok[:, j]
    return run


def detect_ruler(img: np.ndarray, stickers: bool = True, lesion_mask: np.ndarray | None = None,
                 params: RulerParams | None = None) -> RulerDetection:
    """Find a ruler (periodic tick marks, optionally on a bright strip) and coloured stickers.

    See the module docstring for the method. ``lesion_mask`` (optional): ruler windows whose ticks lie mostly
    inside the lesion are ignored (pigment networks). Returns a :class:`RulerDetection` whose ``mask`` has the
    input's height and width.
    """
    _check_img(img)
    p = params or RulerParams()
    H, W = img.shape[:2]
    les = _as_mask(lesion_mask, (H, W), "lesion_mask")
    work, f = _working(img, p.max_side)
    h, w = work.shape[:2]
    short = min(h, w)
    lab = _lab(work)
    L = np.ascontiguousarray(lab[..., 0])
    sticker = _sticker_mask(work, lab) if stickers else np.zeros((h, w), bool)
    resp = _tick_response(L, max(5, int(round(9 * short / 256)) | 1))
    if sticker.any():
        resp[cv2.dilate(sticker.astype(np.uint8), _disk(2)) > 0] = 0.0
    les_w = _resize_mask(les, (h, w)) if les is not None else None
    strip_mask, strip = _find_ruler(L, resp, p, les_w)
    bar_mask, bar = _find_scale_bar(L, resp, p)
    found = [(m_, i_) for m_, i_ in ((strip_mask, strip), (bar_mask, bar)) if i_.get("found") and m_.any()]
    ruler_w = np.zeros((h, w), bool)
    for m_, _ in found:
        ruler_w |= m_
    ruler_mask = _resize_mask(ruler_w, (H, W))
    sticker_full = _resize_mask(sticker, (H, W))
    has_ruler = bool(found) and bool(ruler_mask.any())
    has_sticker = bool(sticker_full.any())
    parts = []
    for _, info in found:
        if info.get("kind") == "scale bar":
            parts.append(f"scale bar (angle {info['angle']:.0f} deg, period {info['period'] / f:.1f} px, "
                         f"{info['n_ticks']} ticks, score {info['score']:.2f})")
        else:
            parts.append(f"ruler ticks ({info['side']}, angle {info['angle']:.0f} deg, period {info['period'] / f:.1f} px, "
                         f"{info['n_ticks']} ticks, score {info['score']:.2f}, coherence {info['coherence']:.2f}"
                         f"{', on a bright strip' if info['band'] else ''})")
    if not found:
        whys = [i_["why"] for i_ in (strip, bar) if i_.get("why")]
        parts.append(f"no ruler ({'; '.join(whys)})" if whys else "no ruler (no periodic tick run)")
    if has_sticker:
        parts.append(f"sticker {100.0 * sticker_full.mean():.1f}% of the image")
    main = found[0][1] if found else max((strip, bar), key=lambda i_: i_.get("score", 0.0))
    side = main.get("side")
    if has_ruler and side is None:  # scale bars: where its mask lies
        ys, xs = np.nonzero(ruler_w)
        cy, cx = ys.mean() / h, xs.mean() / w
        d = {"top": cy, "bottom": 1 - cy, "left": cx, "right": 1 - cx}
        side = min(d, key=lambda s_: d[s_])
        side = side if d[side] < 0.25 else "inside"
    return RulerDetection(
        mask=ruler_mask | sticker_full, detected=has_ruler or has_sticker,
        score=float(np.clip(main.get("score", 0.0), 0.0, 1.0)),
        reason="; ".join(parts), ruler=has_ruler, sticker=has_sticker,
        side=side if has_ruler else None,
        period_px=float(main["period"] / f) if has_ruler else None,
        angle_deg=float(main["angle"]) if has_ruler else None,
        ruler_mask=ruler_mask, sticker_mask=sticker_full,
    )


def _find_ruler(L: np.ndarray, resp: np.ndarray, p: RulerParams, les: np.ndarray | None
                ) -> tuple[np.ndarray, dict[str, Any]]:
    """Exhaustive search for a periodic tick run (rotations x rows x windows); returns (mask, info)."""
    h, w = L.shape
    short = min(h, w)
    ones = np.ones((h, w), np.uint8)
    win = int(min(256, max(32, 2 ** round(math.log2(0.5 * short)))))
    hop = max(4, win // 4)
    t0 = max(2, int(math.ceil(p.min_period_px)))
    periods = (t0, max(t0, int(min(p.max_period * short, win / 4.0))))
    smooth = max(3, int(round(0.012 * short)))
    angles = np.arange(-p.max_angle, p.max_angle + 1e-9, p.angle_step)
    cands: list[tuple[float, float, dict[str, Any]]] = []
    for base in (0.0, 90.0):
        for da in angles:
            ang = base + float(da)
            M, (nh, nw) = _rotation((h, w), ang)
            # outside the rotated image is NaN, so windows that leave the image are invalid (NaN scores)
            # (box filters run on sums, so NaN is applied after smoothing)
            R = cv2.warpAffine(resp, M, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0.0)
            V = cv2.warpAffine(ones, M, (nw, nh), flags=cv2.INTER_NEAREST, borderValue=0)
            Rs = cv2.blur(R, (1, smooth), borderType=cv2.BORDER_REPLICATE)[::2]  # every other row (ticks > 2 px)
            Rs[cv2.erode(V, np.ones((smooth, 1), np.uint8), borderType=cv2.BORDER_REPLICATE)[::2] == 0] = np.nan
            share, kb, amp, starts = _window_periodicity(Rs, win, hop, periods, p.min_amplitude)
            centres = np.minimum(starts + win // 2, nw - 1)
            ok = (share >= p.score_threshold) & (amp >= p.min_amplitude)
            if les is not None:
                Lr = cv2.warpAffine(les.astype(np.uint8), M, (nw, nh), flags=cv2.INTER_NEAREST)
                ok &= cv2.blur(Lr.astype(np.float32), (win, smooth))[::2][:, centres] < 0.5
            if not ok.any():
                continue
            run = _runs(ok)
            cs = np.concatenate([np.zeros((share.shape[0], 1), np.float32), np.cumsum(np.where(ok, share, 0.0), axis=1)], axis=1)
            r, j = np.unravel_index(int(np.argmax(run)), run.shape)
            n = int(run[r, j])
            # among the rows with the longest run, the highest mean share
            rows, ends = np.nonzero(run == n)
            means = (cs[rows, ends + 1] - cs[rows, ends + 1 - n]) / n
            t = int(np.argmax(means))
            r, j = int(rows[t]), int(ends[t])
            s0 = j - n + 1
            period = float(np.median(kb[r, s0:j + 1]))
            extent = (n - 1) * hop + win
            cands.append((float(extent), float(means[t]), {
                "angle": ang, "row": 2 * r, "s0": s0, "len": n, "period": period, "M": M, "shape": (nh, nw),
                "starts": starts, "win": win, "hop": hop, "score": float(means[t])}))
    if not cands:
        return np.zeros((h, w), bool), {"found": False, "score": 0.0}
    cands.sort(key=lambda c: (c[0], c[1]), reverse=True)
    why = ""
    for _, _, cand in cands[:4]:
        mask, extra = _ruler_mask(L, resp, cand, p, smooth)
        if (mask.any() and extra["extent"] >= p.min_extent * short and extra["n_ticks"] >= p.min_ticks
                and extra["coherence"] >= p.min_coherence and cand["score"] >= p.accept_score):
            cand.update(extra)
            cand["found"] = True
            return mask, cand
        extra.setdefault("n_ticks", 0)
        why = why or (f"score {cand['score']:.2f} at {cand['angle']:.0f} deg, {extra.get('n_ticks', 0)} ticks over "
                      f"{extra.get('extent', 0) / short:.0%} of the side, coherence {extra.get('coherence', 0.0):.2f}")
    return np.zeros((h, w), bool), {"found": False, "score": cands[0][1], "why": why}


def _tick_regularity(prof: np.ndarray, min_height: float, max_gap: float) -> dict[str, Any]:
    """Tick peaks of a 1-D profile and how regular their spacing is.

    Peaks: local maxima (3 px neighbourhood) of the profile minus its grey opening (7 px), at least
    ``min_height`` and 0.3 x its 95th percentile. With ``g`` the median gap between consecutive peaks (must be
    <= ``max_gap``), a gap is regular when it is within ±35% of ``g`` or of ``2 g`` (one missed tick). Returns
    n_ticks, n_regular (peaks in the longest run of regular gaps), regular_frac (regular gaps / all gaps in the
    span of that run), gap (= g), first / last (indices of that run's ends)."""
    from scipy.ndimage import grey_opening, maximum_filter1d

    cp = prof - grey_opening(prof, size=7)
    thr = max(min_height, 0.3 * float(np.percentile(cp, 95)))
    peaks = np.nonzero((cp >= maximum_filter1d(cp, 3)) & (cp >= thr))[0]
    out = {"n_ticks": int(peaks.size), "n_regular": 0, "regular_frac": 0.0, "gap": 0.0, "first": 0, "last": 0}
    if peaks.size < 3:
        return out
    gaps = np.diff(peaks).astype(np.float64)
    g = float(np.median(gaps))
    if not 2.0 <= g <= max_gap:
        return out
    ok = (np.abs(gaps - g) <= 0.35 * g) | (np.abs(gaps - 2 * g) <= 0.35 * g)
    # longest run of regular gaps, allowing one irregular gap inside (noise peak / merged tick)
    best, i = (0, 0, 0), 0
    while i < ok.size:
        if not ok[i]:
            i += 1
            continue
        j, bad = i, 0
        while j < ok.size and (ok[j] or (bad == 0 and j + 1 < ok.size and ok[j + 1])):
            bad += int(not ok[j])
            j += 1
        n_reg = int(ok[i:j].sum()) + 1
        if n_reg > best[0]:
            best = (n_reg, i, j)
        i = j + 1
    n_reg, i, j = best
    out.update({"n_regular": n_reg, "regular_frac": float(ok[i:j].mean()) if j > i else 0.0, "gap": g,
                "first": int(peaks[i]), "last": int(peaks[j])})
    return out


def _find_scale_bar(L: np.ndarray, resp: np.ndarray, p: RulerParams) -> tuple[np.ndarray, dict[str, Any]]:
    """Printed scale bars: a long straight thin dark line (Hough on the black-hat) with periodic ticks on one side.

    Any orientation. Returns (mask, info) like :func:`_find_ruler`."""
    h, w = L.shape
    short = min(h, w)
    k = max(5, int(round(9 * short / 256)) | 1)
    bh = cv2.morphologyEx(L, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    med = float(np.median(bh))
    mad = float(np.median(np.abs(bh - med)))
    thr = max(1.6 * p.min_amplitude, med + 3.5 * 1.4826 * mad)
    binary = (bh > thr).astype(np.uint8) * 255
    lines = cv2.HoughLinesP(binary, 1, np.pi / 360, threshold=int(0.12 * short), minLineLength=0.25 * short,
                            maxLineGap=max(2, short // 100))
    none: dict[str, Any] = {"found": False, "score": 0.0}
    if lines is None:
        return np.zeros((h, w), bool), none
    segs = sorted((tuple(map(float, ln)) for ln in np.asarray(lines).reshape(-1, 4)), key=lambda q: -math.hypot(q[2] - q[0], q[3] - q[1]))
    D = max(6, int(round(0.035 * short)))
    ds = np.arange(-D, D + 1, dtype=np.float32)
    best: dict[str, Any] = dict(none)
    tried: list[tuple[float, float, float, float]] = []
    for x1, y1, x2, y2 in segs[:8]:
        length = math.hypot(x2 - x1, y2 - y1)
        ux, uy = (x2 - x1) / length, (y2 - y1) / length
        nx, ny = -uy, ux
        # skip near-duplicates of a segment already examined (same line, found twice)
        if any(abs(ux * q[1] - uy * q[0]) < 0.05 and abs((x1 - q[2]) * nx + (y1 - q[3]) * ny) < 3 for q in tried):
            continue
        tried.append((ux, uy, x1, y1))
        # extend the segment a little: Hough often stops short of the last tick
        ext = 0.05 * short
        ts = np.arange(-ext, length + ext + 1e-6, 1.0, dtype=np.float32)
        X = (x1 + ts[None, :] * ux + ds[:, None] * nx).astype(np.float32)
        Y = (y1 + ts[None, :] * uy + ds[:, None] * ny).astype(np.float32)
        s_bh = cv2.remap(bh, X, Y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        s_r = cv2.remap(resp, X, Y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        inside = (X >= 0) & (X <= w - 1) & (Y >= 0) & (Y <= h - 1)
        # the baseline: a dark thin line along most of the segment
        base = s_bh[D - 1:D + 2].max(axis=0)
        core = slice(int(ext), int(ext + length))
        if (base[core] > 0.6 * thr).mean() < 0.7:
            continue
        n = ts.size
        t_max = max(3, min(int(p.max_period * short), n // 4))
        for side in (1, -1):
            rows = D + side * np.arange(2, min(D, 5) + 1)
            if not inside[rows].all(axis=0)[core].all():
                continue
            prof = s_r[rows].mean(axis=0)
            sc, _, amp, _ = _window_periodicity(prof[None, :], n, n, (3, t_max), 0.0)
            score = float(sc[0, 0])
            reg = _tick_regularity(prof, 0.5 * p.min_amplitude, max(3.0, p.max_period * short))
            key = (reg["n_regular"], score)
            if reg["n_regular"] == 0 or key <= (best.get("n_regular", 0), best["score"]):
                continue
            first, last = reg["first"], reg["last"]
            # how far the ticks reach from the line: rows whose response still varies along the ticks
            reach = 2
            for d in range(2, D + 1):
                r = D + side * d
                if s_r[r, first:last + 1].std() < 0.35 * s_r[rows, first:last + 1].std():
                    break
                reach = d
            best = {"found": True, "score": score, "period": reg["gap"], "amp": float(amp[0, 0]),
                    "n_ticks": reg["n_ticks"], "n_regular": reg["n_regular"], "regular_frac": reg["regular_frac"],
                    "extent": float(last - first), "side_sign": side, "reach": reach, "geom": (x1, y1, ux, uy, nx, ny),
                    "t": (float(ts[first]), float(ts[last])), "angle": float(np.degrees(np.arctan2(-uy, ux)) % 180.0)}
    if not best["found"]:
        return np.zeros((h, w), bool), none
    if not (best["n_regular"] >= p.bar_min_ticks and best["regular_frac"] >= p.bar_regular_frac
            and best["score"] >= p.bar_score and best["period"] >= 3.0):
        return np.zeros((h, w), bool), {"found": False, "score": best["score"],
                                        "why": f"scale-bar candidate: {best['n_regular']} regular ticks of "
                                               f"{best['n_ticks']} ({best['regular_frac']:.0%})"}
    x1, y1, ux, uy, nx, ny = best["geom"]
    t0, t1 = best["t"]
    t0 -= best["period"]
    t1 += best["period"]
    d_lo, d_hi = (-3, best["reach"] + 1) if best["side_sign"] > 0 else (-best["reach"] - 1, 3)
    quad = np.array([[x1 + t * ux + d * nx, y1 + t * uy + d * ny] for t, d in ((t0, d_lo), (t1, d_lo), (t1, d_hi), (t0, d_hi))])
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, np.round(quad * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
    # inside that strip, the dark line and ticks themselves (plus a 1 px fringe), not the skin between them
    marks = cv2.dilate((bh > 0.5 * thr).astype(np.uint8), np.ones((3, 3), np.uint8))
    best.update({"band": False, "coherence": float("nan"), "kind": "scale bar"})
    return (mask > 0) & (marks > 0), best


def _nanmedian(a: np.ndarray, axis: int | None = None) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN
        return np.nanmedian(a, axis=axis)


def _ruler_mask(L: np.ndarray, resp: np.ndarray, best: dict[str, Any], p: RulerParams, smooth: int
                ) -> tuple[np.ndarray, dict[str, Any]]:
    """Mask of a ruler candidate: rotated frame -> tick rows, tick peaks and span -> strip or tick pixels -> back.

    Returns (mask in the working frame, info with ``extent`` (px), ``n_ticks``, ``band``, ``side``)."""
    from scipy.ndimage import grey_opening, maximum_filter1d

    h, w = L.shape
    short = min(h, w)
    M, (nh, nw) = best["M"], best["shape"]
    R = cv2.warpAffine(resp, M, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0.0)
    Lr = cv2.warpAffine(L, M, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
    V = cv2.warpAffine(np.ones((h, w), np.uint8), M, (nw, nh), flags=cv2.INTER_NEAREST, borderValue=0) > 0
    Lr[~V] = np.nan
    win, starts = best["win"], best["starts"]
    x0 = int(starts[best["s0"]])
    x1 = int(starts[best["s0"] + best["len"] - 1] + win)
    period = float(best["period"])
    nothing: dict[str, Any] = {"extent": 0.0, "n_ticks": 0, "band": False, "side": None, "coherence": 0.0}
    # 1. rows where the same periodic signal persists within [x0, x1)
    tp = int(round(period))
    sc, _, amp, _ = _window_periodicity(R[:, x0:x1], x1 - x0, x1 - x0, (tp, tp))
    row_ok = (sc[:, 0] >= 0.5 * p.score_threshold) & (amp[:, 0] >= 0.5 * p.min_amplitude)
    ya = yb = int(best["row"])
    while ya - 1 >= 0 and row_ok[ya - 1]:
        ya -= 1
    while yb + 1 < nh and row_ok[yb + 1]:
        yb += 1
    # 2. tick peaks along the ruler (column profile of the tick rows, broad background removed)
    cp = R[ya:yb + 1, x0:x1].mean(axis=0)
    width = max(3, int(round(period)))
    cp = cp - grey_opening(cp, size=width)
    peak_thr = max(0.5 * p.min_amplitude, 0.3 * float(np.percentile(cp, 95)))
    half = max(1, int(period * 0.45))
    peaks = np.nonzero((cp >= maximum_filter1d(cp, 2 * half + 1)) & (cp >= peak_thr))[0]
    if peaks.size < 2:
        return np.zeros((h, w), bool), dict(nothing)
    # keep the longest chain of peaks whose gaps are at most 2.5 periods (a ruler is continuous)
    gaps = np.diff(peaks) <= 2.5 * period
    best_chain, cur = (0, 0), 0
    for i, g in enumerate(gaps):
        cur = cur + 1 if g else 0
        if cur > best_chain[1] - best_chain[0]:
            best_chain = (i + 1 - cur, i + 1)
    chain = peaks[best_chain[0]:best_chain[1] + 1]
    n_ticks = int(chain.size)
    xa = int(x0 + chain[0] - half)
    xb = int(x0 + chain[-1] + half + 1)
    xa, xb = max(0, xa), min(nw, xb)
    # 3. tick pixels
    pad = max(1, smooth // 2)
    region = np.zeros((nh, nw), bool)
    region[max(0, ya - pad):yb + pad + 1, xa:xb] = True
    vals = R[region & V]
    if vals.size == 0:
        return np.zeros((h, w), bool), dict(nothing)
    thr = max(p.min_amplitude * 2.0, 0.35 * float(np.percentile(np.abs(vals), 98)))
    ticks = region & (R > thr) & V
    # orientation coherence: ticks are perpendicular to the ruler (vertical here), so the response varies across
    # them (x) much more than along them (y); strands crossing the line obliquely do not
    reg = R[max(0, ya - pad):yb + pad + 1, xa:xb]
    reg = reg - reg.mean(axis=1, keepdims=True)  # a baseline along the ruler is not a tick
    gx = cv2.Sobel(reg, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(reg, cv2.CV_32F, 0, 1, ksize=3)
    ex, ey = float(np.sum(gx * gx)), float(np.sum(gy * gy))
    coherence = ex / (ex + ey + 1e-9)
    info: dict[str, Any] = {"band": False, "n_ticks": n_ticks, "extent": float(chain[-1] - chain[0] + 1),
                            "coherence": coherence}
    # 4. ruler strip: pixels between the ticks brighter than the skin beyond the tick rows on both sides?
    not_tick = ~(cv2.dilate(ticks.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    Lnt = np.where(not_tick, Lr, np.nan)
    band_L = float(_nanmedian(Lnt[ya:yb + 1, xa:xb]))
    depth = max(3, int(round(0.12 * short)))
    sides = [float(_nanmedian(Lr[lo:hi, xa:xb])) if hi - lo > 0 else np.nan
             for lo, hi in ((max(0, ya - depth - pad), max(0, ya - pad)), (min(nh, yb + 1 + pad), min(nh, yb + 1 + pad + depth)))]
    finite = [v for v in sides if not np.isnan(v)]
    out = ticks.copy()
    if not np.isnan(band_L) and finite and band_L - max(finite) >= 6.0:
        skin_L = max(finite)
        mid = 0.5 * (band_L + skin_L)
        rowL = _nanmedian(Lnt[:, xa:xb], axis=1)
        ba, bb = ya, yb
        while ba - 1 >= 0 and rowL[ba - 1] >= mid:  # NaN compares False
            ba -= 1
        while bb + 1 < nh and rowL[bb + 1] >= mid:
            bb += 1
        colL = _nanmedian(Lnt[ba:bb + 1, :], axis=0)
        ea, eb = xa, xb
        lim = int(math.ceil(period * 1.5))
        while ea - 1 >= 0 and xa - ea < lim and colL[ea - 1] >= mid:
            ea -= 1
        while eb < nw and eb - xb < lim and colL[eb] >= mid:
            eb += 1
        out[ba:bb + 1, ea:eb] = True
        info["band"] = True
    else:
        # no strip: the mask is the ticks. Polarity: dark ticks give R > 0, light ticks (on dark skin) R < 0, and
        # gaps narrower than the kernel the other sign; the ticks are the marks whose L* is farther from the skin
        # beyond the tick rows. Long ticks (every 5th / 10th) reach beyond the rows where the short ones are
        # periodic: marks of that polarity in a taller region are kept when they touch the tick rows.
        E = max(2, int(round(0.1 * short)))
        skin_rows = np.r_[max(0, ya - E - pad):max(0, ya - pad), min(nh, yb + 1 + pad):min(nh, yb + 1 + pad + E)]
        skin_L0 = float(_nanmedian(Lr[skin_rows, xa:xb])) if skin_rows.size else np.nan
        pos, neg = region & (R > thr) & V, region & (R < -thr) & V
        dpos = abs(float(_nanmedian(Lr[pos])) - skin_L0) if pos.any() else 0.0
        dneg = abs(float(_nanmedian(Lr[neg])) - skin_L0) if neg.any() else 0.0
        sign = -1.0 if dneg > dpos else 1.0  # NaN compares False: dark ticks by default
        tall = np.zeros((nh, nw), bool)
        tall[max(0, ya - E):yb + E + 1, xa:xb] = True
        marks = (tall & (sign * R > thr) & V).astype(np.uint8)
        _, lab_c = cv2.connectedComponents(marks, connectivity=8)
        touch = np.unique(lab_c[region & (marks > 0)])
        out = np.isin(lab_c, touch[touch > 0])
        out = cv2.dilate(out.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    out &= V
    Minv = cv2.invertAffineTransform(M)
    back = cv2.warpAffine(out.astype(np.uint8) * 255, Minv, (w, h), flags=cv2.INTER_LINEAR, borderValue=0) >= 128
    ys, xs = np.nonzero(back)
    if ys.size:  # the side whose edge is closest to the mask's centroid, or "inside"
        cy, cx = ys.mean() / h, xs.mean() / w
        d = {"top": cy, "bottom": 1 - cy, "left": cx, "right": 1 - cx}
        side = min(d, key=lambda s_: d[s_])
        info["side"] = side if d[side] < 0.25 else "inside"
    else:
        info["side"] = None
    return back, info


# ----------------------------------------------------------------------------------------------- inpainting


def inpaint_mishra(img: np.ndarray, mask: np.ndarray, grid: int = 8, k: int = 3, levels: int = 16,
                   blend: bool = True, lesion_mask: np.ndarray | None = None) -> np.ndarray:
    """Mishra et al.'s patch k-means fill: masked pixels take their patch's dominant unmasked colour.

    The image is split into ``grid`` x ``grid`` patches (rows / columns split as evenly as possible). In
    each patch, the RGB values of the UNMASKED pixels are quantised to ``levels`` levels per channel
    (``floor(v * levels / 256)``) and clustered with k-means (``cv2.kmeans``, ``k`` clusters, initial labels
    from luminance quantiles, so the result is deterministic and independent of OpenCV's RNG); the dominant
    (most populous) cluster's colour is the mean ORIGINAL RGB of its members (no quantisation bias). Patches
    with fewer than ``max(k, 8)`` unmasked pixels take the colour of the nearest patch (patch-centre distance)
    that has one. With ``blend`` (default) the fill colour at a pixel is the bilinear interpolation of the
    patch colours at the patch centres, so there are no seams at patch borders; ``blend=False`` is the
    original piecewise-constant fill. Unmasked pixels are returned unchanged.

    ``lesion_mask`` (optional extension, not in the original method): masked pixels outside the lesion are
    filled from unmasked NON-lesion pixels only and masked pixels inside it from unmasked lesion pixels only, so
    a marker ring drawn next to a lesion is not filled with the lesion's colour where a patch is mostly lesion.
    """
    _check_img(img)
    m = _as_mask(mask, img.shape[:2], "mask")
    assert m is not None
    if grid < 1 or k < 1 or not 2 <= levels <= 256:
        raise UsageError(f"inpaint_mishra needs grid >= 1, k >= 1 and 2 <= levels <= 256 (got {grid}, {k}, {levels})")
    les = _as_mask(lesion_mask, img.shape[:2], "lesion_mask")
    if not m.any():
        return img.copy()
    if les is None or not les.any() or les.all():
        return _mishra_fill(img, m, ~m, grid, k, levels, blend)
    out = img
    for region in (~les, les):
        fill = m & region
        if not fill.any():
            continue
        src = ~m & region
        if src.sum() < max(k, 8):  # nothing of this kind left unmasked: use any unmasked pixel
            src = ~m
        out = _mishra_fill(out, fill, src, grid, k, levels, blend)
    return out


def _mishra_fill(img: np.ndarray, m: np.ndarray, source: np.ndarray, grid: int, k: int, levels: int,
                 blend: bool) -> np.ndarray:
    """:func:`inpaint_mishra` for fill mask ``m`` with colours sampled from ``source`` pixels only."""
    out = img.copy()
    if not m.any():
        return out
    H, W = m.shape
    ys = np.linspace(0, H, grid + 1).round().astype(int)
    xs = np.linspace(0, W, grid + 1).round().astype(int)
    colours = np.full((grid, grid, 3), np.nan, np.float64)
    has_mask = np.zeros((grid, grid), bool)
    for i in range(grid):
        for j in range(grid):
            pm = m[ys[i]:ys[i + 1], xs[j]:xs[j + 1]]
            has_mask[i, j] = pm.any()
    # patches whose colour is needed: masked ones and (for blending) their 8-neighbours
    need = cv2.dilate(has_mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0 if blend else has_mask
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    min_px = max(k, 8)
    weights = np.array([0.299, 0.587, 0.114], np.float32)

    def patch_colour(i: int, j: int) -> None:
        px = img[ys[i]:ys[i + 1], xs[j]:xs[j + 1]][source[ys[i]:ys[i + 1], xs[j]:xs[j + 1]]]
        if px.shape[0] < min_px:
            return
        q = (px.astype(np.int32) * levels // 256).astype(np.float32)
        kk = min(k, px.shape[0])
        if kk == 1 or np.all(q == q[0]):
            colours[i, j] = px.mean(axis=0)
            return
        order = np.argsort(q @ weights, kind="stable")  # initial labels: luminance quantiles (deterministic)
        init = np.empty(px.shape[0], np.int32)
        init[order] = np.arange(px.shape[0]) * kk // px.shape[0]
        _, labels, _ = cv2.kmeans(q, kk, init.reshape(-1, 1).copy(), crit, 1, cv2.KMEANS_USE_INITIAL_LABELS)
        labels = labels.ravel()
        dom = int(np.argmax(np.bincount(labels, minlength=kk)))
        colours[i, j] = px[labels == dom].mean(axis=0)

    computed = np.zeros((grid, grid), bool)
    for i, j in zip(*np.nonzero(need)):
        patch_colour(int(i), int(j))
        computed[i, j] = True
    if np.isnan(colours[need][:, 0]).any():  # some needed patch has no usable pixels: look further away
        for i, j in zip(*np.nonzero(~computed)):
            patch_colour(int(i), int(j))
    known = ~np.isnan(colours[..., 0])
    if not known.any():  # (almost) the whole image is masked: nothing to cluster
        fill = img[source].mean(axis=0) if source.any() else np.full(3, 127.5)
        colours[:] = fill
    else:
        # nearest known patch for the rest (patch-centre distance; ties -> first in row-major order)
        ki, kj = np.nonzero(known)
        for i, j in zip(*np.nonzero(~known)):
            d = (ki - i) ** 2 + (kj - j) ** 2
            t = int(np.argmin(d))
            colours[i, j] = colours[ki[t], kj[t]]
    if blend and grid > 1:
        cy = (ys[:-1] + ys[1:]) / 2.0 - 0.5
        cx = (xs[:-1] + xs[1:]) / 2.0 - 0.5
        rr, cc = np.nonzero(m)
        fy = np.interp(rr, cy, np.arange(grid))
        fx = np.interp(cc, cx, np.arange(grid))
        i0 = np.clip(np.floor(fy).astype(int), 0, grid - 1)
        j0 = np.clip(np.floor(fx).astype(int), 0, grid - 1)
        i1 = np.minimum(i0 + 1, grid - 1)
        j1 = np.minimum(j0 + 1, grid - 1)
        ty = (fy - i0)[:, None]
        tx = (fx - j0)[:, None]
        val = ((1 - ty) * (1 - tx) * colours[i0, j0] + (1 - ty) * tx * colours[i0, j1]
               + ty * (1 - tx) * colours[i1, j0] + ty * tx * colours[i1, j1])
        out[rr, cc] = np.clip(np.rint(val), 0, 255).astype(np.uint8)
    else:
        ri = np.searchsorted(ys, np.arange(H), side="right") - 1
        ci = np.searchsorted(xs, np.arange(W), side="right") - 1
        rr, cc = np.nonzero(m)
        out[rr, cc] = np.clip(np.rint(colours[ri[rr], ci[cc]]), 0, 255).astype(np.uint8)
    return out


def inpaint(img: np.ndarray, mask: np.ndarray, method: str = "mishra", radius: int = 3,
            lesion_mask: np.ndarray | None = None) -> np.ndarray:
    """Fill ``mask`` (bool HxW) in ``img``: ``"mishra"`` (:func:`inpaint_mishra`, defaults grid 8, k 3, 16
    levels, blended; ``lesion_mask`` is passed on), ``"telea"`` or ``"ns"`` (:func:`cv2.inpaint` with
    ``INPAINT_TELEA`` / ``INPAINT_NS`` and ``radius`` px; ``lesion_mask`` unused). Unmasked pixels are unchanged."""
    _check_img(img)
    if method not in INPAINT_METHODS:
        raise UsageError(f"unknown inpainting method {method!r}", hint=f"use one of: {', '.join(INPAINT_METHODS)}")
    m = _as_mask(mask, img.shape[:2], "mask")
    assert m is not None
    if not m.any():
        return img.copy()
    if method == "mishra":
        return inpaint_mishra(img, m, lesion_mask=lesion_mask)
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    out = cv2.inpaint(img, m.astype(np.uint8) * 255, float(radius), flag)
    out[~m] = img[~m]
    return out


def remove_confounders(img: np.ndarray, kinds: set[str] | frozenset[str] | tuple[str, ...], method: str = "mishra",
                       fov_mask: np.ndarray | None = None, lesion_mask: np.ndarray | None = None,
                       dilate: int | None = None, lesion_margin: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Detect the confounders in ``kinds`` (subset of ``{"ink", "ruler"}``; "ruler" includes stickers) and inpaint them.

    Returns ``(restored image, info)`` with info keys: ``ink_frac`` (fraction of the image's pixels flagged
    as ink, in [0, 1]; 0.0 when "ink" is not requested), ``ruler_detected`` (bool: ruler tick marks / a scale
    bar), ``sticker_detected`` (bool: a coloured sticker), ``ruler_frac`` (fraction of pixels in the ruler |
    sticker mask), ``ruler_reason`` (str), ``inpainted_frac`` (fraction actually filled, after dilation),
    ``masks`` (dict: ``ink``, ``ruler`` (ticks only), ``sticker``, ``inpainted``: bool HxW). The union of the
    masks is dilated by ``dilate`` px (default: 2 px per 256 px of the short side, at least 1) before
    inpainting with ``method`` (see :func:`inpaint`); pixels outside ``fov_mask`` are never changed.

    ``lesion_mask`` tells the ink detector where the lesion is and, for ``"mishra"``, which marks are filled from
    lesion colours. ``lesion_margin`` (px): the mask includes this much skin around the lesion (as
    :func:`lesionkit.prep.geometry.segment_lesion`'s does, :func:`~lesionkit.prep.geometry.lesion_margin_px`); the
    fill then takes the mask eroded by it, so a marker ring drawn in that margin is filled with skin, not with the
    lesion's colour.
    """
    _check_img(img)
    ks = set(kinds)
    bad = ks - set(CONFOUNDER_KINDS)
    if bad:
        raise UsageError(f"unknown confounder kind(s): {', '.join(sorted(bad))}",
                         hint=f"use any of: {', '.join(CONFOUNDER_KINDS)}")
    if method not in INPAINT_METHODS:
        raise UsageError(f"unknown inpainting method {method!r}", hint=f"use one of: {', '.join(INPAINT_METHODS)}")
    if not isinstance(lesion_margin, (int, np.integer)) or lesion_margin < 0:
        raise UsageError(f"lesion_margin must be an int >= 0 (got {lesion_margin!r})")
    H, W = img.shape[:2]
    fov = _as_mask(fov_mask, (H, W), "fov_mask")
    les = _as_mask(lesion_mask, (H, W), "lesion_mask")
    empty = np.zeros((H, W), bool)
    ink = detect_ink(img, fov_mask=fov, lesion_mask=les) if "ink" in ks else empty
    det = detect_ruler(img, lesion_mask=les) if "ruler" in ks else None
    ruler = det.mask if det is not None else empty  # ruler ticks | stickers: everything that gets inpainted
    union = ink | ruler
    r = dilate if dilate is not None else max(1, int(round(2 * min(H, W) / 256)))
    if union.any() and r > 0:
        union = cv2.dilate(union.astype(np.uint8), _disk(r)) > 0
    if fov is not None:
        union &= fov
    fill_les = les
    if les is not None and lesion_margin > 0 and union.any():
        fill_les = cv2.erode(les.view(np.uint8), _disk(int(lesion_margin))).view(bool)
    out = inpaint(img, union, method, lesion_mask=fill_les) if union.any() else img.copy()
    info = {
        "ink_frac": float(ink.mean()),
        "ruler_detected": bool(det.ruler) if det is not None else False,
        "sticker_detected": bool(det.sticker) if det is not None else False,
        "ruler_frac": float(ruler.mean()),
        "ruler_reason": det.reason if det is not None else "not requested",
        "inpainted_frac": float(union.mean()),
        "masks": {"ink": ink,
                  "ruler": det.ruler_mask if det is not None and det.ruler_mask is not None else empty,
                  "sticker": det.sticker_mask if det is not None and det.sticker_mask is not None else empty,
                  "inpainted": union},
    }
    return out, info


__all__ = [
    "CONFOUNDER_KINDS", "INPAINT_METHODS", "InkParams", "RulerDetection", "RulerParams", "detect_ink", "detect_ruler",
    "inpaint", "inpaint_mishra", "remove_confounders",
]
