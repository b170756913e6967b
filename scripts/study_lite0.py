#!/usr/bin/env python3
"""The accuracy study of issue 5: what EfficientNet-Lite0's real ImageNet weights
buy on the clothing data set, measured entirely with `xfer`.

  study_lite0.py [--data ../shared/clothing-dataset-small] [--seeds 1,2,3]
                 [--runs runs/study-lite0] [--doc docs/accuracy-lite0.md]
                 [--report-only]

Steps (each command is printed, timed and kept for the report):
  1. cargo build --release --bin xfer
  2. the models, under the names `make model` gives them, exported only when absent
     (a model `make model` made is used as it is, never replaced):
     models/efficientnet-lite0-imagenet.onnx and, for contrast,
     models/xception-random-s1.onnx (Xception with seeded random weights, seed 1)
  3. xfer extract of DATA (train and validation) into the folders `make features`
     uses: features/efficientnet-lite0-imagenet-150, features/efficientnet-lite0-imagenet-224
     and features/xception-random-s1-150 (extraction is incremental: vectors `make
     features` already made are reused, not encoded again)
  4. per features folder and seed: the course's sweep, `--lr 0.0001,0.001,0.01,0.1
     --epochs 10 --batch-size 32 --baseline`
  5. per Lite0 size and seed: `--inner 100 --dropout 0.2` at that size's best rate
     (highest mean over seeds of the best validation accuracy), `--baseline`
  6. the report: for each base, size and head, the best validation accuracy (mean,
     sample standard deviation and range over the seeds), the epoch (from 1) where
     each seed reached it, and linfa's logistic-regression baseline; written as
     markdown to --doc.

Numbers are read from the run folders (summary.csv, history.json, baseline.json,
metrics.json) and cross-checked against each other: a best epoch or accuracy in
summary.csv that history.json does not bear out, a metrics.json accuracy that differs
from the history, or a baseline that changes with the seed (it does not depend on
it) is listed under "Inconsistencies" in the report and makes the script exit 1.

With --report-only nothing runs: the report is rebuilt from the run folders and the
command log (RUNS/commands.json) of an earlier run.
"""
import argparse
import csv
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = "../shared/clothing-dataset-small"
XFER = "target/release/xfer"
PY = ".venv/bin/python"
SWEEP_LRS = "0.0001,0.001,0.01,0.1"
EPOCHS = 10
BATCH = 32
INNER = 100
DROPOUT = 0.2

# The models under the names `make model` gives them (models/<backbone>-imagenet.onnx,
# models/xception-random-s<SEED>.onnx), with the export command after `export_model.py`.
LITE0_MODEL = ("models/efficientnet-lite0-imagenet.onnx", "efficientnet-lite0")
RANDOM_MODEL = ("models/xception-random-s1.onnx", "xception --weights random --seed 1")


def tag_of(model, size):
    """The features folder's name as `make features` gives it: <model stem>-<size>."""
    return f"{os.path.splitext(os.path.basename(model))[0]}-{size}"


# (tag, backbone label, export command after `export_model.py`, model file, size)
BASES = [
    (tag_of(model, size), label, export, model, size)
    for (model, export), label, size in [
        (LITE0_MODEL, "EfficientNet-Lite0 (ImageNet)", 150),
        (LITE0_MODEL, "EfficientNet-Lite0 (ImageNet)", 224),
        (RANDOM_MODEL, "Xception (random weights)", 150),
    ]
]
LITE0 = [b for b in BASES if b[0].startswith("efficientnet-lite0")]
FEATURES = "features"


