"""Test-time corruption sweep: one trained model, the evaluation images corrupted at several levels, no training.

Pipeline per batch (batched on the model's device): the ``uint8`` images at the checkpoint's cache size (the same
square images training read: :func:`lesionkit.data.cache.fit_square` of the decoded file) → **corruption in pixel
space** (:func:`~lesionkit.robustness.corruptions.apply_batch`, deterministic per ``(seed, sample_id)``) → the
evaluation transform of the checkpoint (centre crop fraction, resize to the input size, scale to [0, 1], normalise
with the model's mean / std) → model → probabilities. Levels are therefore in pixels of the cache image, which is
the model input size for the ``none`` / ``light`` / ``heavy`` presets.

Metrics of a cell (:func:`cell_metrics`): accuracy, balanced accuracy and macro one-vs-rest AUC (binary: the AUC)
from :mod:`lesionkit.evaluate.metrics`, with cluster-bootstrap percentile CIs (patients, else lesions, else images;
:mod:`lesionkit.evaluate.bootstrap`), the same for every skin-tone group, and *paired* deltas against the clean
predictions: each bootstrap replicate resamples the same clusters for the corrupted and the clean predictions, so
the CI of a delta reflects the change, not the spread of two independent estimates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lesionkit.robustness.corruptions import CorruptionSpec, apply_batch

__all__ = ["HEADLINE_METRICS", "EvalData", "cell_metrics", "iter_batches", "predict", "probabilities"]

HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "auc")


@dataclass
class EvalData:
    """Images (indexable → ``uint8 (S, S, 3)``), their ids, class indices, optional metadata and row groups."""

    images: Any  # ImageCache / CacheView / list of arrays
    ids: list[str]
    y: np.ndarray
    classes: list[str]
    binary: bool
    meta: np.ndarray | None = None
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # group column → label per row
    clusters: np.ndarray | None = None  # cluster code per row (bootstrap unit)
    cluster_unit: str = "image"


class _ImagesDS:
    """Picklable map-style dataset: ``uint8 (3, S, S)`` tensors of ``images[i]``."""

    def __init__(self, images: Any, n: int):
        self.images = images
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.images[i])).permute(2, 0, 1)


def iter_batches(images: Any, n: int, batch_size: int, workers: int = 0) -> Iterator[tuple[np.ndarray, Any]]:
    """``(row indices, uint8 tensor [B, 3, S, S])`` over ``images[0..n-1]`` (DataLoader workers when ``workers``)."""
    import torch

    if workers > 0:
        from torch.utils.data import DataLoader

        loader = DataLoader(_ImagesDS(images, n), batch_size=batch_size, num_workers=workers,
                            pin_memory=torch.cuda.is_available())
        start = 0
        for b in loader:
            yield np.arange(start, start + len(b)), b
            start += len(b)
        return
    for s in range(0, n, batch_size):
        idx = np.arange(s, min(n, s + batch_size))
        arr = np.stack([np.asarray(images[int(i)]) for i in idx])
        yield idx, torch.from_numpy(arr).permute(0, 3, 1, 2)


def probabilities(logits: Any, binary: bool) -> Any:
    """Class probabilities ``[B, C]``: softmax, or ``[1 - σ, σ]`` for a one-logit binary model."""
    import torch

    logits = logits.float()
    if binary and logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def predict(model: Any, data: EvalData, pipeline: Callable[[Any], Any], *, device: Any, batch_size: int = 64,
            corruption: CorruptionSpec | None = None, level: float | None = None, seed: int = 0,
            workers: int = 0, amp: bool = False, progress: Callable[[Any], Any] | None = None) -> tuple[np.ndarray, float]:
    """Probabilities ``[n, C]`` of ``model`` on ``data`` (corrupted when ``corruption``), and the seconds spent.

    ``pipeline``: batched evaluation transform ``uint8 [B, 3, S, S]`` → normalised float input (on ``device``).
    """
    import torch

    n = len(data.ids)
    out = np.zeros((n, len(data.classes)), np.float64)
    t0 = time.perf_counter()
    meta_all = None if data.meta is None else torch.from_numpy(np.ascontiguousarray(data.meta, np.float32))
    batches: Any = iter_batches(data.images, n, batch_size, workers)
    if progress is not None:
        batches = progress(batches)
    with torch.inference_mode():
        for idx, xb in batches:
            xb = xb.to(device, non_blocking=True)
            if corruption is not None:
                xb = apply_batch(xb, corruption.name, float(level), seed=seed, sample_ids=[data.ids[i] for i in idx],
                                 params=corruption.param_dict)
            x = pipeline(xb)
            meta = None if meta_all is None else meta_all[idx].to(device)
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x, meta) if meta is not None else model(x)
            out[idx] = probabilities(logits, data.binary).double().cpu().numpy()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------- metrics


def _headline(y: np.ndarray, proba: np.ndarray, classes: Sequence[str], w: np.ndarray | None,
              ranked: Any) -> dict[str, float | None]:
    from lesionkit.evaluate.metrics import multiclass_metrics

    if w is not None and w.sum() <= 0:
        return dict.fromkeys(HEADLINE_METRICS)
    m = multiclass_metrics(y, proba, classes, w=w, ranked=ranked, per_class=False)
    return {"accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"], "auc": m["auc_macro_ovr"]}


def cell_metrics(data: EvalData, proba: np.ndarray, clean: np.ndarray | None, *, n_boot: int = 200,
                 boot_seed: int = 0, alpha: float = 0.05, min_group_size: int = 10) -> dict[str, Any]:
    """Metrics of one cell with CIs, per group, and paired deltas vs ``clean`` probabilities (same rows).

    Returns ``{"overall": {metric: {estimate, ci_low, ci_high, n_valid}}, "delta": {...} | None,
    "per_group": {column: {group: {"n", metric: {...}, "delta": {...}}}}, "full": multiclass_metrics(...),
    "bootstrap": {...}}``. Metrics are fractions in [0, 1]; deltas are corrupted − clean.
    """
    from lesionkit.evaluate.bootstrap import ClusterBootstrap, bootstrap_stats
    from lesionkit.evaluate.groups import MISSING
    from lesionkit.evaluate.metrics import RankedScores, multiclass_metrics

    y = np.asarray(data.y, np.int64)
    c = len(data.classes)
    codes = data.clusters if data.clusters is not None else np.arange(len(y))
    boot = ClusterBootstrap(codes, n_boot=n_boot, seed=boot_seed, alpha=alpha)
    subsets: dict[str, np.ndarray] = {"all": np.arange(len(y))}
    for col, labels in data.groups.items():
        labels = np.asarray(labels).astype(str)
        for g in sorted(set(labels.tolist())):
            if g == MISSING:
                continue
            idx = np.flatnonzero(labels == g)
            if len(idx) >= min_group_size:
                subsets[f"{col}={g}"] = idx
    ranked = {k: [RankedScores(y[i] == j, proba[i, j]) for j in range(c)] for k, i in subsets.items()}
    ranked_clean = ({k: [RankedScores(y[i] == j, clean[i, j]) for j in range(c)] for k, i in subsets.items()}
                    if clean is not None else None)

    def stat(w: np.ndarray | None) -> dict[str, float | None]:
        res: dict[str, float | None] = {}
        for key, i in subsets.items():
            wi = None if w is None else w[i]
            m = _headline(y[i], proba[i], data.classes, wi, ranked[key])
            for k, v in m.items():
                res[f"{key}|{k}"] = v
            if clean is not None:
                m0 = _headline(y[i], clean[i], data.classes, wi, ranked_clean[key])  # type: ignore[index]
                for k, v in m.items():
                    res[f"{key}|delta_{k}"] = None if v is None or m0[k] is None else v - m0[k]
        return res

    cis = bootstrap_stats(stat, boot)

    def block(key: str) -> dict[str, Any]:
        b: dict[str, Any] = {"n": len(subsets[key])}
        for k in HEADLINE_METRICS:
            b[k] = cis[f"{key}|{k}"]
        if clean is not None:
            b["delta"] = {k: cis[f"{key}|delta_{k}"] for k in HEADLINE_METRICS}
        return b

    per_group: dict[str, dict[str, Any]] = {}
    for key in subsets:
        if key == "all":
            continue
        col, g = key.split("=", 1)
        per_group.setdefault(col, {})[g] = block(key)
    overall = block("all")
    return {
        "overall": {k: overall[k] for k in HEADLINE_METRICS},
        "n": overall["n"],
        "delta": overall.get("delta"),
        "per_group": per_group,
        "full": multiclass_metrics(y, proba, data.classes),
        "bootstrap": {**boot.describe(), "unit": data.cluster_unit, "paired_with_clean": clean is not None},
        "min_group_size": int(min_group_size),
    }
