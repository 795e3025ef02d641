"""Training data: targets, metadata encoding, the decoded-image cache, transforms, the Dataset and samplers.

Names are imported lazily, so ``from lesionkit.data.targets import resolve_target`` or
``from lesionkit.data.meta import MetaEncoder`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TargetSpec": "targets", "resolve_target": "targets", "target_choices": "targets", "MALIGNANT_DIAGNOSES": "targets",
    "MetaEncoder": "meta", "parse_meta_columns": "meta",
    "ImageCache": "cache", "build_cache": "cache", "cache_key": "cache", "default_cache_root": "cache",
    "open_cache": "cache", "fit_square": "cache",
    "PRESETS": "transforms", "PRESET_HELP": "transforms", "build_transform": "transforms", "eval_crop_fraction": "transforms",
    "cache_size_for": "transforms", "ImageTransform": "transforms",
    "ManifestDataset": "dataset", "make_loader": "dataset", "worker_init": "dataset",
    "class_weights": "samplers", "parse_class_weights": "samplers", "EpochSampler": "samplers",
    "ShardedEvalSampler": "samplers", "SAMPLER_MODES": "samplers",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'lesionkit.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lesionkit.data.{mod}"), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
