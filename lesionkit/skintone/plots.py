"""PNG figures of skin-tone estimates: ITA per human type, and the estimated skin-tone distribution.

Both are written atomically (matplotlib, Agg backend; no display needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lesionkit.fsio import atomic_path
from lesionkit.skintone.thresholds import FITZ_NAMES, ThresholdSet

__all__ = ["plot_estimated_distribution", "plot_ita_by_type"]

# a light-to-dark ramp for types I..VI (the Fitzpatrick colour convention of many papers)
TYPE_COLOURS = ("#f4d9c6", "#e8bd9c", "#d09b73", "#a9734c", "#7b4f31", "#4a2e1d")


def _save(fig, path: Path) -> None:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_ita_by_type(ita: np.ndarray, truth: np.ndarray, thresholds: ThresholdSet, path: Path | str,
                     title: str = "Estimated ITA per human Fitzpatrick type") -> Path:
    """Box plot + jittered points of ``ita`` (degrees) for each ``truth`` type 1..6, with the threshold edges as
    dashed lines and the estimated category bands labelled on the right. NaNs are left out (counted in the
    x labels as ``n`` used)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    ita = np.asarray(ita, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(8, 5))
    rng = np.random.default_rng(0)
    data, labels, pos = [], [], []
    for k in range(1, 7):
        v = ita[(truth == k) & np.isfinite(ita)]
        labels.append(f"{FITZ_NAMES[k - 1]}\nn={len(v)}")
        pos.append(k)
        data.append(v)
        if len(v):
            x = k + rng.uniform(-0.18, 0.18, len(v))
            ax.scatter(x, v, s=9, color=TYPE_COLOURS[k - 1], edgecolor="0.3", linewidth=0.3, zorder=3, alpha=0.8)
    nonempty = [i for i, v in enumerate(data) if len(v)]
    if nonempty:
        ax.boxplot([data[i] for i in nonempty], positions=[pos[i] for i in nonempty], widths=0.5, showfliers=False,
                   medianprops={"color": "crimson"}, zorder=2)
    finite = ita[np.isfinite(ita)]
    lo = min(-40.0, float(finite.min()) - 5) if finite.size else -40.0
    hi = max(75.0, float(finite.max()) + 5) if finite.size else 75.0
    edges = [hi, *thresholds.edges, lo]
    for e in thresholds.edges:
        ax.axhline(e, color="0.4", linestyle="--", linewidth=0.8, zorder=1)
    for j, name in enumerate(thresholds.categories):
        top, bot = edges[j], edges[j + 1]
        if bot < hi and top > lo:
            ax.text(6.62, (min(top, hi) + max(bot, lo)) / 2, name, va="center", ha="left", fontsize=8, color="0.25")
    ax.set_xlim(0.4, 6.6)
    ax.set_ylim(lo, hi)
    ax.set_xticks(pos, labels)
    ax.set_xlabel("human Fitzpatrick type")
    ax.set_ylabel("estimated ITA (degrees; larger = lighter)")
    ax.set_title(f"{title}\n(dashed: {thresholds.name} edges {', '.join(f'{e:g}' for e in thresholds.edges)})",
                 fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return path


def plot_estimated_distribution(pred: np.ndarray, thresholds: ThresholdSet, path: Path | str,
                                truth: np.ndarray | None = None, n_error: int = 0, truth_label: str = "human",
                                title: str = "Estimated skin-tone distribution") -> Path:
    """Bar chart of the estimated categories 1..6 (as percentages of the images with an estimate, counts on the
    bars), side by side with the human types when ``truth`` is given; ``n_error`` images without an estimate are
    stated in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    pred = np.asarray(pred, dtype=np.float64)
    est = np.array([int(np.sum(pred == k)) for k in range(1, 7)])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = np.arange(1, 7)
    width = 0.4 if truth is not None else 0.7
    tot = max(1, int(est.sum()))
    bars = ax.bar(x - (width / 2 if truth is not None else 0), 100 * est / tot, width, color=TYPE_COLOURS,
                  edgecolor="0.2", label=f"estimated ({thresholds.name})")
    for rect, c in zip(bars, est, strict=True):
        ax.text(rect.get_x() + rect.get_width() / 2, rect.get_height(), str(c), ha="center", va="bottom", fontsize=8)
    if truth is not None:
        t = np.asarray(truth, dtype=np.float64)
        hum = np.array([int(np.sum(t == k)) for k in range(1, 7)])
        th = max(1, int(hum.sum()))
        b2 = ax.bar(x + width / 2, 100 * hum / th, width, color="none", edgecolor="0.2", hatch="//", label=truth_label)
        for rect, c in zip(b2, hum, strict=True):
            ax.text(rect.get_x() + rect.get_width() / 2, rect.get_height(), str(c), ha="center", va="bottom", fontsize=8)
        ax.legend(fontsize=8)
    names = [f"{i}\n{c}" if c != FITZ_NAMES[i - 1] else FITZ_NAMES[i - 1] for i, c in zip(x, thresholds.categories)]
    ax.set_xticks(x, names)
    ax.set_xlabel("estimated category (fitzpatrick_est)")
    ax.set_ylabel("% of images with an estimate")
    ax.set_title(f"{title}\n{int(est.sum())} images with an estimate, {n_error} without (skintone_error)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return path
