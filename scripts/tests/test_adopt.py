"""`export_model.py adopt` on foreign-looking models made here from the tiny base.

Each model is the tiny base (scripts/xferexport/tiny.py) rewritten the way other
exporters write it, its xfer metadata removed: NHWC input with an NHWC feature-map
output (Keras through tf2onnx), a fixed batch of 1 (a default torch.onnx.export), a
fixed batch the graph bakes into a Reshape, a second input, an integer input, a 3-D
output, several outputs. The adopted models' vectors are compared with the tiny base's
in Python onnxruntime and, when a built `xfer` binary and ONNX Runtime library are
around (`make test` builds target/debug/xfer first), through `xfer extract` on
generated images: equal within 1e-6.
"""
import contextlib
import copy
import io
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import export_model  # noqa: E402
from xferexport import adopt, tiny  # noqa: E402

DIM = 8


def props(model):
    return {p.key: p.value for p in model.metadata_props}


def vi(name, dims, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, dims)


def foreign(model, *, nodes=None, inputs=None, outputs=None, inits=()):
    """`model` without xfer metadata, with its graph's nodes/inputs/outputs replaced."""
    m = copy.deepcopy(model)
    g = m.graph
    if nodes is not None:
        del g.node[:]
        g.node.extend(nodes)
    if inputs is not None:
        del g.input[:]
        g.input.extend(inputs)
    if outputs is not None:
        del g.output[:]
        g.output.extend(outputs)
    g.initializer.extend(inits)
    del m.metadata_props[:]
    helper.set_model_props(m, {"producer_note": "kept"})
    onnx.checker.check_model(m)
    return m


class Models:
    """The tiny base and its rewrites."""

    def __init__(self):
        self.tiny = tiny.build(dim=DIM, seed=3, default_size=32)
        nodes = list(self.tiny.graph.node)
        gap = next(i for i, n in enumerate(nodes) if n.op_type == "GlobalAveragePool")
        self.body = nodes[:gap]  # input -> ... -> feature map [N, 8, h, w]
        self.fmap = nodes[gap].input[0]
        self.head = nodes[gap:]  # GlobalAveragePool, Flatten, Identity -> features

    def nchw(self, batch="N", size=("H", "W")):
        return foreign(self.tiny, inputs=[vi("input", [batch, 3, *size])],
                       outputs=[vi("features", [batch, DIM])])

    def nhwc_feature_map(self, batch="N", size=("H", "W")):
        """Keras-style: NHWC image in, NHWC feature map out."""
        nodes = [helper.make_node("Transpose", ["image"], ["input"], perm=[0, 3, 1, 2])]
        nodes += self.body
        nodes.append(helper.make_node("Transpose", [self.fmap], ["block_out"], perm=[0, 2, 3, 1]))
        return foreign(self.tiny, nodes=nodes, inputs=[vi("image", [batch, *size, 3])],
                       outputs=[vi("block_out", [batch, "h", "w", DIM])])

    def nchw_feature_map(self):
        """torchvision-style backbone cut before its pooling."""
        return foreign(self.tiny, nodes=self.body, inputs=[vi("input", ["N", 3, "H", "W"])],
                       outputs=[vi(self.fmap, ["N", DIM, "h", "w"])])

    def reshape_batch_one(self):
        """Fixed batch 1, pooled through a Reshape to the constant [1, 8]."""
        shape = numpy_helper.from_array(np.array([1, DIM], np.int64), "one_by_dim")
        nodes = self.body + [
            helper.make_node("GlobalAveragePool", [self.fmap], ["pooled"]),
            helper.make_node("Reshape", ["pooled", "one_by_dim"], ["features"]),
        ]
        return foreign(self.tiny, nodes=nodes, inputs=[vi("input", [1, 3, 32, 32])],
                       outputs=[vi("features", [1, DIM])], inits=[shape])

    def torch_view_batch_one(self):
        """Fixed batch 1, pooled and flattened the way old torch exports write
        `x.view(x.size(0), -1)`: Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
        inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
                 numpy_helper.from_array(np.array([0], np.int64), "axes0"),
                 numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
        nodes = self.body + [
            helper.make_node("GlobalAveragePool", [self.fmap], ["pooled"]),
            helper.make_node("Shape", ["pooled"], ["pooled_shape"]),
            helper.make_node("Gather", ["pooled_shape", "zero"], ["n"], axis=0),
            helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
            helper.make_node("Concat", ["n1", "minus_one"], ["view_shape"], axis=0),
            helper.make_node("Reshape", ["pooled", "view_shape"], ["features"]),
        ]
        return foreign(self.tiny, nodes=nodes, inputs=[vi("input", [1, 3, 32, 32])],
                       outputs=[vi("features", [1, DIM])], inits=inits)

    def two_inputs(self):
        nodes = list(self.tiny.graph.node)
        nodes[-1] = helper.make_node("Mul", [nodes[-1].input[0], "scale"], ["features"])
        return foreign(self.tiny, nodes=nodes, inputs=[vi("input", ["N", 3, 32, 32]),
                                                       vi("scale", [1])],
                       outputs=[vi("features", ["N", DIM])])

    def uint8_input(self):
        nodes = [helper.make_node("Cast", ["pixels"], ["input"], to=TensorProto.FLOAT)]
        return foreign(self.tiny, nodes=nodes + list(self.tiny.graph.node),
                       inputs=[vi("pixels", ["N", 3, 32, 32], TensorProto.UINT8)])

    def tokens_output(self):
        shape = numpy_helper.from_array(np.array([0, DIM, -1], np.int64), "tokens_shape")
        nodes = self.body + [helper.make_node("Reshape", [self.fmap, "tokens_shape"], ["tokens"])]
        return foreign(self.tiny, nodes=nodes, inputs=[vi("input", ["N", 3, 32, 32])],
                       outputs=[vi("tokens", ["N", DIM, "T"])], inits=[shape])

    def two_outputs(self):
        return foreign(self.tiny, outputs=[vi("features", ["N", DIM]),
                                           vi(self.fmap, ["N", DIM, "h", "w"])])


def run(model, x, inp=None, out=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    inp = inp or sess.get_inputs()[0].name
    out = out or sess.get_outputs()[0].name
    return sess.run([out], {inp: x.astype(np.float32)})[0]


def xfer_vectors(model_props, model):
    """The adopted model's vectors for a fixed NCHW batch, fed as xfer feeds it."""
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 32, 32))
    return run(model, x, model_props["xfer.input"], model_props["xfer.output"])


