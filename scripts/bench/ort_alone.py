#!/usr/bin/env python3
"""ONNX Runtime alone on batches already decoded: the ceiling for extract.

Reads the tensors written by predecode.py (memory-mapped; the page cache holds
them after the first run), builds one CPU session with THREADS intra-op
threads, and runs it batch by batch over every row, as `xfer extract` does,
writing nothing. Appends one JSON line to --json-out:
  session_s  building the session (graph load + optimisation),
  infer_s    the sum of the session.run calls,
  total_s    session_s + the whole batch loop (slicing included),
  images, batch_size, threads.

    python scripts/bench/ort_alone.py --input X.npy --model M.onnx --batch-size 32 --threads 2
"""
import argparse
import time

import numpy as np

import benchlib


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="float32 [N, 3, S, S] .npy from predecode.py")
    p.add_argument("--model", required=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--provider", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--no-spin", action="store_true",
                   help="idle intra-op threads sleep instead of spinning (xfer's setting)")
    p.add_argument("--json-out")
    a = p.parse_args(argv)
    x = np.load(a.input, mmap_mode="r")
    t0 = time.perf_counter()
    try:
        sess, meta = benchlib.ort_session(a.model, a.threads, a.provider, spin=not a.no_spin)
    except ValueError as e:
        raise SystemExit(f"ort_alone: {e}")
    t1 = time.perf_counter()
    name_in = meta.get("xfer.input", sess.get_inputs()[0].name)
    name_out = meta.get("xfer.output", sess.get_outputs()[0].name)
    infer = 0.0
    dim = None
    for i in range(0, len(x), a.batch_size):
        batch = np.ascontiguousarray(x[i:i + a.batch_size])
        s = time.perf_counter()
        (y,) = sess.run([name_out], {name_in: batch})
        infer += time.perf_counter() - s
        dim = y.shape[1]
    t2 = time.perf_counter()
    rec = {"session_s": t1 - t0, "infer_s": infer, "total_s": t2 - t0, "images": len(x),
           "batch_size": a.batch_size, "threads": a.threads, "dim": dim,
           "provider": a.provider, "spin": not a.no_spin}
    benchlib.append_json(a.json_out, rec)
    print(f"ort_alone: {len(x)} images, session {rec['session_s']:.2f} s, "
          f"infer {infer:.2f} s ({len(x) / infer:.1f} images/s)")


if __name__ == "__main__":
    main()
