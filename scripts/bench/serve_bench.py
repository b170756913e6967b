"""Part `serve` of `make bench` (section 7 of BENCHMARKS.md): `xfer serve`
under 1, 8 and 32 concurrent clients on the clothing validation images,
against `xfer extract`'s images/s on the same images and against FastAPI +
uvicorn + onnxruntime serving the joined classifier ONNX (the same base and
head, scripts/bench/fastapi_server.py).

One round per --runs, everything taking turns: `xfer extract` of the images
once (hyperfine), then each server started, warmed up (8 requests, not
counted), loaded by scripts/bench/serve_load.py at 1, 8 and 32 clients (every
image once per level) and stopped with SIGTERM. For `xfer serve` the /metrics
counters read before and after each level give the split of its time
(decoding, waiting for a batch, ONNX Runtime calls, mean batch). Peak RSS is
the server process's VmHWM over its whole round.

The head is trained by `xfer train` on the vectors of the timed extraction
(the validation images themselves, 10 epochs; accuracy is not the point, the
arithmetic is that of any head) and joined into the classifier ONNX by
`export_model.py classifier`; neither step is timed.
"""
import datetime
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import benchlib

CLIENTS = (1, 8, 32)
GOAL = 0.8  # issue 17: requests/s from 8 clients on, against extract's images/s
METRICS = ("xfer_decode_seconds", "xfer_queue_seconds", "xfer_inference_seconds",
           "xfer_batch_size", "xfer_request_duration_seconds")


def serve_data(bench):
    val = os.path.join(bench.data, "validation")
    return val if os.path.isdir(val) else bench.data


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def scrape(url):
    """{name_sum, name_count} of xfer's histograms."""
    _, text = http_get(url + "/metrics")
    out = {}
    for line in text.splitlines():
        for m in METRICS:
            for suffix in ("_sum", "_count"):
                if line.startswith(m + suffix + " "):
                    out[m + suffix] = float(line.split()[1])
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm_hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def prepare_head(bench, features, rel):
    """head.safetensors trained on FEATURES (single split `train`, also used
    as validation), and the joined classifier ONNX; not timed."""
    feats = bench.path("out", "serve-features")
    shutil.rmtree(feats, ignore_errors=True)
    os.makedirs(feats)
    for name in ("train", "validation"):
        shutil.copyfile(os.path.join(features, "train.parquet"), os.path.join(feats, f"{name}.parquet"))
    run_dir = bench.path("out", "serve-head")
    shutil.rmtree(run_dir, ignore_errors=True)
    subprocess.run([bench.a.xfer, "train", "--features", feats, "--out", run_dir, "--epochs", "10",
                    "--lr", "0.01", "--seed", "1"], check=True, env=bench.env, cwd=benchlib.ROOT,
                   capture_output=True)
    head = os.path.join(run_dir, "head.safetensors")
    clf = bench.path("serve-classifier.onnx")
    subprocess.run([bench.a.python, "scripts/export_model.py", "classifier", "--base", bench.model,
                    "--head", head, "--out", clf], check=True, env=bench.env, cwd=benchlib.ROOT,
                   capture_output=True)
    bench.results.setdefault("serve_meta", {}).update(
        head_cmd=f"{rel(bench.a.xfer)} train --features {rel(feats)} --out {rel(run_dir)} "
                 "--epochs 10 --lr 0.01 --seed 1",
        classifier_cmd=f"{rel(bench.a.python)} scripts/export_model.py classifier --base "
                       f"{rel(bench.model)} --head {rel(head)} --out {rel(clf)}")
    return head, clf


def server_argv(bench, kind, head, clf, rel):
    t = str(bench.a.threads)
    if kind == "xfer":
        return [rel(bench.a.xfer), "serve", "--model", rel(bench.model), "--head", rel(head),
                "--addr", "127.0.0.1:0", "--threads", t, "--device", "cpu", "--max-batch", "32",
                "--max-wait-ms", "5", "--quiet"]
    return [rel(bench.a.python), "scripts/bench/fastapi_server.py", "--model", rel(clf),
            "--port", "PORT", "--threads", t]


