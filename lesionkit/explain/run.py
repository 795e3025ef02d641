"""``lesionkit gradcam``: CAMs of a trained run on a split, with attention statistics, occlusion test and pictures.

Inputs: a run directory (``config.yaml`` + ``checkpoints/{best,last}.pt`` written by ``lesionkit train``); the
manifest, splits and fold default to the run's. Images are preprocessed exactly like evaluation (the
checkpoint's ``data_cfg``: fit to the cache square, the preset's centre crop, resize, normalise).

One pass over every image of the split computes the predictions, the CAMs (each ``--method``; the first one
feeds the statistics), the energy fractions on the lesion / hair / ink / ruler / sticker masks and the FOV border
(:mod:`lesionkit.explain.stats`) and the occlusion test (:mod:`lesionkit.explain.occlusion`). Then each
``--select`` picks ``--n`` images, drawn as panels and a contact sheet (guided Grad-CAM for those only).

Masks, per region, first available of (``--mask-source auto``): ground truth — the official lesion masks of
``--lesion-masks DIR`` (file name ``--lesion-mask-pattern``), the synthetic dataset's ``<kind>_mask_path``
columns — then prep's detections (``prep_<kind>_mask_path``, written by ``lesionkit prep --save-masks``).
Masks in the original picture's geometry are mapped through prep's ``crop_box`` when the model reads prep images,
and prep masks are used for original images only when prep did not crop.

Outputs (``RUN/gradcam/TAG/``, written atomically, refused if present without ``--overwrite``):
``gradcam.parquet`` (one row per image: prediction, probabilities, explained class, ``<region>_energy`` /
``<region>_area``, ``peak_in_lesion``, occlusion results, ``selected``), ``cams.npz`` (low-resolution maps of every
image per method, full-resolution maps of the selected images), ``overlays/<selection>/<sample_id>.png``,
``contact_<selection>.png``, ``gradcam.json`` (inputs, layer, mask sources, summaries by class and by correct /
incorrect, occlusion summary, timings).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lesionkit.console import info, out, track, warn
from lesionkit.errors import InputError, UsageError
from lesionkit.explain.stats import KINDS, MASK_OF, InputGeometry
from lesionkit.explain.target_layers import spatial_layers

__all__ = ["SELECTIONS", "ExplainDataset", "GradcamConfig", "MaskPlan", "run_gradcam", "select_samples"]

SELECTIONS = ("errors", "correct", "random", "most-confident", "ids")
SPLITS = ("val", "test", "train", "all")
MASK_SOURCES = ("auto", "truth", "prep", "none")
TRUTH_MASKS = ("lesion", "hair", "ink", "ruler", "fov")  # <kind>_mask_path columns of `lesionkit synth`
PREP_MASKS = ("lesion", "hair", "ink", "ruler", "sticker", "fov")  # prep_<kind>_mask_path columns


@dataclass
class GradcamConfig:
    """Every option of ``lesionkit gradcam`` (see the CLI help for each)."""

    run_dir: str
    checkpoint: str = "best"  # best | last | PATH
    manifest: str = ""  # default: the run's
    splits: str = ""  # default: the run's
    split: str = "val"  # val | test | train | all
    fold: int | None = None  # default: the run's
    methods: tuple[str, ...] = ("gradcam", "gradcam++")
    guided: bool = True
    layer: str = ""
    select: tuple[str, ...] = ("errors", "correct")
    n: int = 16
    ids: tuple[str, ...] = ()
    cam_class: str = "pred"  # pred | true | CLASS NAME
    seed: int = 0
    lesion_masks: str = ""
    lesion_mask_pattern: str = "{sample_id}_segmentation.png"
    mask_source: str = "auto"
    occlusion: bool = True
    occlusion_fill: str = "mean"
    batch_size: int = 32
    workers: int = 0
    device: str = "auto"
    limit: int | None = None
    tag: str = ""
    overwrite: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- masks


@dataclass
class MaskPlan:
    """Where region ``k`` of row ``i`` comes from: ``paths[k][i]`` (None = unavailable) and ``modes[k][i]``:
    ``same`` (the model's picture at any resolution) or ``prep`` (original geometry, mapped through prep's crop)."""

    paths: dict[str, list[str | None]]
    modes: dict[str, list[str]]
    sources: dict[str, dict[str, int]]  # kind -> {source name: rows}
    prep_geo: list[tuple[tuple[int, int, int, int], tuple[int, int], tuple[int, int]] | None]


def _col(df: pd.DataFrame, name: str) -> list[str | None]:
    if name not in df.columns:
        return [None] * len(df)
    return [None if pd.isna(v) or not str(v) else str(v) for v in df[name].tolist()]


def _prep_geometry(df: pd.DataFrame) -> list[Any]:
    need = ("crop_box", "orig_height", "orig_width", "out_height", "out_width")
    if any(c not in df.columns for c in need):
        return [None] * len(df)
    res: list[Any] = []
    for box, oh, ow, h, w in zip(*(df[c].tolist() for c in need), strict=True):
        if any(pd.isna(v) for v in (box, oh, ow, h, w)):
            res.append(None)
            continue
        b = tuple(int(float(v)) for v in str(box).split(","))
        res.append((b, (int(oh), int(ow)), (int(h), int(w))) if len(b) == 4 else None)
    return res


def plan_masks(df: pd.DataFrame, image_col: str, mask_source: str, lesion_dir: str = "",
               lesion_pattern: str = "{sample_id}_segmentation.png") -> MaskPlan:
    """Decide the mask file of every region of every row (see the module docstring for the order)."""
    import os

    n = len(df)
    prep_images = image_col.startswith("prep")
    prep_geo = _prep_geometry(df) if prep_images or "crop_box" in df.columns else [None] * n
    truth: dict[str, list[str | None]] = {k: _col(df, f"{k}_mask_path") for k in TRUTH_MASKS}
    if lesion_dir:
        d = Path(lesion_dir)
        official: list[str | None] = []
        for sid in df["sample_id"].astype(str).tolist():
            try:
                p = d / lesion_pattern.format(sample_id=sid, image_id=sid)
            except (KeyError, IndexError, ValueError) as e:
                raise UsageError(f"--lesion-mask-pattern {lesion_pattern!r}: {e}",
                                 hint="use {sample_id} as the placeholder, e.g. '{sample_id}_segmentation.png'") from None
            official.append(str(p) if os.path.isfile(p) else None)
        truth["lesion"] = [o or t for o, t in zip(official, truth["lesion"], strict=True)]
        n_off = sum(o is not None for o in official)
        if n_off == 0:
            warn(f"--lesion-masks {lesion_dir}: no file matches {lesion_pattern!r} for any of the {n} images "
                 f"(e.g. {d / lesion_pattern.format(sample_id=str(df['sample_id'].iloc[0]), image_id='')})")
    prep = {k: _col(df, f"prep_{k}_mask_path") for k in PREP_MASKS}
    full_crop = []
    for g in prep_geo:
        full_crop.append(g is not None and g[0] == (0, 0, g[1][1], g[1][0]))
    paths: dict[str, list[str | None]] = {}
    modes: dict[str, list[str]] = {}
    sources: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        mk = MASK_OF[kind]
        p_out: list[str | None] = []
        m_out: list[str] = []
        counts: dict[str, int] = {}
        for i in range(n):
            cands: list[tuple[str, str | None, str]] = []
            t = truth.get(mk, [None] * n)[i]
            pr = prep.get(mk, [None] * n)[i]
            truth_ok = t is not None and (not prep_images or prep_geo[i] is not None)
            truth_c = ("truth", t if truth_ok else None, "prep" if prep_images else "same")
            prep_ok = pr is not None and (prep_images or full_crop[i])
            prep_c = ("prep", pr if prep_ok else None, "same")
            if mask_source == "auto":
                cands = [truth_c, prep_c]
            elif mask_source == "truth":
                cands = [truth_c]
            elif mask_source == "prep":
                cands = [prep_c]
            chosen = next(((name, p, mode) for name, p, mode in cands if p is not None), None)
            if chosen is None:
                p_out.append(None)
                m_out.append("same")
                counts["none"] = counts.get("none", 0) + 1
            else:
                name, p, mode = chosen
                if name == "truth" and mk == "lesion" and lesion_dir and p is not None and Path(p).parent == Path(lesion_dir):
                    name = "official"
                p_out.append(p)
                m_out.append(mode)
                counts[name] = counts.get(name, 0) + 1
        paths[kind], modes[kind], sources[kind] = p_out, m_out, counts
    return MaskPlan(paths=paths, modes=modes, sources=sources, prep_geo=prep_geo)


def _read_mask(path: str) -> np.ndarray | None:
    import cv2

    m = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    return m


# ----------------------------------------------------------------------------------------------- dataset


class ExplainDataset(torch.utils.data.Dataset):
    """Rows of a manifest selection as model inputs plus their region masks at the input geometry.

    Items: ``image`` float32 ``[3, S, S]`` (the evaluation transform), ``target`` int64, ``index`` int, ``meta``
    float32 ``[dim]``, ``masks`` float32 ``[len(KINDS), S, S]`` soft masks, ``available`` bool ``[len(KINDS)]``.
    """

    def __init__(self, paths: list[str], targets: np.ndarray, transform: Any, geometry: InputGeometry,
                 plan: MaskPlan | None, meta: np.ndarray | None = None, ids: list[str] | None = None) -> None:
        self.paths = paths
        self.targets = np.asarray(targets, np.int64)
        self.transform = transform
        self.geometry = geometry
        self.plan = plan
        self.meta = meta
        self.ids = ids

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> np.ndarray:
        from lesionkit.prep.decode import DecodeError, decode_image

        sq = self.geometry.square_size
        try:
            img, _ = decode_image(self.paths[i], min_side=2 * sq if sq else None)
        except DecodeError as e:
            sid = f" (sample {self.ids[i]})" if self.ids else ""
            raise InputError(f"cannot decode {self.paths[i]}{sid}: {e.reason} ({e.message})",
                             hint="fix or remove the row (`lesionkit manifest validate MANIFEST --check-files`)") from None
        return img

    def masks(self, i: int, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        from lesionkit.explain.stats import fit_mask_to_image, map_through_prep

        s = self.geometry.img_size
        out = np.zeros((len(KINDS), s, s), np.float32)
        avail = np.zeros(len(KINDS), bool)
        if self.plan is None:
            return out, avail
        for k, kind in enumerate(KINDS):
            p = self.plan.paths[kind][i]
            if p is None:
                continue
            m = _read_mask(p)
            if m is None:
                continue
            if self.plan.modes[kind][i] == "prep":
                g = self.plan.prep_geo[i]
                m = None if g is None else map_through_prep(m, *g)
                if m is None:
                    continue
            m = fit_mask_to_image(m, hw)
            if m is None:
                continue
            soft = self.geometry.mask(m)
            out[k] = 1.0 - soft if kind == "fov_border" else soft
            avail[k] = True
        return out, avail

    def __getitem__(self, i: int) -> dict[str, Any]:
        from lesionkit.data.cache import fit_square

        img = self.load(i)
        hw = img.shape[:2]
        if self.geometry.square_size:
            img = fit_square(img, self.geometry.square_size)
        x = self.transform(img)
        masks, avail = self.masks(i, hw)
        meta = torch.zeros(0) if self.meta is None else torch.from_numpy(self.meta[i].copy())
        return {"image": x, "target": torch.tensor(int(self.targets[i])), "index": i, "meta": meta,
                "masks": torch.from_numpy(masks), "available": torch.from_numpy(avail)}


# ----------------------------------------------------------------------------------------------- selection


def select_samples(df: pd.DataFrame, how: str, n: int, seed: int = 0, ids: list[str] | tuple[str, ...] = ()) -> list[int]:
    """Row positions of ``df`` (needs ``sample_id``, ``correct``, ``prob_pred``) chosen by ``how``:

    ``errors`` — wrong predictions, most confident first; ``correct`` — a seeded random sample of the correct
    ones; ``random`` — a seeded random sample; ``most-confident`` — highest predicted-class probability first;
    ``ids`` — the given sample ids in order (all of them; ``n`` is ignored)."""
    if how == "ids":
        pos = {s: i for i, s in enumerate(df["sample_id"].astype(str))}
        return [pos[s] for s in ids]
    rng = np.random.default_rng(seed)
    if how == "errors":
        cand = np.flatnonzero(~df["correct"].to_numpy(bool))
        order = np.argsort(-df["prob_pred"].to_numpy()[cand], kind="stable")
        return cand[order][:n].tolist()
    if how == "correct":
        cand = np.flatnonzero(df["correct"].to_numpy(bool))
        return sorted(rng.choice(cand, size=min(n, len(cand)), replace=False).tolist()) if len(cand) else []
    if how == "random":
        return sorted(rng.choice(len(df), size=min(n, len(df)), replace=False).tolist())
    if how == "most-confident":
        return np.argsort(-df["prob_pred"].to_numpy(), kind="stable")[:n].tolist()
    raise UsageError(f"--select {how!r}", hint=f"choose from: {', '.join(SELECTIONS)}")


# ----------------------------------------------------------------------------------------------- run


def _validate(cfg: GradcamConfig) -> None:
    from lesionkit.explain.cam import METHODS
    from lesionkit.explain.occlusion import FILLS

    p = []
    for s in cfg.select:
        if s not in SELECTIONS:
            p.append(f"--select {s!r}: expected one of {', '.join(SELECTIONS)}")
    if "ids" in cfg.select and not cfg.ids:
        p.append("--select ids needs --ids ID1,ID2,...")
    if cfg.ids and "ids" not in cfg.select:
        p.append("--ids is given but --select does not include ids")
    for m in cfg.methods:
        if m not in METHODS:
            p.append(f"--method {m!r}: expected one of {', '.join(METHODS)}")
    if not cfg.methods:
        p.append("--method: give at least one method")
    if cfg.split not in SPLITS:
        p.append(f"--split {cfg.split!r}: expected one of {', '.join(SPLITS)}")
    if cfg.mask_source not in MASK_SOURCES:
        p.append(f"--mask-source {cfg.mask_source!r}: expected one of {', '.join(MASK_SOURCES)}")
    if cfg.occlusion_fill not in FILLS:
        p.append(f"--occlusion-fill {cfg.occlusion_fill!r}: expected one of {', '.join(FILLS)}")
    if cfg.n < 1:
        p.append(f"--n must be >= 1 (got {cfg.n})")
    if cfg.batch_size < 1:
        p.append(f"--batch-size must be >= 1 (got {cfg.batch_size})")
    if cfg.lesion_masks and not Path(cfg.lesion_masks).is_dir():
        p.append(f"--lesion-masks {cfg.lesion_masks}: not a folder")
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        p.append(f"--device {cfg.device!r}: expected auto, cpu or cuda")
    if p:
        raise UsageError("invalid gradcam options", details=p, hint="see `lesionkit gradcam --help`")


def _checkpoint_path(run_dir: Path, checkpoint: str) -> Path:
    if checkpoint in ("best", "last"):
        p = run_dir / "checkpoints" / f"{checkpoint}.pt"
        if checkpoint == "best" and not p.is_file() and (run_dir / "checkpoints" / "last.pt").is_file():
            warn(f"{p} not found; using checkpoints/last.pt")
            p = run_dir / "checkpoints" / "last.pt"
        return p
    return Path(checkpoint)


def _run_config(run_dir: Path) -> dict[str, Any]:
    import yaml

    p = run_dir / "config.yaml"
    if not p.is_file():
        raise InputError(f"{run_dir} is not a training run (no config.yaml)",
                         hint="pass a folder written by `lesionkit train` (runs/NAME)")
    d = yaml.safe_load(p.read_text(encoding="utf-8"))
    if not isinstance(d, dict):
        raise InputError(f"{p} does not hold a mapping of options", hint="re-create the run with `lesionkit train`")
    return d


def _class_index(cam_class: str, classes: list[str]) -> int | None:
    if cam_class in ("pred", "true"):
        return None
    if cam_class in classes:
        return classes.index(cam_class)
    raise UsageError(f"--class {cam_class!r} is not a class of this model",
                     hint=f"use pred, true or one of: {', '.join(classes)}")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine", hint="use --device cpu")
    return torch.device(name)


def _rows_for_split(m: Any, splits_path: str, split: str, fold: int) -> np.ndarray:
    from lesionkit.splits.io import read_splits

    df = m.df
    if split == "all":
        return np.arange(len(df))
    if not splits_path:
        raise UsageError(f"--split {split} needs a splits file; the run has none", hint="pass --splits or --split all")
    sp = read_splits(splits_path, m.fingerprint())
    ids = sp.test if split == "test" else sp.fold(fold)[split]
    if split == "test" and not ids:
        raise InputError(f"{splits_path} has no test list", hint="use --split val, or re-run `lesionkit split --test-frac`")
    pos = pd.Series(np.arange(len(df)), index=df["sample_id"].astype(str).to_numpy())
    missing = [i for i in ids if str(i) not in pos.index]
    if missing:
        raise InputError(f"{splits_path}: {len(missing)} {split} id(s) are not in the manifest (e.g. {missing[:5]})",
                         hint="re-run `lesionkit split` on this manifest")
    return pos.loc[[str(i) for i in ids]].to_numpy(np.int64)


def run_gradcam(cfg: GradcamConfig) -> dict[str, Any]:
    """Run the whole stage (see the module docstring); returns the content of ``gradcam.json``."""
    from lesionkit.data.targets import TargetSpec, resolve_target
    from lesionkit.data.transforms import eval_crop_fraction
    from lesionkit.evaluate.predict import eval_transform
    from lesionkit.explain.cam import (
        CAM,
        deprocess,
        guided_backprop,
        guided_gradcam,
        guided_model,
        upsample_normalize,
    )
    from lesionkit.explain.occlusion import occlude, occlusion_regions, probabilities
    from lesionkit.explain.stats import energy_fractions
    from lesionkit.fsio import check_output, file_sha256
    from lesionkit.manifest.io import read_manifest
    from lesionkit.models.checkpoint import load_checkpoint, model_from_checkpoint

    t_start = time.perf_counter()
    _validate(cfg)
    run_dir = Path(cfg.run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run directory not found: {run_dir}", hint="train one with `lesionkit train ... --run-dir RUN`")
    rcfg = _run_config(run_dir)
    tag = cfg.tag or cfg.split
    out_dir = run_dir / "gradcam" / tag
    check_output(out_dir, cfg.overwrite)
    ckpt_path = _checkpoint_path(run_dir, cfg.checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt)
    classes = [str(c) for c in ckpt["classes"]]
    target = TargetSpec.from_dict(ckpt["target"]) if ckpt.get("target") else None
    dcfg = dict(ckpt.get("data_cfg") or {})
    tcfg = dict(ckpt.get("config") or {})
    cam_idx = _class_index(cfg.cam_class, classes)

    manifest_path = cfg.manifest or _resolve_rel(rcfg.get("manifest", ""), run_dir)
    splits_path = cfg.splits or (_resolve_rel(rcfg.get("splits", ""), run_dir) if not cfg.manifest else cfg.splits)
    fold = int(cfg.fold if cfg.fold is not None else rcfg.get("fold", 0))
    if not manifest_path:
        raise UsageError("no manifest: the run's config.yaml names none", hint="pass --manifest")
    m = read_manifest(manifest_path)
    image_col = str(dcfg.get("image_col") or tcfg.get("image_col") or rcfg.get("image_col") or "image_path")
    if image_col not in m.df.columns:
        raise InputError(f"the model reads images from column {image_col!r}, which {manifest_path} lacks",
                         hint="pass the manifest the run was trained on (or one prepared the same way)")
    rows = _rows_for_split(m, splits_path, cfg.split, fold)
    if cfg.limit:
        rows = rows[: cfg.limit]
    df = m.df.iloc[rows].reset_index(drop=True)
    tname = target.name if target is not None else "label"
    spec_t, y_all = resolve_target(m, tname)
    y = y_all[rows]
    if list(spec_t.classes) != classes:
        raise InputError(f"the manifest's {tname} classes {spec_t.classes} differ from the model's {classes}",
                         hint="pass the manifest the run was trained on")
    has_img = df[image_col].notna().to_numpy()
    if (~has_img).any():
        warn(f"{int((~has_img).sum())} row(s) without an image in {image_col} left out")
    keep = has_img
    df, y = df[keep].reset_index(drop=True), y[keep]
    ids = df["sample_id"].astype(str).tolist()
    if len(df) == 0:
        raise InputError(f"no images in --split {cfg.split} of {manifest_path}", hint="check the split and the manifest")
    missing_ids = [i for i in cfg.ids if i not in set(ids)]
    if missing_ids:
        raise UsageError(f"--ids: {len(missing_ids)} id(s) are not in --split {cfg.split}: {', '.join(missing_ids[:10])}",
                         hint="pick ids from this split (or --split all)")
    if cam_idx is None and cfg.cam_class == "true" and (y < 0).any():
        raise InputError(f"--class true: {int((y < 0).sum())} image(s) have no {tname} label",
                         hint="use --class pred or a class name")

    meta = None
    if ckpt.get("meta_encoder"):
        from lesionkit.data.meta import MetaEncoder

        meta = MetaEncoder.from_dict(ckpt["meta_encoder"]).transform(df)
    # the same preprocessing as lesionkit evaluate: fit to the training cache's square, then the eval transform
    transform, cache_size = eval_transform(dcfg)
    img_size = int(dcfg["input_size"][-1])
    preset, mean, std = str(dcfg.get("aug", "none")), tuple(dcfg["mean"]), tuple(dcfg["std"])
    frac = float(dcfg.get("eval_crop_fraction", eval_crop_fraction(preset)))
    geometry = InputGeometry(img_size=img_size, crop_fraction=frac, square_size=cache_size)
    plan = None if cfg.mask_source == "none" else plan_masks(df, image_col, cfg.mask_source, cfg.lesion_masks,
                                                             cfg.lesion_mask_pattern)
    paths = [str(p) for p in df[image_col].tolist()]
    ds = ExplainDataset(paths, y, transform, geometry, plan, meta, ids)
    device = _device(cfg.device)
    model.to(device)
    cam = CAM(model, cfg.layer or None, cfg.methods)
    primary = cfg.methods[0]
    info(f"gradcam: {len(ds)} images of --split {cfg.split} ({manifest_path}), model {model.spec.name} "
         f"({ckpt_path.name}), layer {cam.layer}, methods {', '.join(cfg.methods)}, explaining class {cfg.cam_class}, "
         f"{img_size}px on {device}")
    if plan is not None:
        info("masks: " + "; ".join(f"{k} " + ", ".join(f"{s} {c}" for s, c in v.items()) for k, v in plan.sources.items()))

    from lesionkit.data.dataset import make_loader

    loader = make_loader(ds, batch_size=cfg.batch_size, workers=cfg.workers, shuffle=False)
    n_cls = len(classes)
    probs_all = np.zeros((len(ds), n_cls), np.float32)
    explained = np.zeros(len(ds), np.int64)
    scores = np.zeros(len(ds), np.float32)
    low: dict[str, list[np.ndarray]] = {mth: [] for mth in cfg.methods}
    energy = np.full((len(ds), len(KINDS)), np.nan)
    area = np.full((len(ds), len(KINDS)), np.nan)
    peak_in_lesion = np.full(len(ds), np.nan)
    occ: dict[str, np.ndarray] = {}
    if cfg.occlusion:
        occ = {"bg_probs": np.zeros((len(ds), n_cls), np.float32), "les_probs": np.zeros((len(ds), n_cls), np.float32),
               "region_mask": np.zeros(len(ds), bool), "region_frac": np.zeros(len(ds), np.float32)}
    t_cam = 0.0
    for batch in track(loader, total=math.ceil(len(ds) / cfg.batch_size), description="gradcam", unit="batch"):
        x = batch["image"].to(device)
        idx = batch["index"].numpy()
        metab = batch["meta"].to(device) if meta is not None else None
        t0 = time.perf_counter()
        if cam_idx is not None:
            cls = torch.full((len(idx),), cam_idx, dtype=torch.long, device=device)
        elif cfg.cam_class == "true":
            cls = batch["target"].to(device)
        else:
            cls = None
        res = cam(x, cls, metab)
        pr = probabilities(res.logits)
        if cls is None:
            cls = pr.argmax(1)
        up = upsample_normalize(res.maps[primary], (x.shape[-2], x.shape[-1]))
        masks = batch["masks"].to(device)
        av = batch["available"].to(device)
        e, a = energy_fractions(up, masks, av)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_cam += time.perf_counter() - t0
        probs_all[idx] = pr.cpu().numpy()
        explained[idx] = cls.cpu().numpy()
        scores[idx] = res.scores.cpu().numpy()
        for mth in cfg.methods:
            low[mth].append(res.maps[mth].cpu().numpy().astype(np.float32))
        energy[idx], area[idx] = e.cpu().numpy(), a.cpu().numpy()
        flat = up.flatten(1).argmax(1)
        les = masks[:, 0].flatten(1).gather(1, flat[:, None])[:, 0]
        peak_in_lesion[idx] = torch.where(av[:, 0], (les > 0.5).double(), torch.full_like(les, float("nan"), dtype=torch.double)).cpu().numpy()
        if cfg.occlusion:
            region = occlusion_regions(masks[:, 0], av[:, 0])
            with torch.no_grad():
                xb = occlude(x, region, cfg.occlusion_fill)
                xl = occlude(x, ~region, cfg.occlusion_fill)
                lb = model(xb) if metab is None else model(xb, metab)
                ll = model(xl) if metab is None else model(xl, metab)
            occ["bg_probs"][idx] = probabilities(lb).cpu().numpy()
            occ["les_probs"][idx] = probabilities(ll).cpu().numpy()
            occ["region_mask"][idx] = (av[:, 0] & (masks[:, 0] > 0.5).flatten(1).any(1)).cpu().numpy()
            occ["region_frac"][idx] = region.float().mean(dim=(1, 2)).cpu().numpy()
    cam.close()
    h_low, w_low = next(iter(low.values()))[0].shape[-2:]
    if h_low * w_low <= 4:
        warn(f"layer {cam.layer} gives a {h_low}x{w_low} map at {img_size}px: the CAMs cannot localise anything; "
             f"pass --layer with an earlier stage (valid: {', '.join(spatial_layers(model)[-12:])})")

    # ---- table
    pred = probs_all.argmax(1)
    res_df = pd.DataFrame({"sample_id": ids, "label": pd.array([int(t) if t >= 0 else None for t in y], dtype="Int16")})
    res_df["true_class"] = [classes[int(t)] if t >= 0 else None for t in y]
    res_df["pred"] = pred.astype(np.int16)
    res_df["pred_class"] = [classes[int(p)] for p in pred]
    for j, c in enumerate(classes):
        res_df[f"prob_{c}"] = probs_all[:, j]
    res_df["prob_pred"] = probs_all[np.arange(len(ds)), pred]
    res_df["prob_true"] = np.where(y >= 0, probs_all[np.arange(len(ds)), np.clip(y, 0, None)], np.nan).astype(np.float32)
    res_df["correct"] = pd.array([bool(p == t) if t >= 0 else None for p, t in zip(pred, y)], dtype="boolean")
    res_df["cam_class"] = [classes[int(c)] for c in explained]
    res_df["cam_score"] = scores
    for j, k in enumerate(KINDS):
        res_df[f"{k}_energy"] = energy[:, j].astype(np.float32)
        res_df[f"{k}_area"] = area[:, j].astype(np.float32)
    res_df["peak_in_lesion"] = pd.array([None if np.isnan(v) else bool(v) for v in peak_in_lesion], dtype="boolean")
    occ_summary = None
    if cfg.occlusion:
        bg_pred = occ["bg_probs"].argmax(1)
        les_pred = occ["les_probs"].argmax(1)
        res_df["occl_region"] = np.where(occ["region_mask"], "lesion_mask", "centre_third")
        res_df["occl_region_frac"] = occ["region_frac"]
        res_df["occl_pred_class"] = [classes[int(p)] for p in bg_pred]
        res_df["occl_prob_pred"] = occ["bg_probs"][np.arange(len(ds)), pred]
        res_df["occl_correct"] = pd.array(np.where(y >= 0, bg_pred == y, False), dtype="boolean")
        res_df["lesion_only_pred_class"] = [classes[int(p)] for p in les_pred]
        res_df["lesion_only_correct"] = pd.array(np.where(y >= 0, les_pred == y, False), dtype="boolean")
        lab = y >= 0
        counts = np.bincount(y[lab], minlength=n_cls) if lab.any() else np.zeros(n_cls)
        occ_summary = {
            "n": int(lab.sum()), "fill": cfg.occlusion_fill,
            "region": {"lesion_mask": int(occ["region_mask"].sum()), "centre_third": int((~occ["region_mask"]).sum())},
            "accuracy_full": _mean(pred[lab] == y[lab]),
            "accuracy_background_only": _mean(bg_pred[lab] == y[lab]),
            "accuracy_lesion_only": _mean(les_pred[lab] == y[lab]),
            "majority_class_accuracy": float(counts.max() / max(1, counts.sum())),
            "prediction_changed_background_only": _mean(bg_pred != pred),
            "prediction_changed_lesion_only": _mean(les_pred != pred),
            "mean_prob_pred_full": _mean(res_df["prob_pred"].to_numpy()),
            "mean_prob_pred_background_only": _mean(res_df["occl_prob_pred"].to_numpy()),
            "mean_region_fraction": _mean(occ["region_frac"]),
        }

    # ---- selections
    sel_rows: dict[str, list[int]] = {}
    for how in cfg.select:
        sel_rows[how] = select_samples(res_df.assign(correct=res_df["correct"].fillna(False)), how, cfg.n, cfg.seed,
                                       list(cfg.ids))
        if not sel_rows[how]:
            warn(f"--select {how}: no image qualifies in this split")
    res_df["selected"] = [",".join(h for h, r in sel_rows.items() if i in set(r)) or None for i in range(len(ds))]
    res_df["selected"] = res_df["selected"].astype("string")

    from lesionkit.explain.overlay import contact_sheet, panel, write_png
    from lesionkit.fsio import atomic_dir, write_json_atomic

    lowres = {mth: np.concatenate(v, 0) if v else np.zeros((0, 1, 1), np.float32) for mth, v in low.items()}
    # images and full-resolution maps of the selected images
    chosen = sorted({i for r in sel_rows.values() for i in r})
    gm = None
    n_guided_relu = None
    if cfg.guided and chosen:
        gm, n_guided_relu = guided_model(model)
        if n_guided_relu == 0:
            warn(f"{model.spec.name} has no nn.ReLU modules: guided backprop is the plain input gradient")
    full: dict[str, np.ndarray] = {mth: np.zeros((len(chosen), img_size, img_size), np.float16) for mth in cfg.methods}
    pictures: dict[int, dict[str, Any]] = {}
    mean_t = torch.tensor(mean)[:, None, None]
    std_t = torch.tensor(std)[:, None, None]
    for j0 in range(0, len(chosen), cfg.batch_size):
        part = chosen[j0:j0 + cfg.batch_size]
        items = [ds[i] for i in part]
        xb = torch.stack([it["image"] for it in items])
        for mth in cfg.methods:
            f = upsample_normalize(torch.from_numpy(lowres[mth][part]), (img_size, img_size)).numpy()
            full[mth][j0:j0 + len(part)] = f.astype(np.float16)
        gg = None
        if gm is not None:
            cls_t = torch.from_numpy(explained[part])
            metab = torch.stack([it["meta"] for it in items]).to(device) if meta is not None else None
            gb = guided_backprop(gm, xb.to(device), cls_t.to(device), metab).cpu()
            cam01 = torch.from_numpy(full[primary][j0:j0 + len(part)].astype(np.float32))
            gg = guided_gradcam(gb, cam01)
        for k, i in enumerate(part):
            img = ((xb[k] * std_t + mean_t).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            pictures[i] = {"image": img, "lesion": items[k]["masks"][0].numpy() if bool(items[k]["available"][0]) else None,
                           "guided": deprocess(gg[k]).numpy() if gg is not None else None,
                           "cam": full[primary][j0 + k].astype(np.float32)}

    by_true = _summaries(res_df, "true_class")
    by_correct = _summaries(res_df.assign(correct=res_df["correct"].map({True: "correct", False: "incorrect"})), "correct")
    by_pred = _summaries(res_df, "pred_class")
    elapsed = time.perf_counter() - t_start
    record = {
        "kind": "lesionkit.gradcam", "version": 1,
        "config": _plain(asdict(cfg)),
        "inputs": {"run_dir": str(run_dir.resolve()), "checkpoint": str(ckpt_path.resolve()),
                   "checkpoint_sha256": file_sha256(ckpt_path), "manifest": str(Path(manifest_path).resolve()),
                   "manifest_fingerprint": m.fingerprint(), "splits": str(splits_path) if splits_path else None,
                   "split": cfg.split, "fold": fold, "image_col": image_col},
        "model": {"name": model.spec.name, "classes": classes, "target": target.to_dict() if target else None},
        "layer": cam.layer, "methods": list(cfg.methods), "stats_method": primary,
        "explained_class": cfg.cam_class, "guided_relu_modules": n_guided_relu,
        "geometry": asdict(geometry), "preprocessing": {"aug": preset, "mean": list(mean), "std": list(std)},
        "n_images": len(ds),
        "mask_sources": plan.sources if plan is not None else None,
        "summary_by_correct": by_correct, "summary_by_true_class": by_true, "summary_by_pred_class": by_pred,
        "occlusion": occ_summary,
        "selections": {h: [ids[i] for i in r] for h, r in sel_rows.items()},
        "timing": {"seconds_total": elapsed, "seconds_cam": t_cam,
                   "cam_images_per_s": len(ds) / t_cam if t_cam > 0 else None, "device": str(device)},
    }
    with atomic_dir(out_dir) as tmp:
        res_df.to_parquet(tmp / "gradcam.parquet", index=False)
        npz: dict[str, Any] = {"sample_id": np.array(ids), "explained_class": explained,
                               "selected_sample_id": np.array([ids[i] for i in chosen], dtype=str),
                               "layer": np.array(cam.layer), "input_size": np.array(img_size)}
        for mth in cfg.methods:
            key = mth.replace("+", "p")
            npz[key] = lowres[mth]
            npz[f"{key}_selected_full"] = full[mth]
        np.savez_compressed(tmp / "cams.npz", **npz)
        for how, r in sel_rows.items():
            (tmp / "overlays" / how).mkdir(parents=True, exist_ok=True)
            tiles, caps = [], []
            for i in r:
                pic = pictures[i]
                row = res_df.iloc[i]
                true = row["true_class"] if row["true_class"] is not None else "?"
                lines = [f"{ids[i]}  pred {row['pred_class']} p={row['prob_pred']:.2f}  true {true}",
                         f"{primary} of {row['cam_class']} @ {cam.layer}: " + _energy_text(row)]
                panel_img = panel(pic["image"], pic["cam"], lines, pic["lesion"], pic["guided"])
                write_png(tmp / "overlays" / how / f"{_safe(ids[i])}.png", panel_img)
                from lesionkit.explain.overlay import outline as _outline
                from lesionkit.explain.overlay import overlay as _ov

                tiles.append(_outline(_ov(pic["image"], pic["cam"]), pic["lesion"]))
                mark = "" if pd.isna(row["correct"]) else ("ok" if bool(row["correct"]) else "WRONG")
                caps.append([f"{ids[i][:22]}", f"{row['pred_class'][:12]} {row['prob_pred']:.2f} / {str(true)[:12]} {mark}",
                             _energy_text(row, short=True)])
            sheet = contact_sheet(tiles, caps, f"{how} ({len(r)}): {primary}, {cfg.cam_class} class, "
                                              f"{cam.layer}")
            write_png(tmp / f"contact_{how}.png", sheet)
        write_json_atomic(tmp / "gradcam.json", _plain(record))
    _print_summary(by_correct, occ_summary, out_dir)
    return record


def _resolve_rel(p: str, run_dir: Path) -> str:
    """A path from a run's config.yaml: as written when it exists (relative to the working directory, as
    ``lesionkit train`` saw it), else relative to the folder holding ``runs/`` (the run's grandparent)."""
    if not p or Path(p).is_absolute() or Path(p).exists():
        return p
    alt = run_dir.resolve().parent.parent / p
    return str(alt) if alt.exists() else p


def _mean(a: np.ndarray) -> float | None:
    a = np.asarray(a, dtype=np.float64)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else None


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)


