"""The training loop: AMP, channels_last, optional torch.compile, gradient clipping, validation with exact metrics,
early stopping, best / last / SGDR-snapshot checkpoints, exact resume, ``history.csv`` and ``run.json``.

Reproducibility and exact resume
--------------------------------
* The order of training samples in epoch ``e`` is a pure function of ``(seed, e, sampler mode)``
  (:class:`lesionkit.data.samplers.EpochSampler`).
* Augmentation randomness of the sample at position ``p`` of epoch ``e`` on rank ``r`` comes from torch / numpy /
  Python RNGs seeded with ``derive_seed(seed, "aug", e, r, p)`` just before the sample is loaded
  (:class:`SeededDataset`), so it does not depend on the number of DataLoader workers, on which worker loads it,
  or on where a run was interrupted. In the main process (``num_workers=0``) the global RNG states are saved
  and restored around each batch, so augmentation never perturbs the model's own randomness (dropout).
* A checkpoint (``last.pt``) is written after every validation check (each epoch, and at the half epoch with
  ``--eval-every half``) holding model, optimizer, schedule, GradScaler, every RNG state (Python, NumPy, torch
  CPU and CUDA), the epoch, the batch within the epoch, the step, the best metric and the early-stopping counter.
  ``--resume`` restores all of it and restarts the interrupted epoch at that batch (skipped batches are not even
  loaded), so 2 epochs in one go and 1 epoch + resume give identical weights (CPU, deterministic algorithms).

Validation
----------
Each rank predicts its shard (rank ``r`` gets rows ``r::N``, no padding); logits are gathered by row index on
every rank and checked complete (:func:`lesionkit.train.distributed.gather_eval`), so the metrics equal a
single-process evaluation. Metrics: loss (the training loss function, unweighted by sampling), accuracy,
balanced accuracy, and AUC (binary: ROC AUC of the positive logit; multi-class: the mean of the one-vs-rest AUCs
of the classes present with both positives and negatives in the validation set, which equals scikit-learn's
``roc_auc_score(multi_class="ovr", average="macro")`` when every class is present).
"""

from __future__ import annotations

import copy
import csv
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lesionkit.console import info, settings, track, warn
from lesionkit.errors import LesionkitError
from lesionkit.train import distributed as D
from lesionkit.train.config import MONITORS, TrainConfig

HISTORY_COLUMNS = ["epoch", "step", "lr_first", "lr_last", "train_loss", "val_loss", "val_acc", "val_bacc", "val_auc",
                   "time_s", "is_best"]
#: Extra history columns of a debiased run: the bias head's training loss and accuracy (how readable the bias
#: is from the features, on the training batches) and the entropy / confusion term.
DEBIAS_COLUMNS = ["train_aux_loss", "train_adv_loss", "train_bias_acc"]


# ------------------------------------------------------------------------------------------------- seeding

