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
                                 "seed": 2, "size": 32, "reduce_range": True})
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

    def test_a_combined_base_is_quantized_whole(self):
        """`export_model.py combine`'s output is a base like any other: its int8 copy
        keeps `xfer.parts`, quantizes every part and gives vectors near fp32's."""
        other = os.path.join(self.dir, "torch.onnx")
        joined = os.path.join(self.dir, "joined.onnx")
        out = os.path.join(self.dir, "joined-int8.onnx")
        self.assertEqual(run("tiny", "--dim", "5", "--seed", "3", "--preprocess", "torch", "--out", other)[0], 0)
        self.assertEqual(run("combine", "--onnx", self.fp32, "--onnx", other, "--out", joined)[0], 0)
        code, err = run("quantize", "--model", joined, "--data", self.data, "--out", out, "--images", "6")
        self.assertEqual(code, 0, err)
        before, after = props(joined), props(out)
        self.assertEqual(json.loads(after.pop("xfer.quant"))["images"], 6)
        self.assertEqual(before, after)
        convs = [n for n in onnx.load(out).graph.node if n.op_type == "Conv"]
        self.assertEqual(len(convs), 4)
        dq = {o for n in onnx.load(out).graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        self.assertTrue(all(c.input[1] in dq for c in convs), "every part's conv weights quantized")
        files = quantize.calibration_files(self.data, 15, 0)
        x = np.stack([check_pixels.keras_input(f, 32, "nearest", "raw").reshape(3, 32, 32) for f in files])
        a = ort.InferenceSession(joined, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        b = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        self.assertEqual(a.shape, (len(files), 13))
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        self.assertGreater(cos.mean(), 0.98)

    def test_defaults_are_the_measured_choice_and_reduce_range_can_be_turned_off(self):
        # docs/accuracy-int8.md: MinMax, 100 images, 7-bit weights.
        self.assertEqual((quantize.DEFAULT_METHOD, quantize.DEFAULT_IMAGES,
                          quantize.DEFAULT_REDUCE_RANGE), ("minmax", 100, True))
        weights = {}
        for name, flags in (("default", []), ("8bit", ["--no-reduce-range"])):
            out = os.path.join(self.dir, f"{name}.onnx")
            code, err = run("quantize", "--model", self.fp32, "--data", self.data, "--out", out,
                            "--images", "3", *flags)
            self.assertEqual(code, 0, err)
            quant = json.loads(props(out)["xfer.quant"])
            self.assertEqual((quant["method"], quant["reduce_range"]), ("minmax", not flags))
            weights[name] = np.concatenate([
                numpy_helper.to_array(t).ravel() for t in onnx.load(out).graph.initializer
                if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4])
        # 7-bit weights span [-64, 64], 8-bit ones [-127, 127] (ORT's symmetric int8).
        self.assertLessEqual(np.abs(weights["default"].astype(int)).max(), 64)
        self.assertGreater(np.abs(weights["8bit"].astype(int)).max(), 100)

    def test_calibration_cache_is_reused_only_for_the_same_settings(self):
        cache = os.path.join(self.dir, "ranges.json")
        a, b = os.path.join(self.dir, "a.onnx"), os.path.join(self.dir, "b.onnx")
        base = ("quantize", "--model", self.fp32, "--data", self.data, "--images", "6",
                "--calibration-cache", cache)
        self.assertEqual(run(*base, "--out", a)[0], 0)

        def act_scales(path):
            m = onnx.load(path)
            init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
            return {n.input[0]: float(init[n.input[1]]) for n in m.graph.node
                    if n.op_type == "QuantizeLinear" and n.input[1] in init
                    and init[n.input[1]].ndim == 0}

        sa = act_scales(a)
        with open(cache) as f:
            cached = json.load(f)
        self.assertEqual(cached["xfer"]["images"], 6)
        # Tamper with one range: the second model must take its ranges from the cache.
        name = sorted(set(cached["ort"]["data"]) & set(sa) - {"input"})[0]
        for end, v in (("lowest", -50.0), ("highest", 50.0)):
            cached["ort"]["data"][name][end]["data"] = [v]
        with open(cache, "w") as f:
            json.dump(cached, f)
        self.assertEqual(run(*base, "--out", b, "--no-reduce-range")[0], 0)
        sb = act_scales(b)
        self.assertAlmostEqual(sb[name], 100 / 255, places=5)
        self.assertNotAlmostEqual(sa[name], sb[name], places=5)
        self.assertEqual({k: v for k, v in sa.items() if k != name},
                         {k: v for k, v in sb.items() if k != name})
        code, err = run("quantize", "--model", self.fp32, "--data", self.data, "--images", "5",
                        "--calibration-cache", cache, "--out", os.path.join(self.dir, "c.onnx"))
        self.assertEqual(code, 1)
        self.assertIn("ranges.json: calibrated with other settings (images 6, here 5)", err)
        with open(cache, "w") as f:
            f.write("{")
        code, err = run(*base, "--out", os.path.join(self.dir, "d.onnx"))
        self.assertEqual(code, 1)
        self.assertIn("ranges.json: not a calibration cache", err)

    def test_calibration_in_slices_gives_the_same_ranges(self):
        self.assertEqual([quantize.stride_of(n) for n in (1000, 300, 100, 97, 10, 1)],
                         [25, 25, 25, 1, 10, 1])
        whole, sliced = os.path.join(self.dir, "w.onnx"), os.path.join(self.dir, "s.onnx")
        self.assertEqual(run("quantize", "--model", self.fp32, "--data", self.data,
                             "--images", "12", "--out", whole)[0], 0)
        old = quantize.STRIDE
        quantize.STRIDE = 2
        try:
            self.assertEqual(run("quantize", "--model", self.fp32, "--data", self.data,
                                 "--images", "12", "--out", sliced)[0], 0)
        finally:
            quantize.STRIDE = old
        init = {t.name: t.SerializeToString() for t in onnx.load(whole).graph.initializer}
        self.assertEqual(init, {t.name: t.SerializeToString()
                                for t in onnx.load(sliced).graph.initializer})

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
