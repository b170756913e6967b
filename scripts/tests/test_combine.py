"""`export_model.py combine` on tiny bases made here: the combined model's vectors are
each part's joined, in Python onnxruntime and through `xfer extract` (when a built
`xfer` and ONNX Runtime library are around), with the same and with different
preprocessing, different opsets, and the refusals that name the file and the reason.
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
from onnx import TensorProto, helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import export_model  # noqa: E402
from scripts.tests.test_adopt import find_ort, find_xfer, write_images, extract_vectors  # noqa: E402
from xferexport import adopt, combine, tiny  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


def scaled(x, mode):
    """pixels.rs's float32 preprocessing of raw pixels `x`."""
    if mode == "tf":
        return x / np.float32(127.5) - np.float32(1)
    if mode == "torch":
        return (x / np.float32(255) - MEAN) / STD
    if mode == "lite":
        return (x - np.float32(127)) / np.float32(128)
    return x


def props(model):
    return {p.key: p.value for p in model.metadata_props}


def run(model, x):
    p = props(model)
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run([p["xfer.output"]], {p["xfer.input"]: x})[0]


def part(model, name):
    return combine.Part(model, name)


class Combine(unittest.TestCase):
    def setUp(self):
        self.x = np.random.default_rng(3).integers(0, 256, (3, 3, 32, 32)).astype(np.float32)

    def test_same_preprocessing_is_kept_and_vectors_are_joined(self):
        a, b = tiny.build(dim=8, seed=1), tiny.build(dim=5, seed=2)
        c = combine.combine([part(a, "a.onnx"), part(b, "b.onnx")])
        p = props(c)
        self.assertEqual((p["xfer.preprocess"], p["xfer.dim"], p["xfer.backbone"]), ("tf", "13", "tiny+tiny"))
        x = scaled(self.x, "tf")
        want = np.concatenate([run(a, x), run(b, x)], axis=1)
        np.testing.assert_array_equal(run(c, x), want)
        parts = json.loads(p["xfer.parts"])
        self.assertEqual([q["columns"] for q in parts], [[0, 8], [8, 13]])
        self.assertEqual([q["file"] for q in parts], ["a.onnx", "b.onnx"])

    def test_different_preprocessing_is_done_in_the_graph_from_raw_pixels(self):
        modes = ["tf", "torch", "lite", "raw"]
        models = [tiny.build(dim=4 + i, seed=i, preprocess=m) for i, m in enumerate(modes)]
        c = combine.combine([part(m, f"{mode}.onnx") for m, mode in zip(models, modes)], name="four")
        p = props(c)
        self.assertEqual((p["xfer.preprocess"], p["xfer.backbone"], p["xfer.dim"]), ("raw", "four", "22"))
        want = np.concatenate([run(m, scaled(self.x, mode)) for m, mode in zip(models, modes)], axis=1)
        got = run(c, self.x)
        self.assertLessEqual(float(np.abs(got - want).max()), 1e-6)
        self.assertGreater(float(np.ptp(want)), 0.01)

    def test_an_older_opset_is_brought_up(self):
        a = tiny.build(dim=3, seed=4)
        old = tiny.build(dim=3, seed=5)
        old.opset_import[0].version = 13  # its ops are the same at opset 13
        onnx.checker.check_model(old)
        c = combine.combine([part(a, "a.onnx"), part(old, "old.onnx")])
        self.assertEqual(c.opset_import[0].version, 17)
        x = scaled(self.x, "tf")
        np.testing.assert_allclose(run(c, x), np.concatenate([run(a, x), run(old, x)], axis=1), atol=1e-6)

    def test_default_side_is_the_fixed_or_largest_one(self):
        a, b = tiny.build(default_size=224), tiny.build(default_size=260)
        self.assertEqual(props(combine.combine([part(a, "a"), part(b, "b")]))["xfer.default_size"], "260")
        self.assertEqual(props(combine.combine([part(a, "a"), part(b, "b")], size=299))["xfer.default_size"], "299")
        fixed = adopt.adopt(foreign(tiny.build(), side=48), preprocess="tf")
        c = combine.combine([part(a, "a"), part(fixed, "fixed.onnx")])
        self.assertEqual(props(c)["xfer.default_size"], "48")
        self.assertEqual(c.graph.input[0].type.tensor_type.shape.dim[2].dim_value, 48)

    def test_refusals_name_the_file_and_the_reason(self):
        t = tiny.build()
        cases = [
            ([part(t, "only.onnx")], "at least two models"),
            ([part(adopt.adopt(foreign(t, side=32), preprocess="tf"), "s32.onnx"),
              part(adopt.adopt(foreign(t, side=48), preprocess="tf"), "s48.onnx")],
             "different input sides: s32.onnx 32x32, s48.onnx 48x48"),
        ]
        for parts, msg in cases:
            with self.subTest(msg=msg), self.assertRaises(combine.CombineError) as e:
                combine.combine(parts)
            self.assertIn(msg, str(e.exception))
        with self.assertRaises(combine.CombineError) as e:
            part(foreign(t), "foreign.onnx")
        self.assertIn("foreign.onnx: no xfer metadata", str(e.exception))
        self.assertIn("adopt", str(e.exception))
        two = tiny.build()
        two.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1]))
        with self.assertRaises(combine.CombineError) as e:
            part(two, "two.onnx")
        self.assertIn("two.onnx: inputs mask need feeding", str(e.exception))

    def test_cli_combine_and_plus_joined_backbones(self):
        with tempfile.TemporaryDirectory() as d:
            def export(*argv):
                err = io.StringIO()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                    try:
                        rc = export_model.main(list(argv))
                    except SystemExit as e:  # argparse's usage errors
                        rc = e.code
                return rc, err.getvalue()

            a, b, out = (os.path.join(d, n) for n in ("a.onnx", "b.onnx", "ab.onnx"))
            self.assertEqual(export("tiny", "--seed", "1", "--out", a)[0], 0)
            self.assertEqual(export("tiny", "--seed", "2", "--dim", "3", "--out", b)[0], 0)
            self.assertEqual(export("combine", "--onnx", a, "--onnx", b, "--out", out)[0], 0)
            p = props(onnx.load(out))
            self.assertEqual(p["xfer.dim"], "11")
            self.assertEqual([q["sha256"] for q in json.loads(p["xfer.parts"])],
                             [combine.metadata.sha256_file(a), combine.metadata.sha256_file(b)])
            plus = os.path.join(d, "tt.onnx")
            self.assertEqual(export("tiny+tiny", "--dim", "4", "--out", plus)[0], 0)
            self.assertEqual(props(onnx.load(plus))["xfer.dim"], "8")
            single = os.path.join(d, "t4.onnx")
            self.assertEqual(export("tiny", "--dim", "4", "--out", single)[0], 0)
            self.assertEqual([q["sha256"] for q in json.loads(props(onnx.load(plus))["xfer.parts"])],
                             [combine.metadata.sha256_file(single)] * 2)
            rc, err = export("tiny+tiny", "--bogus", "1", "--out", os.path.join(d, "no.onnx"))
            self.assertEqual(rc, 2)
            self.assertIn("no backbone of tiny+tiny takes --bogus", err)
            # each part takes its own options: --weights and --seed go to xception, --dim to tiny
            mixed = os.path.join(d, "xt.onnx")
            self.assertEqual(export("xception+tiny", "--weights", "random", "--seed", "1", "--dim", "4",
                                    "--out", mixed)[0], 0)
            parts = json.loads(props(onnx.load(mixed))["xfer.parts"])
            self.assertEqual([(q["backbone"], q["dim"], q["weights"]) for q in parts],
                             [("xception", 2048, "random"), ("tiny", 4, "random")])
            bad = os.path.join(d, "bad.onnx")
            rc, err = export("combine", "--onnx", a, "--onnx", os.path.join(d, "missing.onnx"), "--out", bad)
            self.assertEqual(rc, 1)
            self.assertIn("missing.onnx", err)
            self.assertFalse(os.path.exists(bad))


