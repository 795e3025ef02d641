"""Hair detection and removal for dermoscopy images: dark hair (black-hat) and light / white hair (white top-hat).

Algorithm of :func:`detect_hair` (every size below is in pixels of an image whose short side is
``reference_size`` and scales with the image, see "Sizes"):

1. Channels (uint8). Dark hair is measured on ``dark_channel`` (default ``"max"`` = the brightest of R, G, B:
   near-black hair is dark in every channel, brown pigment keeps a bright red channel), light hair on
   ``light_channel`` (default ``"green"``: white, grey and blond hair are brighter than reddish skin in green,
   while grey hair can be darker than pink skin in red and blond hair darker in blue). ``"grey"`` is ITU-R 601
   luma as :func:`cv2.cvtColor` computes it. Pixels outside ``fov_mask`` are set to the channel's median inside
   it first, so a dermoscope's dark surround creates no response.
2. Response (0-255): black-hat (closing - image) for dark hair, white top-hat (image - opening) for light hair,
   structuring element ``kernel_shape`` of side ``kernel_size``: structures narrower than about half of it
   respond. With ``light_after_dark`` the dark strands already found are filled (with a closing) before the
   white top-hat, so skin between two dark strands is not taken for a light strand.
3. Threshold: candidates are pixels with ``response > threshold``. ``"auto"`` = ``max(auto_floor, median +
   auto_k * 1.4826 * MAD)`` of the response inside the field of view, computed from its histogram with each
   integer value spread uniformly over ``[v - 0.5, v + 0.5]`` (so the threshold moves continuously; integer
   MADs of 1, 2, 3 would make it jump), and iterated up to 4 times on the values below the current threshold
   so that dense hair does not inflate it (measured on synthetic responses: unchanged with hair covering 20 %
   of the field of view at twice the threshold, 30 % at 3x, 40 % at 4x).
4. Components (8-connected) are kept when all of: area >= ``min_area``; elongation ``length / width`` >=
   ``min_elongation``, with ``length`` = the major-axis length of the component's second-moment ellipse
   (``4 * sqrt(largest eigenvalue)``, as ``skimage.measure.regionprops``' ``axis_major_length``) and ``width =
   area / length`` (a straight strand of length L and width w scores about L / w, a disc 1.27); at least a
   fraction ``line_support`` of its pixels lie on a straight run of candidates ``line_length`` long in one of
   12 orientations (binary opening with line segments, maximum over orientations) -- or, instead of that
   test, elongation >= ``accept_elongation`` (long curved hairs); the small holes it encloses (<= ``kernel_size**2
   / 2`` px) total at most ``max_mesh`` times its area (a mesh -- pigment network or its light negative --
   encloses many small cells; crossing hairs enclose few, large ones). Hairs are long, locally straight and rarely enclose small cells; pigment-network meshes,
   dots, globules, lesion borders and specular highlights are not. ``min_area = min_elongation =
   line_support = 0`` and ``max_mesh = 1`` switch the filter off (the published recipe has none).
5. Hysteresis (``grow`` > 0): candidates above ``grow * threshold`` that lie on such straight runs and are
   connected to a kept strand are added (a hair crossing a lesion contrasts less there than over skin).

:func:`remove_hair` dilates the union of both masks by ``dilate`` px (a strand's soft edge is below threshold
but still visible) and fills it with :func:`cv2.inpaint` (``inpaint_method``, ``inpaint_radius``). On small
images, where that radius rounds to 0 px (short side <= 128 px at the defaults: 0.5 rounds to 0), it adds instead the
pixels next to the strands that still respond at half the threshold (``HairDetection.soft_edge``): a full pixel
of dilation there costs more lesion detail than it removes hair (``benchmarks/bench_hair.py`` at 96 and 128 px).

Sizes: with ``reference_size`` set, ``kernel_size``, ``line_length``, ``min_area`` (as an area) and ``dilate``
scale with ``short side / reference_size`` (kernels stay odd and at least 3 px); with ``reference_size=None``
they are fixed pixels. ``inpaint_radius`` is always in pixels (cv2.inpaint's cost grows with its square). For
speed, the line-support test of images at least twice the reference size runs on the candidate mask
max-pooled by ``short side // reference_size``, and only when some component still needs it.

Tiny images: an image whose short side is below the effective kernel size comes back unchanged with an empty
detection (``frac`` 0): a kernel wider than the image sees no structure narrower than itself.

Measured quality and speed: ``benchmarks/bench_hair.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from lesionkit.errors import InputError, UsageError

KernelShape = Literal["cross", "ellipse", "line-bank", "rect"]
Channel = Literal["grey", "max", "min", "red", "green", "blue"]
KERNEL_SHAPES: tuple[str, ...] = ("cross", "ellipse", "line-bank", "rect")
CHANNELS: tuple[str, ...] = ("grey", "max", "min", "red", "green", "blue")
INPAINT_METHODS: tuple[str, ...] = ("telea", "ns")
LINE_ANGLES = 12  # orientations of line structuring elements (every 15 degrees)
_MESH_HOLE = 0.5  # a "small hole" has at most _MESH_HOLE * kernel_size**2 pixels
_AUTO_ITER = 4  # re-estimations of the "auto" threshold on the values below the previous one
_EDGES = np.arange(257, dtype=np.float64) - 0.5  # bin edges of a 256-bin histogram of integer values


@dataclass(frozen=True)
class HairParams:
    """Parameters of hair detection and removal; the defaults are the ``"lesionkit"`` preset. Algorithm and size
    scaling: see the module docstring.

    dark / light: detect dark hair (black-hat) / light hair (white top-hat).
    kernel_shape: structuring element of the top-hats: ``"cross"``, ``"ellipse"``, ``"rect"`` (OpenCV's
        ``MORPH_CROSS`` / ``MORPH_ELLIPSE`` / ``MORPH_RECT``) or ``"line-bank"`` (line segments in ``LINE_ANGLES``
        orientations; the response is the maximum of the per-orientation top-hats).
    kernel_size: odd side of the structuring element, px at ``reference_size``.
    reference_size: short side (px) at which the pixel sizes hold; ``None`` = fixed pixels at any image size.
    threshold: ``"auto"`` or an int in 0..255; a pixel is a candidate when its response is strictly greater.
    min_area: smallest component area kept, px at ``reference_size`` (0 = no area filter).
    min_elongation: smallest component length / width kept (0 = no shape filter).
    line_support: smallest fraction (0..1) of a component's pixels on a straight candidate run of
        ``line_length`` px (0 = no such test).
    line_length: length of that run, px at ``reference_size`` (odd, >= 3).
    accept_elongation: components at least this elongated skip the line-support test (curved hairs; 0 = never).
    max_mesh: largest ratio (0..1) of the small holes a component encloses (each at most ``kernel_size**2 / 2``
        px: the cells of a pigment network or of its light negative) to the component's own area; 1 = no test.
    grow: hysteresis factor in [0, 1): candidates above ``grow * threshold`` on straight runs that touch a kept
        strand are added (0 = off).
    dilate: dilation radius of the final mask before inpainting, px at ``reference_size`` (0 = none; where it
        scales to 0 px, the strands' soft edge is added instead, see the module docstring).
    inpaint_method / inpaint_radius: :func:`cv2.inpaint` flavour (``"telea"`` or ``"ns"``) and radius in px (>= 1).
    dark_channel / light_channel: channel each polarity is measured on, one of ``CHANNELS``.
    auto_k / auto_floor: ``"auto"`` threshold = ``max(auto_floor, median + auto_k * 1.4826 * MAD)``.
    light_after_dark: fill the dark strands found before looking for light ones.
    """

    dark: bool = True
    light: bool = True
    kernel_shape: KernelShape = "ellipse"
    kernel_size: int = 11
    reference_size: int | None = 256
    threshold: int | Literal["auto"] = "auto"
    min_area: int = 20
    min_elongation: float = 3.0
    line_support: float = 0.7
    line_length: int = 21
    accept_elongation: float = 20.0
    max_mesh: float = 0.07
    grow: float = 0.0
    dilate: int = 1
    inpaint_method: Literal["telea", "ns"] = "ns"
    inpaint_radius: int = 1
    dark_channel: Channel = "max"
    light_channel: Channel = "green"
    auto_k: float = 7.0
    auto_floor: int = 4
    light_after_dark: bool = True

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> UsageError:
            return UsageError(f"HairParams.{name} must be {expected} (got {getattr(self, name)!r})")

        def is_int(v: object) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        if self.kernel_shape not in KERNEL_SHAPES:
            raise bad("kernel_shape", "one of " + ", ".join(KERNEL_SHAPES))
        for name in ("kernel_size", "line_length"):
            v = getattr(self, name)
            if not is_int(v) or v < 3 or v % 2 == 0:
                raise bad(name, "an odd int >= 3")
        if self.reference_size is not None and (not is_int(self.reference_size) or self.reference_size < 8):
            raise bad("reference_size", "None or an int >= 8")
        if self.threshold != "auto" and (not is_int(self.threshold) or not 0 <= self.threshold <= 255):
            raise bad("threshold", '"auto" or an int in 0..255')
        for name in ("min_area", "dilate", "auto_floor"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "an int >= 0")
        if not is_int(self.inpaint_radius) or self.inpaint_radius < 1:
            raise bad("inpaint_radius", "an int >= 1")
        if self.inpaint_method not in INPAINT_METHODS:
            raise bad("inpaint_method", "one of " + ", ".join(INPAINT_METHODS))
        for name in ("dark_channel", "light_channel"):
            if getattr(self, name) not in CHANNELS:
                raise bad(name, "one of " + ", ".join(CHANNELS))
        if not 0.0 <= self.line_support <= 1.0:
            raise bad("line_support", "in [0, 1]")
        if not 0.0 <= self.max_mesh <= 1.0:
            raise bad("max_mesh", "in [0, 1]")
        if not 0.0 <= self.grow < 1.0:
            raise bad("grow", "in [0, 1)")
        if not self.accept_elongation >= 0:
            raise bad("accept_elongation", ">= 0")
        if not self.min_elongation >= 0:
            raise bad("min_elongation", ">= 0")
        if not self.auto_k >= 0:
            raise bad("auto_k", ">= 0")


PRESETS: dict[str, HairParams] = {
    # Bevan & Atapour-Abarghouei ("Skin Deep Unlearning", 2022), as published: greyscale, 17x17 cross black-hat,
    # binary threshold 10, cv2.inpaint Telea radius 1, dark hair only, no component filter; fixed pixels (they
    # applied it to 256x256 images).
    "bevan": HairParams(dark=True, light=False, kernel_shape="cross", kernel_size=17, reference_size=None,
                        threshold=10, min_area=0, min_elongation=0.0, line_support=0.0, accept_elongation=0.0,
                        max_mesh=1.0, grow=0.0, dilate=0, inpaint_method="telea", inpaint_radius=1,
                        dark_channel="grey", light_after_dark=False),
    # dark + light hair, measured best on synthetic strands over real HAM10000 images (benchmarks/bench_hair.py)
    "lesionkit": HairParams(),
    # the same detector for dark hair only (never touches light structures)
    "dark": HairParams(light=False),
}


def get_preset(name: str) -> HairParams:
    """The :class:`HairParams` of a named preset (``PRESETS``); :class:`UsageError` listing the names otherwise."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown hair preset {name!r}; valid: {', '.join(PRESETS)}",
                         hint="e.g. 'lesionkit' (dark + light hair) or 'bevan' (the published recipe)") from None


