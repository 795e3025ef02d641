"""Synthetic dermoscopy images with ground truth: the embedded default dataset and the test data.

Each image shows a lesion (``benign``: symmetric, smooth border, one colour, sometimes with a slightly darker
symmetric centre; ``malignant``: asymmetric, Fourier-perturbed border, two or three colours including black /
blue-grey / red, with a per-lesion severity so that some are subtle) on skin of a KNOWN colour,
with optional dark and light hair, surgical-ink marks, a ruler and a round dermoscope field of view. Every
artefact is written as its own mask, so shortcut and robustness studies have exact answers.

Skin-tone ground truth. The skin is specified in CIELab (D65, 2° observer, as :func:`skimage.color.rgb2lab`
uses) as ``(skin_L, skin_a, skin_b)``; ``ita_true = atan2(skin_L - 50, skin_b) * 180 / pi``. Texture and
illumination (gradient, vignetting, blotches, pores, furrows, grain) form a field ``p`` that would scale L* by
``1 + p`` and b* by ``1 + p / 2``. Over the *measurable skin* (``fov & ~(lesion | hair | ink | ruler)``) the
field is remapped monotonically to an exactly symmetric distribution, and the colour is then built in polar
form around (L* 50, b* 0): per-pixel ITA symmetric about ``ita_true``, radius rescaled so mean L* and mean b*
equal the targets (see :func:`_exact_skin`). So, before 8-bit rounding, the ITA of the mean colour, the mean
per-pixel ITA and the median per-pixel ITA all equal ``ita_true``. After (dithered) rounding, measured over
3000 images: mean-based ITA within 0.04°, median per-pixel ITA within 0.42° (the median snaps to the lattice
of 8-bit colours, whose ITA steps reach ~1° for mid tones; skin colours keep ``hypot(L* - 50, b*) >= 16``,
away from the pole where ITA is ill-conditioned).

Reproducibility. :func:`make_specs` derives everything from ``seed`` (patients from ``(seed, patient)``, each
image's rendering randomness from ``(seed, index)``), so outputs do not depend on ``workers`` or order, and
the first k images of a run with ``n > k`` are the images of a run with ``n = k``. :func:`render_sample` is a
pure function of its spec.

Confounders (hair, ink, ruler, field of view) are drawn independently of the class. ``age_approx`` is weakly
associated with malignancy (+6 years on average), as in real data.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lesionkit.errors import OutputExistsError, UsageError
from lesionkit.parallel import mp_context

if TYPE_CHECKING:
    import pandas as pd

    from lesionkit.manifest.io import Manifest

CLASSES = ["benign", "malignant"]
DIAGNOSIS = {False: "nevus", True: "melanoma"}
MASK_NAMES = ("lesion", "hair", "ink", "ruler", "fov")
SYNTH_VERSION = 1
MALIGNANT_FRACTION = 0.4

# Fitzpatrick type from ITA (Kinyanjui et al. 2020 thresholds): ITA > 55 -> 1, > 41 -> 2, > 28 -> 3, > 19 -> 4, > 10 -> 5, else 6.
ITA_THRESHOLDS = (55.0, 41.0, 28.0, 19.0, 10.0)
# ITA interval sampled for each type (the skin tone of a patient is drawn by first drawing a type uniformly).
ITA_RANGES = {1: (55.5, 70.0), 2: (41.5, 54.5), 3: (28.5, 40.5), 4: (19.5, 27.5), 5: (10.5, 18.5), 6: (-50.0, 9.5)}
SKIN_L_RANGE = (25.0, 82.0)
SKIN_B_RANGE = (8.0, 27.0)
SKIN_MIN_RADIUS = 16.0
SITES = ("torso", "lower extremity", "upper extremity", "head/neck", "palms/soles", "oral/genital")
SITE_P = (0.45, 0.22, 0.17, 0.11, 0.03, 0.02)

# Confounder probabilities (independent of the class).
P_HAIR = 0.45
P_INK = 0.25
P_RULER = 0.30
P_FOV = 0.35


def ita_deg(L: Any, b: Any) -> Any:
    """Individual typology angle in degrees: ``atan2(L* - 50, b*) * 180 / pi`` (works on scalars and arrays)."""
    return np.degrees(np.arctan2(np.asarray(L, dtype=np.float64) - 50.0, np.asarray(b, dtype=np.float64)))


def fitzpatrick_from_ita(ita: float) -> int:
    """Fitzpatrick type 1..6 from ITA with the Kinyanjui thresholds (> 55 → 1, > 41 → 2, > 28 → 3, > 19 → 4, > 10 → 5, else 6)."""
    for t, threshold in enumerate(ITA_THRESHOLDS, start=1):
        if ita > threshold:
            return t
    return 6


@dataclass(frozen=True)
class LesionSpec:
    """One physical lesion; every image of it shares these (pose, lighting and artefacts vary per image)."""

    malignant: bool
    frac: float  # target area as a fraction of the image
    aspect: float  # ellipse axis ratio (>= 1)
    angle: float  # radians
    offset: tuple[float, float]  # centre offset, fraction of the image size
    harmonics: tuple[tuple[int, float, float], ...]  # border: (k, amplitude, phase) of 1 + sum a cos(k t + phase)
    edge: float  # border blur width in pixels at size 128
    edge_harmonics: tuple[tuple[int, float, float], ...]  # variation of the blur width along the border
    colours: tuple[tuple[float, float, float], ...]  # Lab; colours[0] is the base
    colour_cover: tuple[float, ...]  # fraction of the lesion covered by colours[1:]
    colour_strength: tuple[float, ...]  # opacity of colours[1:] over the base (veils are translucent)
    layout: str  # where colours[1:] go: "patchy" (asymmetric blotches) or "radial" (a symmetric centre)
    asym_dir: float  # direction (radians) the extra colours concentrate towards
    asym: float  # strength of that concentration
    texture: float  # L* amplitude of the lesion's internal texture
    network: float  # pigment-network contrast (0 = none)
    dots: int  # number of dark dots / globules (malignant only)
    pattern_seed: int


@dataclass(frozen=True)
class SampleSpec:
    """Everything that determines one image. :func:`render_sample` is a pure function of it."""

    index: int
    seed: int
    size: int
    sample_id: str
    patient_id: str
    lesion_id: str
    skin_L: float
    skin_a: float
    skin_b: float
    age_approx: float
    sex: str
    anatom_site: str
    lesion: LesionSpec
    hair_dark: bool
    hair_light: bool
    ink: bool
    ruler: bool
    fov: bool

    @property
    def ita_true(self) -> float:
        return float(ita_deg(self.skin_L, self.skin_b))

    @property
    def fitzpatrick(self) -> int:
        return fitzpatrick_from_ita(self.ita_true)

    @property
    def malignant(self) -> bool:
        return self.lesion.malignant


# ----------------------------------------------------------------------------------------------- planning


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]))


def _skin_for_ita(rng: np.random.Generator, ita: float) -> tuple[float, float]:
    """(L*, b*) with the given ITA, L* in SKIN_L_RANGE, b* in SKIN_B_RANGE and hypot(L* - 50, b*) >= SKIN_MIN_RADIUS.

    The last condition keeps the colour away from (L* 50, b* 0), where ITA changes by degrees per 8-bit step
    (a real property of ITA for unsaturated mid tones), so per-pixel ITA statistics survive quantisation.
    """
    t = math.tan(math.radians(ita))
    lo, hi = SKIN_B_RANGE
    lo = max(lo, SKIN_MIN_RADIUS * math.cos(math.radians(ita)))
    if t > 1e-9:
        hi = min(hi, (SKIN_L_RANGE[1] - 50.0) / t)
    elif t < -1e-9:
        hi = min(hi, (SKIN_L_RANGE[0] - 50.0) / t)
    # darker skin is yellower / browner: b* centred on 17 at ITA 0, ~11 at ITA 60, ~22 at ITA -50
    b = float(np.clip(17.0 - 0.1 * ita + rng.normal(0.0, 2.5), lo, max(lo, hi)))
    return 50.0 + b * t, b


_D65 = np.array([0.95047, 1.0, 1.08883])  # the white point skimage.color uses by default
_RGB_FROM_XYZ = np.array([[3.24048134, -1.53715152, -0.49853633],
                          [-0.96925495, 1.87599, 0.04155593],
                          [0.05564664, -0.20404134, 1.05731107]])


def _in_srgb(lab: np.ndarray) -> np.ndarray:
    """Whether each Lab colour (..., 3) is inside the sRGB gamut (linear RGB in [0, 1], no clipping needed)."""
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], -1)
    xyz = np.where(f > 6.0 / 29.0, f**3, 3 * (6.0 / 29.0) ** 2 * (f - 4.0 / 29.0)) * _D65
    rgb = xyz @ _RGB_FROM_XYZ.T
    return np.all((rgb >= -1e-6) & (rgb <= 1.0 + 1e-6), axis=-1)


def _fit_gamut(L: float, a: float, b: float) -> tuple[float, float, float]:
    """Shrink the chroma of a Lab colour (keeping L* and hue) until it is inside sRGB, so no channel gets clipped."""
    scales = np.linspace(1.0, 0.0, 101)
    ok = _in_srgb(np.stack([np.full_like(scales, L), a * scales, b * scales], -1))
    s = float(scales[int(np.argmax(ok))]) if ok.any() else 0.0
    return L, a * s, b * s


def _lesion_colours(
    rng: np.random.Generator, malignant: bool, skin_L: float, severity: float
) -> tuple[list[tuple[float, float, float]], list[float], list[float]]:
    """Base colour + extra colours, their area cover and opacity. Malignant: 1-2 extras, at least one of black /
    blue-grey / red, more opaque with ``severity``. Benign: sometimes a darker symmetric centre (low contrast)."""
    base_L = max(9.0, min(skin_L - 12.0, skin_L * rng.uniform(0.42, 0.75)))
    kind = rng.choice(["brown", "light brown", "dark brown", "pink-brown"], p=[0.4, 0.25, 0.2, 0.15])
    if kind == "light brown":
        base_L = min(skin_L - 8.0, base_L + rng.uniform(5, 12))
    elif kind == "dark brown":
        base_L = max(8.0, base_L - rng.uniform(5, 12))
    if kind == "pink-brown":  # lighter, pinker (dermal nevus-like)
        base_L = min(skin_L - 8.0, base_L + rng.uniform(4, 10))
    a = rng.uniform(13, 20) if kind == "pink-brown" else rng.uniform(9, 18)
    b = rng.uniform(12, 20) if kind == "pink-brown" else rng.uniform(14, 30)
    colours = [_fit_gamut(base_L, a, b)]
    cover: list[float] = []
    strength: list[float] = []
    if malignant:
        extras = {  # Lab colour and opacity range
            "black": (lambda: (rng.uniform(6, 14), rng.uniform(1, 5), rng.uniform(1, 6)), (0.85, 1.0)),
            "blue-grey": (lambda: (rng.uniform(40, 56), rng.uniform(-3, 1), rng.uniform(-11, -4)), (0.6, 0.85)),
            "red": (lambda: (rng.uniform(42, 55), rng.uniform(24, 36), rng.uniform(12, 22)), (0.55, 0.8)),
            "dark brown": (lambda: (max(7.0, base_L - rng.uniform(10, 18)), rng.uniform(8, 14), rng.uniform(8, 18)), (0.8, 1.0)),
            "white": (lambda: (rng.uniform(72, 86), rng.uniform(2, 7), rng.uniform(4, 10)), (0.5, 0.8)),
        }
        first = rng.choice(["black", "blue-grey", "red"], p=[0.4, 0.4, 0.2])
        chosen = [str(first)]
        if rng.random() < 0.45:
            rest = [k for k in extras if k != first]
            w = np.array([{"black": 0.3, "blue-grey": 0.3, "red": 0.15, "dark brown": 0.15, "white": 0.1}[k] for k in rest])
            chosen.append(str(rng.choice(rest, p=w / w.sum())))
        for name in chosen:
            make, (lo, hi) = extras[name]
            colours.append(_fit_gamut(*make()))
            cover.append(float(rng.uniform(0.12, 0.42)))
            strength.append(float(rng.uniform(lo, hi) * (0.15 + 0.85 * severity)))
    elif rng.random() < 0.35:
        colours.append(_fit_gamut(max(6.0, base_L - rng.uniform(8, 18)), a * rng.uniform(0.8, 1.0), b * rng.uniform(0.75, 0.95)))
        cover.append(float(rng.uniform(0.25, 0.5)))
        strength.append(float(rng.uniform(0.5, 0.9)))
    return colours, cover, strength


def _make_lesion(rng: np.random.Generator, malignant: bool, skin_L: float, min_severity: float = 0.25) -> LesionSpec:
    if malignant:
        frac = float(np.exp(rng.uniform(np.log(0.035), np.log(0.32))))
        severity = rng.uniform(min_severity, 1.0)  # same draw count for any bound: the rest of the plan is unchanged
        harmonics = [(1, severity * rng.uniform(0.06, 0.16), rng.uniform(0, 2 * np.pi))]
        harmonics += [(k, severity * rng.uniform(0.04, 0.13), rng.uniform(0, 2 * np.pi)) for k in (2, 3)]
        harmonics += [(int(k), severity * rng.uniform(0.015, 0.05), rng.uniform(0, 2 * np.pi))
                      for k in rng.choice(np.arange(4, 14), size=int(rng.integers(3, 6)), replace=False)]
        aspect = rng.uniform(1.0, 1.6)
        edge = rng.uniform(1.0, 3.0)
        edge_h = tuple((int(k), rng.uniform(0.3, 0.8), rng.uniform(0, 2 * np.pi)) for k in (1, 2, 3))
        texture = 2.0 + severity * rng.uniform(1.5, 5.0)
        network = rng.uniform(0.15, 0.35) if rng.random() < 0.35 else 0.0
        dots = int(rng.integers(4, 18)) if rng.random() < 0.25 + 0.4 * severity else 0
        asym = rng.uniform(0.6, 1.4)
    else:
        frac = float(np.exp(rng.uniform(np.log(0.025), np.log(0.24))))
        harmonics = [(2, rng.uniform(0.0, 0.035), rng.uniform(0, 2 * np.pi)),
                     (3, rng.uniform(0.0, 0.02), rng.uniform(0, 2 * np.pi)),
                     (4, rng.uniform(0.0, 0.01), rng.uniform(0, 2 * np.pi))]
        aspect = rng.uniform(1.0, 1.35)
        edge = rng.uniform(1.2, 3.0)
        edge_h = ((1, rng.uniform(0.0, 0.15), rng.uniform(0, 2 * np.pi)),)
        texture = rng.uniform(1.0, 4.0)
        network = rng.uniform(0.12, 0.25) if rng.random() < 0.45 else 0.0
        dots = 0
        asym = 0.0
        severity = 0.0
    colours, cover, strength = _lesion_colours(rng, malignant, skin_L, severity)
    return LesionSpec(
        malignant=malignant, frac=frac, aspect=float(aspect), angle=float(rng.uniform(0, np.pi)),
        offset=(float(rng.normal(0, 0.05)), float(rng.normal(0, 0.05))),
        harmonics=tuple((int(k), float(a), float(p)) for k, a, p in harmonics), edge=float(edge),
        edge_harmonics=tuple((int(k), float(a), float(p)) for k, a, p in edge_h),
        colours=tuple(tuple(float(v) for v in c) for c in colours), colour_cover=tuple(cover),
        colour_strength=tuple(strength), layout="patchy" if malignant else "radial",
        asym_dir=float(rng.uniform(0, 2 * np.pi)), asym=float(asym), texture=float(texture), network=float(network),
        dots=dots, pattern_seed=int(rng.integers(0, 2**31 - 1)),
    )


def make_specs(n: int, size: int = 128, seed: int = 0, min_severity: float = 0.25) -> list[SampleSpec]:
    """The plan of a dataset: ``n`` sample specs (patients of 1–4 images, lesions of 1–3 images).

    ``min_severity`` in [0, 1]: lower bound of the malignant lesions' severity (border irregularity, blue-grey /
    red regions, texture, dots), drawn uniformly up to 1. The default 0.25 makes some melanomas subtle (a small
    CNN trained on a few hundred images reaches a validation AUC of about 0.84); a higher bound gives an easier
    task. Only the severity draw changes: patients, skin tones, artefacts and everything else stay the same.

    Patient ``p`` is drawn from ``(seed, p)`` only, so the plan is prefix-stable: ``make_specs(k)`` equals the
    first ``k`` entries of ``make_specs(n)`` for ``k <= n``.
    """
    specs: list[SampleSpec] = []
    p = 0
    n_lesions = 0
    while len(specs) < n:
        rng = _rng(seed, 1, p)
        fitz = int(rng.integers(1, 7))
        ita = float(rng.uniform(*ITA_RANGES[fitz]))
        L0, b0 = _skin_for_ita(rng, ita)
        a0 = float(rng.uniform(5.0, 14.0))
        sex = str(rng.choice(["female", "male"]))
        age_base = float(rng.normal(48.0, 15.0))
        budget = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.3, 0.2, 0.2]))
        lesions = 1 if budget == 1 or rng.random() < 0.6 else 2
        per_lesion = [1] * lesions
        for _ in range(budget - lesions):
            per_lesion[int(rng.integers(0, lesions))] += 1
        for k in range(lesions):
            malignant = bool(rng.random() < MALIGNANT_FRACTION)
            lesion = _make_lesion(rng, malignant, L0, min_severity)
            site = str(rng.choice(SITES, p=SITE_P))
            age = float(np.clip(np.round((age_base + (6.0 if malignant else 0.0)) / 5.0) * 5.0, 15.0, 90.0))
            lesion_id = f"syn{seed}_l{n_lesions:06d}"
            n_lesions += 1
            for _ in range(min(per_lesion[k], 3)):
                if len(specs) >= n:
                    break
                # Per-image skin jitter (same patient, different day/lighting): keep L* in range.
                b = float(np.clip(b0 + rng.normal(0, 0.4), *SKIN_B_RANGE))
                L = float(np.clip(L0 + rng.normal(0, 0.6), *SKIN_L_RANGE))
                a = float(np.clip(a0 + rng.normal(0, 0.5), 4.0, 20.0))
                rad = math.hypot(L - 50.0, b)
                if rad < SKIN_MIN_RADIUS:  # move away from the ITA pole along the ray (ITA unchanged)
                    L, b = 50.0 + (L - 50.0) * SKIN_MIN_RADIUS / rad, b * SKIN_MIN_RADIUS / rad
                hair = rng.random() < P_HAIR
                kind = rng.random()
                index = len(specs)
                specs.append(SampleSpec(
                    index=index, seed=seed, size=size, sample_id=f"syn{seed}_{index:06d}", patient_id=f"syn{seed}_p{p:06d}",
                    lesion_id=lesion_id, skin_L=L, skin_a=a, skin_b=b, age_approx=age, sex=sex, anatom_site=site,
                    lesion=lesion, hair_dark=bool(hair and kind < 0.8), hair_light=bool(hair and kind >= 0.65),
                    ink=bool(rng.random() < P_INK), ruler=bool(rng.random() < P_RULER), fov=bool(rng.random() < P_FOV),
                ))
        p += 1
    return specs


# ----------------------------------------------------------------------------------------------- rendering


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth zero-mean unit-std noise: a ``cells`` x ``cells`` grid of normals upsampled bicubically."""
    import cv2

    g = rng.standard_normal((cells + 3, cells + 3)).astype(np.float32)
    big = cv2.resize(g, (shape[1] * (cells + 3) // cells, shape[0] * (cells + 3) // cells), interpolation=cv2.INTER_CUBIC)
    oy = (big.shape[0] - shape[0]) // 2
    ox = (big.shape[1] - shape[1]) // 2
    out = big[oy:oy + shape[0], ox:ox + shape[1]]
    return (out - out.mean()) / (out.std() + 1e-6)


def _symmetrise(p: np.ndarray, where: np.ndarray, gaussian: bool = False, min_std: float = 0.0) -> np.ndarray:
    """Monotonically remap ``p`` so its values over ``where`` are exactly antisymmetric about 0 (mean = median = 0).

    ``gaussian``: remap the ranks onto normal quantiles with the same standard deviation instead, which also
    guarantees a unimodal distribution (no gap at the median, so a median survives 8-bit quantisation);
    ``min_std`` floors that standard deviation (a texture spanning only 1-2 8-bit levels makes per-pixel
    statistics depend on the quantisation lattice).
    Values outside the range seen over ``where`` keep their distance to the nearest end point.
    """
    from scipy.special import ndtri

    x = p.astype(np.float64)
    inner = x[where]
    order = np.argsort(inner)
    vals = inner[order]
    n = vals.size
    if gaussian:
        q = ndtri((np.arange(n) + 0.5) / n)
        sym = (q - q[::-1]) / 2.0 * max(float(vals.std()), min_std)
    else:
        sym = (vals - vals[::-1]) / 2.0
    out = np.empty_like(x)
    mapped = np.empty(n)
    mapped[order] = sym  # rank -> value for the pixels in ``where`` (no search needed)
    out[where] = mapped
    rest = ~where
    xr = x[rest]
    yr = np.interp(xr, vals, sym)
    yr = np.where(xr < vals[0], sym[0] + (xr - vals[0]), yr)
    yr = np.where(xr > vals[-1], sym[-1] + (xr - vals[-1]), yr)
    out[rest] = yr
    out -= out[where].mean()  # exact zero mean despite float rounding
    return out


def _exact_skin(L0: float, b0: float, p: np.ndarray, skin: np.ndarray, q: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Skin L*, b* fields for the texture ``p`` whose statistics over ``skin`` hit the targets exactly.

    The natural texture ``L0 (1 + p), b0 (1 + p / 2)`` is written in polar form around (L* = 50, b* = 0):
    angle = per-pixel ITA, radius ``r``. The angle is remapped monotonically so its distribution over ``skin``
    is antisymmetric about ``ita_true`` (mean and median per-pixel ITA exact); the radius, which does not change
    ITA, is then rescaled by ``x0 + x1 (angle - ita_true)`` with (x0, x1) solving the two linear equations
    mean L* = L0 and mean b* = b0. The corrections are second order, so the texture looks the same.
    """
    Lt = L0 * (1.0 + p)
    bt = b0 * (1.0 + 0.5 * p)
    th0 = math.atan2(L0 - 50.0, b0)
    r0 = math.hypot(L0 - 50.0, b0)
    w = _symmetrise(np.arctan2(Lt - 50.0, bt) - th0, skin)
    th = th0 + w
    r = np.hypot(Lt - 50.0, bt)
    if q is not None:  # extra texture that leaves ITA alone (spreads 8-bit values so per-pixel ITA stays smooth)
        r = r * (1.0 + q)
    sn, cs, rs, ws = np.sin(th[skin]), np.cos(th[skin]), r[skin], w[skin]
    A = np.array([[np.mean(rs * sn), np.mean(rs * sn * ws)], [np.mean(rs * cs), np.mean(rs * cs * ws)]])
    x = np.linalg.lstsq(A, np.array([r0 * math.sin(th0), r0 * math.cos(th0)]), rcond=None)[0]
    r = r * (x[0] + x[1] * w)
    return 50.0 + r * np.sin(th), r * np.cos(th)


def _stroke_canvas(size: int) -> np.ndarray:
    return np.zeros((size, size), np.uint8)


def _pts(xy: np.ndarray) -> np.ndarray:
    """Float pixel-centre coordinates -> int32 points for OpenCV with shift=4 (1/16 px)."""
    return np.round((xy - 0.5) * 16.0).astype(np.int32).reshape(-1, 1, 2)


_HAIR_THICKNESS_CDF = np.cumsum([0.65, 0.28, 0.07])
_HAIR_THICKNESS_CDF /= _HAIR_THICKNESS_CDF[-1]


@dataclass(frozen=True)
class HairDraws:
    """Random draws of ``n`` hair strands (arrays of length n), in the units :func:`hair_canvas` reads."""

    radial: np.ndarray  # U(0, 1): anchor at radius * sqrt(radial) from the centre
    phi: np.ndarray  # anchor angle, U(0, 2 pi)
    angle: np.ndarray  # strand direction, U(0, pi)
    length: np.ndarray  # U(0.3, 1.2) image sides
    split: np.ndarray  # U(0.15, 0.85): where the anchor sits along the strand
    bend: np.ndarray  # N(0, 0.22) strand lengths: control-point offset
    thickness: np.ndarray  # U(0, 1) -> 1, 2, 3 px (at 128 px) with p = 0.65, 0.28, 0.07
    opacity: np.ndarray  # U(opacity range)


def hair_draws(rng: np.random.Generator, count: int, opacity: tuple[float, float]) -> HairDraws:
    """Vectorised draws for ``count`` strands (one generator call per quantity)."""
    return HairDraws(rng.random(count), rng.uniform(0, 2 * np.pi, count), rng.uniform(0, np.pi, count),
                     rng.uniform(0.3, 1.2, count), rng.uniform(0.15, 0.85, count), rng.normal(0, 0.22, count),
                     rng.random(count), rng.uniform(*opacity, count))


def _hair_draws_per_strand(rng: np.random.Generator, count: int, opacity: tuple[float, float]) -> HairDraws:
    """The synthetic generator's draw order (strand by strand), kept so generated datasets never change."""
    cols = [(rng.random(), rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi), rng.uniform(0.3, 1.2),
             rng.uniform(0.15, 0.85), rng.normal(0, 0.22), rng.random(), rng.uniform(*opacity))
            for _ in range(count)]
    arr = np.array(cols, np.float64).reshape(count, 8).T
    return HairDraws(*arr)


_BEZIER_T = np.linspace(0.0, 1.0, 32)[:, None]


def hair_canvas(d: HairDraws, size: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """Curved strands (quadratic Bezier through a random point of the disc (centre, radius)) on a uint8 opacity
    canvas ``size x size``, anti-aliased. Geometry for all strands at once; one ``cv2.polylines`` per strand."""
    import cv2

    canvas = _stroke_canvas(size)
    if d.radial.size == 0:
        return canvas
    r = radius * np.sqrt(d.radial)
    anchor = np.stack([centre[0] + r * np.cos(d.phi), centre[1] + r * np.sin(d.phi)], axis=1)
    u = np.stack([np.cos(d.angle), np.sin(d.angle)], axis=1)
    length = (size * d.length)[:, None]
    p0 = anchor - u * length * d.split[:, None]
    p2 = anchor + u * length * (1 - d.split[:, None])
    p1 = (p0 + p2) / 2 + np.stack([-u[:, 1], u[:, 0]], axis=1) * length * d.bend[:, None]
    t = _BEZIER_T
    curves = (1 - t) ** 2 * p0[:, None] + 2 * (1 - t) * t * p1[:, None] + t**2 * p2[:, None]
    pts = _pts(curves).reshape(len(d.radial), -1, 1, 2)
    sc = size / 128.0
    thick = np.maximum(1, np.round((_HAIR_THICKNESS_CDF.searchsorted(d.thickness, side="right") + 1) * sc))
    value = (d.opacity * 255).astype(np.int64)
    for p, th, v in zip(pts, thick.astype(int).tolist(), value.tolist()):
        cv2.polylines(canvas, [p], False, v, thickness=th, lineType=cv2.LINE_AA, shift=4)
    return canvas


def _draw_hair(rng: np.random.Generator, size: int, count: int, centre: tuple[float, float], radius: float,
               opacity: tuple[float, float]) -> np.ndarray:
    """Synthetic-dataset hair: :func:`hair_canvas` of strand-by-strand draws."""
    return hair_canvas(_hair_draws_per_strand(rng, count, opacity), size, centre, radius)


def _draw_ink(rng: np.random.Generator, size: int, centre: tuple[float, float], lesion_r: float) -> np.ndarray:
    import cv2

    canvas = _stroke_canvas(size)
    sc = size / 128.0
    mode = rng.choice(["circle", "dots", "circle+dots", "strokes"], p=[0.45, 0.25, 0.2, 0.1])
    value = lambda: int(rng.uniform(0.55, 0.9) * 255)  # noqa: E731
    cx, cy = centre
    if mode in ("circle", "circle+dots"):
        ax = lesion_r * rng.uniform(1.25, 1.7)
        axes = (int(round(ax * 16)), int(round(ax * rng.uniform(0.85, 1.15) * 16)))
        start = rng.uniform(0, 360)
        span = rng.uniform(240, 360)
        thick = max(1, int(round(rng.uniform(1.5, 3.5) * sc)))
        cv2.ellipse(canvas, (int(round((cx - 0.5) * 16)), int(round((cy - 0.5) * 16))), axes, float(rng.uniform(0, 180)),
                    start, start + span, value(), thickness=thick, lineType=cv2.LINE_AA, shift=4)
    if mode in ("dots", "circle+dots"):
        for _ in range(int(rng.integers(1, 6))):
            ang = rng.uniform(0, 2 * np.pi)
            dist = lesion_r * rng.uniform(1.2, 1.9)
            pt = np.array([[cx + dist * np.cos(ang), cy + dist * np.sin(ang)]])
            rad = int(round(rng.uniform(1.5, 3.0) * sc * 16))
            cv2.circle(canvas, tuple(_pts(pt)[0, 0]), rad, value(), thickness=-1, lineType=cv2.LINE_AA, shift=4)
    if mode == "strokes":
        for _ in range(int(rng.integers(1, 4))):
            ang = rng.uniform(0, 2 * np.pi)
            dist = lesion_r * rng.uniform(1.2, 1.8)
            mid = np.array([cx + dist * np.cos(ang), cy + dist * np.sin(ang)])
            d = np.array([-np.sin(ang), np.cos(ang)]) * lesion_r * rng.uniform(0.3, 0.7)
            thick = max(1, int(round(rng.uniform(1.5, 3.0) * sc)))
            cv2.polylines(canvas, [_pts(np.stack([mid - d, mid + d]))], False, value(), thickness=thick, lineType=cv2.LINE_AA, shift=4)
    return canvas


def _draw_ruler(rng: np.random.Generator, size: int, fov: tuple[float, float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Returns (band canvas, tick canvas): a translucent strip (sometimes absent) with mm ticks along an edge."""
    import cv2

    band = _stroke_canvas(size)
    ticks = _stroke_canvas(size)
    sc = size / 128.0
    side = int(rng.integers(4))
    along = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.0]), np.array([0.0, -1.0])][side]
    inward = np.array([-along[1], along[0]])  # points towards the image centre for each side below
    if fov is not None:
        cx, cy, rf = fov
        c = np.array([cx, cy])
        dist = rf * rng.uniform(0.62, 0.8)
        half = math.sqrt(rf**2 - dist**2) * 0.9
        base = c - inward * dist
        s0, s1 = -half, half
    else:
        inset = rng.uniform(0.0, 4.0) * sc
        corner = [np.array([0.0, 0.0]), np.array([size, 0.0]), np.array([size, size]), np.array([0.0, size])][side]
        base = corner + inward * inset
        s0 = size * rng.uniform(0.0, 0.25)
        s1 = size * rng.uniform(0.75, 1.0)
    width = size * rng.uniform(0.06, 0.1)
    if rng.random() < 0.7:
        quad = np.stack([base + along * s0, base + along * s1, base + along * s1 + inward * width, base + along * s0 + inward * width])
        cv2.fillConvexPoly(band, _pts(quad), int(rng.uniform(0.55, 0.85) * 255), lineType=cv2.LINE_AA, shift=4)
    spacing = rng.uniform(3.0, 4.5) * sc
    thick = max(1, int(round(sc)))
    k = 0
    s = s0 + spacing * rng.uniform(0.3, 1.0)
    while s < s1:
        length = width * (0.85 if k % 10 == 0 else 0.65 if k % 5 == 0 else 0.4)
        p = base + along * s
        cv2.polylines(ticks, [_pts(np.stack([p + inward * 0.5, p + inward * length]))], False, 255, thickness=thick,
                      lineType=cv2.LINE_AA, shift=4)
        s += spacing
        k += 1
    return band, ticks


def _lesion_texture(seed: int, malignant: bool, network: float) -> dict[str, np.ndarray]:
    """Fields in the lesion's own frame (square [-1.6, 1.6]^2, 96 px), shared by every image of the lesion."""
    rng = _rng(seed, 7)
    n = 96
    out = {
        "texture": _smooth_noise(rng, (n, n), 10) * 0.7 + _smooth_noise(rng, (n, n), 24) * 0.3,
        "region1": _smooth_noise(rng, (n, n), 4),
        "region2": _smooth_noise(rng, (n, n), 5),
    }
    if network > 0:
        band = _smooth_noise(rng, (n, n), 18 if not malignant else 14)
        if malignant:
            band = band + 0.6 * _smooth_noise(rng, (n, n), 6)
        out["network"] = np.clip(1.0 - np.abs(band) / 0.35, 0.0, 1.0).astype(np.float32)
    return out


def render_sample(spec: SampleSpec) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render one image: ``(rgb uint8 HxWx3, masks)`` with masks ``lesion, hair, ink, ruler, fov`` (bool HxW)
    plus ``hair_dark`` and ``hair_light`` (the two parts of ``hair``; not written to disk).

    Each artefact mask covers every visible pixel that artefact changed; ``fov`` is the field of view (pixels
    the dark surround does not touch; all True without one). Skin pixels = ``fov & ~(lesion|hair|ink|ruler)``
    have mean L*, mean b* and median ITA equal to the spec's skin colour up to 8-bit quantisation.
    """
    import cv2
    from skimage.color import lab2rgb

    rng = _rng(spec.seed, 2, spec.index)
    S = spec.size
    sc = S / 128.0
    ys, xs = np.mgrid[0:S, 0:S].astype(np.float32) + 0.5

    # --- field of view
    if spec.fov:
        fcx, fcy = S / 2 + rng.normal(0, 0.03 * S), S / 2 + rng.normal(0, 0.03 * S)
        rf = S * rng.uniform(0.46, 0.6)
        wf = rng.uniform(1.5, 4.0) * sc
        dist = np.hypot(xs - fcx, ys - fcy)
        dark = np.clip((dist - rf) / wf, 0.0, 1.0).astype(np.float32)
        fov_mask = dist <= rf
        fov_geo: tuple[float, float, float] | None = (float(fcx), float(fcy), float(rf))
        reach = rf * 0.75
    else:
        fcx = fcy = S / 2
        dark = np.zeros((S, S), np.float32)
        fov_mask = np.ones((S, S), bool)
        fov_geo = None
        reach = S * 0.45
    visible = dark < 1.0

    # --- lesion geometry (lesion frame: unit = lesion radius, ellipse and rotation applied)
    les = spec.lesion
    scale = math.sqrt(les.frac * S * S / math.pi) * rng.uniform(0.93, 1.07)
    angle = les.angle + rng.normal(0, 0.25)
    lcx = fcx + (les.offset[0] + rng.normal(0, 0.03)) * S
    lcy = fcy + (les.offset[1] + rng.normal(0, 0.03)) * S
    ra, rb = scale * math.sqrt(les.aspect), scale / math.sqrt(les.aspect)
    dx, dy = xs - lcx, ys - lcy
    ca, sa = math.cos(angle), math.sin(angle)
    u = (dx * ca + dy * sa) / ra
    v = (-dx * sa + dy * ca) / rb
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    nb = 1024
    tt = np.linspace(0, 2 * np.pi, nb, endpoint=False)
    prof = 1.0 + sum(a * np.cos(k * tt + ph) for k, a, ph in les.harmonics)
    prof = np.maximum(prof, 0.35)
    eprof = les.edge * (1.0 + sum(a * np.cos(k * tt + ph) for k, a, ph in les.edge_harmonics))
    eprof = np.maximum(eprof, 0.6) * sc / scale  # pixels -> lesion units
    ti = ((theta + np.pi) / (2 * np.pi) * nb).astype(np.int32) % nb
    # bin j holds angle j * 2pi / nb - pi, i.e. profile index j + nb / 2 (mod nb)
    R = np.take(np.roll(prof, -nb // 2), ti)
    W = np.take(np.roll(eprof, -nb // 2), ti)
    inside = R - rho
    lesion_alpha = np.clip(inside / W, 0.0, 1.0).astype(np.float32)
    lesion_mask = (inside > 0) & visible

    # --- lesion colour in its own frame (sampled with remap so all images of a lesion share the pattern)
    tex = _lesion_texture(les.pattern_seed, les.malignant, les.network)
    mx = ((u / 1.6 + 1) * 0.5 * 96 - 0.5).astype(np.float32)
    my = ((v / 1.6 + 1) * 0.5 * 96 - 0.5).astype(np.float32)
    sample = {k: cv2.remap(f, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT) for k, f in tex.items()}
    lab_les = np.empty((S, S, 3), np.float32)
    lab_les[...] = les.colours[0]
    core = inside > 0
    if len(les.colours) > 1 and core.any():
        ramp = (u * math.cos(les.asym_dir) + v * math.sin(les.asym_dir)) * les.asym
        for j, (colour, cover, strength) in enumerate(zip(les.colours[1:], les.colour_cover, les.colour_strength)):
            if les.layout == "radial":  # symmetric darker centre with a slightly wavy outline
                field = -rho + 0.12 * sample["region1"]
            else:
                field = sample["region1" if j == 0 else "region2"] + ramp * (1.0 if j == 0 else -0.5)
            thr = float(np.quantile(field[core], 1.0 - cover))
            w = (np.clip((field - thr) / 0.6 + 0.5, 0.0, 1.0) * strength)[..., None]
            lab_les = lab_les * (1 - w) + np.asarray(colour, np.float32) * w
    # darker centre / lighter rim variation, internal texture, pigment network
    lab_les[..., 0] += les.texture * sample["texture"] - (2.0 if not les.malignant else 0.0) * np.clip(1 - rho, 0, 1)
    if "network" in sample:
        net = sample["network"] * les.network
        lab_les[..., 0] -= net * np.maximum(lab_les[..., 0] - 6.0, 0.0) * 0.8
    if les.dots:  # irregular dark dots / globules, clustered towards the asymmetric side
        dot = np.zeros((S, S), np.float32)
        sig = 0.8 * sc
        for _ in range(les.dots):
            r_ = rng.uniform(0.15, 0.9)
            a_ = rng.uniform(0, 2 * np.pi) if rng.random() < 0.4 else les.asym_dir + rng.normal(0, 0.6)
            px = lcx + (r_ * math.cos(a_) * ca * ra - r_ * math.sin(a_) * sa * rb)
            py = lcy + (r_ * math.cos(a_) * sa * ra + r_ * math.sin(a_) * ca * rb)
            ix, iy = int(px), int(py)
            if 0 <= ix < S and 0 <= iy < S:
                dot[iy, ix] += rng.uniform(0.6, 1.6)
        dot = cv2.GaussianBlur(dot, (0, 0), sig) * (2 * np.pi * sig * sig)
        dot = np.minimum(dot, 1.0) * (inside > 0.1)
        lab_les = lab_les * (1 - dot[..., None] * 0.85) + np.array([9.0, 2.0, 3.0], np.float32) * dot[..., None] * 0.85
    lab_les[..., 0] = np.clip(lab_les[..., 0], 3.0, 95.0)

    # --- hair
    centre = (float(lcx), float(lcy)) if not spec.fov else (float(fcx), float(fcy))
    n_dark = int(min(30, 1 + rng.geometric(0.12)))
    hair_d = _draw_hair(rng, S, n_dark, centre, reach, (0.6, 0.95)) if spec.hair_dark else _stroke_canvas(S)
    hair_l = _draw_hair(rng, S, int(rng.integers(2, 9)), centre, reach, (0.45, 0.8)) if spec.hair_light else _stroke_canvas(S)
    # --- ink and ruler
    ink_c = _draw_ink(rng, S, (float(lcx), float(lcy)), scale) if spec.ink else _stroke_canvas(S)
    if spec.ink and not ((ink_c > 0) & visible).any():  # ring fell outside the view: a dot inside instead
        cv2.circle(ink_c, (int((fcx - 0.5) * 16 + 0.3 * reach * 16), int((fcy - 0.5) * 16)), int(2.5 * sc * 16), 200,
                   thickness=-1, lineType=cv2.LINE_AA, shift=4)
    if spec.ruler:
        band_c, tick_c = _draw_ruler(rng, S, fov_geo)
    else:
        band_c = tick_c = _stroke_canvas(S)

    hair_mask = ((hair_d > 0) | (hair_l > 0)) & visible
    ink_mask = (ink_c > 0) & visible
    ruler_mask = ((band_c > 0) | (tick_c > 0)) & visible
    skin = fov_mask & ~lesion_mask & ~hair_mask & ~ink_mask & ~ruler_mask  # the pixels the ITA guarantee is about
    if not skin.any():  # nothing measurable (never seen with these ranges): shape the texture on the whole view
        skin = visible.copy()

    # --- skin: multiplicative L* field (illumination + texture), antisymmetric over the skin pixels
    g_ang = rng.uniform(0, 2 * np.pi)
    grad = ((xs - S / 2) * math.cos(g_ang) + (ys - S / 2) * math.sin(g_ang)) / S * rng.uniform(0.0, 0.09)
    vign = -rng.uniform(0.0, 0.08) * ((xs - fcx) ** 2 + (ys - fcy) ** 2) / (0.5 * S) ** 2
    blotch = _smooth_noise(rng, (S, S), int(rng.integers(3, 7))) * rng.uniform(0.006, 0.02)
    grain = cv2.GaussianBlur(rng.standard_normal((S, S)).astype(np.float32), (0, 0), 0.7 * sc) * rng.uniform(0.01, 0.025)
    pores = np.zeros((S, S), np.float32)
    n_pores = int(rng.uniform(0.002, 0.006) * S * S)
    pores[rng.integers(0, S, n_pores), rng.integers(0, S, n_pores)] = -1.0
    ps = 0.7 * sc
    pores = cv2.GaussianBlur(pores, (0, 0), ps) * (2 * np.pi * ps * ps) * rng.uniform(0.03, 0.07)
    furrows = np.zeros((S, S), np.float32)
    for _ in range(int(rng.integers(0, 5))):
        a_ = rng.uniform(0, np.pi)
        c_ = np.array([rng.uniform(0, S), rng.uniform(0, S)])
        d_ = np.array([math.cos(a_), math.sin(a_)]) * S
        cv2.line(furrows, tuple(map(int, (c_ - d_) * 16)), tuple(map(int, (c_ + d_) * 16)), 1.0, thickness=max(1, int(sc)),
                 lineType=cv2.LINE_AA, shift=4)
    furrows = -cv2.GaussianBlur(furrows, (0, 0), 0.6 * sc) * rng.uniform(0.01, 0.03)
    p = (grad + vign + blotch + grain + pores + furrows).astype(np.float64)
    p = _symmetrise(p, skin, gaussian=True, min_std=0.02)
    erythema = _smooth_noise(rng, (S, S), int(rng.integers(3, 6))) * rng.uniform(0.5, 2.0)
    chroma_grain = cv2.GaussianBlur(rng.standard_normal((S, S)).astype(np.float32), (0, 0), 0.6 * sc)
    chroma_grain *= 0.025 / (chroma_grain.std() + 1e-6)
    L_skin, b_skin = _exact_skin(spec.skin_L, spec.skin_b, p, skin, chroma_grain.astype(np.float64))

    lab = np.empty((S, S, 3), np.float64)
    lab[..., 0] = L_skin
    a_grain = cv2.GaussianBlur(rng.standard_normal((S, S)).astype(np.float32), (0, 0), 0.5 * sc)
    a_grain *= 1.2 / (a_grain.std() + 1e-6)  # a* does not enter ITA; its grain diversifies the 8-bit colours
    lab[..., 1] = spec.skin_a * (1.0 + 0.5 * p) + erythema + a_grain
    lab[..., 2] = b_skin

    # --- composite: lesion, ink, hair, ruler, then the dark surround of the field of view
    opacity = rng.uniform(0.85, 1.0)
    al = (lesion_alpha * opacity)[..., None]
    lab = lab * (1 - al) + lab_les * al
    if spec.ink:
        ink_col = (rng.uniform(32, 48), rng.uniform(22, 38), rng.uniform(-42, -28)) if rng.random() < 0.7 else \
            (rng.uniform(35, 48), rng.uniform(2, 14), rng.uniform(-48, -34))
        streak = 0.85 + 0.15 * _smooth_noise(rng, (S, S), 12).clip(-1, 1)
        ai = (ink_c.astype(np.float32) / 255.0 * streak)[..., None]
        lab = lab * (1 - ai) + np.asarray(ink_col, np.float32) * ai
    for canvas, is_dark in ((hair_d, True), (hair_l, False)):
        if not canvas.any():
            continue
        if is_dark:
            hl = min(spec.skin_L - 10.0, rng.uniform(6.0, 22.0))
            col = np.array([max(hl, 2.0), rng.uniform(1, 5), rng.uniform(2, 9)], np.float32)
        else:
            hl = max(spec.skin_L + 12.0, rng.uniform(70.0, 92.0))
            col = np.array([min(hl, 98.0), rng.uniform(-1, 2), rng.uniform(1, 6)], np.float32)
        ah = (canvas.astype(np.float32) / 255.0)[..., None]
        lab = lab * (1 - ah) + col * ah
    if spec.ruler:
        ab = (band_c.astype(np.float32) / 255.0)[..., None]
        lab = lab * (1 - ab) + np.array([rng.uniform(86, 96), rng.uniform(-1, 2), rng.uniform(2, 8)], np.float32) * ab
        at = (tick_c.astype(np.float32) / 255.0 * rng.uniform(0.85, 1.0))[..., None]
        tick_col = [rng.uniform(6, 18), 0.0, rng.uniform(0, 4)] if band_c.any() or spec.skin_L > 45 else [rng.uniform(85, 95), 0.0, 2.0]
        lab = lab * (1 - at) + np.array(tick_col, np.float32) * at
    if spec.fov:
        surround = np.stack([rng.uniform(1.0, 6.0) + 0.8 * _smooth_noise(rng, (S, S), 8), np.zeros((S, S)), np.zeros((S, S))], -1)
        lab = lab * (1 - dark[..., None]) + surround * dark[..., None]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # out-of-gamut lesion / ink colours are clipped (never skin)
        rgb = lab2rgb(lab, channel_axis=-1)
    rgb = rgb * 255.0 + (rng.random((S, S, 3)) - 0.5)  # dither: 8-bit rounding unbiased on average
    img = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    masks = {"lesion": lesion_mask, "hair": hair_mask, "ink": ink_mask, "ruler": ruler_mask, "fov": fov_mask,
             "hair_dark": (hair_d > 0) & visible, "hair_light": (hair_l > 0) & visible}
    return img, masks


# ----------------------------------------------------------------------------------------------- writing


def _rel(sample_id: str, kind: str) -> str:
    return f"images/{sample_id}.png" if kind == "image" else f"masks/{sample_id}_{kind}.png"


def _render_write(spec: SampleSpec, root: str) -> dict[str, Any]:
    """Render ``spec``, write its PNGs under ``root`` and return its manifest row."""
    import cv2

    cv2.setNumThreads(1)  # parallelism comes from processes; OpenCV threads on 128 px images only add overhead

    img, masks = render_sample(spec)
    if not cv2.imwrite(os.path.join(root, _rel(spec.sample_id, "image")), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {_rel(spec.sample_id, 'image')} under {root}")
    for name in MASK_NAMES:
        if not cv2.imwrite(os.path.join(root, _rel(spec.sample_id, name)), masks[name].astype(np.uint8) * 255):
            raise OSError(f"could not write {_rel(spec.sample_id, name)} under {root}")
    les = spec.lesion
    return {
        "sample_id": spec.sample_id,
        "image_path": os.path.join(root, _rel(spec.sample_id, "image")),
        "patient_id": spec.patient_id,
        "lesion_id": spec.lesion_id,
        "label": int(les.malignant),
        "diagnosis": DIAGNOSIS[les.malignant],
        "malignant": int(les.malignant),
        "fitzpatrick": spec.fitzpatrick,
        "age_approx": spec.age_approx,
        "sex": spec.sex,
        "anatom_site": spec.anatom_site,
        "height": spec.size,
        "width": spec.size,
        "ita_true": spec.ita_true,
        "skin_L": spec.skin_L,
        "skin_a": spec.skin_a,
        "skin_b": spec.skin_b,
        "hair_dark": bool(masks["hair_dark"].any()),
        "hair_light": bool(masks["hair_light"].any()),
        "ink": bool(masks["ink"].any()),
        "ruler": bool(masks["ruler"].any()),
        "fov": spec.fov,
        "lesion_frac": float(masks["lesion"].mean()),
        "lesion_colours": len(les.colours),
        **{f"{name}_mask_path": os.path.join(root, _rel(spec.sample_id, name)) for name in MASK_NAMES},
    }


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(rows)
    df.insert(1, "source", "synthetic")
    df["split"] = pd.NA
    for c in ("ita_true", "skin_L", "skin_a", "skin_b", "lesion_frac"):
        df[c] = df[c].astype("Float32")
    for c in ("hair_dark", "hair_light", "ink", "ruler", "fov"):
        df[c] = df[c].astype("boolean")
    df["lesion_colours"] = df["lesion_colours"].astype("Int8")
    df["sex"] = df["sex"].astype(pd.CategoricalDtype(["female", "male"]))
    df["diagnosis"] = df["diagnosis"].astype(pd.CategoricalDtype(sorted(set(DIAGNOSIS.values()))))
    for name in MASK_NAMES:
        df[f"{name}_mask_path"] = df[f"{name}_mask_path"].astype("string")
    return df


def _refuse_foreign_dir(out_dir: Path) -> None:
    """With --overwrite, only replace an empty folder or a previous synth output (never an arbitrary folder)."""
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "manifest.parquet").is_file():
        raise OutputExistsError(
            f"{out_dir} exists and is not a synthetic dataset (no manifest.parquet); refusing to replace it",
            hint="choose a new --out folder (it is created), or remove this one yourself",
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir} exists and is a file, not a folder", hint="choose a folder path for --out")


def generate(out_dir: Path, n: int, size: int = 128, seed: int = 0, overwrite: bool = False, workers: int = 1,
             min_severity: float = 0.25) -> Manifest:
    """Write ``n`` synthetic images (``size`` px) with masks and ``manifest.parquet`` to ``out_dir`` atomically.

    Layout: ``images/<id>.png``, ``masks/<id>_{lesion,hair,ink,ruler,fov}.png`` (0/255), ``manifest.parquet``
    (classes benign / malignant, ground-truth columns ``ita_true``, ``skin_L/a/b``, artefact flags,
    ``lesion_frac`` and mask paths relative to the folder). Output is identical for any ``workers``.
    ``min_severity``: see :func:`make_specs`.
    Returns the :class:`~lesionkit.manifest.io.Manifest` (its ``path`` is the final manifest file).
    """
    from lesionkit.console import info, track
    from lesionkit.fsio import atomic_dir, check_output
    from lesionkit.manifest.io import (
        Manifest,
        provenance_record,
        read_manifest,
        write_manifest,
    )

    if n < 1:
        raise UsageError(f"n must be at least 1 (got {n})", hint="e.g. --n 200")
    if size < 32:
        raise UsageError(f"size must be at least 32 pixels (got {size})", hint="e.g. --size 128")
    if workers < 1:
        raise UsageError(f"workers must be at least 1 (got {workers})", hint="e.g. --workers 2")
    if not 0.0 <= min_severity <= 1.0:
        raise UsageError(f"min_severity must be in [0, 1] (got {min_severity})", hint="e.g. --min-severity 0.6")
    out_dir = Path(out_dir)
    check_output(out_dir, overwrite)
    _refuse_foreign_dir(out_dir)
    specs = make_specs(n, size, seed, min_severity)
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        root = str(tmp)
        rows: list[dict[str, Any]]
        if workers > 1 and n > 1:
            chunk = max(1, min(32, n // (workers * 4)))
            with ProcessPoolExecutor(max_workers=min(workers, n), mp_context=mp_context()) as ex:
                it: Iterable[dict[str, Any]] = ex.map(_render_write, specs, repeat(root), chunksize=chunk)
                rows = list(track(it, total=n, description="synth"))
        else:
            rows = list(track(map(_render_write, specs, repeat(root)), total=n, description="synth"))
        df = _frame(rows)
        config = {"n": n, "size": size, "seed": seed, "synth_version": SYNTH_VERSION, "min_severity": min_severity,
                  "malignant_fraction": MALIGNANT_FRACTION,
                  "p_hair": P_HAIR, "p_ink": P_INK, "p_ruler": P_RULER, "p_fov": P_FOV}
        manifest = Manifest(
            df=df, classes=list(CLASSES), provenance=[provenance_record("synth", config)],
            extra={"dataset": "synthetic", "notes": {
                "binary_target": "malignant = label (benign 0, malignant 1)", "group_by": "patient_id",
                "fitzpatrick": "derived from ita_true with Kinyanjui thresholds (ground truth, not a human annotation)",
                "ita_true": "atan2(skin_L - 50, skin_b) in degrees; equals the ITA of the mean colour and the mean / median per-pixel ITA over fov & ~(lesion|hair|ink|ruler)",
                "confounders": "hair/ink/ruler/fov drawn independently of the class",
            }},
        )
        write_manifest(manifest, tmp / "manifest.parquet")
    manifest = read_manifest(out_dir / "manifest.parquet")  # paths now point into the final folder
    info(f"wrote {out_dir}: {n} images ({int(df['malignant'].sum())} malignant) at {size}px, seed {seed}")
    return manifest


__all__ = [
    "CLASSES", "LesionSpec", "SampleSpec", "fitzpatrick_from_ita", "generate", "ita_deg", "make_specs", "render_sample",
]
