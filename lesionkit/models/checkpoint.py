"""Checkpoints that later stages can use alone, and that load with ``torch.load(path, weights_only=True)``.

A checkpoint is a dict of plain types (str, int, float, bool, None, list, dict) and tensors:

``format`` ("lesionkit-checkpoint"), ``format_version``, ``versions`` (lesionkit/torch/timm), ``model_spec``
(:meth:`ModelSpec.to_dict`), ``state_dict`` (CPU tensors, unwrapped from DDP ``.module`` / ``torch.compile``
``._orig_mod``), ``classes``, ``target`` (the target definition), ``data_cfg`` (input_size, mean, std,
interpolation), ``meta_encoder`` (``MetaEncoder.to_dict()`` or None), ``config`` (resolved train config),
``epoch``, ``step``, ``best_metric``, ``optimizer`` / ``scheduler`` / ``scaler`` state dicts (or None), ``rng``
(see :func:`rng_state`), ``extra``.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lesionkit.errors import InputError, SchemaVersionError
from lesionkit.fsio import atomic_path
from lesionkit.models.factory import LesionNet, ModelSpec

FORMAT = "lesionkit-checkpoint"
FORMAT_VERSION = 1


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DDP/DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers, any nesting."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if isinstance(inner, nn.Module):
            model = inner
            continue
        inner = getattr(model, "module", None)
        if isinstance(inner, nn.Module):
            model = inner
            continue
        return model


def clean_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop leading ``module.`` / ``_orig_mod.`` prefixes from keys and copy tensors to CPU (detached)."""
    return {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v.detach().cpu() for k, v in sd.items()}


def to_plain(obj: Any, where: str = "checkpoint") -> Any:
    """Convert ``obj`` to types ``torch.load(weights_only=True)`` accepts.

    Path → str; numpy arrays → tensors; numpy scalars → Python numbers; tuples/sets → lists; dataclasses → dicts;
    Mapping keys must be str or int. Raises TypeError naming the offending key path for anything else.
    """
    if obj is None or type(obj) in (bool, int, float, str) or isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, str):  # str subclasses (TorchVersion, StrEnum) are not allowed by weights_only
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, torch.dtype | torch.device):
        return str(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_plain(dataclasses.asdict(obj), where)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} of type {type(k).__name__} is not str/int")
            out[k] = to_plain(v, f"{where}.{k}")
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where}: value of type {type(obj).__name__} cannot be stored in a weights_only checkpoint")


def rng_state() -> dict[str, Any]:
    """Current RNG states (Python ``random``, NumPy global, torch CPU and CUDA) as plain types/tensors."""
    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore RNG states saved by :func:`rng_state` (CUDA states only when the device count matches)."""
    if "python" in state:
        v, internal, gauss = state["python"]
        random.setstate((v, tuple(internal), gauss))
    if "numpy" in state:
        n = state["numpy"]
        keys = n["keys"].numpy() if isinstance(n["keys"], torch.Tensor) else np.asarray(n["keys"])
        np.random.set_state((n["kind"], keys.astype(np.uint32), int(n["pos"]), int(n["has_gauss"]),
                             float(n["cached_gaussian"])))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _versions() -> dict[str, str]:
    import timm

    from lesionkit import __version__

    return {"lesionkit": str(__version__), "torch": str(torch.__version__), "timm": str(timm.__version__)}


def save_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    spec: ModelSpec,
    classes: list[str],
    target: dict,
    data_cfg: dict,
    meta_encoder: dict | None,
    config: dict,
    epoch: int,
    step: int,
    best_metric: float | None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    rng: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Write a checkpoint atomically (temp file + ``os.replace``); see the module docstring for the layout.

    ``model`` may be wrapped (DDP, ``torch.compile``); its unwrapped state dict is stored on CPU. ``epoch`` /
    ``step`` = epochs / optimizer steps completed. ``best_metric`` NaN is stored as None.
    """
    if best_metric is not None and not math.isfinite(float(best_metric)):
        best_metric = None
    obj = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": to_plain(_versions(), "versions"),
        "model_spec": spec.to_dict(),
        "state_dict": clean_state_dict(unwrap_model(model).state_dict()),
        "classes": [str(c) for c in classes],
        "target": to_plain(target, "target"),
        "data_cfg": to_plain(data_cfg, "data_cfg"),
        "meta_encoder": to_plain(meta_encoder, "meta_encoder"),
        "config": to_plain(config, "config"),
        "epoch": int(epoch),
        "step": int(step),
        "best_metric": None if best_metric is None else float(best_metric),
        "optimizer": to_plain(optimizer.state_dict(), "optimizer") if optimizer is not None else None,
        "scheduler": to_plain(scheduler.state_dict(), "scheduler") if scheduler is not None else None,
        "scaler": to_plain(scaler.state_dict(), "scaler") if scaler is not None else None,
        "rng": to_plain(rng, "rng"),
        "extra": to_plain(extra, "extra"),
    }
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a lesionkit checkpoint on CPU with ``weights_only=True``; InputError if missing/corrupt/foreign."""
    path = Path(path)
    hint = "point at a checkpoint written by `lesionkit train` (runs/NAME/checkpoints/best.pt or last.pt)"
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}", hint=hint)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(
            f"cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
            hint="the file is truncated or not a torch checkpoint; " + hint,
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError(f"{path} is not a lesionkit checkpoint (no format={FORMAT!r} entry)", hint=hint)
    version = int(ckpt.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise SchemaVersionError(
            f"checkpoint {path} has format version {version}; this lesionkit reads up to {FORMAT_VERSION}",
            hint="upgrade lesionkit (pip install -U lesionkit)",
        )
    missing = [k for k in ("model_spec", "state_dict", "classes") if k not in ckpt]
    if missing:
        raise InputError(f"checkpoint {path} lacks {missing}", hint=hint)
    return ckpt


def model_from_checkpoint(ckpt: Mapping[str, Any] | Path | str) -> LesionNet:
    """Rebuild the :class:`LesionNet` from a checkpoint dict (or path), load its weights strictly, eval mode."""
    if isinstance(ckpt, (str, Path)):
        ckpt = load_checkpoint(ckpt)
    spec = ModelSpec.from_dict(ckpt["model_spec"])
    model = LesionNet(spec)
    try:
        model.load_state_dict(clean_state_dict(ckpt["state_dict"]), strict=True)
    except RuntimeError as e:
        raise InputError(
            f"checkpoint weights do not fit model {spec.name!r}: {str(e).splitlines()[0]}",
            hint="the checkpoint was written by an incompatible timm/lesionkit version; retrain with `lesionkit train`",
        ) from e
    return model.eval()
