#!/usr/bin/env python3
"""Prove the ONNX Xception equal to Keras's own (make check-export).

Runs in .venv-keras (Keras 3 on JAX, CPU, plus onnxruntime):

 1. builds keras.applications.Xception(weights=None, include_top=False,
    pooling='avg') and sets every weight, batch-norm moving mean and variance
    included, to seeded random values (kernels scaled by fan-in, variances in
    [0.5, 1.5], so activations stay in a sane range);
 2. saves them in every layout the exporter reads: Keras's legacy weights-only
    HDF5 (Keras 3 names), `model.save('m.h5')` (the same under model_weights/),
    Keras 3's `model.save_weights('m.weights.h5')`, and a Keras-1-named copy
    shaped like the official ImageNet file (convolution2d_N,
    batchnormalization_N with running_std, ...), which Keras itself must load
    back into an identical model;
 3. converts each with scripts/export_model.py; all must give the same graph;
 4. feeds the same preprocessed clothing images (keras.utils.load_img +
    xception.preprocess_input) to Keras and ONNX Runtime at each size, and
    reports max |onnx - keras| / max |keras| (must be <= --tol) and per-element
    relative errors;
 5. as negative controls, runs copies of the export with the pools padded
    SAME_LOWER and with batch-norm epsilon 1e-5: both must miss the tolerance,
    so the check can see the mistakes it is there to catch.

Exit status 0 when every size is within tolerance, 1 otherwise.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import h5py  # noqa: E402
import numpy as np  # noqa: E402

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
EXPORT = os.path.join(SCRIPTS, "export_model.py")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def _feeds_add(layer):
    """The last conv of a residual branch, or a 1x1 residual conv: its output
    meets another branch in an Add."""
    name = layer.name
    if type(layer).__name__ == "Conv2D":
        return tuple(layer.kernel.shape[:2]) == (1, 1)
    b = name.split("_")[0]
    return name.endswith("_sepconv3") or (
        b in ("block2", "block3", "block4", "block13") and name.endswith("_sepconv2"))


def randomize(model, seed):
    """Seeded values for every variable of MODEL; returns how many were set.

    Kernels are normal, scaled by fan-in (He after a ReLU, 1/fan-in for the
    depthwise half of a separable conv, halved where two branches are added);
    batch norm gets moving variance ~U(0.5, 1.5), moving mean and beta
    ~N(0, 0.2), gamma = sqrt(variance + eps) * U(0.8, 1.2). Each layer then
    keeps its input's scale roughly, so the pooled features stay of order 1-10
    rather than growing by ~1.2x per batch norm and 2x per residual Add."""
    rng = np.random.default_rng(seed)
    values = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "BatchNormalization":
            c = layer.gamma.shape[0]
            var = rng.uniform(0.5, 1.5, c)
            values[layer.moving_variance.path] = var
            values[layer.moving_mean.path] = rng.normal(0.0, 0.2, c)
            values[layer.beta.path] = rng.normal(0.0, 0.2, c)
            values[layer.gamma.path] = np.sqrt(var + layer.epsilon) * rng.uniform(0.8, 1.2, c)
        elif kind in ("Conv2D", "SeparableConv2D"):
            kernels = [layer.kernel] if kind == "Conv2D" else [layer.depthwise_kernel,
                                                                layer.pointwise_kernel]
            for v in kernels:
                kh, kw, cin, cout = v.shape
                depthwise = v.path.endswith("depthwise_kernel")
                gain = 1.0 if depthwise else 2.0
                if v is kernels[-1] and _feeds_add(layer):
                    gain /= 2
                fan_in = kh * kw * (1 if depthwise else cin)
                values[v.path] = rng.standard_normal(tuple(v.shape)) * np.sqrt(gain / fan_in)
        elif layer.weights:
            raise SystemExit(f"check_export.py: unexpected layer with weights {layer.name}")
    for v in model.weights:
        if v.path not in values:
            raise SystemExit(f"check_export.py: no value for {v.path}")
        v.assign(values[v.path].astype(np.float32))
    if len(values) != len(model.weights):
        raise SystemExit(f"check_export.py: {len(values)} values for {len(model.weights)} variables")
    return len(values)


# Keras 1 layer and weight names, as in the official ImageNet file.
K1_LAYER = {"Conv2D": "convolution2d", "SeparableConv2D": "separableconvolution2d",
            "BatchNormalization": "batchnormalization", "Activation": "activation",
            "MaxPooling2D": "maxpooling2d", "Add": "merge", "InputLayer": "input",
            "GlobalAveragePooling2D": "globalaveragepooling2d"}
K1_WEIGHT = {"kernel": "W", "depthwise_kernel": "depthwise_kernel",
             "pointwise_kernel": "pointwise_kernel", "gamma": "gamma", "beta": "beta",
             "moving_mean": "running_mean", "moving_variance": "running_std"}


def save_keras1(model, path):
    """Legacy layout with Keras 1's auto-generated names (weightless layers
    included, as Keras 1 listed them), weights in Keras order."""
    counts, names = {}, []
    with h5py.File(path, "w") as f:
        groups = []
        for layer in model.layers:
            base = K1_LAYER[type(layer).__name__]
            counts[base] = counts.get(base, 0) + 1
            name = f"{base}_{counts[base]}"
            names.append(name.encode())
            groups.append((name, layer))
        f.attrs["layer_names"] = names
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"1.2.2"
        for name, layer in sorted(groups):
            g = f.create_group(name)
            ws = layer.trainable_weights + layer.non_trainable_weights
            wnames = [f"{name}_{K1_WEIGHT[w.path.rsplit('/', 1)[-1]]}:0".encode() for w in ws]
            g.attrs["weight_names"] = wnames
            for wn, w in zip(wnames, ws):
                g.create_dataset(wn.decode(), data=np.asarray(w.numpy(), dtype=np.float32))


def _variant(model, op_type, attr, value):
    """A copy of MODEL with one attribute of every OP_TYPE node changed."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in m.graph.node:
        for a in n.attribute:
            if n.op_type == op_type and a.name == attr:
                if isinstance(value, bytes):
                    a.s = value
                else:
                    a.f = value
    return m.SerializeToString()


