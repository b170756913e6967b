"""Tests of scripts/check_pixels.py, the reference that `xfer extract` is held to.

The reference must itself be right: its file order must be Keras's, its
pixels PIL's `load_img`, its preprocessing Keras's float32 arithmetic. When a
built `xfer` binary is around (`make test` builds target/debug/xfer first),
the synthetic-format comparison runs too.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import check_pixels  # noqa: E402


def touch(path, size=(5, 4), color=(10, 20, 30)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, color).save(path, format="PNG")


class KerasOrder(unittest.TestCase):
    def test_classes_roots_and_names_sort_as_keras(self):
        with tempfile.TemporaryDirectory() as d:
            for rel in ["b/2.png", "b/10.PNG", "b/a b/x.png", "b/a/y.png", "a/xpng", "a/z.txt"]:
                touch(os.path.join(d, rel))
            classes, files = check_pixels.keras_files(d)
            self.assertEqual(classes, ["a", "b"])
            self.assertEqual([f for _, f in files],
                             ["a/xpng", "b/10.PNG", "b/2.png", "b/a/y.png", "b/a b/x.png"])


class LoadImg(unittest.TestCase):
    def test_tf_mode_is_float32_keras_arithmetic(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "x.png")
            Image.fromarray(np.array([[[0, 127, 255]]], dtype=np.uint8)).save(p)
            x = check_pixels.keras_input(p, 1, "nearest", "tf")
            self.assertEqual(x.dtype, np.float32)
            want = np.array([0, 127, 255], dtype=np.float32) / np.float32(127.5) - np.float32(1)
            np.testing.assert_array_equal(x, want)

    def test_resize_only_when_size_differs_and_palette_converts(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "p.png")
            Image.new("RGB", (3, 3), (200, 100, 50)).convert("P").save(p)
            x = check_pixels.keras_input(p, 3, "bilinear", "raw")
            want = list(Image.open(p).convert("RGB").getpixel((0, 0)))  # the palette colour
            self.assertEqual(x.reshape(3, 3, 3)[:, 0, 0].tolist(), [float(v) for v in want])


class Draft(unittest.TestCase):
    def test_draft_decodes_jpeg_at_the_scale_pil_picks(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "x.jpg")
            rng = np.random.default_rng(0)
            Image.fromarray(rng.integers(0, 256, (101, 99, 3), dtype=np.uint8)).save(p, quality=90)
            x = check_pixels.keras_input(p, 24, "bilinear", "raw", "draft")
            img = Image.open(p)
            img.draft("RGB", (24, 24))
            self.assertEqual((img.decoderconfig[0], img.size), (4, (25, 26)))  # ceil(99/4), ceil(101/4)
            want = np.asarray(img.convert("RGB").resize((24, 24), Image.BILINEAR), "float32")
            np.testing.assert_array_equal(x, want.transpose(2, 0, 1).reshape(-1))
            self.assertFalse(np.array_equal(x, check_pixels.keras_input(p, 24, "bilinear", "raw")))

    def test_draft_jpegs_hit_every_scale(self):
        with tempfile.TemporaryDirectory() as d:
            check_pixels.synthetic(d, 0, 16)
            scales = check_pixels.draft_scales(os.path.join(d, "c"), 16)
            self.assertEqual(set(scales.values()), {1, 2, 4, 8})


@unittest.skipUnless(os.path.exists(os.path.join(ROOT, "target", "debug", "xfer")),
                     "no target/debug/xfer (make test builds it first)")
class AgainstXfer(unittest.TestCase):
    def test_synthetic_formats(self):
        xfer = os.path.join(ROOT, "target", "debug", "xfer")
        tmp = tempfile.mkdtemp()
        try:
            r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "check_pixels.py"),
                                "--xfer", xfer, "--synthetic", "--size", "24", "--keep", tmp],
                               capture_output=True, text=True, cwd=ROOT)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("max abs difference 0 ", r.stdout)
            r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "check_pixels.py"),
                                "--xfer", xfer, "--synthetic", "--size", "24", "--decode", "draft"],
                               capture_output=True, text=True, cwd=ROOT)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("decode draft", r.stdout)
            self.assertIn("max abs difference 0 ", r.stdout)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
