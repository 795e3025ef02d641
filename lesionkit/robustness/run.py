"""``lesionkit robustness``: corruption sweeps and protocols for a trained run; see :func:`run_robustness`.

Output folder (default ``RUN_DIR/robustness/``)::

    robustness.json                 config, inputs (checkpoint sha256, manifest fingerprint, split), cells, timings
    cells/<protocol>/<corruption>/<level>/metrics.json   one per cell (``clean/`` for the clean baseline)
    cells/.../predictions.parquet   sample_id, label, one probability column per class
    summary.parquet, summary.csv    long table: protocol, corruption, level, group, metric, value, CI, delta (+ CI)
    plots/*.png                     metric vs level with CI bands per corruption; per-skin-tone-group degradation
    robustness.html                 the robustness report (self-contained)
    train/<corruption>_<level>/     run directories of protocols train-corrupt / matched (train engine)
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lesionkit.console import info, warn
from lesionkit.errors import InputError, UsageError
from lesionkit.robustness.corruptions import CorruptionSpec, parse_corruption
from lesionkit.robustness.protocols import PROTOCOLS

__all__ = ["DEFAULT_SWEEP", "RobustnessConfig", "load_eval_data", "resolve_checkpoint", "run_robustness"]

# The seed's test-time sweep: impulse 1-5 % and 15 %, isotropic 5x5 / 7x7 blur, 45° motion blur.
DEFAULT_SWEEP = ("impulse:0.01,0.02,0.03,0.04,0.05,0.15", "gaussian_blur:5,7", "motion_blur:5,7")
# Protocols 2 / 3 train one model per level: the default is the seed's shorter list.
DEFAULT_TRAIN_SWEEP = ("impulse:0.01,0.05,0.15",)
SKINTONE_COLUMNS = ("fitzpatrick_est", "fitzpatrick", "ita_category")


@dataclass
class RobustnessConfig:
    """Options of ``lesionkit robustness`` (units: levels as in ``--list``; batch sizes in images)."""

    run: str  # run directory or checkpoint file
    corruptions: list[str] = field(default_factory=list)  # NAME[(k=v)][:LEVELS]; empty = the protocol's default
    protocol: str = "test"
    out: str = ""  # default RUN_DIR/robustness
    subset: str = "auto"  # auto (test ids of the split, else the fold's val) | test | val
    manifest: str = ""  # override the run's manifest (e.g. one with skin-tone columns)
    splits: str = ""
    group_by: str = "auto"  # skin-tone group column(s): auto = first of fitzpatrick_est, fitzpatrick, ita_category
    seed: int = 0  # corruption seed
    n_boot: int = 200
    min_group_size: int = 10  # smaller skin-tone groups are left out of the per-group rows
    batch_size: int = 128
    workers: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto (bf16 on CUDA) | off | bf16
    cache_dir: str = ""
    epochs: int | None = None  # override epochs for protocols 2 / 3
    train_overrides: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False


def resolve_checkpoint(run: Path) -> tuple[Path, Path | None]:
    """``(checkpoint, run_dir)`` from a run directory (``checkpoints/best.pt``, else ``last.pt``) or a ``.pt`` file."""
    run = Path(run)
    if run.is_file():
        rd = run.parent.parent if run.parent.name == "checkpoints" else None
        return run, rd
    for name in ("best.pt", "last.pt"):
        p = run / "checkpoints" / name
        if p.is_file():
            return p, run
    raise InputError(f"no checkpoint in {run} (looked for checkpoints/best.pt and checkpoints/last.pt)",
                     hint="train a model first: lesionkit train --manifest M --splits S --run-dir " + str(run))


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here", hint="use --device cpu (or auto)")
    return name


def load_eval_data(ckpt: dict[str, Any], cfg: RobustnessConfig) -> tuple[Any, dict[str, Any]]:
    """The evaluation images (an image cache at the checkpoint's cache size), targets, groups and clusters."""
    import pandas as pd

    from lesionkit.data.cache import build_cache, cache_key, default_cache_root
    from lesionkit.data.targets import resolve_target
    from lesionkit.evaluate.bootstrap import cluster_codes
    from lesionkit.evaluate.groups import derive_group
    from lesionkit.manifest.io import read_manifest
    from lesionkit.robustness.sweep import EvalData
    from lesionkit.splits.io import read_splits

    tcfg = ckpt.get("config") or {}
    dcfg = ckpt.get("data_cfg") or {}
    manifest_path = cfg.manifest or tcfg.get("manifest")
    splits_path = cfg.splits or tcfg.get("splits")
    if not manifest_path or not splits_path:
        raise InputError("the checkpoint does not name its manifest / splits", hint="pass --manifest and --splits")
    m = read_manifest(manifest_path)
    splits = read_splits(splits_path, m.fingerprint())
    fold = int(tcfg.get("fold", 0))
    subset = cfg.subset
    if subset == "auto":
        subset = "test" if splits.test else "val"
        if subset == "val":
            warn(f"{splits_path} has no held-out test ids: evaluating on fold {fold}'s validation ids")
    if subset == "test":
        if not splits.test:
            raise InputError(f"{splits_path} has no test ids", hint="use --subset val, or re-split with --test-frac")
        ids = [str(i) for i in splits.test]
    elif subset == "val":
        ids = [str(i) for i in splits.fold(fold)["val"]]
    else:
        raise UsageError(f"--subset {cfg.subset!r}: expected auto, test or val")
    target = str(tcfg.get("target", "label"))
    spec, y_all = resolve_target(m, target)
    df = m.df
    pos = pd.Series(np.arange(len(df)), index=df["sample_id"].astype(str).to_numpy())
    unknown = [i for i in ids if i not in pos.index]
    if unknown:
        raise InputError(f"{len(unknown)} {subset} ids are not in {manifest_path} (e.g. {', '.join(unknown[:5])})")
    rows = pos.loc[ids].to_numpy(np.int64)
    image_col = str(dcfg.get("image_col") or tcfg.get("image_col") or "image_path")
    paths = df[image_col].astype("string")
    keep = (y_all[rows] >= 0) & paths.iloc[rows].notna().to_numpy()
    if (~keep).any():
        warn(f"{int((~keep).sum())} {subset} rows without an image or a {target} target left out")
    rows = rows[keep]
    if len(rows) == 0:
        raise InputError(f"no usable {subset} rows", hint="check the manifest and split")
    classes = [str(c) for c in ckpt["classes"]]
    from lesionkit.evaluate.predict import eval_transform

    _, size = eval_transform(dcfg)  # the square side evaluate fits images to (the training cache's)
    sub = df.iloc[rows]
    sids = sub["sample_id"].astype(str).tolist()
    cache_root = Path(cfg.cache_dir or tcfg.get("cache_dir") or default_cache_root())
    key = cache_key(m.fingerprint(), image_col, size, sids)
    cache = build_cache([str(p) for p in paths.iloc[rows].tolist()], size, cache_root, key, workers=cfg.workers)
    groups: dict[str, np.ndarray] = {}
    if cfg.group_by.strip().lower() != "none":
        wanted = SKINTONE_COLUMNS if cfg.group_by.strip().lower() == "auto" else \
            tuple(c.strip() for c in cfg.group_by.split(",") if c.strip())
        for col in wanted:
            try:
                groups[col] = derive_group(sub, col).to_numpy()
            except KeyError:
                if cfg.group_by.strip().lower() != "auto":
                    raise UsageError(f"--group-by {col}: no such column in {manifest_path}",
                                     hint="skin-tone columns come from `lesionkit label-skintone`") from None
                continue
            if cfg.group_by.strip().lower() == "auto":
                break
    codes, unit = cluster_codes(sub)
    meta = None
    if ckpt.get("meta_encoder"):
        from lesionkit.data.meta import MetaEncoder

        meta = MetaEncoder.from_dict(ckpt["meta_encoder"]).transform(sub)
    data = EvalData(images=cache, ids=sids, y=y_all[rows].astype(np.int64), classes=classes,
                    binary=spec.kind == "binary", meta=meta, groups=groups, clusters=codes, cluster_unit=unit)
    inputs = {"manifest": str(Path(manifest_path).resolve()), "manifest_fingerprint": m.fingerprint(),
              "splits": str(Path(splits_path).resolve()), "subset": subset, "fold": fold, "target": target,
              "image_col": image_col, "cache_size": size, "n": len(sids), "group_columns": list(groups)}
    return data, inputs


def eval_pipeline(ckpt: dict[str, Any], device: str, channels_last: bool = False) -> Any:
    """Batched evaluation transform of the checkpoint: ``uint8 [B, 3, S, S]`` → normalised float on ``device``."""
    import torch
    from torchvision import tv_tensors

    from lesionkit.evaluate.predict import eval_transform

    tf, _ = eval_transform(ckpt.get("data_cfg") or {})  # the same preprocessing as lesionkit evaluate

    def run(xb: Any) -> Any:
        x = tf.pipeline(tv_tensors.Image(xb)).as_subclass(torch.Tensor)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()

    return run


def _safe(label: str) -> str:
    """Folder name of a corruption label: ``motion_blur(angle=30)`` → ``motion_blur_angle30``."""
    return label.replace("(", "_").replace(")", "").replace("=", "").replace(",", "_")


def _level_dir(level: float | None) -> str:
    return "clean" if level is None else f"{level:g}"


def _write_cell(out: Path, protocol: str, spec: CorruptionSpec | None, level: float | None, data: Any,
                proba: np.ndarray, metrics: dict[str, Any], extra: dict[str, Any]) -> Path:
    import pandas as pd

    from lesionkit.fsio import atomic_path, write_json_atomic

    d = out / "cells" / protocol / _safe(spec.label) / _level_dir(level) if spec else out / "cells" / protocol / "clean"
    d.mkdir(parents=True, exist_ok=True)
    pred = pd.DataFrame({"sample_id": data.ids, "label": data.y.astype(np.int64)})
    for j, c in enumerate(data.classes):
        pred[f"prob_{c}"] = proba[:, j]
    with atomic_path(d / "predictions.parquet") as tmp:
        pred.to_parquet(tmp, index=False)
    doc = {"kind": "lesionkit.metrics", "stage": "robustness", "protocol": protocol,
           "corruption": spec.label if spec else "none", "corruption_name": spec.name if spec else "none",
           "params": dict(spec.params) if spec else {}, "level": level, **metrics, **extra}
    write_json_atomic(d / "metrics.json", _json_safe(doc))
    return d


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    return obj


def parse_specs(items: list[str], protocol: str) -> list[CorruptionSpec]:
    """``--corruption`` values → specs (defaults: :data:`DEFAULT_SWEEP` / :data:`DEFAULT_TRAIN_SWEEP`)."""
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    texts = items or list(DEFAULT_SWEEP if protocol == "test" else DEFAULT_TRAIN_SWEEP)
    specs = [parse_corruption(t) for t in texts]
    seen: set[str] = set()
    for s in specs:
        if s.label in seen:
            raise UsageError(f"corruption {s.label} given twice", hint="put all its levels in one --corruption")
        seen.add(s.label)
    return specs


def run_robustness(cfg: RobustnessConfig) -> dict[str, Any]:
    """Run the protocol's cells and write the outputs (module docstring). Returns the robustness.json content."""
    import torch

    from lesionkit.console import track
    from lesionkit.fsio import check_output, file_sha256, write_json_atomic
    from lesionkit.models.checkpoint import load_checkpoint, model_from_checkpoint
    from lesionkit.robustness.sweep import cell_metrics, predict

    t_start = time.perf_counter()
    specs = parse_specs(cfg.corruptions, cfg.protocol)  # validate before any work
    ckpt_path, run_dir = resolve_checkpoint(Path(cfg.run))
    out = Path(cfg.out) if cfg.out else (run_dir or ckpt_path.parent) / "robustness"
    check_output(out / "summary.parquet", cfg.overwrite)
    device = _device(cfg.device)
    amp = (cfg.amp == "bf16") or (cfg.amp == "auto" and device.startswith("cuda"))
    ckpt = load_checkpoint(ckpt_path)
    data, inputs = load_eval_data(ckpt, cfg)
    cl = device.startswith("cuda")

    def load_model(ck: dict[str, Any]) -> Any:
        net = model_from_checkpoint(ck).to(device)
        return net.to(memory_format=torch.channels_last) if cl else net

    model = load_model(ckpt)
    pipeline = eval_pipeline(ckpt, device, cl)
    out.mkdir(parents=True, exist_ok=True)
    cells: list[dict[str, Any]] = []

    def bar(desc: str) -> Any:
        return lambda it: track(it, total=-(-len(data.ids) // cfg.batch_size), description=desc, unit="batch")

    def infer(m: Any, spec: CorruptionSpec | None, level: float | None, desc: str) -> tuple[np.ndarray, float]:
        return predict(m, data, pipeline, device=device, batch_size=cfg.batch_size, corruption=spec, level=level,
                       seed=cfg.seed, workers=cfg.workers, amp=amp, progress=bar(desc))

    clean, t_clean = infer(model, None, None, "clean")
    met = cell_metrics(data, clean, None, n_boot=cfg.n_boot, boot_seed=cfg.seed,
                         min_group_size=cfg.min_group_size)
    _write_cell(out, "test", None, None, data, clean, met, {"checkpoint": str(ckpt_path), "seconds": t_clean})
    cells.append({"protocol": "test", "spec": None, "level": None, "metrics": met, "seconds": t_clean})
    info(f"clean: accuracy {met['overall']['accuracy']['estimate']:.4f}, auc {_f(met['overall']['auc']['estimate'])}"
         f" on {len(data.ids)} images ({len(data.ids) / max(t_clean, 1e-9):.1f} img/s)")

    def add(protocol: str, spec: CorruptionSpec, level: float, proba: np.ndarray, secs: float, extra: dict) -> None:
        m = cell_metrics(data, proba, clean, n_boot=cfg.n_boot, boot_seed=cfg.seed,
                         min_group_size=cfg.min_group_size)
        _write_cell(out, protocol, spec, level, data, proba, m, {"seconds": secs, **extra})
        cells.append({"protocol": protocol, "spec": spec, "level": level, "metrics": m, "seconds": secs})
        info(f"{protocol} {spec.label} {level:g}: accuracy {m['overall']['accuracy']['estimate']:.4f} "
             f"(Δ {m['delta']['accuracy']['estimate']:+.4f}), auc {_f(m['overall']['auc']['estimate'])}")

    if cfg.protocol == "test":
        for spec in specs:
            for level in spec.levels:
                proba, secs = infer(model, spec, level, f"{spec.label} {level:g}")
                add("test", spec, level, proba, secs, {"checkpoint": str(ckpt_path)})
    else:
        from lesionkit.robustness.protocols import train_with_corruption

        base = (run_dir / "config.yaml") if run_dir is not None else None
        if base is None or not base.is_file():
            raise InputError(f"--protocol {cfg.protocol} needs the run's config.yaml to retrain "
                             f"({run_dir or ckpt_path.parent} has none)",
                             hint="pass the run directory written by `lesionkit train` as RUN")
        overrides = dict(cfg.train_overrides)
        if cfg.epochs is not None:
            overrides["epochs"] = int(cfg.epochs)
        for spec in specs:
            for level in spec.levels:
                child = out / "train" / f"{spec.label}_{level:g}"
                info(f"training with {spec.label} at {level:g} → {child}")
                ck = train_with_corruption(base, child, spec, level, cfg.seed, overrides=overrides)
                ckd = load_checkpoint(ck)
                m2 = load_model(ckd)
                test_spec = spec if cfg.protocol == "matched" else None
                proba, secs = infer(m2, test_spec, level if test_spec else None, f"{cfg.protocol} {spec.label} {level:g}")
                add(cfg.protocol, spec, level, proba, secs,
                    {"checkpoint": str(ck), "trained_with": {"corruption": spec.label, "level": level},
                     "tested_with": {"corruption": spec.label, "level": level} if test_spec else "clean"})
                del m2

    from lesionkit.robustness.plots import degradation_plot, group_degradation_plot
    from lesionkit.robustness.report import write_report
    from lesionkit.robustness.summary import summary_frame, write_summary

    summary = summary_frame(cells)
    write_summary(summary, out)
    plots = {}
    (out / "plots").mkdir(exist_ok=True)
    for metric in ("accuracy", "auc"):
        p = degradation_plot(summary, metric, out / "plots" / f"{metric}_vs_level.png")
        if p is not None:
            plots[f"{metric} vs level"] = p
    if data.groups:
        p = group_degradation_plot(summary, "accuracy", out / "plots" / "group_degradation.png")
        if p is not None:
            plots["per-skin-tone-group degradation"] = p
    total = time.perf_counter() - t_start
    corrupted = [c["seconds"] for c in cells if c["spec"] is not None and c["protocol"] == "test"]
    record = {
        "kind": "lesionkit.robustness", "protocol": cfg.protocol, "out": str(out),
        "config": {k: v for k, v in dataclasses.asdict(cfg).items()},
        "corruptions": [str(s) for s in specs],
        "checkpoint": {"path": str(ckpt_path.resolve()), "sha256": file_sha256(ckpt_path)},
        "inputs": inputs, "device": device, "amp": amp,
        "timings": {"total_s": round(total, 2), "clean_s": round(t_clean, 3),
                    "clean_images_per_s": round(len(data.ids) / max(t_clean, 1e-9), 2),
                    "corrupted_images_per_s_mean": (round(len(data.ids) * len(corrupted) / sum(corrupted), 2)
                                                    if corrupted and sum(corrupted) > 0 else None)},
        "cells": [{"protocol": c["protocol"], "corruption": c["spec"].label if c["spec"] else "none",
                   "level": c["level"], "accuracy": c["metrics"]["overall"]["accuracy"]["estimate"],
                   "auc": c["metrics"]["overall"]["auc"]["estimate"]} for c in cells],
        "plots": {k: str(Path(v).relative_to(out)) for k, v in plots.items()},
    }
    write_json_atomic(out / "robustness.json", _json_safe(record))
    write_report(out / "robustness.html", record, summary, plots)
    info(f"wrote {out} ({len(cells)} cells in {total:.1f}s)")
    return _json_safe(record)


def summary_table_text(out_dir: Path) -> Any:
    """A rich table of the overall accuracy / AUC per cell (percent, deltas in points) from ``summary.parquet``."""
    import pandas as pd
    from rich.table import Table

    from lesionkit.robustness.summary import pivot_table

    df = pd.read_parquet(Path(out_dir) / "summary.parquet")
    acc, auc = pivot_table(df, "accuracy"), pivot_table(df, "auc")
    t = Table(title=f"robustness: {out_dir}")
    for c in ("protocol", "corruption", "level", "n", "accuracy % [95% CI]", "Δ acc (pts)", "AUC %", "Δ AUC (pts)"):
        t.add_column(c, justify="left" if c in ("protocol", "corruption") else "right")

    def pc(v: float) -> str:
        return "—" if pd.isna(v) else f"{100 * v:.1f}"

    for (_, a), (_, u) in zip(acc.iterrows(), auc.iterrows()):
        t.add_row(str(a["protocol"]), str(a["corruption"]), "—" if pd.isna(a["level"]) else f"{a['level']:g}",
                  str(a["n"]), f"{pc(a['value'])} [{pc(a['ci_low'])}, {pc(a['ci_high'])}]",
                  "—" if pd.isna(a["delta"]) else f"{100 * a['delta']:+.1f}", pc(u["value"]),
                  "—" if pd.isna(u["delta"]) else f"{100 * u['delta']:+.1f}")
    return t


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"
