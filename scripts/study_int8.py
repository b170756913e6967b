#!/usr/bin/env python3
"""The int8 study of issue 15: what `export_model.py quantize` costs in accuracy,
measured entirely with `xfer`, and how its calibration was chosen.

  study_int8.py [--data ../shared/clothing-dataset-small] [--seeds 1,2,3]
                [--parts calibration,accuracy] [--runs runs/study-int8]
                [--doc docs/accuracy-int8.md] [--report-only]

Part `calibration` (EfficientNet-Lite0, extraction at 150): for each method (minmax,
entropy, percentile) and number of calibration images (100, 300, 1000), one
calibration at the model's own side (224, quantize's default), written once as a
calibration cache and used for both weight settings (8-bit, and 7-bit with
--reduce-range: the ranges of the activations do not depend on the weights); each
int8 model's vectors of the validation images against the fp32 ones: cosine mean,
1st percentile and lowest; the calibration's wall time and peak RSS (GNU time). One
more row: quantize's defaults calibrated at 150, the side extracted.

Part `accuracy`: the models under the names `make model` and `make model QUANT=int8`
give them (fp32 exported when absent; int8 made with quantize's defaults, again where
the one there was made otherwise); `xfer extract` of DATA into the folders `make
features` uses, for EfficientNet-Lite0 at 150 and 299, fp32 and int8; where `xfer
extract --help` lists `--decode`, Lite0 150 fp32 and int8 with `--decode draft` as
well (features/<stem>-150-draft); per features folder and seed, the course's head
(Dense(10), Adam lr 0.01) and the best recipe of docs/accuracy-lite.md (Dense(100,
relu) + Dropout(0.2) + Dense(10), lr 0.001), 10 epochs, batch 32; the cosine of every
int8 vector to its fp32 one. Xception with random weights (seed 1, as `make model
WEIGHTS=random`): fp32 against int8 at 150, the cosine of the validation images only.
Goal: an int8 head at most 1 point below its fp32 one, per row.

Each command is printed, timed and logged (RUNS/<part>/commands.json); the report
cross-checks every run's files as study_lite0.py does and exits 1 on any
inconsistency. Run it under `nice -n 19` (make study-int8 does). With --report-only
nothing runs: the report is rebuilt from the run folders and the logs.
"""
import argparse
import datetime
import json
import os
import re
import shlex
import statistics
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_vectors import cosines  # noqa: E402
from study_lite0 import (  # noqa: E402  (the shared machinery of the Lite0 study)
    BATCH, DROPOUT, EPOCHS, INNER, PY, REPO, XFER, Study, cell, check_run,
    commands_and_checks, checkout_commit, duration, load_json, pct, repo_relative)

DEFAULT_DATA = "../shared/clothing-dataset-small"
GOAL_POINTS = 1.0
LITE0 = "models/efficientnet-lite0-imagenet.onnx"
XCEPTION = "models/xception-random-s1.onnx"
EXPORT = {LITE0: ["efficientnet-lite0"],
          XCEPTION: ["xception", "--weights", "random", "--seed", "1"]}
METHODS = ("minmax", "entropy", "percentile")
CALIB_IMAGES = (100, 300, 1000)
CALIB_SIZE = 224  # quantize's default for Lite0: the model's xfer.default_size
SIZES = (150, 299)
DRAFT_SIZE = 150
HEADS = [
    ("course", "course: Dense(10), lr 0.01", "0.01", []),
    ("best", f"best: Dense({INNER}, relu) + Dropout({DROPOUT}) + Dense(10), lr 0.001", "0.001",
     ["--inner", str(INNER), "--dropout", str(DROPOUT)]),
]
TIME_FORMAT = "study_int8 time: %e s, peak RSS %M KB"
FEATURES = "features"  # `make features`' folder (relative to the repository)


def int8_of(model):
    """The int8 copy's name as `make model QUANT=int8` gives it."""
    return model[:-len(".onnx")] + "-int8.onnx"


def stem(model):
    return os.path.splitext(os.path.basename(model))[0]


def tag_of(model, size, decode=None):
    """The features folder's name: <model stem>-<size>, as `make features` gives it,
    and -<decode> after it for a decode other than Keras's."""
    return f"{stem(model)}-{size}" + (f"-{decode}" if decode else "")


