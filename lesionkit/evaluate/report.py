"""``report.html``: one self-contained file (PNG figures embedded as base64 data URIs, inline CSS, no scripts)
with the summary, the tables of ``metrics.json``, the figures, the configuration and the provenance."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["fmt", "fmt_ci", "render_report"]

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222;
line-height:1.4;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{margin-bottom:6px}table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}tr.nc td{color:#888;font-style:italic}.muted{color:#777;font-size:12px}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:8px 0}
img{max-width:100%;border:1px solid #eee;margin:6px 0}pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}
.kpi{display:inline-block;border:1px solid #ddd;border-radius:6px;padding:8px 14px;margin:4px;min-width:150px}
.kpi b{display:block;font-size:1.35em}
"""


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if v.is_integer() and abs(v) >= 1 else f"{v:.{digits}f}"
    return html.escape(str(v))


def fmt_ci(e: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``0.912 [0.880, 0.940]`` from a CI entry (estimate, ci_low, ci_high)."""
    if not e:
        return "—"
    s = fmt(e.get("estimate"), digits)
    if e.get("ci_low") is not None:
        s += f' <span class="muted">[{fmt(e["ci_low"], digits)}, {fmt(e["ci_high"], digits)}]</span>'
    return s


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, row_class: Sequence[str] | None = None) -> str:
    h = "".join(f'<th class="{"l" if i < left else ""}">{c}</th>' for i, c in enumerate(header))
    body = []
    for r, cells in enumerate(rows):
        cls = f' class="{row_class[r]}"' if row_class and row_class[r] else ""
        body.append(f"<tr{cls}>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(cells))
                    + "</tr>")
    return f"<table><tr>{h}</tr>{''.join(body)}</table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _kpi(label: str, e: Mapping[str, Any] | None) -> str:
    return f'<div class="kpi">{html.escape(label)}<b>{fmt_ci(e)}</b></div>'


def _binary_section(b: Mapping[str, Any]) -> str:
    parts = [f"<h2>Binary target: {html.escape(b['name'])}</h2>",
             (f"<p>Positive = {html.escape(', '.join(b['positive_classes']))}; "
             f"n = {fmt(b['n'])}, positives = {fmt(b['n_pos'])}. Intervals: bootstrap 95% CI.</p>")]
    ci = b["ci"]
    rows = [[html.escape(k.replace("_", " ")), fmt_ci(ci.get(k), 4)] for k in ("auc", "pauc", "average_precision", "brier")]
    rows[1][0] = f"pAUC above TPR {b['pauc_min_tpr']:g} (max {b['pauc_max']:g}, ISIC 2024)"
    parts.append(_table(["metric", "value [95% CI]"], rows))
    thr = b["threshold"]
    note = (f"Threshold {thr['method']}"
            + (f" (target sensitivity {thr['target_sensitivity']:g})" if thr.get("target_sensitivity") else "")
            + f" = {thr['threshold']:.4f}, chosen on {html.escape(thr['chosen_on'])} predictions "
              f"(n = {thr['n']}, sensitivity {fmt(thr['sensitivity'])}, specificity {fmt(thr['specificity'])}).")
    parts.append(f"<p>{note}</p>")
    if thr["chosen_on"] != "val" or b.get("threshold_warning"):
        parts.append(f'<p class="note">{html.escape(b.get("threshold_warning") or "threshold not chosen on validation")}</p>')
    keys = ("sensitivity", "specificity", "ppv", "npv", "f1", "f2", "balanced_accuracy")
    rows = []
    for label, key in (("0.5", "at_0.5"), (f"{thr['method']} {thr['threshold']:.4f}", "at_threshold")):
        t = b[key]
        rows.append([html.escape(label)] + [fmt_ci(t["ci"].get(k)) for k in keys])
    parts.append(_table(["threshold", *[k.replace("_", " ") for k in keys]], rows))
    return "".join(parts)


def _multiclass_section(mc: Mapping[str, Any], classes: Sequence[str]) -> str:
    ci = mc["ci"]
    keys = ("accuracy", "balanced_accuracy", "auc_macro_ovr", "auc_weighted_ovr", "log_loss", "brier")
    rows = [[k.replace("_", " "), fmt_ci(ci.get(k), 4)] for k in keys]
    rows.append(["expected calibration error (top label)", fmt(mc.get("ece"), 4)])
    out = ["<h2>Multi-class</h2>", _table(["metric", "value [95% CI]"], rows)]
    if mc.get("null_reasons"):
        out.append("<p class='muted'>" + "; ".join(f"{html.escape(k)}: {html.escape(v)}" for k, v in mc["null_reasons"].items()) + "</p>")
    pk = ("support", "auc", "sensitivity", "specificity", "ppv", "npv", "f1")
    prow = [[html.escape(c)] + [fmt(mc["per_class"][c].get(k)) for k in pk] for c in classes]
    out += ["<h3>Per class (one-vs-rest; thresholded at argmax)</h3>", _table(["class", *pk], prow)]
    return "".join(out)


def _group_table(t: Mapping[str, Any]) -> str:
    metrics = list(t["gaps"].keys())
    binary = t["task"] == "binary"
    head = ["group", "n"] + (["positives"] if binary else []) + [m.replace("_", " ") for m in metrics]
    rows, cls = [], []
    for g in t["groups"]:
        rows.append([html.escape(g["group"]), fmt(g["n"])] + ([fmt(g["n_pos"])] if binary else [])
                    + [fmt_ci(g["metrics"][m]) for m in metrics])
        cls.append("" if g["compared"] else "nc")
    gap_row = ["<b>gap (max − min)</b>", "", *([""] if binary else [])]
    gap_row += [fmt_ci(t["gaps"][m]) + (f"<br><span class='muted'>worst: {html.escape(str(t['gaps'][m]['worst_group']))}</span>"
                                         if t["gaps"][m].get("worst_group") else "") for m in metrics]
    rows.append(gap_row)
    cls.append("")
    html_t = _table(head, rows, row_class=cls)
    if binary:
        html_t += (f"<p>Equal-opportunity difference (TPR gap): {fmt_ci(t['equal_opportunity_difference'])}; "
                   f"equalized-odds difference: {fmt_ci(t['equalized_odds_difference'])} "
                   f"(threshold {t['threshold']:.4f}).</p>")
    return html_t


def _groups_section(groups: Mapping[str, Any], skipped: Mapping[str, str], plots: Mapping[str, Path]) -> str:
    out = ["<h2>Subgroups</h2>",
           ("<p class='muted'>Bootstrap 95% CIs from the same resamples for every group and gap. Grey italic rows are "
           "not compared (missing value or fewer samples than --min-group-size). Gap = max − min over compared groups; "
           "worst = lowest group. A gap is never negative, so resampling biases it upward: when groups are close its "
           "percentile interval can lie above the point estimate.</p>")]
    for col, t in groups.items():
        out.append(f"<h3>{html.escape(col)}</h3>" + _group_table(t))
        if t.get("multiclass"):
            out.append("<p class='muted'>Multi-class metrics by group:</p>" + _group_table(t["multiclass"]))
        if col in plots:
            out.append(_img(plots[col], f"metrics by {col}"))
    if skipped:
        out.append("<p class='muted'>Not evaluated: " + "; ".join(f"{html.escape(k)} ({html.escape(v)})" for k, v in skipped.items()) + "</p>")
    return "".join(out)


def render_report(metrics: Mapping[str, Any], plots: Mapping[str, Path], group_plots: Mapping[str, Path],
                  title: str = "lesionkit evaluation") -> str:
    """The report as one HTML string (figures embedded)."""
    inp = metrics["inputs"]
    classes = metrics["classes"]
    parts = [(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body>"),
             f"<h1>{html.escape(title)}</h1>",
             (f"<p class='muted'>run {html.escape(str(inp['run']))} · split {html.escape(str(inp['split']))} · "
             f"{inp['n']} samples · checkpoint {html.escape(str(metrics['config']['checkpoint']))} · TTA "
             f"{html.escape(str(metrics['config']['tta']))} · {len(inp['checkpoints'])} model(s) · lesionkit "
             f"{html.escape(str(metrics['lesionkit_version']))} · {html.escape(str(metrics['created']))}</p>")]
    mc = metrics["multiclass"]
    kpis = [_kpi("accuracy", mc["ci"].get("accuracy")), _kpi("balanced accuracy", mc["ci"].get("balanced_accuracy")),
            _kpi("macro AUC (OvR)", mc["ci"].get("auc_macro_ovr"))]
    b = metrics.get("binary")
    if b:
        kpis += [_kpi(f"{b['name']} AUC", b["ci"].get("auc")), _kpi(f"pAUC (TPR ≥ {b['pauc_min_tpr']:g})", b["ci"].get("pauc")),
                 _kpi(f"sensitivity @ {b['threshold']['method']}", b["at_threshold"]["ci"].get("sensitivity")),
                 _kpi(f"specificity @ {b['threshold']['method']}", b["at_threshold"]["ci"].get("specificity"))]
    parts.append("<div>" + "".join(kpis) + "</div>")
    bs = metrics["bootstrap"]
    parts.append(f"<p class='muted'>95% CIs: {bs['n_boot']} bootstrap replicates resampling {html.escape(bs['unit'])}s "
                 f"({bs['n_clusters']} clusters), seed {bs['seed']}, percentile intervals.</p>")
    if b:
        parts.append(_binary_section(b))
    parts.append(_multiclass_section(mc, classes))
    for key, label in (("roc", "ROC curves"), ("pr", "Precision–recall curves"), ("confusion", "Confusion matrix"),
                       ("reliability", "Reliability diagram")):
        if key in plots:
            parts.append(f"<h3>{label}</h3>{_img(plots[key], label)}")
    mcp = metrics.get("most_confused") or []
    if mcp:
        rows = [[html.escape(r["true"]), html.escape(r["pred"]), fmt(r["mean_count"], 1), fmt(r["mean_rate"])] for r in mcp]
        parts.append(f"<h3>Most confused pairs (averaged over {mcp[0]['n_matrices']} model(s))</h3>"
                     + _table(["true", "predicted as", "mean count", "mean rate (of true class)"], rows, left=2))
    if metrics.get("members") and len(metrics["members"]) > 1:
        rows = [[html.escape(m["run"]), html.escape(m["checkpoint"]), fmt(m.get("accuracy")), fmt(m.get("auc_macro_ovr")),
                 fmt(m.get("binary_auc"))] for m in metrics["members"]]
        parts.append(f"<h3>Ensemble members ({html.escape(str(metrics['config']['ensemble_method']))})</h3>"
                     + _table(["run", "checkpoint", "accuracy", "macro AUC", "binary AUC"], rows, left=2))
    if metrics.get("groups") or metrics.get("groups_skipped"):
        parts.append(_groups_section(metrics.get("groups", {}), metrics.get("groups_skipped", {}), group_plots))
    parts.append("<h2>Inputs and provenance</h2>")
    rows = [["run(s)", html.escape(", ".join(inp["runs"]))], ["manifest", html.escape(str(inp["manifest"]["path"]))],
            ["manifest fingerprint", html.escape(str(inp["manifest"]["fingerprint"]))],
            ["split", html.escape(str(inp["split"]))]]
    if inp.get("splits"):
        rows.append(["splits file", html.escape(json.dumps(inp["splits"]))])
    for c in inp["checkpoints"]:
        rows.append([f"checkpoint ({html.escape(c['run_name'])})",
                     f"{html.escape(c['path'])}<br><span class='muted'>sha256 {c['sha256']} · epoch {c.get('epoch')}</span>"])
    parts.append(_table(["", ""], rows))
    parts.append("<h3>Configuration</h3><pre>" + html.escape(json.dumps(metrics["config"], indent=2)) + "</pre>")
    parts.append("<h3>Target</h3><pre>" + html.escape(json.dumps(metrics["target"], indent=2)) + "</pre>")
    parts.append("<p class='muted'>All numbers are in metrics.json next to this file; predictions in predictions.parquet.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