def _energy_text(row: pd.Series, short: bool = False) -> str:
    parts = []
    labels = (("lesion", "L"), ("ink", "I"), ("hair", "H"), ("ruler", "R"), ("fov_border", "F")) if short else \
        (("lesion", "lesion"), ("ink", "ink"), ("hair", "hair"), ("ruler", "ruler"), ("fov_border", "fov border"))
    for k, lab in labels:
        v = row.get(f"{k}_energy")
        if v is not None and not pd.isna(v):
            parts.append(f"{lab}{v:.2f}" if short else f"{lab} {v:.2f}")
    return (" " if short else ", ").join(parts) if parts else "no masks"


def _summaries(df: pd.DataFrame, by: str) -> list[dict[str, Any]]:
    from lesionkit.explain.stats import summarize

    d = df.copy()
    d[by] = d[by].astype("object")
    d = d[d[by].notna()] if by != "all" else d
    return summarize(d, by)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _print_summary(by_correct: list[dict[str, Any]], occ: dict[str, Any] | None, out_dir: Path) -> None:
    from rich.table import Table

    kinds = [k for k in KINDS if by_correct and by_correct[0].get(f"{k}_n")]
    t = Table("images", "n", *[f"{k} energy (area)" for k in kinds],
              title="CAM energy fractions (mean over images with the mask; area = chance level)")
    for r in by_correct:
        cells = []
        for k in kinds:
            e, a = r.get(f"{k}_energy"), r.get(f"{k}_area")
            cells.append("-" if e is None else f"{e:.3f} ({a:.3f})")
        t.add_row(str(r["correct"]), str(r["n"]), *cells)
    out.print(t)
    if occ:
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        out.print(f"occlusion ({occ['region']['lesion_mask']} lesion masks, {occ['region']['centre_third']} centre thirds): "
                  f"accuracy full {f(occ['accuracy_full'])}, background only {f(occ['accuracy_background_only'])}, "
                  f"lesion only {f(occ['accuracy_lesion_only'])} (majority class {f(occ['majority_class_accuracy'])})")
    out.print(f"wrote {out_dir}")
