"""Splits: no group shared across subsets, class balance per fold, determinism, refusal of leaky splits,
official-split import, and the real-data numbers (ISIC 2020, HAM10000, DermaMNIST)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lesionkit.errors import InputError, UsageError
from lesionkit.manifest.io import Manifest, write_manifest
from lesionkit.manifest.schema import coerce
from lesionkit.splits import (
    leakage,
    plan_from_column,
    plan_from_file,
    plan_group_holdout,
    plan_kfold,
    read_splits,
    split_report,
)
from tests.conftest import invoke


def _grouped(n_patients=300, seed=0):
    """Patients with 1-6 images each; labels correlated within patient; ~15% positives."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        pos = rng.random() < 0.15
        for j in range(rng.integers(1, 7)):
            rows.append({"sample_id": f"s{p}_{j}", "patient_id": f"P{p}", "lesion_id": f"L{p}_{j // 2}",
                         "label": int(pos and rng.random() < 0.7), "source": "toy", "image_path": None})
    return coerce(pd.DataFrame(rows))


def _shared(df, a, b, col):
    g = df.set_index("sample_id")[col]
    return set(g.reindex(a)) & set(g.reindex(b))


def test_grouped_kfold_has_no_shared_groups_and_covers_everything():
    df = _grouped()
    s = plan_kfold(df, n_folds=5, seed=1, test_frac=0.2)
    assert s.group_by == "patient_id" and s.method == "stratified-group-kfold"
    all_ids = set(df["sample_id"])
    vals = [set(f["val"]) for f in s.folds]
    for f in s.folds:
        assert not set(f["train"]) & set(f["val"])
        assert set(f["train"]) | set(f["val"]) | set(s.test) == all_ids
        assert not _shared(df, f["train"], f["val"], "patient_id")
        assert not _shared(df, f["train"], s.test, "patient_id")
    # val sets partition the non-test rows
    assert sum(map(len, vals)) == len(all_ids) - len(s.test)
    assert set().union(*vals) == all_ids - set(s.test)
    assert abs(len(s.test) / len(df) - 0.2) < 0.03
    rep = split_report(df, s, ["benign", "malignant"])
    assert rep["shared_groups_total"] == 0
    # independent recomputation of the balance from the id lists
    overall = df["label"].mean()
    for f in s.folds:
        assert abs(df.set_index("sample_id").loc[f["val"], "label"].mean() - overall) < 0.03


def test_same_seed_same_split_different_seed_different():
    df = _grouped()
    a, b, c = (plan_kfold(df, seed=s) for s in (3, 3, 4))
    assert a.folds == b.folds and a.test == b.test
    assert a.folds != c.folds


def test_image_level_split_of_grouped_data_is_refused():
    df = _grouped()
    with pytest.raises(UsageError, match="image-level split") as e:
        plan_kfold(df, group_by="none")
    assert "--allow-leakage" in e.value.hint
    s = plan_kfold(df, group_by="none", allow_leakage=True)
    assert s.group_by is None
    # the leak is real and reported
    assert any(r["shared_groups"] > 0 for r in leakage(df, s))


def test_leakage_counts_by_hand():
    df = coerce(pd.DataFrame({"sample_id": list("abcdef"), "lesion_id": ["L1", "L1", "L2", "L3", "L3", "L4"],
                              "label": [0] * 6, "source": "t", "image_path": None}))
    from lesionkit.splits.io import Splits

    s = Splits(folds=[{"train": ["a", "c", "d"], "val": ["b", "e"]}], test=["f"], method="manual", group_by=None,
               stratify=None, seed=None)
    rows = {r["pair"]: r for r in leakage(df, s)}
    assert rows["train-val"]["shared_groups"] == 2 and rows["train-val"]["images_sharing"] == 2
    assert rows["train-test"]["shared_groups"] == 0


def test_from_column_and_from_file(tmp_path):
    df = _grouped(50)
    df["split"] = pd.Categorical(np.where(np.arange(len(df)) % 5 == 0, "test", np.where(np.arange(len(df)) % 5 == 1, "val", "train")))
    s = plan_from_column(df, "split")
    assert len(s.folds) == 1 and len(s.test) == (np.arange(len(df)) % 5 == 0).sum()
    csv = tmp_path / "official.csv"
    pd.DataFrame({"image_id": df["sample_id"], "split": df["split"].astype(str).str.upper().replace({"VAL": "valid"})}).to_csv(csv, index=False)
    f = plan_from_file(df, csv)
    assert f.folds[0]["val"] == s.folds[0]["val"] and f.test == s.test
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"image_id": ["nope1", "nope2"], "split": ["train", "test"]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match="not in the manifest"):
        plan_from_file(df, bad)
    weird = tmp_path / "weird.csv"
    pd.DataFrame({"image_id": df["sample_id"], "split": "holdout"}).to_csv(weird, index=False)
    with pytest.raises(InputError, match="not a split"):
        plan_from_file(df, weird)


def test_cli_split_writes_json_with_fingerprint(tmp_path, runner):
    df = _grouped(80)
    mpath = write_manifest(Manifest(df, ["benign", "malignant"]), tmp_path / "m.parquet")
    out = tmp_path / "splits.json"
    res = invoke(runner, "split", mpath, "--out", out, "--folds", "3", "--test-frac", "0.25")
    assert res.exit_code == 0, res.output
    obj = json.loads(out.read_text())
    assert obj["schema_version"] == 1 and obj["n_folds"] == 3 and obj["group_by"] == "patient_id"
    s = read_splits(out, manifest_fingerprint=Manifest(df, []).fingerprint())
    assert s.report["shared_groups_total"] == 0
    with pytest.raises(InputError, match="different manifest"):
        read_splits(out, manifest_fingerprint="0" * 64)
    again = invoke(runner, "split", mpath, "--out", out)
    assert again.exit_code == 1 and "--overwrite" in again.output
    refused = invoke(runner, "split", mpath, "--out", tmp_path / "x.json", "--group-by", "none")
    assert refused.exit_code == 2 and "image-level" in refused.output
    assert not (tmp_path / "x.json").exists()