class Study:
    """Runs commands in the repository root, logging each with its wall time."""

    def __init__(self, runs):
        self.runs = runs
        self.log_path = os.path.join(runs, "commands.json")
        self.meta_path = os.path.join(runs, "meta.json")
        self.log = []
        self.env = dict(os.environ)
        self.env.setdefault("ORT_DYLIB_PATH",
                            os.path.join(REPO, ".ort/cpu-1.32.0/libonnxruntime.so"))
        self.env.setdefault("XDG_CACHE_HOME", os.path.join(REPO, ".cache"))

    def run(self, argv, step):
        line = shlex.join(argv)
        print(f"$ {line}", flush=True)
        start = time.monotonic()
        proc = subprocess.run(argv, cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        seconds = time.monotonic() - start
        sys.stdout.write(proc.stdout)
        entry = {"step": step, "command": line, "seconds": round(seconds, 1),
                 "status": proc.returncode, "output": proc.stdout[-4000:]}
        self.log.append(entry)
        os.makedirs(self.runs, exist_ok=True)
        with open(self.log_path, "w") as f:
            json.dump(self.log, f, indent=1)
        if proc.returncode != 0:
            raise SystemExit(f"study_lite0: `{line}` exited {proc.returncode}")
        return entry

    def reuse(self, argv, step, path):
        """Logs `argv` as not run: `path`, what it would make, is there already."""
        line = shlex.join(argv)
        print(f"$ {line}  # not run: {path} exists", flush=True)
        self.log.append({"step": step, "command": line, "seconds": 0.0, "status": 0,
                         "output": "", "reused": path})


def repo_relative(path):
    """`path` as the report shows it: relative to the repository when absolute,
    so no document names a folder of one machine."""
    return os.path.relpath(path, REPO) if os.path.isabs(path) else path


def checkout_commit():
    """HEAD's short hash, marked when tracked files differ from it: the commit a
    report names for the code that made its numbers."""
    def git(*argv):
        return subprocess.run(["git", *argv], cwd=REPO, stdout=subprocess.PIPE,
                              text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (+ uncommitted changes in the checkout)"
    return commit


def loadavg():
    """The 1/5/15-minute load averages as a report prints them."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def write_doc(doc, text, name):
    """Writes a study's report to `doc` (relative to the repository) under a
    temporary name renamed into place, and prints it."""
    path = os.path.join(REPO, doc)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    print(text)
    print(f"{name}: wrote {doc}")


def study_parser(doc_string, runs, doc):
    """The flags every Lite study takes: --data, --seeds, --runs, --doc and
    --report-only, with this study's folder and report as defaults."""
    ap = argparse.ArgumentParser(description=doc_string.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--runs", default=runs)
    ap.add_argument("--doc", default=doc)
    ap.add_argument("--report-only", action="store_true")
    return ap


def duration(seconds):
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    return f"{seconds / 60:.0f} minutes"


def features_dir(tag):
    return f"{FEATURES}/{tag}"


def sweep_dir(runs, tag, seed):
    return os.path.join(runs, tag, f"lr-sweep-seed{seed}")


def inner_dir(runs, tag, lr, seed):
    return os.path.join(runs, tag, f"inner{INNER}-dropout{DROPOUT}-lr{lr}-seed{seed}")


def read_summary(run_dir):
    with open(os.path.join(REPO, run_dir, "summary.csv"), newline="") as f:
        return list(csv.DictReader(f))


def best_lr(runs, tag, seeds):
    """The sweep's rate with the highest mean best validation accuracy over seeds."""
    per_lr = {}
    for seed in seeds:
        for row in read_summary(sweep_dir(runs, tag, seed)):
            acc = float(row["best_val_accuracy"]) if row["best_val_accuracy"] else 0.0
            per_lr.setdefault(row["lr"], []).append(acc)
    return max(per_lr, key=lambda lr: (statistics.mean(per_lr[lr]), -float(lr)))


def run_all(study, data, seeds):
    # The commands run in REPO, and the log names no folder of this machine.
    data = os.path.relpath(os.path.abspath(data), REPO)
    commit = checkout_commit()
    os.makedirs(study.runs, exist_ok=True)
    with open(study.meta_path, "w") as f:
        json.dump({"date": datetime.date.today().isoformat(), "commit": commit,
                   "data": data, "seeds": seeds}, f, indent=1)
    study.run(["cargo", "build", "--release", "--bin", "xfer"], "build")
    for model, export in sorted({(b[3], b[2]) for b in BASES}):
        argv = [PY, "scripts/export_model.py", *export.split(), "--out", model]
        if os.path.exists(os.path.join(REPO, model)):
            study.reuse(argv, "export", model)
        else:
            study.run(argv, "export")
    for tag, _, _, model, size in BASES:
        study.run([XFER, "extract", "--data", data, "--model", model,
                   "--out", features_dir(tag), "--size", str(size)], f"extract {tag}")
    common = ["--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--baseline"]
    for tag, *_ in BASES:
        for seed in seeds:
            study.run([XFER, "train", "--features", features_dir(tag),
                       "--out", sweep_dir(study.runs, tag, seed), "--lr", SWEEP_LRS,
                       *common, "--seed", str(seed)], f"sweep {tag}")
    for tag, *_ in LITE0:
        lr = best_lr(study.runs, tag, seeds)
        print(f"study_lite0: {tag}: best sweep rate {lr}", flush=True)
        for seed in seeds:
            study.run([XFER, "train", "--features", features_dir(tag),
                       "--out", inner_dir(study.runs, tag, lr, seed), "--lr", lr,
                       "--inner", str(INNER), "--dropout", str(DROPOUT),
                       *common, "--seed", str(seed)], f"inner {tag}")


# ---------------------------------------------------------------- the report


def load_json(path):
    with open(os.path.join(REPO, path)) as f:
        return json.load(f)


def check_run(folder, row, problems, seed, size):
    """Best validation accuracy and its epoch (from 1) of one run folder, or None
    when no epoch finished; disagreements between its files go to `problems`."""
    run = load_json(os.path.join(folder, "run.json"))
    if run.get("seed") != seed or run.get("model", {}).get("xfer.size") != f"{size}x{size}":
        problems.append(f"{folder}: run.json says seed {run.get('seed')}, size "
                        f"{run.get('model', {}).get('xfer.size')}; expected {seed}, {size}")
    hist = load_json(os.path.join(folder, "history.json"))
    val = hist["val_accuracy"]
    if not val:
        problems.append(f"{folder}: no finished epoch")
        return None
    best = max(val)
    epoch = val.index(best) + 1
    if row is not None:
        if row["status"] != "finished":
            problems.append(f"{folder}: status {row['status']}")
        if int(row["best_epoch"] or 0) != epoch:
            problems.append(f"{folder}: summary.csv best_epoch {row['best_epoch']}, "
                            f"history.json's first maximum is epoch {epoch}")
        if abs(float(row["best_val_accuracy"] or "nan") - best) > 1e-6:
            problems.append(f"{folder}: summary.csv best_val_accuracy "
                            f"{row['best_val_accuracy']}, history.json {best}")
    metrics_path = os.path.join(REPO, folder, "metrics.json")
    if os.path.exists(metrics_path):
        m = load_json(metrics_path)
        acc = m.get("accuracy", m.get("metrics", {}).get("accuracy"))
        if acc is not None and abs(acc - best) > 1e-6:
            problems.append(f"{folder}: metrics.json accuracy {acc}, history.json best {best}")
    return best, epoch


def baseline_of(folder, tag, problems, seen):
    """linfa's validation accuracy in `folder`, checked equal across seeds."""
    path = os.path.join(REPO, folder, "baseline.json")
    if not os.path.exists(path):
        problems.append(f"{folder}: no baseline.json")
        return None
    b = load_json(os.path.join(folder, "baseline.json"))["val_accuracy"]
    if tag in seen and abs(seen[tag] - b) > 1e-9:
        problems.append(f"{folder}: baseline val_accuracy {b} differs from {seen[tag]} "
                        f"of another seed on the same features")
    seen.setdefault(tag, b)
    return b


def pct(v):
    return f"{100 * v:.1f}"


def cell(accs):
    mean = statistics.mean(accs)
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    return f"{pct(mean)} ± {pct(sd)}", f"{pct(min(accs))}–{pct(max(accs))}", mean


def errors_note(tag):
    """Rows of FEATURES/<split>.errors.csv (images extract skipped), per split."""
    out = []
    for split in ("train", "validation"):
        path = os.path.join(REPO, features_dir(tag), f"{split}.errors.csv")
        if os.path.exists(path):
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            out.append(f"{split} {max(len(rows) - 1, 0)} (errors.csv)")
        else:
            out.append(f"{split} 0 (no errors.csv)")
    return ", ".join(out)


def extract_lines(log, tag):
    for e in log:
        if e["step"] == f"extract {tag}":
            lines = [ln for ln in e["output"].splitlines() if ln.startswith("xfer extract:")]
            return e, lines
    return None, []


def report(runs, seeds, data, log, meta):
    problems, seen = [], {}
    rows = []
    for tag, label, _, _, size in BASES:
        lr_accs = {}
        for seed in seeds:
            folder = sweep_dir(runs, tag, seed)
            for row in read_summary(folder):
                res = check_run(os.path.join(folder, row["name"]), row, problems, seed, size)
                if res is not None:
                    lr_accs.setdefault(row["lr"], []).append(res)
            baseline_of(folder, tag, problems, seen)
        for lr, res in lr_accs.items():
            rows.append((label, size, "Dense(10)", lr, res, tag))
        if tag in {b[0] for b in LITE0}:
            lr = best_lr(runs, tag, seeds)
            res = []
            for seed in seeds:
                folder = inner_dir(runs, tag, lr, seed)
                if not os.path.exists(os.path.join(REPO, folder, "history.json")):
                    problems.append(f"{folder}: missing")
                    continue
                one = check_run(folder, None, problems, seed, size)
                if one is not None:
                    res.append(one)
                baseline_of(folder, tag, problems, seen)
            if res:
                rows.append((label, size, f"Dense({INNER}, relu) + Dropout({DROPOUT}) + Dense(10)",
                             lr, res, tag))

    best_mean = {}
    for label, size, head, lr, res, tag in rows:
        m = statistics.mean(a for a, _ in res)
        if m > best_mean.get(tag, (-1, None))[0]:
            best_mean[tag] = (m, (head, lr))

    out = []
    w = out.append
    w("# Accuracy study: EfficientNet-Lite0 (real ImageNet weights) on the clothing data\n")
    w(f"Made by `make study-lite0` (`scripts/study_lite0.py`) on {meta['date']} at commit "
      f"{meta['commit']}, entirely with `xfer` (issue 5, third bullet). Machine: 2 CPU cores, shared with "
      "other engineers' builds and benchmarks while this ran (wall times below are "
      "indicative only), no GPU, ONNX Runtime 1.32.0 CPU.\n")
    w(f"Data: `{repo_relative(data)}`, train 3068 and validation 341 images, 10 classes; the heads are "
      f"trained on train and scored on validation after every epoch. Every head: Adam, "
      f"{EPOCHS} epochs, batch {BATCH}, seeds {', '.join(map(str, seeds))}. "
      "*Best val acc* is the highest validation accuracy over the 10 epochs (the epoch "
      "`head.safetensors` keeps), in percent: mean ± sample standard deviation over the "
      "seeds, then the range; *epoch* lists, per seed, the epoch (from 1) where it was "
      "reached. *Baseline* is `--baseline`: linfa's multinomial logistic regression "
      "(L-BFGS, alpha 1, 100 iterations) on the same vectors, fitted on train and scored "
      "on validation; it does not depend on the seed or the head. Extraction used "
      "`xfer extract`'s defaults (nearest resize as Keras `load_img`, batch 32, all "
      "cores) and the normalisation each model's metadata names (Lite0: lite, "
      "(x - 127) / 128; Xception: tf).\n")
    w("| base | size | head | lr | best val acc % (mean ± sd) | range | epoch (per seed) "
      "| baseline val acc % |")
    w("|---|---|---|---|---|---|---|---|")
    for label, size, head, lr, res, tag in rows:
        accs = [a for a, _ in res]
        mean_sd, rng, _ = cell(accs)
        epochs = ", ".join(str(e) for _, e in res)
        star = best_mean[tag][1] == (head, lr)
        b = seen.get(tag)
        if star:
            mean_sd = f"**{mean_sd}**"
        w(f"| {label} | {size} | {head} | {lr} | {mean_sd} | {rng} | {epochs} | "
          f"{pct(b) if b is not None else 'n/a'} |")
    w("\nBold: the best configuration of each base and size (highest mean). The inner-layer "
      "rows use the rate whose sweep mean was highest at that size.\n")
    w("In short:\n")
    for tag, label, _, _, size in BASES:
        m, (head, lr) = best_mean[tag]
        w(f"- {label} at {size}: best {pct(m)}% ({head}, lr {lr}); "
          f"linfa baseline {pct(seen[tag]) if tag in seen else 'n/a'}%.")
    w("")

    w("## Extraction\n")
    w("| features | images skipped | extract summary | wall s |")
    w("|---|---|---|---|")
    for tag, *_ in BASES:
        e, lines = extract_lines(log, tag)
        summary = lines[-1].replace("xfer extract: ", "") if lines else "n/a"
        w(f"| `{features_dir(tag)}` | {errors_note(tag)} | {summary} | "
          f"{e['seconds'] if e else 'n/a'} |")
    w("")

    w("## Commands\n")
    w("Run from the repository root with\n")
    w("```\nexport ORT_DYLIB_PATH=$(pwd)/.ort/cpu-1.32.0/libonnxruntime.so "
      "XDG_CACHE_HOME=$(pwd)/.cache\n```\n")
    total = sum(e["seconds"] for e in log)
    w(f"All of it: `make study-lite0`, or `.venv/bin/python scripts/study_lite0.py` "
      f"({duration(total)} here, most of it extraction; it writes this file). The models "
      "and features folders are the ones `make model` and `make features` make, so a "
      "study after them encodes nothing again. One by one, with the wall seconds each "
      "took:\n")
    commands_and_checks(w, log, problems)
    return "\n".join(out), problems


def commands_and_checks(w, log, problems, baseline=True):
    """The report's end, shared with study_lite.py: every command with the
    seconds it took, then what the cross-checks found (`baseline`: whether the
    study fitted linfa's baseline, which is then checked too)."""
    w("```")
    for e in log:
        if e.get("reused"):
            w(f"{e['command']}    # not run: {e['reused']} was there")
        else:
            w(f"{e['command']}    # {e['seconds']} s")
    w("```\n")

    w("## Inconsistencies\n")
    if problems:
        for p in problems:
            w(f"- {p}")
    else:
        w("None: summary.csv, history.json and metrics.json agree on every run's best "
          "epoch and accuracy, run.json records the requested seed and size"
          + (", and the baseline is the same for every seed on the same features." if baseline
             else "."))
    w("")


def main():
    ap = study_parser(__doc__, "runs/study-lite0", "docs/accuracy-lite0.md")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    study = Study(args.runs)
    if not args.report_only:
        run_all(study, args.data, seeds)
    study.log = load_json(study.log_path)
    meta = load_json(study.meta_path)
    text, problems = report(args.runs, meta["seeds"], meta["data"], study.log, meta)
    write_doc(args.doc, text, "study_lite0")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