class Adopt(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = Models()
        cls.x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 32, 32))
        cls.want = run(cls.m.tiny, cls.x, "input", "features")

    def adopt(self, model, **kw):
        kw.setdefault("preprocess", "tf")
        return adopt.adopt(model, source="in.onnx", weights_sha256="ab" * 32, **kw)

    def assert_metadata(self, model, **want):
        p = props(model)
        for k, v in want.items():
            self.assertEqual(p[f"xfer.{k}"], v, k)
        self.assertEqual(p["xfer.layout"], "NCHW")
        self.assertEqual(p["producer_note"], "kept")
        (inp,) = model.graph.input
        (out,) = model.graph.output
        self.assertEqual((inp.name, out.name), (p["xfer.input"], p["xfer.output"]))
        dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        self.assertEqual(dims[1], 3, "adopted input is NCHW")
        self.assertIsInstance(dims[0], str, "adopted batch is dynamic")
        odims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
        self.assertEqual(odims[1:], [int(p["xfer.dim"])])

    def test_nhwc_feature_map_becomes_nchw_pooled(self):
        model = self.adopt(self.m.nhwc_feature_map(), size=32, name="keras-like",
                           preprocess="torch")
        self.assert_metadata(model, backbone="keras-like", preprocess="torch", default_size="32",
                             dim=str(DIM), pretrained="true", weights="in.onnx",
                             weights_sha256="ab" * 32, adopted_from="in.onnx")
        self.assertIn("NHWC input", props(model)["xfer.adopt"])
        self.assertIn("NHWC feature map", props(model)["xfer.adopt"])
        got = xfer_vectors(props(model), model)
        np.testing.assert_allclose(got, self.want, rtol=0, atol=1e-6)
        # The original nodes are all there, unchanged and in order.
        orig = [n.SerializeToString() for n in self.m.nhwc_feature_map().graph.node]
        kept = [n.SerializeToString() for n in model.graph.node]
        self.assertEqual(kept[1:1 + len(orig)], orig)

    def test_nchw_feature_map_and_pooled_output(self):
        fm = self.adopt(self.m.nchw_feature_map(), size=48)
        self.assertEqual(props(fm)["xfer.default_size"], "48")
        np.testing.assert_allclose(xfer_vectors(props(fm), fm), self.want, rtol=0, atol=1e-6)
        pooled = self.adopt(self.m.nchw(), size=32)
        self.assertEqual(props(pooled)["xfer.adopt"], "metadata only")
        self.assertEqual(props(pooled)["xfer.output"], "features")
        np.testing.assert_array_equal(xfer_vectors(props(pooled), pooled), self.want)

    def test_fixed_batch_and_size_become_dynamic_batch(self):
        for model in (self.m.nchw(batch=1, size=(32, 32)),
                      self.m.nhwc_feature_map(batch=1, size=(32, 32)),
                      self.m.torch_view_batch_one()):
            with self.subTest(nodes=[n.op_type for n in model.graph.node][-3:]):
                a = self.adopt(model)  # the size comes from the input
                self.assert_metadata(a, default_size="32")
                self.assertIn("batch 1 -> N", props(a)["xfer.adopt"])
                np.testing.assert_allclose(xfer_vectors(props(a), a), self.want, rtol=0, atol=1e-6)

    def test_a_graph_that_fixes_the_batch_is_refused(self):
        with self.assertRaisesRegex(adopt.AdoptError, r"in.onnx: the graph fixes the batch at 1: .*"
                                                      r"features is still \[1, 8\].*dynamic batch"):
            self.adopt(self.m.reshape_batch_one())

    def test_without_shape_inference_a_batch_of_two_decides(self):
        from unittest import mock

        with mock.patch.object(adopt, "_inferred_dims", return_value=None):
            a = self.adopt(self.m.nchw(batch=1, size=(32, 32)))
            np.testing.assert_allclose(xfer_vectors(props(a), a), self.want, rtol=0, atol=1e-6)
            with self.assertRaisesRegex(adopt.AdoptError, r"the graph fixes the batch at 1: with a "
                                                          r"dynamic batch a batch of 2 fails"):
                self.adopt(self.m.reshape_batch_one())

    def test_refusals_say_what_to_pass(self):
        cases = [
            (self.m.two_inputs(), {}, r"several inputs need feeding \(input float "
                                      r"\[N, 3, 32, 32\], scale float \[1\]\).*single image"),
            (self.m.uint8_input(), {}, r"input pixels is an integer uint8 tensor.*float32"),
            (self.m.tokens_output(), {}, r"output tokens is \[N, 8, \d+\] \(3-D\).*pass --output"),
            (self.m.two_outputs(), {"size": 32}, r"several outputs .*: pass --output NAME"),
            (self.m.nchw(), {}, r"fixes no spatial size: pass --size S"),
            (self.m.nchw(batch=1, size=(32, 32)), {"size": 64},
             r"takes 32x32 images only, not --size 64: pass --size 32"),
            (self.m.nchw(), {"size": 32, "input": "nope"}, r"no input named 'nope'"),
            (self.m.nchw(), {"size": 32, "preprocess": "caffe"}, r"--preprocess 'caffe'"),
        ]
        for model, kw, pattern in cases:
            with self.subTest(pattern=pattern):
                kw = dict(kw)
                if "input" in kw:
                    kw["input_name"] = kw.pop("input")
                with self.assertRaisesRegex(adopt.AdoptError, pattern):
                    self.adopt(model, **kw)

    def test_output_chosen_among_several(self):
        a = self.adopt(self.m.two_outputs(), size=32, output_name=self.m.fmap)
        self.assertEqual(len(a.graph.output), 1)
        np.testing.assert_allclose(xfer_vectors(props(a), a), self.want, rtol=0, atol=1e-6)


