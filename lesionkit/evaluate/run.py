"""``lesionkit evaluate``: a run (or an ensemble of runs / snapshots) on a split → ``RUN/eval/TAG/``.

Output folder (written to a temporary sibling and moved into place; refused when it exists unless ``overwrite``)::

    predictions.parquet      sample_id, label (class index), label_name, prob_<class> per class, and for the binary
                             target y_<name> (0/1) and prob_<name>
    val_predictions.parquet  the same for the validation fold the decision threshold was chosen on
    metrics.json             every number (no NaN: undefined → null + reason), inputs with hashes, config
    roc.png pr.png confusion.png reliability.png groups_<column>.png
    report.html              self-contained (figures embedded)

The decision threshold of the binary target is chosen on the run's validation-fold predictions (each run's own fold
for ensembles of runs: out-of-fold predictions averaged per sample) and applied unchanged to the evaluated split.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lesionkit import __version__
from lesionkit.console import info, out, warn
from lesionkit.errors import InputError, UsageError
from lesionkit.fsio import (
    atomic_dir,
    check_output,
    file_sha256,
    write_json_atomic,
    write_text_atomic,
)

__all__ = ["EvalConfig", "binary_positive_classes", "default_tag", "run_evaluate"]

KIND = "lesionkit.metrics"
SCHEMA_VERSION = 1


@dataclass
class EvalConfig:
    """Every ``lesionkit evaluate`` option (see the CLI help for meanings)."""

    run: Path
    checkpoint: str = "best"  # best | last | snapshots | snapshots:K | PATH
    manifest: Path | None = None  # default: the manifest the run was trained on
    splits: Path | None = None  # default: the run's splits file
    split: str = "test"  # test | val (ignored with ids)
    ids: Path | None = None  # a file of sample ids (one per line, or a csv/parquet with sample_id)
    tta: str = "none"
    ensemble: list[Path] = field(default_factory=list)
    ensemble_method: str = "mean"
    threshold: str = "youden"  # youden | gmean | sensitivity:X | fixed:X
    positive: str = "auto"  # binary target: auto | none | comma-separated class names
    pauc_min_tpr: float = 0.8
    group_by: str = "auto"
    min_group_size: int = 10
    n_boot: int = 1000
    seed: int = 0
    n_bins: int = 15
    batch_size: int = 64
    workers: int = 2
    device: str = "auto"
    amp: str = "auto"
    cache: bool = True
    plots: bool = True  # False: no PNGs (the report then has tables only)
    tag: str | None = None
    out: Path | None = None  # default RUN/eval/TAG
    overwrite: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, list) else v) for k, v in d.items()}


def default_tag(cfg: EvalConfig) -> str:
    """``<split|ids-stem>-<checkpoint>-<tta>`` (+ ``-ens<N><method>`` for run ensembles)."""
    split = f"ids-{cfg.ids.stem}" if cfg.ids is not None else cfg.split
    ck = (cfg.checkpoint.replace(":", "") if cfg.checkpoint in ("best", "last", "snapshots")
          or cfg.checkpoint.startswith("snapshots:") else Path(cfg.checkpoint).stem)
    tag = f"{split}-{ck}-{cfg.tta}"
    if cfg.ensemble:
        tag += f"-ens{len(cfg.ensemble) + 1}{cfg.ensemble_method}"
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in tag)


def binary_positive_classes(classes: list[str], kind: str, positive: str) -> list[str] | None:
    """Classes forming the binary target: binary model → its positive class; multi-class ``auto`` → classes named
    as malignant diagnoses (:data:`lesionkit.data.targets.MALIGNANT_DIAGNOSES`; None when there are none);
    ``none`` → None; else the listed classes."""
    from lesionkit.data.targets import MALIGNANT_DIAGNOSES

    p = positive.strip()
    if p.lower() == "none":
        return None
    if p.lower() == "auto":
        if kind == "binary":
            return [classes[1]]
        pos = [c for c in classes if c.strip().lower() in MALIGNANT_DIAGNOSES]
        return pos if pos and len(pos) < len(classes) else None
    names = [x.strip() for x in p.split(",") if x.strip()]
    bad = [x for x in names if x not in classes]
    if bad:
        raise UsageError(f"--positive: {', '.join(bad)} not among the model's classes", hint=f"classes: {', '.join(classes)}")
    if len(names) == len(classes):
        raise UsageError("--positive lists every class: the binary target would have no negatives")
    return names


# ------------------------------------------------------------------------------------------------- helpers


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a torch device", hint="auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda but CUDA is not available here", hint="use --device cpu")
    return dev


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"--ids file not found: {path}", hint="one sample_id per line, or a csv/parquet with sample_id")
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
    elif path.suffix == ".csv":
        df = pd.read_csv(path, dtype=str)
    else:
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    if "sample_id" not in df.columns:
        raise InputError(f"{path} has no sample_id column (columns: {', '.join(map(str, df.columns))})")
    return df["sample_id"].astype(str).tolist()


def _load_members(run_dir: Path, which: str) -> list[Any]:
    from lesionkit.evaluate.predict import Member, resolve_checkpoints
    from lesionkit.models.checkpoint import load_checkpoint

    if not run_dir.is_dir():
        raise InputError(f"run directory not found: {run_dir}", hint="train one with `lesionkit train ... --run-dir DIR`")
    return [Member(run_dir, p, kind, load_checkpoint(p), file_sha256(p)) for p, kind in resolve_checkpoints(run_dir, which)]


def _check_compatible(members: list[Any]) -> None:
    ref = members[0]
    problems = []
    for m in members[1:]:
        if list(m.ckpt["classes"]) != list(ref.ckpt["classes"]):
            problems.append(f"{m.path}: classes {m.ckpt['classes']} differ from {ref.path}: {ref.ckpt['classes']}")
        if (m.ckpt.get("target") or {}).get("name") != (ref.ckpt.get("target") or {}).get("name"):
            problems.append(f"{m.path}: target {(m.ckpt.get('target') or {}).get('name')!r} differs from "
                            f"{(ref.ckpt.get('target') or {}).get('name')!r}")
    if problems:
        raise InputError("ensemble members are not compatible", details=problems,
                         hint="ensemble runs trained on the same target and class list")


def _rows_for(m: Any, ids: list[str], what: str) -> np.ndarray:
    pos = pd.Series(np.arange(len(m.df)), index=m.df["sample_id"].astype(str).to_numpy())
    unknown = [i for i in ids if i not in pos.index]
    if unknown:
        raise InputError(f"{len(unknown)} {what} id(s) are not in the manifest {m.path} (e.g. {', '.join(unknown[:5])})",
                         hint="use the manifest the splits were made for")
    return pos.loc[ids].to_numpy(dtype=np.int64)


def _usable(rows: np.ndarray, y: np.ndarray, m: Any, image_col: str, what: str) -> np.ndarray:
    no_img = m.df[image_col].isna().to_numpy()[rows] if image_col in m.df.columns else np.zeros(len(rows), bool)
    no_y = y[rows] < 0
    if no_img.any() or no_y.any():
        warn(f"{what}: left out {int(no_img.sum())} row(s) without an image and {int((no_y & ~no_img).sum())} without a label")
    keep = rows[~no_img & ~no_y]
    if len(keep) == 0:
        raise InputError(f"{what}: no rows with both an image and a label to evaluate")
    return keep


class _Scores:
    """Probabilities of one evaluated row set: per member ``[M, n, C]`` and the combined ``[n, C]``."""

    def __init__(self, member_probs: np.ndarray, method: str, pos_idx: list[int] | None):
        from lesionkit.evaluate.predict import combine

        self.members = member_probs
        self.proba = combine(member_probs, method) if len(member_probs) > 1 else member_probs[0].astype(np.float64)
        self.binary = None
        if pos_idx is not None:
            mb = member_probs[:, :, pos_idx].sum(axis=2)
            self.binary = combine(mb, method) if len(mb) > 1 else mb[0].astype(np.float64)


# ----------------------------------------------------------------------------------------------------- run


def run_evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate (see the module docstring); returns a summary with the output folder and headline numbers."""

    from lesionkit.data.targets import TargetSpec, resolve_target
    from lesionkit.evaluate.bootstrap import ClusterBootstrap, cluster_codes
    from lesionkit.evaluate.groups import derive_group, parse_group_by, source_column
    from lesionkit.evaluate.predict import (
        ENSEMBLE_METHODS,
        TTA_MODES,
        build_eval_dataset,
        predict_dataset,
    )
    from lesionkit.evaluate.report import render_report
    from lesionkit.evaluate.summary import (
        BinaryTarget,
        evaluate_predictions,
        write_figures,
    )
    from lesionkit.evaluate.thresholds import choose_threshold, parse_threshold_method
    from lesionkit.manifest.io import read_manifest
    from lesionkit.models.checkpoint import model_from_checkpoint
    from lesionkit.splits.io import read_splits

    t_start = time.perf_counter()
    # ---- validate flags up front
    problems = []
    if cfg.tta not in TTA_MODES:
        problems.append(f"--tta {cfg.tta!r}: choose one of {', '.join(TTA_MODES)}")
    if cfg.ensemble_method not in ENSEMBLE_METHODS:
        problems.append(f"--ensemble-method {cfg.ensemble_method!r}: choose one of {', '.join(ENSEMBLE_METHODS)}")
    if cfg.ids is None and cfg.split not in ("test", "val"):
        problems.append(f"--split {cfg.split!r}: choose test or val (or pass --ids FILE)")
    if not 0 < cfg.pauc_min_tpr < 1:
        problems.append(f"--pauc-min-tpr {cfg.pauc_min_tpr}: must be in (0, 1)")
    if cfg.n_boot < 0 or cfg.batch_size < 1 or cfg.workers < 0 or cfg.min_group_size < 0 or cfg.n_bins < 1:
        problems.append("--n-boot, --workers, --min-group-size must be ≥ 0; --batch-size, --n-bins ≥ 1")
    if problems:
        raise UsageError("invalid options", details=problems, hint="see `lesionkit evaluate --help`")
    thr_method, thr_param = parse_threshold_method(cfg.threshold)
    group_names, explicit_groups = parse_group_by(cfg.group_by)
    device = _device(cfg.device)
    amp = ("bf16" if device.type == "cuda" else "off") if cfg.amp == "auto" else cfg.amp
    if amp not in ("off", "bf16", "fp16"):
        raise UsageError(f"--amp {cfg.amp!r}: choose auto, off, bf16 or fp16")

    run_dir = Path(cfg.run)
    runs = [run_dir, *[Path(r) for r in cfg.ensemble]]
    if len({r.resolve() for r in runs}) != len(runs):
        raise UsageError("--ensemble repeats a run", hint="list each run once")
    members_by_run = [_load_members(r, cfg.checkpoint) for r in runs]
    members = [m for ms in members_by_run for m in ms]
    _check_compatible(members)
    ref = members[0].ckpt
    tcfg = dict(ref.get("config") or {})
    tag = cfg.tag or default_tag(cfg)
    out_dir = Path(cfg.out) if cfg.out is not None else run_dir / "eval" / tag
    check_output(out_dir, cfg.overwrite)

    manifest_path = Path(cfg.manifest or tcfg.get("manifest") or "")
    if not str(manifest_path) or not manifest_path.is_file():
        raise InputError(f"manifest not found: {manifest_path or '(the run records none)'}",
                         hint="pass --manifest (the manifest the run was trained on)")
    m = read_manifest(manifest_path)
    target_rec = ref.get("target") or {}
    spec = TargetSpec.from_dict(target_rec) if target_rec else None
    target_name = spec.name if spec else str(tcfg.get("target", "label"))
    spec2, y_all = resolve_target(m, target_name)
    classes = [str(c) for c in ref["classes"]]
    if list(spec2.classes) != classes:
        raise InputError(f"target `{target_name}` of {manifest_path} has classes {spec2.classes}, the checkpoint {classes}",
                         hint="evaluate on the manifest the run was trained on")
    kind = spec2.kind
    pos_classes = binary_positive_classes(classes, kind, cfg.positive)
    pos_idx = None if pos_classes is None else [classes.index(c) for c in pos_classes]
    binary_name = (spec2.name if kind == "binary" else ("malignant" if cfg.positive == "auto" else "+".join(pos_classes or [])))
    image_col = str((ref.get("data_cfg") or {}).get("image_col") or tcfg.get("image_col") or "image_path")

    splits = None
    splits_path = Path(cfg.splits or tcfg.get("splits") or "")
    need_splits = cfg.ids is None or (pos_idx is not None and thr_method != "fixed")
    if need_splits:
        if not str(splits_path) or not splits_path.is_file():
            raise InputError(f"splits file not found: {splits_path or '(the run records none)'}",
                             hint="pass --splits (the run's splits.json), or --ids FILE with --threshold fixed:0.5")
        splits = read_splits(splits_path, m.fingerprint())
    if cfg.ids is not None:
        ids = _read_ids(cfg.ids)
        split_name = f"ids:{cfg.ids}"
    elif cfg.split == "test":
        ids = [str(i) for i in splits.test]
        if not ids:
            raise InputError(f"{splits_path} has no test ids", hint="evaluate --split val, or make splits with a test set (`lesionkit split --test-frac ...`)")
        split_name = "test"
    else:
        ids = [str(i) for i in splits.fold(int(tcfg.get("fold", 0)))["val"]]
        split_name = f"val (fold {int(tcfg.get('fold', 0))})"
    rows = _usable(_rows_for(m, ids, split_name), y_all, m, image_col, split_name)

    # ---- group columns (validated before inference)
    sub = m.df.iloc[rows].reset_index(drop=True)
    groups_df = pd.DataFrame(index=sub.index)
    skipped: dict[str, str] = {}
    missing_explicit = []
    for g in group_names:
        try:
            groups_df[g] = derive_group(sub, g).to_numpy()
        except KeyError:
            msg = f"column `{source_column(g)}` not in the manifest"
            if explicit_groups:
                missing_explicit.append(f"--group-by {g}: {msg}")
            skipped[g] = msg
    if missing_explicit:
        have = [c for c in m.df.columns if m.df[c].nunique(dropna=True) <= 50]
        raise UsageError("group columns not found", details=missing_explicit,
                         hint=f"columns with few values here: {', '.join(map(str, have))}; ita_category / fitzpatrick_est "
                              "come from `lesionkit label-skintone`, hair_frac / ink_frac from `lesionkit prep`")
    for g in list(groups_df.columns):
        if (groups_df[g] == "missing").all():
            skipped[g] = "no values for the evaluated rows"
            groups_df = groups_df.drop(columns=g)

    # ---- inference
    models_by_run = [[model_from_checkpoint(mm.ckpt).to(device).eval() for mm in ms] for ms in members_by_run]
    all_models = [x for ms in models_by_run for x in ms]
    binary_model = kind == "binary"
    n_cls = len(classes)
    cl = device.type == "cuda"
    info(f"evaluating {len(all_models)} model(s) on {len(rows)} {split_name} rows (tta {cfg.tta}, device {device})")
    ds = build_eval_dataset(m, rows, y_all[rows], ref, use_cache=cfg.cache)
    probs, t_pred = predict_dataset(all_models, ds, n_cls, binary=binary_model, tta=cfg.tta, device=device,
                                    batch_size=cfg.batch_size, workers=cfg.workers, amp=amp, channels_last=cl,
                                    description=f"predict {split_name}")
    test = _Scores(probs, cfg.ensemble_method, pos_idx)
    y = y_all[rows]

    # ---- threshold on validation (out-of-fold per run)
    threshold = None
    val_frame = None
    t_val = 0.0
    if pos_idx is not None:
        if thr_method == "fixed":
            from lesionkit.evaluate.thresholds import ThresholdChoice

            threshold = ThresholdChoice("fixed", float(thr_param), "fixed (--threshold)", 0, 0, None, None)
        else:
            per_sample: dict[str, list[float]] = {}
            val_rows_all: dict[str, int] = {}
            for r, ms, mods in zip(runs, members_by_run, models_by_run, strict=True):
                rc = dict(ms[0].ckpt.get("config") or {})
                fold = int(rc.get("fold", 0))
                vids = [str(i) for i in splits.fold(fold)["val"]]
                vrows = _usable(_rows_for(m, vids, f"{r.name} val fold {fold}"), y_all, m, image_col, f"{r.name} val")
                if cfg.ids is None and cfg.split != "test" and len(runs) == 1:
                    vp = probs  # evaluating the run's own val fold: reuse
                else:
                    vds = build_eval_dataset(m, vrows, y_all[vrows], ms[0].ckpt, use_cache=cfg.cache)
                    vp, dt = predict_dataset(mods, vds, n_cls, binary=binary_model, tta=cfg.tta, device=device,
                                             batch_size=cfg.batch_size, workers=cfg.workers, amp=amp,
                                             channels_last=cl, description=f"predict {r.name} val")
                    t_val += dt
                vs = _Scores(vp, cfg.ensemble_method, pos_idx)
                for i, rr in enumerate(vrows):
                    sid = str(m.df["sample_id"].iat[rr])
                    per_sample.setdefault(sid, []).append(float(vs.binary[i]))
                    val_rows_all[sid] = int(rr)
            vid = list(per_sample)
            vscore = np.array([np.mean(per_sample[s]) for s in vid])
            vrow = np.array([val_rows_all[s] for s in vid], dtype=np.int64)
            vy = np.isin(y_all[vrow], pos_idx).astype(int)
            on = "val" if cfg.ids is not None or cfg.split == "test" else "val (the evaluated split itself)"
            threshold = choose_threshold(vy, vscore, thr_method, thr_param, chosen_on=on)
            val_frame = pd.DataFrame({"sample_id": vid, "label": y_all[vrow].astype(np.int64),
                                      f"y_{binary_name}": vy, f"prob_{binary_name}": vscore})
            overlap = set(vid) & set(sub["sample_id"].astype(str))
            if overlap and (cfg.ids is not None or cfg.split == "test"):
                warn(f"{len(overlap)} evaluated sample(s) are also validation samples the threshold was chosen on")

    # ---- metrics
    codes, unit = cluster_codes(sub)
    boot = ClusterBootstrap(codes, n_boot=cfg.n_boot, seed=cfg.seed)
    binary = None
    if pos_idx is not None:
        binary = BinaryTarget(np.isin(y, pos_idx).astype(int), test.binary, binary_name, pos_classes)
    from lesionkit.evaluate.metrics import confusion_matrix, multiclass_metrics, roc_auc

    member_cms = [confusion_matrix(y, p.argmax(1), n_cls) for p in probs]
    t0 = time.perf_counter()
    metrics = evaluate_predictions(y=y, proba=test.proba, classes=classes, boot=boot, binary=binary,
                                   threshold=threshold, groups=groups_df if len(groups_df.columns) else None,
                                   min_tpr=cfg.pauc_min_tpr, min_group_size=cfg.min_group_size, n_bins=cfg.n_bins,
                                   member_confusions=member_cms,
                                   probabilities=cfg.ensemble_method == "mean" or len(all_models) == 1)
    t_metrics = time.perf_counter() - t0
    member_rows = []
    for mm, p in zip(members, probs, strict=True):
        mmet = multiclass_metrics(y, p, classes, per_class=False)
        member_rows.append({"run": mm.run_name, "checkpoint": mm.path.name, "accuracy": mmet["accuracy"],
                            "auc_macro_ovr": mmet["auc_macro_ovr"],
                            "binary_auc": None if pos_idx is None else roc_auc(np.isin(y, pos_idx), p[:, pos_idx].sum(1))})
    metrics.update({
        "kind": KIND, "schema_version": SCHEMA_VERSION, "lesionkit_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "classes": classes, "target": spec2.to_dict(),
        "inputs": {"run": str(run_dir), "runs": [str(r) for r in runs], "split": split_name, "n": len(rows),
                   "manifest": {"path": str(manifest_path.resolve()), "fingerprint": m.fingerprint(),
                                "sha256": file_sha256(manifest_path)},
                   "splits": None if splits is None else {"path": str(splits_path.resolve()),
                                                          "sha256": file_sha256(splits_path),
                                                          "fold": int(tcfg.get("fold", 0))},
                   "ids_file": None if cfg.ids is None else {"path": str(cfg.ids), "sha256": file_sha256(cfg.ids)},
                   "checkpoints": [mm.describe() for mm in members]},
        "config": {**cfg.to_dict(), "tag": tag, "device_used": str(device), "amp_used": amp,
                   "group_bins": {"age_bin": "<30, 30-44, 45-59, 60-74, 75+ years from age_approx (left-closed)",
                                  "hair": "hair_frac > 0", "ink": "ink_frac > 0"}},
        "bootstrap": {**boot.describe(), "unit": unit},
        "groups_skipped": skipped,
        "members": member_rows,
        "timings": {"predict_s": round(t_pred, 3), "predict_val_s": round(t_val, 3), "metrics_s": round(t_metrics, 3),
                    "images_per_s": round(len(rows) / t_pred, 2) if t_pred > 0 else None},
    })
    if not metrics["groups_skipped"]:
        metrics.pop("groups_skipped")

    # ---- outputs
    pred = pd.DataFrame({"sample_id": sub["sample_id"].astype(str).to_numpy(), "label": y.astype(np.int64),
                         "label_name": [classes[i] for i in y]})
    for k, c in enumerate(classes):
        pred[f"prob_{c}"] = test.proba[:, k].astype(np.float64)
    if binary is not None:
        pred[f"y_{binary_name}"] = binary.y.astype(np.int64)
        if f"prob_{binary_name}" not in pred.columns:
            pred[f"prob_{binary_name}"] = binary.score
    pred["pred"] = test.proba.argmax(1).astype(np.int64)
    with atomic_dir(out_dir) as tmp:
        pred.to_parquet(tmp / "predictions.parquet", index=False)
        if val_frame is not None:
            val_frame.to_parquet(tmp / "val_predictions.parquet", index=False)
        figs, gfigs = ({}, {}) if not cfg.plots else write_figures(
            tmp, y=y, proba=test.proba, classes=classes, metrics=metrics, binary=binary, min_tpr=cfg.pauc_min_tpr)
        write_json_atomic(tmp / "metrics.json", metrics)
        title = f"lesionkit evaluation: {run_dir.name} · {split_name} · {tag}"
        write_text_atomic(tmp / "report.html", render_report(metrics, figs, gfigs, title=title))
    total = time.perf_counter() - t_start
    summary = {"out_dir": str(out_dir), "report": str(out_dir / "report.html"), "n": len(rows),
               "accuracy": metrics["multiclass"]["accuracy"], "auc_macro_ovr": metrics["multiclass"]["auc_macro_ovr"],
               "seconds": round(total, 2)}
    if binary is not None:
        summary.update({"binary_auc": metrics["binary"]["auc"], "pauc": metrics["binary"]["pauc"],
                        "threshold": metrics["binary"]["threshold"]["threshold"]})
    _print_summary(summary, metrics)
    return summary


