"""Protocols 2 and 3 of the seed's Table 5.8: train with a corruption (then test clean, or test at the same level).

Training goes through the train engine (:func:`lesionkit.train.run.run_train`) with the given run's
``config.yaml`` (same model, data, schedule, seed), a new run directory, and the corruption applied in the
training pipeline's pixel space: every training **and validation** image is corrupted on its ``uint8`` cache image
(deterministically per ``(seed, sample_id)``, so the corrupted training set is fixed across epochs, like a corrupted
copy of the dataset) *before* the augmentation / evaluation transform and normalisation.

The corruption is a train option (``TrainConfig.corruption`` = ``"NAME[(k=v)]:LEVEL"``, ``corruption_seed``):
:func:`lesionkit.train.run.build_data` wraps its datasets in :class:`CorruptedDataset` (picklable: DataLoader
workers load it by name). It is part of the child run's ``config.yaml``, so replaying that config retrains the same
model; ``robustness_train.json`` next to the run records what the protocol asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.robustness.corruptions import CorruptionSpec, apply_numpy

__all__ = ["PROTOCOLS", "CorruptedDataset", "train_with_corruption"]

PROTOCOLS = ("test", "train-corrupt", "matched")


def _manifest_dataset_cls() -> type:
    from lesionkit.data.dataset import ManifestDataset

    return ManifestDataset


class CorruptedDataset:
    """A dataset whose ``load_image(i)`` returns the corrupted ``uint8`` image of row ``i`` (key: ``ids[i]``).

    Built with :meth:`wrap` from a :class:`~lesionkit.data.dataset.ManifestDataset` (the object's class becomes a
    subclass of it, so every other behaviour — transform, targets, metadata — is the original's)."""

    @staticmethod
    def wrap(ds: Any, spec: CorruptionSpec, level: float, seed: int) -> Any:
        if getattr(ds, "ids", None) is None:
            raise ValueError("the dataset has no sample ids; corruptions are keyed by sample_id")
        new = _CorruptedManifestDataset.__new__(_CorruptedManifestDataset)
        new.__dict__.update(ds.__dict__)
        new.corruption = (spec.name, float(level), int(seed), dict(spec.param_dict))
        return new


def _make_cls() -> type:
    base = _manifest_dataset_cls()

    class _Corrupted(base):  # type: ignore[misc, valid-type]
        corruption: tuple[str, float, int, dict[str, Any]]

        def load_image(self, i: int) -> np.ndarray:
            img = super().load_image(i)
            name, level, seed, params = self.corruption
            return apply_numpy(np.ascontiguousarray(img), name, level, seed=seed, sample_id=self.ids[i], params=params)

    _Corrupted.__name__ = _Corrupted.__qualname__ = "_CorruptedManifestDataset"
    _Corrupted.__module__ = __name__
    return _Corrupted


_CorruptedManifestDataset = _make_cls()


def train_with_corruption(base_config: Path, run_dir: Path, spec: CorruptionSpec, level: float, seed: int, *,
                          overrides: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Train a model with the configuration of ``base_config`` (a run's ``config.yaml``) plus the corruption;
    returns the checkpoint to evaluate (``best.pt``, else ``last.pt``). An existing finished run with the same
    record (corruption, level, seed, base config, overrides) is reused unless ``overwrite``, so train-corrupt and
    matched share one trained model per level."""
    import json

    from lesionkit.fsio import write_json_atomic
    from lesionkit.train.config import TrainConfig
    from lesionkit.train.run import run_train

    record = {"corruption": spec.name, "params": dict(spec.params), "level": float(level), "seed": int(seed),
              "base_config": str(Path(base_config).resolve()), "overrides": dict(overrides or {}),
              "applied": "train and validation images, uint8 cache pixels, before augmentation and normalisation"}
    rec_path = Path(run_dir) / "robustness_train.json"
    if not overwrite and rec_path.is_file():
        try:
            old = json.loads(rec_path.read_text(encoding="utf-8"))
            run = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old, run = {}, {}
        if {k: old.get(k) for k in record} == record and run.get("status") in ("finished", "early_stopped"):
            return _best(Path(run_dir))
    cfg = TrainConfig.from_yaml(base_config)
    kw: dict[str, Any] = {"run_dir": str(run_dir), "overwrite": True, "resume": False, "config": str(base_config),
                          "corruption": f"{spec.label}:{level:g}", "corruption_seed": int(seed)}
    kw.update(overrides or {})
    run_train(cfg.replace(**kw))  # the corruption is in the child's config.yaml: replaying it retrains the same
    write_json_atomic(rec_path, record)
    return _best(Path(run_dir))


def _best(run_dir: Path) -> Path:
    for name in ("best.pt", "last.pt"):
        p = run_dir / "checkpoints" / name
        if p.is_file():
            return p
    from lesionkit.errors import InputError

    raise InputError(f"training finished without a checkpoint in {run_dir / 'checkpoints'}")