class Cli(unittest.TestCase):
    """export_model.py adopt: files in and out, one error line, no output on failure."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.m = Models()

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def export(self, *args):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = export_model.main(["adopt", *args])
        return rc, err.getvalue()

    def test_writes_the_adopted_model_or_nothing(self):
        src = os.path.join(self.tmp, "keras_model.onnx")
        onnx.save(self.m.nhwc_feature_map(), src)
        out = os.path.join(self.tmp, "adopted.onnx")
        rc, err = self.export("--onnx", src, "--preprocess", "tf", "--size", "32", "--out", out)
        self.assertEqual(rc, 0, err)
        p = props(onnx.load(out))
        self.assertEqual((p["xfer.backbone"], p["xfer.weights"]),
                         ("keras_model", "keras_model.onnx"))
        from xferexport import metadata

        self.assertEqual(p["xfer.weights_sha256"], metadata.sha256_file(src))
        bad = os.path.join(self.tmp, "bad.onnx")
        rc, err = self.export("--onnx", src, "--preprocess", "tf", "--out", bad)
        self.assertEqual(rc, 1)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("keras_model.onnx: input image [N, H, W, 3] fixes no spatial size: "
                      "pass --size", err)
        self.assertFalse(os.path.exists(bad))
        with open(os.path.join(self.tmp, "junk.onnx"), "wb") as f:
            f.write(b"\xff\x00not a model")
        rc, err = self.export("--onnx", os.path.join(self.tmp, "junk.onnx"), "--preprocess", "tf",
                              "--out", bad)
        self.assertEqual(rc, 1)
        self.assertIn("junk.onnx: not an ONNX model", err)


def find_xfer():
    for kind in ("debug", "release"):
        p = os.path.join(ROOT, "target", kind, "xfer")
        if os.path.exists(p):
            return p
    return None


def find_ort():
    env = os.environ.get("ORT_DYLIB_PATH")
    if env and os.path.exists(env):
        return env
    base = os.path.join(ROOT, ".ort")
    for d in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        p = os.path.join(base, d, "libonnxruntime.so")
        if os.path.exists(p):
            return p
    return None


def write_images(data):
    """A small DATA folder: train and validation, classes a and b, 3 PNGs each of
    different sides."""
    from PIL import Image

    rng = np.random.default_rng(7)
    for split in ("train", "validation"):
        for c in ("a", "b"):
            os.makedirs(os.path.join(data, split, c))
            for i in range(3):
                px = rng.integers(0, 256, (20 + 7 * i, 30 - 3 * i, 3), dtype=np.uint8)
                Image.fromarray(px).save(os.path.join(data, split, c, f"{i}.png"))


def extract_vectors(test, model, tmp, data, tag):
    """{image path: vector} that `xfer extract` writes at 32 for `model` (saved as
    TMP/TAG.onnx) on DATA's train and validation splits; `test` asserts it ran."""
    import pyarrow.parquet as pq

    path = os.path.join(tmp, f"{tag}.onnx")
    onnx.save(model, path)
    out = os.path.join(tmp, f"features-{tag}")
    env = dict(os.environ, ORT_DYLIB_PATH=find_ort(), XDG_CACHE_HOME=os.path.join(tmp, "cache"))
    r = subprocess.run([find_xfer(), "extract", "--data", data, "--model", path,
                        "--out", out, "--size", "32", "--device", "cpu", "--quiet"],
                       capture_output=True, text=True, env=env)
    test.assertEqual(r.returncode, 0, r.stderr)
    vectors = {}
    for split in ("train", "validation"):
        t = pq.read_table(os.path.join(out, f"{split}.parquet"))
        flat = t.column("features").combine_chunks().values.to_numpy(zero_copy_only=False)
        vectors.update(zip(t.column("path").to_pylist(), flat.reshape(len(t), -1)))
    return vectors


