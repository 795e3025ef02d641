"""Split planning: stratified k-fold grouped by patient / lesion (scikit-learn's ``StratifiedGroupKFold``),
an optional grouped held-out test set, and import of official splits (from a CSV or a manifest column).

An image-level split of a dataset whose images share patients or lesions is refused unless
``allow_leakage``: it puts images of one lesion on both sides and inflates validation scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from lesionkit.console import warn
from lesionkit.errors import InputError, UsageError
from lesionkit.manifest.importers._common import read_csv
from lesionkit.splits.io import Splits

# strongest first: a patient holds several lesions, a lesion several images
GROUP_COLUMNS = ("patient_id", "lesion_id")
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
ID_COLUMNS = ("sample_id", "image_id", "image_name", "image", "isic_id", "img_id")


def _has_repeats(s: pd.Series) -> bool:
    s = s.dropna()
    return len(s) > 0 and s.nunique() < len(s)


def resolve_group_column(df: pd.DataFrame, group_by: str, allow_leakage: bool) -> str | None:
    """``auto`` → the strongest grouping column with values (patient_id, then lesion_id); ``none`` → image level.

    Raises :class:`UsageError` for an image-level split of grouped data unless ``allow_leakage``.
    """
    if group_by == "auto":
        for c in GROUP_COLUMNS:
            if c in df.columns and df[c].notna().any():
                return c
        return None
    if group_by == "none":
        grouped = [c for c in GROUP_COLUMNS if c in df.columns and _has_repeats(df[c])]
        if grouped and not allow_leakage:
            c = grouped[0]
            raise UsageError(
                f"refusing an image-level split: {len(df)} images belong to {df[c].nunique()} {c} groups, so images of one "
                f"{c.removesuffix('_id')} would land in both train and val and inflate validation scores",
                hint=f"use --group-by {c} (or auto), or pass --allow-leakage if you really want an image-level split",
            )
        return None
    if group_by not in df.columns:
        raise UsageError(f"--group-by {group_by}: no such column in the manifest",
                         hint=f"use auto, none, or one of: {', '.join(c for c in GROUP_COLUMNS if c in df.columns)}")
    if not df[group_by].notna().any():
        raise UsageError(f"--group-by {group_by}: the column is empty in this manifest", hint="use --group-by auto")
    return group_by


def _groups(df: pd.DataFrame, col: str | None) -> np.ndarray:
    """Group key per row; rows without a group value are their own group (keyed by sample_id)."""
    ids = df["sample_id"].astype(str)
    if col is None:
        return ids.to_numpy()
    g = df[col].astype("string")
    return np.where(g.isna(), "__sample__" + ids, col + ":" + g.fillna("")).astype(str)


def _strata(df: pd.DataFrame, stratify: str | None) -> np.ndarray:
    if stratify is None:
        return np.zeros(len(df), dtype=np.int64)
    if stratify not in df.columns:
        raise UsageError(f"--stratify {stratify}: no such column in the manifest", hint="use label, malignant or an existing column")
    codes, _ = pd.factorize(df[stratify].astype("string"), use_na_sentinel=True)
    return codes.astype(np.int64)  # <NA> is its own stratum (-1)


def _kfold_indices(y: np.ndarray, groups: np.ndarray, n: int, seed: int, grouped: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    if grouped:
        n_groups = len(np.unique(groups))
        if n_groups < n:
            raise UsageError(f"cannot make {n} folds from {n_groups} groups", hint=f"use --folds {max(2, n_groups)} or fewer")
        splitter = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(y)), y, groups))
    min_class = np.bincount(y - y.min()).min() if len(y) else 0
    if min_class < n:
        warn(f"the smallest stratum has {min_class} rows, fewer than {n} folds: some folds will miss it")
    splitter = StratifiedKFold(n_splits=n, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def plan_kfold(
    df: pd.DataFrame,
    n_folds: int = 5,
    seed: int = 0,
    group_by: str = "auto",
    stratify: str | None = "label",
    test_frac: float = 0.0,
    allow_leakage: bool = False,
) -> Splits:
    """Stratified (group) k-fold over ``df``, after holding out a grouped, stratified test set if ``test_frac > 0``.

    The test set is one fold of a ``round(1 / test_frac)``-fold split, so its size is ``1/round(1/test_frac)`` of
    the rows up to group granularity (0.2 → 1/5, 0.15 → 1/7); the realised fraction is in the report.
    """
    if n_folds < 2:
        raise UsageError(f"--folds must be at least 2 (got {n_folds})", hint="use --folds 5")
    if not 0 <= test_frac < 0.5:
        raise UsageError(f"--test-frac must be in [0, 0.5) (got {test_frac})", hint="e.g. --test-frac 0.2")
    col = resolve_group_column(df, group_by, allow_leakage)
    grouped = col is not None
    y = _strata(df, stratify)
    groups = _groups(df, col)
    ids = df["sample_id"].astype(str).to_numpy()
    rest = np.arange(len(df))
    test_ids: list[str] = []
    k_test = 0
    if test_frac > 0:
        k_test = max(2, round(1 / test_frac))
        tr, te = _kfold_indices(y, groups, k_test, seed, grouped)[0]
        test_ids = ids[te].tolist()
        rest = tr
    folds = []
    for tr, va in _kfold_indices(y[rest], groups[rest], n_folds, seed, grouped):
        folds.append({"train": ids[rest[tr]].tolist(), "val": ids[rest[va]].tolist()})
    method = "stratified-group-kfold" if grouped else "stratified-kfold"
    return Splits(folds=folds, test=test_ids, method=method, group_by=col, stratify=stratify, seed=seed,
                  params={"n_folds": n_folds, "test_frac": test_frac, "test_as_one_of_k": k_test or None,
                          "allow_leakage": allow_leakage, "group_by_requested": group_by})


def _from_assignment(df: pd.DataFrame, assign: pd.Series, method: str, source: str, params: dict) -> Splits:
    """One fold from a per-row train/val/test assignment (``<NA>`` rows are left out)."""
    ids = df["sample_id"].astype(str)
    left_out = int(assign.isna().sum())
    if left_out:
        warn(f"{left_out} manifest rows are not in {source}; they are left out of the split")
    fold = {"train": ids[assign == "train"].tolist(), "val": ids[assign == "val"].tolist()}
    test = ids[assign == "test"].tolist()
    if not fold["train"]:
        raise InputError(f"{source} assigns no rows to train", hint="check the split values (train / val / test)")
    return Splits(folds=[fold], test=test, method=method, group_by=None, stratify=None, seed=None,
                  params={**params, "left_out": left_out})


def _normalise_split_values(values: pd.Series, source: str, column: str) -> pd.Series:
    low = values.astype("string").str.strip().str.lower()
    mapped = low.map(SPLIT_ALIASES)
    bad = low.notna() & mapped.isna()
    if bad.any():
        raise InputError(
            f"{source}: column {column} has values that are not a split: {', '.join(map(repr, low[bad].unique()[:5]))}",
            hint=f"expected one of: {', '.join(sorted(SPLIT_ALIASES))}",
        )
    return mapped.astype("string")


def plan_from_column(df: pd.DataFrame, column: str = "split") -> Splits:
    """The official split stored in a manifest column (e.g. ISIC 2017's train / val / test)."""
    if column not in df.columns or not df[column].notna().any():
        raise UsageError(f"--from-column {column}: the manifest has no values in that column",
                         hint="use --from-file CSV for an external split, or plain `lesionkit split` for k-fold")
    assign = _normalise_split_values(df[column], "the manifest", column)
    return _from_assignment(df, assign, "from-column", f"column {column}", {"column": column})


def plan_from_file(df: pd.DataFrame, path: Path, id_column: str | None = None, split_column: str = "split") -> Splits:
    """An external split file (CSV with an id column and a split column), e.g. the official DermaMNIST split."""
    path = Path(path)
    raw = read_csv(path, [split_column], "split --from-file")
    if id_column is None:
        found = [c for c in ID_COLUMNS if c in raw.columns]
        if not found:
            raise InputError(f"{path}: no id column (looked for {', '.join(ID_COLUMNS)}); found {', '.join(raw.columns)}",
                             hint="name it with --id-column")
        id_column = found[0]
    elif id_column not in raw.columns:
        raise InputError(f"{path}: no column {id_column!r}; found {', '.join(raw.columns)}", hint="fix --id-column")
    file_ids = raw[id_column].astype("string").str.strip()
    dup = file_ids[file_ids.duplicated()]
    if len(dup):
        raise InputError(f"{path}: {dup.nunique()} id(s) listed more than once, e.g. {', '.join(dup.unique()[:5])}",
                         hint="each image may be in one split only")
    values = _normalise_split_values(raw[split_column], str(path), split_column)
    manifest_ids = set(df["sample_id"].astype(str))
    unknown = file_ids[~file_ids.isin(manifest_ids)]
    if len(unknown):
        raise InputError(
            f"{path}: {len(unknown)} of {len(file_ids)} ids ({id_column}) are not in the manifest, e.g. {', '.join(unknown.head(5))}",
            hint="is this split for this dataset? the manifest's sample_id must match the file's id column (see --id-column)",
        )
    lookup = dict(zip(file_ids.tolist(), values.tolist(), strict=True))
    assign = df["sample_id"].astype(str).map(lookup).astype("string")
    return _from_assignment(df, assign, "from-file", str(path), {"file": str(Path(path).resolve()), "id_column": id_column,
                                                                  "split_column": split_column})


_ROMAN = {"I": "1", "II": "2", "III": "3", "IV": "4", "V": "5", "VI": "6"}


def _value_key(v: object) -> str:
    """Comparable text of a group value: 2.0 → "2", "II" → "2" (Fitzpatrick roman numerals), else str."""
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    s = str(v).strip()
    return _ROMAN.get(s.upper(), s)


def parse_group_holdout(text: str) -> tuple[str, list[str]]:
    """``"fitzpatrick=1,2"`` → ``("fitzpatrick", ["1", "2"])`` (the column and its training values)."""
    col, sep, vals = str(text).partition("=")
    values = [_value_key(v) for v in vals.split(",") if v.strip()]
    if not sep or not col.strip() or not values:
        raise UsageError(f"--train-groups {text!r}: expected COLUMN=V1,V2,... (e.g. fitzpatrick=1,2)",
                         hint="lesionkit split M.parquet --out s.json --train-groups fitzpatrick=1,2")
    return col.strip(), values


def plan_group_holdout(
    df: pd.DataFrame,
    column: str,
    train_values: list[str],
    n_folds: int = 5,
    seed: int = 0,
    group_by: str = "auto",
    stratify: str | None = "label",
    allow_leakage: bool = False,
) -> Splits:
    """Train on some groups, test on the others (Bevan & Atapour-Abarghouei train on skin types 1–2 and test on
    3–4 and 5–6): rows whose ``column`` value is in ``train_values`` are split into grouped, stratified folds;
    every other row with a known value is the test set; rows without a value are left out.

    A patient / lesion group with rows on both sides (e.g. per-image ``fitzpatrick_est`` that differs between
    images of one patient) would leak, so its test rows are left out too (counted in ``params``).
    """
    if column not in df.columns:
        raise UsageError(f"--train-groups: no column {column!r} in the manifest",
                         hint="add skin-tone columns with `lesionkit label-skintone` (fitzpatrick_est) or pick a column "
                              "of the manifest")
    keys = df[column].map(lambda v: None if pd.isna(v) else _value_key(v))
    known = keys.notna().to_numpy()
    in_train = keys.isin(train_values).to_numpy() & known
    present = sorted(set(keys.dropna()))
    missing_vals = [v for v in train_values if v not in present]
    if missing_vals:
        raise UsageError(f"--train-groups {column}: value(s) {', '.join(missing_vals)} do not occur "
                         f"(values present: {', '.join(present)})", hint="pick values that occur in the column")
    if not in_train.any() or in_train.sum() == known.sum():
        raise UsageError(f"--train-groups {column}={','.join(train_values)} leaves no "
                         f"{'training' if not in_train.any() else 'test'} rows",
                         hint=f"values present: {', '.join(present)}")
    col = resolve_group_column(df, group_by, allow_leakage)
    test_mask = known & ~in_train
    straddling = 0
    if col is not None:
        g = df[col].astype("string")
        shared = set(g[in_train].dropna()) & set(g[test_mask].dropna())
        drop = test_mask & g.isin(shared).fillna(False).to_numpy()
        straddling = int(drop.sum())
        if straddling:
            warn(f"{straddling} test row(s) belong to a {col} that also has training rows; left out of the test set")
        test_mask &= ~drop
    ids = df["sample_id"].astype(str).to_numpy()
    pool = np.flatnonzero(in_train)
    sub = df.iloc[pool]
    folds = [{"train": ids[pool[tr]].tolist(), "val": ids[pool[va]].tolist()}
             for tr, va in _kfold_indices(_strata(sub, stratify), _groups(sub, col), n_folds, seed, col is not None)]
    test_counts = {str(k): int(v) for k, v in keys[test_mask].value_counts().sort_index().items()}
    return Splits(folds=folds, test=ids[test_mask].tolist(), method="group-holdout", group_by=col, stratify=stratify,
                  seed=seed, params={"n_folds": n_folds, "holdout_column": column, "train_values": train_values,
                                     "test_values": test_counts, "left_out_missing": int((~known).sum()),
                                     "left_out_straddling": straddling, "group_by_requested": group_by,
                                     "allow_leakage": allow_leakage})
