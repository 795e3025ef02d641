"""Grouped, stratified splits (``lesionkit split``) and official-split import, with balance and leakage reports."""

from lesionkit.splits.io import SPLITS_SCHEMA_VERSION, Splits, read_splits, write_splits
from lesionkit.splits.plan import (
    GROUP_COLUMNS,
    plan_from_column,
    plan_from_file,
    plan_group_holdout,
    plan_kfold,
    resolve_group_column,
)
from lesionkit.splits.report import leakage, split_report

__all__ = [
    "GROUP_COLUMNS", "SPLITS_SCHEMA_VERSION", "Splits", "leakage", "plan_from_column", "plan_from_file",
    "plan_group_holdout", "plan_kfold",
    "read_splits", "resolve_group_column", "split_report", "write_splits",
]