# Negative controls: the mistakes the issue warns about must fail the check.
CONTROLS = {"pools SAME_LOWER": ("MaxPool", "auto_pad", b"SAME_LOWER"),
            "BN eps 1e-5": ("BatchNormalization", "epsilon", 1e-5)}


def run_ort(sess, x, batch):
    return np.concatenate([sess.run(["features"], {"input": x[i:i + batch]})[0]
                           for i in range(0, len(x), batch)])


def export(weights, out):
    t = time.time()
    r = subprocess.run([sys.executable, EXPORT, "xception", "--weights", weights, "--out", out],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"check_export.py: export of {weights} failed:\n{r.stderr}")
    return time.time() - t


def sample_images(data, n):
    """N validation images spread evenly over flow_from_directory order."""
    root = os.path.join(data, "validation")
    if not os.path.isdir(root):
        root = data
    paths = []
    for cls in sorted(os.listdir(root)):
        d = os.path.join(root, cls)
        if os.path.isdir(d):
            paths += [os.path.join(d, f) for f in sorted(os.listdir(d))
                      if f.lower().endswith(IMAGE_EXTS)]
    if not paths:
        raise SystemExit(f"check_export.py: no images under {root}")
    idx = np.linspace(0, len(paths) - 1, min(n, len(paths))).round().astype(int)
    return [paths[i] for i in idx]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(SCRIPTS, "..", "..", "shared",
                                                   "clothing-dataset-small"))
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--sizes", default="150,299")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--no-controls", dest="controls", action="store_false",
                    help="skip the negative controls (wrong pool padding, wrong BN epsilon)")
    ap.add_argument("--workdir", help="keep the weight files and models here (default: a temp dir)")
    args = ap.parse_args()

    import keras
    import onnx
    import onnxruntime as ort
    from keras.applications import xception
    from keras.src.legacy.saving import legacy_h5_format

    try:  # model.save('m.h5') warns that HDF5 is legacy: that is the point here
        import absl.logging
        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass

    if not os.path.isdir(args.data):
        raise SystemExit(f"check_export.py: no data at {args.data} (pass --data)")
    tmp = None
    if args.workdir:
        work = args.workdir
        os.makedirs(work, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="check-export-")
        work = tmp.name
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(work, "cache"))

    t0 = time.time()
    model = keras.applications.Xception(weights=None, include_top=False, pooling="avg")
    n = randomize(model, args.seed)
    print(f"keras {keras.__version__} ({keras.backend.backend()}): Xception include_top=False, "
          f"pooling=avg, {n} variables in {len(model.layers)} layers set from seed {args.seed}")

    files = {
        "legacy .h5 (Keras 3 names)": os.path.join(work, "xception-legacy.h5"),
        "model.save .h5": os.path.join(work, "xception-model.h5"),
        "Keras 3 .weights.h5": os.path.join(work, "xception.weights.h5"),
        "legacy .h5 (Keras 1 names)": os.path.join(work, "xception-keras1.h5"),
    }
    paths = list(files.values())
    with h5py.File(paths[0], "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    model.save(paths[1])
    model.save_weights(paths[2])
    save_keras1(model, paths[3])

    # Keras itself loads the Keras-1-named file by order into the same model.
    clone = keras.applications.Xception(weights=None, include_top=False, pooling="avg")
    with h5py.File(paths[3], "r") as f:
        legacy_h5_format.load_weights_from_hdf5_group(f, clone)
    same = all(np.array_equal(a, b) for a, b in zip(model.get_weights(), clone.get_weights()))
    print(f"Keras loads the Keras-1-named file back into identical weights: {same}")
    del clone

    graphs = {}
    for label, path in files.items():
        out = path.rsplit(".", 1)[0].replace(".weights", "-weights") + ".onnx"
        dt = export(path, out)
        graphs[label] = out
        print(f"exported {label:28s} -> {os.path.basename(out)} ({dt:.1f} s)")
    ref = onnx.load(graphs[next(iter(files))]).graph.SerializeToString()
    identical = all(onnx.load(p).graph.SerializeToString() == ref for p in graphs.values())
    print(f"all four exports have the same ONNX graph and weights: {identical}")

    images = sample_images(args.data, args.images)
    sess = ort.InferenceSession(graphs[next(iter(files))], providers=["CPUExecutionProvider"])
    controls = {}
    if args.controls:
        base = onnx.load(graphs[next(iter(files))])
        controls = {name: ort.InferenceSession(_variant(base, *c), providers=["CPUExecutionProvider"])
                    for name, c in CONTROLS.items()}
        del base
    control_rows = []
    print(f"\n{len(images)} images from {args.data}; onnxruntime {ort.__version__}\n")
    head = (f"{'size':>7} {'max|keras|':>10} {'max|diff|':>10} {'rel':>9} {'img rel':>9} "
            f"{'elt p50':>9} {'elt p99':>9} {'elt max':>9} {'keras s':>8} {'ort s':>6}")
    print(head)
    print("-" * len(head))
    ok = same and identical
    for size in [int(s) for s in args.sizes.split(",")]:
        x = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(size, size)))
                      for p in images])
        x = xception.preprocess_input(x.astype(np.float32))
        t = time.time()
        k = np.concatenate([np.asarray(model(x[i:i + args.batch_size], training=False))
                            for i in range(0, len(x), args.batch_size)])
        tk = time.time() - t
        t = time.time()
        xo = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        o = run_ort(sess, xo, args.batch_size)
        to = time.time() - t
        for name, s in controls.items():
            c = run_ort(s, xo, args.batch_size)
            c_rel = np.abs(c.astype(np.float64) - k).max() / np.abs(k).max()
            control_rows.append((size, name, c_rel))
            ok &= bool(c_rel > args.tol)
        diff = np.abs(o.astype(np.float64) - k)
        scale = np.abs(k).max()
        rel = diff.max() / scale
        img_rel = (diff.max(axis=1) / np.abs(k).max(axis=1)).max()
        mask = np.abs(k) > 1e-3 * scale  # per-element ratios, skipping near-zero outputs
        elt = diff[mask] / np.abs(k[mask])
        print(f"{size:>3}x{size:<3} {scale:>10.4g} {diff.max():>10.3g} {rel:>9.2e} {img_rel:>9.2e} "
              f"{np.median(elt):>9.2e} {np.quantile(elt, 0.99):>9.2e} {elt.max():>9.2e} "
              f"{tk:>8.1f} {to:>6.1f}")
        ok &= bool(rel <= args.tol) and o.shape == (len(images), 2048)
    print(f"\nrel = max|onnx - keras| / max|keras| over all images (tolerance {args.tol:g}); "
          f"img rel: worst image's own ratio;\nelt: |onnx - keras| / |keras| per element with "
          f"|keras| > 1e-3 max|keras|. total {time.time() - t0:.0f} s")
    if control_rows:
        print("negative controls (a wrong export must exceed the tolerance):")
        for size in sorted({s for s, _, _ in control_rows}):
            print(f"  {size}: " + ", ".join(f"{n} rel {r:.2e}" for s, n, r in control_rows
                                            if s == size))
    print("PASS" if ok else "FAIL")
    if tmp:
        tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
