from __future__ import annotations

from pathlib import Path

import typer

# option name → TrainConfig field for options whose parameter name differs
_RENAMED = {"manifest_path": "manifest"}
_NOT_CONFIG = {"ctx", "config_file", "out", "name", "lr_find_out"}


def _collect(ctx: typer.Context, params: dict) -> dict:
    """The options given on the command line (not defaults), as TrainConfig fields."""
    from lesionkit.train.config import parse_list, parse_lr

    given = {}
    for k, v in params.items():
        if k in _NOT_CONFIG:
            continue
        src = ctx.get_parameter_source(k)
        if src is not None and src.name in ("COMMANDLINE", "ENVIRONMENT"):
            given[_RENAMED.get(k, k)] = v
    if "manifest" in given:
        given["manifest"] = str(given["manifest"])
    if "splits" in given:
        given["splits"] = str(given["splits"])
    if "meta" in given:
        given["meta"] = parse_list(given["meta"], str, "--meta")
    if "meta_hidden" in given:
        given["meta_hidden"] = parse_list(given["meta_hidden"], int, "--meta-hidden")
    if "lr" in given:
        given["lr"] = parse_lr(given["lr"])
    if "run_dir" in given:
        given["run_dir"] = str(given["run_dir"])
    return given


def _build(ctx: typer.Context, params: dict, config_file: Path | None, out: Path, name: str | None):
    """defaults < --config FILE (or the run's config.yaml with --resume) < command-line options."""
    from lesionkit.errors import UsageError
    from lesionkit.train.config import TrainConfig
    from lesionkit.train.run import default_run_name

    given = _collect(ctx, params)
    resume = bool(given.get("resume"))
    if resume and config_file is not None:
        raise UsageError("--resume and --config conflict: --resume reads the run's own config.yaml",
                         hint="lesionkit train --resume --run-dir runs/NAME")
    base = TrainConfig.from_yaml(config_file).replace(config=str(config_file)) if config_file else TrainConfig()
    cfg = base.replace(**given)
    if "run_dir" not in given and (name is not None or getattr(ctx.get_parameter_source("out"), "name", "") == "COMMANDLINE"
                                   or not cfg.run_dir):
        cfg = cfg.replace(run_dir=str(out / (name or default_run_name(cfg))))
    if resume:
        saved = Path(cfg.run_dir) / "config.yaml"
        if not saved.is_file():
            raise UsageError(f"--resume: {saved} not found", hint="pass the run directory: --resume --run-dir runs/NAME")
        cfg = TrainConfig.from_yaml(saved).replace(**{**given, "run_dir": cfg.run_dir, "resume": True,
                                                     "overwrite": False})
    return cfg