def _print_summary(summary: dict[str, Any], metrics: dict[str, Any]) -> None:
    from rich.table import Table

    from lesionkit.evaluate.report import fmt

    t = Table(title=f"evaluation ({summary['n']} samples)", show_header=True)
    t.add_column("metric")
    t.add_column("value")
    t.add_column("95% CI")
    mc = metrics["multiclass"]["ci"]
    for k in ("accuracy", "balanced_accuracy", "auc_macro_ovr"):
        e = mc.get(k) or {}
        t.add_row(k, fmt(e.get("estimate")), f"{fmt(e.get('ci_low'))} – {fmt(e.get('ci_high'))}")
    b = metrics.get("binary")
    if b:
        for k in ("auc", "pauc"):
            e = b["ci"].get(k) or {}
            t.add_row(f"{b['name']} {k}", fmt(e.get("estimate"), 4), f"{fmt(e.get('ci_low'), 4)} – {fmt(e.get('ci_high'), 4)}")
        for k in ("sensitivity", "specificity"):
            e = b["at_threshold"]["ci"].get(k) or {}
            t.add_row(f"{k} @ {b['threshold']['method']} {b['threshold']['threshold']:.3f}", fmt(e.get("estimate")),
                      f"{fmt(e.get('ci_low'))} – {fmt(e.get('ci_high'))}")
    out.print(t)
    out.print(f"report: {summary['report']}", highlight=False, markup=False)
