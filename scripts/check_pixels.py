#!/usr/bin/env python3
"""Prove xfer extract's model input equal to Keras's load_img + preprocess_input.

xfer runs an *identity* base here (ONNX Flatten, exported with the xfer
metadata), so each row of the feature file it writes is the exact float32
tensor the model would have seen. This script computes the same tensor the
Keras way, with PIL (what `keras.utils.load_img` calls):

    img = PIL.Image.open(path)
    if img.mode != "RGB": img = img.convert("RGB")
    if img.size != (S, S): img = img.resize((S, S), NEAREST)   # or --resize
    x = np.asarray(img, "float32")                              # HWC
    x = preprocess(x)            # tf: x /= 127.5; x -= 1 ... in float32

and compares. With `--decode draft`, xfer's `extract --decode draft` is
compared with PIL's draft mode before the same steps:

    img = PIL.Image.open(path)
    img.draft("RGB", (S, S))     # JPEG: libjpeg decodes at 1/2, 1/4 or 1/8
    ...

and `--synthetic` adds JPEGs whose sizes hit each draft scale (1, 2, 4, 8)
in several subsamplings, gray, progressive and CMYK, at odd sizes.

The run goes through the whole extract pipeline (walk, decode,
batching, Parquet), so equal rows mean equal vectors for any base.

  check_pixels.py --xfer target/release/xfer --data ../shared/clothing-dataset-small --sample 200
  check_pixels.py --xfer target/release/xfer --synthetic     # every PIL mode/format we read
  check_pixels.py --xfer target/release/xfer --synthetic --decode draft --resize bicubic
  check_pixels.py --features OUT --data DATA --model M.onnx   # an existing extract output

The last form checks a feature folder written by `xfer extract` with the
readers users have: pyarrow (Arrow types, `xfer.*` metadata), pandas and
DuckDB (readable, row counts), Keras's own file order, hashlib's sha256, and
ONNX Runtime on the Keras pixels (vectors within 1e-5).

Prints the maximum absolute difference (in 0..255 pixel units for `raw`) and
exits 1 when it is not zero. Needs numpy, pillow, onnx, pyarrow (.venv).
"""
import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import zlib
import struct

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from xferexport import graph, metadata  # noqa: E402

FILTERS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "box": Image.BOX,
    "hamming": Image.HAMMING,
}
EXTS = ("png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff")


def identity_model(path, size, preprocess):
    g = graph.Graph()
    x = g.op("Flatten", [g.input], "flatten", axis=1)
    dim = 3 * size * size
    props = metadata.props(backbone="identity", preprocess=preprocess, default_size=size, dim=dim,
                           pretrained=False, weights="none", weights_sha256="none")
    graph.save_atomic(g.finish(x, dim, props, doc="identity: the model input as the vector"), path)


def keras_input(path, size, resize, preprocess, decode="full"):
    """keras.utils.load_img(path, target_size=(size, size), interpolation=resize) + preprocess;
    decode="draft" first asks PIL for its draft mode (a no-op for formats other than JPEG)."""
    with open(path, "rb") as f:
        img = Image.open(io.BytesIO(f.read()))
        if decode == "draft":
            img.draft("RGB", (size, size))
        if img.mode != "RGB":
            img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), FILTERS[resize])
    x = np.asarray(img, dtype="float32").copy()
    if preprocess == "tf":
        x /= 127.5
        x -= 1.0
    elif preprocess == "torch":
        x /= 255.0
        for c, (m, s) in enumerate(zip([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])):
            x[..., c] -= m
            x[..., c] /= s
    elif preprocess == "lite":
        x -= 127.0
        x /= 128.0
    return x.transpose(2, 0, 1).reshape(-1)  # CHW, as the ONNX input


def run_xfer(xfer, data, model, out, size, resize, extra=(), decode="full"):
    cmd = [xfer, "extract", "--data", data, "--model", model, "--out", out, "--size", str(size),
           "--resize", resize, "--decode", decode, "--device", "cpu", "--quiet", *extra]
    env = dict(os.environ)
    env.setdefault("XDG_CACHE_HOME", os.path.join(out, ".cache"))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode not in (0, 1):
        sys.exit(f"check_pixels.py: xfer failed ({r.returncode}):\n{r.stderr}")
    return r


