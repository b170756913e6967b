"""int8 copy of an xfer base: ONNX Runtime's static quantization, calibrated on the data.

  export_model.py quantize --model M.onnx --data DATA --out M-int8.onnx
                  [--images 100] [--seed 0] [--method minmax|entropy|percentile] [--size S]
                  [--reduce-range]

Why: on CPU `xfer extract` runs at ONNX Runtime's own fp32 speed, so the next step is a
cheaper engine. ORT's int8 kernels (VNNI where the CPU has it) ran Xception 150 4.5x and
EfficientNet-Lite0 150 3.1x faster than fp32 alone (issue 15), at a cosine to the fp32
vectors of 0.999 and 0.993.

What it does: `onnxruntime.quantization.quantize_static` in the QDQ format, with int8
weights per output channel and uint8 activations (ORT's CPU defaults for QDQ), after
ORT's `quant_pre_process` (shape inference and graph optimisation, as ORT advises).
The activation ranges come from N training images (DATA/train, or DATA when it has no
split folders) spread evenly over the classes: each class's files are shuffled with the
seed and taken in turn, one class after another, so 100 images over 10 classes are 10 a
class. They are prepared exactly as `xfer extract` prepares them: the model's
`xfer.default_size` (or --size), Keras `load_img`'s nearest resize and the model's
`xfer.preprocess`, by `scripts/check_pixels.py`'s `keras_input`, the reference that
`make check-pixels` holds xfer's pixels to.

The int8 model keeps every metadata entry of the fp32 one and adds `xfer.quant`, a JSON
string (type int8, format QDQ, per_channel, activations uint8, method, images, seed,
size, and reduce_range when set): `xfer extract` carries it into the feature files,
where it is part of the model key, so int8 and fp32 vectors never mix in a cache or a
split, and `xfer predict` refuses a head made on the other kind. Refused: a model
without xfer metadata, one that already has `xfer.quant`, an --images larger than
the training folder holds (without --images, a folder of fewer than 100 images gives
all of them).

The int8 vectors depend on the CPU as well: without VNNI (AVX2 only), ORT's u8s8
kernels saturate, and the vectors move much further from fp32's than with VNNI;
--reduce-range (7-bit weights) is ORT's remedy there. docs/int8.md has the numbers.
"""
import json
import os
import random
import sys
import tempfile

import numpy as np
import onnx
from onnx import helper

from . import ExportError

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_IMAGES = 100
QUANT_KEY = "xfer.quant"


class QuantizeError(ExportError):
    """The model or the data cannot be quantized as asked; the message says why."""


def _pixels():
    """check_pixels.py's keras_input and keras_files (scripts/ is on sys.path when
    export_model.py runs; added here for other callers)."""
    scripts = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import check_pixels

    return check_pixels


def calibration_files(data, n, seed):
    """n image paths from DATA's training images, spread evenly over the classes;
    n None: DEFAULT_IMAGES, or all of them where there are fewer."""
    split_dir = os.path.join(data, "train") if os.path.isdir(os.path.join(data, "train")) else data
    if not os.path.isdir(split_dir):
        raise QuantizeError(f"{data}: no such data folder")
    classes, files = _pixels().keras_files(split_dir)
    if not classes:
        raise QuantizeError(f"{split_dir}: no class folders")
    by_class = {c: [] for c in classes}
    for c, rel in files:
        by_class[c].append(os.path.join(split_dir, rel))
    if n is None:
        n = min(DEFAULT_IMAGES, len(files))
    if n < 1:
        raise QuantizeError(f"--images {n}: at least one image is needed")
    if n > len(files):
        raise QuantizeError(f"--images {n}, but {split_dir} holds {len(files)} images")
    rng = random.Random(seed)
    queues = []
    for c in classes:
        paths = by_class[c]
        rng.shuffle(paths)
        queues.append(paths)
    out, i = [], 0
    while len(out) < n:
        q = queues[i % len(queues)]
        if q:
            out.append(q.pop())
        i += 1
    return out