def one_round(bench, kind, argv, data, rel, stamp):
    """Starts the server, loads it at each level, stops it; the round's record."""
    argv = [str(free_port()) if a == "PORT" else a for a in argv]
    log = open(bench.path(f"serve-{kind}.log"), "w")
    p = subprocess.Popen(argv, cwd=benchlib.ROOT, env=bench.env, stdout=subprocess.PIPE,
                         stderr=log, text=True)
    rec = {"load": stamp[0](), "busy": stamp[1](), "levels": {}, "split": {}}
    try:
        if kind == "xfer":
            line = p.stdout.readline()
            if not line.startswith("xfer serve: listening on "):
                raise RuntimeError(f"xfer serve did not start: {line!r}; see {log.name}")
            url = line.split("listening on ", 1)[1].strip()
        else:
            url = f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"
        for _ in range(1200):
            try:
                if http_get(url + "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
                if p.poll() is not None:
                    raise RuntimeError(f"{kind} server exited with {p.returncode}; see {log.name}")
        # Warm-up, not counted: the first runs of a session are slower.
        for _, path, _, _ in benchlib.list_images(data)[:8]:
            with open(os.path.join(data, path), "rb") as img:
                urllib.request.urlopen(urllib.request.Request(
                    url + "/predict", data=img.read(), method="POST"), timeout=300).read()
        for k in CLIENTS:
            before = scrape(url) if kind == "xfer" else None
            base = [rel(bench.a.python), "scripts/bench/serve_load.py", "--url",
                    url + "/predict", "--data", rel(data)]
            load = base + ["--clients", str(k)]
            bench.log(f"serve.{kind}: {k} client(s)")
            out = subprocess.run(load, cwd=benchlib.ROOT, env=bench.env, capture_output=True,
                                 text=True, check=True).stdout
            rec["levels"][str(k)] = json.loads(out.strip().splitlines()[-1])
            shown = [a.replace(url, "http://127.0.0.1:PORT") for a in base]
            rec["load_cmd"] = shlex.join(shown + ["--clients", "K"])
            if before is not None:
                after = scrape(url)
                rec["split"][str(k)] = {m: after.get(m, 0) - before.get(m, 0) for m in after}
            r = rec["levels"][str(k)]
            bench.log(f"serve.{kind}: {k} client(s): {r['rps']:.1f} requests/s, "
                      f"p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, {r['errors']} errors")
        rec["rss_kb"] = vm_hwm_kb(p.pid)
        p.send_signal(signal.SIGTERM)
        rec["exit"] = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        log.close()
    return rec


def measure(bench, rel, load_now, busy_processes):
    """Runs the part; REL, LOAD_NOW and BUSY_PROCESSES are the driver's helpers."""
    data = serve_data(bench)
    n = len(benchlib.list_images(data))
    out = bench.path("out", "serve-extract")
    why = (bench.xfer_ready("extract", ["--model", "--threads"])
           or bench.xfer_ready("serve", ["--max-batch", "--max-wait-ms"]))
    if why:
        for key in ("serve.extract", "serve.xfer", "serve.fastapi"):
            bench.skip(key, key, why, images=n)
        return
    extract = dict(key="serve.extract", images=n,
                   label="`xfer extract` of the same images, whole process",
                   argv=bench.extract_argv(data, out), prepare=f"rm -rf {shlex.quote(rel(out))}")
    # The extraction takes its turn in every round (below), so that its
    # images/s and the servers' requests/s come from the same minutes.
    runs = {f: [] for f in ("runs", "rss_kb", "cpu", "load", "busy", "xfer_sha")}

    def extract_once():
        row = bench.run_table([extract], runs=1)["serve.extract"]
        for f, acc in runs.items():
            acc.extend(row.get(f) or [])
        row.update(runs)
        bench.results["rows"]["serve.extract"] = row
        bench.save()
        return row

    first = extract_once()
    if first.get("error"):
        return
    head, clf = prepare_head(bench, out, rel)
    m = bench.results.setdefault("serve_meta", {})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=benchlib.ROOT).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, cwd=benchlib.ROOT).stdout.strip())
    m.update(commit=commit, dirty=dirty, data=rel(data), images=n, threads=bench.a.threads,
             runs=bench.a.runs, date=datetime.date.today().isoformat())
    probe = subprocess.run([bench.a.python, "-c", "import fastapi, uvicorn, multipart; "
                            "print(fastapi.__version__, uvicorn.__version__)"],
                           capture_output=True, text=True, env=bench.env)
    fastapi_why = None if probe.returncode == 0 else (
        f"{rel(bench.a.python)} lacks fastapi/uvicorn/python-multipart "
        "(pip install -r scripts/bench/requirements.txt)")
    m["fastapi"] = probe.stdout.strip()
    kinds = {"xfer": "`xfer serve`", "fastapi": "FastAPI + uvicorn + onnxruntime"}
    rows = {}
    for kind, label in kinds.items():
        key = f"serve.{kind}"
        if kind == "fastapi" and fastapi_why:
            bench.skip(key, label, fastapi_why, images=n)
            continue
        rows[kind] = {"key": key, "label": label, "images": n, "internal": [],
                      "command": shlex.join(server_argv(bench, kind, head, clf, rel))}
    for r in range(bench.a.runs):
        if r > 0:
            extract_once()
        for kind, row in rows.items():
            if row.get("error"):
                continue
            bench.log(f"serve.{kind}: round {r + 1}/{bench.a.runs}")
            try:
                rec = one_round(bench, kind, server_argv(bench, kind, head, clf, rel), data, rel,
                                (load_now, busy_processes))
            except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                row["error"] = str(e)[-600:]
                bench.log(f"serve.{kind}: failed: {row['error']}")
            else:
                row["internal"].append(rec)
                row["load_cmd"] = rec.get("load_cmd")
            bench.results["rows"][row["key"]] = row
            bench.save()


