"""`export_model.py xception`: weight files of every Keras layout load by
order with every shape checked, bad files fail cleanly, and a random export
runs through ONNX Runtime with the right metadata.

The synthetic HDF5 files hold no data: each dataset has the right shape and a
fill value telling which layer and which weight it is (layer k, weight i ->
k + i/10), so a file costs a few KB and reading shows where each weight went.
Equality with Keras itself is `make check-export` (scripts/check_export.py).
"""
import contextlib
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np
import onnxruntime as ort
from onnx import numpy_helper

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORT = os.path.join(SCRIPTS, "export_model.py")
sys.path.insert(0, SCRIPTS)

from xferexport import ExportError, h5weights, xception  # noqa: E402

LAYERS = xception.LAYERS
KERAS3_NAMES = {"conv": ("kernel",), "sepconv": ("depthwise_kernel", "pointwise_kernel"),
                "bn": ("gamma", "beta", "moving_mean", "moving_variance")}
KERAS1_NAMES = {"conv": ("W",), "sepconv": ("depthwise_kernel", "pointwise_kernel"),
                "bn": ("gamma", "beta", "running_mean", "running_std")}
KERAS1_LAYER = {"conv": "convolution2d", "sepconv": "separableconvolution2d",
                "bn": "batchnormalization"}


def fill(k, i):
    return k + i / 10


def layer_plan(naming):
    """(layer name, [(weight name, shape, fill)]) in Keras order, with some
    weightless layers in between as real files have them."""
    counts, plan = {}, [("input_1", [])]
    for k, e in enumerate(LAYERS):
        if naming == "keras1":
            base = KERAS1_LAYER[e.kind]
            counts[base] = counts.get(base, 0) + 1
            name = f"{base}_{counts[base]}"
            wn = [f"{name}_{w}:0" for w in KERAS1_NAMES[e.kind]]
        else:
            name = e.role
            suffix = ":0" if naming == "keras2" else ""
            wn = [f"{name}/{w}{suffix}" for w in KERAS3_NAMES[e.kind]]
        plan.append((name, [(w, s, fill(k, i)) for i, (w, s) in enumerate(zip(wn, e.shapes))]))
        if e.kind == "bn":
            plan.append((f"activation_{k}", []))
    return plan


def write_legacy(path, plan, group=None, chunks=1, keras_version=None):
    with h5py.File(path, "w") as f:
        root = f.create_group(group) if group else f
        names = np.array([n.encode() for n, _ in plan])
        if chunks == 1:
            root.attrs["layer_names"] = names
        else:
            for c, part in enumerate(np.array_split(names, chunks)):
                root.attrs[f"layer_names{c}"] = part
        if keras_version:
            root.attrs["keras_version"] = keras_version.encode()
        for name, weights in sorted(plan):  # Keras writes the groups sorted by name
            g = root.create_group(name)
            g.attrs["weight_names"] = [w.encode() for w, _, _ in weights]
            for w, shape, value in weights:
                g.create_dataset(w, shape, dtype="f4", fillvalue=value)


def write_keras3(path, extra=()):
    """Keras 3's model.save_weights layout: layers/<class>[_k]/vars/<i>."""
    counts = {}
    with h5py.File(path, "w") as f:
        layers = f.create_group("layers")
        f.create_group("vars")
        layers.create_group("input_layer").create_group("vars")
        for k, e in enumerate(LAYERS):
            cls = h5weights.KERAS3_CLASS[e.kind]
            n = counts.get(cls, 0)
            counts[cls] = n + 1
            v = layers.create_group(cls if n == 0 else f"{cls}_{n}").create_group("vars")
            for i, s in enumerate(e.shapes):
                v.create_dataset(str(i), s, dtype="f4", fillvalue=fill(k, i))
            layers.create_group(f"activation_{k}").create_group("vars")
        for name, shapes in extra:
            v = layers.create_group(name).create_group("vars")
            for i, s in enumerate(shapes):
                v.create_dataset(str(i), s, dtype="f4")