@dataclass(frozen=True)
class HairDetection:
    """Result of :func:`detect_hair` (bool HxW masks, before the inpainting dilation): ``dark`` and ``light``
    strands, ``mask = dark | light``, and ``frac`` = the fraction of image pixels in ``mask``, in [0, 1].
    ``soft_edge``: only where the inpainting dilation scales to 0 px (:func:`dilate_px`), the pixels 8-adjacent to
    a strand whose response exceeds half the threshold (not part of ``mask`` or ``frac``); else None."""

    mask: np.ndarray
    dark: np.ndarray
    light: np.ndarray
    frac: float
    soft_edge: np.ndarray | None = None


# ----------------------------------------------------------------------------------------------- internals


def _check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        got = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise InputError(f"hair removal needs an RGB uint8 image of shape (H, W, 3) (got {got})")


def _scale(params: HairParams, shape: tuple[int, ...]) -> float:
    return 1.0 if params.reference_size is None else min(shape[:2]) / params.reference_size


def _odd(x: float) -> int:
    k = max(3, round(x))
    return k if k % 2 else k + 1


@lru_cache(maxsize=64)
def _line_kernels(k: int) -> list[np.ndarray]:
    """Line segments of ``k`` px through the centre of a ``k x k`` kernel in ``LINE_ANGLES`` orientations; short
    segments that rasterise identically are kept once (the maximum over orientations does not change)."""
    import cv2

    out: list[np.ndarray] = []
    c = (k - 1) / 2.0
    for i in range(LINE_ANGLES):
        a = math.pi * i / LINE_ANGLES
        dx, dy = c * math.cos(a), c * math.sin(a)
        ker = np.zeros((k, k), np.uint8)
        cv2.line(ker, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1, 1)
        if not any(np.array_equal(ker, o) for o in out):
            out.append(ker)
    return out