# ---- report ---------------------------------------------------------------------

def level(row, k, field):
    vals = [r["levels"].get(str(k), {}).get(field) for r in (row or {}).get("internal") or []]
    return benchlib.median([v for v in vals if v is not None])


def render(rep):
    """Section 7 of BENCHMARKS.md, from the rows `measure` recorded."""
    x, f, e = rep.row("serve.xfer"), rep.row("serve.fastapi"), rep.row("serve.extract")
    if not (x or f or e):
        rep.carry("## 7.")
        return
    m = rep.res.get("serve_meta", {})
    rep.w("## 7. Serving (`xfer serve`)")
    rep.w()
    dirty = " with uncommitted changes" if m.get("dirty") else ""
    rep.w(f"Measured by `scripts/bench/run.py --parts serve` at commit {m.get('commit', '?')}{dirty} "
          f"({m.get('date', '?')}), {m.get('threads', '?')} threads, median of "
          f"{m.get('runs', '?')} rounds; `{m.get('data', '?')}` ({m.get('images', '?')} images), "
          "every image once per level. Same model as section 1, with a head trained by "
          "`xfer train` on its vectors; FastAPI serves the same base and head joined into one "
          f"ONNX. FastAPI {m.get('fastapi') or 'n/a'} (fastapi, uvicorn).")
    rep.w()
    ext = rep.status("serve.extract")
    ext_ips = None
    if not ext:
        secs = benchlib.median(e.get("runs") or [])
        ext_ips = e["images"] / secs if secs else None
    rep.w("| server | clients | requests/s | / extract's images/s | p50 latency | p99 latency | "
          "peak RSS | cmd |")
    rep.w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    refs = {}
    for key in ("serve.xfer", "serve.fastapi"):
        row = rep.row(key)
        st = rep.status(key)
        label = (row or {}).get("label", key)
        if st:
            rep.w(f"| {label} | | {st} | | | | | |")
            continue
        rss = benchlib.median([r.get("rss_kb") for r in row["internal"] if r.get("rss_kb")])
        refs[key] = len(refs) + 1
        for k in CLIENTS:
            rps = level(row, k, "rps")
            rel_ = f"{rps / ext_ips:.2f}" if rps and ext_ips else "n/a"
            lat = (f"{level(row, k, 'p50_ms'):.0f} ms", f"{level(row, k, 'p99_ms'):.0f} ms") \
                if k == 1 else ("", "")
            rep.w(f"| {label if k == CLIENTS[0] else ''} | {k} | {rps:.1f} | {rel_} | {lat[0]} | "
                  f"{lat[1]} | {benchlib.fmt_mib(rss) if k == CLIENTS[0] else ''} | "
                  f"{'[%d]' % refs[key] if k == CLIENTS[0] else ''} |")
    if ext:
        rep.w(f"| `xfer extract`, same images | | {ext} | | | | | |")
    else:
        refs["serve.extract"] = len(refs) + 1
        rep.w(f"| `xfer extract`, same images (images/s) | | {ext_ips:.1f} | 1.00 | | | "
              f"{benchlib.fmt_mib(benchlib.median(e.get('rss_kb') or []))} | [{refs['serve.extract']}] |")
    rep.w()
    rep.w("Commands (from the repository root):")
    rep.w()
    for key, i in refs.items():
        row = rep.row(key)
        if key == "serve.extract":
            prep = f" --prepare {shlex.quote(row['prepare'])}" if row.get("prepare") else ""
            rep.w(f"{i}. `hyperfine --runs {len(row.get('runs') or [])}{prep} "
                  f"{shlex.quote(row['command'])}`")
        else:
            rep.w(f"{i}. `{row['command']}`, then `{row.get('load_cmd') or '?'}` for K = 1, 8, 32")
    rep.w()
    rep.w(f"Head and classifier (not timed): `{m.get('head_cmd', '?')}`; "
          f"`{m.get('classifier_cmd', '?')}`.")
    rep.w()
    loads = list((e or {}).get("load") or []) + [
        r.get("load") for row in (x, f) if row and not row.get("error") for r in row["internal"]]
    loads = [v for v in loads if v is not None]
    if loads:
        rep.w(f"Load: 1-minute load average at the start of each run: {min(loads):.1f} to "
              f"{max(loads):.1f} (2 cores, shared with other work); the rounds interleave "
              "the three, so compare within a round's minutes, not with section 1.")
        rep.w()
    explain(rep, x, f, ext_ips)


