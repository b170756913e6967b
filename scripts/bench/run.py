#!/usr/bin/env python3
"""`make bench`: xfer side by side with what users would run instead, written
to BENCHMARKS.md.

Every timed command runs under hyperfine (one run per call, `--prepare` where
the output must not exist) wrapped in `/usr/bin/time -f %M` for its peak RSS.
The commands of one table run round-robin, R rounds (--runs, default 3): the
machine is shared and noisy, so a ratio compares runs made minutes apart, not
a block of xfer runs against a block of Keras runs made a quarter of an hour
later. Each figure is the median of its R runs.

Raw results go to WORK/results.json (rows keyed by name, kept across calls);
BENCHMARKS.md is rendered from that file only, so a part can be rerun alone
(--parts) and `--report-only` re-renders without measuring. Rows whose tool
is missing (xfer not built yet, no Keras venv) are recorded as not measured,
with the reason.

Parts: extract (section 1), train (2), sweep (3), memory (4, extract at 4x
the data), scaling (5), serve (7: `xfer serve` under concurrent clients,
scripts/bench/serve_bench.py), decode (8: the pipeline with a model that
costs nothing, against one PIL core) and int8 (9: int8 bases against fp32),
both in scripts/bench/int8_bench.py. Section 6 (GPU) is rendered from WORK/gpu.json when a
run of scripts/bench/gpu.sh left one there, else it says no GPU was measured.

    python scripts/bench/run.py --data ../shared/clothing-dataset-small --xfer target/release/xfer
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time

import benchlib
import int8_bench
import serve_bench

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = benchlib.ROOT
PARTS = ("extract", "spare", "train", "sweep", "memory", "scaling", "serve", "decode", "int8")
ALL_PARTS = PARTS + ("gpu",)
GRID = {"lr": "0.0001,0.001,0.01,0.1", "inner": "0,10,100", "dropout": "0,0.2,0.5"}
GRID_SIZE = 4 * 3 * 3
# `xfer extract`'s per-split line and closing summary (crates/extract/src/report.rs).
SPLIT_LINE = re.compile(r"(\d+) encoded[^\n]*?ONNX Runtime busy (\d+)% of")
SUMMARY_PROVIDER = re.compile(r"provider ([^;\s]+);")


def parse_xfer_extract(text):
    """{busy_pct, provider} from `xfer extract`'s output: the share of the
    encoding time ONNX Runtime was running (weighted over splits) and the
    provider that ran."""
    encoded = busy = 0
    for m in SPLIT_LINE.finditer(text):
        encoded += int(m.group(1))
        busy += int(m.group(1)) * int(m.group(2))
    prov = SUMMARY_PROVIDER.search(text)
    return {"busy_pct": busy / encoded if encoded else None,
            "provider": prov.group(1) if prov else None}


GPU_SIZES = (150, 299)
GPU_BATCHES = (32, 64, 128, 256)
GPU_TOL = 1e-4  # CUDA vectors against the CPU's, relative (the tolerance check_export holds)


def compare_features(got_dir, ref_dir):
    """{max_rel, max_img_rel, rows}: max |got - ref| / max |ref| over every
    vector of REF_DIR's split files, and the worst single image's ratio;
    {error} when the files do not hold the same paths in the same order."""
    import numpy as np
    import pyarrow.parquet as pq

    def load(path):
        t = pq.read_table(path, columns=["path", "features"])
        col = t.column("features").combine_chunks()
        return t.column("path").to_pylist(), col.flatten().to_numpy().astype(np.float64).reshape(len(t), -1)

    diff_max = ref_max = img_rel = 0.0
    rows = 0
    refs = sorted(f for f in os.listdir(ref_dir) if f.endswith(".parquet"))
    if not refs:
        return {"error": f"no feature files in {rel(ref_dir)}"}
    for name in refs:
        got_path = os.path.join(got_dir, name)
        if not os.path.exists(got_path):
            return {"error": f"{rel(got_path)} missing"}
        (rp, rv), (gp, gv) = load(os.path.join(ref_dir, name)), load(got_path)
        if rp != gp:
            return {"error": f"{name}: other paths or order than the CPU run"}
        d = np.abs(gv - rv)
        diff_max, ref_max = max(diff_max, d.max()), max(ref_max, np.abs(rv).max())
        img_rel = max(img_rel, (d.max(axis=1) / np.maximum(np.abs(rv).max(axis=1), 1e-30)).max())
        rows += len(rp)
    return {"max_rel": diff_max / ref_max if ref_max else 0.0, "max_img_rel": img_rel, "rows": rows}


def rel(path):
    """PATH relative to the repository root when inside it (commands in
    BENCHMARKS.md are run from the root), else as given."""
    a = os.path.abspath(path)
    if a == ROOT or a.startswith(ROOT + os.sep):
        return os.path.relpath(a, ROOT)
    return path


def read_text(path):
    with open(path) as f:
        return f.read()


def file_sha(path):
    """First 12 hex digits of PATH's sha256 (which xfer binary ran: others
    may rebuild target/release/xfer during a long bench)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def load_now():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def busy_processes():
    """Names of other processes using CPU right now (compilers, mostly)."""
    try:
        out = subprocess.run(["ps", "-eo", "pcpu=,comm="], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    names = []
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1] not in ("ps",):
            try:
                if float(parts[0]) >= 20.0:
                    names.append(parts[1].strip())
            except ValueError:
                pass
    return names


