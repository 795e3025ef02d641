"""``robustness.html``: a self-contained page (figures embedded as data URIs, inline CSS, no scripts), built from
:func:`robustness_section`, an HTML fragment the evaluation report can also embed."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lesionkit.fsio import write_text_atomic

__all__ = ["robustness_section", "write_report"]

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:.9em}th,td{border-bottom:1px solid #ddd;padding:.25em .6em;
text-align:right}th.l,td.l{text-align:left}.muted{color:#777}.neg{color:#b00}.pos{color:#060}img{max-width:100%}
h2{margin-top:1.6em;border-bottom:1px solid #ccc}code{background:#f4f4f4;padding:0 .2em}"""


def _pct(v: float, signed: bool = False) -> str:
    if v is None or not np.isfinite(v):
        return "—"
    return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}"


def _ci(lo: float, hi: float, signed: bool = False) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return ""
    return f' <span class="muted">[{_pct(lo, signed)}, {_pct(hi, signed)}]</span>'


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def robustness_section(record: Mapping[str, Any], summary: pd.DataFrame, plots: Mapping[str, Path]) -> str:
    """HTML fragment: settings, the overall table (accuracy and AUC in percent with 95 % CIs and deltas in points),
    per-group accuracy deltas, and the figures."""
    out = ['<section id="robustness"><h2>Robustness</h2>',
           (f"<p>Protocol <code>{html.escape(str(record.get('protocol')))}</code>; corruptions "
           f"{html.escape(', '.join(record.get('corruptions', [])))}; corruption seed "
           f"{html.escape(str(record.get('config', {}).get('seed')))}; "
           f"{html.escape(str(record.get('inputs', {}).get('n')))} {html.escape(str(record.get('inputs', {}).get('subset')))} "
           f"images. Corruptions are applied to the 8-bit images before normalisation, identically for every model "
           f"(keyed by seed and sample_id). Values in percent; Δ = corrupted − clean in points, paired cluster-bootstrap "
           f"95% CIs in brackets.</p>")]
    s = summary[summary["group_col"] == "all"]
    head = ["protocol", "corruption", "level", "n", "accuracy", "Δ accuracy", "AUC", "Δ AUC"]
    rows = []
    keyed = s.set_index(["protocol", "corruption", "level", "metric"], drop=False)
    seen = []
    for _, r in s.iterrows():
        k = (r["protocol"], r["corruption"], r["level"])
        if k not in seen:
            seen.append(k)
    for proto, cor, lv in seen:
        cells = [html.escape(str(proto)), html.escape(str(cor)), "—" if pd.isna(lv) else f"{lv:g}"]
        acc = s[(s["protocol"] == proto) & (s["corruption"] == cor) & ((s["level"] == lv) | (pd.isna(lv) & s["level"].isna()))]
        n = int(acc["n"].iloc[0])
        cells.append(str(n))
        for m in ("accuracy", "auc"):
            e = acc[acc["metric"] == m].iloc[0]
            cells.append(_pct(e["value"]) + _ci(e["ci_low"], e["ci_high"]))
            cls = "neg" if np.isfinite(e["delta"]) and e["delta"] < 0 else "pos"
            cells.append(f'<span class="{cls}">{_pct(e["delta"], True)}</span>' + _ci(e["delta_ci_low"], e["delta_ci_high"], True)
                         if np.isfinite(e["delta"]) else "—")
        rows.append(cells)
    del keyed
    out.append(_table(head, rows, left=2))
    g = summary[(summary["group_col"] != "all") & (summary["metric"] == "accuracy")]
    if not g.empty:
        groups = list(dict.fromkeys(g["group"].tolist()))
        col = str(g["group_col"].iloc[0])
        out.append(f"<h3>Accuracy per skin-tone group ({html.escape(col)}): value and Δ vs clean</h3>")
        grows = []
        for proto, cor, lv in seen:
            sel = g[(g["protocol"] == proto) & (g["corruption"] == cor) & ((g["level"] == lv) | (pd.isna(lv) & g["level"].isna()))]
            cells = [html.escape(str(proto)), html.escape(str(cor)), "—" if pd.isna(lv) else f"{lv:g}"]
            for gr in groups:
                e = sel[sel["group"] == gr]
                if e.empty:
                    cells.append("—")
                    continue
                e = e.iloc[0]
                d = f' <span class="muted">({_pct(e["delta"], True)})</span>' if np.isfinite(e["delta"]) else ""
                cells.append(_pct(e["value"]) + d)
            grows.append(cells)
        ns = {gr: int(g[g["group"] == gr]["n"].iloc[0]) for gr in groups}
        out.append(_table(["protocol", "corruption", "level"] + [f"{html.escape(gr)} (n={ns[gr]})" for gr in groups],
                          grows, left=2))
    for name, p in plots.items():
        out.append(f"<h3>{html.escape(name)}</h3>" + _img(p, name))
    out.append("</section>")
    return "\n".join(out)


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    h = "".join(f'<th class="{"l" if i < left else ""}">{c}</th>' for i, c in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def write_report(path: Path, record: Mapping[str, Any], summary: pd.DataFrame, plots: Mapping[str, Path]) -> Path:
    """Write ``robustness.html`` (atomic)."""
    ck = record.get("checkpoint", {})
    body = robustness_section(record, summary, plots)
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>lesionkit robustness</title><style>{CSS}</style>"
           f"</head><body><h1>lesionkit robustness</h1><p class='muted'>checkpoint {html.escape(str(ck.get('path')))} "
           f"(sha256 {html.escape(str(ck.get('sha256', ''))[:16])}…), device {html.escape(str(record.get('device')))}</p>"
           f"{body}</body></html>\n")
    write_text_atomic(path, doc)
    return Path(path)
