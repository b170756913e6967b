"""Prove `xfer train`'s history equal to Keras 3's `model.fit`.

For each learning rate (0.001, 0.01, 0.1) and each head (Dense(10), and
Dense(16, relu) + Dense(10)) this script:

1. writes a features folder of generated vectors (Parquet, the contract's
   schema and metadata, through pyarrow);
2. builds the Keras model, compiles it with Adam(lr) and
   CategoricalCrossentropy(from_logits=True), and saves its initial weights
   as a head file (safetensors, written by hand: no torch);
3. runs `model.fit(shuffle=False, validation_data=...)` and
   `xfer train --no-shuffle --init HEAD` from the same start;
4. compares every number of the two histories (loss, accuracy, val_loss,
   val_accuracy, every epoch) and the final weights.

It prints the largest absolute difference per configuration and exits 1
when one exceeds --tolerance (1e-4). Run it with the Keras venv:

    make check-train            # or
    .venv-keras/bin/python scripts/check_train.py --xfer target/release/xfer

`--make-features DIR` only writes generated vectors (any size, e.g. the
clothing set's 3068 x 2048) for timing `xfer train`; it needs only numpy
and pyarrow. Keras is imported only for the check itself.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

LRS = (0.001, 0.01, 0.1)
INNERS = (None, 16)


def feature_metadata(classes: list[str], dim: int) -> dict[str, str]:
    """The contract's `xfer.*` key-value metadata for generated vectors."""
    return {
        "xfer.classes": json.dumps(classes),
        "xfer.backbone": "synthetic",
        "xfer.model_sha256": "0" * 64,
        "xfer.size": "1x1",
        "xfer.resize": "none",
        "xfer.preprocess": "none",
        "xfer.dim": str(dim),
        "xfer.pretrained": "false",
        "xfer.schema_version": "1",
    }


def write_features(path: Path, x: np.ndarray, y: np.ndarray, classes: list[str]) -> None:
    """One split as a Parquet feature file (columns and metadata of the contract)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, dim = x.shape
    names = [f"{classes[label]}/{i:05d}.jpg" for i, label in enumerate(y)]
    table = pa.table(
        {
            "path": pa.array(names, pa.string()),
            "class": pa.array([classes[label] for label in y], pa.string()),
            "label": pa.array(y.astype(np.int32), pa.int32()),
            "sha256": pa.array([bytes(32)] * n, pa.binary(32)),
            "features": pa.FixedSizeListArray.from_arrays(
                pa.array(x.astype(np.float32).ravel(), pa.float32()), dim
            ),
        }
    )
    table = table.replace_schema_metadata(feature_metadata(classes, dim))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """safetensors by hand: u64 little-endian header length, JSON header
    (padded with spaces to 8 bytes), then the raw little-endian data."""
    header: dict[str, object] = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors (float32) and metadata of a safetensors file."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(info["shape"])
    return out, meta


def generated(rows: int, dim: int, classes: int, seed: int, separation: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Vectors shaped like pooled CNN features: non-negative, a shared mean
    plus `separation` times a per-class one, and noise (separation 1 makes
    64-dim classes learnable in 10 epochs; ~0.1 gives 2048-dim vectors the
    0.8-ish validation accuracy of real Xception features)."""
    rng = np.random.default_rng(seed)
    shared = rng.gamma(1.0, 1.0, size=dim)
    means = (shared + separation * (rng.gamma(1.0, 1.0, size=(classes, dim)) - 1.0)).astype(np.float32)
    y = np.arange(rows) % classes
    rng.shuffle(y)
    y = np.sort(y, kind="stable")  # flow_from_directory order: class by class
    x = np.maximum(means[y] + rng.normal(0.0, 1.5, size=(rows, dim)), 0.0).astype(np.float32)
    return x, y


def make_features(
    out: Path, train: int, val: int, dim: int, classes: int, seed: int, separation: float = 1.0
) -> list[str]:
    names = [f"class{k:02d}" for k in range(classes)]
    x, y = generated(train + val, dim, classes, seed, separation)
    rng = np.random.default_rng(seed + 1)
    idx = rng.permutation(train + val)
    tr, va = np.sort(idx[:train]), np.sort(idx[train:])
    for split, part in (("train", tr), ("validation", va)):
        order = np.argsort(y[part], kind="stable")
        write_features(out / f"{split}.parquet", x[part][order], y[part][order], names)
    return names