class Bench:
    def __init__(self, a):
        self.a = a
        self.work = a.work
        self.results_path = os.path.join(self.work, "results.json")
        self.results = {"meta": {}, "rows": {}, "parts": {}}
        if os.path.exists(self.results_path):
            with open(self.results_path) as f:
                self.results = json.load(f)
        self.env = dict(os.environ)
        self.env.setdefault("XDG_CACHE_HOME", os.path.abspath(os.path.join(self.work, "cache")))
        self.env.setdefault("ORT_DYLIB_PATH", os.path.join(
            ROOT, f".ort/cpu-{benchlib.ort_pin('onnxruntime')}/libonnxruntime.so"))
        self.env["KERAS_BACKEND"] = "jax"
        self.env["JAX_PLATFORMS"] = "cpu"
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"

    # ---- bookkeeping -------------------------------------------------------
    def save(self):
        os.makedirs(self.work, exist_ok=True)
        tmp = self.results_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.results, f, indent=1)
        os.replace(tmp, self.results_path)

    def log(self, msg):
        print(f"[bench {datetime.datetime.now():%H:%M:%S}] {msg}", flush=True)

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def skip(self, key, label, reason, **extra):
        self.log(f"{key}: not measured: {reason}")
        self.results["rows"][key] = {"key": key, "label": label, "error": reason, **extra}
        self.save()

    # ---- timing ------------------------------------------------------------
    def run_table(self, specs, runs=None):
        """Times every spec RUNS times, round-robin. A spec: dict with key,
        label, argv (list), prepare (shell string or None), json (bool: the
        command takes --json-out), plus anything to keep in the row."""
        runs = runs or self.a.runs
        rows = {}
        for s in specs:
            row = {k: v for k, v in s.items() if k not in ("argv",)}
            row.update(command=shlex.join(s["argv"]), runs=[], rss_kb=[], internal=[],
                       load=[], busy=[], started=datetime.datetime.now().isoformat(timespec="seconds"))
            if s.get("json"):
                row["json_path"] = self.path("json", s["key"] + ".jsonl")
                os.makedirs(os.path.dirname(row["json_path"]), exist_ok=True)
                if os.path.exists(row["json_path"]):
                    os.remove(row["json_path"])
                row["command"] = shlex.join(s["argv"] + ["--json-out", rel(row["json_path"])])
            rows[s["key"]] = row
        for r in range(runs):
            for s in specs:
                row = rows[s["key"]]
                if row.get("error"):
                    continue
                self.log(f"{s['key']}: run {r + 1}/{runs}")
                rss_file = self.path("rss.txt")
                if os.path.exists(rss_file):
                    os.remove(rss_file)
                hf_json = self.path("hyperfine.json")
                timed = f"/usr/bin/time -f %M -o {shlex.quote(rss_file)} {row['command']}"
                cmd = ["hyperfine", "--runs", "1", "--show-output",
               "--export-json", hf_json,
                       "--command-name", s["key"]]
                if s.get("prepare"):
                    cmd += ["--prepare", s["prepare"]]
                cmd.append(timed)
                row["load"].append(load_now())
                if row["command"].startswith(rel(self.a.xfer) + " "):
                    row.setdefault("xfer_sha", []).append(file_sha(self.a.xfer))
                row["busy"].append(busy_processes())
                p = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True)
                if p.returncode != 0:
                    row["error"] = f"exit {p.returncode}: " + (p.stdout + p.stderr).strip()[-600:]
                    self.log(f"{s['key']}: failed: {row['error']}")
                    continue
                with open(hf_json) as f:
                    hf = json.load(f)["results"][0]
                row["runs"].append(hf["times"][0])
                row.setdefault("cpu", []).append(hf["user"] + hf["system"])
                if row["command"].startswith(rel(self.a.xfer) + " extract"):
                    row.setdefault("xfer_report", []).append(parse_xfer_extract(p.stdout + p.stderr))
                try:
                    with open(rss_file) as f:
                        row["rss_kb"].append(int(f.read().split()[-1]))
                except (OSError, ValueError, IndexError):
                    row["rss_kb"].append(None)
                if row.get("json_path"):
                    row["internal"] = benchlib.read_json_lines(row["json_path"])
                self.log(f"{s['key']}: {row['runs'][-1]:.2f} s, peak RSS "
                         f"{(row['rss_kb'][-1] or 0) / 1024:.0f} MiB, load {row['load'][-1]}")
                self.results["rows"][s["key"]] = row
                self.save()
        for key, row in rows.items():
            row["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
            self.results["rows"][key] = row
        self.save()
        return rows

    # ---- tools -------------------------------------------------------------
    def xfer_help(self, command):
        if not os.path.exists(self.a.xfer):
            return None
        p = subprocess.run([self.a.xfer, command, "--help"], capture_output=True, text=True,
                           env=self.env)
        return p.stdout if p.returncode == 0 else None

    def xfer_ready(self, command, needed):
        """None when `xfer COMMAND` is built and takes the NEEDED flags, else why not."""
        help_text = self.xfer_help(command)
        if help_text is None:
            return f"`{rel(self.a.xfer)} {command}` is not built (cargo build --release --bin xfer)"
        missing = [f for f in needed if f not in help_text]
        if missing:
            return f"`xfer {command}` lacks {', '.join(missing)} (not implemented yet)"
        return None

    def keras_ready(self):
        if not os.path.exists(self.a.keras_python):
            return f"{rel(self.a.keras_python)} missing (make .venv-keras/.done)"
        return None

    def extract_argv(self, data, out, threads=None, batch=None, size=None, device="cpu"):
        argv = [rel(self.a.xfer), "extract", "--data", rel(data), "--model", rel(self.model),
                "--out", rel(out), "--size", str(size or self.a.size),
                "--batch-size", str(batch or self.a.batch_size),
                "--threads", str(threads or self.a.threads)]
        help_text = self.xfer_help("extract") or ""
        if "--device" in help_text:
            argv += ["--device", device]
        return argv

    def ensure_model(self):
        self.model = self.a.model or self.path(f"xception-random-seed{self.a.seed}.onnx")
        if not os.path.exists(self.model):
            self.log(f"exporting {rel(self.model)}")
            subprocess.run([self.a.python, os.path.join(ROOT, "scripts/export_model.py"),
                            "xception", "--weights", "random", "--seed", str(self.a.seed),
                            "--out", self.model], check=True, env=self.env, cwd=ROOT)
        self.results["meta"]["model"] = rel(self.model)
        self.results["meta"]["model_export"] = (
            f"{rel(self.a.python)} scripts/export_model.py xception --weights random "
            f"--seed {self.a.seed} --out {rel(self.model)}")

    def ensure_features(self):
        """A features folder (train + validation) for the training parts:
        the last `xfer extract` output, or one made now (not timed)."""
        out = self.path("out", "extract-xfer")
        if all(os.path.exists(os.path.join(out, f"{s}.parquet")) for s in ("train", "validation")):
            return out, "xfer extract"
        if self.xfer_ready("extract", ["--model"]) is None:
            self.log("making features with xfer extract (not timed)")
            subprocess.run(self.extract_argv(self.data, out), check=True, env=self.env, cwd=ROOT)
            return out, "xfer extract"
        out = self.path("out", "features-python")
        if not os.path.exists(os.path.join(out, "validation.parquet")):
            self.log("xfer extract not built: making features with python_pipeline.py (not timed)")
            subprocess.run([self.a.python, os.path.join(HERE, "python_pipeline.py"), "--data",
                            self.data, "--model", self.model, "--size", str(self.a.size),
                            "--threads", str(self.a.threads), "--out", out],
                           check=True, env=self.env, cwd=ROOT)
        return out, "scripts/bench/python_pipeline.py (xfer extract was not built)"

    # ---- parts -------------------------------------------------------------
    def predecoded(self, size):
        """DATA decoded once at SIZE into the model's input tensors (not timed)."""
        npy = self.path(f"predecoded-{size}.npy")
        stamp = npy + ".src"
        src = f"{os.path.abspath(self.data)} {os.path.abspath(self.model)} {os.path.getmtime(self.model)}"
        if not (os.path.exists(npy) and os.path.exists(stamp) and read_text(stamp) == src):
            self.log(f"pre-decoding {rel(self.data)} at {size} into {rel(npy)} (not timed)")
            subprocess.run([self.a.python, os.path.join(HERE, "predecode.py"), "--data", self.data,
                            "--model", self.model, "--size", str(size), "--out", npy],
                           check=True, env=self.env, cwd=ROOT)
            with open(stamp, "w") as f:
                f.write(src)
        return npy

    def part_extract(self):
        n = len(benchlib.list_images(self.data))
        npy = self.predecoded(self.a.size)
        specs = []
        xfer_out = self.path("out", "extract-xfer")
        why = self.xfer_ready("extract", ["--model", "--threads"])
        if why:
            self.skip("extract.xfer", "xfer extract", why, images=n)
        else:
            specs.append(dict(key="extract.xfer", label="`xfer extract`, end to end",
                              argv=self.extract_argv(self.data, xfer_out),
                              prepare=f"rm -rf {shlex.quote(rel(xfer_out))}", images=n))
        specs.append(dict(key="extract.ort", label="ONNX Runtime alone, batches already decoded",
                          argv=[rel(self.a.python), "scripts/bench/ort_alone.py", "--input", rel(npy),
                                "--model", rel(self.model), "--batch-size", str(self.a.batch_size),
                                "--threads", str(self.a.threads)], json=True, images=n))
        specs.append(dict(key="extract.ort_nospin", label="ONNX Runtime alone, no spinning",
                          argv=[rel(self.a.python), "scripts/bench/ort_alone.py", "--input", rel(npy),
                                "--model", rel(self.model), "--batch-size", str(self.a.batch_size),
                                "--threads", str(self.a.threads), "--no-spin"], json=True, images=n))
        specs.append(dict(key="extract.python", label="Python pipeline: PIL + numpy + onnxruntime",
                          argv=[rel(self.a.python), "scripts/bench/python_pipeline.py", "--data",
                                rel(self.data), "--model", rel(self.model), "--size", str(self.a.size),
                                "--batch-size", "32", "--threads", str(self.a.threads),
                                "--out", rel(self.path("out", "python-vectors.npy"))],
                          json=True, images=n))
        why = self.keras_ready()
        if why:
            self.skip("extract.keras", "Keras 3", why, images=n)
        else:
            argv = [rel(self.a.keras_python), "scripts/bench/keras_extract.py", "--data",
                    rel(self.data), "--size", str(self.a.size), "--batch-size", "32"]
            if 0 < self.a.keras_sample < n:
                argv += ["--sample", str(self.a.keras_sample)]
            specs.append(dict(key="extract.keras", images=n, json=True, argv=argv,
                              sample=self.a.keras_sample if 0 < self.a.keras_sample < n else 0,
                              label="Keras 3 (JAX, CPU): flow_from_directory + predict"))
        self.run_table(specs)

    def part_spare(self):
        """xfer with one ORT thread on this machine's two cores (one core left
        for decoding, so decoding overlaps inference) against ORT alone with
        one thread on the same batches already decoded."""
        n = len(benchlib.list_images(self.data))
        npy = self.predecoded(self.a.size)
        out = self.path("out", "extract-xfer-t1")
        specs = []
        why = self.xfer_ready("extract", ["--model", "--threads"])
        if why:
            self.skip("spare.xfer", "xfer extract --threads 1", why, images=n)
        else:
            specs.append(dict(key="spare.xfer", label="`xfer extract --threads 1`", images=n,
                              argv=self.extract_argv(self.data, out, threads=1),
                              prepare=f"rm -rf {shlex.quote(rel(out))}"))
        specs.append(dict(key="spare.ort", label="ONNX Runtime alone, 1 thread", images=n,
                          argv=[rel(self.a.python), "scripts/bench/ort_alone.py", "--input", rel(npy),
                                "--model", rel(self.model), "--batch-size", str(self.a.batch_size),
                                "--threads", "1"], json=True))
        self.run_table(specs)

    def part_train(self):
        feats, source = self.ensure_features()
        self.results["meta"]["features_source"] = source
        specs = []
        run_dir = self.path("out", "train-xfer")
        why = self.xfer_ready("train", ["--features"])
        if why:
            self.skip("train.xfer", "xfer train", why)
        else:
            specs.append(dict(key="train.xfer", label="`xfer train`, whole process",
                              argv=[rel(self.a.xfer), "train", "--features", rel(feats), "--out",
                                    rel(run_dir), "--epochs", "10", "--batch-size", "32",
                                    "--lr", "0.01", "--seed", "1"],
                              prepare=f"rm -rf {shlex.quote(rel(run_dir))}"))
            one = self.path("out", "train-xfer-e1")
            specs.append(dict(key="train.xfer_e1", label="`xfer train --epochs 1`",
                              argv=[rel(self.a.xfer), "train", "--features", rel(feats), "--out",
                                    rel(one), "--epochs", "1", "--batch-size", "32",
                                    "--lr", "0.01", "--seed", "1"],
                              prepare=f"rm -rf {shlex.quote(rel(one))}"))
        why = self.keras_ready()
        if why:
            self.skip("train.keras", "Keras fit", why)
        else:
            specs.append(dict(key="train.keras", label="Keras `fit`, whole process", json=True,
                              argv=[rel(self.a.keras_python), "scripts/bench/keras_train.py",
                                    "--features", rel(feats), "--epochs", "10", "--batch-size",
                                    "32", "--lr", "0.01", "--seed", "1"]))
        self.run_table(specs)

    def part_sweep(self):
        feats, source = self.ensure_features()
        self.results["meta"]["features_source"] = source
        grid = []
        for k in ("lr", "inner", "dropout"):
            grid += [f"--{k}", GRID[k]]
        specs = []
        run_dir = self.path("out", "sweep-xfer")
        why = self.xfer_ready("train", ["--features", "--inner", "--dropout"])
        if why:
            self.skip("sweep.xfer", "xfer train sweep", why)
        else:
            specs.append(dict(key="sweep.xfer", label="`xfer train`, 36 configurations",
                              argv=[rel(self.a.xfer), "train", "--features", rel(feats), "--out",
                                    rel(run_dir), "--epochs", "10", "--batch-size", "32", *grid,
                                    "--seed", "1"],
                              prepare=f"rm -rf {shlex.quote(rel(run_dir))}"))
        why = self.keras_ready()
        if why:
            self.skip("sweep.keras", "Keras sweep", why)
        else:
            argv = [rel(self.a.keras_python), "scripts/bench/keras_train.py", "--features",
                    rel(feats), "--epochs", "10", "--batch-size", "32", *grid, "--seed", "1"]
            if self.a.keras_grid_sample > 1:
                argv += ["--grid-sample", str(self.a.keras_grid_sample)]
            specs.append(dict(key="sweep.keras", label="Keras, the same 36 fits in one process",
                              argv=argv, json=True, grid_sample=self.a.keras_grid_sample))
        self.run_table(specs)

    def part_memory(self):
        n = len(benchlib.list_images(self.data))
        why = self.xfer_ready("extract", ["--model"])
        if why:
            self.skip("memory.extract4x", "xfer extract, 4x data", why, images=4 * n)
            return
        data4 = self.path("data-4x")
        if len(benchlib.list_images(data4) if os.path.isdir(data4) else []) != 4 * n:
            self.log(f"making {rel(data4)}: DATA repeated 4 times (hard links)")
            benchlib.repeated_tree(self.data, data4, 4)
        out = self.path("out", "extract-4x")
        self.run_table([dict(key="memory.extract4x", images=4 * n,
                             label="`xfer extract`, the data 4 times (renamed hard links)",
                             argv=self.extract_argv(data4, out),
                             prepare=f"rm -rf {shlex.quote(rel(out))}")],
                       runs=self.a.memory_runs)

    def part_scaling(self):
        n_all = len(benchlib.list_images(self.data))
        data = self.data
        if 0 < self.a.scaling_sample < n_all:
            data = benchlib.sample_tree(self.data, self.path(f"data-sample-{self.a.scaling_sample}"),
                                        self.a.scaling_sample)
        n = len(benchlib.list_images(data))
        specs = []
        why = self.xfer_ready("extract", ["--threads", "--batch-size"])
        if why:
            for threads, batch in ((1, 32), (2, 8), (2, 32), (2, 128)):
                self.skip(f"scaling.extract.t{threads}b{batch}",
                          f"`xfer extract --threads {threads} --batch-size {batch}`", why, images=n)
        else:
            for threads, batch in ((1, 32), (2, 8), (2, 32), (2, 128)):
                out = self.path("out", f"scaling-t{threads}-b{batch}")
                specs.append(dict(key=f"scaling.extract.t{threads}b{batch}", images=n,
                                  threads=threads, batch=batch, sample=n if n < n_all else 0,
                                  label=f"`xfer extract --threads {threads} --batch-size {batch}`",
                                  argv=self.extract_argv(data, out, threads=threads, batch=batch),
                                  prepare=f"rm -rf {shlex.quote(rel(out))}"))
        why = self.xfer_ready("train", ["--features"])
        if why:
            for k in (1, 4, 16):
                self.skip(f"scaling.train.x{k}", "xfer train", why)
        else:
            feats, _ = self.ensure_features()
            for k in (1, 4, 16):
                src = feats
                if k > 1:
                    src = self.path("out", f"features-x{k}")
                    subprocess.run([self.a.python, os.path.join(HERE, "repeat_features.py"),
                                    "--features", feats, "--out", src, "--times", str(k)],
                                   check=True, env=self.env, cwd=ROOT)
                out = self.path("out", f"scaling-train-x{k}")
                specs.append(dict(key=f"scaling.train.x{k}", times=k,
                                  label=f"`xfer train`, train vectors x{k}",
                                  argv=[rel(self.a.xfer), "train", "--features", rel(src), "--out",
                                        rel(out), "--epochs", "10", "--batch-size", "32",
                                        "--lr", "0.01", "--seed", "1"],
                                  prepare=f"rm -rf {shlex.quote(rel(out))}"))
        self.run_table(specs)

    def part_serve(self):
        serve_bench.measure(self, rel, load_now, busy_processes)

    def part_decode(self):
        int8_bench.measure_decode(self, rel)

    def part_int8(self):
        int8_bench.measure_int8(self, rel)

    def part_gpu(self):
        """Section 6: CUDA images/s at 150 and 299, batch 32 to 256, end to
        end (`xfer extract --device cuda`, decoding overlapped on all cores)
        and ONNX Runtime alone on the same batches decoded (Python
        onnxruntime-gpu, when the --python venv has it); then each CUDA
        output against a CPU run of the same data and size (not timed): the
        vectors must agree within GPU_TOL relative. Run through
        scripts/bench/gpu.sh."""
        n = len(benchlib.list_images(self.data))
        try:
            gpu = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip()
        except OSError:
            gpu = ""
        self.results.setdefault("gpu_meta", {})["gpu"] = gpu or "nvidia-smi not found"
        probe = subprocess.run([self.a.python, "-c", "import onnxruntime as o; "
                                "print('CUDAExecutionProvider' in o.get_available_providers())"],
                               capture_output=True, text=True, env=self.env)
        py_cuda = probe.stdout.strip() == "True"
        why_xfer = self.xfer_ready("extract", ["--device"])
        specs = []
        for size in GPU_SIZES:
            npy = self.predecoded(size) if py_cuda else None
            for batch in GPU_BATCHES:
                key = f"gpu.s{size}b{batch}"
                if why_xfer:
                    self.skip(key + ".xfer", "xfer extract --device cuda", why_xfer, images=n)
                else:
                    out = self.path("out", f"gpu-{size}-{batch}")
                    specs.append(dict(key=key + ".xfer", images=n, size=size, batch=batch,
                                      label=f"`xfer extract --device cuda`, {size}, batch {batch}",
                                      argv=self.extract_argv(self.data, out, batch=batch, size=size,
                                                             device="cuda"),
                                      prepare=f"rm -rf {shlex.quote(rel(out))}"))
                if not py_cuda:
                    self.skip(key + ".ort", "ORT alone, CUDA",
                              f"{rel(self.a.python)}'s onnxruntime has no CUDA provider "
                              "(scripts/bench/gpu.sh makes .venv-gpu with the pinned onnxruntime-gpu)",
                              images=n)
                else:
                    specs.append(dict(key=key + ".ort", images=n, size=size, batch=batch, json=True,
                                      label=f"ORT alone (CUDA), {size}, batch {batch}",
                                      argv=[rel(self.a.python), "scripts/bench/ort_alone.py",
                                            "--input", rel(npy), "--model", rel(self.model),
                                            "--batch-size", str(batch), "--threads",
                                            str(self.a.threads), "--provider", "cuda"]))
        rows = self.run_table(specs)
        for size in GPU_SIZES:
            done = [b for b in GPU_BATCHES if rows.get(f"gpu.s{size}b{b}.xfer", {}).get("runs")]
            if not done:
                continue
            ref = self.path("out", f"gpu-cpu-{size}")
            self.log(f"CPU reference at {size} into {rel(ref)} (not timed)")
            subprocess.run(self.extract_argv(self.data, ref, size=size, device="cpu"),
                           check=True, env=self.env, cwd=ROOT)
            for b in done:
                row = rows[f"gpu.s{size}b{b}.xfer"]
                row["vs_cpu"] = compare_features(self.path("out", f"gpu-{size}-{b}"), ref)
                self.log(f"gpu.s{size}b{b}: vs CPU {row['vs_cpu']}")
                self.results["rows"][row["key"]] = row
        self.save()

    # ---- meta ---------------------------------------------------------------
    def record_meta(self):
        # a GPU run (gpu.sh, maybe on another machine) keeps its own machine facts
        m = self.results.setdefault("gpu_meta" if self.a.parts == ["gpu"] else "meta", {})
        cpu = platform.processor()
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        cpu = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        mem = None
        try:
            with open("/proc/meminfo") as f:
                mem = int(f.readline().split()[1]) // 1024
        except (OSError, ValueError, IndexError):
            pass

        def out(argv):
            try:
                return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                                      env=self.env).stdout.strip()
            except OSError:
                return ""
        m.update(cpu=cpu, cores=os.cpu_count(), mem_mib=mem, work=rel(self.work),
                 ort_dylib=rel(self.env.get("ORT_DYLIB_PATH", "")),
                 commit=out(["git", "rev-parse", "--short", "HEAD"]),
                 dirty=bool(out(["git", "status", "--porcelain", "--untracked-files=no"])),
                 hyperfine=out(["hyperfine", "--version"]),
                 xfer=out([self.a.xfer, "--version"]) if os.path.exists(self.a.xfer) else "",
                 data=rel(self.a.data), data_sample=self.a.data_sample,
                 images=len(benchlib.list_images(self.data)),
                 runs=self.a.runs, memory_runs=self.a.memory_runs, threads=self.a.threads,
                 batch_size=self.a.batch_size, size=self.a.size,
                 keras_sample=self.a.keras_sample, scaling_sample=self.a.scaling_sample,
                 keras_grid_sample=self.a.keras_grid_sample)
        m["onnxruntime"] = out([self.a.python, "-c", "import onnxruntime; print(onnxruntime.__version__)"])
        if os.path.exists(self.a.keras_python):
            m["keras"] = out([self.a.keras_python, "-c",
                              "import keras, jax; print(keras.__version__, 'jax', jax.__version__)"])

    def main(self):
        os.makedirs(self.path("out"), exist_ok=True)
        if shutil.which("hyperfine") is None:
            sys.exit("bench: hyperfine not found; install it: apt-get install -y hyperfine "
                     "(or cargo install hyperfine)")
        if not os.path.exists("/usr/bin/time"):
            sys.exit("bench: /usr/bin/time not found; install it: apt-get install -y time")
        self.data = self.a.data
        if self.a.data_sample > 0:
            self.data = benchlib.sample_tree(self.a.data, self.path(f"data-{self.a.data_sample}"),
                                             self.a.data_sample)
        self.ensure_model()
        self.record_meta()
        self.save()
        for part in self.a.parts:
            t0 = time.time()
            start = datetime.datetime.now().isoformat(timespec="seconds")
            self.log(f"part {part}: load {load_now()}")
            getattr(self, f"part_{part}")()
            self.results["parts"][part] = {"started": start, "seconds": round(time.time() - t0, 1),
                                           "commit": self.results["meta"].get("commit"),
                                           "dirty": self.results["meta"].get("dirty")}
            self.save()
            write_report(self.results, self.a.out)
        write_report(self.results, self.a.out)
        self.log(f"wrote {self.a.out}")