def compare(data, out, size, resize, preprocess, decode="full"):
    """Max abs difference over every row of every split; also the rows' paths."""
    import pyarrow.parquet as pq  # here, so export_model.py quantize needs no pyarrow

    worst, differing, rows, seen = 0.0, [], 0, []
    for name in sorted(os.listdir(out)):
        if not name.endswith(".parquet"):
            continue
        t = pq.read_table(os.path.join(out, name))
        feats = t.column("features").combine_chunks()
        flat = feats.values.to_numpy(zero_copy_only=False).reshape(len(t), -1)
        for i, rel in enumerate(t.column("path").to_pylist()):
            want = keras_input(os.path.join(data, rel), size, resize, preprocess, decode)
            d = float(np.abs(flat[i].astype(np.float64) - want.astype(np.float64)).max())
            rows += 1
            seen.append(rel)
            if d > 0:
                differing.append((rel, d))
            worst = max(worst, d)
    return worst, differing, rows, seen


def sample_tree(data, n, seed, tmp):
    """A DATA folder of symlinks to n images (flow_from_directory layout kept)."""
    files = []
    for root, _, names in os.walk(data):
        # every folder exists in the sample, so each split keeps all classes
        os.makedirs(os.path.join(tmp, os.path.relpath(root, data)), exist_ok=True)
        for f in names:
            if f.lower().endswith(EXTS):
                files.append(os.path.relpath(os.path.join(root, f), data))
    files.sort()
    random.Random(seed).shuffle(files)
    chosen = sorted(files[:n])
    for rel in chosen:
        dst = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.symlink(os.path.abspath(os.path.join(data, rel)), dst)
    return chosen


# --- synthetic images of every mode and format we claim -----------------------

