"""scripts/report.py on synthetic run and sweep folders.

The head is chosen so that the misclassified images are known by hand; one of
them is named `<img src=x onerror=alert(1)>.jpg` (and one class `<b>hat</b>`)
to prove that names are shown as text, never as markup.
"""
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.path.join(SCRIPTS, "report.py")
sys.path.insert(0, SCRIPTS)

import report  # noqa: E402
from xferexport import classifier  # noqa: E402

HOSTILE = "<img src=x onerror=alert(1)>.jpg"
CLASSES = ["<b>hat</b>", "shirt"]
META = {
    "xfer.classes": json.dumps(CLASSES),
    "xfer.backbone": "tiny",
    "xfer.model_sha256": "ab" * 32,
    "xfer.size": "32x32",
    "xfer.resize": "nearest",
    "xfer.preprocess": "tf",
    "xfer.dim": "2",
    "xfer.pretrained": "false",
}
# (class index, file name, feature vector): the head is the identity, so the
# prediction is the larger coordinate.
ROWS = [
    (0, "a.jpg", [2.0, 0.0]),
    (0, HOSTILE, [0.0, 3.0]),       # hat predicted as shirt
    (0, "c.jpg", [1.0, 0.5]),
    (1, "d.jpg", [0.0, 1.0]),
    (1, "e.jpg", [1.5, 0.0]),       # shirt predicted as hat
]


def write_features(path, rows, meta):
    d = len(rows[0][2])
    schema = pa.schema([
        ("path", pa.utf8()), ("class", pa.utf8()), ("label", pa.int32()),
        ("sha256", pa.binary(32)), ("features", pa.list_(pa.float32(), d)),
    ], metadata=meta)
    table = pa.table({
        "path": [f"validation/{CLASSES[c]}/{n}" for c, n, _ in rows],
        "class": [CLASSES[c] for c, _, _ in rows],
        "label": pa.array([c for c, _, _ in rows], pa.int32()),
        "sha256": pa.array([bytes(32)] * len(rows), pa.binary(32)),
        "features": pa.array([f for _, _, f in rows], pa.list_(pa.float32(), d)),
    }, schema=schema)
    pq.write_table(table, path)