# ---- report -------------------------------------------------------------------

med = benchlib.row_median


def imed(row, key):
    """Median of one field of a row's internal JSON records."""
    if not row or row.get("error"):
        return None
    return benchlib.median([r.get(key) for r in row.get("internal") or []])


def keras_extract_estimate(row, n_full):
    """Seconds for Keras over the whole data: measured when run on it all,
    else build + compile + N / steady images/s from a sampled run."""
    if not row or row.get("error") or not row.get("internal"):
        return None, None
    ests, steady = [], []
    for r in row["internal"]:
        if r.get("warm_s"):
            ips = r["images"] / r["warm_s"]
            compile_s = max(r["predict_s"] - r["warm_s"], 0.0)
            ests.append(r["import_s"] + r["build_s"] + compile_s + n_full / ips)
            steady.append(ips)
        else:
            steady.append(r["images"] / r["predict_s"])
    if ests:
        return benchlib.median(ests), benchlib.median(steady)
    return med(row), benchlib.median(steady)


def fmt_s(s):
    if s is None:
        return "n/a"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 100:
        return f"{s:.2f} s"
    return f"{s:.0f} s"


def fmt_x(x):
    if x is None:
        return "n/a"
    return f"{x:.0f}x" if x >= 100 else f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


fmt_mib = benchlib.fmt_mib


