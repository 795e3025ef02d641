"""``lesionkit split``: plan, report, print and write ``splits.json`` for a manifest."""

from __future__ import annotations

from pathlib import Path

from lesionkit.console import out, warn
from lesionkit.fsio import check_output
from lesionkit.manifest.io import provenance_record, read_manifest
from lesionkit.splits.io import Splits, write_splits
from lesionkit.splits.plan import (
    parse_group_holdout,
    plan_from_column,
    plan_from_file,
    plan_group_holdout,
    plan_kfold,
)
from lesionkit.splits.report import split_report


def run_split(
    manifest_path: Path,
    out_path: Path,
    n_folds: int = 5,
    seed: int = 0,
    group_by: str = "auto",
    stratify: str = "label",
    test_frac: float = 0.0,
    allow_leakage: bool = False,
    from_file: Path | None = None,
    id_column: str | None = None,
    split_column: str = "split",
    from_column: str | None = None,
    overwrite: bool = False,
    train_groups: str | None = None,
) -> Splits:
    check_output(out_path, overwrite)
    m = read_manifest(manifest_path)
    df = m.df
    if from_file is not None:
        splits = plan_from_file(df, from_file, id_column=id_column, split_column=split_column)
        splits.stratify = stratify
    elif from_column is not None:
        splits = plan_from_column(df, from_column)
        splits.stratify = stratify
    elif train_groups is not None:
        column, values = parse_group_holdout(train_groups)
        splits = plan_group_holdout(df, column, values, n_folds=n_folds, seed=seed, group_by=group_by,
                                    stratify=stratify, allow_leakage=allow_leakage)
    else:
        splits = plan_kfold(df, n_folds=n_folds, seed=seed, group_by=group_by, stratify=stratify,
                            test_frac=test_frac, allow_leakage=allow_leakage)
    splits.manifest = str(Path(manifest_path).resolve())
    splits.manifest_fingerprint = m.fingerprint()
    splits.report = split_report(df, splits, m.classes)
    splits.provenance = provenance_record("split", {
        "n_folds": n_folds, "seed": seed, "group_by": group_by, "stratify": stratify, "test_frac": test_frac,
        "allow_leakage": allow_leakage, "from_file": str(from_file) if from_file else None, "from_column": from_column,
        "train_groups": train_groups,
    })
    print_report(splits)
    write_splits(splits, out_path)
    out.print(f"wrote {out_path}")
    return splits


def print_report(splits: Splits) -> None:
    from rich.table import Table

    r = splits.report
    classes = list(r["overall_proportions"])
    t = Table("subset", "n", "groups", *classes, "max dev (pp)",
              title=(f"{splits.method}: grouped by {r['group_by'] or 'image'}, stratified by {r['stratify']}"
                     if not splits.method.startswith("from-") else f"imported split ({splits.method}); groups counted by {r['group_by']}"))
    t.add_row("all", str(r["n_used"]), str(r["n_groups"]), *[f"{100 * r['overall_proportions'][c]:.1f}%" for c in classes], "")
    for s in r["subsets"]:
        t.add_row(s["subset"], str(s["n"]), str(s["n_groups"]), *[f"{100 * s['proportions'][c]:.1f}%" for c in classes],
                  f"{s['max_abs_dev_pp']:.2f}")
    out.print(t)
    leaks = [x for x in r["leakage"] if x["shared_groups"]]
    if not r["leakage"]:
        out.print("leakage check: the manifest has no patient_id / lesion_id, so it cannot be checked")
    elif not leaks:
        cols = sorted({x["column"] for x in r["leakage"]})
        out.print(f"leakage check: [green]0 shared groups[/green] ({', '.join(cols)}) between train / val / test")
    else:
        lt = Table("column", "fold", "pair", "shared groups", "images sharing", "fraction", title="[red]leakage[/red]")
        for x in leaks:
            frac = next(v for k, v in x.items() if k.startswith("fraction_of_"))
            lt.add_row(x["column"], str(x["fold"]), x["pair"], str(x["shared_groups"]), str(x["images_sharing"]), f"{100 * frac:.1f}%")
        out.print(lt)
        warn(f"{r['shared_groups_total']} group(s) shared across subsets: scores on the later subset are inflated")