def derive_seed(*key: Any) -> int:
    """A 63-bit seed from a key of ints/strings (``numpy.random.SeedSequence`` over a stable encoding)."""
    ints: list[int] = []
    for k in key:
        if isinstance(k, str):
            ints.extend(k.encode())
        else:
            ints.append(int(k) & 0xFFFFFFFF)
            ints.append((int(k) >> 32) & 0xFFFFFFFF)
    return int(np.random.SeedSequence(ints).generate_state(1, dtype=np.uint64)[0]) & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(on: bool) -> None:
    """Deterministic algorithms (CPU/CUDA) and no cuDNN autotuning when ``on``."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = torch.cuda.is_available()


class SeededDataset(Dataset):
    """Wraps a dataset; item ``(epoch, position, index)`` = ``inner[index]`` loaded with every RNG (torch's CPU
    generator, numpy, Python) seeded from ``(seed, "aug", epoch, rank, position)``. Main-process loading restores
    the RNG states, once per batch (``__getitems__``, which the DataLoader calls with a batch's keys).

    Only torch's CPU generator is seeded (``torch.default_generator``; the transforms draw from it): same draws as
    ``torch.manual_seed``, which also reseeds every CUDA device, costs 0.24 ms per call and would reset the GPU
    dropout stream of a main-process run. Saving and restoring the states costs about 0.17 ms (numpy's alone
    0.13 ms), hence once per batch rather than per sample."""

    def __init__(self, inner: Dataset, seed: int, rank: int = 0):
        self.inner = inner
        self.seed = int(seed)
        self.rank = int(rank)

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def _load(self, key: tuple[int, int, int]) -> Any:
        epoch, pos, index = key
        s = derive_seed(self.seed, "aug", epoch, self.rank, pos)
        torch.default_generator.manual_seed(s)
        np.random.seed(s % 2**32)
        random.seed(s)
        return self.inner[index]

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int, int]]) -> list[Any]:
        if torch.utils.data.get_worker_info() is not None:
            return [self._load(k) for k in keys]
        saved = (torch.default_generator.get_state(), np.random.get_state(), random.getstate())
        try:
            return [self._load(k) for k in keys]
        finally:
            torch.default_generator.set_state(saved[0])
            np.random.set_state(saved[1])
            random.setstate(saved[2])


class EpochBatchSampler:
    """Batches of ``(epoch, position, index)`` keys over one epoch of ``sampler`` (an ``EpochSampler``).

    ``set_epoch(e, start_batch)`` selects the epoch and skips its first ``start_batch`` batches (resume).
    ``drop_last`` drops a final partial batch (BatchNorm cannot train on a batch of one)."""

    def __init__(self, sampler: Any, batch_size: int, drop_last: bool):
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)
        self.sampler.set_epoch(self.epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        idx = list(iter(self.sampler))
        nb = len(self)
        for b in range(self.start_batch, nb):
            chunk = idx[b * self.batch_size:(b + 1) * self.batch_size]
            yield [(self.epoch, b * self.batch_size + j, int(i)) for j, i in enumerate(chunk)]


def _worker_init(worker_id: int) -> None:
    from lesionkit.data.dataset import worker_init

    worker_init(worker_id)


def make_loader(dataset: Dataset, *, batch_sampler: Any = None, sampler: Any = None, batch_size: int = 1,
                num_workers: int = 0, pin_memory: bool = False, persistent: bool = True) -> DataLoader:
    """DataLoader with forkserver workers (see :mod:`lesionkit.parallel`), persistent across epochs."""
    kw: dict[str, Any] = {}
    if num_workers > 0:
        import multiprocessing

        ctx = multiprocessing.get_context("forkserver") if os.name == "posix" else multiprocessing.get_context("spawn")
        if os.name == "posix":
            ctx.set_forkserver_preload(["torch", "torchvision", "lesionkit.data.transforms", "lesionkit.data.dataset",
                                        "lesionkit.train.engine"])
        kw.update(multiprocessing_context=ctx, worker_init_fn=_worker_init, persistent_workers=persistent,
                  prefetch_factor=4)
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers, pin_memory=pin_memory, **kw)
    return DataLoader(dataset, sampler=sampler, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=pin_memory, **kw)


# ------------------------------------------------------------------------------------------------- metrics

def classification_metrics(y: np.ndarray, logits: np.ndarray, binary: bool) -> dict[str, float | None]:
    """Accuracy, balanced accuracy and AUC of logits (binary: one logit per row; else [n, C]).

    AUC: binary ROC AUC of the logit; multi-class: mean one-vs-rest AUC over the classes that have both positives
    and negatives in ``y``. Undefined values (one class only) are None.
    """
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    y = np.asarray(y, dtype=np.int64)
    logits = np.asarray(logits, dtype=np.float64)
    if len(y) == 0:
        return {"acc": None, "bacc": None, "auc": None}
    if binary:
        score = logits.reshape(-1)
        pred = (score > 0).astype(np.int64)
        auc = float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else None
    else:
        pred = logits.argmax(axis=1)
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        aucs = [roc_auc_score(y == c, p[:, c]) for c in range(p.shape[1]) if 0 < (y == c).sum() < len(y)]
        auc = float(np.mean(aucs)) if aucs else None
    return {"acc": float((pred == y).mean()), "bacc": float(balanced_accuracy_score(y, pred)), "auc": auc}


def improved(value: float | None, best: float | None, mode: str, min_delta: float) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


# ------------------------------------------------------------------------------------------------- engine

@dataclass
class TrainState:
    """Progress that a checkpoint carries: ``epoch`` completed epochs, ``batch`` batches done in the current one."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    best_metric: float | None = None
    best_epoch: float | None = None
    bad_checks: int = 0
    stop_reason: str | None = None
    lr: float | None = None  # the base LR actually used (after --lr auto)


@dataclass
class EngineParts:
    """Everything the loop needs; ``ckpt_info`` = the fixed checkpoint fields (spec, classes, target, data_cfg,
    meta_encoder, config)."""

    cfg: TrainConfig
    model: nn.Module  # the module to train (possibly compiled / DDP-wrapped)
    net: nn.Module  # the plain LesionNet
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: nn.Module
    train_set: Dataset
    train_sampler: Any
    val_set: Dataset
    val_targets: np.ndarray
    binary: bool
    ckpt_info: dict[str, Any]
    run_dir: Path | None = None
    scaler: Any = None
    val_sampler: Any = None
    on_check: Callable[[dict[str, Any]], None] | None = None
    extra_ckpt: dict[str, Any] = field(default_factory=dict)
    debias: Any = None  # lesionkit.train.debias.Debiaser
    bias_targets: torch.Tensor | None = None  # int64 bias code per training-set index (-1 = unknown)


class Trainer:
    """Runs :class:`EngineParts` to completion; see the module docstring."""

    def __init__(self, parts: EngineParts, state: TrainState | None = None):
        self.p = parts
        self.cfg = parts.cfg
        self.state = state or TrainState()
        self.dist = D.info()
        self.device = torch.device(self.dist.device)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.cfg.amp)
        self.mode = MONITORS[self.cfg.monitor]
        self.cycle_ends = set(parts.scheduler.cycle_ends()) if hasattr(parts.scheduler, "cycle_ends") else set()
        self.cycle_index = {s: k + 1 for k, s in enumerate(sorted(self.cycle_ends))}
        self.main = self.dist.is_main
        self.last_metrics: dict[str, Any] = {}
        self.epoch_times: list[float] = []
        self.train_images = 0
        self.train_time = 0.0
        n = len(parts.train_sampler)
        self.batch_sampler = EpochBatchSampler(parts.train_sampler, self.cfg.batch_size,
                                               drop_last=n > self.cfg.batch_size)
        pin = self.device.type == "cuda"
        self.train_loader = make_loader(SeededDataset(parts.train_set, self.cfg.seed, self.dist.rank),
                                        batch_sampler=self.batch_sampler, num_workers=self.cfg.num_workers,
                                        pin_memory=pin)
        self.val_loader = make_loader(parts.val_set, sampler=parts.val_sampler, batch_size=self.cfg.eval_batch_size,
                                      num_workers=self.cfg.num_workers, pin_memory=pin)
        self.steps_per_epoch = len(self.batch_sampler)
        self.history_columns = HISTORY_COLUMNS + (DEBIAS_COLUMNS if parts.debias is not None else [])
        # debiasing statistics since the last check: aux loss sum, adversarial loss sum, correct, known, batches
        self.debias_sums = torch.zeros(5, dtype=torch.float64, device=self.device)

    # ---------------------------------------------------------------------------------------- steps
    def autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        x = batch["image"].to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = batch["target"].to(self.device, non_blocking=True)
        meta = batch["meta"]
        meta = meta.to(self.device, non_blocking=True) if meta.ndim == 2 and meta.shape[1] > 0 else None
        return x, y, meta

    def train_step(self, batch: dict[str, Any]) -> torch.Tensor:
        p = self.p
        x, y, meta = self._inputs(batch)
        with self.autocast():
            if p.debias is None:
                logits = p.model(x, meta) if meta is not None else p.model(x)
                loss = p.loss_fn(logits, y)
            else:
                loss = self._debias_loss(batch, x, y, meta)
        p.optimizer.zero_grad(set_to_none=True)
        if p.scaler is not None:
            p.scaler.scale(loss).backward()
            if self.cfg.grad_clip:
                p.scaler.unscale_(p.optimizer)
                torch.nn.utils.clip_grad_norm_(p.model.parameters(), self.cfg.grad_clip)
            p.scaler.step(p.optimizer)
            p.scaler.update()
        else:
            loss.backward()
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(p.model.parameters(), self.cfg.grad_clip)
            p.optimizer.step()
        p.scheduler.step()
        self.state.step += 1
        return loss.detach()

    def _debias_loss(self, batch: dict[str, Any], x: torch.Tensor, y: torch.Tensor,
                     meta: torch.Tensor | None) -> torch.Tensor:
        """Main loss + the debiasing terms (see :mod:`lesionkit.train.debias`); accumulates their statistics."""
        p = self.p
        logits, feats = p.model(x, meta, with_features=True) if meta is not None else p.model(x, with_features=True)
        main = p.loss_fn(logits, y)
        idx = torch.as_tensor(batch["index"], dtype=torch.int64)
        bias = p.bias_targets[idx].to(self.device, non_blocking=True)
        total_steps = max(self.cfg.epochs * self.steps_per_epoch, 1)
        loss, parts = p.debias.loss(p.net.aux_head, feats, bias, main, self.state.step / total_steps)
        # accumulated on the device: no host synchronisation per step
        self.debias_sums += torch.stack([parts["aux_loss"].double(), parts["adv_loss"].double(),
                                         parts["bias_correct"].double(), parts["bias_n"].double(),
                                         torch.ones((), dtype=torch.float64, device=self.device)])
        return loss

    def _debias_metrics(self) -> dict[str, float | None]:
        if self.p.debias is None:
            return {}
        from lesionkit.train.debias import runaway_warning

        aux, adv, correct, n, nb = D.all_reduce_sum(self.debias_sums.tolist())
        self.debias_sums.zero_()
        out = {"train_aux_loss": aux / nb if nb else None, "train_adv_loss": adv / nb if nb else None,
               "train_bias_acc": correct / n if n else None}
        msg = runaway_warning(out["train_aux_loss"], self.p.net.spec.bias_outputs, self.p.debias.method)
        if msg and self.main:
            warn(msg)
        return out

    def eval_model(self) -> nn.Module:
        m = self.p.model
        return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m

    def _sync_buffers(self) -> None:
        """Rank 0's BatchNorm statistics on every rank (DDP trains them per rank) so every shard is evaluated alike."""
        if self.dist.distributed:
            for b in self.p.net.buffers():
                torch.distributed.broadcast(b.data, src=0)

    @torch.no_grad()
    def predict(self) -> tuple[np.ndarray, np.ndarray]:
        """Logits of every validation row (index-ordered, gathered from all ranks)."""
        self._sync_buffers()
        model = self.eval_model()
        was = model.training
        model.eval()
        idx, out = [], []
        try:
            for batch in self.val_loader:
                x, _, meta = self._inputs(batch)
                with self.autocast():
                    logits = model(x, meta) if meta is not None else model(x)
                out.append(logits.float().cpu().numpy())
                idx.append(np.asarray(batch["index"], dtype=np.int64))
        finally:
            model.train(was)
        n_out = 1 if self.p.binary else len(self.p.ckpt_info["classes"])
        local_idx = np.concatenate(idx) if idx else np.zeros(0, np.int64)
        local = np.concatenate(out).reshape(len(local_idx), -1) if out else np.zeros((0, n_out), np.float32)
        return D.gather_eval(local_idx, local, len(self.p.val_targets))

    def validate(self) -> dict[str, Any]:
        _, logits = self.predict()
        y = self.p.val_targets
        loss_fn = copy.deepcopy(self.p.loss_fn).cpu()
        lt = torch.from_numpy(logits)
        with torch.no_grad():
            val_loss = float(loss_fn(lt.reshape(-1) if self.p.binary else lt, torch.from_numpy(y)))
        m = classification_metrics(y, logits, self.p.binary)
        return {"val_loss": val_loss, "val_acc": m["acc"], "val_bacc": m["bacc"], "val_auc": m["auc"]}

    # ---------------------------------------------------------------------------------------- checkpoints
    def _save(self, path: Path, full: bool, extra: dict[str, Any] | None = None) -> None:
        if not self.main or self.p.run_dir is None:
            return
        from lesionkit.models.checkpoint import rng_state, save_checkpoint

        st = self.state
        save_checkpoint(
            path, model=self.p.net, epoch=st.epoch, step=st.step, best_metric=st.best_metric,
            optimizer=self.p.optimizer if full else None, scheduler=self.p.scheduler if full else None,
            scaler=self.p.scaler if full else None, rng=rng_state() if full else None,
            extra={"train_state": asdict(st), "world_size": self.dist.world_size, "metrics": self.last_metrics,
                   **self.p.extra_ckpt, **(extra or {})},
            **self.p.ckpt_info,
        )

    def _gathered_rng(self) -> list[Any]:
        from lesionkit.models.checkpoint import rng_state

        return D.all_gather_objects(rng_state()) if self.dist.distributed else []

    def save_last(self) -> None:
        # every rank's RNG state (rank 0's is the main one); a resumed DDP run restores each rank's own
        ranks = self._gathered_rng()
        if self.p.run_dir is not None:
            self._save(self.p.run_dir / "checkpoints" / "last.pt", full=True,
                       extra={"rank_rng": ranks} if ranks else None)

    # ---------------------------------------------------------------------------------------- history
    def _history_row(self, epoch: float, train_loss: float | None, metrics: dict[str, Any], time_s: float,
                     is_best: bool) -> None:
        if not self.main or self.p.run_dir is None:
            return
        lrs = self._lrs()
        row = {"epoch": round(epoch, 4), "step": self.state.step, "lr_first": lrs[0], "lr_last": lrs[-1],
               "train_loss": train_loss, **{k: metrics.get(k) for k in ("val_loss", "val_acc", "val_bacc", "val_auc")},
               "time_s": round(time_s, 3), "is_best": int(is_best),
               **{k: metrics.get(k) for k in self.history_columns if k in DEBIAS_COLUMNS}}
        path = self.p.run_dir / "history.csv"
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=self.history_columns)
            if new:
                w.writeheader()
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})
            f.flush()
            os.fsync(f.fileno())

    # ---------------------------------------------------------------------------------------- loop
    def check(self, epoch_pos: float, loss_sum: torch.Tensor, n_batches: int, t_start: float) -> bool:
        """Validate, log, track the best, write checkpoints; returns True when early stopping says stop."""
        tl, nb = D.all_reduce_sum([float(loss_sum), float(n_batches)])
        train_loss = tl / nb if nb else None
        if train_loss is not None and not math.isfinite(train_loss):
            raise LesionkitError(f"training diverged: the training loss is {train_loss} at epoch {epoch_pos:g}",
                                 hint="lower --lr (try `lesionkit lr-find`), add --grad-clip 1.0, or use --amp off")
        metrics = {**self.validate(), **self._debias_metrics()}
        self.last_metrics = {"epoch": epoch_pos, "train_loss": train_loss, **metrics}
        value = metrics.get(self.cfg.monitor)
        st = self.state
        is_best = improved(value, st.best_metric, self.mode, self.cfg.min_delta)
        if is_best:
            st.best_metric, st.best_epoch, st.bad_checks = float(value), epoch_pos, 0
        else:
            st.bad_checks += 1
            if value is None:
                self._log(f"{self.cfg.monitor} is undefined at epoch {epoch_pos:g} (one class in validation?): "
                          "counted as no improvement")
        elapsed = time.perf_counter() - t_start
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
        self._log(f"epoch {epoch_pos:g}/{self.cfg.epochs}: train_loss {fmt(train_loss)} val_loss {fmt(metrics['val_loss'])} "
                  f"acc {fmt(metrics['val_acc'])} bacc {fmt(metrics['val_bacc'])} auc {fmt(metrics['val_auc'])} "
                  f"lr {self._lrs()[-1]:.3g} ({elapsed:.1f}s)"
                  + (f" bias-head acc {fmt(metrics.get('train_bias_acc'))}" if self.p.debias is not None else "")
                  + (f" — new best {self.cfg.monitor} {value:.4f}" if is_best else ""))
        self._history_row(epoch_pos, train_loss, metrics, elapsed, is_best)
        if is_best and self.p.run_dir is not None:
            self._save(self.p.run_dir / "checkpoints" / "best.pt", full=False)
        stop = self.cfg.patience > 0 and st.bad_checks >= self.cfg.patience
        if stop:
            st.stop_reason = (f"early stop: {self.cfg.monitor} did not improve by more than {self.cfg.min_delta} "
                              f"for {st.bad_checks} check(s); best {st.best_metric} at epoch {st.best_epoch}")
        if self.p.on_check is not None and self.main:
            self.p.on_check({"epoch": epoch_pos, "train_loss": train_loss, **metrics, "is_best": is_best})
        return stop

    def _lrs(self) -> list[float]:
        """Current LRs of the param groups, input → head (the debiasing bias head's group left out)."""
        groups = self.p.optimizer.param_groups
        return [g["lr"] for g in groups if g.get("branch") != "aux"] or [g["lr"] for g in groups]

    def _log(self, msg: str) -> None:
        if self.main:
            info(msg)

    def fit(self) -> TrainState:
        """Train from ``state`` to the end (or early stop / ``--stop-after``); returns the final state."""
        cfg, st = self.cfg, self.state
        half = self.steps_per_epoch // 2 if cfg.eval_every == "half" and self.steps_per_epoch >= 2 else None
        epochs_this_run = 0
        self.p.model.train()
        while st.epoch < cfg.epochs and st.stop_reason is None:
            e = st.epoch
            self.batch_sampler.set_epoch(e, st.batch)
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
            nb = 0
            stop = False
            it = iter(self.train_loader)
            rest = self.steps_per_epoch - st.batch
            if self.main and settings.progress:
                it = track(it, rest, f"epoch {e + 1}/{cfg.epochs}", unit="batch")
            for batch in it:
                loss_sum += self.train_step(batch).double()
                nb += 1
                st.batch += 1
                self.train_images += int(batch["image"].shape[0])
                if st.step in self.cycle_ends and self.p.run_dir is not None:
                    k = self.cycle_index[st.step]
                    self._save(self.p.run_dir / "checkpoints" / f"snapshot_cycle{k}.pt", full=False,
                               extra={"cycle": k})
                    self._log(f"SGDR cycle {k} ended at step {st.step}: wrote checkpoints/snapshot_cycle{k}.pt")
                if half is not None and st.batch == half and st.batch < self.steps_per_epoch:
                    stop = self.check(e + 0.5, loss_sum, nb, t0)
                    loss_sum.zero_()
                    nb = 0
                    self.save_last()
                    if stop:
                        break
            self.train_time += time.perf_counter() - t0
            if stop:
                break
            st.epoch, st.batch = e + 1, 0
            stop = self.check(float(e + 1), loss_sum, nb, t0)
            self.epoch_times.append(time.perf_counter() - t0)
            self.save_last()
            epochs_this_run += 1
            if stop:
                break
            if cfg.stop_after is not None and epochs_this_run >= cfg.stop_after and st.epoch < cfg.epochs:
                st.stop_reason = f"stopped after {epochs_this_run} epoch(s) (--stop-after); continue with --resume"
                break
        if st.stop_reason:
            self._log(st.stop_reason)
        return st


def restore_rank_rng(ckpt: dict[str, Any], rank: int) -> None:
    """Restore this rank's RNG states from a ``last.pt`` (rank 0: ``rng``; others: ``extra.rank_rng[rank]``)."""
    from lesionkit.models.checkpoint import set_rng_state

    ranks = (ckpt.get("extra") or {}).get("rank_rng") or []
    state = ranks[rank] if rank < len(ranks) else ckpt.get("rng")
    if state:
        set_rng_state(state)