def foreign(model, side=None):
    """`model` without xfer metadata; with `side`, its input fixes batch 1 and that side."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.metadata_props[:]
    if side:
        dims = m.graph.input[0].type.tensor_type.shape.dim
        dims[0].dim_value = 1
        dims[2].dim_value = side
        dims[3].dim_value = side
    return m


@unittest.skipUnless(find_xfer() and find_ort(),
                     "no target/*/xfer or ONNX Runtime library (make test builds and fetches them)")
class ThroughXferExtract(unittest.TestCase):
    """`xfer extract` with a combined base writes each part's own vectors, joined."""

    def test_combined_vectors_are_the_parts_vectors_joined(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "data")
            write_images(data)

            def vectors(model, tag):
                return extract_vectors(self, model, tmp, data, tag)

            modes = ["tf", "torch", "lite", "raw"]
            bases = [tiny.build(dim=6 - i, seed=i, preprocess=m) for i, m in enumerate(modes)]
            each = [vectors(b, m) for b, m in zip(bases, modes)]
            va = each[0]
            four = combine.combine([part(b, m) for b, m in zip(bases, modes)])
            self.assertEqual(props(four)["xfer.preprocess"], "raw")
            for tag, c, parts in [("all-four", four, each),
                                  ("tf-twice", combine.combine([part(bases[0], "a"), part(bases[0], "a")]), (va, va))]:
                with self.subTest(model=tag):
                    got = vectors(c, tag)
                    self.assertEqual(set(got), set(va))
                    worst = max(float(np.abs(got[k] - np.concatenate([p[k] for p in parts])).max()) for k in got)
                    self.assertLessEqual(worst, 1e-6)
            self.assertGreater(max(float(np.ptp(v)) for v in va.values()), 0.01)


if __name__ == "__main__":
    unittest.main()