@unittest.skipUnless(find_xfer() and find_ort(),
                     "no target/*/xfer or ONNX Runtime library (make test builds and fetches them)")
class ThroughXferExtract(unittest.TestCase):
    """The vectors `xfer extract` writes for each adopted model equal the tiny base's."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.data = os.path.join(cls.tmp, "data")
        write_images(cls.data)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def extract(self, model, tag):
        return extract_vectors(self, model, self.tmp, self.data, tag)

    def test_adopted_vectors_equal_the_base(self):
        m = Models()
        want = self.extract(m.tiny, "tiny")
        self.assertEqual(len(want), 12)
        a = adopt.adopt
        for tag, model in [
            ("nhwc-map", a(m.nhwc_feature_map(), preprocess="tf", size=32)),
            ("batch1", a(m.nchw(batch=1, size=(32, 32)), preprocess="tf")),
            ("nhwc-map-batch1", a(m.nhwc_feature_map(batch=1, size=(32, 32)), preprocess="tf")),
        ]:
            with self.subTest(model=tag):
                got = self.extract(model, tag)
                self.assertEqual(set(got), set(want))
                worst = max(float(np.abs(got[k] - want[k]).max()) for k in want)
                self.assertLessEqual(worst, 1e-6)
                self.assertGreater(max(float(np.ptp(v)) for v in want.values()), 0.01)

    def test_foreign_model_without_adopt_is_refused_by_xfer(self):
        path = os.path.join(self.tmp, "foreign.onnx")
        onnx.save(Models().nchw(size=(32, 32)), path)
        env = dict(os.environ, ORT_DYLIB_PATH=find_ort(),
                   XDG_CACHE_HOME=os.path.join(self.tmp, "cache"))
        r = subprocess.run([find_xfer(), "extract", "--data", self.data, "--model", path,
                            "--out", os.path.join(self.tmp, "f"), "--size", "32", "--device",
                            "cpu", "--quiet"], capture_output=True, text=True, env=env)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no xfer metadata", r.stderr)


if __name__ == "__main__":
    unittest.main()
