"""scripts/study_int8.py's report on synthetic folders (nothing runs xfer).

Feature files whose int8 vectors are the fp32 ones plus known noise, and run
folders with accuracies chosen by hand, so the table's differences, the goal per
row and the cosines are known; then a run folder goes missing and the report must
say so.
"""
import json
import os
import sys
import tempfile
import unittest

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, SCRIPTS)

import study_int8 as study  # noqa: E402

SEEDS = [1, 2, 3]


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f)


def write_split(folder, split, paths, x):
    os.makedirs(folder, exist_ok=True)
    flat = pa.array(x.astype(np.float32).reshape(-1), type=pa.float32())
    t = pa.table({"path": pa.array(paths, pa.utf8()),
                  "features": pa.FixedSizeListArray.from_arrays(flat, x.shape[1])})
    pq.write_table(t, os.path.join(folder, f"{split}.parquet"))


def write_run(folder, best, seed, size):
    write_json(os.path.join(folder, "history.json"),
               {"val_accuracy": [best - 0.1, best, best - 0.05]})
    write_json(os.path.join(folder, "run.json"),
               {"seed": seed, "model": {"xfer.size": f"{size}x{size}"}})


# Best validation accuracy per (features kind, size, head), one value per seed.
ACC = {
    ("fp32", 150, "course"): (0.80, 0.82, 0.84),
    ("int8", 150, "course"): (0.79, 0.81, 0.83),    # -1.0 point: met
    ("fp32", 150, "best"): (0.85, 0.85, 0.85),
    ("int8", 150, "best"): (0.86, 0.86, 0.86),      # +1.0
    ("fp32", 299, "course"): (0.88, 0.88, 0.88),
    ("int8", 299, "course"): (0.88, 0.88, 0.88),
    ("fp32", 299, "best"): (0.90, 0.90, 0.90),
    ("int8", 299, "best"): (0.88, 0.87, 0.89),      # -2.0: not met
}


class Report(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        root = self.tmp.name
        self.runs = os.path.join(root, "runs")
        self.old = study.FEATURES
        study.FEATURES = os.path.join(root, "features")
        rng = np.random.default_rng(0)
        self.cos = {}
        for size in study.SIZES:
            cos = []
            for split, n in (("train", 20), ("validation", 10)):
                paths = [f"{split}/c/{i}.jpg" for i in range(n)]
                x = rng.normal(size=(n, 16))
                y = x + rng.normal(scale=0.3, size=x.shape)
                write_split(os.path.join(study.FEATURES, study.tag_of(study.LITE0, size)),
                            split, paths, x)
                write_split(os.path.join(study.FEATURES,
                                         study.tag_of(study.int8_of(study.LITE0), size)),
                            split, paths, y)
                cos.append((x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1))
            self.cos[size] = np.concatenate(cos)
        for model in (study.XCEPTION, study.int8_of(study.XCEPTION)):
            write_split(os.path.join(self.runs, "features", study.tag_of(model, 150)),
                        "validation", ["a", "b"], np.array([[1.0, 0.0], [0.0, 1.0]])
                        if model == study.XCEPTION else np.array([[1.0, 1.0], [0.0, 1.0]]))
        for (kind, size, head), accs in ACC.items():
            model = study.LITE0 if kind == "fp32" else study.int8_of(study.LITE0)
            for seed, acc in zip(SEEDS, accs):
                write_run(study.head_dir(self.runs, study.tag_of(model, size), head, seed),
                          acc, seed, size)
        self.meta = {"seeds": SEEDS, "draft": False}

    def tearDown(self):
        study.FEATURES = self.old
        self.tmp.cleanup()

    def report(self):
        out, problems = [], []
        study.report_accuracy(out.append, self.runs, self.meta, [], problems)
        return "\n".join(out), problems

    def test_rows_differences_goal_and_cosines(self):
        text, problems = self.report()
        self.assertEqual(problems, [])
        c = self.cos[150]
        cs = f"{c.mean():.4f}, {np.percentile(c, 1):.4f}, {c.min():.4f} (30 images)"
        self.assertIn("| EfficientNet-Lite0 | 150 | Keras (nearest) | course: Dense(10), lr 0.01 "
                      f"| 82.0 ± 2.0 | 81.0 ± 2.0 | -1.0 | met | {cs} |", text)
        self.assertIn("| 85.0 ± 0.0 | 86.0 ± 0.0 | +1.0 | met |", text)
        self.assertIn("| 90.0 ± 0.0 | 88.0 ± 1.0 | -2.0 | **not met** |", text)
        # Xception: cosines 1 and 1/sqrt(2).
        self.assertIn(f"| 2 validation | 0.8536 | {np.percentile([1, 0.5 ** 0.5], 1):.4f} "
                      "| 0.7071 |", text)
        self.assertIn("**Goal met in 3 of 4 rows**; not met: 299, best head (-2.0).", text)
        self.assertNotIn("decode draft` against", text)

    def test_a_run_not_made_is_named_and_its_row_says_so(self):
        folder = study.head_dir(self.runs, study.tag_of(study.LITE0, 299), "best", 2)
        os.remove(os.path.join(folder, "history.json"))
        text, problems = self.report()
        self.assertEqual(problems, [])
        self.assertIn(f"**Not run** when this report was made (1 head runs; `make study-int8` "
                      f"resumes where it stopped): `{folder}`.", text)
        # The row is made of the seeds there are, and says how many.
        self.assertIn("lr 0.001 (2 and 3 seeds) | 90.0 ± 0.0 | 88.0 ± 1.0 | -2.0 | **not met** |",
                      text)
        # No run at all for a head: its row says not run, and no verdict.
        for seed in SEEDS:
            os.remove(os.path.join(study.head_dir(self.runs, study.tag_of(
                study.int8_of(study.LITE0), 150), "course", seed), "history.json"))
        text, _ = self.report()
        self.assertIn("| 82.0 ± 2.0 | not run | n/a | not measured |", text)
        self.assertIn("**Goal met in 2 of 3 rows**", text)

    def test_other_images_in_the_int8_file_are_named(self):
        write_split(os.path.join(study.FEATURES, study.tag_of(study.int8_of(study.LITE0), 150)),
                    "validation", ["x"], np.ones((1, 16)))
        text, problems = self.report()
        self.assertEqual(len(problems), 1)
        self.assertIn("the two files hold other images", problems[0])


if __name__ == "__main__":
    unittest.main()