def run_export(*args, env=None):
    return subprocess.run([sys.executable, EXPORT, *args], capture_output=True, text=True,
                          env=env)


class Tmp(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = self._tmp.name
        self.env = dict(os.environ, XDG_CACHE_HOME=os.path.join(self.tmp, "cache"),
                        KERAS_HOME=os.path.join(self.tmp, "keras"))

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def assert_refused(self, plan, regex):
        """PLAN written as a legacy file must be refused with REGEX."""
        p = self.path("bad.h5")
        write_legacy(p, plan)
        with self.assertRaisesRegex(ExportError, regex):
            h5weights.match(h5weights.read(p), LAYERS)

    def assert_no_output(self, out):
        self.assertEqual([f for f in os.listdir(os.path.dirname(out))
                          if f.startswith(os.path.basename(out))], [])


class LayerOrderTest(Tmp):
    def check_loaded(self, path):
        arrays = h5weights.match(h5weights.read(path), LAYERS)
        self.assertEqual(len(arrays), len(LAYERS))
        for k, (e, ws) in enumerate(zip(LAYERS, arrays)):
            self.assertEqual([a.shape for a in ws], list(e.shapes), e.role)
            self.assertEqual([float(a.flat[0]) for a in ws],
                             [np.float32(fill(k, i)) for i in range(len(ws))], e.role)

    def test_legacy_namings_load_by_order(self):
        for naming, version in (("keras1", None), ("keras2", "2.2.4"), ("keras3", "3.15.1")):
            with self.subTest(naming=naming):
                p = self.path(f"{naming}.h5")
                write_legacy(p, layer_plan(naming), keras_version=version)
                self.check_loaded(p)

    def test_model_save_h5_and_chunked_layer_names(self):
        p = self.path("model.h5")
        write_legacy(p, layer_plan("keras3"), group="model_weights", chunks=3)
        self.check_loaded(p)

    def test_keras3_weights_h5(self):
        p = self.path("x.weights.h5")
        write_keras3(p)
        self.check_loaded(p)

    def test_keras3_weights_h5_with_classifier_is_refused(self):
        p = self.path("top.weights.h5")
        write_keras3(p, extra=[("dense", ((2048, 1000), (1000,)))])
        with self.assertRaisesRegex(ExportError, r"unexpected dense layer.*include_top=True"):
            h5weights.match(h5weights.read(p), LAYERS)

    def test_batchnorm_names_out_of_place(self):
        plan = layer_plan("keras1")
        name, ws = plan[2]  # batchnormalization_1
        ws[2], ws[3] = (ws[3][0],) + ws[2][1:], (ws[2][0],) + ws[3][1:]  # names swapped
        self.assert_refused(plan, r"batchnormalization_1.*weight #2 is "
                            r"'batchnormalization_1_running_std:0'")


class ShapeCheckTest(Tmp):
    def test_wrong_shape(self):
        plan = layer_plan("keras2")
        name, ws = plan[7]  # input_1 and two activations come before it
        self.assertEqual(name, "block2_sepconv1")
        ws[1] = (ws[1][0], (1, 1, 64, 127), ws[1][2])
        self.assert_refused(plan, r"bad\.h5: layer #4 'block2_sepconv1' has weight "
                            r"shapes \[\(3, 3, 64, 1\), \(1, 1, 64, 127\)\].*"
                            r"\(1, 1, 64, 128\)\] for block2_sepconv1")

    def test_missing_layer(self):
        plan = [la for la in layer_plan("keras2") if la[0] != "block7_sepconv2_bn"]
        self.assert_refused(plan, r"'block7_sepconv3' has weight shapes.*"
                            r"for block7_sepconv2_bn \(79 layers with weights "
                            r"in the file, 80 expected\)")

    def test_include_top_file(self):
        plan = layer_plan("keras1")
        plan += [("avg_pool", []), ("predictions", [("predictions_W:0", (2048, 1000), 0.0),
                                                    ("predictions_b:0", (1000,), 0.0)])]
        self.assert_refused(plan, r"81 layers with weights, .* has 80; the extra "
                            r"layer 'predictions' .*include_top=True")

    def test_listed_layer_missing(self):
        p = self.path("nogroup.h5")
        write_legacy(p, layer_plan("keras2"))
        with h5py.File(p, "a") as f:
            del f["block3_sepconv1"]
        with self.assertRaisesRegex(ExportError, r"'block3_sepconv1' is listed in layer_names "
                                                 r"but missing"):
            h5weights.read(p)

    def test_not_keras(self):
        p = self.path("empty.h5")
        with h5py.File(p, "w") as f:
            f.create_dataset("x", (3,), dtype="f4")
        with self.assertRaisesRegex(ExportError, "no Keras weights found"):
            h5weights.read(p)


class CommandLineTest(Tmp):
    def test_truncated_file_leaves_no_output(self):
        good = self.path("good.h5")
        write_legacy(good, layer_plan("keras1"))
        with open(good, "rb") as f:
            data = f.read()
        bad = self.path("truncated.h5")
        with open(bad, "wb") as f:
            f.write(data[: len(data) // 2])
        out = os.path.join(self.path("out"), "m.onnx")
        r = run_export("xception", "--weights", bad, "--out", out, env=self.env)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("truncated.h5", r.stderr)
        self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(out + ".tmp"))

    def test_missing_file(self):
        out = self.path("m.onnx")
        r = run_export("xception", "--weights", self.path("nope.h5"), "--out", out, env=self.env)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"nope\.h5: no such weight file")
        self.assert_no_output(out)

    def test_unknown_backbone(self):
        out = self.path("m.onnx")
        r = run_export("resnet50", "--out", out, env=self.env)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("invalid choice: 'resnet50'", r.stderr)
        self.assert_no_output(out)


class ImagenetDownloadTest(Tmp):
    def quiet(self, fn, *a, **kw):
        with contextlib.redirect_stderr(io.StringIO()):
            return fn(*a, **kw)

    def test_failed_download_is_one_clear_error(self):
        cache = self.path("cache")
        with self.assertRaisesRegex(ExportError, r"could not download the ImageNet Xception "
                                                 r"weights from http://127\.0\.0\.1:9/.*--weights "):
            self.quiet(xception.imagenet_weights, cache, url="http://127.0.0.1:9/x.h5")
        self.assertEqual(os.listdir(cache), [])

    def test_build_imagenet_offline(self):
        old = xception.KERAS_URL
        xception.KERAS_URL = "http://127.0.0.1:9/" + xception.KERAS_FILE
        try:
            with self.assertRaisesRegex(ExportError, "could not download"):
                self.quiet(xception.build, weights="imagenet", cache=self.path("cache"))
        finally:
            xception.KERAS_URL = old

    def test_hash_checked_and_cached_once(self):
        src = self.path("src.h5")
        with open(src, "wb") as f:
            f.write(b"not really weights")
        md5 = hashlib.md5(b"not really weights").hexdigest()
        cache = self.path("cache")
        url = "file://" + src
        with self.assertRaisesRegex(ExportError, r"has md5 .*, Keras publishes 0+; not using it"):
            self.quiet(xception.imagenet_weights, cache, url=url, md5="0" * 32)
        self.assertEqual(os.listdir(cache), [])
        got = self.quiet(xception.imagenet_weights, cache, url=url, md5=md5)
        self.assertEqual(got, os.path.join(cache, xception.KERAS_FILE))
        os.remove(src)  # cached now: no second download
        self.assertEqual(xception.imagenet_weights(cache, url=url, md5=md5), got)

    def test_keras_cache_reused(self):
        models = os.path.join(self.path("keras"), "models")
        os.makedirs(models)
        with open(os.path.join(models, xception.KERAS_FILE), "wb") as f:
            f.write(b"keras copy")
        old = os.environ.get("KERAS_HOME")
        os.environ["KERAS_HOME"] = self.path("keras")
        try:
            got = xception.imagenet_weights(self.path("cache"), url="http://127.0.0.1:9/x",
                                            md5=hashlib.md5(b"keras copy").hexdigest())
        finally:
            if old is None:
                del os.environ["KERAS_HOME"]
            else:
                os.environ["KERAS_HOME"] = old
        self.assertEqual(got, os.path.join(models, xception.KERAS_FILE))


class ExportTest(Tmp):
    def test_random_export_metadata_and_output(self):
        out = self.path("random.onnx")
        r = run_export("xception", "--weights", "random", "--seed", "3", "--out", out, env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
        props = sess.get_modelmeta().custom_metadata_map
        self.assertEqual(props, {
            "xfer.backbone": "xception", "xfer.layout": "NCHW", "xfer.input": "input",
            "xfer.output": "features", "xfer.preprocess": "tf", "xfer.default_size": "150",
            "xfer.dim": "2048", "xfer.pretrained": "false", "xfer.weights": "random",
            "xfer.weights_sha256": "seed-3"})
        self.assertEqual(sess.get_inputs()[0].shape, ["N", 3, "H", "W"])
        x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 71, 71)).astype(np.float32)
        (y,) = sess.run(["features"], {"input": x})
        self.assertEqual(y.shape, (2, 2048))
        self.assertTrue(np.isfinite(y).all())
        self.assertTrue(0.01 < np.abs(y).mean() < 100, np.abs(y).mean())  # a sane scale
        self.assertGreater(np.abs(y[0] - y[1]).max(), 0)

    def test_file_export_places_weights(self):
        """Kernels transposed to ONNX layout, batch norm in order, metadata
        naming the file and its sha256."""
        plan = layer_plan("keras1")
        p = self.path("keras1.h5")
        write_legacy(p, plan)
        rng = np.random.default_rng(0)
        k = rng.standard_normal((3, 3, 3, 32)).astype(np.float32)
        dw = rng.standard_normal((3, 3, 64, 1)).astype(np.float32)
        with h5py.File(p, "a") as f:
            f["convolution2d_1/convolution2d_1_W:0"][...] = k
            f["separableconvolution2d_1/separableconvolution2d_1_depthwise_kernel:0"][...] = dw
        model = xception.build(weights=p)
        inits = {i.name.rsplit("_", 1)[0]: numpy_helper.to_array(i) for i in model.graph.initializer}
        np.testing.assert_array_equal(inits["block1_conv1_w"], k.transpose(3, 2, 0, 1))
        np.testing.assert_array_equal(inits["block2_sepconv1_dw_w"][:, 0], dw[:, :, :, 0].transpose(2, 0, 1))
        self.assertEqual(float(inits["block1_conv1_bn_v"][0]), np.float32(fill(1, 3)))
        self.assertEqual(float(inits["block14_sepconv2_bn_g"][0]), np.float32(fill(79, 0)))
        props = {q.key: q.value for q in model.metadata_props}
        with open(p, "rb") as f:
            self.assertEqual(props["xfer.weights_sha256"], hashlib.sha256(f.read()).hexdigest())
        self.assertEqual((props["xfer.weights"], props["xfer.pretrained"]), ("keras1.h5", "true"))
        eps = {n.name: a.f for n in model.graph.node if n.op_type == "BatchNormalization"
               for a in n.attribute if a.name == "epsilon"}
        self.assertEqual(len(eps), 80 // 2)
        self.assertTrue(all(abs(e - 1e-3) < 1e-9 for e in eps.values()))


if __name__ == "__main__":
    unittest.main()