def png16(path, arr, color_type):
    """A 16-bit PNG written by hand (PIL cannot write 16-bit RGB)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def draft_jpegs(d, size, noise):
    """JPEGs whose draft scale at `size` is 1, 2, 4 and 8 (min(w // S, h // S)
    at the low and high end of each range), odd sides, each in 4:2:0, 4:4:4,
    4:2:2, gray, progressive and CMYK; returns {name: expected scale}."""
    made = {}
    for scale, (fw, fh) in [(1, (1, 1)), (1, (1, 3)), (2, (2, 3)), (2, (3, 7)), (4, (4, 5)),
                            (4, (7, 4)), (8, (8, 9)), (8, (11, 8))]:
        w, h = fw * size + 3, fh * size + 5  # odd, not a multiple of the MCU
        rgb = Image.fromarray(noise(h, w, 3), "RGB")
        stem = f"draft{scale}_{w}x{h}"
        for name, img, kw in [("420", rgb, dict(quality=90)),
                              ("444", rgb, dict(quality=75, subsampling=0)),
                              ("422", rgb, dict(quality=80, subsampling=1)),
                              ("progressive", rgb, dict(quality=85, progressive=True)),
                              ("gray", rgb.convert("L"), dict(quality=90)),
                              ("cmyk", rgb.convert("CMYK"), dict(quality=90))]:
            img.save(os.path.join(d, f"{stem}_{name}.jpg"), **kw)
            made[f"{stem}_{name}.jpg"] = scale
    return made


def draft_scales(d, size):
    """The scale PIL's draft picks for each JPEG in d (checks draft_jpegs' sizes)."""
    out = {}
    for name in sorted(os.listdir(d)):
        with Image.open(os.path.join(d, name)) as img:
            if img.format != "JPEG":
                continue
            img.draft("RGB", (size, size))
            out[name] = img.decoderconfig[0]  # (scale, draft flag) for libjpeg
    return out


def synthetic(tmp, seed=0, size=None):
    """Every mode and format xfer reads; with `size`, also draft_jpegs."""
    rng = np.random.default_rng(seed)
    d = os.path.join(tmp, "c")
    os.makedirs(d)

    def noise(h, w, c):
        base = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
        # smooth regions plus noise, so JPEG has real content
        yy, xx = np.mgrid[0:h, 0:w]
        grad = ((xx * 255 // max(w - 1, 1) + yy * 3) % 256).astype(np.uint8)[..., None]
        return np.where(rng.random((h, w, 1)) < 0.3, base, grad).astype(np.uint8)

    rgb = Image.fromarray(noise(97, 131, 3), "RGB")
    rgb.save(os.path.join(d, "rgb.png"))
    rgb.save(os.path.join(d, "rgb.bmp"))
    rgb.save(os.path.join(d, "rgb.ppm"))
    rgb.save(os.path.join(d, "rgb.tif"))
    rgb.save(os.path.join(d, "q90_420.jpg"), quality=90)
    rgb.save(os.path.join(d, "q75_444.jpg"), quality=75, subsampling=0)
    rgb.save(os.path.join(d, "q80_422.jpeg"), quality=80, subsampling=1)
    rgb.save(os.path.join(d, "progressive.jpg"), quality=85, progressive=True)
    rgb.save(os.path.join(d, "jpeg_named.png"), format="JPEG")  # PIL reads by content
    Image.fromarray(noise(60, 40, 3), "RGB").save(os.path.join(d, "upscale.png"))
    Image.fromarray(noise(150, 150, 3), "RGB").save(os.path.join(d, "same_size.png"))
    gray = Image.fromarray(noise(80, 120, 1)[..., 0], "L")
    gray.save(os.path.join(d, "gray.png"))
    gray.save(os.path.join(d, "gray.jpg"))
    gray.save(os.path.join(d, "gray.bmp"))
    gray.save(os.path.join(d, "gray.tif"))
    gray.save(os.path.join(d, "gray.ppm"))  # a PGM under a .ppm name
    gray.convert("1").save(os.path.join(d, "bilevel.png"))
    la = Image.merge("LA", [gray, gray.point(lambda v: 255 - v)])
    la.save(os.path.join(d, "la.png"))
    rgba = Image.fromarray(noise(90, 70, 4), "RGBA")
    rgba.save(os.path.join(d, "rgba.png"))
    rgba.save(os.path.join(d, "rgba.tif"))
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=50)
    pal.save(os.path.join(d, "palette.png"))
    pal.save(os.path.join(d, "palette.bmp"))
    pal_t = pal.copy()
    pal_t.info["transparency"] = 3
    pal_t.save(os.path.join(d, "palette_trns.png"), transparency=3)
    cmyk = rgb.convert("CMYK")
    cmyk.save(os.path.join(d, "cmyk.jpg"), quality=90)
    cmyk.save(os.path.join(d, "cmyk.tif"))
    g16 = (rng.integers(0, 2, (50, 60)) * rng.integers(0, 65536, (50, 60))).astype(np.uint16)
    g16[:10] = rng.integers(0, 300, (10, 60))
    png16(os.path.join(d, "gray16.png"), g16, 0)
    png16(os.path.join(d, "rgb16.png"), rng.integers(0, 65536, (40, 50, 3)), 2)
    png16(os.path.join(d, "rgba16.png"), rng.integers(0, 65536, (40, 50, 4)), 6)
    Image.fromarray(g16).save(os.path.join(d, "gray16.tif"))
    Image.fromarray(g16).save(os.path.join(d, "gray16.ppm"))  # PGM with maxval 65535
    rgb.save(os.path.join(d, "lzw.tif"), compression="tiff_lzw")
    rgb.save(os.path.join(d, "deflate.tiff"), compression="tiff_adobe_deflate")
    gray.convert("1").save(os.path.join(d, "bilevel.tif"))
    gray.convert("1").save(os.path.join(d, "group4.tif"), compression="group4")
    gray.convert("1").save(os.path.join(d, "bilevel.bmp"))
    gray.convert("1").save(os.path.join(d, "bilevel.ppm"))  # PBM
    gray.convert("I").save(os.path.join(d, "int32.tif"))
    la.save(os.path.join(d, "la.tif"))
    rgba.save(os.path.join(d, "rgba.bmp"))
    if size:
        want = draft_jpegs(d, size, noise)
        got = draft_scales(d, size)
        wrong = {n: (s, got.get(n)) for n, s in want.items() if got.get(n) != s}
        if wrong:
            sys.exit(f"check_pixels.py: PIL's draft scales are not the planned ones: {wrong}")
        counts = {s: sum(1 for v in got.values() if v == s) for s in (1, 2, 4, 8)}
        print("check_pixels: JPEGs per draft scale " + ", ".join(f"1/{s}: {n}" for s, n in counts.items()))
    return sorted(os.listdir(d))


# --- checking a finished feature folder ---------------------------------------

def keras_files(split_dir, follow_links=False):
    """(class, relative path) in flow_from_directory order: Keras's own
    class listing and `_iter_valid_files` (keras/src/legacy/preprocessing/image.py)."""
    classes = [c for c in sorted(os.listdir(split_dir)) if os.path.isdir(os.path.join(split_dir, c))]
    out = []
    for c in classes:
        top = os.path.join(split_dir, c)
        for root, _, files in sorted(os.walk(top, followlinks=follow_links), key=lambda x: x[0]):
            for fname in sorted(files):
                if fname.lower().endswith(EXTS):
                    out.append((c, os.path.relpath(os.path.join(root, fname), split_dir)))
    return classes, out


def verify_features(out, data, model, resize="nearest"):
    import hashlib
    import json

    import duckdb
    import onnxruntime as ort
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    problems = []
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    props = sess.get_modelmeta().custom_metadata_map
    splits = [s for s in ("train", "validation", "test") if os.path.isdir(os.path.join(data, s))]
    layout = [(s, os.path.join(data, s), s + "/") for s in splits] or [("train", data, "")]
    worst = 0.0
    for split, split_dir, prefix in layout:
        path = os.path.join(out, split + ".parquet")
        t = pq.read_table(path)
        meta = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()}
        kv = pq.ParquetFile(path).metadata.metadata
        kv = {k.decode(): v.decode() for k, v in kv.items() if k.decode().startswith("xfer.")}
        dim = int(props["xfer.dim"])
        want_types = {"path": pa.string(), "class": pa.string(), "label": pa.int32(),
                      "sha256": pa.binary(32), "features": pa.list_(pa.float32(), dim)}
        for name, typ in want_types.items():
            got = t.schema.field(name).type if name in t.schema.names else None
            # the list's item field may be named "item" and be non-nullable
            if got is None or (got != typ and not (pa.types.is_fixed_size_list(got) and got.list_size == dim
                                                   and got.value_type == pa.float32())):
                problems.append(f"{split}: column {name} is {got}, expected {typ}")
        classes, files = keras_files(split_dir)
        if json.loads(kv.get("xfer.classes", "null")) != classes:
            problems.append(f"{split}: xfer.classes {kv.get('xfer.classes')} != {classes}")
        for key in ("xfer.backbone", "xfer.preprocess", "xfer.dim", "xfer.pretrained"):
            if kv.get(key) != props.get(key):
                problems.append(f"{split}: {key} is {kv.get(key)!r}, the model says {props.get(key)!r}")
        size = int(kv.get("xfer.size", "0x0").split("x")[0])
        with open(model, "rb") as f:
            if kv.get("xfer.model_sha256") != hashlib.sha256(f.read()).hexdigest():
                problems.append(f"{split}: xfer.model_sha256 is not the model file's")
        if kv.get("xfer.resize") != resize:
            problems.append(f"{split}: xfer.resize {kv.get('xfer.resize')!r}")
        paths = t.column("path").to_pylist()
        want_paths = [prefix + rel for _, rel in files]
        if paths != want_paths:
            problems.append(f"{split}: rows are not in flow_from_directory order "
                            f"(first difference at {next((i for i, (a, b) in enumerate(zip(paths, want_paths)) if a != b), min(len(paths), len(want_paths)))})")
        labels = t.column("label").to_pylist()
        if labels != [classes.index(c) for c, _ in files][:len(labels)] or t.column("class").to_pylist() != [classes[i] for i in labels]:
            problems.append(f"{split}: labels or class names do not match the class folders")
        feats = t.column("features").combine_chunks().values.to_numpy(zero_copy_only=False).reshape(len(t), -1)
        for i, rel in enumerate(paths):
            full = os.path.join(data, rel)
            with open(full, "rb") as f:
                if hashlib.sha256(f.read()).digest() != t.column("sha256")[i].as_py():
                    problems.append(f"{rel}: sha256 differs")
            x = keras_input(full, size, resize, props["xfer.preprocess"]).reshape(1, 3, size, size)
            v = sess.run([props["xfer.output"]], {props["xfer.input"]: x})[0][0]
            worst = max(worst, float(np.abs(v - feats[i]).max()))
        df = pd.read_parquet(path)
        n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}')").fetchall()[0][0]
        if len(df) != len(t) or n != len(t):
            problems.append(f"{split}: pandas {len(df)} / DuckDB {n} rows, pyarrow {len(t)}")
        del meta
    if worst > 1e-5:
        problems.append(f"vectors differ from ONNX Runtime on Keras pixels by {worst:g}")
    print(f"check_pixels: {out}: {'OK' if not problems else 'PROBLEMS'}; max vector difference {worst:g}")
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--xfer", help="the xfer binary")
    p.add_argument("--features", help="check this existing output of xfer extract (with --data, --model)")
    p.add_argument("--model", help="with --features: the base it was made with")
    p.add_argument("--data", help="a flow_from_directory folder to sample")
    p.add_argument("--synthetic", action="store_true", help="generated images of every mode and format")
    p.add_argument("--sample", type=int, default=200, help="images sampled from --data (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=150)
    p.add_argument("--resize", default="nearest", choices=sorted(FILTERS))
    p.add_argument("--preprocess", default="raw", choices=metadata.PREPROCESS_MODES)
    p.add_argument("--decode", default="full", choices=("full", "draft"),
                   help="xfer's --decode; draft compares with PIL's Image.draft before the resize")
    p.add_argument("--keep", help="keep the work folder here")
    args = p.parse_args(argv)
    if args.features:
        if not (args.data and args.model):
            p.error("--features needs --data and --model")
        return verify_features(args.features, args.data, args.model, args.resize)
    if not args.xfer:
        p.error("--xfer is required")
    if bool(args.data) == args.synthetic:
        p.error("give --data DIR or --synthetic")
    tmp = args.keep or tempfile.mkdtemp(prefix="check_pixels-")
    os.makedirs(tmp, exist_ok=True)
    try:
        data = os.path.join(tmp, "data")
        shutil.rmtree(data, ignore_errors=True)
        os.makedirs(data)
        if args.synthetic:
            names = synthetic(data, args.seed, args.size if args.decode == "draft" else None)
            what = f"{len(names)} synthetic images"
        else:
            n = args.sample if args.sample > 0 else 10**9
            names = sample_tree(os.path.abspath(args.data), n, args.seed, data)
            what = f"{len(names)} images sampled from {args.data}"
        model = os.path.join(tmp, f"identity-{args.size}-{args.preprocess}.onnx")
        identity_model(model, args.size, args.preprocess)
        out = os.path.join(tmp, "out")
        shutil.rmtree(out, ignore_errors=True)
        r = run_xfer(args.xfer, data, model, out, args.size, args.resize, decode=args.decode)
        worst, differing, rows, seen = compare(data, out, args.size, args.resize, args.preprocess,
                                               args.decode)
        errors = [f for f in os.listdir(out) if f.endswith(".errors.csv")]
        unit = "pixel levels" if args.preprocess == "raw" else f"{args.preprocess} units"
        print(f"check_pixels: {what}, size {args.size}, resize {args.resize}, decode {args.decode}, preprocess "
              f"{args.preprocess}: {rows} rows compared with PIL/Keras, max abs difference "
              f"{worst:g} ({unit}), {len(differing)} images differ")
        for rel, d in differing[:20]:
            print(f"  differs: {rel}: max {d:g}")
        for e in errors:
            with open(os.path.join(out, e)) as f:
                print(f"  skipped by xfer ({e}):\n    " + f.read().strip().replace("\n", "\n    "))
        if rows != len(names) or errors:
            print(f"check_pixels: xfer wrote {rows} rows for {len(names)} images")
            return 1
        return 0 if worst == 0 and r.returncode == 0 else 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
