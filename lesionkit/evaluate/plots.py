"""Evaluation figures as PNG files (matplotlib, Agg backend; no display needed).

Every function takes arrays / metric dictionaries and a path, writes the PNG atomically and returns the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.evaluate.metrics import RankedScores
from lesionkit.fsio import atomic_path

__all__ = ["confusion_plot", "group_bars_plot", "pr_plot", "reliability_plot", "roc_plot"]

DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _plt()
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    return path


def _curves(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]):
    for k, name in enumerate(classes):
        rs = RankedScores(np.asarray(y) == k, proba[:, k])
        yield k, name, rs


def roc_plot(path: Path, y: np.ndarray, proba: np.ndarray, classes: Sequence[str],
             binary: tuple[np.ndarray, np.ndarray, str] | None = None, min_tpr: float | None = None) -> Path:
    """One-vs-rest ROC per class, the macro average (mean TPR over a common FPR grid) and, when given, the binary
    target's ROC (``binary = (y_bin, score, name)``) with the pAUC region above ``min_tpr`` shaded."""
    plt = _plt()
    ncols = 2 if binary is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.2 * ncols, 5.2), squeeze=False)
    ax = axes[0, 0]
    grid = np.linspace(0, 1, 501)
    tprs = []
    for _, name, rs in _curves(y, proba, classes):
        roc = rs.roc()
        if roc is None:
            continue
        fpr, tpr, _ = roc
        ax.plot(fpr, tpr, lw=1.2, label=f"{name} (AUC {rs.auc():.3f})")
        tprs.append(np.interp(grid, fpr, tpr))
    if tprs:
        mean = np.mean(tprs, axis=0)
        mean[0] = 0.0
        ax.plot(grid, mean, "k--", lw=2, label=f"macro (AUC {np.trapezoid(mean, grid):.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
    ax.set(xlabel="false positive rate (1 − specificity)", ylabel="true positive rate (sensitivity)",
           title="ROC one-vs-rest", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=7, loc="lower right")
    if binary is not None:
        ax2 = axes[0, 1]
        yb, sb, name = binary
        rs = RankedScores(yb, sb)
        roc = rs.roc()
        if roc is not None:
            fpr, tpr, _ = roc
            ax2.plot(fpr, tpr, color="C3", lw=2, label=f"{name} (AUC {rs.auc():.3f})")
            if min_tpr is not None:
                ax2.fill_between(fpr, min_tpr, np.maximum(tpr, min_tpr), color="C3", alpha=0.2, step=None,
                                 label=f"pAUC above TPR {min_tpr:g}: {rs.pauc(min_tpr):.4f}")
                ax2.axhline(min_tpr, color="C3", lw=0.8, ls=":")
        ax2.plot([0, 1], [0, 1], color="0.7", lw=0.8)
        ax2.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC binary target: {name}",
                xlim=(0, 1), ylim=(0, 1.01))
        ax2.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def _pr(rs: RankedScores) -> tuple[np.ndarray, np.ndarray] | None:
    tp, fp = rs.counts()
    p = tp.sum()
    if p <= 0:
        return None
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    prec = np.divide(ctp, ctp + cfp, out=np.ones_like(ctp), where=(ctp + cfp) > 0)
    return np.concatenate([[0.0], ctp / p]), np.concatenate([[1.0], prec])


def pr_plot(path: Path, y: np.ndarray, proba: np.ndarray, classes: Sequence[str],
            binary: tuple[np.ndarray, np.ndarray, str] | None = None) -> Path:
    """Precision–recall curve per class (step plot, AP in the legend) and for the binary target when given."""
    plt = _plt()
    ncols = 2 if binary is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.2 * ncols, 5.2), squeeze=False)
    ax = axes[0, 0]
    for _, name, rs in _curves(y, proba, classes):
        c = _pr(rs)
        if c is None:
            continue
        ax.step(c[0], c[1], where="post", lw=1.2, label=f"{name} (AP {rs.average_precision():.3f})")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision–recall one-vs-rest",
           xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=7, loc="lower left")
    if binary is not None:
        yb, sb, name = binary
        rs = RankedScores(yb, sb)
        c = _pr(rs)
        ax2 = axes[0, 1]
        if c is not None:
            ax2.step(c[0], c[1], where="post", color="C3", lw=2, label=f"{name} (AP {rs.average_precision():.3f})")
            ax2.axhline(np.mean(np.asarray(yb, dtype=bool)), color="0.6", ls=":", lw=1, label="prevalence")
        ax2.set(xlabel="recall", ylabel="precision", title=f"Precision–recall binary target: {name}",
                xlim=(0, 1), ylim=(0, 1.02))
        ax2.legend(fontsize=8, loc="lower left")
    return _save(fig, path)


