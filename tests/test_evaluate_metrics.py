"""Parity of lesionkit.evaluate metrics with scikit-learn / fairlearn / hand-computed values (to 1e-9)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from lesionkit.evaluate import metrics as M
from lesionkit.evaluate.bootstrap import (
    ClusterBootstrap,
    bootstrap_stats,
    cluster_codes,
)
from lesionkit.evaluate.calibration import binary_reliability, top_label_reliability
from lesionkit.evaluate.fairness import binary_group_table, multiclass_group_table
from lesionkit.evaluate.groups import derive_group
from lesionkit.evaluate.thresholds import choose_threshold, parse_threshold_method

TOL = 1e-9


def _binary(seed: int, n: int = 300, ties: bool = True):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    s = rng.normal(size=n) + 1.2 * y
    if ties:
        s = np.round(s, 1)  # many tied scores, also across classes
    return y.astype(int), s


def _multiclass(seed: int, n: int = 400, c: int = 5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    return y, p


def isic2024_pauc(y, s, min_tpr=0.8):
    """The ISIC 2024 Kaggle metric: flip labels and scores, McClish-standardised sklearn pAUC, undo it."""
    v_gt = np.abs(np.asarray(y) - 1)
    v_pred = -1.0 * np.asarray(s, dtype=float)
    max_fpr = abs(1 - min_tpr)
    mcclish = skm.roc_auc_score(v_gt, v_pred, max_fpr=max_fpr)
    return 0.5 * max_fpr**2 + (max_fpr - 0.5 * max_fpr**2) / (1.0 - 0.5) * (mcclish - 0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [True, False])
def test_binary_parity_with_sklearn(seed, ties):
    y, s = _binary(seed, ties=ties)
    w = np.random.default_rng(seed + 10).integers(0, 4, len(y)).astype(float)
    assert abs(M.roc_auc(y, s) - skm.roc_auc_score(y, s)) < TOL
    assert abs(M.roc_auc(y, s, w) - skm.roc_auc_score(y, s, sample_weight=w)) < TOL
    assert abs(M.average_precision(y, s) - skm.average_precision_score(y, s)) < TOL
    assert abs(M.average_precision(y, s, w) - skm.average_precision_score(y, s, sample_weight=w)) < TOL
    fpr, tpr, thr = M.roc_curve(y, s)
    f2, t2, th2 = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2, atol=TOL)
    np.testing.assert_allclose(tpr, t2, atol=TOL)
    np.testing.assert_array_equal(thr[1:], th2[1:])
    # weighted AUC equals the AUC of the materialised resample
    idx = np.repeat(np.arange(len(y)), w.astype(int))
    assert abs(M.roc_auc(y, s, w) - skm.roc_auc_score(y[idx], s[idx])) < TOL
    # thresholded metrics vs sklearn at 0.5 on a probability
    p = 1 / (1 + np.exp(-s))
    tm = M.threshold_metrics(y, p, 0.5)
    pred = p >= 0.5
    assert abs(tm["sensitivity"] - skm.recall_score(y, pred)) < TOL
    assert abs(tm["specificity"] - skm.recall_score(1 - y, ~pred)) < TOL
    assert abs(tm["ppv"] - skm.precision_score(y, pred)) < TOL
    assert abs(tm["npv"] - skm.precision_score(1 - y, ~pred)) < TOL
    assert abs(tm["f1"] - skm.f1_score(y, pred)) < TOL
    assert abs(tm["f2"] - skm.fbeta_score(y, pred, beta=2)) < TOL
    assert abs(tm["balanced_accuracy"] - skm.balanced_accuracy_score(y, pred)) < TOL
    bm = M.binary_metrics(y, p)
    assert abs(bm["brier"] - skm.brier_score_loss(y, p)) < TOL


def test_pauc_hand_computed():
    # positives 0.9 0.8 0.7 0.5 0.5, negatives 0.5 0.1. ROC: (0,0)→(0,.6) vertical; the tie at 0.5 (2 pos, 1 neg)
    # is the diagonal (0,.6)→(.5,1.0), crossing TPR .8 at FPR .25: triangle .25*.2/2 = .025; then (.5,1)→(1,1):
    # .5*.2 = .1. pAUC above 80% TPR = 0.125 (of a possible 0.2).
    y = np.array([1, 1, 1, 1, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.5, 0.5, 0.5, 0.1])
    assert abs(M.partial_auc_above_tpr(y, s, 0.8) - 0.125) < TOL
    assert abs(isic2024_pauc(y, s) - 0.125) < TOL
    # sklearn's own max_fpr value is the McClish-standardised number, a different quantity
    assert abs(skm.roc_auc_score(y, s, max_fpr=0.2) - 0.125) > 0.05
    # perfect ranking → the maximum 0.2; reversed ranking → 0
    assert abs(M.partial_auc_above_tpr([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) - 0.2) < TOL
    assert abs(M.partial_auc_above_tpr([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) - 0.0) < TOL
    # a segment starting above the line (hand: (0,.9)→(1,1) gives .1 + .05 = 0.15 above TPR .8)
    fpr = np.array([0.0, 0.0, 1.0])
    tpr = np.array([0.0, 0.9, 1.0])
    assert abs(M.pauc_from_roc(fpr, tpr, 0.8) - 0.15) < TOL
    # a segment crossing downward is impossible on a ROC, but the formula on (0,.7)->(1,.9) gives .5*.5*.1=.025
    assert abs(M.pauc_from_roc(np.array([0.0, 1.0]), np.array([0.7, 0.9]), 0.8) - 0.025) < TOL


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("min_tpr", [0.8, 0.5, 0.95])
def test_pauc_matches_isic2024_formula(seed, min_tpr):
    y, s = _binary(seed, n=200, ties=seed % 2 == 0)
    assert abs(M.partial_auc_above_tpr(y, s, min_tpr) - isic2024_pauc(y, s, min_tpr)) < TOL


def test_undefined_are_none_with_reasons():
    y = np.zeros(5, dtype=int)
    s = np.linspace(0, 1, 5)
    assert M.roc_auc(y, s) is None
    bm = M.binary_metrics(y, s)
    assert bm["auc"] is None and bm["pauc"] is None and "auc" in bm["null_reasons"]
    tm = M.threshold_metrics(y, s, 2.0)  # nothing predicted positive, no positives
    assert tm["sensitivity"] is None and tm["ppv"] is None and tm["specificity"] == 1.0
    assert set(tm["null_reasons"]) >= {"sensitivity", "ppv"}


@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_parity_with_sklearn(seed):
    y, p = _multiclass(seed)
    classes = [f"c{k}" for k in range(p.shape[1])]
    m = M.multiclass_metrics(y, p, classes)
    pred = p.argmax(1)
    assert abs(m["accuracy"] - skm.accuracy_score(y, pred)) < TOL
    assert abs(m["balanced_accuracy"] - skm.balanced_accuracy_score(y, pred)) < TOL
    assert abs(m["auc_macro_ovr"] - skm.roc_auc_score(y, p, multi_class="ovr", average="macro")) < TOL
    assert abs(m["auc_weighted_ovr"] - skm.roc_auc_score(y, p, multi_class="ovr", average="weighted")) < TOL
    assert abs(m["log_loss"] - skm.log_loss(y, p)) < TOL
    assert abs(m["brier"] - skm.brier_score_loss(y, p, scale_by_half=False)) < TOL
    np.testing.assert_array_equal(np.array(m["confusion_matrix"]), skm.confusion_matrix(y, pred))
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, pred, zero_division=np.nan)
    for k, c in enumerate(classes):
        pc = m["per_class"][c]
        assert abs(pc["sensitivity"] - rec[k]) < TOL and abs(pc["ppv"] - prec[k]) < TOL and abs(pc["f1"] - f1[k]) < TOL
        assert abs(pc["specificity"] - skm.recall_score(y != k, pred != k)) < TOL
        assert abs(pc["npv"] - skm.precision_score(y != k, pred != k)) < TOL
        assert abs(pc["auc"] - skm.roc_auc_score(y == k, p[:, k])) < TOL
        assert pc["support"] == sup[k]
    # weighted = materialised resample
    w = np.random.default_rng(3).integers(0, 3, len(y)).astype(float)
    idx = np.repeat(np.arange(len(y)), w.astype(int))
    mw = M.multiclass_metrics(y, p, classes, w=w)
    assert abs(mw["balanced_accuracy"] - skm.balanced_accuracy_score(y[idx], pred[idx])) < TOL
    assert abs(mw["auc_macro_ovr"] - skm.roc_auc_score(y[idx], p[idx], multi_class="ovr")) < TOL


def test_multiclass_absent_class_skipped_with_reason():
    y, p = _multiclass(0, c=4)
    keep = y != 3
    m = M.multiclass_metrics(y[keep], p[keep], ["a", "b", "c", "d"])
    assert m["auc_classes_skipped"] == ["d"]
    assert m["per_class"]["d"]["auc"] is None and m["per_class"]["d"]["sensitivity"] is None
    assert "auc_macro_ovr" in m["null_reasons"]
    expect = np.mean([skm.roc_auc_score(y[keep] == k, p[keep][:, k]) for k in range(3)])
    assert abs(m["auc_macro_ovr"] - expect) < TOL
    assert abs(m["balanced_accuracy"] - skm.balanced_accuracy_score(y[keep], p[keep].argmax(1))) < TOL


def test_most_confused_pairs():
    a = np.array([[5, 3, 0], [1, 6, 0], [0, 2, 4]])
    b = np.array([[6, 1, 1], [0, 7, 0], [0, 4, 2]])
    pairs = M.most_confused_pairs([a, b], ["x", "y", "z"])
    assert (pairs[0]["true"], pairs[0]["pred"]) == ("z", "y")
    assert abs(pairs[0]["mean_count"] - 3.0) < TOL and abs(pairs[0]["mean_rate"] - 0.5) < TOL
    assert (pairs[1]["true"], pairs[1]["pred"]) == ("x", "y")
    assert abs(pairs[1]["mean_rate"] - (3 / 8 + 1 / 8) / 2) < TOL


def test_calibration_matches_sklearn_and_hand():
    rng = np.random.default_rng(0)
    p = rng.random(500)
    p[:5] = [0.0, 0.1, 0.2, 1.0, 0.5]  # values on bin edges
    y = rng.random(500) < p
    rel = binary_reliability(y, p, n_bins=10)
    pt, pp = calibration_curve(y, p, n_bins=10)
    nz = rel.count > 0
    np.testing.assert_allclose(rel.frequency[nz], pt, atol=TOL)
    np.testing.assert_allclose(rel.confidence[nz], pp, atol=TOL)
    # hand-computed ECE: bins [0,.5] and (.5,1]: confs .2,.4 (acc 0,1) and .9 (acc 1)
    rel2 = binary_reliability(np.array([0, 1, 1]), np.array([0.2, 0.4, 0.9]), n_bins=2)
    assert abs(rel2.ece - (2 / 3 * abs(0.5 - 0.3) + 1 / 3 * abs(1 - 0.9))) < TOL
    # top-label: confidences .6,.7 correct/wrong in bin (.5,1]
    pr = np.array([[0.6, 0.4], [0.3, 0.7]])
    rel3 = top_label_reliability(np.array([0, 0]), pr, n_bins=2)
    assert abs(rel3.ece - abs(0.5 - 0.65)) < TOL


def _brute_threshold(y, s, crit):
    best, bt = -np.inf, None
    for t in np.unique(s)[::-1]:
        pred = s >= t
        tpr = (pred & (y == 1)).sum() / (y == 1).sum()
        fpr = (pred & (y == 0)).sum() / (y == 0).sum()
        v = crit(tpr, fpr)
        if v > best + 1e-15:
            best, bt = v, t
    return bt


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thresholds_brute_force(seed):
    y, s = _binary(seed)
    assert choose_threshold(y, s, "youden").threshold == _brute_threshold(y, s, lambda t, f: t - f)
    assert choose_threshold(y, s, "gmean").threshold == _brute_threshold(y, s, lambda t, f: np.sqrt(t * (1 - f)))
    ch = choose_threshold(y, s, "sensitivity", 0.9)
    cands = [t for t in np.unique(s) if ((s >= t) & (y == 1)).sum() / (y == 1).sum() >= 0.9]
    assert ch.threshold == max(cands) and ch.sensitivity >= 0.9
    assert parse_threshold_method("sensitivity:0.85") == ("sensitivity", 0.85)
    assert choose_threshold(y, s, "fixed", 0.3).threshold == 0.3


def test_cluster_bootstrap_weights_and_ci():
    df = pd.DataFrame({"patient_id": ["a", "a", "b", "c", None, "c"]})
    codes, unit = cluster_codes(df)
    assert unit == "patient_id" and codes[0] == codes[1] and codes[3] == codes[5] and len(set(codes)) == 4
    boot = ClusterBootstrap(codes, n_boot=50, seed=7)
    for b in range(50):
        w = boot.weights(b)
        assert w[0] == w[1] and w[3] == w[5]
        assert w[[0, 2, 3, 4]].sum() == 4  # K clusters drawn
    np.testing.assert_array_equal(boot.weights(3), ClusterBootstrap(codes, 50, 7).weights(3))
    y, s = _binary(0, n=200)
    boot = ClusterBootstrap(np.arange(200) // 2, n_boot=200, seed=1)
    res = bootstrap_stats(lambda w: {"auc": M.roc_auc(y, s, w)}, boot)["auc"]
    reps = [M.roc_auc(y, s, boot.weights(b)) for b in range(200)]
    assert res["estimate"] == M.roc_auc(y, s)
    assert abs(res["ci_low"] - np.quantile(reps, 0.025)) < TOL and abs(res["ci_high"] - np.quantile(reps, 0.975)) < TOL
    assert res["ci_low"] < res["estimate"] < res["ci_high"] and res["n_valid"] == 200


def test_fairness_parity_with_fairlearn():
    fl = pytest.importorskip("fairlearn.metrics")
    rng = np.random.default_rng(4)
    n = 600
    groups = rng.choice(["female", "male", "x"], n, p=[0.45, 0.45, 0.1])
    y = (rng.random(n) < np.where(groups == "x", 0.5, 0.3)).astype(int)
    s = rng.random(n) * 0.7 + 0.4 * y * np.where(groups == "male", 1.0, 0.5)
    thr = 0.5
    pred = (s >= thr).astype(int)
    tab = binary_group_table("sex", groups, y, s, thr, ClusterBootstrap(np.arange(n), n_boot=20, seed=0),
                             min_group_size=0)
    mf = fl.MetricFrame(metrics={"sensitivity": skm.recall_score,
                                 "specificity": fl.true_negative_rate,
                                 "balanced_accuracy": skm.balanced_accuracy_score},
                        y_true=y, y_pred=pred, sensitive_features=groups)
    mf_auc = fl.MetricFrame(metrics=skm.roc_auc_score, y_true=y, y_pred=s, sensitive_features=groups)
    for g in tab["groups"]:
        name = g["group"]
        for m in ("sensitivity", "specificity", "balanced_accuracy"):
            assert abs(g["metrics"][m]["estimate"] - mf.by_group.loc[name, m]) < TOL
        assert abs(g["metrics"]["auc"]["estimate"] - mf_auc.by_group.loc[name]) < TOL
        assert g["n"] == (groups == name).sum()
    eod = fl.equalized_odds_difference(y, pred, sensitive_features=groups)
    eop = fl.equal_opportunity_difference(y, pred, sensitive_features=groups)
    assert abs(tab["equalized_odds_difference"]["estimate"] - eod) < TOL
    assert abs(tab["equal_opportunity_difference"]["estimate"] - eop) < TOL
    gap = tab["gaps"]["sensitivity"]
    assert abs(gap["estimate"] - mf.difference(method="between_groups")["sensitivity"]) < TOL
    assert gap["worst_group"] == mf.by_group["sensitivity"].idxmin()
    lo, hi = gap["ci_low"], gap["ci_high"]
    assert lo is not None and lo <= hi


def test_group_table_missing_and_small_groups_not_compared():
    rng = np.random.default_rng(0)
    n = 300
    groups = np.array(["a"] * 140 + ["b"] * 140 + ["c"] * 5 + ["missing"] * 15)
    y = (rng.random(n) < 0.4).astype(int)
    s = rng.random(n)
    tab = binary_group_table("g", groups, y, s, 0.5, ClusterBootstrap(np.arange(n), n_boot=10, seed=0))
    assert tab["compared_groups"] == ["a", "b"]
    assert [g["group"] for g in tab["groups"]] == ["a", "b", "c", "missing"]
    by = {g["group"]: g for g in tab["groups"]}
    assert not by["c"]["compared"] and not by["missing"]["compared"]
    a, b = by["a"]["metrics"]["auc"]["estimate"], by["b"]["metrics"]["auc"]["estimate"]
    assert abs(tab["gaps"]["auc"]["estimate"] - abs(a - b)) < TOL
    y3, p3 = _multiclass(1, n=n, c=3)
    mt = multiclass_group_table("g", groups, y3, p3, ["x", "y", "z"], ClusterBootstrap(np.arange(n), 10, 0))
    bym = {g["group"]: g for g in mt["groups"]}
    i = groups == "a"
    assert abs(bym["a"]["metrics"]["accuracy"]["estimate"] - skm.accuracy_score(y3[i], p3[i].argmax(1))) < TOL
    assert abs(bym["a"]["metrics"]["auc_macro_ovr"]["estimate"] - skm.roc_auc_score(y3[i], p3[i], multi_class="ovr")) < TOL


def test_derived_groups():
    df = pd.DataFrame({"age_approx": [np.nan, 10, 30, 44.9, 45, 60, 74, 75, 90],
                       "hair_frac": [0, 0.01, np.nan, 0, 0, 0, 0, 0, 0.5],
                       "fitzpatrick": pd.array([1, 2, None, 3, 4, 5, 6, 1, 1], dtype="Int8")})
    assert derive_group(df, "age_bin").tolist() == ["missing", "<30", "30-44", "30-44", "45-59", "60-74", "60-74",
                                                    "75+", "75+"]
    assert derive_group(df, "hair").tolist()[:3] == ["no hair", "hair", "missing"]
    assert derive_group(df, "fitzpatrick").tolist()[:4] == ["I", "II", "missing", "III"]
    assert derive_group(df, "fitzpatrick_group").tolist() == ["I-II", "I-II", "missing", "III-IV", "III-IV", "V-VI",
                                                              "V-VI", "I-II", "I-II"]
    est = pd.DataFrame({"fitzpatrick_est": [2.0, np.nan, 6.0, -1.0], "roman": ["II", "VI", "x", None]})
    assert derive_group(est, "fitzpatrick_est_group").tolist() == ["I-II", "missing", "V-VI", "missing"]
    from lesionkit.evaluate.groups import _coarse_type, group_order

    assert [_coarse_type(v) for v in est["roman"]] == ["I-II", "V-VI", "missing", "missing"]
    assert group_order("fitzpatrick_group", ["V-VI", "missing", "I-II", "III-IV"]) == ["I-II", "III-IV", "V-VI",
                                                                                       "missing"]
    with pytest.raises(KeyError):
        derive_group(df, "ink")
