#!/usr/bin/env python3
"""Decode DATA once into the model's input tensors, for ort_alone.py.

Writes one float32 .npy of shape [N, 3, S, S] (NCHW, preprocessed with the
model's xfer.preprocess mode), rows in flow_from_directory order: exactly the
batches `xfer extract` feeds ONNX Runtime, already decoded. Not timed.

    python scripts/bench/predecode.py --data DATA --model M.onnx --size 150 --out X.npy
"""
import argparse
import os
import sys

import numpy as np

import benchlib


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--size", type=int, default=150)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    _, meta = benchlib.ort_session(a.model, 1)
    mode = meta.get("xfer.preprocess", "raw")
    items = benchlib.list_images(a.data)
    if not items:
        sys.exit(f"predecode: no images under {a.data}")
    out = np.lib.format.open_memmap(a.out + ".tmp.npy", mode="w+", dtype=np.float32,
                                    shape=(len(items), 3, a.size, a.size))
    chunk = 64
    for i in range(0, len(items), chunk):
        px = np.stack([benchlib.load_image(os.path.join(a.data, rel), a.size)
                       for _, rel, _, _ in items[i:i + chunk]])
        out[i:i + len(px)] = benchlib.preprocess(px, mode)
    out.flush()
    del out
    os.replace(a.out + ".tmp.npy", a.out)
    print(f"predecode: {len(items)} images -> {a.out} ({mode}, {a.size}x{a.size})")


if __name__ == "__main__":
    main()
