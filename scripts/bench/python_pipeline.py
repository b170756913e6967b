#!/usr/bin/env python3
"""The extraction a Python user would write: PIL + numpy + onnxruntime.

One process, one loop: for each batch of 32 paths (flow_from_directory order)
open each image with PIL, convert to RGB, resize NEAREST (what Keras's
load_img does), stack, preprocess with numpy (the model's xfer.preprocess
mode), run the same ONNX file on onnxruntime with the same thread count; at
the end save the vectors. Decoding is single-threaded, as such a script is.

--out X.npy saves one array [N, D] (the bench's setting). --out DIR writes
DIR/<split>.parquet with the contract's columns and metadata instead (sha256
of every file included), which `xfer train` reads: the bench uses it to get
vectors when `xfer extract` is not built.

Appends one JSON line to --json-out: decode_s (read + decode + resize +
preprocess), infer_s (session.run), session_s, write_s, total_s, images.

    python scripts/bench/python_pipeline.py --data DATA --model M.onnx --size 150 \
        --batch-size 32 --threads 2 --out vectors.npy
"""
import argparse
import hashlib
import json
import os
import time

import numpy as np

import benchlib


def write_parquet(out_dir, data, items, vectors, meta, model, size):
    import pyarrow as pa
    import pyarrow.parquet as pq

    h = hashlib.sha256()
    with open(model, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    os.makedirs(out_dir, exist_ok=True)
    dim = vectors.shape[1]
    for split, _ in benchlib.split_dirs(data):
        rows = [i for i, it in enumerate(items) if it[0] == split]
        classes = benchlib.classes_of(os.path.join(data, split) if split else data)
        kv = {
            "xfer.classes": json.dumps(classes),
            "xfer.backbone": meta.get("xfer.backbone", "unknown"),
            "xfer.model_sha256": h.hexdigest(),
            "xfer.size": f"{size}x{size}",
            "xfer.resize": "nearest",
            "xfer.preprocess": meta.get("xfer.preprocess", "raw"),
            "xfer.dim": str(dim),
            "xfer.pretrained": meta.get("xfer.pretrained", "false"),
            "xfer.schema_version": "1",
        }
        if "xfer.quant" in meta:
            # an int8 base's vectors never pass for fp32 ones (the contract)
            kv["xfer.quant"] = meta["xfer.quant"]
        shas = []
        for i in rows:
            with open(os.path.join(data, items[i][1]), "rb") as f:
                shas.append(hashlib.sha256(f.read()).digest())
        schema = pa.schema([
            pa.field("path", pa.utf8(), False),
            pa.field("class", pa.utf8(), False),
            pa.field("label", pa.int32(), False),
            pa.field("sha256", pa.binary(32), False),
            pa.field("features", pa.list_(pa.field("item", pa.float32(), False), dim), False),
        ], metadata=kv)
        flat = pa.array(vectors[rows].reshape(-1), type=pa.float32())
        table = pa.table([
            pa.array([items[i][1].replace(os.sep, "/") for i in rows], pa.utf8()),
            pa.array([items[i][2] for i in rows], pa.utf8()),
            pa.array([items[i][3] for i in rows], pa.int32()),
            pa.array(shas, pa.binary(32)),
            pa.FixedSizeListArray.from_arrays(flat, dim),
        ], schema=schema)
        name = f"{split or 'train'}.parquet"
        pq.write_table(table, os.path.join(out_dir, name + ".tmp"), compression="snappy")
        os.replace(os.path.join(out_dir, name + ".tmp"), os.path.join(out_dir, name))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--size", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True, help="X.npy, or a folder for Parquet files")
    p.add_argument("--json-out")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    sess, meta = benchlib.ort_session(a.model, a.threads)
    session_s = time.perf_counter() - t0
    mode = meta.get("xfer.preprocess", "raw")
    name_in = meta.get("xfer.input", sess.get_inputs()[0].name)
    name_out = meta.get("xfer.output", sess.get_outputs()[0].name)
    items = benchlib.list_images(a.data)
    decode = infer = 0.0
    out = []
    for i in range(0, len(items), a.batch_size):
        s = time.perf_counter()
        px = np.stack([benchlib.load_image(os.path.join(a.data, rel), a.size)
                       for _, rel, _, _ in items[i:i + a.batch_size]])
        x = benchlib.preprocess(px, mode)
        m = time.perf_counter()
        (y,) = sess.run([name_out], {name_in: x})
        infer += time.perf_counter() - m
        decode += m - s
        out.append(y)
    vectors = np.concatenate(out)
    s = time.perf_counter()
    if a.out.endswith(".npy"):
        np.save(a.out, vectors)
    else:
        write_parquet(a.out, a.data, items, vectors, meta, a.model, a.size)
    write_s = time.perf_counter() - s
    rec = {"session_s": session_s, "decode_s": decode, "infer_s": infer, "write_s": write_s,
           "total_s": time.perf_counter() - t0, "images": len(items),
           "batch_size": a.batch_size, "threads": a.threads}
    benchlib.append_json(a.json_out, rec)
    print(f"python_pipeline: {len(items)} images in {rec['total_s']:.1f} s "
          f"(decode {decode:.1f} s, infer {infer:.1f} s)")


if __name__ == "__main__":
    main()
