#!/usr/bin/env python3
"""Effect of augmented views and of 299x299 inputs on validation accuracy.

The study of issue 8, end to end with the xfer binary: EfficientNet-Lite0
(ImageNet, the real pretrained base available offline) on the clothing data,
inputs of 150 and 299 pixels, the head trained on the plain vectors and with
`--views` on K augmented views per training image (the course's generator:
shear 10, zoom 0.1, horizontal flip), several training seeds per arm.

    scripts/study_augment.py --xfer target/release/xfer \\
        --model models/efficientnet-lite0-imagenet.onnx --data ../shared/clothing-dataset-small

Steps: (1) `xfer extract --augment K` per size into FEATURES/<model stem>-<size>/,
the folder `make features` uses for that model and size (one folder per size: the
sizes never share a cache). Extraction is incremental, so the plain vectors `make
features` made are reused and only the views are encoded; a rerun encodes nothing;
(2) for each size x {plain, views} x seed, `xfer train` with the course's
head (Dense(100, relu) -> Dropout(0.2) -> Dense(10)) and each learning rate;
(3) a table of the best and the last-epoch val_accuracy per arm: mean,
sample standard deviation, min and max over the seeds. The table and every
number behind it go to RUNS/results.md and RUNS/results.json.

Only the standard library: it runs under any Python 3.8+.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run(cmd, env):
    """Runs `cmd`, returns (seconds, stderr); exits with its output on failure."""
    start = time.monotonic()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    secs = time.monotonic() - start
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}\n{p.stdout}\n{p.stderr}")
    return secs, p.stderr


def summary_line(stderr):
    lines = [l for l in stderr.splitlines() if l.startswith("xfer extract: ") and " images: " in l]
    return lines[-1] if lines else ""


def stats(values):
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def features_dir(args, size):
    """FEATURES/<model stem>-<size>: the folder `make features` extracts into."""
    return Path(args.features) / f"{Path(args.model).stem}-{size}"


def lr_name(lr):
    return f"lr{lr:g}" if lr >= 1e-5 else f"lr{lr:e}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xfer", default="target/release/xfer")
    ap.add_argument("--model", default="models/efficientnet-lite0-imagenet.onnx",
                    help="the base, as `make model BACKBONE=efficientnet-lite0` names it")
    ap.add_argument("--data", default="../shared/clothing-dataset-small")
    ap.add_argument("--features", default="features",
                    help="where the features folders are, named <model stem>-<size> as by `make features`")
    ap.add_argument("--runs", default="runs/study-augment")
    ap.add_argument("--sizes", default="150,299")
    ap.add_argument("--views", type=int, default=3, help="K augmented views per training image")
    ap.add_argument("--augment-seed", type=int, default=1)
    ap.add_argument("--augment-args", default="", help="extra xfer extract flags, e.g. '--rotation 30'")
    ap.add_argument("--seeds", default="1,2,3", help="training seeds")
    ap.add_argument("--lr", default="0.001", help="one or more learning rates (a list is a sweep)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--inner", type=int, default=100)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    env = dict(os.environ)
    env.setdefault("XDG_CACHE_HOME", str(Path(".cache").resolve()))
    sizes = [int(s) for s in args.sizes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    lrs = [float(s) for s in args.lr.split(",")]
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    record = {"settings": vars(args), "extract": {}, "arms": {}, "commands": []}

    for size in sizes:
        feats = features_dir(args, size)
        cmd = [args.xfer, "extract", "--data", args.data, "--model", args.model, "--out", str(feats),
               "--size", str(size), "--device", args.device, "--augment", str(args.views),
               "--seed", str(args.augment_seed), *args.augment_args.split()]
        record["commands"].append(" ".join(cmd))
        secs, err = run(cmd, env)
        record["extract"][size] = {"seconds": round(secs, 1), "summary": summary_line(err)}
        print(f"extract {size}: {secs:.0f} s: {summary_line(err)}", flush=True)

    for size in sizes:
        feats = features_dir(args, size)
        for views in (False, True):
            arm = f"{size}-{'views' if views else 'plain'}"
            per_lr = {lr_name(lr): {"best": [], "last": [], "best_epoch": []} for lr in lrs}
            for seed in seeds:
                out = runs / arm / f"seed{seed}"
                cmd = [args.xfer, "train", "--features", str(feats), "--out", str(out),
                       "--lr", ",".join(f"{lr:g}" for lr in lrs), "--epochs", str(args.epochs),
                       "--seed", str(seed)]
                if args.inner:
                    cmd += ["--inner", str(args.inner)]
                if args.dropout:
                    cmd += ["--dropout", f"{args.dropout:g}"]
                if views:
                    cmd.append("--views")
                record["commands"].append(" ".join(cmd))
                run(cmd, env)
                for lr in lrs:
                    d = out if len(lrs) == 1 else out / next(
                        p.name for p in out.iterdir() if p.is_dir() and p.name.startswith(lr_name(lr) + "-")
                        or p.name == lr_name(lr))
                    r = json.loads((d / "run.json").read_text())
                    h = json.loads((d / "history.json").read_text())
                    per_lr[lr_name(lr)]["best"].append(r["best_val_accuracy"])
                    per_lr[lr_name(lr)]["last"].append(h["val_accuracy"][-1])
                    per_lr[lr_name(lr)]["best_epoch"].append(r["best_epoch"])
            record["arms"][arm] = {
                lr: {"best": stats(v["best"]), "last": stats(v["last"]), "best_epoch": v["best_epoch"]}
                for lr, v in per_lr.items()
            }
            for lr, v in record["arms"][arm].items():
                b = v["best"]
                print(f"{arm} {lr}: best val_accuracy {b['mean']:.4f} +- {b['std']:.4f} "
                      f"({', '.join(f'{x:.4f}' for x in b['values'])})", flush=True)

    head = f"Dense({args.inner}, relu) -> Dropout({args.dropout:g}) -> Dense(10)" if args.inner else "Dense(10)"
    lines = [
        f"EfficientNet-Lite0 (ImageNet), clothing-dataset-small (3068 train, 341 validation); head {head}, "
        f"Adam, {args.epochs} epochs, batch 32, training seeds {args.seeds}; views: K = {args.views} per "
        f"training image (seed {args.augment_seed}, {args.augment_args or 'shear 10, zoom 0.1, horizontal flip'}).",
        "",
        "| size | training rows | lr | best val_accuracy (mean ± std) | min – max | last-epoch val_accuracy (mean ± std) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for arm, per_lr in record["arms"].items():
        size, kind = arm.split("-")
        rows = "plain" if kind == "plain" else f"one of {args.views + 1} views / image / epoch"
        for lr, v in per_lr.items():
            b, l = v["best"], v["last"]
            lines.append(f"| {size} | {rows} | {lr[2:]} | {b['mean']:.4f} ± {b['std']:.4f} | "
                         f"{b['min']:.4f} – {b['max']:.4f} | {l['mean']:.4f} ± {l['std']:.4f} |")
    lines += ["", "Extraction (wall clock, this machine):", ""]
    for size, e in record["extract"].items():
        lines.append(f"- {size}: {e['seconds']} s: `{e['summary']}`")
    lines += ["", "Commands:", "", "```"] + record["commands"] + ["```"]
    text = "\n".join(lines) + "\n"
    (runs / "results.md").write_text(text)
    (runs / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
