#!/usr/bin/env python3
"""One self-contained HTML page for an `xfer train` run or sweep.

  report.py RUN_DIR [--data DATA] [--features DIR] [--out RUN_DIR/report.html]

The page shows the settings (run.json), the learning curves (curves.png, or
an inline SVG drawn from history.json), for a sweep the table of
configurations sorted by best validation accuracy (summary.csv, else each
folder's history.json), the confusion matrix (metrics.json) and a grid of the
misclassified validation images with their true and predicted classes.

The misclassified images are found here, in numpy: the run's head
(head.safetensors, the best epoch) is applied to the validation split of the
features folder named in run.json, and the thumbnails are read from DATA (the
Parquet `path` column is relative to it). A head whose metadata does not match
the features' is reported on the page instead of giving wrong pictures.

Everything is inline: CSS in a <style> block, images as base64 data URIs,
charts as SVG, no script and no link to anything, so the file opens from disk
with no server and no network. Every name that comes from a file (paths, class
names, settings) goes through html.escape: a file named
`<img src=x onerror=alert(1)>.jpg` shows as text.

Needs numpy, pyarrow and pillow (scripts/requirements-dev.txt).
"""
import argparse
import base64
import csv
import datetime
import html
import io
import json
import math
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from xferexport import ExportError  # noqa: E402
from xferexport.classifier import load_head  # noqa: E402

VAL_KEYS = ("val_split", "val", "validation")  # run.json of xfer train: val_split
PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04",
           "#db2777", "#4b5563", "#65a30d"]
CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1200px;
 padding:0 16px;color:#1f2937;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb;
 padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.sub{color:#6b7280;font-size:12px}.note{background:#fef3c7;border:1px solid #fcd34d;padding:6px 10px;
 border-radius:4px;margin:8px 0}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #e5e7eb;padding:3px 8px;text-align:left;
 vertical-align:top}th{background:#f9fafb;font-weight:600}
table.kv td:first-child{color:#4b5563;white-space:nowrap}table.kv td{font-family:ui-monospace,monospace;
 font-size:12px;word-break:break-all}
table.num td{text-align:right;font-variant-numeric:tabular-nums}table.num td:first-child{text-align:left}
tr.best td{background:#ecfdf5;font-weight:600}
table.cm td{text-align:center;min-width:34px;font-variant-numeric:tabular-nums}
table.cm th.col{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;font-weight:500;
 padding:6px 2px}
table.cm th.row{white-space:nowrap;font-weight:500}
.charts{display:flex;flex-wrap:wrap;gap:16px}.charts svg{border:1px solid #e5e7eb;background:#fff}
img.curves{max-width:100%;border:1px solid #e5e7eb}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.card{border:1px solid #e5e7eb;border-radius:4px;padding:6px;font-size:12px;overflow-wrap:anywhere}
.card .thumb{height:128px;display:flex;align-items:center;justify-content:center;background:#f3f4f6;
 margin-bottom:4px}.card .thumb img{max-width:100%;max-height:128px}
.card .true{color:#15803d}.card .pred{color:#b91c1c}.card .path{color:#6b7280}
details{margin:8px 0}summary{cursor:pointer;font-weight:600}
"""


class ReportError(Exception):
    """A user-facing failure, printed as one line (exit 1)."""


def esc(x):
    return html.escape(str(x), quote=True)


# inputs ---------------------------------------------------------------------

def read_json(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ReportError(f"{path}: cannot read JSON: {e}") from None


def load_run(folder):
    """The files of one run folder (missing ones are None)."""
    png = os.path.join(folder, "curves.png")
    curves = None
    if os.path.exists(png):
        with open(png, "rb") as f:
            curves = f.read()
    head = os.path.join(folder, "head.safetensors")
    return {
        "dir": folder,
        "name": os.path.basename(os.path.normpath(folder)),
        "settings": read_json(os.path.join(folder, "run.json")),
        "history": read_json(os.path.join(folder, "history.json")),
        "metrics": read_json(os.path.join(folder, "metrics.json")),
        "curves_png": curves,
        "head": head if os.path.exists(head) else None,
    }


def best_val(history):
    """(best val_accuracy, its epoch from 1), first maximum as Keras's checkpoint keeps it."""
    vals = (history or {}).get("val_accuracy") or []
    vals = [v for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return None, None
    i = int(np.argmax(vals))
    return float(vals[i]), i + 1


def to_number(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def load_sweep(folder):
    """(header, rows, run folders by row, accuracy column) for a sweep folder.

    Rows come from summary.csv when present; the column that names each
    configuration's folder is the one whose values are sub-folders. Without
    summary.csv the rows are the sub-folders holding a history.json.
    """
    subdirs = sorted(d for d in os.listdir(folder)
                     if os.path.isfile(os.path.join(folder, d, "history.json")))
    path = os.path.join(folder, "summary.csv")
    if os.path.exists(path):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header, rows = list(reader.fieldnames or []), list(reader)
    else:
        header, rows = ["run"], [{"run": d} for d in subdirs]
    def sub(r, c):
        name = os.path.basename(str(r.get(c) or "").rstrip("/"))
        return os.path.join(folder, name) if name and os.path.isdir(os.path.join(folder, name)) else None

    hits = {c: sum(sub(r, c) is not None for r in rows) for c in header}
    dir_col = max(header, key=lambda c: hits[c], default=None)
    if dir_col is not None and hits[dir_col] == 0:
        dir_col = None
    runs = [load_run(sub(r, dir_col)) if dir_col and sub(r, dir_col) else None for r in rows]
    acc_col = next((c for c in ("best_val_accuracy", "val_accuracy_best", "best_val_acc", "val_accuracy")
                    if c in header), None)
    if acc_col is None:
        acc_col = "best_val_accuracy"
        header.append(acc_col)
        for r, run in zip(rows, runs):
            b, _ = best_val(run["history"]) if run else (None, None)
            r[acc_col] = "" if b is None else f"{b:.4f}"
    order = sorted(range(len(rows)), key=lambda i: -(to_number(rows[i].get(acc_col)) or -1.0))
    return header, [rows[i] for i in order], [runs[i] for i in order], acc_col


def find_features(run, override):
    """The features folder: --features, else run.json's entry (relative to the
    current folder, then to the run folder)."""
    if override:
        return override
    s = run["settings"] or {}
    f = s.get("features") or s.get("features_dir")
    if not f:
        return None
    for base in ("", run["dir"], os.path.dirname(os.path.normpath(run["dir"]))):
        p = os.path.join(base, f)
        if os.path.isdir(p):
            return p
    return f


def split_files(features, split):
    single = os.path.join(features, f"{split}.parquet")
    if os.path.exists(single):
        return [single]
    pat = re.compile(re.escape(split) + r"-(\d+)-of-(\d+)\.parquet$")
    shards = sorted((int(m.group(1)), os.path.join(features, n)) for n in os.listdir(features)
                    if (m := pat.match(n)))
    return [p for _, p in shards]


def read_split(features, split):
    """(paths, labels, X [n, D] float32, metadata dict) of a split."""
    import pyarrow.parquet as pq

    if not os.path.isdir(features):
        raise ReportError(f"features folder {features} does not exist")
    files = split_files(features, split)
    if not files:
        raise ReportError(f"{features}: no {split}.parquet (nor shards)")
    paths, labels, xs, meta = [], [], [], {}
    for p in files:
        t = pq.read_table(p, columns=["path", "label", "features"])
        meta = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()
                if k.decode().startswith("xfer.")}
        paths += t.column("path").to_pylist()
        labels += t.column("label").to_pylist()
        col = t.column("features").combine_chunks()
        d = col.type.list_size
        xs.append(col.flatten().to_numpy(zero_copy_only=False).reshape(-1, d))
    return paths, np.asarray(labels), np.concatenate(xs).astype(np.float32), meta


def head_probabilities(layers, x):
    """softmax of the head's logits, per-row max subtracted (float64)."""
    z = x.astype(np.float64)
    for kernel, bias, relu in layers:
        z = z @ kernel.astype(np.float64) + bias
        if relu:
            z = np.maximum(z, 0.0)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def misclassified(run, features, data, val_split):
    """(list of (path, true, predicted, p_pred, p_true), total, note, confusion)."""
    if not run["head"]:
        return [], 0, f"no head.safetensors in {run['dir']}", None
    if not features:
        return [], 0, "run.json names no features folder (pass --features)", None
    try:
        layers, hmeta, classes = load_head(run["head"])
        paths, labels, x, fmeta = read_split(features, val_split)
    except (ExportError, ReportError, OSError) as e:
        return [], 0, str(e), None
    for key in ("xfer.classes", "xfer.model_sha256", "xfer.size", "xfer.preprocess", "xfer.dim"):
        if key in fmeta and key in hmeta and fmeta[key] != hmeta[key]:
            return [], 0, (f"the head does not belong to {features}: {key} is {hmeta[key]!r} in the head, "
                           f"{fmeta[key]!r} in the features"), None
    if x.shape[1] != layers[0][0].shape[0]:
        return [], 0, f"features have {x.shape[1]} numbers, the head takes {layers[0][0].shape[0]}", None
    probs = head_probabilities(layers, x)
    pred = probs.argmax(axis=1)
    n = len(classes)
    conf = np.zeros((n, n), dtype=int)
    np.add.at(conf, (labels, pred), 1)
    wrong = np.flatnonzero(pred != labels)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")]  # confident mistakes first
    rows = [(paths[i], classes[labels[i]], classes[pred[i]], float(probs[i, pred[i]]),
             float(probs[i, labels[i]])) for i in wrong]
    note = None if data else "no --data: thumbnails not shown"
    return rows, len(labels), note, {"classes": classes, "confusion": conf.tolist(),
                                    "accuracy": float((pred == labels).mean()) if len(labels) else 0.0}


def thumbnail(path, side):
    """JPEG data URI of the image scaled to fit side x side, or None."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((side, side))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# rendering ------------------------------------------------------------------

def kv_table(settings):
    """Settings as a key/value table; nested objects become nested tables."""
    if not settings:
        return '<p class="sub">no run.json</p>'

    def cell(v):
        if isinstance(v, dict) and v:
            return kv_table(v)
        return esc(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))

    rows = "".join(f"<tr><td>{esc(k)}</td><td>{cell(v)}</td></tr>" for k, v in settings.items())
    return f'<table class="kv">{rows}</table>'


# The settings a person compares between runs, shown first; the whole of
# run.json follows, folded.
KEY_SETTINGS = ("lr", "epochs", "batch_size", "seed", "head.inner", "head.dropout", "shuffle", "init",
                "features", "train_split", "val_split", "status", "message")


def settings_html(settings):
    if not settings:
        return '<p class="sub">no run.json</p>'

    def lookup(key):
        v = settings
        for part in key.split("."):
            if not isinstance(v, dict) or part not in v:
                return None, False
            v = v[part]
        return v, True

    key = {k: v for k in KEY_SETTINGS for v, found in [lookup(k)] if found and v is not None}
    if not key:
        return kv_table(settings)
    return (kv_table(key) + "<details><summary>all of run.json</summary>" + kv_table(settings)
            + "</details>")


def nice_ticks(lo, hi, count=5):
    """Round tick values (1, 2, 5 x 10^k apart) covering [lo, hi]."""
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    n = int(math.ceil((hi - first) / step - 1e-9))
    return [first + k * step for k in range(n + 1)]


def svg_chart(title, series, width=540, height=300, ylim=None):
    """A line chart as inline SVG; the legend sits under the plot, so it never
    hides a line. series: [(label, values, color, dashed)]."""
    series = [(lbl, [v if isinstance(v, (int, float)) and math.isfinite(v) else None for v in vals], c, d)
              for lbl, vals, c, d in series if vals]
    if not series:
        return ""
    per_row = max(1, (width - 60) // 170)
    legend_rows = math.ceil(len(series) / per_row)
    left, right, top, bottom = 52, 14, 28, 40 + 18 * legend_rows
    height += 18 * legend_rows
    epochs = max(len(v) for _, v, _, _ in series)
    finite = [v for _, vals, _, _ in series for v in vals if v is not None]
    lo, hi = ylim or (min(finite, default=0.0), max(finite, default=1.0))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    ticks = nice_ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    pw, ph = width - left - right, height - top - bottom

    def sx(i):
        return left + (pw * i / (epochs - 1) if epochs > 1 else pw / 2)

    def sy(v):
        return top + ph * (1 - (v - lo) / (hi - lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="17" font-size="13" font-weight="600">{esc(title)}</text>']
    for v in ticks:
        y = sy(v)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{v:.4g}</text>')
    step = max(1, math.ceil(epochs / 10))
    for i in range(0, epochs, step):
        out.append(f'<text x="{sx(i):.1f}" y="{top + ph + 15}" text-anchor="middle" fill="#555">{i + 1}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{top + ph + 30}" text-anchor="middle" fill="#555">epoch</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for n, (lbl, vals, color, dashed) in enumerate(series):
        pts = " ".join(f"{sx(i):.1f},{sy(v):.1f}" for i, v in enumerate(vals) if v is not None)
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for i, v in enumerate(vals):
            if v is not None:
                out.append(f'<circle cx="{sx(i):.1f}" cy="{sy(v):.1f}" r="2.5" fill="{color}"/>')
        lx = left + 170 * (n % per_row)
        y = top + ph + 52 + 18 * (n // per_row)
        out.append(f'<line x1="{lx}" x2="{lx + 22}" y1="{y - 4}" y2="{y - 4}" stroke="{color}" '
                   f'stroke-width="2"{dash}/><text x="{lx + 27}" y="{y}" fill="#333">{esc(lbl)}</text>')
    out.append("</svg>")
    return "".join(out)


def curves_html(run):
    h = run["history"] or {}
    if run["curves_png"]:
        uri = "data:image/png;base64," + base64.b64encode(run["curves_png"]).decode("ascii")
        return f'<img class="curves" alt="learning curves" src="{uri}">'
    if not h:
        return '<p class="sub">no history.json</p>'
    loss = svg_chart("loss", [("train loss", h.get("loss"), PALETTE[0], False),
                              ("val loss", h.get("val_loss"), PALETTE[1], True)])
    acc = svg_chart("accuracy", [("train accuracy", h.get("accuracy"), PALETTE[0], False),
                                 ("val accuracy", h.get("val_accuracy"), PALETTE[1], True)])
    return f'<div class="charts">{loss}{acc}</div>'


def fmt(v):
    return f"{v:.4f}" if isinstance(v, float) else esc(v)


def per_class(metrics, classes):
    """[(class, {precision, recall, f1, support})] from the forms eval may write."""
    pc = metrics.get("per_class") or metrics.get("classes_metrics")
    if isinstance(pc, dict):
        return [(c, pc.get(c) or {}) for c in classes]
    if isinstance(pc, list) and all(isinstance(r, dict) for r in pc):
        return [(r.get("class", c), r) for c, r in zip(classes, pc)]
    keys = [k for k in ("precision", "recall", "f1", "support") if isinstance(metrics.get(k), list)]
    if keys:
        return [(c, {k: metrics[k][i] for k in keys if i < len(metrics[k])}) for i, c in enumerate(classes)]
    return []


def confusion_html(metrics):
    """The confusion matrix (rows = true class) as a shaded HTML table, plus
    per-class precision / recall / F1 when the metrics hold them."""
    classes, conf = metrics.get("classes"), metrics.get("confusion")
    if not (isinstance(classes, list) and isinstance(conf, list) and len(conf) == len(classes)):
        return '<p class="sub">no confusion matrix</p>'
    out = ['<table class="cm"><tr><th>true \\ predicted</th>']
    out += [f'<th class="col">{esc(c)}</th>' for c in classes]
    out.append("<th>n</th></tr>")
    for i, (c, row) in enumerate(zip(classes, conf)):
        total = sum(row) or 1
        out.append(f'<tr><th class="row">{esc(c)}</th>')
        for j, v in enumerate(row):
            a = min(1.0, float(v) / total)
            rgb = "22,163,74" if i == j else "220,38,38"
            fg = "#fff" if a > 0.55 else "#111"
            out.append(f'<td style="background:rgba({rgb},{a:.2f});color:{fg}">{esc(v)}</td>')
        out.append(f"<td>{esc(sum(row))}</td></tr>")
    out.append("</table>")
    acc = metrics.get("accuracy")
    if isinstance(acc, (int, float)):
        out.insert(0, f"<p>accuracy <b>{acc:.4f}</b></p>")
    rows = per_class(metrics, classes)
    if rows:
        cols = [k for k in ("precision", "recall", "f1", "support") if any(k in r for _, r in rows)]
        out.append('<table class="num"><tr><th>class</th>' + "".join(f"<th>{k}</th>" for k in cols) + "</tr>")
        for c, r in rows:
            out.append(f'<tr><td style="text-align:left">{esc(c)}</td>' +
                       "".join(f"<td>{fmt(r.get(k, ''))}</td>" for k in cols) + "</tr>")
        out.append("</table>")
    return "".join(out)


def grid_html(rows, total, note, data, max_images, side):
    parts = []
    if note:
        parts.append(f'<p class="note">{esc(note)}</p>')
    if total:
        parts.append(f"<p>{len(rows)} of {total} validation images misclassified"
                     f"{f'; the {max_images} most confident mistakes shown' if len(rows) > max_images else ''}"
                     ".</p>")
    cards = []
    for path, true, pred, p_pred, p_true in rows[:max_images]:
        uri = thumbnail(os.path.join(data, path), side) if data else None
        img = f'<img alt="" src="{uri}">' if uri else '<span class="sub">no image</span>'
        cards.append(f'<div class="card"><div class="thumb">{img}</div>'
                     f'<div class="true">true: {esc(true)} ({p_true:.2f})</div>'
                     f'<div class="pred">predicted: {esc(pred)} ({p_pred:.2f})</div>'
                     f'<div class="path">{esc(path)}</div></div>')
    if cards:
        parts.append(f'<div class="grid">{"".join(cards)}</div>')
    return "".join(parts)


def run_section(run, args, full=True):
    """Settings, curves, confusion matrix and (full) the misclassified grid."""
    b, ep = best_val(run["history"])
    parts = []
    if b is not None:
        parts.append(f"<p>best val_accuracy <b>{b:.4f}</b> at epoch {ep} "
                     f"(head.safetensors holds that epoch)</p>")
    parts.append(f"<h3>Settings</h3>{settings_html(run['settings'])}")
    parts.append(f"<h3>Learning curves</h3>{curves_html(run)}")
    computed = None
    grid = ""
    if full:
        s = run["settings"] or {}
        val = next((s[k] for k in VAL_KEYS if isinstance(s.get(k), str)), "validation")
        rows, total, note, computed = misclassified(run, find_features(run, args.features), args.data, val)
        grid = f"<h3>Misclassified {esc(val)} images</h3>" + grid_html(
            rows, total, note, args.data, args.max_images, args.thumb)
    metrics = run["metrics"] or computed
    src = "metrics.json" if run["metrics"] else "computed here from the head and the features"
    if metrics:
        parts.append(f'<h3>Confusion matrix <span class="sub">({esc(src)}; rows = true class)</span></h3>'
                     + confusion_html(metrics))
    parts.append(grid)
    return "".join(parts)


def sweep_html(folder, args):
    header, rows, runs, acc_col = load_sweep(folder)
    out = [f"<h2>Sweep: {len(rows)} configurations, sorted by {esc(acc_col)}</h2><table class=\"num\"><tr>"]
    out += [f"<th>{esc(c)}</th>" for c in header] + ["</tr>"]
    for i, r in enumerate(rows):
        cls = ' class="best"' if i == 0 else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{esc(r.get(c, ''))}</td>" for c in header) + "</tr>")
    out.append("</table>")
    series = [(run["name"], (run["history"] or {}).get("val_accuracy"), PALETTE[i % len(PALETTE)], False)
              for i, run in enumerate(runs) if run and run["history"]]
    png = os.path.join(folder, "sweep.png")
    if os.path.exists(png):
        with open(png, "rb") as f:
            uri = "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")
        out.append(f'<img class="curves" alt="validation accuracy by configuration" src="{uri}">')
    elif series:
        out.append('<div class="charts">' + svg_chart("val accuracy by configuration", series,
                                                      width=760, height=340) + "</div>")
    baseline = read_json(os.path.join(folder, "baseline.json"))
    if isinstance(baseline, dict):
        out.append(f"<h3>Baseline (the same features)</h3>{kv_table(baseline)}")
    for i, run in enumerate(runs):
        if run is None:
            continue
        if i == 0:
            out.append(f"<h2>Best configuration: {esc(run['name'])}</h2>{run_section(run, args)}")
        else:
            out.append(f"<details><summary>{esc(run['name'])}</summary>{run_section(run, args, full=False)}"
                       "</details>")
    if all(r is None for r in runs):
        out.append('<p class="note">summary.csv names no sub-folder of this sweep</p>')
    return "".join(out)


def is_sweep(folder):
    return os.path.exists(os.path.join(folder, "summary.csv")) or (
        not os.path.exists(os.path.join(folder, "history.json")) and any(
            os.path.isfile(os.path.join(folder, d, "history.json")) for d in os.listdir(folder)))


def render(folder, args):
    name = os.path.basename(os.path.normpath(folder))
    body = sweep_html(folder, args) if is_sweep(folder) else "<h2>Run</h2>" + run_section(load_run(folder), args)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>xfer report: {esc(name)}</title><style>{CSS}</style></head><body>"
            f"<h1>xfer report: {esc(name)}</h1><div class=\"sub\">{esc(os.path.abspath(folder))} · "
            f"generated {esc(stamp)}{' · images from ' + esc(args.data) if args.data else ''}</div>"
            f"{body}</body></html>\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a run folder (history.json, run.json, ...) or a sweep folder (summary.csv)")
    p.add_argument("--data", help="the image folder the features were extracted from (thumbnails)")
    p.add_argument("--features", help="features folder (default: the one run.json names)")
    p.add_argument("--out", help="output HTML (default RUN/report.html)")
    p.add_argument("--max-images", type=int, default=120, help="most misclassified images shown")
    p.add_argument("--thumb", type=int, default=128, help="thumbnail side in pixels")
    args = p.parse_args(argv)
    out = args.out or os.path.join(args.run, "report.html")
    try:
        if not os.path.isdir(args.run):
            raise ReportError(f"{args.run} is not a folder")
        page = render(args.run, args)
        tmp = out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(page)
        os.replace(tmp, out)
    except (ReportError, OSError) as e:
        print(f"report.py: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
