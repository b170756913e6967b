"""int8 copy of an xfer base: ONNX Runtime's static quantization, calibrated on the data.

  export_model.py quantize --model M.onnx --data DATA --out M-int8.onnx
                  [--images 100] [--seed 0] [--method minmax|entropy|percentile] [--size S]
                  [--no-reduce-range] [--calibration-cache RANGES.json]

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
`make check-pixels` holds xfer's pixels to. The images go through the calibrator 25 at
a time, which bounds the memory of entropy and percentile (they keep every activation
of the images they are given) and changes nothing for MinMax.

The defaults, MinMax on 100 images with 7-bit weights (--reduce-range), were chosen by
measurement (docs/accuracy-int8.md, `make study-int8`; docs/int8.md): on this project's
AVX2 CPU (no VNNI) ORT's u8s8 kernels saturate with 8-bit weights, and 7-bit ones (ORT's
remedy) brought Lite0's validation vectors from a mean cosine of 0.93 to 0.97 of fp32's;
entropy and percentile gave the same mean (0.9738) at 7 times the memory and 2 to 3 times
the time, and 300 or 1000 images did not raise MinMax's. --no-reduce-range gives 8-bit
weights, for a CPU with VNNI.

The int8 model keeps every metadata entry of the fp32 one and adds `xfer.quant`, a JSON
string (type int8, format QDQ, per_channel, activations uint8, method, images, seed,
size, reduce_range): `xfer extract` carries it into the feature files, where it is
part of the model key, so int8 and fp32 vectors never mix in a cache or a split, and
`xfer predict` refuses a head made on the other kind. Refused: a model without xfer
metadata, one that already has `xfer.quant`, an --images larger than the training
folder holds (without --images, a folder of fewer than 100 images gives all of them),
a calibration cache made from other settings.
"""
import argparse
import json
import os
import random
import sys
import tempfile

import numpy as np
import onnx
from onnx import helper

from . import ExportError
from .metadata import sha256_file

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_METHOD = "minmax"
DEFAULT_IMAGES = 100
DEFAULT_REDUCE_RANGE = True
STRIDE = 25
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


def _write_atomic(path, obj):
    """JSON to `path` under a temporary name, then renamed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".calibration-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _reader(files, input_name, size, preprocess):
    from onnxruntime.quantization import CalibrationDataReader

    keras_input = _pixels().keras_input

    class Reader(CalibrationDataReader):
        """The images one at a time; `set_range` is how ORT's strided calibration
        (CalibStridedMinMax, any method) takes them a slice at a time."""

        def __init__(self):
            self.set_range(0, len(files))

        def __len__(self):
            return len(files)

        def set_range(self, start_index, end_index):
            self.it = iter(files[start_index:end_index])

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
            self.set_range(0, len(files))

    return Reader()


def stride_of(n):
    """Images per calibration slice: the largest divisor of n not above STRIDE.
    ORT's entropy and percentile calibrators keep every activation of the images
    they are given before adding them to their histograms (3.2 GB for 100 Lite0
    images at 150), so they are given the images a slice at a time; MinMax keeps
    running ranges, and the slices change nothing for it."""
    return max(d for d in range(1, min(n, STRIDE) + 1) if n % d == 0)


def _settings_of_cache(path):
    try:
        with open(path) as f:
            cached = json.load(f)
        return cached["xfer"], cached["ort"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise QuantizeError(f"{path}: not a calibration cache of export_model.py quantize ({e})") from e


def quantize(model_path, data, *, images=None, seed=0, method=DEFAULT_METHOD, size=None,
             reduce_range=DEFAULT_REDUCE_RANGE, calibration_cache=None):
    """The int8 model (an onnx.ModelProto) with the fp32 one's metadata and xfer.quant.

    calibration_cache: a JSON file of the activation ranges. Where it exists, its
    ranges are used and no image is run, after checking it was made from the same
    model file, method, images, seed and size (else an error names the difference);
    where it does not, it is written after calibrating. The ranges do not depend on
    the weights' settings, so one calibration serves --reduce-range and not."""
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
    settings = {"model_sha256": sha256_file(model_path), "method": method, "images": len(files),
                "seed": seed, "size": side}
    with tempfile.TemporaryDirectory(prefix="xfer-quant-") as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        out = os.path.join(tmp, "int8.onnx")
        ranges = os.path.join(tmp, "ranges.json")
        if calibration_cache and os.path.exists(calibration_cache):
            cached, ort_ranges = _settings_of_cache(calibration_cache)
            diff = [k for k in settings if cached.get(k) != settings[k]]
            if diff:
                raise QuantizeError(
                    f"{calibration_cache}: calibrated with other settings ("
                    + ", ".join(f"{k} {cached.get(k)}, here {settings[k]}" for k in diff)
                    + "); remove it or name another cache")
            with open(ranges, "w") as f:
                json.dump(ort_ranges, f)
        quant_pre_process(model_path, pre, skip_symbolic_shape=True)
        quantize_static(pre, out, _reader(files, props["xfer.input"], side, props["xfer.preprocess"]),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=calib, reduce_range=reduce_range,
                        calibration_cache_path=ranges,
                        extra_options={"CalibStridedMinMax": stride_of(len(files))})
        model = onnx.load(out)
        if calibration_cache and not os.path.exists(calibration_cache):
            with open(ranges) as f:
                ort_ranges = json.load(f)
            _write_atomic(calibration_cache, {"xfer": settings, "ort": ort_ranges})
    quant = {"type": "int8", "format": "QDQ", "per_channel": True, "activations": "uint8",
             "method": method, "images": len(files), "seed": seed, "size": side,
             "reduce_range": reduce_range}
    props[QUANT_KEY] = json.dumps(quant, sort_keys=True, separators=(",", ":"))
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    model.doc_string = (src.doc_string + " " if src.doc_string else "") + \
        f"int8 (QDQ, per-channel) by export_model.py quantize from {os.path.basename(model_path)}"
    onnx.checker.check_model(model)
    return model


def build(args):
    return quantize(args.model, args.data, images=args.images, seed=args.seed, method=args.method,
                    size=args.size, reduce_range=args.reduce_range,
                    calibration_cache=args.calibration_cache)


def add_parser(subparsers):
    p = subparsers.add_parser("quantize", help="int8 copy of an xfer base (ONNX Runtime static QDQ)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the fp32 xfer base")
    p.add_argument("--data", required=True, help="images: DATA/train/<class>/ (or DATA/<class>/)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--images", type=int,
                   help=f"calibration images (default {DEFAULT_IMAGES}, or all where there are fewer)")
    p.add_argument("--seed", type=int, default=0, help="seed of the images' choice (default 0)")
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                   help=f"calibration of the activation ranges (default {DEFAULT_METHOD})")
    p.add_argument("--size", type=int, help="input side (default: the model's xfer.default_size)")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction,
                   default=DEFAULT_REDUCE_RANGE,
                   help="7-bit weights (default: on): ORT's advice for CPUs without VNNI (AVX2 "
                        "only), where its u8s8 kernels saturate; --no-reduce-range for 8-bit "
                        "weights (docs/accuracy-int8.md)")
    p.add_argument("--calibration-cache", metavar="JSON",
                   help="activation ranges: used where the file exists (made from the same model, "
                        "method, images, seed and size, or refused), else written after calibrating")
    p.set_defaults(build=build)
    return p
