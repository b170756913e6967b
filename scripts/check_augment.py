#!/usr/bin/env python3
"""Compare xfer's augmented views with Keras's ImageDataGenerator, pixel by pixel.

xfer extract runs an *identity* base (check_pixels.py's: the model input is
the vector) with `--augment K`, so each row of views/train.parquet is the
exact tensor a view feeds the model. For every row this script recomputes the
view's parameters from the documented derivation (sha256 of seed, view and
path, crates/extract/src/augment.rs) and makes the view the Keras way:

    x = img_to_array(load_img(path, target_size=(S, S)))          # float32 HWC
    x = ImageDataGenerator(fill_mode=..., cval=...).apply_transform(x, params)
    x = preprocess(x)                                              # raw: none

with `scipy.ndimage.affine_transform(order=1)` inside, as Keras 3's legacy
generator does. Prints the largest difference and how many values differ by
more than 1e-3 (pixel levels for `raw`); exits 1 above --tolerance.

  KERAS_BACKEND=jax .venv-keras/bin/python scripts/check_augment.py \\
      --xfer target/release/xfer --data ../shared/clothing-dataset-small --sample 30

Needs keras and scipy besides check_pixels.py's packages (.venv-keras).
"""
import argparse
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_pixels import identity_model, keras_input, sample_tree  # noqa: E402


def uniforms(seed, view, rel):
    """Eight uniforms in [0, 1): augment.rs's `uniforms`, in Python."""
    out = []
    for block in (0, 1):
        d = hashlib.sha256(b"xfer.augment/v1\0" + struct.pack("<QI", seed, view) + bytes([block])
                           + rel.encode()).digest()
        out += [(struct.unpack("<Q", d[8 * j:8 * j + 8])[0] >> 11) / 2.0**53 for j in range(4)]
    return out


def params(a, rel, view, rows, cols):
    """ImageDataGenerator.get_random_transform with xfer's uniforms."""
    u = uniforms(a.seed, view, rel)

    def sym(r, x):
        return -r + 2 * r * x

    def shift(r, x, side):
        if r == 0:
            return 0.0
        t = sym(r, x)
        return t * side if r < 1 else t

    zx, zy = (1.0, 1.0) if a.zoom == 0 else (1 - a.zoom + 2 * a.zoom * u[4], 1 - a.zoom + 2 * a.zoom * u[5])
    return {
        "theta": sym(a.rotation, u[0]) if a.rotation else 0,
        "tx": shift(a.height_shift, u[1], rows),
        "ty": shift(a.width_shift, u[2], cols),
        "shear": sym(a.shear, u[3]) if a.shear else 0,
        "zx": zx,
        "zy": zy,
        "flip_horizontal": a.horizontal_flip and u[6] < 0.5,
        "flip_vertical": a.vertical_flip and u[7] < 0.5,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--xfer", required=True)
    p.add_argument("--data", required=True, help="a flow_from_directory folder with a train split")
    p.add_argument("--sample", type=int, default=30, help="images sampled from --data")
    p.add_argument("--size", type=int, default=150)
    p.add_argument("--views", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rotation", type=float, default=30.0)
    p.add_argument("--width-shift", type=float, default=10.0)
    p.add_argument("--height-shift", type=float, default=0.1)
    p.add_argument("--shear", type=float, default=10.0)
    p.add_argument("--zoom", type=float, default=0.1)
    p.add_argument("--no-horizontal-flip", dest="horizontal_flip", action="store_false")
    p.add_argument("--vertical-flip", action="store_true")
    p.add_argument("--fill-mode", default="nearest", choices=["nearest", "constant", "reflect"])
    p.add_argument("--cval", type=float, default=0.0)
    p.add_argument("--tolerance", type=float, default=1e-3, help="largest allowed difference (pixel levels)")
    a = p.parse_args(argv)

    os.environ.setdefault("KERAS_BACKEND", "jax")
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    gen = ImageDataGenerator(fill_mode=a.fill_mode, cval=a.cval)
    tmp = tempfile.mkdtemp(prefix="check_augment-")
    try:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        train = os.path.join(os.path.abspath(a.data), "train")
        names = sample_tree(train if os.path.isdir(train) else os.path.abspath(a.data), a.sample, 0,
                            os.path.join(data, "train"))
        model = os.path.join(tmp, "identity.onnx")
        identity_model(model, a.size, "raw")
        out = os.path.join(tmp, "out")
        cmd = [a.xfer, "extract", "--data", data, "--model", model, "--out", out, "--size", str(a.size),
               "--device", "cpu", "--quiet", "--augment", str(a.views), "--seed", str(a.seed),
               "--rotation", str(a.rotation), "--width-shift", str(a.width_shift),
               "--height-shift", str(a.height_shift), "--shear", str(a.shear), "--zoom", str(a.zoom),
               "--fill-mode", a.fill_mode, "--cval", str(a.cval)]
        if not a.horizontal_flip:
            cmd.append("--no-horizontal-flip")
        if a.vertical_flip:
            cmd.append("--vertical-flip")
        env = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache"))
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            sys.exit(f"check_augment.py: xfer failed ({r.returncode}):\n{r.stderr}")
        t = pq.read_table(os.path.join(out, "views", "train.parquet"))
        flat = t.column("features").combine_chunks().values.to_numpy(zero_copy_only=False)
        flat = flat.reshape(len(t), -1)
        worst, off, values, flips = 0.0, 0, 0, 0
        s = a.size
        for i, (rel, view) in enumerate(zip(t.column("path").to_pylist(), t.column("view").to_pylist())):
            x = keras_input(os.path.join(data, rel), s, "nearest", "raw").reshape(3, s, s).transpose(1, 2, 0)
            prm = params(a, rel, view, s, s)
            flips += prm["flip_horizontal"]
            want = gen.apply_transform(x.copy(), prm).transpose(2, 0, 1).reshape(-1)
            d = np.abs(flat[i].astype(np.float64) - want.astype(np.float64))
            worst = max(worst, float(d.max()))
            off += int((d > 1e-3).sum())
            values += d.size
        print(f"check_augment: {len(names)} images x {a.views} views at {s}x{s} ({len(t)} rows, "
              f"{flips} flipped; rotation {a.rotation:g}, shifts {a.width_shift:g}/{a.height_shift:g}, "
              f"shear {a.shear:g}, zoom {a.zoom:g}, fill {a.fill_mode}): max abs difference from Keras "
              f"{worst:.3g} pixel levels, {off} of {values} values differ by more than 1e-3")
        return 0 if worst <= a.tolerance and len(t) == len(names) * a.views else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
