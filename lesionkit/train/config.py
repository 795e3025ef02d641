"""The training configuration: every ``lesionkit train`` option in one dataclass, its YAML form and its checks.

Precedence: defaults < ``--config FILE`` (a ``config.yaml`` of an earlier run replays it) < options given on the
command line. :func:`validate_config` rejects impossible flag combinations up front (all problems at once, each
naming its flag); :func:`resolve_static` fills every ``auto`` that does not need the data (device, AMP,
channels_last, schedule defaults). Data-dependent choices (loss for a binary target, class count) are resolved in
:mod:`lesionkit.train.run`, and the fully resolved config is what ``config.yaml`` holds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lesionkit.errors import InputError, LesionkitError, UsageError

CONFIG_VERSION = 1
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle", "sgdr")
LOSSES = ("auto", "ce", "bce", "focal")
SAMPLERS = ("none", "balanced", "oversample")
AUG_PRESETS = ("none", "light", "seeds", "heavy")
AMP_MODES = ("auto", "bf16", "fp16", "off")
MONITORS = {"val_auc": "max", "val_acc": "max", "val_bacc": "max", "val_loss": "min"}
EVAL_EVERY = ("epoch", "half")
DEVICES = ("auto", "cpu", "cuda")
# keys that may differ between a run and its --resume (they do not change the result)
RESUME_FREE_KEYS = ("resume", "overwrite", "stop_after", "num_workers", "config", "progress", "cache_dir")


@dataclass
class TrainConfig:
    """Every option of ``lesionkit train`` (and ``lr-find``). Paths are stored as strings (YAML-friendly).

    Units: learning rates per optimizer step; epochs may be fractional only where noted (``warmup_epochs``,
    ``t0``, ``step_size``); ``img_size`` in pixels (square input).
    """

    # inputs
    manifest: str = ""
    splits: str = ""
    fold: int = 0
    target: str = "label"  # label | malignant | COLUMN
    image_col: str = "image_path"
    # model
    model: str = "resnet18"
    img_size: int = 224
    pretrained: str = "none"  # none | PATH to local weights
    drop_rate: float = 0.0
    small_input: bool = False  # ResNet stem for tiny inputs (3x3 stride 1, no max-pool), as MedMNIST's 28 px ResNets
    meta: list[str] = field(default_factory=list)  # e.g. [age, sex, site]
    meta_hidden: list[int] = field(default_factory=lambda: [256])
    meta_dropout: float = 0.3
    head: str = "linear"  # linear | soft-attention (Datta et al.: K attention maps over the last feature map)
    attention_heads: int = 16
    arch: str = "lesionnet"  # lesionnet | stochastic-split (Reekie: stochastic-window stem + low-resolution branch)
    split_low_size: int = 224  # stochastic-split: side of the low-resolution branch's input
    stem_out: int = 112  # stochastic-split: side of the stochastic stem's output (sets the window size)
    tta: int = 1  # stochastic-split: forward passes averaged at evaluation (stochastic TTA)
    # debiasing (lesionkit.train.debias)
    debias: str = "none"  # none | lntl | tabe | clgr
    bias_col: str = ""  # categorical manifest column to unlearn (fitzpatrick_est, fitzpatrick, ita_category, ...)
    debias_weight: float | None = None  # λ of the entropy / confusion term (default 0.01 LNTL, 0.03 TABE / CLGR)
    grl_coef: float | None = None  # gradient reversal coefficient (default -0.1, LNTL / CLGR only)
    grl_schedule: str = "constant"  # constant | dann (ramp 0 -> grl_coef over training)
    no_grl: bool = False  # LNTL without the GRL (refused unless force_no_grl: it teaches the encoder the bias)
    force_no_grl: bool = False
    lr_aux: float | None = None  # bias head LR (default: lr for LNTL, 10 x lr for TABE / CLGR, as published)
    # data
    aug: str = "light"
    cache: bool = True
    cache_dir: str = ""  # "" = $LESIONKIT_CACHE_DIR or ~/.cache/lesionkit/images
    cache_size: int = 0  # 0 = auto (img_size; img_size*512/416 for seeds, whose crops keep 416/512 of the side)
    batch_size: int = 64
    eval_batch_size: int = 0  # 0 = 2 * batch_size
    num_workers: int = 2
    sampler: str = "none"
    corruption: str = ""  # train AND validate on corrupted images, e.g. impulse:0.05 (one level; lesionkit robustness)
    corruption_seed: int = 0
    class_weights: str = "none"  # none | balanced | comma-separated list (one per class)
    # loss
    loss: str = "auto"  # auto (ce for multi-class, bce for binary) | ce | bce | focal
    label_smoothing: float = 0.0
    focal_gamma: float | None = None  # only with --loss focal (default 2.0 there)
    # optimisation
    optimizer: str = "adamw"
    lr: float | str = 1e-3  # a number or "auto" (LR range test before training)
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool | None = None  # SGD only (default True there)
    lr_ratio: float | None = None  # discriminative LRs: first group gets lr*ratio, last group lr
    lr_groups: int | None = None  # number of backbone groups for --lr-ratio (default: the model's stages)
    lr_backbone: float | None = None  # per-branch LRs (UCLA thesis); unset branches use --lr
    lr_head: float | None = None
    lr_meta: float | None = None
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    t0: float | None = None  # SGDR first cycle length in epochs (default 1)
    t_mult: float | None = None  # SGDR cycle length multiplier (default 2)
    step_size: float | None = None  # step schedule: epochs between decays (default epochs/3)
    gamma: float | None = None  # step schedule: decay factor (default 0.1)
    min_lr_ratio: float = 0.0
    epochs: int = 10
    grad_clip: float | None = None  # max global gradient L2 norm
    # early stopping / checkpoints
    monitor: str = "val_auc"
    patience: int = 0  # 0 = no early stopping; else stop after this many checks without improvement
    min_delta: float = 0.0
    eval_every: str = "epoch"  # epoch | half
    # speed / scale
    device: str = "auto"
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | fp16 | off
    channels_last: bool | None = None  # None = on for CUDA, off on CPU
    compile: bool = False
    sync_bn: bool = False
    seed: int = 0
    deterministic: bool = False
    # lr range test
    lr_find_start: float = 1e-7
    lr_find_end: float = 10.0
    lr_find_steps: int = 100
    # run directory
    run_dir: str = ""
    overwrite: bool = False
    resume: bool = False
    stop_after: int | None = None  # stop (resumable) after this many epochs in this invocation
    config: str = ""  # the --config file this config was read from (informational)
    progress: bool = True

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        return {"config_version": CONFIG_VERSION, **dataclasses.asdict(self)}

    def to_yaml(self, path: Path | str | None = None) -> str:
        """YAML text (written atomically to ``path`` when given)."""
        import yaml

        text = "# lesionkit train config (fully resolved); replay with: lesionkit train --config THIS_FILE\n"
        text += yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            from lesionkit.fsio import write_text_atomic

            write_text_atomic(path, text)
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> TrainConfig:
        d = dict(d)
        version = d.pop("config_version", CONFIG_VERSION)
        if not isinstance(version, int) or version > CONFIG_VERSION:
            raise InputError(f"{source}: config_version {version} is newer than this lesionkit reads ({CONFIG_VERSION})",
                             hint="upgrade lesionkit, or write the config by hand with the current keys")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"{source}: unknown key(s) {', '.join(unknown)}",
                             hint="see `lesionkit train --help` for the options (config keys are option names with _)")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: Path | str) -> TrainConfig:
        import yaml

        path = Path(path)
        try:
            d = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"config file not found: {path}",
                             hint="pass the config.yaml of an earlier run: --config runs/NAME/config.yaml") from None
        except yaml.YAMLError as e:
            raise InputError(f"{path} is not valid YAML ({e})", hint="fix the file or re-create it from a run") from None
        if not isinstance(d, dict):
            raise InputError(f"{path} does not hold a mapping of options", hint="use the config.yaml of an earlier run")
        return cls.from_dict(d, source=str(path))

    def replace(self, **kw: Any) -> TrainConfig:
        return dataclasses.replace(self, **kw)


def parse_list(value: str | list | None, kind: type = str, flag: str = "") -> list:
    """``"a,b"`` → ``["a", "b"]`` (converted with ``kind``); empty → []."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
    try:
        return [kind(v) for v in items]
    except ValueError:
        raise UsageError(f"{flag}: cannot read {value!r} as a comma-separated list of {kind.__name__}") from None