def split_of(x, k):
    """Median over rounds of xfer's /metrics deltas at K clients, or None."""
    splits = [r["split"].get(str(k)) for r in x["internal"] if r.get("split")]
    splits = [s for s in splits if s and s.get("xfer_batch_size_count")]
    if not splits:
        return None
    return {name: benchlib.median([s.get(name, 0) for s in splits]) for name in splits[0]}


def explain(rep, x, f, ext_ips):
    if not x or x.get("error"):
        return
    per = {}
    for k in CLIENTS:
        sp = split_of(x, k)
        if not sp:
            continue
        calls, images = sp["xfer_batch_size_count"], sp["xfer_batch_size_sum"]
        wall = level(x, k, "wall_s")
        infer = sp["xfer_inference_seconds_sum"]
        per[k] = dict(infer_ms=1000 * infer / images,
                      decode_ms=1000 * sp["xfer_decode_seconds_sum"] / images)
        rep.w(f"- {k} client(s): {images:.0f} images in {calls:.0f} ONNX Runtime calls "
              f"(mean batch {images / calls:.1f}); the calls took {infer:.2f} s of the "
              f"{wall:.2f} s wall ({infer / wall:.0%}), {per[k]['infer_ms']:.1f} ms per image; "
              f"decoding {per[k]['decode_ms']:.1f} ms per image on the pool; an image waited "
              f"{1000 * sp['xfer_queue_seconds_sum'] / images:.1f} ms on average for its call "
              "to start.")
    if ext_ips:
        for k in CLIENTS[1:]:
            rps = level(x, k, "rps")
            if not rps:
                continue
            share = rps / ext_ips
            if share >= GOAL:
                rep.w(f"- **{k} clients: {rps:.1f} requests/s, {share:.2f} of `xfer extract`'s "
                      f"{ext_ips:.1f} images/s** on the same images: meets issue 17's goal "
                      f"(at least {GOAL} from 8 clients on).")
                continue
            text = (f"- **{k} clients: {rps:.1f} requests/s, {share:.2f} of `xfer extract`'s "
                    f"{ext_ips:.1f} images/s: misses issue 17's goal of {GOAL}.**")
            best = min((v["infer_ms"], c) for c, v in per.items()) if per else None
            if k in per and best:
                text += (f" The ONNX Runtime calls took {per[k]['infer_ms']:.1f} ms per image "
                         f"at {k} clients against {best[0]:.1f} ms at {best[1]}; decoding took "
                         f"{per[k]['decode_ms']:.1f} ms per image (against "
                         f"{per[min(per)]['decode_ms']:.1f} ms with {min(per)} client). "
                         "Decoding and the calls take turns on the cores here as in "
                         "`xfer extract` (crates/serve/src/turns.rs), so compare the load of "
                         "the round: other work on the cores slows both.")
            rep.w(text)
    if f and not f.get("error"):
        ratios = [f"{level(x, k, 'rps') / level(f, k, 'rps'):.2f}x at {k}"
                  for k in CLIENTS if level(x, k, "rps") and level(f, k, "rps")]
        if ratios:
            rep.w(f"- `xfer serve` / FastAPI requests/s: {', '.join(ratios)} client(s). FastAPI "
                  "runs one `session.run` per request, in its event loop (the documented "
                  "pattern), so concurrency adds no throughput there; xfer batches concurrent "
                  "requests into one call.")
    rep.w()

