"""``lesionkit train`` and ``lesionkit lr-find``: inputs → datasets → model → optimiser → :class:`Trainer`.

Run directory (written by rank 0 only)::

    RUN_DIR/config.yaml        fully resolved options (``lesionkit train --config RUN_DIR/config.yaml`` replays)
    RUN_DIR/run.json           status (running | finished | early_stopped | stopped | failed | interrupted),
                               versions, device, inputs (fingerprints), sizes, timings, best and last metrics
    RUN_DIR/history.csv        one row per validation check, flushed (and fsynced) as it is written
    RUN_DIR/checkpoints/       last.pt (resume point: everything), best.pt (weights of the best check),
                               snapshot_cycle{k}.pt (end of every SGDR cycle, for snapshot ensembles)
    RUN_DIR/lr_find.{png,json} with ``--lr auto``
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lesionkit import __version__
from lesionkit.console import info, out, settings, warn
from lesionkit.errors import InputError, LesionkitError, OutputExistsError, UsageError
from lesionkit.fsio import input_fingerprint, write_json_atomic
from lesionkit.train import distributed as D
from lesionkit.train.config import (
    TrainConfig,
    config_differences,
    resolve_static,
    validate_config,
)
from lesionkit.train.engine import (
    EngineParts,
    EpochBatchSampler,
    SeededDataset,
    Trainer,
    TrainState,
    derive_seed,
    make_loader,
    restore_rank_rng,
    seed_everything,
    set_deterministic,
)

RUN_KIND = "lesionkit.run"


# ------------------------------------------------------------------------------------------------- inputs

@dataclass
class Inputs:
    """The manifest rows of one fold: positions into ``manifest.df`` and their class indices."""

    manifest: Any  # lesionkit.manifest.io.Manifest
    target: Any  # lesionkit.data.targets.TargetSpec
    y: np.ndarray  # int64 per manifest row, -1 missing
    paths: list[Any]  # image path per manifest row (None where missing)
    train_rows: np.ndarray
    val_rows: np.ndarray
    excluded: dict[str, int]
    n_folds: int


def load_inputs(cfg: TrainConfig) -> Inputs:
    """Read manifest + splits, resolve the target, select the fold's rows (rows without image or target dropped)."""
    import pandas as pd

    from lesionkit.data.targets import resolve_target
    from lesionkit.manifest.io import path_columns, read_manifest
    from lesionkit.splits.io import read_splits

    m = read_manifest(cfg.manifest)
    df = m.df
    if cfg.image_col not in df.columns:
        cols = path_columns(df)
        raise UsageError(f"--image-col {cfg.image_col}: no such column in {cfg.manifest}",
                         hint=f"image columns in this manifest: {', '.join(cols) if cols else '(none)'}"
                              + ("" if "prep_path" in cols else "; prep_path appears after `lesionkit prep`"))
    splits = read_splits(cfg.splits, m.fingerprint())
    if not 0 <= cfg.fold < splits.n_folds:
        raise UsageError(f"--fold {cfg.fold}: {cfg.splits} has folds 0..{splits.n_folds - 1}",
                         hint=f"pass --fold between 0 and {splits.n_folds - 1}")
    fold = splits.fold(cfg.fold)
    spec, y = resolve_target(m, cfg.target)
    pos = pd.Series(np.arange(len(df)), index=df["sample_id"].astype(str).to_numpy())
    paths = [None if pd.isna(p) else str(p) for p in df[cfg.image_col].tolist()]
    excluded: dict[str, int] = {}
    rows = {}
    for part in ("train", "val"):
        ids = [str(i) for i in fold[part]]
        unknown = [i for i in ids if i not in pos.index]
        if unknown:
            raise InputError(f"{cfg.splits}: {len(unknown)} {part} id(s) of fold {cfg.fold} are not in {cfg.manifest} "
                             f"(e.g. {', '.join(unknown[:5])})", hint="re-run `lesionkit split` on this manifest")
        r = pos.loc[ids].to_numpy(dtype=np.int64)
        no_img = np.array([paths[i] is None for i in r], dtype=bool)
        no_y = y[r] < 0
        excluded[f"{part}_no_image"] = int(no_img.sum())
        excluded[f"{part}_no_target"] = int((no_y & ~no_img).sum())
        rows[part] = r[~no_img & ~no_y]
        if len(rows[part]) == 0:
            raise InputError(f"fold {cfg.fold} has no usable {part} rows (every row lacks an image in "
                             f"`{cfg.image_col}` or a `{cfg.target}` target)",
                             hint="check the manifest with `lesionkit manifest show` and the split with `lesionkit split`")
    dropped = {k: v for k, v in excluded.items() if v}
    if dropped and D.is_main():
        warn("rows left out: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in dropped.items()))
    return Inputs(m, spec, y, paths, rows["train"], rows["val"], excluded, splits.n_folds)


def resolve_data(cfg: TrainConfig, inp: Inputs) -> TrainConfig:
    """Data-dependent choices: ``--loss auto`` → bce (binary) / ce; class-weight list length."""
    kw: dict[str, Any] = {}
    if cfg.loss == "auto":
        kw["loss"] = "bce" if inp.target.kind == "binary" else "ce"
    if cfg.class_weights not in ("none", "balanced"):
        n = len(cfg.class_weights.split(","))
        if n != inp.target.n_classes:
            raise UsageError(f"--class-weights has {n} values but target {cfg.target} has {inp.target.n_classes} "
                             f"classes ({', '.join(inp.target.classes)})", hint=f"give {inp.target.n_classes} numbers")
    return dataclasses.replace(cfg, **kw)


class CacheView:
    """Rows ``rows`` of a manifest-wide :class:`~lesionkit.data.cache.ImageCache` as a dataset-sized cache."""

    def __init__(self, cache: Any, rows: np.ndarray):
        self.cache = cache
        self.rows = np.asarray(rows, dtype=np.int64)
        self.path = cache.path
        self.size = cache.size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.cache[int(self.rows[i])]


def build_image_cache(cfg: TrainConfig, inp: Inputs) -> tuple[Any, np.ndarray]:
    """One cache per manifest × image column × size, over every manifest row that has an image (reused by every
    fold and run). Returns the cache and the manifest-row → cache-row map (-1 = not cached)."""
    from lesionkit.data.cache import build_cache, cache_key

    have = np.array([p is not None for p in inp.paths], dtype=bool)
    rows = np.flatnonzero(have)
    ids = inp.manifest.df["sample_id"].astype(str).to_numpy()[rows].tolist()
    key = cache_key(inp.manifest.fingerprint(), cfg.image_col, cfg.cache_size, ids)
    paths = [inp.paths[i] for i in rows]
    to_cache = np.full(len(inp.paths), -1, dtype=np.int64)
    to_cache[rows] = np.arange(len(rows))
    if D.is_main():
        cache = build_cache(paths, cfg.cache_size, Path(cfg.cache_dir), key, workers=min(cfg.num_workers, 8))
        D.barrier()
    else:
        D.barrier()
        cache = build_cache(paths, cfg.cache_size, Path(cfg.cache_dir), key, workers=0)
    if D.is_main():
        info(f"image cache {'reused' if cache.reused else 'built'}: {cache.path} ({len(cache)} images at "
             f"{cfg.cache_size}px)")
    return cache, to_cache


@dataclass
class Data:
    train_set: Any
    val_set: Any
    train_sampler: Any
    val_sampler: Any
    meta_encoder: Any
    y_train: np.ndarray
    y_val: np.ndarray


def build_data(cfg: TrainConfig, inp: Inputs, mean: list[float], std: list[float]) -> Data:
    from lesionkit.data.dataset import ManifestDataset
    from lesionkit.data.meta import MetaEncoder, parse_meta_columns
    from lesionkit.data.samplers import EpochSampler, ShardedEvalSampler
    from lesionkit.data.transforms import build_transform

    dist = D.info()
    df = inp.manifest.df
    enc = None
    meta_tr = meta_va = None
    if cfg.meta:
        enc = MetaEncoder().fit(df.iloc[inp.train_rows], parse_meta_columns(cfg.meta))
        meta_tr = enc.transform(df.iloc[inp.train_rows])
        meta_va = enc.transform(df.iloc[inp.val_rows])
    cache = to_cache = None
    if cfg.cache:
        cache, to_cache = build_image_cache(cfg, inp)
    ids = df["sample_id"].astype(str).to_numpy()

    def make(rows: np.ndarray, train: bool, meta: np.ndarray | None) -> Any:
        tf = build_transform(cfg.aug, cfg.img_size, train=train, mean=tuple(mean), std=tuple(std))
        view = CacheView(cache, to_cache[rows]) if cache is not None else None
        return ManifestDataset([inp.paths[i] for i in rows], inp.y[rows], tf, cache=view, meta=meta,
                               ids=ids[rows].tolist(), fit_size=cfg.cache_size)

    y_tr, y_va = inp.y[inp.train_rows], inp.y[inp.val_rows]
    train_set, val_set = make(inp.train_rows, True, meta_tr), make(inp.val_rows, False, meta_va)
    if cfg.corruption:  # robustness protocols train-corrupt / matched: uint8 pixels, before augmentation
        from lesionkit.robustness.corruptions import parse_corruption
        from lesionkit.robustness.protocols import CorruptedDataset

        spec = parse_corruption(cfg.corruption)
        train_set = CorruptedDataset.wrap(train_set, spec, spec.levels[0], cfg.corruption_seed)
        val_set = CorruptedDataset.wrap(val_set, spec, spec.levels[0], cfg.corruption_seed)
    return Data(
        train_set=train_set, val_set=val_set,
        train_sampler=EpochSampler(y_tr, mode=cfg.sampler, seed=cfg.seed, num_replicas=dist.world_size,
                                   rank=dist.rank, shuffle=True),
        val_sampler=ShardedEvalSampler(len(inp.val_rows), num_replicas=dist.world_size, rank=dist.rank),
        meta_encoder=enc, y_train=y_tr, y_val=y_va,
    )


def build_net(cfg: TrainConfig, inp: Inputs, meta_dim: int, bias_outputs: int = 0) -> tuple[Any, Any, dict[str, Any]]:
    from lesionkit.models.factory import ModelSpec, create_model, data_config

    spec = ModelSpec(name=cfg.model, num_outputs=inp.target.num_outputs, img_size=cfg.img_size, meta_dim=meta_dim,
                     meta_hidden=tuple(cfg.meta_hidden), meta_dropout=cfg.meta_dropout, drop_rate=cfg.drop_rate,
                     small_input=cfg.small_input, head=cfg.head, attention_heads=cfg.attention_heads, arch=cfg.arch,
                     split_low_size=cfg.split_low_size, stem_out=cfg.stem_out, tta=cfg.tta,
                     bias_outputs=bias_outputs)
    net = create_model(spec, None if cfg.pretrained.lower() == "none" else Path(cfg.pretrained))
    from lesionkit.data.transforms import eval_crop_fraction

    dcfg = data_config(net)
    dcfg.update({"aug": cfg.aug, "cache_size": cfg.cache_size, "image_col": cfg.image_col,
                 "eval_crop_fraction": eval_crop_fraction(cfg.aug),
                 "eval_transform": "lesionkit.data.transforms.build_transform(aug, input_size[1], train=False, "
                                   "mean, std) applied to the image fitted to a cache_size square "
                                   "(lesionkit.data.cache.fit_square)"})
    return spec, net, dcfg


def meta_dim_of(cfg: TrainConfig, inp: Inputs) -> int:
    if not cfg.meta:
        return 0
    from lesionkit.data.meta import MetaEncoder, parse_meta_columns

    return MetaEncoder().fit(inp.manifest.df.iloc[inp.train_rows], parse_meta_columns(cfg.meta)).dim


def make_optimizer(cfg: TrainConfig, net: Any, lr: float) -> torch.optim.Optimizer:
    from lesionkit.train.optim import build_optimizer

    branch = {k: v for k, v in (("backbone", cfg.lr_backbone), ("head", cfg.lr_head), ("meta", cfg.lr_meta))
              if v is not None}
    if cfg.debias != "none" and getattr(net, "aux_head", None) is not None:
        from lesionkit.train.debias import DEFAULT_AUX_LR_MULT

        branch["aux"] = cfg.lr_aux if cfg.lr_aux is not None else lr * DEFAULT_AUX_LR_MULT[cfg.debias]
    if cfg.lr_ratio is not None and cfg.lr_groups is not None:
        return _regroup(cfg, net, lr)
    return build_optimizer(net, cfg.optimizer, lr=lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                           nesterov=bool(cfg.nesterov), lr_ratio=cfg.lr_ratio, branch_lrs=branch or None)


def _regroup(cfg: TrainConfig, net: Any, lr: float) -> torch.optim.Optimizer:
    """Discriminative LRs over ``--lr-groups`` merged layer groups (build_optimizer uses every timm group)."""
    from lesionkit.train.optim import discriminative_lrs, layer_groups

    groups = layer_groups(net, cfg.lr_groups)
    lrs = discriminative_lrs(lr, cfg.lr_ratio, len(groups))
    pg = []
    for gi, (ps, g_lr) in enumerate(zip(groups, lrs, strict=True)):
        for decay in (True, False):
            sel = [p for p in ps if (p.ndim > 1) == decay]
            if sel:
                pg.append({"params": sel, "lr": g_lr, "base_lr": g_lr, "weight_decay": cfg.weight_decay if decay else 0.0,
                           "name": f"g{gi}.{'decay' if decay else 'no_decay'}", "layer_group": gi})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(pg, lr=lr, momentum=cfg.momentum, nesterov=bool(cfg.nesterov and cfg.momentum > 0))
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(pg, lr=lr)


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    return len(EpochBatchSampler(_Sized(n_samples), batch_size, drop_last=n_samples > batch_size))


class _Sized:
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


# ------------------------------------------------------------------------------------------------- run dir

def default_run_name(cfg: TrainConfig) -> str:
    return f"{cfg.model}_{cfg.target}_{cfg.img_size}px_fold{cfg.fold}"


def _is_run_dir(p: Path) -> bool:
    return (p / "config.yaml").exists() or (p / "run.json").exists() or (p / "checkpoints").is_dir()


def check_run_dir(cfg: TrainConfig) -> Path:
    run_dir = Path(cfg.run_dir)
    if cfg.resume:
        if not (run_dir / "checkpoints" / "last.pt").is_file() or not (run_dir / "config.yaml").is_file():
            raise InputError(f"--resume: {run_dir} has no checkpoints/last.pt and config.yaml to resume from",
                             hint="start the run without --resume (it writes last.pt after every epoch)")
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        if not cfg.overwrite:
            raise OutputExistsError(f"run directory exists: {run_dir}",
                                    hint="pass --resume to continue it, --overwrite to start again, or another --name")
        if not _is_run_dir(run_dir):
            raise OutputExistsError(f"{run_dir} exists and is not a lesionkit run directory (no config.yaml/run.json)",
                                    hint="choose another --run-dir; train --overwrite only replaces run directories")
    return run_dir


def _versions() -> dict[str, str]:
    import timm

    return {"lesionkit": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version()}


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def truncate_history(path: Path, step: int) -> None:
    """Keep only history rows up to ``step`` (rows written after the checkpoint a resume starts from go)."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    from lesionkit.fsio import atomic_path
    from lesionkit.train.engine import HISTORY_COLUMNS

    with open(path, newline="", encoding="utf-8") as f:
        columns = next(csv.reader(f), None) or HISTORY_COLUMNS
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


# ------------------------------------------------------------------------------------------------- train

def _setup(cfg: TrainConfig) -> tuple[TrainConfig, D.DistInfo]:
    validate_config(cfg, D.env_world_size())
    cfg = resolve_static(cfg)
    dist = D.init_distributed(cfg.device)
    if not cfg.progress:
        settings.progress = False
    if not dist.is_main:
        settings.verbosity = -1
        settings.progress = False
    set_deterministic(cfg.deterministic)
    seed_everything(cfg.seed)
    return cfg, dist


def run_train(cfg: TrainConfig) -> dict[str, Any]:
    """Train one model as ``cfg`` says (see the module docstring for the run directory); returns run.json's content.

    Works in one process or under ``torchrun`` (one process per device); only rank 0 writes.
    """
    from lesionkit.data.samplers import class_weights
    from lesionkit.models.checkpoint import load_checkpoint
    from lesionkit.train.losses import build_loss
    from lesionkit.train.schedules import build_scheduler

    t_start = time.perf_counter()
    cfg, dist = _setup(cfg)
    run_dir: Path | None = None
    record: dict[str, Any] = {}
    try:
        run_dir = check_run_dir(cfg)
        inp = load_inputs(cfg)
        cfg = resolve_data(cfg, inp)
        ckpt = None
        if cfg.resume:
            saved = TrainConfig.from_yaml(run_dir / "config.yaml")
            diffs = config_differences(saved, cfg)
            if diffs:
                raise UsageError(f"--resume: the options differ from the run's config.yaml ({len(diffs)} difference(s))",
                                 details=diffs,
                                 hint=f"resume with the same options: lesionkit train --resume --run-dir {run_dir}")
            ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
            if (ckpt.get("extra") or {}).get("world_size", 1) != dist.world_size:
                raise UsageError(f"--resume: the run used {ckpt['extra'].get('world_size')} process(es), this one "
                                 f"{dist.world_size}", hint="resume with the same torchrun --nproc_per_node")
        device = torch.device(dist.device)
        bias = None
        if cfg.debias != "none":
            from lesionkit.train.debias import encode_bias

            bias = encode_bias(inp.manifest.df, cfg.bias_col, inp.train_rows)
        spec, net, dcfg = build_net(cfg, inp, meta_dim_of(cfg, inp), len(bias.classes) if bias else 0)
        data = build_data(cfg, inp, dcfg["mean"], dcfg["std"])
        net.to(device)
        if cfg.channels_last:
            net.to(memory_format=torch.channels_last)
        torch.manual_seed(derive_seed(cfg.seed, "train", dist.rank))
        n_cls = inp.target.n_classes
        cw = None if cfg.class_weights == "none" else class_weights(data.y_train, n_cls, cfg.class_weights,
                                                                     classes=inp.target.classes)
        loss_fn = build_loss(cfg.loss, n_cls, cw, label_smoothing=cfg.label_smoothing,
                             focal_gamma=cfg.focal_gamma if cfg.focal_gamma is not None else 2.0).to(device)
        spe = steps_per_epoch(len(data.train_sampler), cfg.batch_size)

        lr_info: dict[str, Any] | None = None
        if ckpt is not None:
            lr = float(ckpt["extra"]["train_state"]["lr"])
        elif cfg.lr == "auto":
            lr, lr_info = _auto_lr(cfg, net, data, loss_fn, device, run_dir)
        else:
            lr = float(cfg.lr)
        optimizer = make_optimizer(cfg, net, lr)
        scheduler = build_scheduler(optimizer, cfg.schedule, steps_per_epoch=spe, epochs=cfg.epochs,
                                    warmup_epochs=cfg.warmup_epochs, t0=cfg.t0 or 1.0, t_mult=cfg.t_mult or 2.0,
                                    step_size=cfg.step_size or 30.0, gamma=cfg.gamma or 0.1,
                                    min_lr_ratio=cfg.min_lr_ratio)
        scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        model: torch.nn.Module = net
        if cfg.sync_bn and dist.distributed:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if cfg.compile:
            model = torch.compile(model)
        if dist.distributed:
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[dist.local_rank] if device.type == "cuda" else None)

        state = TrainState(lr=lr)
        resumed_from = None
        if ckpt is not None:
            net.load_state_dict(ckpt["state_dict"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if scaler is not None and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            state = TrainState(**ckpt["extra"]["train_state"])
            state.stop_reason = None
            resumed_from = {"epoch": state.epoch, "batch": state.batch, "step": state.step}
            restore_rank_rng(ckpt, dist.rank)

        resolved = cfg.to_dict()
        resolved.pop("config_version", None)
        ckpt_info = {"spec": spec, "classes": inp.target.classes, "target": inp.target.to_dict(), "data_cfg": dcfg,
                     "meta_encoder": data.meta_encoder.to_dict() if data.meta_encoder is not None else None,
                     "config": resolved}
        debiaser, bias_train, debias_record = _debias_parts(cfg, bias, inp)
        record = {
            "kind": RUN_KIND, "status": "running", "command": sys.argv, "versions": _versions(),
            "device": dist.device, "world_size": dist.world_size, "backend": dist.backend,
            "started_utc": _now(), "run_dir": str(run_dir.resolve()),
            "inputs": {"manifest": input_fingerprint(cfg.manifest) | {"fingerprint": inp.manifest.fingerprint()},
                       "splits": input_fingerprint(cfg.splits), "fold": cfg.fold},
            "target": inp.target.to_dict(), "classes": inp.target.classes,
            "n_train": len(inp.train_rows), "n_val": len(inp.val_rows), "excluded": inp.excluded,
            "class_counts_train": np.bincount(data.y_train, minlength=n_cls).tolist(),
            "class_counts_val": np.bincount(data.y_val, minlength=n_cls).tolist(),
            "lr": lr, "lr_find": lr_info, "steps_per_epoch": spe, "resumed_from": resumed_from,
            "model": {"name": cfg.model, "params": int(sum(p.numel() for p in net.parameters())),
                      "meta_dim": spec.meta_dim, "arch": spec.arch, "head": spec.head},
            "debias": debias_record,
        }
        if dist.is_main:
            if not cfg.resume and run_dir.exists() and cfg.overwrite:
                shutil.rmtree(run_dir)
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            if cfg.resume:
                prev = run_dir / "run.json"
                try:
                    import json

                    old = json.loads(prev.read_text(encoding="utf-8"))
                    record["started_utc"] = old.get("started_utc", record["started_utc"])
                    record["resumes"] = [*old.get("resumes", []), {"time_utc": _now(), **(resumed_from or {})}]
                    record["lr_find"] = old.get("lr_find")
                except (OSError, ValueError):
                    pass
                truncate_history(run_dir / "history.csv", state.step)
            else:
                cfg.to_yaml(run_dir / "config.yaml")
                if lr_info is not None:
                    _write_lr_find(run_dir, lr_info)
            write_json_atomic(run_dir / "run.json", record)
        D.barrier()

        if dist.is_main:
            info(f"training {cfg.model} on {len(inp.train_rows)} images ({inp.target.name}: "
                 f"{', '.join(inp.target.classes)}), validating on {len(inp.val_rows)}; {spe} steps/epoch, "
                 f"{cfg.epochs} epochs, {dist.world_size} process(es) on {dist.device}, amp {cfg.amp}"
                 + (f"; resuming at epoch {state.epoch} batch {state.batch}" if resumed_from else ""))

        parts = EngineParts(cfg=cfg, model=model, net=net, optimizer=optimizer, scheduler=scheduler, loss_fn=loss_fn,
                            train_set=data.train_set, train_sampler=data.train_sampler, val_set=data.val_set,
                            val_sampler=data.val_sampler, val_targets=data.y_val, binary=inp.target.kind == "binary",
                            ckpt_info=ckpt_info, run_dir=run_dir if dist.is_main else None, scaler=scaler,
                            debias=debiaser, bias_targets=bias_train,
                            extra_ckpt={"bias": debias_record} if debias_record else {})
        trainer = Trainer(parts, state)
        state = trainer.fit()
        D.barrier()
        finished = state.epoch >= cfg.epochs
        status = ("early_stopped" if state.stop_reason and state.stop_reason.startswith("early stop")
                  else "finished" if finished else "stopped")
        elapsed = time.perf_counter() - t_start
        record.update({
            "status": status, "stop_reason": state.stop_reason, "ended_utc": _now(),
            "epochs_done": state.epoch, "steps_done": state.step,
            "best": {"monitor": cfg.monitor, "value": state.best_metric, "epoch": state.best_epoch},
            "last_metrics": trainer.last_metrics,
            "timings": {"elapsed_s": round(elapsed, 2), "train_s": round(trainer.train_time, 2),
                        "epoch_s": [round(t, 3) for t in trainer.epoch_times],
                        "train_images_per_s": round(trainer.train_images / trainer.train_time, 2)
                        if trainer.train_time > 0 else None},
            "checkpoints": sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt")) if dist.is_main else [],
        })
        if dist.is_main:
            write_json_atomic(run_dir / "run.json", _json_safe(record))
            out.print(f"{status}: best {cfg.monitor} {_fmt(state.best_metric)} at epoch {state.best_epoch}; "
                      f"wrote {run_dir}")
        return _json_safe(record)
    except BaseException as e:
        if dist.is_main and run_dir is not None and record and (run_dir / "run.json").exists():
            status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            msg = e.message if isinstance(e, LesionkitError) else f"{type(e).__name__}: {e}"
            try:
                write_json_atomic(run_dir / "run.json", _json_safe({**record, "status": status, "error": msg,
                                                                    "ended_utc": _now()}))
            except Exception as e2:  # noqa: BLE001 - never hide the original error
                warn(f"could not record the failure in run.json: {e2}")
        raise
    finally:
        D.cleanup()


def _debias_parts(cfg: TrainConfig, bias: Any, inp: Inputs) -> tuple[Any, Any, dict[str, Any] | None]:
    """The :class:`~lesionkit.train.debias.Debiaser`, the bias codes of the training rows (indexed like the training
    dataset) and the run.json / checkpoint record of the bias attribute; (None, None, None) without --debias."""
    if bias is None:
        return None, None, None
    from lesionkit.train.debias import Debiaser, bias_class_weights

    codes = bias.codes[inp.train_rows]
    cw = bias_class_weights(codes, len(bias.classes))
    deb = Debiaser(cfg.debias, cfg.debias_weight if cfg.debias_weight is not None else 0.0,
                   cfg.grl_coef if cfg.grl_coef is not None else 0.0, cfg.grl_schedule, cw,
                   use_grl=not cfg.no_grl)
    known = codes[codes >= 0]
    counts = {c: int((known == k).sum()) for k, c in enumerate(bias.classes)}
    record = {**bias.to_dict(), "method": cfg.debias, "train_counts": counts, "train_missing": int((codes < 0).sum()),
              "class_weights": [round(float(w), 6) for w in cw], "weight": deb.weight,
              "grl_coef": deb.grl_coef if deb.use_grl else None, "grl_schedule": cfg.grl_schedule}
    if D.is_main():
        missing = record["train_missing"]
        info(f"--debias {cfg.debias}: bias head on {bias.column} ("
             + ", ".join(f"{c}: {n}" for c, n in counts.items())
             + (f"; {missing} unknown, ignored by the bias head" if missing else "") + ")")
    return deb, torch.from_numpy(codes), record


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _json_safe(obj: Any) -> Any:
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


# ------------------------------------------------------------------------------------------------- lr find

def _lr_find_loader(cfg: TrainConfig, data: Data) -> Any:
    from lesionkit.data.samplers import EpochSampler

    sampler = EpochSampler(data.y_train, mode=cfg.sampler, seed=derive_seed(cfg.seed, "lr-find") % 2**31)
    bs = EpochBatchSampler(sampler, cfg.batch_size, drop_last=len(sampler) > cfg.batch_size)
    bs.set_epoch(0)
    return make_loader(SeededDataset(data.train_set, derive_seed(cfg.seed, "lr-find")), batch_sampler=bs,
                       num_workers=cfg.num_workers, persistent=False)


def lr_find(cfg: TrainConfig, net: Any, data: Data, loss_fn: Any, device: torch.device) -> Any:
    """LR range test on the training set (weights, buffers and RNG restored afterwards)."""
    from lesionkit.train.lr_find import lr_range_test

    return lr_range_test(net, _lr_find_loader(cfg, data), loss_fn, lambda m: make_optimizer(cfg, m, 1.0),
                         start_lr=cfg.lr_find_start, end_lr=cfg.lr_find_end, num_steps=cfg.lr_find_steps,
                         device=device, grad_clip=cfg.grad_clip)


def _auto_lr(cfg: TrainConfig, net: Any, data: Data, loss_fn: Any, device: torch.device,
             run_dir: Path) -> tuple[float, dict[str, Any]]:
    res = None
    if D.is_main():
        info(f"--lr auto: LR range test ({cfg.lr_find_steps} steps, {cfg.lr_find_start:g} → {cfg.lr_find_end:g})")
        res = lr_find(cfg, net, data, loss_fn, device)
    res = D.broadcast_object(res)
    import math

    if not math.isfinite(res.suggestion):
        raise LesionkitError("--lr auto: the LR range test found no usable learning rate (the loss never decreased)",
                             hint="pass --lr explicitly, or widen --lr-find-start/--lr-find-end")
    if D.is_main():
        info(f"--lr auto: suggested lr {res.suggestion:.3g} ({res.method} of the smoothed loss curve)")
    return float(res.suggestion), {"suggestion": res.suggestion, "result": res.to_dict(), "_result": res}


def _write_lr_find(out_dir: Path, lr_info: dict[str, Any]) -> None:
    from lesionkit.train.lr_find import plot_lr_find

    res = lr_info.pop("_result", None)
    if res is not None:
        plot_lr_find(res, out_dir / "lr_find.png")
    write_json_atomic(out_dir / "lr_find.json", _json_safe(lr_info["result"]))


def run_lr_find(cfg: TrainConfig, out_dir: Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """``lesionkit lr-find``: the LR range test alone; writes ``lr_find.png`` and ``lr_find.json`` to ``out_dir``
    (default: ``cfg.run_dir``) and returns the JSON record (``suggestion``, ``lrs``, ``losses``, ...)."""
    from lesionkit.data.samplers import class_weights
    from lesionkit.fsio import check_output
    from lesionkit.train.losses import build_loss

    cfg = dataclasses.replace(cfg, lr="auto")
    cfg, dist = _setup(cfg)
    try:
        if dist.distributed:
            raise UsageError("lr-find runs in one process", hint="run it without torchrun")
        out_dir = Path(out_dir or cfg.run_dir)
        for name in ("lr_find.png", "lr_find.json"):
            check_output(out_dir / name, overwrite)
        inp = load_inputs(cfg)
        cfg = resolve_data(cfg, inp)
        device = torch.device(dist.device)
        _spec, net, dcfg = build_net(cfg, inp, meta_dim_of(cfg, inp))
        data = build_data(cfg, inp, dcfg["mean"], dcfg["std"])
        net.to(device)
        torch.manual_seed(derive_seed(cfg.seed, "train", 0))
        n_cls = inp.target.n_classes
        cw = None if cfg.class_weights == "none" else class_weights(data.y_train, n_cls, cfg.class_weights,
                                                                     classes=inp.target.classes)
        loss_fn = build_loss(cfg.loss, n_cls, cw, label_smoothing=cfg.label_smoothing,
                             focal_gamma=cfg.focal_gamma if cfg.focal_gamma is not None else 2.0).to(device)
        res = lr_find(cfg, net, data, loss_fn, device)
        out_dir.mkdir(parents=True, exist_ok=True)
        rec = _json_safe({**res.to_dict(), "model": cfg.model, "img_size": cfg.img_size, "optimizer": cfg.optimizer,
                          "batch_size": cfg.batch_size, "manifest": str(cfg.manifest), "fold": cfg.fold})
        from lesionkit.train.lr_find import plot_lr_find

        plot_lr_find(res, out_dir / "lr_find.png")
        write_json_atomic(out_dir / "lr_find.json", rec)
        out.print(f"suggested lr: {res.suggestion:.3g} (loss minimum at {res.min_loss_lr:.3g}; "
                  f"{'stopped on divergence' if res.stopped_early else 'full sweep'}); wrote {out_dir / 'lr_find.png'}")
        return rec
    finally:
        D.cleanup()