@lru_cache(maxsize=64)
def _kernels(shape: str, k: int) -> tuple[tuple[np.ndarray, ...], ...]:
    """The structuring elements of ``shape`` at side ``k``, each as a tuple of centred rectangles whose union it is
    (:func:`_rect_cover`), or as itself when it is no such union (line segments)."""
    import cv2

    if shape == "line-bank":
        return tuple((ker,) for ker in _line_kernels(k))
    code = {"cross": cv2.MORPH_CROSS, "ellipse": cv2.MORPH_ELLIPSE, "rect": cv2.MORPH_RECT}[shape]
    ker = cv2.getStructuringElement(code, (k, k))
    return (_rect_cover(ker) or (ker,),)


def _rect_cover(ker: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """Centred all-ones rectangles whose union is the odd-sided kernel ``ker``, one per distinct row width, or None
    when ``ker`` is no such union. A dilation (erosion) by a union is the maximum (minimum) of the dilations
    (erosions) by its parts, and OpenCV runs rectangles as two 1-D passes: a 15x15 ellipse as 5 rectangles is
    1.5x faster than as one kernel of 177 points, with identical output (the tests compare them)."""
    kh, kw = ker.shape
    if kh % 2 == 0 or kw % 2 == 0:
        return None
    widths = (ker != 0).sum(axis=1)
    rects = []
    for w in sorted(set(widths[widths > 0].tolist())):
        h = int((widths >= w).sum())
        if h % 2 == 0 or w % 2 == 0:
            return None
        rects.append(np.ones((h, w), np.uint8))
    union = np.zeros((kh, kw), bool)
    for r in rects:
        y0, x0 = (kh - r.shape[0]) // 2, (kw - r.shape[1]) // 2
        union[y0:y0 + r.shape[0], x0:x0 + r.shape[1]] = True
    return tuple(rects) if rects and np.array_equal(union, ker != 0) else None


def _channel(img: np.ndarray, name: str) -> np.ndarray:
    import cv2

    from lesionkit.prep.color import rgb_max, rgb_min

    if name == "grey":
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if name in ("red", "green", "blue"):
        return cv2.extractChannel(img, ("red", "green", "blue").index(name))  # 3x cheaper than a full split
    if name == "max":
        return rgb_max(img)
    if name == "min":
        return rgb_min(img)
    raise ValueError(f"unknown channel {name!r}")


def _dilate(x: np.ndarray, parts: tuple[np.ndarray, ...]) -> np.ndarray:
    import cv2

    out = cv2.dilate(x, parts[0])
    for r in parts[1:]:
        cv2.max(out, cv2.dilate(x, r), dst=out)
    return out


def _erode(x: np.ndarray, parts: tuple[np.ndarray, ...]) -> np.ndarray:
    import cv2

    out = cv2.erode(x, parts[0])
    for r in parts[1:]:
        cv2.min(out, cv2.erode(x, r), dst=out)
    return out


def _tophat(ch: np.ndarray, dark: bool, kernels: tuple[tuple[np.ndarray, ...], ...]) -> np.ndarray:
    """Black-hat (``dark``: closing - image) or white top-hat (image - opening) of ``ch``, the maximum over
    ``kernels`` (each a union of parts, :func:`_kernels`); equal to ``cv2.morphologyEx`` with the whole kernel."""
    import cv2

    resp = None
    for parts in kernels:
        r = cv2.subtract(_erode(_dilate(ch, parts), parts), ch) if dark else \
            cv2.subtract(ch, _dilate(_erode(ch, parts), parts))
        resp = r if resp is None else cv2.max(resp, r, dst=resp)
    return resp


def _threshold(resp: np.ndarray, params: HairParams, fov: np.ndarray | None) -> float:
    """The fixed threshold, or the ``"auto"`` one: ``max(auto_floor, median + auto_k * 1.4826 * MAD)`` of the
    response over the field of view. Median and MAD treat each integer response ``v`` as spread uniformly over
    ``[v - 0.5, v + 0.5]``, so they move continuously (plain integer MADs of 1, 2, 3 would make the threshold
    jump in steps of ``1.48 * auto_k``); re-estimated on the values below the previous threshold until it
    settles (at most ``_AUTO_ITER`` times), so that dense hair does not inflate it."""
    import cv2

    if params.threshold != "auto":
        return float(params.threshold)
    hist = cv2.calcHist([resp], [0], None if fov is None else fov.view(np.uint8), [256], [0, 256]).ravel()
    hist = hist.astype(np.float64)
    t = 255.0
    for _ in range(_AUTO_ITER):
        h = hist.copy()
        h[math.floor(t) + 1:] = 0.0
        t_new = _robust_threshold(h, params)
        if abs(t_new - t) < 0.25:
            return t_new
        t = t_new
    return t


def _robust_threshold(hist: np.ndarray, params: HairParams) -> float:
    med, mad = _hist_median_mad(hist)
    if not math.isfinite(med):
        return 255.0
    return max(float(params.auto_floor), med + params.auto_k * 1.4826 * mad)


def _hist_median_mad(hist: np.ndarray) -> tuple[float, float]:
    """Median and MAD of integer values ``v`` (``hist[v]`` of each) spread uniformly over ``[v - 0.5, v + 0.5]``.

    The CDF ``F`` of that mixture is piecewise linear with knots at the bin edges, so the median is one
    interpolation; the CDF of ``|x - med|``, ``G(d) = F(med + d) - F(med - d)``, is piecewise linear with knots
    where ``med +- d`` meets a bin edge, so the MAD is one more. Exact (the tests compare it with bisection on the
    mixture's CDF). ``(nan, nan)`` for an empty histogram.
    """
    c = np.cumsum(hist, dtype=np.float64)
    if not c[-1] > 0:
        return float("nan"), float("nan")
    half = 0.5 * float(c[-1])
    j = int(np.searchsorted(c, half))  # the first bin where F reaches `half`: it rises through it inside the bin
    med = j - 0.5 + (half - (float(c[j]) - float(hist[j]))) / float(hist[j])
    # knots of F at the bin edges: F(v - 0.5) = mass below bin v (flat across empty bins)
    edges = _EDGES if hist.size == 256 else np.arange(hist.size + 1, dtype=np.float64) - 0.5
    f = np.concatenate(([0.0], c))
    d = np.unique(np.concatenate(([0.0], np.abs(edges - med))))  # G(0) = 0
    g = np.interp(med + d, edges, f) - np.interp(med - d, edges, f)
    return med, float(np.interp(half, g, d))


def _small_holes(cand: np.ndarray, hole_area: float, pool: int = 1) -> np.ndarray:
    """Small holes of ``cand``: 4-connected regions of non-candidates that do not reach the image border and have
    at most ``hole_area`` pixels (the cells of a pigment network or of its light negative). With ``pool > 1``
    found on ``cand`` max-pooled by ``pool`` (``hole_area`` stays in full-size pixels) and mapped back.

    The enclosed background is found with one flood fill from the border (:func:`geometry.fill_holes`), and only
    it is labelled: cheaper than labelling the whole background."""
    import cv2

    from lesionkit.prep.geometry import fill_holes

    c8 = cand.view(np.uint8)
    h, w = c8.shape
    if pool > 1:
        c8 = cv2.dilate(c8, np.ones((pool, pool), np.uint8), anchor=(0, 0))[::pool, ::pool]
        hole_area /= pool * pool
    enclosed = fill_holes(c8) & (c8 == 0)
    holes = np.zeros(c8.shape, bool)
    idx = np.flatnonzero(enclosed)
    if idx.size:
        n, labels = cv2.connectedComponents(enclosed.view(np.uint8), connectivity=4)
        lab = labels.ravel()[idx]
        small = np.bincount(lab, minlength=n) <= hole_area
        holes.ravel()[idx] = small[lab]
    if pool > 1:
        holes = np.repeat(np.repeat(holes, pool, axis=0), pool, axis=1)[:h, :w]
    return holes & ~cand


def _components(cand: np.ndarray, min_area: float, min_elong: float, line: tuple[int, int] | None,
                min_support: float, accept_elong: float = 0.0, holes: np.ndarray | None = None,
                max_mesh: float = 1.0) -> np.ndarray:
    """Keep the 8-connected components of ``cand`` with area >= ``min_area``, length / width >= ``min_elong``
    and, unless length / width >= ``accept_elong`` (> 0), at least a fraction ``min_support`` of their pixels on
    a straight run (``line = (length, pool)`` of :func:`_line_support`; None = no such test).

    The line-support test, the costliest step, runs only when some component still needs it (it passed every
    other filter and is not accepted by elongation). Returns a new mask."""
    import cv2

    use_line = line is not None and min_support > 0
    if not cand.any() or (min_area <= 0 and min_elong <= 0 and not use_line):
        return cand
    with_holes = holes is not None and max_mesh < 1.0 and holes.any()
    # a hole is enclosed by one 8-connected component: labelling cand | holes gives each hole its component
    n, labels = cv2.connectedComponents((cand | holes).view(np.uint8) if with_holes else cand.view(np.uint8),
                                        connectivity=8)
    idx = np.flatnonzero(cand)
    lab = labels.ravel()[idx]
    area = np.bincount(lab, minlength=n).astype(np.float64)
    keep = area >= max(min_area, 1.0)
    keep[0] = False
    elong = None
    if min_elong > 0 or accept_elong > 0:
        ys, xs = np.divmod(idx, cand.shape[1])
        xf, yf = xs.astype(np.float64), ys.astype(np.float64)
        a = np.maximum(area, 1.0)
        mx = np.bincount(lab, xf, n) / a
        my = np.bincount(lab, yf, n) / a
        cxx = np.bincount(lab, xf * xf, n) / a - mx * mx + 1.0 / 12.0  # + 1/12: a pixel's own extent
        cyy = np.bincount(lab, yf * yf, n) / a - my * my + 1.0 / 12.0
        cxy = np.bincount(lab, xf * yf, n) / a - mx * my
        lam = (cxx + cyy) / 2.0 + np.sqrt(((cxx - cyy) / 2.0) ** 2 + cxy * cxy)
        length = 4.0 * np.sqrt(np.maximum(lam, 0.0))
        elong = length * length / a
    if min_elong > 0:
        keep &= elong >= min_elong
    if with_holes:
        keep &= np.bincount(labels[holes], minlength=n) <= max_mesh * area
    if use_line:
        need = keep & ~(elong >= accept_elong) if accept_elong > 0 else keep.copy()
        if need.any():
            support = _line_support(cand, line[0], line[1])
            ok = np.bincount(lab, support.ravel()[idx].astype(np.float64), n) >= min_support * area
            keep &= ok | ~need
    out = np.zeros(cand.shape, bool)
    out.ravel()[idx] = keep[lab]
    return out


def _line_support(cand: np.ndarray, length: int, pool: int) -> np.ndarray:
    """Pixels of ``cand`` on a straight run of candidates ``length`` px long (at the pooled scale) in one of
    ``LINE_ANGLES`` orientations: max over orientations of the binary opening with a line segment. With
    ``pool > 1`` the test runs on ``cand`` max-pooled by ``pool`` and is mapped back to full size."""
    import cv2

    c8 = cand.view(np.uint8)
    h, w = c8.shape
    if pool > 1:
        c8 = cv2.dilate(c8, np.ones((pool, pool), np.uint8), anchor=(0, 0))[::pool, ::pool]
    sup = np.zeros_like(c8)
    if min(c8.shape) >= length:
        for ker in _line_kernels(length):
            np.maximum(sup, cv2.morphologyEx(c8, cv2.MORPH_OPEN, ker), out=sup)
    if pool > 1:
        sup = np.repeat(np.repeat(sup, pool, axis=0), pool, axis=1)[:h, :w]
    return sup.view(bool) & cand


def _detect_one(img: np.ndarray, params: HairParams, fov: np.ndarray | None, dark: bool, k: int, scale: float,
                exclude: np.ndarray | None = None, soft_edge: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(strands, soft edge or None) of one polarity; see the module docstring."""
    import cv2

    from lesionkit.prep.order_stats import median_u8

    ch = _channel(img, params.dark_channel if dark else params.light_channel)
    if fov is not None and not fov.all():  # ch is a new array (from _channel): filled in place
        ch[~fov] = int(median_u8(ch, fov)) if fov.any() else 0  # np.uint8(np.median(...)): the floor
    if exclude is not None and exclude.any():
        # dark strands already found: fill them (closing), so the skin between two of them is not a thin bright
        # structure for the white top-hat
        grow = cv2.dilate(exclude.view(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
        closed = cv2.morphologyEx(ch, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
        cv2.copyTo(closed, grow, ch)
    resp = _tophat(ch, dark, _kernels(params.kernel_shape, k))
    t = _threshold(resp, params, fov)
    cand = resp > math.floor(t)  # = resp > t for integer responses; an int keeps the comparison in uint8
    if fov is not None:
        cand &= fov
    pool = max(1, int(scale)) if params.reference_size is not None else 1
    length = _odd(params.line_length * scale / pool) if params.reference_size is not None else params.line_length
    holes = _small_holes(cand, _MESH_HOLE * k * k, pool) if params.max_mesh < 1.0 and cand.any() else None
    kept = _components(cand, params.min_area * scale * scale, params.min_elongation, (length, pool),
                       params.line_support, params.accept_elongation, holes, params.max_mesh)
    if params.grow > 0 and kept.any():
        # hysteresis along the strands: a hair crossing a lesion contrasts less with the lesion than with skin;
        # weaker candidates on straight runs that touch a kept strand are added
        low = resp > t * params.grow
        if fov is not None:
            low &= fov
        low_sup = _line_support(low, length, pool) | kept
        n, labels = cv2.connectedComponents(low_sup.view(np.uint8), connectivity=8)
        hit = np.zeros(n, bool)
        hit[labels[kept]] = True
        hit[0] = False
        kept = hit[labels]
    edge = None
    if soft_edge and kept.any():
        edge = (cv2.dilate(kept.view(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~kept & (resp > 0.5 * t)
        if fov is not None:
            edge &= fov
    return kept, edge


# ----------------------------------------------------------------------------------------------- public API


def effective_kernel_size(params: HairParams, shape: tuple[int, ...]) -> int:
    """The kernel side (px, odd, >= 3) used on an image of ``shape`` (H, W[, C])."""
    return _odd(params.kernel_size * _scale(params, shape)) if params.reference_size is not None else params.kernel_size


def dilate_px(params: HairParams, shape: tuple[int, ...]) -> int:
    """The inpainting dilation radius (px) :func:`remove_hair` uses on an image of ``shape`` (H, W[, C])."""
    return round(params.dilate * _scale(params, shape)) if params.reference_size is not None else params.dilate


def detect_hair(img: np.ndarray, params: HairParams, fov_mask: np.ndarray | None = None) -> HairDetection:
    """Dark and light hair masks of an RGB uint8 image (H, W, 3).

    ``fov_mask`` (bool HxW, optional): the dermoscope's field of view; pixels outside are never hair and do not
    take part in the threshold statistics. Images with a short side below the effective kernel size give an
    empty detection. ``frac`` is the fraction of all image pixels marked as hair, in [0, 1].
    """
    _check_image(img)
    img = np.ascontiguousarray(img)
    h, w = img.shape[:2]
    fov = None
    if fov_mask is not None:
        fov = np.ascontiguousarray(fov_mask, dtype=bool)
        if fov.shape != (h, w):
            raise InputError(f"fov_mask shape {fov.shape} does not match the image ({h}, {w})")
    k = effective_kernel_size(params, img.shape)
    if min(h, w) < k:
        return HairDetection(mask=np.zeros((h, w), bool), dark=np.zeros((h, w), bool), light=np.zeros((h, w), bool),
                             frac=0.0)
    scale = _scale(params, img.shape)
    soft = params.dilate > 0 and dilate_px(params, img.shape) == 0
    none = np.zeros((h, w), bool), None
    dark, edge_d = _detect_one(img, params, fov, True, k, scale, soft_edge=soft) if params.dark else none
    light, edge_l = _detect_one(img, params, fov, False, k, scale, dark if params.light_after_dark else None,
                                soft_edge=soft) if params.light else none
    mask = dark | light
    edges = [e for e in (edge_d, edge_l) if e is not None]
    edge = np.logical_or.reduce(edges) & ~mask if edges else None
    return HairDetection(mask=mask, dark=dark, light=light, frac=float(mask.mean()), soft_edge=edge)


def remove_hair(img: np.ndarray, params: HairParams,
                fov_mask: np.ndarray | None = None) -> tuple[np.ndarray, HairDetection]:
    """Detect hair (:func:`detect_hair`), dilate the mask by ``params.dilate`` and fill it with :func:`cv2.inpaint`.

    Returns ``(restored RGB uint8 image, detection)``; the input is not modified and is returned as a copy when no
    hair is found. Pixels outside ``fov_mask`` are never changed.
    """
    import cv2

    det = detect_hair(img, params, fov_mask)
    if not det.mask.any():
        return img.copy(), det
    mask = det.mask.astype(np.uint8)
    if det.soft_edge is not None:
        mask |= det.soft_edge.view(np.uint8)
    r = dilate_px(params, img.shape)
    if r > 0:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        if fov_mask is not None:
            mask &= np.ascontiguousarray(fov_mask, dtype=bool).view(np.uint8)
    flag = cv2.INPAINT_TELEA if params.inpaint_method == "telea" else cv2.INPAINT_NS
    out = cv2.inpaint(np.ascontiguousarray(img), mask, params.inpaint_radius, flag)
    return out, det


__all__ = [
    "KERNEL_SHAPES",
    "PRESETS",
    "HairDetection",
    "HairParams",
    "detect_hair",
    "dilate_px",
    "effective_kernel_size",
    "get_preset",
    "remove_hair",
]
