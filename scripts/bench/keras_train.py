#!/usr/bin/env python3
"""Keras fitting the same head on the same cached vectors (the reference for
`xfer train`). Runs under .venv-keras (Keras 3, JAX backend, CPU).

Reads FEATURES/<split>.parquet (or its shards) with pyarrow, then for every
configuration of the grid --lr x --inner x --dropout (one each: a single run)
builds the head `xfer train` fits,

    Input(D) -> [Dense(inner, relu)] -> [Dropout(p)] -> Dense(C)   (logits)

(inner 0 = no inner layer; dropout 0 = no Dropout layer; Dropout sits after
the inner layer, on the vectors when there is none), compiles
Adam(lr) + CategoricalCrossentropy(from_logits=True) + accuracy, and calls
fit(x, y, batch_size, epochs, validation_data, shuffle=True, verbose=0),
one after the other in this one process, as a Keras user runs a sweep.

--grid-sample K fits only every K-th configuration of the grid (the driver
scales the fit time by the grid size; say so where it is used).

Appends one JSON line to --json-out: import_s (keras + jax), load_s
(Parquet to numpy), fit_s (sum of the fit calls, compile included), fits
(per configuration: lr, inner, dropout, fit_s, val_accuracy), configs (grid
size), total_s.

    KERAS_BACKEND=jax python scripts/bench/keras_train.py --features F --epochs 10 --batch-size 32 --lr 0.01
"""
import argparse
import glob
import itertools
import os
import re
import time

T0 = time.perf_counter()
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

import benchlib  # noqa: E402


def split_files(features, split):
    one = os.path.join(features, f"{split}.parquet")
    if os.path.exists(one):
        return [one]
    shards = glob.glob(os.path.join(glob.escape(features), f"{split}-*-of-*.parquet"))
    key = re.compile(r"-(\d+)-of-(\d+)\.parquet$")
    shards = sorted(shards, key=lambda p: int(key.search(p).group(1)))
    if not shards:
        raise SystemExit(f"keras_train: no {split}.parquet (or shards) in {features}")
    return shards


def load(features, split):
    """(x float32 [N, D], labels int [N], classes) of one split."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    files = split_files(features, split)
    table = pa.concat_tables(pq.read_table(p) for p in files)
    # the xfer.* entries are Parquet key-value metadata (not in the embedded
    # Arrow schema when xfer wrote the file)
    meta = {k.decode(): v.decode() for k, v in (pq.read_metadata(files[0]).metadata or {}).items()}
    classes = json.loads(meta["xfer.classes"])
    col = table.column("features").combine_chunks()
    x = col.flatten().to_numpy().reshape(len(table), -1).astype(np.float32, copy=False)
    y = table.column("label").to_numpy()
    return x, y, classes


def floats(s):
    return [float(v) for v in s.split(",")]


def ints(s):
    return [int(v) for v in s.split(",")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--features", required=True)
    p.add_argument("--train", default="train")
    p.add_argument("--val", default="validation")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=floats, default=[0.01])
    p.add_argument("--inner", type=ints, default=[0])
    p.add_argument("--dropout", type=floats, default=[0.0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--grid-sample", type=int, default=1, metavar="K")
    p.add_argument("--json-out")
    a = p.parse_args(argv)

    import keras
    t_import = time.perf_counter()
    x, y, classes = load(a.features, a.train)
    xv, yv, _ = load(a.features, a.val)
    c = len(classes)
    y1, yv1 = np.eye(c, dtype=np.float32)[y], np.eye(c, dtype=np.float32)[yv]
    t_load = time.perf_counter()

    grid = list(itertools.product(a.lr, a.inner, a.dropout))
    fits = []
    for lr, inner, dropout in grid[::a.grid_sample]:
        keras.utils.set_random_seed(a.seed)
        s = time.perf_counter()
        inp = keras.Input(shape=(x.shape[1],))
        h = inp
        if inner > 0:
            h = keras.layers.Dense(inner, activation="relu")(h)
        if dropout > 0:
            h = keras.layers.Dropout(dropout)(h)
        model = keras.Model(inp, keras.layers.Dense(c)(h))
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr),
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        hist = model.fit(x, y1, batch_size=a.batch_size, epochs=a.epochs,
                         validation_data=(xv, yv1), shuffle=True, verbose=0)
        fits.append({"lr": lr, "inner": inner, "dropout": dropout,
                     "fit_s": time.perf_counter() - s,
                     "val_accuracy": float(hist.history["val_accuracy"][-1])})
    rec = {"import_s": t_import - T0, "load_s": t_load - t_import,
           "fit_s": sum(f["fit_s"] for f in fits), "fits": fits, "configs": len(grid),
           "fitted": len(fits), "rows": int(len(x)), "dim": int(x.shape[1]),
           "total_s": time.perf_counter() - T0, "keras": keras.__version__}
    benchlib.append_json(a.json_out, rec)
    print(f"keras_train: {len(fits)}/{len(grid)} fits, fit {rec['fit_s']:.2f} s, "
          f"whole {rec['total_s']:.2f} s")


if __name__ == "__main__":
    main()