def _reader(files, input_name, size, preprocess):
    from onnxruntime.quantization import CalibrationDataReader

    keras_input = _pixels().keras_input

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(files)

        def get_next(self):
            path = next(self.it, None)
            if path is None:
                return None
            try:
                x = keras_input(path, size, "nearest", preprocess)
            except OSError as e:
                raise QuantizeError(f"{path}: cannot read the image ({e})") from e
            return {input_name: x.reshape(1, 3, size, size).astype(np.float32)}

        def rewind(self):
            self.it = iter(files)

    return Reader()


def quantize(model_path, data, *, images=None, seed=0, method="minmax", size=None,
             reduce_range=False):
    """The int8 model (an onnx.ModelProto) with the fp32 one's metadata and xfer.quant."""
    try:
        from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise QuantizeError(f"onnxruntime.quantization is not importable ({e}); "
                            "install scripts/requirements.txt") from e
    if method not in METHODS:
        raise QuantizeError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    if not os.path.isfile(model_path):
        raise QuantizeError(f"{model_path}: no such model file")
    try:
        src = onnx.load(model_path)
    except Exception as e:  # onnx raises DecodeError and others
        raise QuantizeError(f"{model_path}: not an ONNX model ({e})") from e
    props = {p.key: p.value for p in src.metadata_props}
    for key in ("xfer.backbone", "xfer.input", "xfer.preprocess", "xfer.default_size"):
        if key not in props:
            raise QuantizeError(f"{model_path}: metadata {key} is missing: not an xfer base "
                                "(make one with export_model.py, or adopt it first)")
    if QUANT_KEY in props:
        raise QuantizeError(f"{model_path}: already quantized ({QUANT_KEY} = {props[QUANT_KEY]}); "
                            "quantize the fp32 model")
    side = int(size or props["xfer.default_size"])
    files = calibration_files(data, images, seed)
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix="xfer-quant-") as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        out = os.path.join(tmp, "int8.onnx")
        quant_pre_process(model_path, pre, skip_symbolic_shape=True)
        quantize_static(pre, out, _reader(files, props["xfer.input"], side, props["xfer.preprocess"]),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=calib, reduce_range=reduce_range)
        model = onnx.load(out)
    quant = {"type": "int8", "format": "QDQ", "per_channel": True, "activations": "uint8",
             "method": method, "images": len(files), "seed": seed, "size": side}
    if reduce_range:
        quant["reduce_range"] = True
    props[QUANT_KEY] = json.dumps(quant, sort_keys=True, separators=(",", ":"))
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    model.doc_string = (src.doc_string + " " if src.doc_string else "") + \
        f"int8 (QDQ, per-channel) by export_model.py quantize from {os.path.basename(model_path)}"
    onnx.checker.check_model(model)
    return model


def build(args):
    return quantize(args.model, args.data, images=args.images, seed=args.seed, method=args.method,
                    size=args.size, reduce_range=args.reduce_range)


def add_parser(subparsers):
    p = subparsers.add_parser("quantize", help="int8 copy of an xfer base (ONNX Runtime static QDQ)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the fp32 xfer base")
    p.add_argument("--data", required=True, help="images: DATA/train/<class>/ (or DATA/<class>/)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--images", type=int,
                   help=f"calibration images (default {DEFAULT_IMAGES}, or all where there are fewer)")
    p.add_argument("--seed", type=int, default=0, help="seed of the images' choice (default 0)")
    p.add_argument("--method", choices=METHODS, default="minmax",
                   help="calibration of the activation ranges (default minmax)")
    p.add_argument("--size", type=int, help="input side (default: the model's xfer.default_size)")
    p.add_argument("--reduce-range", action="store_true",
                   help="7-bit weights: ORT's advice for CPUs without VNNI (AVX2 only), where its "
                        "u8s8 kernels saturate (docs/int8.md)")
    p.set_defaults(build=build)
    return p