def keras_run(keras, x, y, xv, yv, classes, lr, inner, epochs, batch, seed, head_path, meta):
    """Fits the Keras model; saves its initial weights to head_path first."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((x.shape[1],))]
    if inner:
        layers.append(keras.layers.Dense(inner, activation="relu"))
    layers.append(keras.layers.Dense(classes))
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    weights = model.get_weights()
    tensors = {}
    if inner:
        tensors["inner.kernel"], tensors["inner.bias"] = weights[0], weights[1]
    tensors["dense.kernel"], tensors["dense.bias"] = weights[-2], weights[-1]
    write_safetensors(head_path, tensors, meta)
    hot = keras.utils.to_categorical
    history = model.fit(
        x,
        hot(y, classes),
        batch_size=batch,
        epochs=epochs,
        shuffle=False,
        validation_data=(xv, hot(yv, classes)),
        verbose=0,
    )
    final = model.get_weights()
    names = (["inner.kernel", "inner.bias"] if inner else []) + ["dense.kernel", "dense.bias"]
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}, dict(zip(names, final))


def check(args: argparse.Namespace) -> int:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import keras  # noqa: E402  (only the check needs it)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="check-train-"))
    features = work / "features"
    names = make_features(
        features, args.train_rows, args.val_rows, args.dim, args.classes, args.seed, args.separation
    )
    import pyarrow.parquet as pq

    def load(split):
        t = pq.read_table(features / f"{split}.parquet")
        x = np.asarray(t["features"].combine_chunks().flatten()).reshape(t.num_rows, args.dim)
        return x, np.asarray(t["label"])

    (x, y), (xv, yv) = load("train"), load("validation")
    meta = feature_metadata(names, args.dim)
    env = dict(os.environ, XDG_CACHE_HOME=str(work / "cache"))
    worst = 0.0
    print(
        f"keras {keras.__version__} ({keras.backend.backend()}), {len(x)} train / {len(xv)} val rows, "
        f"dim {args.dim}, {args.classes} classes, batch {args.batch_size}, {args.epochs} epochs, no shuffling"
    )
    print(f"{'lr':>6} {'inner':>5}  {'max |history diff|':>18}  {'max |weight diff|':>17}  final val_accuracy")
    for lr in args.lr:
        for inner in INNERS:
            tag = f"lr{lr}-inner{inner or 0}"
            head = work / f"{tag}-init.safetensors"
            hist, weights = keras_run(
                keras, x, y, xv, yv, args.classes, lr, inner, args.epochs, args.batch_size, args.seed, head, meta
            )
            run = work / tag
            cmd = [
                args.xfer, "train", "--features", str(features), "--out", str(run),
                "--lr", str(lr), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                "--no-shuffle", "--init", str(head), "--seed", str(args.seed),
            ]  # fmt: skip
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stdout, done.stderr, file=sys.stderr)
                print(f"{tag}: xfer train failed ({done.returncode})", file=sys.stderr)
                return 1
            ours = json.loads((run / "history.json").read_text())
            diff = 0.0
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                a, b = np.array(hist[key]), np.array(ours[key])
                if a.shape != b.shape:
                    print(f"{tag}: {key} has {len(b)} epochs, Keras {len(a)}", file=sys.stderr)
                    return 1
                diff = max(diff, float(np.max(np.abs(a - b))))
            last, _ = read_safetensors(run / "last.safetensors")
            wdiff = max(float(np.max(np.abs(last[k] - v))) for k, v in weights.items())
            worst = max(worst, diff)
            flag = "" if diff <= args.tolerance else "  <-- over tolerance"
            print(f"{lr:>6} {inner or '-':>5}  {diff:>18.3e}  {wdiff:>17.3e}  {hist['val_accuracy'][-1]:.4f}{flag}")
    verdict = "equal" if worst <= args.tolerance else "NOT equal"
    print(f"largest history difference {worst:.3e} (tolerance {args.tolerance:g}): {verdict}")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0 if worst <= args.tolerance else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--xfer", default="target/release/xfer", help="the xfer binary")
    p.add_argument("--train-rows", type=int, default=300)
    p.add_argument("--val-rows", type=int, default=75)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--lr", type=lambda v: [float(x) for x in v.split(",")], default=list(LRS),
                   help="comma list of learning rates (default 0.001,0.01,0.1)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--separation", type=float, default=1.0, help="class separation of generated vectors")
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--keep", metavar="DIR", help="keep the features, heads and runs in DIR")
    p.add_argument("--make-features", metavar="DIR", help="only write generated vectors to DIR and exit")
    args = p.parse_args(argv)
    if args.make_features:
        make_features(
            Path(args.make_features), args.train_rows, args.val_rows, args.dim, args.classes, args.seed, args.separation
        )
        print(f"wrote {args.train_rows} + {args.val_rows} vectors of {args.dim} to {args.make_features}")
        return 0
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