def draft_available(study):
    """Whether this xfer has `extract --decode` (issue 15's --decode draft)."""
    out = subprocess.run([os.path.join(REPO, XFER), "extract", "--help"], cwd=REPO,
                         env=study.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True).stdout
    return "--decode" in out


def quant_of(model):
    """The model's xfer.quant entry (a dict), or None."""
    import onnx

    props = {p.key: p.value for p in onnx.load(os.path.join(REPO, model),
                                                load_external_data=False).metadata_props}
    return json.loads(props["xfer.quant"]) if "xfer.quant" in props else None


def quant_defaults():
    from xferexport import quantize

    return {"method": quantize.DEFAULT_METHOD, "images": quantize.DEFAULT_IMAGES,
            "reduce_range": quantize.DEFAULT_REDUCE_RANGE, "seed": 0}


def ensure_models(study, data, models, earlier=None):
    """The fp32 models, exported where absent, and their int8 copies, made with
    quantize's defaults where absent or made otherwise."""
    for model in models:
        argv = [PY, "scripts/export_model.py", *EXPORT[model], "--out", model]
        if os.path.exists(os.path.join(REPO, model)):
            study.reuse(argv, "export", model)
        else:
            study.run(argv, "export")
        int8 = int8_of(model)
        argv = [PY, "scripts/export_model.py", "quantize", "--model", model, "--data", data,
                "--out", int8]
        q = quant_of(int8) if os.path.exists(os.path.join(REPO, int8)) else None
        want = quant_defaults()
        made = (earlier or {}).get(f"quantize {stem(int8)}")
        if q is not None and all(q.get(k) == v for k, v in want.items()) and made:
            carry(study, made)  # made by an earlier run of this part: its time
        elif q is not None and all(q.get(k) == v for k, v in want.items()):
            study.reuse(argv, "quantize", int8)
        else:
            study.run(["/usr/bin/time", "-f", TIME_FORMAT, *argv], f"quantize {stem(int8)}")


def write_meta(study, data, seeds, extra=None):
    """RUNS/<part>/meta.json; a part run again over an earlier one's folders keeps the
    earlier commits and loads, since rows it reuses were made then."""
    os.makedirs(os.path.join(REPO, study.runs), exist_ok=True)
    load = os.getloadavg()
    meta = {"date": datetime.date.today().isoformat(), "commit": checkout_commit(), "data": data,
            "seeds": seeds, "nice": os.nice(0),
            "load_at_start": [round(x, 2) for x in load], **(extra or {})}
    if os.path.exists(os.path.join(REPO, study.meta_path)):
        old = load_json(study.meta_path)
        earlier = old.get("earlier", []) + [{k: old.get(k) for k in
                                             ("date", "commit", "load_at_start", "load_at_end")}]
        meta["earlier"] = [e for e in earlier if e.get("commit") != meta["commit"]
                           or e.get("load_at_start") != meta["load_at_start"]]
    with open(os.path.join(REPO, study.meta_path), "w") as f:
        json.dump(meta, f, indent=1)


