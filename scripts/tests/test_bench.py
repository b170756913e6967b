"""scripts/bench: the references' data order and pixels, the helper trees,
and the driver end to end on the tiny model (rows whose tool is missing must
say so instead of failing).

The Keras references need .venv-keras and are not run here; `make bench`
runs them.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(SCRIPTS, "bench")
sys.path.insert(0, BENCH)

import benchlib  # noqa: E402
import run  # noqa: E402

# (split, class, file name, size, PIL mode); names chosen so that sorting
# matters (B < a in byte order, 10 < 9 as strings).
IMAGES = [
    ("train", "shirt", "b.png", (40, 30), "RGBA"),
    ("train", "hat", "9.jpg", (20, 20), "RGB"),
    ("train", "hat", "10.JPG", (33, 17), "L"),
    ("train", "hat", "B.gif.png", (64, 48), "P"),
    ("validation", "hat", "x.bmp", (12, 12), "RGB"),
    ("validation", "shirt", "y.png", (50, 70), "RGB"),
]


def make_data(root):
    rng = np.random.default_rng(0)
    for split, cls, name, (w, h), mode in IMAGES:
        d = os.path.join(root, split, cls)
        os.makedirs(d, exist_ok=True)
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
        if mode == "P":
            img = img.quantize(16)
        elif mode != "RGB":
            img = img.convert(mode)
        img.save(os.path.join(d, name))
    with open(os.path.join(root, "train", "hat", "notes.txt"), "w") as f:
        f.write("not an image")


class ListingAndPixels(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.data = os.path.join(cls.tmp, "data")
        make_data(cls.data)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_flow_from_directory_order(self):
        got = [(s, rel, c, lab) for s, rel, c, lab in benchlib.list_images(self.data)]
        self.assertEqual([r for _, r, _, _ in got], [
            "train/hat/10.JPG", "train/hat/9.jpg", "train/hat/B.gif.png", "train/shirt/b.png",
            "validation/hat/x.bmp", "validation/shirt/y.png"])
        self.assertEqual([lab for *_, lab in got], [0, 0, 0, 1, 0, 1])

    def test_load_image_is_keras_load_img(self):
        path = os.path.join(self.data, "train", "hat", "B.gif.png")
        x = benchlib.load_image(path, 16)
        want = np.asarray(Image.open(path).convert("RGB").resize((16, 16), Image.NEAREST))
        self.assertEqual(x.shape, (16, 16, 3))
        np.testing.assert_array_equal(x, want)

    def test_preprocess_modes(self):
        px = np.array([[[[0, 127, 255]]]], dtype=np.uint8)
        np.testing.assert_allclose(benchlib.preprocess(px, "tf")[0, :, 0, 0],
                                   [-1.0, 127 / 127.5 - 1, 1.0], rtol=1e-6)
        np.testing.assert_allclose(benchlib.preprocess(px, "lite")[0, :, 0, 0],
                                   [-127 / 128, 0.0, 1.0], rtol=1e-6)
        self.assertEqual(benchlib.preprocess(px, "raw").shape, (1, 3, 1, 1))
        with self.assertRaises(ValueError):
            benchlib.preprocess(px, "caffe")

    def test_sample_and_repeated_trees(self):
        s = benchlib.sample_tree(self.data, os.path.join(self.tmp, "s3"), 3)
        self.assertEqual(len(benchlib.list_images(s)), 3)
        self.assertEqual(benchlib.classes_of(os.path.join(s, "validation")), ["hat", "shirt"])
        r = benchlib.repeated_tree(self.data, os.path.join(self.tmp, "r4"), 4)
        items = benchlib.list_images(r)
        self.assertEqual(len(items), 4 * len(IMAGES))
        self.assertIn("train/hat/9-r3.jpg", [rel for _, rel, _, _ in items])


class Parsing(unittest.TestCase):
    def test_xfer_extract_lines(self):
        text = ("train: 300 rows -> f/train.parquet: 300 encoded, 0 reused, 0 skipped; "
                "25.0 images/s, ONNX Runtime busy 90% of 0:12\n"
                "validation: 100 rows -> f/validation.parquet: 100 encoded, 0 reused, 0 skipped; "
                "20.0 images/s, ONNX Runtime busy 70% of 0:05\n"
                "xfer extract: 400 images: 400 encoded, 0 reused, 0 skipped; provider CPU; "
                "23.5 images/s; 0:17 in all\n")
        got = run.parse_xfer_extract(text)
        self.assertAlmostEqual(got["busy_pct"], 85.0)
        self.assertEqual(got["provider"], "CPU")
        self.assertEqual(run.parse_xfer_extract("nothing"), {"busy_pct": None, "provider": None})

    def test_keras_estimate_from_sample(self):
        row = {"internal": [{"import_s": 2.0, "build_s": 10.0, "predict_s": 14.0, "warm_s": 10.0,
                             "images": 100}]}
        est, ips = run.keras_extract_estimate(row, 1000)
        # import + build + compile (14 - 10) + 1000 images at 10 images/s
        self.assertAlmostEqual(est, 2 + 10 + 4 + 100)
        self.assertAlmostEqual(ips, 10.0)


def run_driver(tmp, part, runs, xfer, cwd=None):
    """`run.py --parts PART` on make_data's images with the tiny model (size
    32) in TMP: (process, results.json rows, BENCHMARKS.md text or '')."""
    data = os.path.join(tmp, "data")
    make_data(data)
    model = os.path.join(tmp, "tiny.onnx")
    subprocess.run([sys.executable, os.path.join(SCRIPTS, "export_model.py"), "tiny",
                    "--dim", "8", "--size", "32", "--out", model],
                   check=True, capture_output=True)
    out = os.path.join(tmp, "BENCHMARKS.md")
    env = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache"))
    p = subprocess.run([sys.executable, os.path.join(BENCH, "run.py"), "--data", data,
                        "--model", model, "--size", "32", "--work", os.path.join(tmp, "w"),
                        "--out", out, "--parts", part, "--runs", str(runs), "--xfer", xfer,
                        "--python", sys.executable,
                        "--keras-python", os.path.join(tmp, "no-keras")],
                       capture_output=True, text=True, env=env, cwd=cwd)
    rows, text = {}, ""
    if p.returncode == 0:
        with open(os.path.join(tmp, "w", "results.json")) as f:
            rows = json.load(f)["rows"]
        with open(out) as f:
            text = f.read()
    return p, rows, text


@unittest.skipUnless(shutil.which("hyperfine") and os.path.exists("/usr/bin/time"),
                     "needs hyperfine and GNU time")
class DriverEndToEnd(unittest.TestCase):
    def test_extract_part_on_the_tiny_model(self):
        with tempfile.TemporaryDirectory() as tmp:
            p, rows, text = run_driver(tmp, "extract", 2, os.path.join(tmp, "no-xfer"))
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertEqual(len(rows["extract.ort"]["runs"]), 2)
            self.assertEqual(len(rows["extract.python"]["rss_kb"]), 2)
            self.assertEqual(rows["extract.ort"]["internal"][0]["images"], len(IMAGES))
            self.assertIn("not built", rows["extract.xfer"]["error"])
            self.assertIn("missing", rows["extract.keras"]["error"])
            self.assertIn("## 1. Extraction", text)
            self.assertIn("ONNX Runtime alone", text)
            self.assertIn("No GPU measured", text)
            vec = np.load(os.path.join(tmp, "w", "out", "python-vectors.npy"))
            self.assertEqual(vec.shape, (len(IMAGES), 8))

    def test_serve_part_on_the_tiny_model(self):
        """Part serve end to end on 2 images: both servers answer every
        request at each level, xfer's split comes from its /metrics, xfer
        exits 0 on SIGTERM, and section 7 is rendered."""
        root = os.path.dirname(SCRIPTS)
        xfer = next((p for p in (os.path.join(root, "target", b, "xfer") for b in ("release", "debug"))
                     if os.path.exists(p)), None)
        if xfer is None or "--max-batch" not in subprocess.run(
                [xfer, "serve", "--help"], capture_output=True, text=True).stdout:
            self.skipTest("no xfer binary with `serve` built (cargo build --bin xfer)")
        with tempfile.TemporaryDirectory() as tmp:
            p, rows, text = run_driver(tmp, "serve", 1, xfer, cwd=root)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertEqual(rows["serve.extract"]["images"], 2)
            for key in ("serve.xfer", "serve.fastapi"):
                self.assertNotIn("error", rows[key], rows[key].get("error"))
                rec = rows[key]["internal"][0]
                for k in ("1", "8", "32"):
                    self.assertEqual((rec["levels"][k]["ok"], rec["levels"][k]["errors"]), (2, 0))
            xrec = rows["serve.xfer"]["internal"][0]
            self.assertEqual(xrec["exit"], 0)
            self.assertEqual(xrec["split"]["1"]["xfer_batch_size_sum"], 2)
            self.assertIn("## 7. Serving", text)
            self.assertIn("FastAPI + uvicorn + onnxruntime", text)

    def test_python_pipeline_parquet_matches_predecoded_ort(self):
        """The Parquet the pipeline writes has the contract's columns and
        metadata, and its vectors equal ORT on predecode.py's tensors."""
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "data")
            make_data(data)
            model = os.path.join(tmp, "tiny.onnx")
            subprocess.run([sys.executable, os.path.join(SCRIPTS, "export_model.py"), "tiny",
                            "--dim", "8", "--size", "32", "--out", model],
                           check=True, capture_output=True)
            env = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache"))
            feats = os.path.join(tmp, "features")
            for argv in (["python_pipeline.py", "--data", data, "--model", model, "--size", "32",
                          "--threads", "1", "--out", feats],
                         ["predecode.py", "--data", data, "--model", model, "--size", "32",
                          "--out", os.path.join(tmp, "x.npy")]):
                subprocess.run([sys.executable, os.path.join(BENCH, argv[0]), *argv[1:]],
                               check=True, capture_output=True, env=env)
            t = pq.read_table(os.path.join(feats, "train.parquet"))
            self.assertEqual(t.column_names, ["path", "class", "label", "sha256", "features"])
            meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
            self.assertEqual(json.loads(meta["xfer.classes"]), ["hat", "shirt"])
            self.assertEqual(meta["xfer.size"], "32x32")
            sess, m = benchlib.ort_session(model, 1)
            x = np.load(os.path.join(tmp, "x.npy"))
            (y,) = sess.run([m["xfer.output"]], {m["xfer.input"]: x[:4]})
            got = np.array(t.column("features").to_pylist(), dtype=np.float32)
            np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-6)


