"""``manifest show``: schema, class counts per split, grouping columns, provenance chain."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from rich.table import Table

from lesionkit.console import out
from lesionkit.manifest.io import read_manifest
from lesionkit.manifest.schema import COLUMNS, dtype_name


def show_manifest(path: Path, rows: int = 0) -> None:
    m = read_manifest(path)
    df = m.df
    out.print(f"[bold]{path}[/bold]: {len(df)} rows, {len(df.columns)} columns, dataset {m.extra.get('dataset', '?')}")

    schema = Table("column", "dtype", "non-null", "unique", "contract", title="schema")
    for c in df.columns:
        s = df[c]
        contract = "core" if c in COLUMNS else "extra"
        schema.add_row(c, dtype_name(s), f"{int(s.notna().sum())}", f"{s.nunique(dropna=True)}", contract)
    out.print(schema)

    split = df["split"].astype("string").fillna("(none)") if df["split"].notna().any() else pd.Series("(all)", index=df.index)
    lab = df["label"]
    counts = pd.crosstab(lab.map(lambda i: m.classes[int(i)] if pd.notna(i) and 0 <= int(i) < len(m.classes) else "(unlabelled)"), split)
    t = Table("class", *map(str, counts.columns), "total", "%", title="class counts by official split")
    total = counts.to_numpy().sum()
    for name, r in counts.iterrows():
        t.add_row(str(name), *[str(int(v)) for v in r], str(int(r.sum())), f"{100 * r.sum() / total:.1f}")
    out.print(t)

    groups = Table("grouping column", "groups", "images/group (max)", title="groups")
    for g in ("patient_id", "lesion_id"):
        if df[g].notna().any():
            vc = df[g].value_counts()
            groups.add_row(g, str(len(vc)), f"{len(df[g].dropna()) / len(vc):.2f} ({int(vc.max())})")
    if groups.row_count:
        out.print(groups)
    if df["fitzpatrick"].notna().any():
        out.print("human fitzpatrick: " + ", ".join(f"{int(k)}: {v}" for k, v in df["fitzpatrick"].value_counts().sort_index().items())
                  + f", unknown: {int(df['fitzpatrick'].isna().sum())}")

    out.print("[bold]provenance[/bold] (oldest first)")
    for i, p in enumerate(m.provenance):
        out.print(f"  #{i} [bold]{p.get('stage', '?')}[/bold]  lesionkit {p.get('lesionkit_version', '?')}  {p.get('time_utc', '?')}", highlight=False)
        cfg = {k: v for k, v in p.get("config", {}).items() if v not in (None, [], False)}
        out.print("     config: " + json.dumps(cfg, default=str), highlight=False, markup=False)
        for x in p.get("inputs", []):
            digest = x.get("sha256") or x.get("names_sizes_sha256") or ""
            extra = f", {x['files']} files" if "files" in x else ""
            out.print(f"     input: {x.get('path')} ({x.get('kind')}, {x.get('bytes')} bytes{extra}, sha256 {digest[:16]})", highlight=False, markup=False)
    if rows:
        out.print(df.head(rows).to_string())