# ---- real data -------------------------------------------------------------------------------------------------

def _build(runner, tmp_path, fmt, src, *extra):
    out = tmp_path / f"{fmt}.parquet"
    res = invoke(runner, "manifest", "build", src, "--format", fmt, "--out", out, "--no-image-size", *extra)
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.realdata
def test_real_isic2020_grouped_split(real_data, runner, tmp_path):
    m = _build(runner, tmp_path, "isic2020", real_data / "isic2020", "--allow-missing-images")
    out = tmp_path / "s.json"
    res = invoke(runner, "split", m, "--out", out, "--folds", "5", "--test-frac", "0.2", "--seed", "0")
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())["report"]
    assert rep["n_rows"] == 33126 and rep["n_groups"] == 2056 and rep["group_by"] == "patient_id"
    assert rep["shared_groups_total"] == 0  # patient_id and lesion_id both checked
    assert {r["column"] for r in rep["leakage"]} == {"patient_id", "lesion_id"}
    assert rep["max_abs_dev_pp"] <= 1.0


@pytest.mark.realdata
def test_real_ham10000_split_and_dermamnist_leak(real_data, runner, tmp_path):
    m = _build(runner, tmp_path, "ham10000", real_data / "ham10000")
    out = tmp_path / "s.json"
    assert invoke(runner, "split", m, "--out", out, "--test-frac", "0.2").exit_code == 0
    rep = json.loads(out.read_text())["report"]
    assert rep["n_groups"] == 7470 and rep["shared_groups_total"] == 0 and rep["max_abs_dev_pp"] <= 1.0
    dm = tmp_path / "dm.json"
    res = invoke(runner, "split", m, "--out", dm, "--from-file", real_data / "ham10000/splits/dermamnist_official.csv")
    assert res.exit_code == 0, res.output
    obj = json.loads(dm.read_text())
    assert (len(obj["folds"][0]["train"]), len(obj["folds"][0]["val"]), len(obj["test"])) == (7007, 1003, 2005)
    tt = next(r for r in obj["report"]["leakage"] if r["pair"] == "train-test")
    assert 0.30 < tt["fraction_of_test"] < 0.40  # "about 35% of its test images share a lesion with a train image"
    dmc = tmp_path / "dmc.json"
    assert invoke(runner, "split", m, "--out", dmc, "--from-file", real_data / "ham10000/splits/dermamnist_c_corrected.csv").exit_code == 0
    objc = json.loads(dmc.read_text())
    assert (len(objc["folds"][0]["train"]), len(objc["folds"][0]["val"]), len(objc["test"])) == (8215, 573, 1227)
    assert objc["report"]["shared_groups_total"] == 0


def _typed(n_patients=240, seed=0):
    """Patients with a human Fitzpatrick type 1-6 (some missing); one patient straddles types (per-image labels)."""
    df = _grouped(n_patients, seed)
    rng = np.random.default_rng(seed)
    ptype = {p: (None if rng.random() < 0.05 else int(rng.integers(1, 7))) for p in df["patient_id"].unique()}
    df["fitzpatrick"] = df["patient_id"].map(ptype).astype("Float64")
    first = df.index[df["patient_id"] == "P0"]
    df.loc[first, "fitzpatrick"] = [1.0] + [4.0] * (len(first) - 1) if len(first) > 1 else [1.0]
    return df


def test_group_holdout_trains_on_types_1_2_and_tests_on_the_rest():
    from lesionkit.splits.plan import parse_group_holdout

    df = _typed()
    col, vals = parse_group_holdout("fitzpatrick=I,2")
    assert (col, vals) == ("fitzpatrick", ["1", "2"])
    s = plan_group_holdout(df, col, vals, n_folds=3, seed=0)
    t = df.set_index("sample_id")["fitzpatrick"]
    for f in s.folds:
        assert set(t.reindex(f["train"] + f["val"]).astype(int)) <= {1, 2}
        assert not _shared(df, f["train"], f["val"], "patient_id")
        assert not _shared(df, f["train"], s.test, "patient_id")
    assert set(t.reindex(s.test).astype(int)) == {3, 4, 5, 6}
    pool = set(df.loc[df["fitzpatrick"].isin([1, 2]), "sample_id"])
    assert set().union(*[set(f["val"]) for f in s.folds]) == pool  # every training-group row validates once
    n_missing = int(df["fitzpatrick"].isna().sum())
    p0_test = int(((df["patient_id"] == "P0") & (df["fitzpatrick"] == 4)).sum())
    assert s.params["left_out_missing"] == n_missing and s.params["left_out_straddling"] == p0_test
    assert len(pool) + len(s.test) + n_missing + p0_test == len(df)
    assert sum(s.params["test_values"].values()) == len(s.test)


def test_group_holdout_errors_name_the_problem():
    df = _typed()
    with pytest.raises(UsageError, match="do not occur"):
        plan_group_holdout(df, "fitzpatrick", ["7"])
    with pytest.raises(UsageError, match="no column"):
        plan_group_holdout(df, "skin", ["1"])
    with pytest.raises(UsageError, match="no test rows"):
        plan_group_holdout(df, "fitzpatrick", [str(v) for v in range(1, 7)])