class Pins(unittest.TestCase):
    def test_the_pins_file_gives_each_wheel_its_version(self):
        self.assertRegex(benchlib.ort_pin("onnxruntime"), r"^\d+\.\d+\.\d+$")
        self.assertRegex(benchlib.ort_pin("onnxruntime-gpu"), r"^\d+\.\d+\.\d+$")
        with self.assertRaises(KeyError):
            benchlib.ort_pin("onnxruntime-directml")


class GpuAgainstCpu(unittest.TestCase):
    """run.compare_features, which holds gpu.sh's CUDA vectors to the CPU's."""

    def write(self, folder, name, paths, vectors):
        import pyarrow as pa
        os.makedirs(folder, exist_ok=True)
        flat = pa.array(np.asarray(vectors, dtype=np.float32).ravel())
        feats = pa.FixedSizeListArray.from_arrays(flat, len(vectors[0]))
        pq.write_table(pa.table({"path": paths, "features": feats}), os.path.join(folder, name))

    def test_relative_errors_overall_and_per_image(self):
        with tempfile.TemporaryDirectory() as tmp:
            cpu, gpu = os.path.join(tmp, "cpu"), os.path.join(tmp, "gpu")
            self.write(cpu, "train.parquet", ["a", "b"], [[10.0, -20.0], [0.5, 0.25]])
            self.write(gpu, "train.parquet", ["a", "b"], [[10.0, -20.002], [0.5, 0.2505]])
            r = run.compare_features(gpu, cpu)
            self.assertEqual(r["rows"], 2)
            self.assertAlmostEqual(r["max_rel"], 0.002 / 20, places=6)
            self.assertAlmostEqual(r["max_img_rel"], 0.0005 / 0.5, places=5)
            self.write(gpu, "train.parquet", ["b", "a"], [[0.5, 0.25], [10.0, -20.0]])
            self.assertIn("order", run.compare_features(gpu, cpu)["error"])
            self.write(gpu, "train.parquet", ["a", "b"], [[10.0, -20.0], [0.5, 0.25]])
            self.assertEqual(run.compare_features(gpu, cpu)["max_rel"], 0.0)
            self.write(cpu, "validation.parquet", ["c"], [[1.0, 1.0]])
            self.assertIn("missing", run.compare_features(gpu, cpu)["error"])


if __name__ == "__main__":
    unittest.main()
