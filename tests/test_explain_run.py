"""`lesionkit gradcam` end to end on a tiny synthetic run (checkpoint written directly, no training engine)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import invoke


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lesionkit.data.targets import resolve_target
    from lesionkit.manifest.build import build_manifest
    from lesionkit.manifest.importers import ImportOptions
    from lesionkit.manifest.io import read_manifest
    from lesionkit.models.checkpoint import save_checkpoint
    from lesionkit.models.factory import ModelSpec, create_model, data_config
    from lesionkit.splits.run import run_split
    from lesionkit.synthetic import generate

    root = tmp_path_factory.mktemp("gc")
    generate(root / "syn", n=40, size=72, seed=3, workers=1)
    build_manifest(ImportOptions(format="synthetic", source=root / "syn", out=root / "manifest.parquet"))
    run_split(root / "manifest.parquet", root / "splits.json", n_folds=2, seed=0, test_frac=0.0)
    torch.manual_seed(0)
    spec = ModelSpec(name="resnet10t", num_outputs=2, img_size=64)
    net = create_model(spec).eval()
    dcfg = data_config(net)
    dcfg.update({"aug": "seeds", "cache_size": 79, "image_col": "image_path", "eval_crop_fraction": 416 / 512})
    target, _ = resolve_target(read_manifest(root / "manifest.parquet"), "label")
    run = root / "run"
    cfg = {"manifest": str(root / "manifest.parquet"), "splits": str(root / "splits.json"), "fold": 0,
           "image_col": "image_path", "aug": "seeds", "cache": True, "img_size": 64}
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    save_checkpoint(run / "checkpoints" / "best.pt", model=net, spec=spec, classes=target.classes,
                    target=target.to_dict(), data_cfg=dcfg, meta_encoder=None, config=cfg, epoch=1, step=1,
                    best_metric=None)
    return run


def test_gradcam_cli_writes_everything(runner, tiny_run: Path) -> None:
    r = invoke(runner, "gradcam", tiny_run, "--select", "errors,random,most-confident", "--n", "3", "--tag", "t1",
               "--batch-size", "8")
    assert r.exit_code == 0, r.output
    out = tiny_run / "gradcam" / "t1"
    df = pd.read_parquet(out / "gradcam.parquet")
    assert len(df) > 5
    for c in ("sample_id", "pred_class", "prob_pred", "correct", "cam_class", "lesion_energy", "ink_energy",
              "hair_energy", "ruler_energy", "fov_border_energy", "lesion_area", "occl_correct", "selected"):
        assert c in df.columns
    assert df["lesion_area"].notna().all()  # the synthetic ground-truth lesion masks are used
    e = df["lesion_energy"].dropna()  # NaN only where the (random-init) CAM is all zero
    assert len(e) > len(df) // 2 and e.between(0, 1).all()
    assert (df["cam_class"] == df["pred_class"]).all()
    assert np.allclose(df[["prob_benign", "prob_malignant"]].sum(axis=1), 1, atol=1e-5)
    rec = json.loads((out / "gradcam.json").read_text())
    assert rec["layer"] == "backbone.layer4" and rec["mask_sources"]["lesion"] == {"truth": len(df)}
    assert {r["correct"] for r in rec["summary_by_correct"]} >= {"all"}
    assert rec["occlusion"]["n"] == len(df)
    assert rec["geometry"] == {"img_size": 64, "crop_fraction": 416 / 512, "square_size": 79}
    for sel in ("random", "most-confident"):
        assert (out / f"contact_{sel}.png").is_file()
        assert len(list((out / "overlays" / sel).glob("*.png"))) == 3
    cams = np.load(out / "cams.npz")
    assert cams["gradcam"].shape[0] == len(df) and cams["gradcam_selected_full"].shape[1:] == (64, 64)
    # the stored low-resolution maps reproduce the statistics
    from lesionkit.explain.cam import upsample_normalize

    i = int(np.flatnonzero(df["lesion_energy"].notna())[0])
    full = upsample_normalize(torch.from_numpy(cams["gradcam"][i:i + 1]), (64, 64))
    assert float(full.max()) == pytest.approx(1.0, abs=1e-5)

    # existing output refused without --overwrite; accepted with it
    r = invoke(runner, "gradcam", tiny_run, "--tag", "t1", "--n", "2")
    assert r.exit_code == 1 and "exists" in r.output
    r = invoke(runner, "gradcam", tiny_run, "--tag", "t1", "--n", "2", "--select", "ids", "--ids",
               f"{df['sample_id'][0]},{df['sample_id'][1]}", "--class", "malignant", "--no-occlusion", "--overwrite",
               "--method", "gradcam++")
    assert r.exit_code == 0, r.output
    df2 = pd.read_parquet(out / "gradcam.parquet")
    assert (df2["cam_class"] == "malignant").all() and "occl_correct" not in df2.columns
    assert sorted(p.stem for p in (out / "overlays" / "ids").glob("*.png")) == sorted(df["sample_id"][:2])


def test_gradcam_cli_errors(runner, tiny_run: Path) -> None:
    r = invoke(runner, "gradcam", tiny_run, "--layer", "backbone.layer7", "--tag", "e1")
    assert r.exit_code == 2 and "backbone.layer4" in r.output and "backbone.layer3" in r.output
    r = invoke(runner, "gradcam", tiny_run, "--class", "nevus", "--tag", "e2")
    assert r.exit_code == 2 and "benign" in r.output
    r = invoke(runner, "gradcam", tiny_run, "--select", "worst", "--tag", "e3")
    assert r.exit_code == 2 and "errors" in r.output
    r = invoke(runner, "gradcam", tiny_run.parent / "nope", "--tag", "e4")
    assert r.exit_code == 1
    assert not (tiny_run / "gradcam" / "e1").exists()