def parse_lr(value: str | float) -> float | str:
    if isinstance(value, int | float):
        return float(value)
    if str(value).strip().lower() == "auto":
        return "auto"
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"--lr {value!r}: expected a number or 'auto'", hint="e.g. --lr 3e-4, or --lr auto") from None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def validate_config(cfg: TrainConfig, world_size: int = 1) -> None:
    """Reject impossible or contradictory option combinations, all at once (UsageError naming every flag)."""
    p: list[str] = []

    def choice(value: Any, choices: tuple, flag: str) -> None:
        if value not in choices:
            p.append(f"{flag} {value!r}: expected one of {', '.join(map(str, choices))}")

    if not cfg.manifest:
        p.append("MANIFEST is required (the manifest .parquet to train on)")
    if not cfg.splits:
        p.append("--splits is required (splits.json from `lesionkit split`)")
    choice(cfg.optimizer, OPTIMIZERS, "--optimizer")
    choice(cfg.schedule, SCHEDULES, "--schedule")
    choice(cfg.loss, LOSSES, "--loss")
    choice(cfg.sampler, SAMPLERS, "--sampler")
    choice(cfg.aug, AUG_PRESETS, "--aug")
    choice(cfg.amp, AMP_MODES, "--amp")
    choice(cfg.monitor, tuple(MONITORS), "--monitor")
    choice(cfg.eval_every, EVAL_EVERY, "--eval-every")
    choice(cfg.device, DEVICES, "--device")
    if cfg.fold < 0:
        p.append(f"--fold {cfg.fold}: folds are numbered from 0")
    for flag, v, lo in (("--epochs", cfg.epochs, 1), ("--batch-size", cfg.batch_size, 1), ("--img-size", cfg.img_size, 8),
                        ("--num-workers", cfg.num_workers, 0), ("--eval-batch-size", cfg.eval_batch_size, 0),
                        ("--patience", cfg.patience, 0), ("--cache-size", cfg.cache_size, 0),
                        ("--lr-find-steps", cfg.lr_find_steps, 5)):
        if v < lo:
            p.append(f"{flag} {v}: must be >= {lo}")
    if cfg.cache_size and cfg.cache_size < cfg.img_size:
        p.append(f"--cache-size {cfg.cache_size} is smaller than --img-size {cfg.img_size}: the cache would be upscaled")
    if isinstance(cfg.lr, str) and cfg.lr != "auto":
        p.append(f"--lr {cfg.lr!r}: expected a number or 'auto'")
    elif isinstance(cfg.lr, float | int) and not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        p.append(f"--lr {cfg.lr}: must be > 0")
    if cfg.weight_decay < 0:
        p.append(f"--weight-decay {cfg.weight_decay}: must be >= 0")
    if not 0 <= cfg.label_smoothing < 1:
        p.append(f"--label-smoothing {cfg.label_smoothing}: must be in [0, 1)")
    if cfg.corruption:
        try:
            from lesionkit.robustness.corruptions import parse_corruption

            spec = parse_corruption(cfg.corruption)
            if len(spec.levels) != 1:
                p.append(f"--corruption {cfg.corruption}: give exactly one level for training (e.g. impulse:0.05)")
        except LesionkitError as e:
            p.append(f"--corruption {cfg.corruption}: {e.message}")
    _validate_model_options(cfg, p)
    _validate_debias(cfg, p)
    if cfg.small_input and str(cfg.pretrained).lower() != "none":
        p.append("--small-input with --pretrained: the small-input stem replaces the pretrained stem convolution, "
                 "so the weights cannot be loaded as they are; train from scratch or drop --small-input")
    if not 0 <= cfg.drop_rate < 1:
        p.append(f"--drop-rate {cfg.drop_rate}: must be in [0, 1)")
    if not 0 <= cfg.meta_dropout < 1:
        p.append(f"--meta-dropout {cfg.meta_dropout}: must be in [0, 1)")
    if cfg.focal_gamma is not None and cfg.loss != "focal":
        p.append(f"--focal-gamma only applies to --loss focal (got --loss {cfg.loss})")
    if cfg.focal_gamma is not None and cfg.focal_gamma < 0:
        p.append(f"--focal-gamma {cfg.focal_gamma}: must be >= 0")
    if cfg.nesterov and cfg.optimizer != "sgd":
        p.append(f"--nesterov only applies to --optimizer sgd (got {cfg.optimizer})")
    if cfg.nesterov and cfg.momentum <= 0:
        p.append("--nesterov needs --momentum > 0")
    if cfg.lr_ratio is not None and not 0 < cfg.lr_ratio <= 1:
        p.append(f"--lr-ratio {cfg.lr_ratio}: must be in (0, 1] (the first layer group gets lr × ratio)")
    branch = [f for f, v in (("--lr-backbone", cfg.lr_backbone), ("--lr-head", cfg.lr_head), ("--lr-meta", cfg.lr_meta)) if v is not None]
    if cfg.lr_ratio is not None and branch:
        p.append(f"--lr-ratio and {'/'.join(branch)} conflict: use layer-wise (--lr-ratio) or per-branch LRs, not both")
    if cfg.lr_groups is not None and cfg.lr_ratio is None:
        p.append("--lr-groups only applies with --lr-ratio")
    if cfg.lr_meta is not None and not cfg.meta:
        p.append("--lr-meta needs a metadata branch (--meta age,sex,site)")
    for f, v in (("--lr-backbone", cfg.lr_backbone), ("--lr-head", cfg.lr_head), ("--lr-meta", cfg.lr_meta)):
        if v is not None and not v > 0:
            p.append(f"{f} {v}: must be > 0")
    if cfg.lr == "auto" and branch:
        p.append(f"--lr auto and {'/'.join(branch)}: the range test finds one LR; give the branch LRs as numbers with a numeric --lr")
    if cfg.schedule != "sgdr":
        for f, v in (("--t0", cfg.t0), ("--t-mult", cfg.t_mult)):
            if v is not None:
                p.append(f"{f} only applies to --schedule sgdr (got --schedule {cfg.schedule})")
    if cfg.schedule != "step":
        for f, v in (("--step-size", cfg.step_size), ("--gamma", cfg.gamma)):
            if v is not None:
                p.append(f"{f} only applies to --schedule step (got --schedule {cfg.schedule})")
    if cfg.t0 is not None and not cfg.t0 > 0:
        p.append(f"--t0 {cfg.t0}: must be > 0 epochs")
    if cfg.t_mult is not None and cfg.t_mult < 1:
        p.append(f"--t-mult {cfg.t_mult}: must be >= 1")
    if cfg.step_size is not None and not cfg.step_size > 0:
        p.append(f"--step-size {cfg.step_size}: must be > 0 epochs")
    if cfg.gamma is not None and not 0 < cfg.gamma <= 1:
        p.append(f"--gamma {cfg.gamma}: must be in (0, 1]")
    if cfg.warmup_epochs < 0 or cfg.warmup_epochs >= cfg.epochs:
        p.append(f"--warmup-epochs {cfg.warmup_epochs}: must be in [0, --epochs {cfg.epochs})")
    if cfg.warmup_epochs > 0 and cfg.schedule == "onecycle":
        p.append("--warmup-epochs with --schedule onecycle: one-cycle has its own warm-up phase")
    if not 0 <= cfg.min_lr_ratio <= 1:
        p.append(f"--min-lr-ratio {cfg.min_lr_ratio}: must be in [0, 1]")
    if cfg.grad_clip is not None and not cfg.grad_clip > 0:
        p.append(f"--grad-clip {cfg.grad_clip}: must be > 0")
    if not 0 < cfg.lr_find_start < cfg.lr_find_end:
        p.append(f"--lr-find-start {cfg.lr_find_start} / --lr-find-end {cfg.lr_find_end}: need 0 < start < end")
    if cfg.stop_after is not None and cfg.stop_after < 1:
        p.append(f"--stop-after {cfg.stop_after}: must be >= 1 epoch")
    if cfg.resume and cfg.overwrite:
        p.append("--resume and --overwrite conflict: --resume continues the run, --overwrite starts it again")
    if cfg.class_weights not in ("none", "balanced"):
        try:
            ws = parse_list(cfg.class_weights, float, "--class-weights")
            if not ws or any(not (w > 0 and math.isfinite(w)) for w in ws):
                p.append(f"--class-weights {cfg.class_weights!r}: weights must be finite and > 0")
        except UsageError as e:
            p.append(f"--class-weights: {e.message} (or use none | balanced)")
    if any(not h > 0 for h in cfg.meta_hidden):
        p.append(f"--meta-hidden {cfg.meta_hidden}: layer sizes must be > 0")
    # device-dependent
    has_cuda = cuda_available()
    device = resolve_device(cfg.device, has_cuda)
    if cfg.device == "cuda" and not has_cuda:
        p.append("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    if device == "cpu" and cfg.amp == "fp16":
        p.append("--amp fp16 needs a CUDA device (fp16 autocast with a GradScaler is GPU-only); use --amp off or bf16 on CPU")
    if device == "cpu" and cfg.channels_last:
        pass  # allowed (a memory-format hint; harmless on CPU)
    if cfg.compile and device == "cpu" and world_size > 1:
        p.append("--compile with multi-process CPU (gloo) training is not supported; drop --compile or train on GPUs")
    if cfg.sync_bn and world_size == 1:
        pass  # no-op on one process
    if p:
        raise UsageError("invalid training options" if len(p) > 1 else p[0], details=p if len(p) > 1 else None,
                         hint="see `lesionkit train --help`")


def _validate_model_options(cfg: TrainConfig, p: list[str]) -> None:
    from lesionkit.models.factory import ARCHS, HEADS

    if cfg.head not in HEADS:
        p.append(f"--head {cfg.head!r}: expected one of {', '.join(HEADS)}")
    if cfg.arch not in ARCHS:
        p.append(f"--arch {cfg.arch!r}: expected one of {', '.join(ARCHS)}")
    if cfg.attention_heads < 1:
        p.append(f"--attention-heads {cfg.attention_heads}: must be >= 1")
    if cfg.tta < 1:
        p.append(f"--tta {cfg.tta}: must be >= 1 forward pass")
    if cfg.arch != "stochastic-split":
        if cfg.tta != 1:
            p.append("--tta averages the random windows of --arch stochastic-split; other models are deterministic "
                     "(use `lesionkit evaluate --tta flips8` for flip TTA)")
        return
    if cfg.head != "linear":
        p.append("--arch stochastic-split with --head soft-attention: the split model fuses two pooled feature "
                 "vectors; use --head linear")
    if cfg.small_input:
        p.append("--arch stochastic-split with --small-input: the stochastic stem replaces the stem; drop --small-input")
    if cfg.split_low_size < 8 or cfg.split_low_size > cfg.img_size:
        p.append(f"--split-low-size {cfg.split_low_size}: must be in [8, --img-size {cfg.img_size}] (the low-resolution "
                 "branch sees the image downsized)")
    if cfg.stem_out < 1:
        p.append(f"--stem-out {cfg.stem_out}: must be >= 1")


def _validate_debias(cfg: TrainConfig, p: list[str]) -> None:
    from lesionkit.train.debias import GRL_SCHEDULES, METHODS

    if cfg.debias not in METHODS:
        p.append(f"--debias {cfg.debias!r}: expected one of {', '.join(METHODS)}")
        return
    if cfg.debias == "none":
        given = [f for f, v in (("--bias-col", cfg.bias_col), ("--debias-weight", cfg.debias_weight),
                                ("--grl-coef", cfg.grl_coef), ("--no-grl", cfg.no_grl), ("--lr-aux", cfg.lr_aux))
                 if v not in ("", None, False)]
        if given:
            p.append(f"{', '.join(given)} only apply with --debias lntl|tabe|clgr")
        return
    if not cfg.bias_col:
        p.append(f"--debias {cfg.debias} needs --bias-col COLUMN (the categorical attribute to unlearn, e.g. "
                 "fitzpatrick_est from `lesionkit label-skintone`)")
    if cfg.grl_schedule not in GRL_SCHEDULES:
        p.append(f"--grl-schedule {cfg.grl_schedule!r}: expected one of {', '.join(GRL_SCHEDULES)}")
    if cfg.debias_weight is not None and not cfg.debias_weight >= 0:
        p.append(f"--debias-weight {cfg.debias_weight}: must be >= 0")
    if cfg.lr_aux is not None and not cfg.lr_aux > 0:
        p.append(f"--lr-aux {cfg.lr_aux}: must be > 0")
    if cfg.debias == "tabe":
        if cfg.grl_coef is not None or cfg.no_grl:
            p.append("--debias tabe has no gradient reversal layer (its bias head trains on detached features); "
                     "--grl-coef / --no-grl apply to lntl and clgr (CLGR = TABE + GRL)")
        return
    if cfg.no_grl and cfg.debias == "clgr":
        p.append("--debias clgr --no-grl is TABE: use --debias tabe")
    if cfg.no_grl and cfg.debias == "lntl" and not cfg.force_no_grl:
        p.append("--debias lntl --no-grl: without the gradient reversal layer the bias head's classification "
                 "gradient reaches the encoder unreversed and trains it to PREDICT the bias (the opposite of "
                 "unlearning it); add --force-no-grl only to reproduce that ablation")
    if cfg.grl_coef is not None and cfg.grl_coef > 0 and not cfg.force_no_grl:
        p.append(f"--grl-coef {cfg.grl_coef}: a positive coefficient does not reverse the gradient and trains the "
                 "encoder to predict the bias; use a negative value (published: -0.1), or --force-no-grl for the "
                 "ablation")
    if cfg.no_grl and cfg.grl_coef is not None:
        p.append("--no-grl and --grl-coef conflict")


def resolve_device(device: str, has_cuda: bool | None = None) -> str:
    if device == "auto":
        return "cuda" if (cuda_available() if has_cuda is None else has_cuda) else "cpu"
    return device


def resolve_static(cfg: TrainConfig) -> TrainConfig:
    """Fill every ``auto`` that does not depend on the data (device, AMP, channels_last, schedule defaults)."""
    device = resolve_device(cfg.device)
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if device == "cuda" else "off")
    channels_last = cfg.channels_last if cfg.channels_last is not None else device == "cuda"
    kw: dict[str, Any] = {"device": device, "amp": amp, "channels_last": channels_last,
                          "eval_batch_size": cfg.eval_batch_size or 2 * cfg.batch_size}
    if cfg.schedule == "sgdr":
        kw["t0"] = 1.0 if cfg.t0 is None else float(cfg.t0)
        kw["t_mult"] = 2.0 if cfg.t_mult is None else float(cfg.t_mult)
    if cfg.schedule == "step":
        kw["step_size"] = max(cfg.epochs / 3.0, 1.0) if cfg.step_size is None else float(cfg.step_size)
        kw["gamma"] = 0.1 if cfg.gamma is None else float(cfg.gamma)
    if cfg.optimizer == "sgd" and cfg.nesterov is None:
        kw["nesterov"] = cfg.momentum > 0
    if cfg.loss == "focal" and cfg.focal_gamma is None:
        kw["focal_gamma"] = 2.0
    if cfg.debias != "none":
        from lesionkit.train.debias import DEFAULT_WEIGHT

        if cfg.debias_weight is None:
            kw["debias_weight"] = DEFAULT_WEIGHT[cfg.debias]
        if cfg.grl_coef is None and cfg.debias != "tabe" and not cfg.no_grl:
            kw["grl_coef"] = -0.1
    if not cfg.cache_size:
        from lesionkit.data.transforms import cache_size_for

        kw["cache_size"] = cache_size_for(cfg.aug, cfg.img_size)
    if not cfg.cache_dir:
        from lesionkit.data.cache import default_cache_root

        kw["cache_dir"] = str(default_cache_root())
    return dataclasses.replace(cfg, **kw)


def config_differences(a: TrainConfig, b: TrainConfig, ignore: tuple[str, ...] = RESUME_FREE_KEYS) -> list[str]:
    """``key: a → b`` for every option that differs (``ignore`` keys excluded)."""
    da, db = dataclasses.asdict(a), dataclasses.asdict(b)
    return [f"{k}: {da[k]!r} (run) vs {db[k]!r} (now)" for k in da if k not in ignore and da[k] != db[k]]
