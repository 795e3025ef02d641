"""ITA → category / Fitzpatrick-estimate threshold presets.

A preset is five strictly decreasing ITA edges (degrees) and six category names. Category k (1..6) is
``edges[k-2] >= ITA > edges[k-1]`` with edges[-1] = +inf and edges[5] = -inf, i.e. ``ITA > e1 → 1``,
``e1 >= ITA > e2 → 2``, ..., ``ITA <= e5 → 6`` (the convention of Kinyanjui et al. and of the seed's code).
``fitzpatrick_est`` is that index k. It is an *estimate* from colour: the Fitzpatrick scale is about sun
reactivity, and the human ``fitzpatrick`` column is never overwritten.

Presets:

* ``kinyanjui`` (55, 41, 28, 19, 10): Kinyanjui et al. 2020, used by Bevan & Atapour-Abarghouei 2022 (the seed)
  and by lesionkit's synthetic generator for its ground-truth ``fitzpatrick``.
* ``groh-empirical`` (45, 28, 17, 5, -20): ITA edges fitted to human Fitzpatrick labels of Fitzpatrick17k
  (Groh et al. 2021, "empirically derived" thresholds).
* ``del-bino`` (55, 41, 28, 10, -30): the ITA skin-colour categories of Chardon et al. 1991 / Del Bino et al.
  2006 (very light, light, intermediate, tan, brown, dark); ``fitzpatrick_est`` is then the category's rank
  (1 = very light ... 6 = dark), not a claim about Fitzpatrick types.
* custom: ``"e1,e2,e3,e4,e5"`` (five decreasing numbers), categories named I..VI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lesionkit.errors import UsageError

__all__ = ["FITZ_NAMES", "PRESETS", "ThresholdSet", "categorize", "parse_thresholds"]

FITZ_NAMES = ("I", "II", "III", "IV", "V", "VI")


@dataclass(frozen=True)
class ThresholdSet:
    """Five strictly decreasing ITA edges in degrees and the six category names (lightest first)."""

    name: str
    edges: tuple[float, float, float, float, float]
    categories: tuple[str, str, str, str, str, str]
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.edges) != 5 or len(self.categories) != 6:
            raise UsageError(f"threshold set {self.name!r} needs 5 edges and 6 categories "
                             f"(got {len(self.edges)} and {len(self.categories)})")
        if not all(math.isfinite(e) for e in self.edges) or any(a <= b for a, b in zip(self.edges, self.edges[1:])):
            raise UsageError(f"ITA edges must be finite and strictly decreasing (got {list(self.edges)})",
                             hint="e.g. --thresholds 55,41,28,19,10 (ITA > 55 → 1, ..., ITA <= 10 → 6)")

    def index(self, ita: float) -> int:
        """Category 1..6 of one ITA value in degrees (NaN raises ValueError: callers report a reason instead)."""
        if not math.isfinite(ita):
            raise ValueError(f"ITA must be finite to categorise (got {ita})")
        for k, e in enumerate(self.edges, start=1):
            if ita > e:
                return k
        return 6

    def describe(self) -> list[str]:
        """Human-readable intervals, one per category: e.g. 'I: ITA > 55', 'II: 41 < ITA <= 55'."""
        e = self.edges
        out = [f"{self.categories[0]}: ITA > {e[0]:g}"]
        out += [f"{self.categories[k]}: {e[k]:g} < ITA <= {e[k - 1]:g}" for k in range(1, 5)]
        out.append(f"{self.categories[5]}: ITA <= {e[4]:g}")
        return out


PRESETS: dict[str, ThresholdSet] = {
    "kinyanjui": ThresholdSet("kinyanjui", (55.0, 41.0, 28.0, 19.0, 10.0), FITZ_NAMES,
                              "Kinyanjui et al. 2020; Bevan & Atapour-Abarghouei 2022"),
    "groh-empirical": ThresholdSet("groh-empirical", (45.0, 28.0, 17.0, 5.0, -20.0), FITZ_NAMES,
                                   "Groh et al. 2021 (fitted to Fitzpatrick17k human labels)"),
    "del-bino": ThresholdSet("del-bino", (55.0, 41.0, 28.0, 10.0, -30.0),
                             ("very light", "light", "intermediate", "tan", "brown", "dark"),
                             "Chardon et al. 1991; Del Bino et al. 2006"),
}


def parse_thresholds(spec: str | ThresholdSet) -> ThresholdSet:
    """A preset name (``PRESETS``) or custom edges ``"e1,e2,e3,e4,e5"`` (degrees, strictly decreasing)."""
    if isinstance(spec, ThresholdSet):
        return spec
    s = str(spec).strip()
    if s in PRESETS:
        return PRESETS[s]
    body = s.removeprefix("custom:")
    try:
        edges = tuple(float(x) for x in body.split(","))
    except ValueError:
        raise UsageError(f"--thresholds {spec!r} is neither a preset nor five comma-separated numbers",
                         hint=f"presets: {', '.join(PRESETS)}; or custom edges such as 55,41,28,19,10") from None
    if len(edges) != 5:
        raise UsageError(f"--thresholds needs exactly five edges for six categories (got {len(edges)}: {spec!r})",
                         hint="e.g. --thresholds 55,41,28,19,10")
    return ThresholdSet("custom", edges, FITZ_NAMES, "user-supplied edges")  # type: ignore[arg-type]


def categorize(ita: np.ndarray, thresholds: ThresholdSet) -> np.ndarray:
    """Vectorised :meth:`ThresholdSet.index`: int8 array of 1..6, 0 where ``ita`` is NaN (no estimate)."""
    ita = np.asarray(ita, dtype=np.float64)
    k = 1 + (ita[..., None] <= np.asarray(thresholds.edges)).sum(-1)
    return np.where(np.isfinite(ita), k, 0).astype(np.int8)
