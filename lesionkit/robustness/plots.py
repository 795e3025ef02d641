"""Robustness figures (matplotlib, Agg; written atomically): metric vs level with CI bands per corruption,
per-skin-tone-group degradation, and a contact sheet of every corruption at its levels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lesionkit.fsio import atomic_path
from lesionkit.robustness.corruptions import CorruptionSpec, apply_numpy

__all__ = ["contact_sheet", "degradation_plot", "group_degradation_plot"]

DPI = 110
PROTOCOL_STYLE = {"test": ("tab:red", "test-time corruption"), "train-corrupt": ("tab:blue", "trained corrupted, tested clean"),
                  "matched": ("tab:green", "trained and tested at the level")}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _plt()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def _grid(n: int) -> tuple[int, int]:
    cols = min(3, n)
    return math.ceil(n / cols), cols


def degradation_plot(summary: pd.DataFrame, metric: str, path: Path) -> Path | None:
    """One panel per corruption: ``metric`` (percent) vs level, a line per protocol with its 95 % CI band, and the
    clean value (dashed, grey band). None when the summary has no corrupted cell with that metric defined."""
    s = summary[(summary["group_col"] == "all") & (summary["metric"] == metric)]
    cor = s[s["level"].notna() & s["value"].notna()]
    if cor.empty:
        return None
    plt = _plt()
    names = list(dict.fromkeys(cor["corruption"].tolist()))
    rows, cols = _grid(len(names))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    clean = s[s["protocol"] == "clean"]
    for ax, name in zip(axes.ravel(), names):
        if not clean.empty and np.isfinite(clean["value"].iloc[0]):
            c = clean.iloc[0]
            ax.axhline(100 * c["value"], color="0.3", ls="--", lw=1, label=f"clean {100 * c['value']:.1f}%")
            if np.isfinite(c["ci_low"]):
                ax.axhspan(100 * c["ci_low"], 100 * c["ci_high"], color="0.85", alpha=0.6, lw=0)
        d = cor[cor["corruption"] == name]
        for proto, g in d.groupby("protocol", observed=True, sort=False):
            g = g.sort_values("level")
            colour, lab = PROTOCOL_STYLE.get(str(proto), ("tab:purple", str(proto)))
            x = g["level"].to_numpy(float)
            ax.plot(x, 100 * g["value"], "o-", color=colour, label=lab, ms=4)
            ax.fill_between(x, 100 * g["ci_low"], 100 * g["ci_high"], color=colour, alpha=0.18, lw=0)
            if len(x) == 1:  # a band needs two levels: show a single level's CI as an error bar
                v = 100 * g["value"].to_numpy(float)
                ax.errorbar(x, v, yerr=[v - 100 * g["ci_low"].to_numpy(float), 100 * g["ci_high"].to_numpy(float) - v],
                            color=colour, capsize=3, lw=1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("level")
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(f"{metric} vs corruption level (95% bootstrap CI)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def group_degradation_plot(summary: pd.DataFrame, metric: str, path: Path) -> Path | None:
    """One panel per (protocol, corruption): change of ``metric`` (percent points, corrupted − clean) vs level, a
    line per skin-tone group with its paired-bootstrap CI band. None without per-group rows."""
    s = summary[(summary["group_col"] != "all") & (summary["metric"] == metric) & summary["level"].notna()
                & summary["delta"].notna()]
    if s.empty:
        return None
    plt = _plt()
    keys = list(dict.fromkeys(zip(s["protocol"].tolist(), s["corruption"].tolist())))
    rows, cols = _grid(len(keys))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    cmap = plt.get_cmap("copper")
    groups = list(dict.fromkeys(s["group"].tolist()))
    for ax, (proto, name) in zip(axes.ravel(), keys):
        d = s[(s["protocol"] == proto) & (s["corruption"] == name)]
        for k, g in enumerate(groups):
            gg = d[d["group"] == g].sort_values("level")
            if gg.empty:
                continue
            colour = cmap(0.1 + 0.8 * k / max(1, len(groups) - 1))
            x = gg["level"].to_numpy(float)
            ax.plot(x, 100 * gg["delta"], "o-", color=colour, ms=3, label=f"{gg['group_col'].iloc[0]} {g} (n={gg['n'].iloc[0]})")
            ax.fill_between(x, 100 * gg["delta_ci_low"], 100 * gg["delta_ci_high"], color=colour, alpha=0.12, lw=0)
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_title(f"{name} ({proto})", fontsize=10)
        ax.set_xlabel("level")
        ax.set_ylabel(f"Δ {metric} (points)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"Degradation per skin-tone group: Δ {metric} vs clean (paired 95% CI)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def contact_sheet(images: Sequence[np.ndarray], specs: Sequence[CorruptionSpec], path: Path, *, seed: int = 0,
                  sample_ids: Sequence[str] | None = None, scale: int = 2) -> Path:
    """PNG grid: for each image, a row per corruption with the clean image then every level (labelled), images
    enlarged ``scale`` times with nearest-neighbour so single pixels stay visible."""
    plt = _plt()
    ids = list(sample_ids) if sample_ids is not None else [f"sample{i}" for i in range(len(images))]
    ncols = 1 + max(len(s.levels) for s in specs)
    nrows = len(specs) * len(images)
    h, w = images[0].shape[:2]
    cell = max(1.3, scale * max(h, w) / DPI)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows * 1.08), squeeze=False)
    r = 0
    for img, sid in zip(images, ids):
        for spec in specs:
            axes[r, 0].imshow(img, interpolation="nearest")
            axes[r, 0].set_title("clean", fontsize=7)
            axes[r, 0].set_ylabel(spec.label, fontsize=7)
            for j in range(1, ncols):
                ax = axes[r, j]
                if j - 1 < len(spec.levels):
                    lv = spec.levels[j - 1]
                    ax.imshow(apply_numpy(img, spec.name, lv, seed=seed, sample_id=sid, params=spec.param_dict),
                              interpolation="nearest")
                    ax.set_title(f"{lv:g}", fontsize=7)
            for ax in axes[r]:
                ax.set_xticks([])
                ax.set_yticks([])
                for sp in ax.spines.values():
                    sp.set_visible(False)
            r += 1
    fig.tight_layout(pad=0.3)
    return _save(fig, path)