def ratio(a, b):
    return a / b if a is not None and b else None


class Report:
    def __init__(self, results, previous=""):
        self.res = results
        self.rows = results.get("rows", {})
        self.meta = results.get("meta", {})
        self.lines = []
        self.cmds = []
        # The BENCHMARKS.md being replaced: a section none of whose rows
        # this results.json holds is carried over from it, marked as such.
        self.previous = previous

    def measured(self, prefix):
        return any(k.startswith(prefix) for k in self.rows)

    def carry(self, heading):
        """Copies the section starting with HEADING ("## 2.", "### 1b.")
        from the previous BENCHMARKS.md, saying it was not rerun."""
        lines = self.previous.splitlines()
        start = next((i for i, ln in enumerate(lines) if ln.startswith(heading + " ")), None)
        if start is None:
            return
        level = heading.split()[0]
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")
                    and len(lines[i].split()[0]) <= len(level)), len(lines))
        body = lines[start + 1:end]
        while body and not body[0].strip():
            body = body[1:]
        if body and body[0].startswith("*Not rerun"):
            note, body = body[0], body[1:]
        else:
            m = re.search(r"^- Commit (\w+)", self.previous, re.M)
            cpu = re.search(r"^- Machine: (.+?), \d+ cores", self.previous, re.M)
            note = (f"*Not rerun by the run above: carried over as measured at commit "
                    f"{m.group(1) if m else '?'} on {cpu.group(1) if cpu else 'an earlier machine'}"
                    ", before later changes; compare it with itself, not with sections "
                    "measured on another machine.*")
        while body and not body[0].strip():
            body = body[1:]
        self.w(lines[start])
        self.w()
        self.w(note)
        self.w()
        for ln in body:
            self.w(ln)

    def row(self, key):
        return self.rows.get(key)

    def ref(self, key):
        """A numbered reference to the row's reproducing command."""
        row = self.row(key)
        if not row or row.get("error"):
            return ""
        self.cmds.append(row)
        return f"[{len(self.cmds)}]"

    def status(self, key):
        row = self.row(key)
        if row is None:
            return "not run"
        if row.get("error"):
            lines = row["error"].strip().splitlines() or ["failed"]
            # the tool's own one-line reason, where hyperfine's words come first
            first = next((ln for ln in lines if ln.startswith(("xfer: error:", "ort_alone:"))), lines[0])
            first = first.replace("|", "\\|")
            return "not measured: " + (first[:200] + "..." if len(first) > 200 else first)
        return None

    def w(self, text=""):
        self.lines.append(text)

    def flush_cmds(self):
        if not self.cmds:
            return
        self.w()
        self.w("Commands (run from the repository root; `--prepare` clears the output first, "
               "so nothing is reused):")
        self.w()
        for i, row in enumerate(self.cmds, 1):
            runs = len(row.get("runs") or [])
            prep = f" --prepare {shlex.quote(row['prepare'])}" if row.get("prepare") else ""
            self.w(f"{i}. `hyperfine --runs {runs}{prep} {shlex.quote(row['command'])}`")
        self.cmds = []
        self.w()

    def load_summary(self, keys):
        loads = [x for k in keys for x in (self.row(k) or {}).get("load", []) if x is not None]
        busy = {}
        for k in keys:
            for names in (self.row(k) or {}).get("busy", []):
                for name in set(names):
                    busy[name] = busy.get(name, 0) + 1
        if not loads:
            return ""
        text = (f"1-minute load average at the start of each run: {min(loads):.1f} to "
                f"{max(loads):.1f} (2 cores)")
        # sampled just before each of our runs starts: every busy process is someone else's
        others = sorted((c, nme) for nme, c in busy.items())
        if others:
            text += "; other people's busy processes (>= 20% CPU) seen as runs started: " + ", ".join(
                f"{nme} ({c} of {sum(len((self.row(k) or {}).get('busy', [])) for k in keys)} runs)"
                for c, nme in reversed(others[-4:]))
        return text + "."

    def timing_table(self, base, items):
        """| what | seconds | time / BASE | peak RSS | cmd | with one line per
        (label, row key, seconds); the caller adds derived lines."""
        self.w("| what | seconds | time / xfer's | peak RSS | cmd |")
        self.w("| --- | ---: | ---: | ---: | --- |")
        for label, key, secs in items:
            st = self.status(key)
            if st:
                self.w(f"| {label} | {st} | | | |")
            else:
                self.w(f"| {label} | {fmt_s(secs)} | {fmt_x(ratio(secs, base))} | "
                       f"{fmt_mib(med(self.row(key), 'rss_kb'))} | {self.ref(key)} |")

    # ---- sections -------------------------------------------------------------
    def header(self):
        m = self.meta
        self.w("# Benchmarks")
        self.w()
        self.w("Generated by `make bench` (scripts/bench/run.py) from measured JSON "
               f"(`{m.get('work', 'target/bench')}/results.json`); do not edit by hand.")
        self.w()
        dirty = " (with uncommitted changes)" if m.get("dirty") else ""
        self.w(f"- Commit {m.get('commit', '?')}{dirty}; xfer `{m.get('xfer') or 'not built'}`; "
               f"onnxruntime {m.get('onnxruntime', '?')} (Python; xfer loads "
               f"`{m.get('ort_dylib', '?')}`, the same wheel's library); "
               f"Keras {m.get('keras', 'n/a')}; {m.get('hyperfine', 'hyperfine')}.")
        self.w(f"- Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
               f"{(m.get('mem_mib') or 0) // 1024} GiB RAM, no GPU. Shared with other engineers' "
               "builds while measured, so absolute times drift; compare the ratios, which "
               "come from runs interleaved round-robin in the same session.")
        sample = (f" — **a {m['data_sample']}-image sample of it, for testing the driver; "
                  "not the real figures**" if m.get("data_sample") else "")
        self.w(f"- Data: `{m.get('data', '?')}` (train + validation, {m.get('images', '?')} "
               f"images){sample}. Model: Xception with seeded random weights "
               f"(`{m.get('model_export', '?')}`): the same arithmetic as ImageNet weights.")
        parts = self.res.get("parts", {})
        commits = {(v.get("commit"), v.get("dirty")) for v in parts.values() if v.get("commit")}
        if len(commits) > 1:
            # parts rerun alone (--parts) at other commits: say which is which
            self.w("- Parts measured at different commits: " + "; ".join(
                f"{k} at {v['commit']}{' (uncommitted changes)' if v.get('dirty') else ''}, "
                f"{v['started'].replace('T', ' ')}" for k, v in sorted(
                    parts.items(), key=lambda kv: kv[1].get("started", "")) if v.get("commit")) + ".")
        shas = sorted({x for r in self.rows.values() for x in r.get("xfer_sha", [])})
        if len(commits) > 1:
            self.w(f"- xfer binaries: {len(shas)} (sha256 {', '.join(shas)}), one per build the "
                   "parts above ran; see `xfer_sha` per row in results.json.")
        elif len(shas) > 1:
            self.w(f"- **The xfer binary changed during the bench** (rebuilt by someone else): "
                   f"{len(shas)} versions ran ({', '.join(shas)}); see `xfer_sha` per row in "
                   "results.json.")
        elif shas:
            self.w(f"- One xfer binary ran throughout (sha256 {shas[0]}...).")
        self.w(f"- Each figure is the median of {m.get('runs', '?')} runs, every run timed by "
               "hyperfine (`--runs 1` per call, the commands of a table taking turns) under "
               "`/usr/bin/time` for the peak RSS. Threads: "
               f"{m.get('threads', '?')} (ORT intra-op threads; xfer `--threads`); "
               f"batch {m.get('batch_size', '?')}; size {m.get('size', '?')}x{m.get('size', '?')}.")
        self.w()

    def extraction(self):
        if not self.measured("extract."):
            self.carry("## 1.")  # 1b with it
            return
        n = self.meta.get("images")
        self.w("## 1. Extraction (Xception, 150x150)")
        self.w()
        xfer = med(self.row("extract.xfer"))
        ort_total = imed(self.row("extract.ort"), "total_s")
        ort_infer = imed(self.row("extract.ort"), "infer_s")
        ort_session = imed(self.row("extract.ort"), "session_s")
        ort_whole = med(self.row("extract.ort"))
        py = med(self.row("extract.python"))
        krow = self.row("extract.keras")
        keras, keras_ips = keras_extract_estimate(krow, n or 0)
        nospin = imed(self.row("extract.ort_nospin"), "total_s")
        self.w("| pipeline | seconds | images/s | time / xfer's | CPU s | peak RSS | cmd |")
        self.w("| --- | ---: | ---: | ---: | ---: | ---: | --- |")

        def line(label, key, secs, note=""):
            st = self.status(key)
            if st:
                self.w(f"| {label} | {st} | | | | | |")
                return
            r = self.row(key)
            ips = f"{n / secs:.1f}" if n and secs else "n/a"
            on = " (sample run)" if note else ""
            self.w(f"| {label}{note} | {fmt_s(secs)} | {ips} | {fmt_x(ratio(secs, xfer))} | "
                   f"{fmt_s(med(r, 'cpu'))}{on} | {fmt_mib(med(r, 'rss_kb'))}{on} | "
                   f"{self.ref(key)} |")

        def sub(label, secs):
            if secs is not None:
                self.w(f"| ↳ {label} | {fmt_s(secs)} | {n / secs:.1f} | "
                       f"{fmt_x(ratio(secs, xfer))} | | | |")
        line("`xfer extract`, whole process", "extract.xfer", xfer)
        line("ONNX Runtime alone on decoded batches: session + batch loop", "extract.ort", ort_total)
        sub("of which `session.run` only", ort_infer)
        sub("the same script, whole process (Python start, imports)", ort_whole)
        if self.row("extract.ort_nospin"):
            line("ONNX Runtime alone, idle threads not spinning (xfer's setting when decoding overlaps)",
                 "extract.ort_nospin", nospin)
        line("Python pipeline (PIL + numpy + onnxruntime, batch 32), whole process",
             "extract.python", py)
        sample = (krow or {}).get("sample")
        note = (f" — estimated from a {sample}-image sample (see below)" if sample else "")
        line("Keras 3 on JAX: `flow_from_directory` + `predict`", "extract.keras", keras, note=note)
        self.flush_cmds()
        self.w("Seconds and images/s: wall time, median of the runs. CPU s: user + system time "
               "of the whole process (less sensitive to the other work on the machine, but "
               "spinning ORT threads count as busy). ORT alone's peak RSS includes the "
               "memory-mapped pre-decoded tensors it reads "
               f"({(n or 0) * 3 * self.size() ** 2 * 4 / 2 ** 20:.0f} MiB).")
        self.w()
        if xfer:
            r = ratio(xfer, ort_total)
            if r is not None:
                verdict = ("within the 10% target of issue 3" if r <= 1.10 else
                           "**outside the 10% target of issue 3**")
                self.w(f"- **xfer / ORT alone = {r:.2f}** (whole `xfer extract` process against "
                       f"ORT's session build + batch loop on the same batches already decoded): "
                       f"{verdict}. Against `session.run` alone: {fmt_x(ratio(xfer, ort_infer))}"
                       + (f"; against ORT alone without spinning: "
                          f"{fmt_x(ratio(xfer, nospin))}" if nospin else "") + ".")
            busy = benchlib.median([r.get("busy_pct") for r in
                                    self.row("extract.xfer").get("xfer_report") or []])
            if busy is not None:
                self.w(f"- xfer's own timer: ONNX Runtime was running {busy:.0f}% of xfer's "
                       f"encoding time; decoding (between runs) took the rest.")
            if py:
                self.w(f"- The Python pipeline takes **{fmt_x(ratio(py, xfer))}** xfer's time.")
            if keras:
                self.w(f"- Keras takes **{fmt_x(ratio(keras, xfer))}** xfer's time.")
        dec = imed(self.row("extract.python"), "decode_s")
        inf = imed(self.row("extract.python"), "infer_s")
        if dec and inf and n:
            self.w(f"- Where the Python pipeline's time goes: decoding + resizing + preprocessing "
                   f"{fmt_s(dec)} ({dec / n * 1000:.1f} ms per image, one thread), "
                   f"`session.run` {fmt_s(inf)}; decoding is {dec / (dec + inf):.0%} of the work, "
                   "so inference bounds every pipeline here.")
        self.w("- Same ONNX file, same ONNX Runtime build (1.32.0 from the PyPI wheel: xfer loads "
               "its shared library), same intra-op thread count. The Python scripts keep "
               "onnxruntime's defaults (idle intra-op threads spin). xfer, whose ORT threads "
               "fill both cores here, takes turns: it decodes the next batch on both cores "
               "between two runs and lets ORT's threads spin, as ORT alone does (decoding "
               "beside inference, its first design, cost 12-19% here: every slice a decode "
               "thread took stalled one of ORT's two threads, and each parallel operator "
               "waits for its slowest thread). With a core to spare, or on a GPU, xfer "
               "overlaps decoding with inference instead, without spinning.")
        if ort_session:
            self.w(f"- Building the ORT session (load + graph optimisation) takes {fmt_s(ort_session)}, "
                   "paid once per process by every pipeline.")
        if sample and krow and krow.get("internal"):
            ks = krow["internal"]
            self.w(f"- Keras was run on {sample} images spread evenly over the data (hard links in "
                   "a temp folder), each split predicted twice: the first pass includes JAX's "
                   "compile, the second does not. The whole-data figure is import + model build + "
                   f"compile + {n} / (steady images/s): steady {keras_ips:.1f} images/s, model build "
                   f"{fmt_s(benchlib.median([r['build_s'] for r in ks]))}, compile "
                   f"{fmt_s(benchlib.median([max(r['predict_s'] - r['warm_s'], 0) for r in ks]))}.")
        self.explain_extract(xfer, ort_total, py, dec, n)
        self.w()
        ls = self.load_summary(["extract.xfer", "extract.ort", "extract.python", "extract.keras"])
        if ls:
            self.w(f"Load: {ls}")
            self.w()
        self.spare_core(n)

    def spare_core(self, n):
        """Section 1b: one ORT thread, one core left for decoding."""
        if not self.measured("spare."):
            self.carry("### 1b.")
            return
        x1, o1 = med(self.row("spare.xfer")), imed(self.row("spare.ort"), "total_s")
        if not (x1 or o1):
            return
        self.w("### 1b. With a core to spare: one ONNX Runtime thread")
        self.w()
        self.w("| pipeline | seconds | images/s | time / xfer's | CPU s | cmd |")
        self.w("| --- | ---: | ---: | ---: | ---: | --- |")
        for label, key, secs in (("`xfer extract --threads 1`, whole process", "spare.xfer", x1),
                                 ("ONNX Runtime alone, 1 thread: session + batch loop", "spare.ort", o1)):
            st = self.status(key)
            if st:
                self.w(f"| {label} | {st} | | | | |")
                continue
            ips = f"{n / secs:.1f}" if n and secs else "n/a"
            self.w(f"| {label} | {fmt_s(secs)} | {ips} | {fmt_x(ratio(secs, x1))} | "
                   f"{fmt_s(med(self.row(key), 'cpu'))} | {self.ref(key)} |")
        self.flush_cmds()
        r = ratio(x1, o1)
        if r is not None:
            verdict = ("within the 10% target of issue 3" if r <= 1.10 else
                       "outside the 10% target of issue 3")
            self.w(f"- **xfer / ORT alone = {r:.2f}** with one intra-op thread: {verdict}. With "
                   "a core left over, xfer decodes on it while the model runs (its overlap "
                   "mode), so the images cost almost nothing beyond inference; this is the "
                   "case of any machine with more cores than ORT threads, or a GPU.")
            self.w()
        ls = self.load_summary(["spare.xfer", "spare.ort"])
        if ls:
            self.w(f"Load: {ls}")
            self.w()

    def explain_extract(self, xfer, ort_total, py, dec, n):
        """Why xfer is slower than an alternative, in measured numbers."""
        if not xfer or not ort_total:
            return
        xrow = self.row("extract.xfer")
        busy = benchlib.median([r.get("busy_pct") for r in xrow.get("xfer_report") or []])
        cpu_x = med(xrow, "cpu")
        py_infer = imed(self.row("extract.python"), "infer_s")
        ort_infer = imed(self.row("extract.ort"), "infer_s")
        cpu_o = med(self.row("extract.ort"), "cpu")
        if xfer > ort_total * 1.10:
            text = (f"**xfer is {xfer / ort_total - 1:.0%} slower than ONNX Runtime alone** "
                    f"({fmt_s(xfer - ort_total)} more), outside the 10% target, with ORT's "
                    "threads on both cores.")
            if busy is not None:
                text += (f" xfer's own timer has ONNX Runtime running {busy:.0f}% of the "
                         f"encoding time (about {fmt_s(xfer * busy / 100)}), against "
                         f"{fmt_s(ort_infer)} of `session.run` alone: most of the gap is "
                         "inference itself running slower once images are decoded between "
                         "two runs (caches refilled, threads woken).")
            if py_infer and ort_infer:
                text += (f" The Python pipeline shows the same: its `session.run` calls, with "
                         f"PIL decoding between them, take {fmt_s(py_infer)}, "
                         f"{fmt_x(py_infer / ort_infer)} those of ORT alone on the same "
                         "batches, before counting any decoding.")
            if cpu_x and cpu_o:
                text += (f" The rest is the images' own CPU (xfer uses {fmt_s(cpu_x - cpu_o)} "
                         "more than ORT alone: decoding, resizing, sha256 of every file, "
                         "Parquet), which no idle core can absorb here. With a core to spare "
                         "(section 1b) the overlap hides it.")
            self.w(f"- {text}")
        elif cpu_x and cpu_o:
            self.w(f"- What the {fmt_s(xfer - ort_total)} over ORT alone pays for: decoding, "
                   "resizing and preprocessing every image (PIL-equal pixels), sha256 of every "
                   "file for the incremental cache, and the Parquet parts, taking turns with "
                   f"inference on the 2 cores (xfer uses {fmt_s(cpu_x - cpu_o)} "
                   "more CPU than ORT alone).")
        if py and xfer > py:
            self.w(f"- **xfer takes {fmt_x(xfer / py)} the plain Python pipeline's time**, "
                   "which decodes on one thread between batches and neither hashes the files "
                   "(xfer's incremental cache) nor writes Parquet.")
        elif py:
            self.w(f"- xfer takes {fmt_x(xfer / py)} the plain Python pipeline's time, while also "
                   "hashing every file (for its incremental cache) and writing Parquet parts "
                   "as it goes (for crash safety).")

    def training(self):
        if not self.measured("train."):
            self.carry("## 2.")
            return
        n = self.meta.get("images")
        self.w("## 2. Head training (Dense(10), 10 epochs, batch 32, lr 0.01)")
        self.w()
        src = self.meta.get("features_source")
        if src:
            self.w(f"On the vectors of section 1 (made by {src}): "
                   "the train split (flow_from_directory order) and validation after every epoch.")
            self.w()
        xfer = med(self.row("train.xfer"))
        keras = med(self.row("train.keras"))
        fit = imed(self.row("train.keras"), "fit_s")
        k_est, k_ips = keras_extract_estimate(self.row("extract.keras"), n or 0)
        seed = None
        if k_est and k_ips and fit and n:
            # one extraction pass as measured/estimated, plus 9 more at the
            # steady rate (the compile is paid once), plus fitting the head
            seed = k_est + 9 * n / k_ips + fit
        items = [("`xfer train`, whole process", "train.xfer", xfer)]
        if self.row("train.xfer_e1"):
            items.append(("↳ the same with `--epochs 1`", "train.xfer_e1",
                          med(self.row("train.xfer_e1"))))
        items.append(("Keras `fit` on the same vectors, whole process", "train.keras", keras))
        self.timing_table(xfer, items)
        if fit is not None:
            self.w(f"| ↳ Keras `fit` call only (JIT compile included) | {fmt_s(fit)} | "
                   f"{fmt_x(ratio(fit, xfer))} | | |")
        if seed is not None:
            self.w(f"| the seed's way, estimated: base recomputed every epoch | {fmt_s(seed)} | "
                   f"{fmt_x(ratio(seed, xfer))} | | |")
        self.flush_cmds()
        if xfer is not None:
            target = "under" if xfer < 0.1 else "**over**"
            self.w(f"- `xfer train` takes {fmt_s(xfer)} as a whole process, {target} issue 4's "
                   "0.1 s target; it reads two Parquet files, runs 10 epochs, writes both heads, "
                   "history, metrics and `curves.png`.")
        e1 = med(self.row("train.xfer_e1"))
        if xfer is not None and e1 is not None:
            epoch = (xfer - e1) / 9
            self.w(f"- Where `xfer train`'s time goes, from the same command with `--epochs 1` "
                   f"({fmt_s(e1)}): about {fmt_s(epoch)} per epoch "
                   f"and {fmt_s(e1 - epoch)} fixed (process start, reading the Parquet files, "
                   "writing heads, metrics and the plot)."
                   + (" **Both parts alone exceed the 0.1 s target on this machine.**"
                      if xfer > 0.1 and 10 * epoch > 0.1 and e1 - epoch > 0.05 else ""))
        if keras and xfer:
            self.w(f"- **Keras / xfer = {fmt_x(keras / xfer)}** whole process; "
                   f"fit call only: {fmt_x(ratio(fit, xfer))}.")
        if seed is not None:
            self.w(f"- The seed's way = one Keras extraction pass over all {n} images "
                   f"({fmt_s(k_est)}: import, model build, compile, images) + 9 more passes at "
                   f"the steady rate ({k_ips:.1f} images/s; `fit` with `validation_data` runs the "
                   "frozen base over train and validation every epoch) + the head's fit "
                   f"({fmt_s(fit)}).")
            t = self.train_rows()
            if t:
                only = k_est - n / k_ips + 10 * t / k_ips + fit
                self.w(f"  Counting the {t} train images only (validation free): {fmt_s(only)}, "
                       f"{fmt_x(ratio(only, xfer))} xfer train's time.")
            ext = med(self.row("extract.xfer"))
            if ext and xfer:
                self.w(f"- xfer's way, extract once + train: {fmt_s(ext + xfer)}; "
                       f"**the seed's way takes {fmt_x(seed / (ext + xfer))} that**, and each "
                       f"further head experiment costs {fmt_s(xfer)} instead of {fmt_s(seed)}.")
        self.w()
        ls = self.load_summary(["train.xfer", "train.keras"])
        if ls:
            self.w(f"Load: {ls}")
            self.w()

    def sweep(self):
        if not self.measured("sweep."):
            self.carry("## 3.")
            return
        self.w("## 3. Sweep: 4 lr x 3 inner x 3 dropout, 10 epochs each (36 fits)")
        self.w()
        self.w(f"lr {GRID['lr']}; inner {GRID['inner']} (0 = no inner layer); dropout "
               f"{GRID['dropout']} (0 = no Dropout layer; after the inner layer, on the vectors "
               "without one).")
        self.w()
        xfer = med(self.row("sweep.xfer"))
        krow = self.row("sweep.keras")
        keras = med(krow)
        k_sampled = None
        if krow and not krow.get("error") and krow.get("internal"):
            recs = krow["internal"]
            if any(r["fitted"] < r["configs"] for r in recs):
                k_sampled = benchlib.median(
                    [r["import_s"] + r["load_s"] + r["fit_s"] * r["configs"] / r["fitted"] for r in recs])
                keras = k_sampled
        est = " (estimated, see below)" if k_sampled else ""
        self.timing_table(xfer, [("`xfer train` with lists (grid in parallel)", "sweep.xfer", xfer),
                                 ("Keras, 36 `fit` calls in one process" + est, "sweep.keras",
                                  keras)])
        self.flush_cmds()
        if k_sampled:
            r = krow["internal"][0]
            self.w(f"- Keras fitted {r['fitted']} of the {r['configs']} configurations "
                   f"(every {krow.get('grid_sample')}th); its figure is import + load + the "
                   "measured fit time scaled to 36.")
        if xfer and keras:
            self.w(f"- **Keras / xfer = {fmt_x(keras / xfer)}** for the whole grid.")
        self.w()
        ls = self.load_summary(["sweep.xfer", "sweep.keras"])
        if ls:
            self.w(f"Load: {ls}")
            self.w()

    def memory(self):
        if not self.measured("memory."):
            self.carry("## 4.")
            return
        self.w("## 4. Memory (peak RSS)")
        self.w()
        n = self.meta.get("images")
        one = self.row("extract.xfer")
        four = self.row("memory.extract4x")
        self.w("| what | images / vectors | peak RSS | seconds | images/s | cmd |")
        self.w("| --- | ---: | ---: | ---: | ---: | --- |")
        rss1 = med(one, "rss_kb")
        rss4 = med(four, "rss_kb")
        t = self.train_rows()
        for label, key, count, vectors in (
                ("`xfer extract`, the data once (the section 1 runs)", "extract.xfer", n, None),
                ("`xfer extract`, the data 4 times", "memory.extract4x", 4 * n if n else None, None),
                ("`xfer train`, 1x (the section 2 runs)", "train.xfer", None, t),
                ("`xfer train`, train vectors x16 (section 5)", "scaling.train.x16", None,
                 16 * t if t else None)):
            st = self.status(key)
            if st:
                self.w(f"| {label} | | {st} | | | |")
                continue
            secs = med(self.row(key))
            ips = f"{count / secs:.1f}" if count and secs else ""
            self.w(f"| {label} | {count or vectors or '?'} | "
                   f"{fmt_mib(med(self.row(key), 'rss_kb'))} | {fmt_s(secs)} | {ips} | "
                   f"{self.ref(key)} |")
        self.flush_cmds()
        if rss1 and rss4:
            grow = rss4 / rss1
            if grow <= 1.25:
                self.w(f"- 4x the data costs **{grow:.2f}x** the memory of 1x: memory is bounded "
                       "by the batch and the model, not by the data set (rows stream to the "
                       "Parquet writer).")
            elif n:
                per = (rss4 - rss1) * 1024 / (3 * n)
                self.w(f"- **Memory grows with the data**: 4x the images cost {grow:.2f}x the "
                       f"peak RSS of 1x, {per / 1024:.1f} KiB more per extra image (a vector is "
                       f"{self.dim() * 4 / 1024:.0f} KiB). Something holds per-image state for a "
                       "whole split, "
                       "not only a batch.")
        if four and four.get("runs") and len(four["runs"]) < 3:
            self.w(f"- The 4x row is the median of {len(four['runs'])} run(s) (`--memory-runs`).")
        ls = self.load_summary(["memory.extract4x"])
        if ls:
            self.w(f"- Load during the 4x runs: {ls}")
        py = med(self.row("extract.python"), "rss_kb")
        kr = med(self.row("extract.keras"), "rss_kb")
        if py or kr:
            self.w(f"- For comparison (section 1 runs): the Python pipeline peaks at {fmt_mib(py)} "
                   f"(it keeps every vector until the end), Keras at {fmt_mib(kr)}"
                   + (" (on its sample)" if (self.row("extract.keras") or {}).get("sample") else "")
                   + ".")
        self.w()

    def scaling(self):
        if not self.measured("scaling."):
            self.carry("## 5.")
            return
        self.w("## 5. Scaling")
        self.w()
        keys = [k for k in ("t1b32", "t2b8", "t2b32", "t2b128")]
        sample = next((self.row(f"scaling.extract.{k}") or {}).get("sample") for k in keys)
        if sample:
            self.w(f"Extraction on {sample} images spread evenly over the data (hard links), "
                   "to keep the bench's length reasonable; each run includes process start and "
                   "session build, as a user's run does.")
            self.w()
        self.w("| `xfer extract` | seconds | images/s | vs 1 thread, batch 32 | cmd |")
        self.w("| --- | ---: | ---: | ---: | --- |")
        base = med(self.row("scaling.extract.t1b32"))
        for k in keys:
            key = f"scaling.extract.{k}"
            row = self.row(key)
            label = (row or {}).get("label", key)
            st = self.status(key)
            if st:
                self.w(f"| {label} | {st} | | | |")
                continue
            secs = med(row)
            self.w(f"| {label} | {fmt_s(secs)} | {row['images'] / secs:.1f} | "
                   f"{fmt_x(ratio(base, secs))} speed | {self.ref(key)} |")
        self.flush_cmds()
        t1 = med(self.row("scaling.extract.t1b32"))
        t2 = med(self.row("scaling.extract.t2b32"))
        if t1 and t2:
            self.w(f"- 2 threads run {t1 / t2:.2f}x as fast as 1 (2 cores, shared with other work).")
        self.w()
        self.w("| `xfer train`, 10 epochs, whole process | train vectors | seconds | time / x1's "
               "| ms per 1k vectors | peak RSS | cmd |")
        self.w("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        x1 = med(self.row("scaling.train.x1"))
        for k in (1, 4, 16):
            key = f"scaling.train.x{k}"
            st = self.status(key)
            if st:
                self.w(f"| x{k} | | {st} | | | | |")
                continue
            secs = med(self.row(key))
            rows = self.train_rows() * k if self.train_rows() else None
            per = f"{secs / rows * 1e6:.1f}" if rows else ""
            self.w(f"| x{k} | {rows or '?'} | {fmt_s(secs)} | {fmt_x(ratio(secs, x1))} | {per} | "
                   f"{fmt_mib(med(self.row(key), 'rss_kb'))} | {self.ref(key)} |")
        self.flush_cmds()
        ls = self.load_summary([f"scaling.extract.{k}" for k in keys] +
                               [f"scaling.train.x{k}" for k in (1, 4, 16)])
        if ls:
            self.w(f"Load: {ls}")
            self.w()

    def size(self):
        return int(self.meta.get("size") or 150)

    def dim(self):
        for key in ("extract.ort", "extract.ort_nospin"):
            r = self.row(key)
            if r and r.get("internal"):
                return r["internal"][0].get("dim") or 2048
        return 2048

    def train_rows(self):
        r = self.row("train.keras")
        if r and r.get("internal"):
            return r["internal"][0].get("rows")
        return self.meta.get("train_rows")

    def gpu(self):
        self.w("## 6. GPU")
        self.w()
        keys = [f"gpu.s{size}b{batch}" for size in GPU_SIZES for batch in GPU_BATCHES]
        if not any(self.row(k + ".xfer") or self.row(k + ".ort") for k in keys):
            self.w("**No GPU measured.** This machine has no GPU and no GPU machine was available "
                   "to this task. CUDA is provisioned (`make setup ORT=gpu`: onnxruntime-gpu and "
                   "the CUDA 13 wheels pinned in scripts/ort-pins.txt) and checked up to the NVIDIA "
                   "driver (`make check-gpu-libs`), not measured. `scripts/bench/gpu.sh` is the "
                   "prepared measurement: on a CUDA machine it times `xfer extract --device cuda` "
                   f"at {' and '.join(map(str, GPU_SIZES))}, batch "
                   f"{', '.join(map(str, GPU_BATCHES))}, reads xfer's own split of the time (ONNX "
                   "Runtime busy vs the rest: decoding, hashing, writing), times ONNX Runtime alone "
                   "on the same batches decoded (Python onnxruntime-gpu), compares every CUDA "
                   f"output with a CPU run (tolerance {GPU_TOL:g} relative), records why when the "
                   "CUDA provider cannot load, and re-renders this file.")
            self.w()
            return
        g = self.res.get("gpu_meta", {})
        self.w(f"Measured by `scripts/bench/gpu.sh` on {g.get('gpu') or '?'} "
               f"({g.get('cpu', '?')}, {g.get('cores', '?')} cores), median of "
               f"{g.get('runs', '?')} runs, {g.get('images', self.meta.get('images', '?'))} images.")
        self.w()
        self.w("| size | batch | provider | `xfer extract` images/s | ORT busy (xfer's timer) | "
               "ORT alone images/s | decode etc. share | vs CPU: max rel, per image | cmd |")
        self.w("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
        worst = None
        for k in keys:
            x, o = self.row(k + ".xfer"), self.row(k + ".ort")
            size, batch = (x or o or {}).get("size", "?"), (x or o or {}).get("batch", "?")
            st = self.status(k + ".xfer")
            if st:
                self.w(f"| {size} | {batch} | {st} | | | | | | |")
                continue
            secs = med(x)
            reps = x.get("xfer_report") or []
            busy = benchlib.median([r.get("busy_pct") for r in reps])
            prov = next((r["provider"] for r in reps if r.get("provider")), "?")
            infer = imed(o, "infer_s")
            ort_ips = f"{o['images'] / infer:.1f}" if infer else (self.status(k + ".ort") or "n/a")
            share = f"{1 - busy / 100:.0%}" if busy is not None else "n/a"
            vs = x.get("vs_cpu") or {}
            if "max_img_rel" in vs:
                cmp = f"{vs['max_rel']:.1e}, {vs['max_img_rel']:.1e}"
                worst = max(worst or 0.0, vs["max_img_rel"])
            else:
                cmp = vs.get("error", "n/a")
            self.w(f"| {size} | {batch} | {prov} | {x['images'] / secs:.1f} | "
                   f"{'n/a' if busy is None else f'{busy:.0f}%'} | {ort_ips} | {share} | {cmp} | "
                   f"{self.ref(k + '.xfer')} {self.ref(k + '.ort')} |")
        self.flush_cmds()
        self.w("- Decode etc. share = 1 - ONNX Runtime busy: the part of xfer's encoding time "
               "during which the model was not running (decoding, resizing, hashing, writing "
               "not hidden behind inference).")
        if worst is not None:
            self.w(f"- vs CPU: max |cuda - cpu| / max |cpu| over all vectors, then the worst image's "
                   f"own ratio, against `xfer extract --device cpu` of the same data and size; "
                   f"tolerance {GPU_TOL:g}: {'met' if worst <= GPU_TOL else 'NOT met'} "
                   f"(worst {worst:.1e}).")
        self.w()


def write_report(results, out):
    previous = read_text(out) if os.path.exists(out) else ""
    r = Report(results, previous)
    r.header()
    r.extraction()
    r.training()
    r.sweep()
    r.memory()
    r.scaling()
    r.gpu()
    serve_bench.render(r)
    int8_bench.render_decode(r, fmt_s)
    int8_bench.render_int8(r, fmt_s)
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(r.lines).rstrip() + "\n")
    os.replace(tmp, out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "../shared/clothing-dataset-small"))
    p.add_argument("--xfer", default=os.path.join(ROOT, "target/release/xfer"))
    p.add_argument("--model", help="ONNX base (default: Xception, random weights, exported here)")
    p.add_argument("--seed", type=int, default=1, help="seed of the random Xception weights")
    p.add_argument("--work", default=os.path.join(ROOT, "target/bench"))
    p.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    p.add_argument("--python", default=os.path.join(ROOT, ".venv/bin/python"))
    p.add_argument("--keras-python", default=os.path.join(ROOT, ".venv-keras/bin/python"))
    p.add_argument("--parts", default=",".join(PARTS), help="comma list of "
                   + ", ".join(ALL_PARTS) + " (gpu only through scripts/bench/gpu.sh)",
                   type=lambda s: [x for x in s.split(",") if x])
    p.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    p.add_argument("--memory-runs", type=int, default=None, help="runs of the 4x extract (default --runs)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--size", type=int, default=150)
    p.add_argument("--keras-sample", type=int, default=320,
                   help="images Keras extraction runs on, scaled to the data (0 = all)")
    p.add_argument("--keras-grid-sample", type=int, default=1,
                   help="Keras sweep fits every K-th configuration, scaled to 36 (1 = all)")
    p.add_argument("--scaling-sample", type=int, default=640,
                   help="images for the extract scaling rows (0 = all)")
    p.add_argument("--data-sample", type=int, default=0,
                   help="use N images of DATA for everything (testing the driver only)")
    p.add_argument("--int8-backbones", default="xception,efficientnet-lite0",
                   type=lambda s: [x for x in s.split(",") if x],
                   help="bases of the int8 part (comma list of xception, efficientnet-lite0)")
    p.add_argument("--report-only", action="store_true", help="re-render BENCHMARKS.md from results.json")
    a = p.parse_args(argv)
    bad = [x for x in a.parts if x not in ALL_PARTS]
    if bad:
        p.error(f"unknown part(s) {', '.join(bad)}; choose from {', '.join(ALL_PARTS)}")
    if a.memory_runs is None:
        a.memory_runs = a.runs
    return a


def main(argv=None):
    a = parse_args(argv)
    b = Bench(a)
    if a.report_only:
        write_report(b.results, a.out)
        print(f"wrote {a.out}")
        return
    b.main()


if __name__ == "__main__":
    main()
