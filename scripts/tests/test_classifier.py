"""`export_model.py classifier`: base + head + softmax joined into one ONNX.

A tiny base is exported, a head is written by hand in Keras layout, and the
joined model's `probabilities` must equal numpy's softmax(features @ W + b)
on the same images; heads that belong to another base are refused.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import onnx
import onnxruntime as ort

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORT = os.path.join(SCRIPTS, "export_model.py")
sys.path.insert(0, SCRIPTS)

from xferexport import ExportError, classifier  # noqa: E402


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def run_export(*args):
    return subprocess.run([sys.executable, EXPORT, *args], capture_output=True, text=True)


class ClassifierTest(unittest.TestCase):
    DIM = 6
    CLASSES = ["cat", "dog", "<b>fox</b>"]

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.base = os.path.join(cls.tmp.name, "tiny.onnx")
        r = run_export("tiny", "--dim", str(cls.DIM), "--seed", "3", "--out", cls.base)
        assert r.returncode == 0, r.stderr
        with open(cls.base, "rb") as f:
            cls.base_sha = hashlib.sha256(f.read()).hexdigest()
        cls.rng = np.random.default_rng(0)
        cls.images = cls.rng.uniform(-1, 1, (5, 3, 32, 32)).astype(np.float32)
        sess = ort.InferenceSession(cls.base, providers=["CPUExecutionProvider"])
        cls.features = sess.run(["features"], {"input": cls.images})[0]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def meta(self, **over):
        m = {
            "xfer.classes": json.dumps(self.CLASSES),
            "xfer.backbone": "tiny",
            "xfer.model_sha256": self.base_sha,
            "xfer.size": "32x32",
            "xfer.resize": "nearest",
            "xfer.preprocess": "tf",
            "xfer.dim": str(self.DIM),
            "xfer.pretrained": "false",
        }
        m.update(over)
        return m

    def write_head(self, name, tensors, meta):
        path = os.path.join(self.tmp.name, name)
        classifier.write_safetensors(path, tensors, meta)
        return path

    def join(self, head, out_name):
        out = os.path.join(self.tmp.name, out_name)
        r = run_export("classifier", "--base", self.base, "--head", head, "--out", out)
        return r, out

    def probabilities(self, path):
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feats, probs = sess.run(["features", "probabilities"], {"input": self.images})
        return feats, probs

    def test_dense_head_equals_numpy_softmax(self):
        w = self.rng.normal(0, 1, (self.DIM, 3)).astype(np.float32)
        b = self.rng.normal(0, 1, 3).astype(np.float32)
        head = self.write_head("dense.safetensors", {"dense.kernel": w, "dense.bias": b}, self.meta())
        r, out = self.join(head, "dense.onnx")
        self.assertEqual(r.returncode, 0, r.stderr)
        feats, probs = self.probabilities(out)
        np.testing.assert_allclose(feats, self.features, atol=1e-6)
        expect = softmax(self.features.astype(np.float64) @ w + b)
        self.assertEqual(probs.shape, (5, 3))
        np.testing.assert_allclose(probs, expect, atol=1e-6)
        props = {p.key: p.value for p in onnx.load(out).metadata_props}
        self.assertEqual(json.loads(props["xfer.classes"]), self.CLASSES)
        self.assertEqual(props["xfer.backbone"], "tiny")
        self.assertEqual(props["xfer.preprocess"], "tf")
        self.assertEqual(props["xfer.size"], "32x32")
        self.assertEqual(props["xfer.model_sha256"], self.base_sha)
        self.assertEqual(props["xfer.probabilities"], "probabilities")
        self.assertEqual(props["xfer.weights_sha256"], "seed-3")  # the base's entries stay

    def test_inner_relu_head_equals_numpy(self):
        wi = self.rng.normal(0, 1, (self.DIM, 4)).astype(np.float32)
        bi = self.rng.normal(0, 1, 4).astype(np.float32)
        w = self.rng.normal(0, 1, (4, 3)).astype(np.float32)
        b = self.rng.normal(0, 1, 3).astype(np.float32)
        head = self.write_head("inner.safetensors",
                               {"inner.kernel": wi, "inner.bias": bi, "dense.kernel": w, "dense.bias": b},
                               self.meta())
        r, out = self.join(head, "inner.onnx")
        self.assertEqual(r.returncode, 0, r.stderr)
        _, probs = self.probabilities(out)
        hidden = np.maximum(self.features.astype(np.float64) @ wi + bi, 0)
        np.testing.assert_allclose(probs, softmax(hidden @ w + b), atol=1e-6)
        props = {p.key: p.value for p in onnx.load(out).metadata_props}
        self.assertEqual(props["xfer.head_inner"], "4")

    def assert_refused(self, meta, tensors=None, needle=""):
        tensors = tensors or {"dense.kernel": np.zeros((self.DIM, 3), np.float32),
                              "dense.bias": np.zeros(3, np.float32)}
        head = self.write_head("bad.safetensors", tensors, meta)
        r, out = self.join(head, "bad.onnx")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(needle, r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)  # one line, no traceback
        self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(out + ".tmp"))

    def test_other_model_sha_is_refused(self):
        self.assert_refused(self.meta(**{"xfer.model_sha256": "0" * 64}), needle="another model")

    def test_other_preprocessing_is_refused(self):
        self.assert_refused(self.meta(**{"xfer.preprocess": "torch"}), needle="xfer.preprocess")

    def test_other_dim_is_refused(self):
        self.assert_refused(self.meta(**{"xfer.dim": "7"}), needle="xfer.dim")

    def test_missing_sha_is_refused(self):
        m = self.meta()
        del m["xfer.model_sha256"]
        self.assert_refused(m, needle="no xfer.model_sha256")

    def test_class_count_must_match_kernel(self):
        self.assert_refused(self.meta(**{"xfer.classes": json.dumps(["a", "b"])}), needle="2 classes")

    def test_kernel_rows_must_match_base_dim(self):
        t = {"dense.kernel": np.zeros((self.DIM + 1, 3), np.float32), "dense.bias": np.zeros(3, np.float32)}
        self.assert_refused(self.meta(), tensors=t, needle="takes 7 inputs")

    def test_not_a_safetensors_file(self):
        head = os.path.join(self.tmp.name, "junk.safetensors")
        with open(head, "wb") as f:
            f.write(b"\xff" * 4)
        with self.assertRaisesRegex(ExportError, "not a safetensors file"):
            classifier.read_safetensors(head)

    def test_safetensors_round_trip(self):
        path = os.path.join(self.tmp.name, "rt.safetensors")
        t = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(1, np.float32)}
        classifier.write_safetensors(path, t, {"k": "v"})
        back, meta = classifier.read_safetensors(path)
        self.assertEqual(meta, {"k": "v"})
        for k in t:
            np.testing.assert_array_equal(back[k], t[k])


ROOT = os.path.dirname(SCRIPTS)


def xfer_binary():
    for profile in ("debug", "release"):
        path = os.path.join(ROOT, "target", profile, "xfer")
        if os.path.exists(path):
            return path
    return None


@unittest.skipIf(xfer_binary() is None, "no xfer binary built (cargo build --bin xfer)")
class ReadmeExample(unittest.TestCase):
    """README.md's classify.py, run as it stands, gives `xfer predict`'s
    probabilities for every preprocessing mode and a resize filter other than
    Keras's nearest, on images that need converting and resizing (palette,
    grayscale, RGBA, a JPEG, one already at the size), and for a combined base
    (two tiny bases joined by `export_model.py tiny+tiny`)."""

    SIZE = 24
    CLASSES = ["cat", "dog", "fox"]

    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, SCRIPTS)
        import check_readme

        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            code = check_readme.example(f.read(), "classify.py")
        assert code, "README.md has no ```python classify.py block"
        namespace = {"__name__": "readme"}
        exec(compile(code, "README.md classify.py", "exec"), namespace)
        cls.classify = staticmethod(namespace["classify"])
        cls.tmp = tempfile.TemporaryDirectory()
        cls.images = cls.make_images(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def make_images(cls, folder):
        from PIL import Image

        rng = np.random.default_rng(5)
        rgb = Image.fromarray(rng.integers(0, 256, (31, 45, 3), dtype=np.uint8))
        paths = []
        for name, img in [("palette.png", rgb.convert("P")), ("gray.png", rgb.convert("L")),
                          ("rgba.png", rgb.convert("RGBA")), ("photo.jpg", rgb),
                          ("exact.png", rgb.resize((cls.SIZE, cls.SIZE))),
                          # draft scale 2 (--decode draft heads): min(w // S, h // S) = 2
                          ("big.jpg", rgb.resize((4 * cls.SIZE + 3, 2 * cls.SIZE + 5)))]:
            path = os.path.join(folder, name)
            img.save(path)
            paths.append(path)
        return paths

    def classifier(self, preprocess, resize, decode="full", combined=False):
        d = os.path.join(self.tmp.name, f"{preprocess}-{resize}-{decode}-{combined}")
        os.makedirs(d)
        base = os.path.join(d, "base.onnx")
        # combined: two tiny bases of 3 joined into one of 6 (export_model.py tiny+tiny)
        r = run_export("tiny+tiny" if combined else "tiny", "--dim", "3" if combined else "6",
                       "--seed", "4", "--preprocess", preprocess, "--out", base)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(base, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        rng = np.random.default_rng(1)
        head = os.path.join(d, "head.safetensors")
        classifier.write_safetensors(head, {
            "dense.kernel": rng.normal(0, 1, (6, 3)).astype(np.float32),
            "dense.bias": rng.normal(0, 1, 3).astype(np.float32),
        }, {
            "xfer.classes": json.dumps(self.CLASSES), "xfer.backbone": "tiny+tiny" if combined else "tiny",
            "xfer.model_sha256": sha, "xfer.size": f"{self.SIZE}x{self.SIZE}",
            "xfer.resize": resize, "xfer.preprocess": preprocess, "xfer.dim": "6",
            "xfer.pretrained": "false",
            **({"xfer.decode": decode} if decode != "full" else {}),
        })
        joined = os.path.join(d, "classifier.onnx")
        r = run_export("classifier", "--base", base, "--head", head, "--out", joined)
        self.assertEqual(r.returncode, 0, r.stderr)
        return base, head, joined

    def predict(self, base, head):
        r = subprocess.run([xfer_binary(), "predict", "--model", base, "--head", head, "--json",
                            "--top", "3", "--device", "cpu", *self.images],
                           capture_output=True, text=True, cwd=ROOT)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = [json.loads(ln) for ln in r.stdout.splitlines()]
        return {ln["path"]: {t["class"]: t["probability"] for t in ln["top"]} for ln in lines}

    def test_every_preprocessing_equals_xfer_predict(self):
        for preprocess, resize, decode, combined in [
                ("tf", "nearest", "full", False), ("lite", "nearest", "full", False),
                ("torch", "nearest", "full", False), ("raw", "nearest", "full", False),
                ("tf", "bilinear", "full", False), ("raw", "bilinear", "draft", False),
                ("torch", "nearest", "full", True)]:
            with self.subTest(preprocess=preprocess, resize=resize, decode=decode, combined=combined):
                base, head, joined = self.classifier(preprocess, resize, decode, combined)
                props = {p.key: p.value for p in onnx.load(joined).metadata_props}
                self.assertEqual(props.get("xfer.decode", "full"), decode)
                ours = self.predict(base, head)
                for path in self.images:
                    theirs = self.classify(joined, path)
                    self.assertEqual(set(theirs), set(self.CLASSES))
                    for c in self.CLASSES:
                        self.assertAlmostEqual(ours[path][c], theirs[c], delta=1e-5,
                                               msg=f"{os.path.basename(path)} {c}")


if __name__ == "__main__":
    unittest.main()
