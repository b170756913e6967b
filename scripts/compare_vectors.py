#!/usr/bin/env python3
"""Cosine of each row's vector between two `xfer extract` outputs of the same images.

  compare_vectors.py FEATURES_A FEATURES_B [--split validation]

Why: an int8 base (export_model.py quantize) gives vectors near, not equal to, the fp32
ones; docs/int8.md reports how near as the mean (and the lowest) cosine over a split.
Rows are matched by path; a path in one file and not the other is an error. Prints one
line per split: rows, mean, minimum and 1st percentile of the cosine, and the two
files' xfer.quant entries.
"""
import argparse
import os
import sys

import numpy as np
import pyarrow.parquet as pq


def load(folder, split):
    path = os.path.join(folder, f"{split}.parquet")
    if not os.path.isfile(path):
        raise SystemExit(f"compare_vectors.py: {path}: no such file")
    t = pq.read_table(path)
    kv = {k.decode(): v.decode() for k, v in (pq.ParquetFile(path).metadata.metadata or {}).items()}
    x = t.column("features").combine_chunks().values.to_numpy(zero_copy_only=False)
    return t.column("path").to_pylist(), x.reshape(len(t), -1).astype(np.float64), kv


def cosines(a, b, split):
    """Each row's cosine between FEATURES_A and FEATURES_B of `split`, in A's row order."""
    pa, xa, _ = load(a, split)
    pb, xb, _ = load(b, split)
    if sorted(pa) != sorted(pb):
        raise SystemExit(f"compare_vectors.py: {split}: the two files hold other images")
    order = {p: i for i, p in enumerate(pb)}
    xb = xb[[order[p] for p in pa]]
    return (xa * xb).sum(1) / (np.linalg.norm(xa, axis=1) * np.linalg.norm(xb, axis=1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--split", action="append", help="split name (repeatable; default: validation)")
    args = p.parse_args(argv)
    for split in args.split or ["validation"]:
        cos = cosines(args.a, args.b, split)
        ka, kb = load(args.a, split)[2], load(args.b, split)[2]
        print(f"{split}: {len(cos)} rows, cosine mean {cos.mean():.4f} min {cos.min():.4f} "
              f"p1 {np.percentile(cos, 1):.4f}; quant {ka.get('xfer.quant', 'none')} vs "
              f"{kb.get('xfer.quant', 'none')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