def finish_meta(study):
    path = os.path.join(REPO, study.meta_path)
    meta = load_json(study.meta_path)
    meta["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    with open(path, "w") as f:
        json.dump(meta, f, indent=1)


def validation_only(runs, data):
    """A DATA folder holding just a link `validation` to DATA's (the cosine needs no
    training images); the link is relative, so the log names no machine's folder."""
    folder = os.path.join(runs, "valdata")
    link = os.path.join(REPO, folder, "validation")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    target = os.path.relpath(os.path.join(REPO, data, "validation"), os.path.dirname(link))
    if os.path.islink(link) and os.readlink(link) != target:
        os.unlink(link)
    if not os.path.islink(link):
        os.symlink(target, link)
    return folder


# ------------------------------------------------------------ part: calibration


def calib_name(method, images, reduce_range, size=CALIB_SIZE):
    return (f"{method}-{images}" + ("-rr" if reduce_range else "")
            + (f"-at{size}" if size != CALIB_SIZE else ""))


def calib_cells(images=CALIB_IMAGES):
    """(name, method, images, reduce_range, size): the grid, then the defaults
    calibrated at 150, in the order they run: cheapest first (MinMax at every size;
    then entropy and percentile, which cost about twice MinMax's time and ten times
    its memory, by size), so a study cut short has the cheap rows."""
    d = quant_defaults()
    cells = [(calib_name(m, n, rr), m, n, rr, CALIB_SIZE)
             for m in METHODS[:1] for n in images for rr in (True, False)]
    cells.append((calib_name(d["method"], d["images"], d["reduce_range"], DRAFT_SIZE),
                  d["method"], d["images"], d["reduce_range"], DRAFT_SIZE))
    cells += [(calib_name(m, n, rr), m, n, rr, CALIB_SIZE)
              for n in images for m in METHODS[1:] for rr in (True, False)]
    return cells


def table_order(cells):
    """The report's order: by images, then method, 7-bit first; the row at 150 last."""
    return sorted(cells, key=lambda c: (c[4] != CALIB_SIZE, c[2], METHODS.index(c[1]), not c[3]))


def previous_log(study):
    """The steps an earlier run of this part logged that finished, by step name and by
    command."""
    path = os.path.join(REPO, study.log_path)
    log = load_json(study.log_path) if os.path.exists(path) else []
    done = [e for e in log if e["status"] == 0 and not e.get("reused")]
    return {**{e["step"]: e for e in done}, **{e["command"]: e for e in done}}


def carry(study, entry):
    """Logs an earlier run's entry as this run's, saving the log at once (a run cut
    short must not lose it)."""
    study.log.append(entry)
    with open(os.path.join(REPO, study.log_path), "w") as f:
        json.dump(study.log, f, indent=1)


def extract(study, earlier, argv, step):
    """`xfer extract`; where it encoded nothing and an earlier run of the part logged
    the same command, the earlier entry (the one that encoded) is kept instead."""
    entry = study.run(argv, step)
    first = earlier.get(entry["command"])
    if first and re.search(r"images: 0 encoded", entry["output"]):
        study.log.pop()
        carry(study, first)


def train(study, earlier, argv, step, folder):
    """`xfer train` into `folder`, unless an earlier run of the part made it."""
    first = earlier.get(shlex.join(argv))
    if first and os.path.exists(os.path.join(REPO, folder, "history.json")):
        carry(study, first)
    else:
        study.run(argv, step)


def run_calibration(study, data, images):
    runs = study.runs
    earlier = previous_log(study)
    ensure_models(study, data, [LITE0], earlier)
    fp32 = f"{FEATURES}/{tag_of(LITE0, DRAFT_SIZE)}"
    study.run([XFER, "extract", "--data", data, "--model", LITE0, "--out", fp32,
               "--size", str(DRAFT_SIZE)], "extract fp32")
    val = validation_only(runs, data)
    for name, method, n, rr, size in calib_cells(images):
        model = f"{runs}/{name}.onnx"
        cache = f"{runs}/ranges-{method}-{n}-at{size}.json"
        argv = [PY, "scripts/export_model.py", "quantize", "--model", LITE0, "--data", data,
                "--out", model, "--method", method, "--images", str(n), "--size", str(size),
                "--reduce-range" if rr else "--no-reduce-range", "--calibration-cache", cache]
        made = [earlier[k] for k in (f"quantize {name}", f"quantize {name} (cached ranges)")
                if k in earlier and earlier[k]["status"] == 0 and not earlier[k].get("reused")]
        if os.path.exists(os.path.join(REPO, model)) and made:
            carry(study, made[0])  # made by an earlier run of this part: its time
        elif os.path.exists(os.path.join(REPO, model)):
            study.reuse(argv, f"quantize {name}", model)
        else:
            cached = os.path.exists(os.path.join(REPO, cache))
            study.run(["/usr/bin/time", "-f", TIME_FORMAT, *argv],
                      f"quantize {name}" + (" (cached ranges)" if cached else ""))
        extract(study, earlier, [XFER, "extract", "--data", val, "--model", model,
                                 "--out", f"{runs}/features/{name}", "--size", str(DRAFT_SIZE)],
                f"extract {name}")


def time_of(log, step):
    """(seconds, peak GB) GNU time printed for `step`, or None."""
    for e in log:
        if e["step"] == step:
            m = re.search(r"study_int8 time: ([\d.]+) s, peak RSS (\d+) KB", e["output"])
            if m:
                return float(m.group(1)), int(m.group(2)) / 1e6
    return None


def unrooted(error):
    """An error's message with the repository's folder taken out (documents name no
    machine's folders)."""
    return str(error).replace(REPO + os.sep, "")


def cos_stats(cos):
    return (f"{cos.mean():.4f}", f"{np.percentile(cos, 1):.4f}", f"{cos.min():.4f}")


def report_calibration(w, runs, meta, log, problems):
    fp32 = f"{FEATURES}/{tag_of(LITE0, DRAFT_SIZE)}"
    rows = []
    for name, method, images, rr, size in table_order(
            calib_cells(meta.get("calib_images", CALIB_IMAGES))):
        folder = f"{runs}/features/{name}"
        if not os.path.exists(os.path.join(REPO, folder, "validation.parquet")):
            rows.append((name, method, images, rr, size, None, None))
            continue
        try:
            cos = cosines(os.path.join(REPO, fp32), os.path.join(REPO, folder), "validation")
        except SystemExit as e:
            problems.append(f"{folder}: {unrooted(e)}")
            continue
        t = (time_of(log, f"quantize {name}")
             or time_of(log, f"quantize {name} (cached ranges)"))
        rows.append((name, method, images, rr, size, cos, t))
    done = [r for r in rows if r[5] is not None]
    if not done:
        w("No calibration finished.\n")
        return
    d = quant_defaults()
    defaults = [r for r in done if r[1] == d["method"] and r[2] == d["images"]
                and r[3] == d["reduce_range"] and r[4] == CALIB_SIZE]
    bar = round(defaults[0][5].mean(), 4) if defaults else 2.0
    w("| method | images | weights | mean | 1st percentile | lowest | calibration wall s, "
      "peak RSS GB |")
    w("|---|---|---|---|---|---|---|")
    for name, method, images, rr, size, cos, t in rows:
        is_default = (method == d["method"] and images == d["images"]
                      and rr == d["reduce_range"] and size == CALIB_SIZE)
        if cos is None:
            mean = p1 = low = tt = "not run"
        else:
            mean, p1, low = cos_stats(cos)
            if is_default:
                mean = f"**{mean}**"
            elif round(cos.mean(), 4) > bar:
                mean = f"*{mean}*"
            if t is None:
                tt = "n/a"
            elif time_of(log, f"quantize {name} (cached ranges)"):
                tt = f"{t[0]:.0f} s, {t[1]:.2f} GB (ranges from the cache)"
            else:
                tt = f"{t[0]:.0f} s, {t[1]:.2f} GB"
        weights = "7-bit (`--reduce-range`)" if rr else "8-bit"
        label = method + (f", calibrated at {size}" if size != CALIB_SIZE else "")
        w(f"| {label} | {images} | {weights} | {mean} | {p1} | {low} | {tt} |")
    w("")
    if defaults:
        top = max(done, key=lambda r: r[5].mean())
        pairs = {(r[1], r[2], r[4]): {} for r in done}
        for r in done:
            pairs[(r[1], r[2], r[4])][r[3]] = r[5].mean()
        gains = [v[True] - v[False] for v in pairs.values() if len(v) == 2]
        w(f"In numbers: the defaults' mean cosine is {bar:.4f}; the highest of the "
          f"{len(done)} rows run is {top[5].mean():.4f} ({top[1]}, {top[2]} images, "
          f"{'7' if top[3] else '8'}-bit{', at ' + str(top[4]) if top[4] != CALIB_SIZE else ''}"
          f"), {abs(top[5].mean() - bar):.4f} above the defaults'"
          + (f"; 7-bit weights against 8-bit on the same ranges: {min(gains):+.4f} to "
             f"{max(gains):+.4f} of mean cosine over {len(gains)} calibrations" if gains else "")
          + ".\n")
    w(f"Bold: quantize's defaults ({d['method']}, {d['images']} images, "
      f"{'7' if d['reduce_range'] else '8'}-bit weights). Italic: a mean above the "
      "defaults'. One validation image's cosine moves the 1st percentile (between the "
      "4th and 5th lowest of 341) and the lowest; the mean is the steadier figure.\n")


# ------------------------------------------------------------ part: accuracy


def accuracy_bases(with_draft):
    """(tag, fp32 tag, model, size, decode, label) of every features folder trained on."""
    out = []
    for size in SIZES:
        for model, kind in ((LITE0, "fp32"), (int8_of(LITE0), "int8")):
            out.append((tag_of(model, size), tag_of(LITE0, size), model, size, None, kind))
    if with_draft:
        for model, kind in ((LITE0, "fp32"), (int8_of(LITE0), "int8")):
            out.append((tag_of(model, DRAFT_SIZE, "draft"), tag_of(LITE0, DRAFT_SIZE), model,
                        DRAFT_SIZE, "draft", kind))
    return out


def head_dir(runs, tag, head, seed):
    return os.path.join(runs, tag, f"{head}-seed{seed}")


def run_accuracy(study, data, seeds, with_draft):
    runs = study.runs
    earlier = previous_log(study)
    ensure_models(study, data, [LITE0, XCEPTION], earlier)
    # Each folder's heads right after its extraction: a study cut short has whole rows.
    for tag, _, model, size, decode, _ in accuracy_bases(with_draft):
        extract(study, earlier, [XFER, "extract", "--data", data, "--model", model,
                                 "--out", f"{FEATURES}/{tag}", "--size", str(size),
                                 *(["--decode", decode] if decode else [])], f"extract {tag}")
        for head, _, lr, args in HEADS:
            for seed in seeds:
                folder = head_dir(runs, tag, head, seed)
                train(study, earlier, [XFER, "train", "--features", f"{FEATURES}/{tag}",
                                       "--out", folder, "--lr", lr, *args,
                                       "--epochs", str(EPOCHS), "--batch-size", str(BATCH),
                                       "--seed", str(seed)], f"train {tag} {head}", folder)
    val = validation_only(runs, data)
    for model in (XCEPTION, int8_of(XCEPTION)):
        extract(study, earlier, [XFER, "extract", "--data", val, "--model", model,
                                 "--out", f"{runs}/features/{tag_of(model, 150)}", "--size", "150"],
                f"extract {tag_of(model, 150)}")


def all_cosines(a, b):
    return np.concatenate([cosines(a, b, split) for split in ("train", "validation")])


def compare(ref, other, accs, problems):
    """The cosine of features/<other> to features/<ref> over every image, and per
    head: (label, ref's cell, other's cell, other − ref in points)."""
    folders = [os.path.join(REPO, FEATURES, t) for t in (ref, other)]
    if not all(os.path.exists(os.path.join(f, f"{split}.parquet"))
               for f in folders for split in ("train", "validation")):
        cs = "not extracted"
    else:
        try:
            cos = all_cosines(*folders)
            cs = ", ".join(cos_stats(cos)) + f" ({len(cos)} images)"
        except SystemExit as e:
            problems.append(f"features/{other}: {unrooted(e)}")
            cs = "n/a"
    per_head = []
    for head, label, _, _ in HEADS:
        a, b = accs.get((ref, head)), accs.get((other, head))
        if a and b:
            ra, oa = [x for x, _ in a], [x for x, _ in b]
            n = min(len(ra), len(oa))
            per_head.append((label + (f" ({len(ra)} and {len(oa)} seeds)" if n < 3 else ""),
                             cell(ra)[0], cell(oa)[0],
                             100 * (statistics.mean(oa) - statistics.mean(ra))))
        else:
            per_head.append((label, cell([x for x, _ in a])[0] if a else "not run",
                             cell([x for x, _ in b])[0] if b else "not run", None))
    return cs, per_head


def report_accuracy(w, runs, meta, log, problems):
    bases = accuracy_bases(meta.get("draft", False))
    accs = {}  # (tag, head) -> [(acc, epoch)]
    not_run = []
    for tag, _, _, size, _, _ in bases:
        for head, _, _, _ in HEADS:
            res = []
            for seed in meta["seeds"]:
                folder = head_dir(runs, tag, head, seed)
                if not os.path.exists(os.path.join(REPO, folder, "history.json")):
                    not_run.append(folder)
                    continue
                one = check_run(folder, None, problems, seed, size)
                if one is not None:
                    res.append(one)
            accs[(tag, head)] = res

    w("### The head's best validation accuracy, fp32 against int8\n")
    w("| base | size | decode | head | fp32 % (mean ± sd) | int8 % (mean ± sd) | int8 − fp32, "
      "points | goal (≥ −1) | cosine int8 to fp32: mean, 1st pct, lowest |")
    w("|---|---|---|---|---|---|---|---|---|")
    pairs = [(b, c) for b in bases if b[5] == "fp32" for c in bases
             if c[5] == "int8" and c[3] == b[3] and c[4] == b[4]]
    verdicts = []
    for f, q in pairs:
        cs, per_head = compare(f[0], q[0], accs, problems)
        for label, fa, qa, delta in per_head:
            if delta is None:
                w(f"| EfficientNet-Lite0 | {f[3]} | {f[4] or 'Keras (nearest)'} | {label} | "
                  f"{fa} | {qa} | n/a | not measured | {cs} |")
                continue
            met = delta >= -GOAL_POINTS - 1e-9
            verdicts.append((met, f"{f[3]}{', ' + f[4] if f[4] else ''}, {label.split(':')[0]} "
                                  f"head ({delta:+.1f})"))
            w(f"| EfficientNet-Lite0 | {f[3]} | {f[4] or 'Keras (nearest)'} | {label} | "
              f"{fa} | {qa} | {delta:+.1f} | {'met' if met else '**not met**'} | {cs} |")
    w("")
    if not_run:
        w(f"**Not run** when this report was made ({len(not_run)} head runs; `make "
          "study-int8` resumes where it stopped): "
          + ", ".join(f"`{f}`" for f in not_run) + ".\n")
    if verdicts:
        missed = [v for ok, v in verdicts if not ok]
        w(f"**Goal met in {len(verdicts) - len(missed)} of {len(verdicts)} rows**"
          + (f"; not met: {'; '.join(missed)}." if missed else ".")
          + " With 341 validation images and 3 seeds, a difference of a point is about "
          "the seeds' own spread (the sd columns), so a row is a measurement, not a proof "
          "either way.\n")
    if meta.get("draft"):
        w("### `--decode draft` against Keras's pixels\n")
        w("The same model with the two decodings, then the two changes together (int8 "
          "with draft against fp32 with Keras's pixels, what a user of both gets).\n")
        w("| features | head | Keras's pixels % | draft % | draft − Keras, points | cosine "
          "draft to Keras: mean, 1st pct, lowest |")
        w("|---|---|---|---|---|---|")
        for model, kind in ((LITE0, "fp32"), (int8_of(LITE0), "int8"), (None, "int8 + draft")):
            ref = tag_of(model or LITE0, DRAFT_SIZE)
            other = tag_of(model or int8_of(LITE0), DRAFT_SIZE, "draft")
            cs, per_head = compare(ref, other, accs, problems)
            for label, ka, da, delta in per_head:
                against = " against fp32" if model is None else ""
                w(f"| Lite0 {DRAFT_SIZE} {kind}{against} | {label} | {ka} | {da} | "
                  f"{'n/a' if delta is None else f'{delta:+.1f}'} | {cs} |")
        w("")
    w("Per seed (best validation accuracy %, epoch from 1):\n")
    w("| features | head | " + " | ".join(f"seed {s}" for s in meta["seeds"]) + " |")
    w("|---|---|" + "---|" * len(meta["seeds"]))
    for tag, *_ in bases:
        for head, _, _, _ in HEADS:
            res = accs.get((tag, head)) or []
            w(f"| `features/{tag}` | {head} | "
              + " | ".join(f"{pct(a)} ({e})" for a, e in res) + " |")
    w("")
    w("### Xception (random weights, seed 1), fp32 against int8 at 150: the cosine\n")
    xf, xq = tag_of(XCEPTION, 150), tag_of(int8_of(XCEPTION), 150)
    absent = [t for t in (xf, xq) if not os.path.exists(
        os.path.join(REPO, runs, "features", t, "validation.parquet"))]
    if absent:
        w("**Not run** when this report was made: "
          + ", ".join(f"`{runs}/features/{t}`" for t in absent) + " not extracted.\n")
        return
    try:
        cos = cosines(os.path.join(REPO, runs, "features", xf),
                      os.path.join(REPO, runs, "features", xq), "validation")
        mean, p1, low = cos_stats(cos)
        w("| base | images | mean | 1st percentile | lowest |")
        w("|---|---|---|---|---|")
        w(f"| Xception (random weights) 150 | {len(cos)} validation | {mean} | {p1} | {low} |\n")
    except SystemExit as e:
        problems.append(f"{runs}/features/{xq}: {unrooted(e)}")
        w("n/a\n")


# ------------------------------------------------------------ the report


def extraction_table(w, log):
    w("| step | wall s | extract's summary |")
    w("|---|---|---|")
    for e in log:
        if e["step"].startswith("extract"):
            lines = [ln for ln in e["output"].splitlines() if ln.startswith("xfer extract:")]
            summary = lines[-1].replace("xfer extract: ", "") if lines else "n/a"
            w(f"| {e['step'][len('extract '):]} | {e['seconds']} | {summary} |")
    w("")


def machine_line(meta):
    load = meta.get("load_at_start"), meta.get("load_at_end")
    said = ", ".join(f"{k} {' / '.join(str(x) for x in v)}" for k, v in
                     (("at the start", load[0]), ("at the end", load[1])) if v)
    line = (f"on {meta['date']} at commit {meta['commit']}, under `nice -n {meta.get('nice', 0)}`; "
            f"load average (1, 5, 15 min) {said or 'not recorded'}")
    for e in meta.get("earlier", []):
        line += (f"; resuming a run at commit {e.get('commit')} (load "
                 f"{' / '.join(str(x) for x in e.get('load_at_start') or [])} at its start), "
                 "whose finished rows were kept")
    return line


def report(args, parts):
    problems = []
    out = []
    w = out.append
    w("# int8 bases: calibration and accuracy (EfficientNet-Lite0, Xception)\n")
    w("Made by `make study-int8` (`scripts/study_int8.py`), entirely with `xfer` and "
      "`scripts/export_model.py quantize` (issue 15, \"Accuracy measured, not assumed\"). "
      "Machine: 2 cores of an AMD EPYC with AVX2 but neither AVX-512 nor VNNI, shared with "
      "three other engineers' builds and studies (wall times and rates are indicative only), "
      "no GPU, ONNX Runtime 1.32.0 CPU. Data: the clothing data set, train 3068 and "
      "validation 341 images, 10 classes (one validation image is 0.29 points). int8 here "
      "is ONNX Runtime's static quantization: QDQ, int8 weights per output channel, uint8 "
      "activations, ranges calibrated on training images spread over the classes (seed 0) "
      "and prepared exactly as `xfer extract` prepares them. Without VNNI, ORT's u8s8 "
      "kernels saturate their int16 sums, so the same int8 file gives vectors further from "
      "fp32's here than on a VNNI CPU (docs/int8.md); every figure below is this CPU's.\n")
    logs = {}
    for part in parts:
        study = Study(os.path.join(args.runs, part))
        if not os.path.exists(os.path.join(REPO, study.log_path)):
            problems.append(f"{study.log_path}: missing (part {part} never ran)")
            continue
        logs[part] = (study, load_json(study.log_path), load_json(study.meta_path))
    if "calibration" in logs:
        study, log, meta = logs["calibration"]
        w("## Calibration: method, images, weights\n")
        w(f"Made {machine_line(meta)}. EfficientNet-Lite0 (ImageNet weights), calibrated at "
          f"{CALIB_SIZE} (the model's own side, quantize's default) unless said, vectors "
          f"extracted at {DRAFT_SIZE}; cosine of each of the validation images' int8 vector to "
          "its fp32 one. The calibration's wall time and peak RSS are GNU time's for "
          "`export_model.py quantize` (the whole command: pre-processing, calibration, "
          "quantization, checks); a row marked *ranges from the cache* reused the ranges of "
          "the row above it (the activations' ranges do not depend on the weights), so its "
          "time is that of quantizing alone. Entropy and percentile are given the images 25 "
          "at a time (ORT's CalibStridedMinMax), which bounds their memory. Calibration "
          f"sizes run: {', '.join(map(str, meta.get('calib_images', CALIB_IMAGES)))} images.\n")
        report_calibration(w, study.runs, meta, log, problems)
        recovered = [e["step"] for e in log if e.get("recovered")]
        if recovered:
            w(f"The log entries of {', '.join(recovered)} were recovered from the console "
              "output of the part's first run: a resumed run overwrote its log before "
              "`carry` saved entries at once (the commands, outputs and GNU time lines are "
              "that run's).\n")
    if "accuracy" in logs:
        study, log, meta = logs["accuracy"]
        w("## Accuracy: fp32 against int8\n")
        w(f"Made {machine_line(meta)}. Seeds {', '.join(map(str, meta['seeds']))}; Adam, "
          f"{EPOCHS} epochs, batch {BATCH}; *best val acc* is the highest validation "
          "accuracy over the epochs (the one `head.safetensors` keeps), mean ± sample standard "
          "deviation over the seeds. Two heads: the course's (Dense(10), lr 0.01) and the best "
          "recipe of docs/accuracy-lite.md (Lite0 at 299, Dense(100, relu) + Dropout(0.2) + "
          "Dense(10), lr 0.001), each at both sizes. int8 model: `make model "
          "QUANT=int8`'s, quantize's defaults (one file for every size, calibrated at 224). "
          "The cosine is over every image, train and validation. The goal: int8 at most 1 "
          f"point below fp32 ({GOAL_POINTS} point = 3.4 validation images).\n")
        if not meta.get("draft"):
            w("`--decode draft` rows: none; this xfer's `extract --help` did not list "
              "`--decode` when the study ran (they appear when it does).\n")
        report_accuracy(w, study.runs, meta, log, problems)
    w("## Extraction\n")
    for part, (study, log, meta) in logs.items():
        w(f"Part {part}:\n")
        extraction_table(w, log)
    w("A folder whose vectors were already there (same model file, same images) shows them "
      "reused: they were encoded by an earlier run of the part whose log entry was not kept, "
      "by `make features`, or by the same `xfer extract` command run beside the study "
      "(nothing else writes those folders).\n")
    w("## Commands\n")
    w("Run from the repository root with\n")
    w("```\nexport ORT_DYLIB_PATH=$(pwd)/.ort/cpu-1.32.0/libonnxruntime.so "
      "XDG_CACHE_HOME=$(pwd)/.cache\n```\n")
    total = sum(e["seconds"] for _, log, _ in logs.values() for e in log)
    w(f"All of it: `make study-int8`, or `nice -n 19 .venv/bin/python scripts/study_int8.py` "
      f"({duration(total)} here for the commands below; it writes this file). Models and "
      "features folders are the ones `make model` and `make features` make. One by one, "
      "with the wall seconds each took:\n")
    merged = [e for _, log, _ in logs.values() for e in log]
    commands_and_checks(w, merged, problems)
    return "\n".join(out), problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--parts", default="calibration,accuracy")
    ap.add_argument("--calib-images", default=",".join(map(str, CALIB_IMAGES)),
                    help="calibration sizes of the grid (default %(default)s)")
    ap.add_argument("--runs", default="runs/study-int8")
    ap.add_argument("--doc", default="docs/accuracy-int8.md")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    for p in parts:
        if p not in ("calibration", "accuracy"):
            raise SystemExit(f"study_int8: --parts {p!r}: want calibration and/or accuracy")
    seeds = [int(s) for s in args.seeds.split(",")]
    calib_images = [int(n) for n in args.calib_images.split(",")]
    os.chdir(REPO)
    data = os.path.relpath(os.path.abspath(args.data), REPO)
    if not args.report_only:
        if not os.path.exists(os.path.join(REPO, XFER)):
            Study(args.runs).run(["cargo", "build", "--release", "--bin", "xfer"], "build")
        for part in parts:
            study = Study(os.path.join(args.runs, part))
            if part == "calibration":
                write_meta(study, data, seeds, {"calib_images": calib_images})
                run_calibration(study, data, calib_images)
            else:
                draft = draft_available(study)
                write_meta(study, data, seeds, {"draft": draft})
                run_accuracy(study, data, seeds, draft)
            finish_meta(study)
    text, problems = report(args, ["calibration", "accuracy"])
    doc = os.path.join(REPO, args.doc)
    os.makedirs(os.path.dirname(doc), exist_ok=True)
    tmp = doc + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, doc)
    print(text)
    print(f"study_int8: wrote {args.doc}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