def write_run(folder, features, lr, val_acc, meta=META):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "run.json"), "w") as f:
        # the shape xfer train writes (crates/train/src/run_dir.rs)
        json.dump({"command": "xfer train", "name": os.path.basename(folder), "features": features,
                   "train_split": "train", "val_split": "validation", "lr": lr, "epochs": 3, "seed": 1,
                   "model": meta, "head": {"inner": None, "dropout": 0.0, "layers": ["Dense(classes)"]},
                   "message": "<script>alert(2)</script>"}, f)
    with open(os.path.join(folder, "history.json"), "w") as f:
        json.dump({"loss": [1.0, 0.7, 0.5], "accuracy": [0.5, 0.6, 0.7],
                   "val_loss": [1.1, 0.9, 0.95], "val_accuracy": val_acc}, f)
    classifier.write_safetensors(os.path.join(folder, "head.safetensors"),
                                 {"dense.kernel": np.eye(2, dtype=np.float32),
                                  "dense.bias": np.zeros(2, np.float32)}, meta)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump({"split": "validation", "features": features, "head": "head.safetensors", "epoch": 2,
                   "rows": 5, "accuracy": 0.6, "classes": CLASSES,
                   "per_class": [{"class": CLASSES[0], "precision": 0.6667, "recall": 0.6667, "f1": 0.6667,
                                  "support": 3},
                                 {"class": CLASSES[1], "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}],
                   "confusion": [[2, 1], [1, 1]]}, f)


class ReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = cls.tmp.name
        cls.data = os.path.join(root, "data")
        for c, name, _ in ROWS:
            d = os.path.join(cls.data, "validation", CLASSES[c])
            os.makedirs(d, exist_ok=True)
            Image.new("RGB", (40, 30), (200, 30 * c, 40)).save(os.path.join(d, name), format="JPEG")
        cls.features = os.path.join(root, "features")
        os.makedirs(cls.features)
        write_features(os.path.join(cls.features, "validation.parquet"), ROWS, META)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def build(self, folder, *extra):
        r = subprocess.run([sys.executable, REPORT, folder, "--data", self.data, *extra],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(folder, "report.html"), encoding="utf-8") as f:
            return f.read()

    def assert_self_contained_and_escaped(self, page):
        self.assertNotIn("<img src=x", page)
        self.assertNotIn("<script", page)
        self.assertNotIn("<b>hat</b>", page)
        self.assertIn(report.esc("validation/<b>hat</b>/" + HOSTILE), page)
        self.assertIn("&lt;script&gt;alert(2)&lt;/script&gt;", page)
        # nothing fetched from anywhere: every src/href is a data: URI
        for ref in re.findall(r'(?:src|href)="([^"]*)"', page):
            self.assertTrue(ref.startswith("data:"), ref)
        self.assertNotIn("<link", page)
        self.assertNotIn("url(", page)

    def test_single_run(self):
        run = os.path.join(self.tmp.name, "run")
        write_run(run, self.features, 0.01, [0.4, 0.6, 0.5])
        page = self.build(run)
        self.assert_self_contained_and_escaped(page)
        self.assertIn("2 of 5 validation images misclassified", page)
        # the two mistakes, most confident first (softmax([0,3]) > softmax([1.5,0]))
        cards = re.findall(r'<div class="card">.*?</div></div>', page)
        self.assertEqual(len(cards), 2)
        self.assertIn(report.esc(HOSTILE), cards[0])
        self.assertIn("true: &lt;b&gt;hat&lt;/b&gt; (0.05)", cards[0])
        self.assertIn("predicted: shirt (0.95)", cards[0])
        self.assertIn("e.jpg", cards[1])
        self.assertEqual(page.count('src="data:image/jpeg;base64,'), 2)
        self.assertIn("best val_accuracy <b>0.6000</b> at epoch 2", page)
        self.assertIn("<svg", page)  # curves drawn from history.json (no curves.png)
        self.assertIn('<table class="cm">', page)
        self.assertIn("metrics.json", page)
        self.assertIn("<td>0.6667</td>", page)  # per-class precision / recall / F1
        self.assertIn("<td>xfer.backbone</td><td>tiny</td>", page)  # nested settings

    def test_mismatched_head_is_reported_not_drawn(self):
        run = os.path.join(self.tmp.name, "mismatch")
        write_run(run, self.features, 0.01, [0.5, 0.5, 0.5], meta={**META, "xfer.model_sha256": "cd" * 32})
        page = self.build(run)
        self.assertIn("the head does not belong to", page)
        self.assertNotIn('<div class="card">', page)

    def test_sweep_sorted_by_best_val_accuracy(self):
        sweep = os.path.join(self.tmp.name, "sweep")
        write_run(os.path.join(sweep, "lr-0.1"), self.features, 0.1, [0.3, 0.4, 0.45])
        write_run(os.path.join(sweep, "lr-0.01"), self.features, 0.01, [0.5, 0.8, 0.7])
        write_run(os.path.join(sweep, "lr-0.001"), self.features, 0.001, [0.2, 0.6, 0.65])
        diverged = os.path.join(sweep, "lr-10")  # no head, NaN (null) losses
        os.makedirs(diverged)
        with open(os.path.join(diverged, "history.json"), "w") as f:
            json.dump({"loss": [None], "accuracy": [0.1], "val_loss": [None], "val_accuracy": [None]}, f)
        with open(os.path.join(sweep, "summary.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["name", "lr", "status", "best_val_accuracy"])
            w.writerows([["lr-0.1", "0.1", "finished", "0.45"], ["lr-0.01", "0.01", "finished", "0.8"],
                         ["lr-0.001", "0.001", "finished", "0.65"], ["lr-10", "10", "diverged", ""]])
        page = self.build(sweep)
        self.assert_self_contained_and_escaped(page)
        table = page[page.index("<h2>Sweep"):page.index("</table>", page.index("<h2>Sweep"))]
        order = re.findall(r"<td>(lr-[0-9.]+)</td>", table)
        self.assertEqual(order, ["lr-0.01", "lr-0.001", "lr-0.1", "lr-10"])
        self.assertIn("Best configuration: lr-0.01", page)
        self.assertEqual(page.count("<details><summary>lr-"), 3)  # the other configurations, folded

    def test_sweep_without_summary_uses_histories(self):
        sweep = os.path.join(self.tmp.name, "sweep2")
        write_run(os.path.join(sweep, "a"), self.features, 0.1, [0.3, 0.4, 0.45])
        write_run(os.path.join(sweep, "b"), self.features, 0.01, [0.5, 0.9, 0.7])
        page = self.build(sweep)
        self.assertIn("Best configuration: b", page)

    def test_missing_folder_is_one_line_error(self):
        r = subprocess.run([sys.executable, REPORT, os.path.join(self.tmp.name, "nope")],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("is not a folder", r.stderr)

    def test_svg_chart_escapes_labels(self):
        svg = report.svg_chart("t", [("<x>", [0.1, 0.2], "#000", False)])
        self.assertIn("&lt;x&gt;", svg)
        self.assertNotIn("<x>", svg)


if __name__ == "__main__":
    unittest.main()
