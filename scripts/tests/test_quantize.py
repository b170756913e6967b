"""`export_model.py quantize` on the tiny base and generated images.

The int8 model must keep every metadata entry of the fp32 one and add `xfer.quant`;
be QDQ with int8 weights per channel; give vectors near the fp32 ones in Python
onnxruntime on the calibration pixels; take its calibration images evenly over the
classes, the same for the same seed; and refuse what it cannot quantize, naming the
file. (Through `xfer extract` and `xfer predict`: tests/quant.rs.)
"""
import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import check_pixels  # noqa: E402
import export_model  # noqa: E402
from xferexport import quantize  # noqa: E402


def props(path):
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def images(root, classes, per_class):
    rng = np.random.default_rng(0)
    for k, c in enumerate(classes):
        os.makedirs(os.path.join(root, "train", c))
        for i in range(per_class):
            base = np.array([40 + 50 * k, 200 - 30 * k, 90], float)
            px = np.clip(base + rng.normal(0, 30, (20 + i, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(os.path.join(root, "train", c, f"{i:02}.png"))


def run(*argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = export_model.main(list(argv))
    return code, err.getvalue()


class QuantizeTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.data = os.path.join(self.dir, "data")
        images(self.data, ["a", "b", "c"], 5)
        self.fp32 = os.path.join(self.dir, "tiny.onnx")
        self.assertEqual(run("tiny", "--dim", "8", "--out", self.fp32)[0], 0)

    def tearDown(self):
        self.tmp.cleanup()

    def test_metadata_kept_quant_added_and_vectors_close(self):
        out = os.path.join(self.dir, "tiny-int8.onnx")
        code, err = run("quantize", "--model", self.fp32, "--data", self.data, "--out", out,
                        "--images", "6", "--seed", "2", "--method", "entropy")
        self.assertEqual(code, 0, err)
        before, after = props(self.fp32), props(out)
        quant = json.loads(after.pop("xfer.quant"))
        self.assertEqual(before, after)
        self.assertEqual(quant, {"type": "int8", "format": "QDQ", "per_channel": True,
                                 "activations": "uint8", "method": "entropy", "images": 6,
                                 "seed": 2, "size": 32})
        model = onnx.load(out)
        ops = {n.op_type for n in model.graph.node}
        self.assertTrue({"QuantizeLinear", "DequantizeLinear"} <= ops, ops)
        weights = [numpy_helper.to_array(t) for t in model.graph.initializer
                   if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
        self.assertTrue(weights, "int8 conv weights")
        scales = {n.input[1] for n in model.graph.node if n.op_type == "DequantizeLinear"}
        self.assertTrue(any(numpy_helper.to_array(t).ndim == 1 and t.dims[0] > 1
                            for t in model.graph.initializer if t.name in scales),
                        "a per-channel scale")
        files = quantize.calibration_files(self.data, 15, 0)
        x = np.stack([check_pixels.keras_input(f, 32, "nearest", "tf").reshape(3, 32, 32)
                      for f in files])
        a = ort.InferenceSession(self.fp32, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        b = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        self.assertGreater(cos.mean(), 0.98)
        self.assertFalse(np.array_equal(a, b))

    def test_reduce_range_is_recorded(self):
        out = os.path.join(self.dir, "rr.onnx")
        code, err = run("quantize", "--model", self.fp32, "--data", self.data, "--out", out,
                        "--images", "3", "--reduce-range")
        self.assertEqual(code, 0, err)
        self.assertIs(json.loads(props(out)["xfer.quant"])["reduce_range"], True)

    def test_calibration_images_spread_over_classes_by_seed(self):
        files = quantize.calibration_files(self.data, 7, 1)
        counts = {c: sum(f"/train/{c}/" in f for f in files) for c in "abc"}
        self.assertEqual(sorted(counts.values()), [2, 2, 3], counts)
        self.assertEqual(len(set(files)), 7)
        self.assertEqual(len(quantize.calibration_files(self.data, None, 1)), 15, "all, under 100")
        self.assertEqual(files, quantize.calibration_files(self.data, 7, 1))
        self.assertNotEqual(sorted(files), sorted(quantize.calibration_files(self.data, 7, 2)))

    def test_refusals_name_the_file_and_leave_nothing(self):
        out = os.path.join(self.dir, "x.onnx")
        code, err = run("quantize", "--model", self.fp32, "--data", self.data, "--out", out,
                        "--images", "16")
        self.assertEqual(code, 1)
        self.assertIn("holds 15 images", err)
        int8 = os.path.join(self.dir, "int8.onnx")
        self.assertEqual(run("quantize", "--model", self.fp32, "--data", self.data, "--out", int8,
                             "--images", "3")[0], 0)
        code, err = run("quantize", "--model", int8, "--data", self.data, "--out", out)
        self.assertEqual(code, 1)
        self.assertIn("already quantized", err)
        bare = onnx.load(self.fp32)
        del bare.metadata_props[:]
        bare_path = os.path.join(self.dir, "bare.onnx")
        onnx.save(bare, bare_path)
        code, err = run("quantize", "--model", bare_path, "--data", self.data, "--out", out)
        self.assertEqual(code, 1)
        self.assertIn("bare.onnx: metadata xfer.backbone is missing", err)
        self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    unittest.main()
