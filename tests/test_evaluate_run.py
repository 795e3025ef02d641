"""`lesionkit evaluate` end to end on synthetic images with tiny random models (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm

from tests.conftest import invoke

N_BOOT = "40"


@pytest.fixture(autouse=True, scope="module")
def _evaluate_registered():
    """Until lesionkit/cli/app.py registers `evaluate` (two lines in _register), add it here; a no-op after."""
    from lesionkit.cli import evaluate
    from lesionkit.cli.app import app

    if not any(c.name == "evaluate" for c in app.registered_commands):
        app.command("evaluate", help=evaluate.evaluate.__doc__)(evaluate.evaluate)


def _make_run(root: Path, name: str, manifest: Path, splits: Path, target: str, seed: int, fold: int = 0,
              snapshots: int = 0) -> Path:
    from lesionkit.data.targets import resolve_target
    from lesionkit.manifest.io import read_manifest
    from lesionkit.models.checkpoint import save_checkpoint
    from lesionkit.models.factory import ModelSpec, create_model, data_config

    m = read_manifest(manifest)
    spec_t, _ = resolve_target(m, target)
    run = root / name
    torch.manual_seed(seed)
    spec = ModelSpec(name="test_resnet", num_outputs=spec_t.num_outputs, img_size=32)
    dcfg = {**data_config(create_model(spec)), "aug": "none", "cache_size": 40, "image_col": "image_path"}
    config = {"manifest": str(manifest), "splits": str(splits), "fold": fold, "target": target, "cache": False,
              "image_col": "image_path"}
    names = ["best.pt", "last.pt"] + [f"snapshot_cycle{k}.pt" for k in range(1, snapshots + 1)]
    for i, fname in enumerate(names):
        net = create_model(spec)
        with torch.no_grad():  # a different, non-trivial head per checkpoint so predictions differ
            net.head.weight.normal_(0, 0.5 + 0.1 * i)
            net.head.bias.normal_(0, 0.3)
        save_checkpoint(run / "checkpoints" / fname, model=net, spec=spec, classes=spec_t.classes,
                        target=spec_t.to_dict(), data_cfg=dcfg, meta_encoder=None, config=config, epoch=1, step=1,
                        best_metric=None)
    return run


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    from lesionkit.manifest.build import build_manifest
    from lesionkit.manifest.importers import ImportOptions
    from lesionkit.splits.run import run_split
    from lesionkit.synthetic import generate

    root = tmp_path_factory.mktemp("evaluate")
    generate(root / "syn", n=120, size=48, seed=0, workers=1)
    build_manifest(ImportOptions(format="synthetic", source=root / "syn", out=root / "m.parquet"))
    run_split(root / "m.parquet", root / "splits.json", n_folds=3, seed=0, test_frac=0.25)
    man, spl = root / "m.parquet", root / "splits.json"
    return {"root": root, "manifest": man, "splits": spl,
            "run_a": _make_run(root, "run_a", man, spl, "label", seed=1, snapshots=2),
            "run_b": _make_run(root, "run_b", man, spl, "label", seed=2, fold=1),
            "run_bin": _make_run(root, "run_bin", man, spl, "malignant", seed=3)}


def _reference_probs(run: Path, ids: list[str], manifest: Path, ckpt_name: str = "best.pt", tta: bool = False) -> np.ndarray:
    """Independent inference: PIL decode, fit_square, eval transform, one forward per image (and per D4 view)."""
    from PIL import Image

    from lesionkit.data.cache import fit_square
    from lesionkit.data.transforms import build_transform
    from lesionkit.manifest.io import read_manifest
    from lesionkit.models.checkpoint import load_checkpoint, model_from_checkpoint

    ck = load_checkpoint(run / "checkpoints" / ckpt_name)
    model = model_from_checkpoint(ck)
    dc = ck["data_cfg"]
    tf = build_transform(dc["aug"], dc["input_size"][1], False, tuple(dc["mean"]), tuple(dc["std"]))
    df = read_manifest(manifest).df.set_index("sample_id").loc[ids]
    x = torch.stack([tf(fit_square(np.asarray(Image.open(p).convert("RGB")), dc["cache_size"])) for p in df["image_path"]])
    views = [x]
    if tta:
        views = [x, torch.flip(x, [3]), torch.flip(x, [2]), torch.rot90(x, 2, [2, 3]), x.transpose(2, 3),
                 torch.rot90(x, 1, [2, 3]), torch.rot90(x, -1, [2, 3]), torch.rot90(x, 2, [2, 3]).transpose(2, 3)]
    with torch.no_grad():
        ps = []
        for v in views:
            z = model(v)
            ps.append(torch.softmax(z, 1) if z.shape[1] > 1 else torch.cat([1 - torch.sigmoid(z), torch.sigmoid(z)], 1))
    return torch.stack(ps).mean(0).numpy()


def _no_nan(path: Path) -> dict:
    def bad(c):
        raise AssertionError(f"{path} holds {c}")
    return json.loads(path.read_text(), parse_constant=bad)


def test_evaluate_end_to_end(data, runner):
    run = data["run_a"]
    r = invoke(runner, "--no-progress", "evaluate", str(run), "--split", "test", "--n-boot", N_BOOT, "--workers", "0",
               "--group-by", "sex,age_bin,fitzpatrick,anatom_site", "--min-group-size", "3")
    assert r.exit_code == 0, r.output
    out = run / "eval" / "test-best-none"
    assert "report.html" in r.output
    for f in ("predictions.parquet", "val_predictions.parquet", "metrics.json", "report.html", "roc.png", "pr.png",
              "confusion.png", "reliability.png", "groups_sex.png", "groups_age_bin.png"):
        assert (out / f).is_file(), f
    met = _no_nan(out / "metrics.json")
    splits = json.loads(data["splits"].read_text())
    pred = pd.read_parquet(out / "predictions.parquet")
    assert sorted(pred["sample_id"]) == sorted(splits["test"])
    # probabilities = an independent forward pass
    ref = _reference_probs(run, pred["sample_id"].tolist(), data["manifest"])
    np.testing.assert_allclose(pred[["prob_benign", "prob_malignant"]].to_numpy(), ref, atol=1e-5)
    # metrics.json numbers = sklearn on predictions.parquet
    y, p = pred["label"].to_numpy(), pred[["prob_benign", "prob_malignant"]].to_numpy()
    mc = met["multiclass"]
    assert abs(mc["accuracy"] - skm.accuracy_score(y, p.argmax(1))) < 1e-9
    assert abs(mc["balanced_accuracy"] - skm.balanced_accuracy_score(y, p.argmax(1))) < 1e-9
    b = met["binary"]
    assert b["positive_classes"] == ["malignant"]
    assert abs(b["auc"] - skm.roc_auc_score(pred["y_malignant"], pred["prob_malignant"])) < 1e-9
    assert abs(b["average_precision"] - skm.average_precision_score(pred["y_malignant"], pred["prob_malignant"])) < 1e-9
    # the threshold was chosen on the validation fold (fold 0), never on test
    val = pd.read_parquet(out / "val_predictions.parquet")
    assert sorted(val["sample_id"]) == sorted(splits["folds"][0]["val"])
    assert not set(val["sample_id"]) & set(pred["sample_id"])
    fpr, tpr, thr = skm.roc_curve(val["y_malignant"], val["prob_malignant"], drop_intermediate=False)
    assert b["threshold"]["threshold"] == thr[1:][np.argmax((tpr - fpr)[1:])]
    assert b["threshold"]["chosen_on"] == "val"
    t = b["threshold"]["threshold"]
    pp = pred["prob_malignant"] >= t
    assert abs(b["at_threshold"]["sensitivity"] - skm.recall_score(pred["y_malignant"], pp)) < 1e-9
    # provenance
    inp = met["inputs"]
    from lesionkit.fsio import file_sha256
    from lesionkit.manifest.io import read_manifest

    assert inp["checkpoints"][0]["sha256"] == file_sha256(run / "checkpoints" / "best.pt")
    assert inp["manifest"]["fingerprint"] == read_manifest(data["manifest"]).fingerprint()
    assert inp["split"] == "test" and inp["n"] == len(pred)
    assert set(met["groups"]) == {"sex", "age_bin", "fitzpatrick", "anatom_site"}
    assert met["bootstrap"]["unit"] == "patient_id" and met["bootstrap"]["n_boot"] == int(N_BOOT)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6 and "<script" not in html
    # refuses to overwrite, then replaces with --overwrite
    r2 = invoke(runner, "evaluate", str(run), "--n-boot", "0", "--workers", "0")
    assert r2.exit_code == 1 and "exists" in r2.output
    r3 = invoke(runner, "evaluate", str(run), "--n-boot", "0", "--workers", "0", "--overwrite", "--group-by", "none", "--no-plots")
    assert r3.exit_code == 0, r3.output
    assert "groups" in _no_nan(out / "metrics.json") and not _no_nan(out / "metrics.json")["groups"]


def test_tta_ensembles_and_snapshots(data, runner):
    a, b = data["run_a"], data["run_b"]
    common = ["--n-boot", "0", "--workers", "0", "--group-by", "none", "--no-plots"]
    fixed = ["--threshold", "fixed:0.5"]  # no validation inference where it is not under test
    r = invoke(runner, "evaluate", str(a), "--tta", "flips8", *common, *fixed)
    assert r.exit_code == 0, r.output
    pred = pd.read_parquet(a / "eval" / "test-best-flips8" / "predictions.parquet")
    ref = _reference_probs(a, pred["sample_id"].tolist(), data["manifest"], tta=True)
    np.testing.assert_allclose(pred[["prob_benign", "prob_malignant"]].to_numpy(), ref, atol=1e-5)

    r = invoke(runner, "evaluate", str(a), "--checkpoint", "snapshots", *common, *fixed)
    assert r.exit_code == 0, r.output
    ps = pd.read_parquet(a / "eval" / "test-snapshots-none" / "predictions.parquet")
    ids = ps["sample_id"].tolist()
    mean = np.mean([_reference_probs(a, ids, data["manifest"], f"snapshot_cycle{k}.pt") for k in (1, 2)], axis=0)
    np.testing.assert_allclose(ps[["prob_benign", "prob_malignant"]].to_numpy(), mean, atol=1e-5)
    assert len(_no_nan(a / "eval" / "test-snapshots-none" / "metrics.json")["inputs"]["checkpoints"]) == 2
    # the last K snapshots only
    r = invoke(runner, "evaluate", str(a), "--checkpoint", "snapshots:1", *common, *fixed)
    assert r.exit_code == 0, r.output
    p1 = pd.read_parquet(a / "eval" / "test-snapshots1-none" / "predictions.parquet")
    ref1 = _reference_probs(a, p1["sample_id"].tolist(), data["manifest"], "snapshot_cycle2.pt")
    np.testing.assert_allclose(p1[["prob_benign", "prob_malignant"]].to_numpy(), ref1, atol=1e-5)
    r = invoke(runner, "evaluate", str(a), "--checkpoint", "snapshots:3", *common, *fixed)
    assert r.exit_code != 0 and "only 2 snapshot" in r.output

    for method in ("mean", "rank"):
        r = invoke(runner, "evaluate", str(a), "--ensemble", str(b), "--ensemble-method", method, *common,
                   *(fixed if method == "mean" else []))
        assert r.exit_code == 0, r.output
        out = a / "eval" / f"test-best-none-ens2{method}"
        pe = pd.read_parquet(out / "predictions.parquet")
        ids = pe["sample_id"].tolist()
        pa, pb = (_reference_probs(x, ids, data["manifest"]) for x in (a, b))
        if method == "mean":
            np.testing.assert_allclose(pe["prob_malignant"], (pa[:, 1] + pb[:, 1]) / 2, atol=1e-5)
        else:
            from scipy.stats import rankdata

            exp = (rankdata(pa[:, 1]) + rankdata(pb[:, 1])) / (2 * len(ids))
            np.testing.assert_allclose(pe["prob_malignant"], exp, atol=1e-9)
            met = _no_nan(out / "metrics.json")
            assert met["multiclass"]["log_loss"] is None and "rank" in met["multiclass"]["null_reasons"]["log_loss"]
        if method == "mean":
            continue
        # out-of-fold validation predictions: run_a's fold 0 and run_b's fold 1
        val = pd.read_parquet(out / "val_predictions.parquet")
        s = json.loads(data["splits"].read_text())
        assert set(val["sample_id"]) == set(s["folds"][0]["val"]) | set(s["folds"][1]["val"])
        assert len(_no_nan(out / "metrics.json")["most_confused"][0:1]) <= 1


def test_binary_model_val_split_and_errors(data, runner):
    run = data["run_bin"]
    r = invoke(runner, "evaluate", str(run), "--split", "val", "--n-boot", "20", "--workers", "0", "--no-plots",
               "--threshold", "sensitivity:0.9", "--group-by", "sex")
    assert r.exit_code == 0, r.output
    out = run / "eval" / "val-best-none"
    met = _no_nan(out / "metrics.json")
    pred = pd.read_parquet(out / "predictions.parquet")
    ref = _reference_probs(run, pred["sample_id"].tolist(), data["manifest"])
    np.testing.assert_allclose(pred["prob_malignant"], ref[:, 1], atol=1e-5)
    assert met["binary"]["threshold"]["method"] == "sensitivity"
    assert "itself" in met["binary"]["threshold"]["chosen_on"] and met["binary"].get("threshold_warning")
    assert met["binary"]["threshold"]["sensitivity"] >= 0.9
    # errors: explicit group column that does not exist (usage, exit 2); bad --tta; missing checkpoint
    r = invoke(runner, "evaluate", str(run), "--group-by", "ita_category", "--workers", "0", "--tag", "x")
    assert r.exit_code == 2 and "ita_category" in r.output and "label-skintone" in r.output
    r = invoke(runner, "evaluate", str(run), "--tta", "flips4", "--tag", "y")
    assert r.exit_code == 2 and "--tta" in r.output
    r = invoke(runner, "evaluate", str(run), "--checkpoint", "snapshots", "--tag", "z")
    assert r.exit_code == 1 and "sgdr" in r.output


def test_tta_views_are_the_dihedral_group():
    from lesionkit.evaluate.predict import combine, predict_batches, tta_views

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    views = tta_views(x, "flips8")
    flat = {tuple(v[0, 0].flatten().tolist()) for v in views}
    assert len(flat) == 8
    expected = {tuple(torch.rot90(x, k, [2, 3])[0, 0].flatten().tolist()) for k in range(4)}
    expected |= {tuple(torch.rot90(x.flip(3), k, [2, 3])[0, 0].flatten().tolist()) for k in range(4)}
    assert flat == expected
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    batches = [{"image": x[:1], "index": [1]}, {"image": x[1:], "index": [0]}]
    p = predict_batches([lin], batches, 2, 3, binary=False, tta="flips8")
    with torch.no_grad():
        exp = torch.stack([torch.softmax(lin(v), 1) for v in views]).mean(0).numpy()
    np.testing.assert_allclose(p[0], exp[[1, 0]], atol=1e-6)
    np.testing.assert_allclose(combine(np.stack([p[0], 1 - p[0]]), "mean"), 0.5, atol=1e-6)