def confusion_plot(path: Path, cm: np.ndarray, classes: Sequence[str]) -> Path:
    """Confusion matrix as counts and row-normalised (fraction of each true class), side by side."""
    plt = _plt()
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    c = len(classes)
    size = max(4.5, 0.55 * c + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    for ax, mat, title, fmt in ((axes[0], cm, "counts", "{:.0f}"), (axes[1], norm, "normalised by true class", "{:.2f}")):
        im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=mat.max() if mat.max() > 0 else 1)
        ax.set_xticks(range(c), classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(c), classes, fontsize=8)
        ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix ({title})")
        hi = mat.max() * 0.6
        for i in range(c):
            for j in range(c):
                ax.text(j, i, fmt.format(mat[i, j]), ha="center", va="center", fontsize=7 if c > 8 else 9,
                        color="white" if mat[i, j] > hi else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _save(fig, path)


def reliability_plot(path: Path, panels: Sequence[tuple[str, dict[str, Any]]]) -> Path:
    """Reliability diagrams: one panel per ``(title, Reliability.to_dict())``; bars = observed frequency per
    confidence bin, diagonal = perfect calibration, the histogram of confidences below."""
    plt = _plt()
    n = len(panels)
    fig, axes = plt.subplots(2, n, figsize=(5.2 * n, 6.0), squeeze=False, gridspec_kw={"height_ratios": [3, 1]})
    for j, (title, rel) in enumerate(panels):
        edges = np.asarray(rel["edges"])
        centers = 0.5 * (edges[1:] + edges[:-1])
        width = edges[1] - edges[0]
        freq = np.array([np.nan if v is None else v for v in rel["frequency"]])
        conf = np.array([np.nan if v is None else v for v in rel["confidence"]])
        ax = axes[0, j]
        ax.bar(centers, np.nan_to_num(freq), width=width * 0.95, color="C0", alpha=0.8, label="observed")
        ok = np.isfinite(conf)
        ax.plot(conf[ok], freq[ok], "o", color="C1", ms=4, label="mean confidence")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ece = rel.get("ece")
        ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed frequency",
               title=f"{title}\nECE {ece:.4f}" if ece is not None else title)
        ax.legend(fontsize=7, loc="upper left")
        axes[1, j].bar(centers, rel["count"], width=width * 0.95, color="0.5")
        axes[1, j].set(xlim=(0, 1), xlabel="confidence", ylabel="samples")
    fig.tight_layout()
    return _save(fig, path)


def group_bars_plot(path: Path, table: dict[str, Any], metrics: Sequence[str] | None = None) -> Path:
    """Per-group metric bars with bootstrap 95% CI whiskers (one panel per metric); hatched bars = groups not
    compared (missing or too small); n under each group name."""
    plt = _plt()
    groups = table["groups"]
    metrics = list(metrics or next(iter(groups))["metrics"].keys()) if groups else []
    k = len(metrics)
    ncols = k if len(groups) <= 6 else 2  # many groups: a 2-column grid instead of one very wide row
    nrows = -(-k // ncols)
    width = min(9.0, max(3.2, 0.55 * len(groups) + 1.5))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 4.2 * nrows), squeeze=False)
    for extra in axes.flat[k:]:
        extra.set_visible(False)
    labels = [f"{g['group']}\nn={g['n']}" for g in groups]
    for j, m in enumerate(metrics):
        ax = axes.flat[j]
        for i, g in enumerate(groups):
            e = g["metrics"][m]
            v = e["estimate"]
            if v is None:
                ax.text(i, 0.02, "n/a", ha="center", fontsize=7, rotation=90)
                continue
            lo = e["ci_low"] if e["ci_low"] is not None else v
            hi = e["ci_high"] if e["ci_high"] is not None else v
            ax.bar(i, v, color=f"C{j}", alpha=0.85 if g["compared"] else 0.35, hatch=None if g["compared"] else "//",
                   edgecolor="k", lw=0.5)
            ax.errorbar(i, v, yerr=[[max(v - lo, 0)], [max(hi - v, 0)]], color="k", capsize=3, lw=1)
        ax.set_xticks(range(len(groups)), labels, fontsize=7, rotation=45 if len(groups) > 6 else 0,
                      ha="right" if len(groups) > 6 else "center")
        gap = table["gaps"].get(m, {})
        sub = f"gap {gap['estimate']:.3f}" if gap.get("estimate") is not None else "gap n/a"
        ax.set(ylim=(0, 1.05), title=f"{m.replace('_', ' ')} by {table['column']}\n{sub}")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