def train(
    ctx: typer.Context,
    manifest_path: Path = typer.Argument(None, metavar="MANIFEST", help="Manifest (.parquet); optional with --config/--resume."),  # noqa: B008
    splits: Path = typer.Option(None, "--splits", "-s", help="splits.json from `lesionkit split`."),  # noqa: B008
    fold: int = typer.Option(0, "--fold", "-k", help="Fold of the splits file to train on (its val part validates)."),
    target: str = typer.Option("label", "--target", help="label (multi-class) | malignant (binary) | a class COLUMN."),
    image_col: str = typer.Option("image_path", "--image-col", help="Image column: image_path (raw) or prep_path (after prep)."),
    model: str = typer.Option("resnet18", "--model", "-m", help="Any timm model name (timm.list_models())."),
    img_size: int = typer.Option(224, "--img-size", help="Square input side in pixels."),
    pretrained: str = typer.Option("none", "--pretrained", help="none | a LOCAL weights file (.pth/.safetensors) for the backbone."),
    drop_rate: float = typer.Option(0.0, "--drop-rate", help="Dropout before the head, in [0, 1)."),
    small_input: bool = typer.Option(False, "--small-input", help="CIFAR/MedMNIST-style stem for 28-64 px inputs: 3x3 stride-1 first conv, no max-pool (ResNet family)."),
    meta: str = typer.Option("", "--meta", help="Metadata fusion columns, e.g. age,sex,site (MLP branch with missing indicators)."),
    meta_hidden: str = typer.Option("256", "--meta-hidden", help="Hidden sizes of the metadata MLP, e.g. 256 or 512,128."),
    meta_dropout: float = typer.Option(0.3, "--meta-dropout", help="Dropout after each metadata layer."),
    head: str = typer.Option("linear", "--head", help="linear (global pooling) | soft-attention (K attention maps over the last feature map, Datta et al.)."),
    attention_heads: int = typer.Option(16, "--attention-heads", help="--head soft-attention: number of attention maps K."),
    arch: str = typer.Option("lesionnet", "--arch", help="lesionnet | stochastic-split (Reekie: random-window stem on the --img-size image + a second backbone on it downsized)."),
    split_low_size: int = typer.Option(224, "--split-low-size", help="stochastic-split: input side of the low-resolution backbone."),
    stem_out: int = typer.Option(112, "--stem-out", help="stochastic-split: side of the stochastic stem's output (sets the window size)."),
    tta: int = typer.Option(1, "--tta", help="stochastic-split: forward passes averaged at evaluation (stochastic TTA)."),
    debias: str = typer.Option("none", "--debias", help="Unlearn a bias attribute: none | lntl | tabe | clgr (auxiliary head + entropy / confusion loss, GRL)."),
    bias_col: str = typer.Option("", "--bias-col", help="Categorical column to unlearn, e.g. fitzpatrick_est, fitzpatrick, ita_category, an instrument proxy."),
    debias_weight: float = typer.Option(None, "--debias-weight", help="Weight of the entropy (LNTL, default 0.01) / uniform-confusion (TABE, CLGR, default 0.03) term."),
    grl_coef: float = typer.Option(None, "--grl-coef", help="Gradient reversal coefficient (LNTL / CLGR; default -0.1 as published)."),
    grl_schedule: str = typer.Option("constant", "--grl-schedule", help="constant | dann (ramp the GRL coefficient from 0, Ganin & Lempitsky)."),
    no_grl: bool = typer.Option(False, "--no-grl", help="LNTL without gradient reversal (an ablation; needs --force-no-grl)."),
    force_no_grl: bool = typer.Option(False, "--force-no-grl", help="Allow --no-grl / a positive --grl-coef, which train the encoder to predict the bias."),
    lr_aux: float = typer.Option(None, "--lr-aux", help="LR of the bias head (default: --lr for LNTL, 10 x --lr for TABE / CLGR, as published)."),
    aug: str = typer.Option("light", "--aug", help="Augmentation preset: none | light | seeds | heavy (validation never augmented)."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Decode every image once into a memory-mapped uint8 cache (reused by later runs)."),
    cache_dir: str = typer.Option("", "--cache-dir", help="Cache folder (default $LESIONKIT_CACHE_DIR or ~/.cache/lesionkit/images)."),
    cache_size: int = typer.Option(0, "--cache-size", help="Cached image side (0 = auto: img-size; img-size*512/416 for seeds)."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Images per optimizer step and process."),
    eval_batch_size: int = typer.Option(0, "--eval-batch-size", help="Validation batch size (0 = 2 x batch size)."),
    num_workers: int = typer.Option(2, "--num-workers", "-j", help="DataLoader worker processes per training process."),
    corruption: str = typer.Option("", "--corruption", help="Train and validate on corrupted images, one level: e.g. impulse:0.05 (see lesionkit robustness --list)."),
    corruption_seed: int = typer.Option(0, "--corruption-seed", help="Seed of --corruption (per sample_id: the same images every epoch)."),
    sampler: str = typer.Option("none", "--sampler", help="none | balanced (class-balanced draws) | oversample (minority classes up to the majority)."),
    class_weights: str = typer.Option("none", "--class-weights", help="Loss class weights: none | balanced (N/(C*N_c)) | LIST (e.g. 1,2.5,4)."),
    loss: str = typer.Option("auto", "--loss", help="auto (ce; bce for a binary target) | ce | bce | focal."),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing", help="Label smoothing epsilon in [0, 1)."),
    focal_gamma: float = typer.Option(None, "--focal-gamma", help="Focal loss gamma (with --loss focal; default 2)."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="sgd | adam | adamw."),
    lr: str = typer.Option("1e-3", "--lr", help="Learning rate (of the head group), or auto (LR range test first)."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", help="Weight decay (not on biases / norm weights)."),
    momentum: float = typer.Option(0.9, "--momentum", help="SGD momentum."),
    nesterov: bool = typer.Option(None, "--nesterov/--no-nesterov", help="SGD Nesterov momentum (default on with SGD)."),
    lr_ratio: float = typer.Option(None, "--lr-ratio", help="Discriminative LRs: the first layer group gets lr x ratio, log-spaced up to lr at the head."),
    lr_groups: int = typer.Option(None, "--lr-groups", help="With --lr-ratio: number of layer groups (default: the model's stages + head)."),
    lr_backbone: float = typer.Option(None, "--lr-backbone", help="Per-branch LR of the backbone."),
    lr_head: float = typer.Option(None, "--lr-head", help="Per-branch LR of the head."),
    lr_meta: float = typer.Option(None, "--lr-meta", help="Per-branch LR of the metadata branch."),
    schedule: str = typer.Option("cosine", "--schedule", help="constant | step | cosine | onecycle | sgdr (per-step)."),
    warmup_epochs: float = typer.Option(0.0, "--warmup-epochs", help="Linear warm-up length in epochs (not with onecycle)."),
    t0: float = typer.Option(None, "--t0", help="SGDR: first cycle length in epochs (default 1)."),
    t_mult: float = typer.Option(None, "--t-mult", help="SGDR: cycle length multiplier (default 2)."),
    step_size: float = typer.Option(None, "--step-size", help="step: epochs between LR decays (default epochs/3)."),
    gamma: float = typer.Option(None, "--gamma", help="step: LR decay factor (default 0.1)."),
    min_lr_ratio: float = typer.Option(0.0, "--min-lr-ratio", help="Cosine / SGDR floor as a fraction of the LR."),
    epochs: int = typer.Option(10, "--epochs", "-e", help="Epochs."),
    grad_clip: float = typer.Option(None, "--grad-clip", help="Clip the global gradient L2 norm to this value."),
    monitor: str = typer.Option("val_auc", "--monitor", help="Metric for best.pt / early stopping: val_auc | val_acc | val_bacc | val_loss."),
    patience: int = typer.Option(0, "--patience", help="Early stopping: stop after N checks without improvement (0 = off)."),
    min_delta: float = typer.Option(0.0, "--min-delta", help="Smallest change that counts as an improvement."),
    eval_every: str = typer.Option("epoch", "--eval-every", help="Validate every epoch or every half epoch (epoch | half)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    amp: str = typer.Option("auto", "--amp", help="auto (bf16 on CUDA, off on CPU) | bf16 | fp16 (CUDA only) | off."),
    channels_last: bool = typer.Option(None, "--channels-last/--no-channels-last", help="channels_last memory format (default on CUDA)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="SyncBatchNorm across processes (torchrun)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (data order, augmentation, initialisation)."),
    deterministic: bool = typer.Option(False, "--deterministic", help="Deterministic algorithms (slower on GPU)."),
    lr_find_start: float = typer.Option(1e-7, "--lr-find-start", help="--lr auto: first LR of the range test."),
    lr_find_end: float = typer.Option(10.0, "--lr-find-end", help="--lr auto: last LR of the range test."),
    lr_find_steps: int = typer.Option(100, "--lr-find-steps", help="--lr auto: steps of the range test."),
    run_dir: Path = typer.Option(None, "--run-dir", help="Run directory (default OUT/NAME)."),  # noqa: B008
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Parent folder of run directories."),  # noqa: B008
    name: str = typer.Option(None, "--name", help="Run name (default MODEL_TARGET_SIZEpx_foldK)."),
    config_file: Path = typer.Option(None, "--config", help="Replay a config.yaml (command-line options override it)."),  # noqa: B008
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir exactly where its last.pt left off."),
    stop_after: int = typer.Option(None, "--stop-after", help="Stop (resumably) after N epochs in this invocation."),
) -> None:
    """Train a classifier on one fold: any timm model, augmentation presets, imbalance handling, schedules, AMP, DDP.

    Writes RUN_DIR/config.yaml (replayable with --config), run.json, history.csv and checkpoints/{best,last}.pt
    (+ snapshot_cycleK.pt with SGDR). Multi-GPU: torchrun --nproc_per_node N -m lesionkit train ...

    Example: lesionkit train work/prep/manifest.parquet --splits work/splits.json --image-col prep_path --target malignant --model resnet18 --img-size 128 --epochs 10 --name r18

    Debiasing example: lesionkit train work/prep/manifest.parquet --splits work/splits.json --target malignant --debias clgr --bias-col fitzpatrick_est
    """
    params = dict(locals())
    from lesionkit.train.run import run_train

    cfg = _build(ctx, params, config_file, out, name)
    run_train(cfg)


def lr_find(
    ctx: typer.Context,
    manifest_path: Path = typer.Argument(None, metavar="MANIFEST", help="Manifest (.parquet); optional with --config."),  # noqa: B008
    splits: Path = typer.Option(None, "--splits", "-s", help="splits.json from `lesionkit split`."),  # noqa: B008
    fold: int = typer.Option(0, "--fold", "-k", help="Fold whose training part is used."),
    target: str = typer.Option("label", "--target", help="label | malignant | a class COLUMN."),
    image_col: str = typer.Option("image_path", "--image-col", help="image_path or prep_path."),
    model: str = typer.Option("resnet18", "--model", "-m", help="timm model name."),
    img_size: int = typer.Option(224, "--img-size", help="Square input side in pixels."),
    pretrained: str = typer.Option("none", "--pretrained", help="none | a LOCAL weights file."),
    meta: str = typer.Option("", "--meta", help="Metadata fusion columns, e.g. age,sex,site."),
    aug: str = typer.Option("light", "--aug", help="Augmentation preset."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Use the decoded-image cache."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Batch size."),
    num_workers: int = typer.Option(2, "--num-workers", "-j", help="DataLoader workers."),
    sampler: str = typer.Option("none", "--sampler", help="none | balanced | oversample."),
    class_weights: str = typer.Option("none", "--class-weights", help="none | balanced | LIST."),
    loss: str = typer.Option("auto", "--loss", help="auto | ce | bce | focal."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="sgd | adam | adamw."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", help="Weight decay."),
    momentum: float = typer.Option(0.9, "--momentum", help="SGD momentum."),
    lr_ratio: float = typer.Option(None, "--lr-ratio", help="Discriminative LR ratio (groups keep their ratios during the sweep)."),
    lr_find_start: float = typer.Option(1e-7, "--start-lr", help="First LR."),
    lr_find_end: float = typer.Option(10.0, "--end-lr", help="Last LR (the sweep stops earlier on divergence)."),
    lr_find_steps: int = typer.Option(100, "--steps", help="Number of steps (exponentially spaced LRs)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    config_file: Path = typer.Option(None, "--config", help="Take every other option from a run's config.yaml."),  # noqa: B008
    lr_find_out: Path = typer.Option(Path("runs/lr_find"), "--out", "-o", help="Folder for lr_find.png and lr_find.json."),  # noqa: B008
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing lr_find.png / lr_find.json."),
) -> None:
    """LR range test: exponential LR sweep on the training fold, stops on divergence, restores the weights, plots.

    Writes OUT/lr_find.png (loss vs LR, suggestion marked) and OUT/lr_find.json; prints the suggested LR
    (the "valley" of the smoothed loss: steepest descent is fooled by early noise). `lesionkit train --lr auto` runs the same test first.

    Example: lesionkit lr-find work/prep/manifest.parquet --splits work/splits.json --image-col prep_path --model resnet18 --img-size 128 --out runs/lrf
    """
    params = dict(locals())
    from lesionkit.train.config import TrainConfig
    from lesionkit.train.run import run_lr_find

    given = _collect(ctx, params)
    base = TrainConfig.from_yaml(config_file) if config_file else TrainConfig()
    cfg = base.replace(**{k: v for k, v in given.items() if k != "overwrite"}, resume=False, overwrite=False,
                       stop_after=None)
    run_lr_find(cfg, out_dir=lr_find_out, overwrite=overwrite)
