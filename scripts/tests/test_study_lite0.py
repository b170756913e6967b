"""scripts/study_lite0.py's report on synthetic run folders (nothing runs xfer).

Each run folder holds what `xfer train` writes (summary.csv per sweep,
history.json, run.json, metrics.json, baseline.json) with accuracies chosen by
hand, so the table's means, spreads and epochs are known; then single files are
made to disagree and the report must name them.
"""
import csv
import json
import os
import sys
import tempfile
import unittest

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, SCRIPTS)

import study_lite0 as study  # noqa: E402

SEEDS = [1, 2]
LRS = ["0.0001", "0.001", "0.01", "0.1"]
# Best validation accuracy per (lr, seed), reached at epoch 2 of 3.
BEST = {"0.0001": (0.5, 0.6), "0.001": (0.8, 0.9), "0.01": (0.7, 0.7), "0.1": (0.6, 0.6)}


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f)


def write_run(folder, best, seed, size, baseline=None):
    val = [best - 0.1, best, best - 0.05]
    write_json(os.path.join(folder, "history.json"), {
        "loss": [1, 0.5, 0.4], "accuracy": [0.5, 0.6, 0.7],
        "val_loss": [1, 0.6, 0.7], "val_accuracy": val})
    write_json(os.path.join(folder, "run.json"),
               {"seed": seed, "model": {"xfer.size": f"{size}x{size}"}})
    write_json(os.path.join(folder, "metrics.json"), {"accuracy": best, "epoch": 2})
    if baseline is not None:
        write_json(os.path.join(folder, "baseline.json"), {"val_accuracy": baseline})


def write_summary(sweep, rows):
    """The summary.csv `xfer train` writes in a sweep's folder, one row per run."""
    with open(os.path.join(sweep, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def write_study(runs):
    for tag, _, _, _, size in study.BASES:
        for i, seed in enumerate(SEEDS):
            sweep = study.sweep_dir(runs, tag, seed)
            write_json(os.path.join(sweep, "baseline.json"), {"val_accuracy": 0.85})
            rows = []
            for lr in LRS:
                best = BEST[lr][i]
                write_run(os.path.join(sweep, f"lr{lr}"), best, seed, size)
                rows.append({"name": f"lr{lr}", "lr": lr, "status": "finished",
                             "best_epoch": "2", "best_val_accuracy": str(best)})
            write_summary(sweep, rows)
            if tag.startswith("efficientnet"):
                write_run(study.inner_dir(runs, tag, "0.001", seed), 0.95, seed, size,
                          baseline=0.85)
    log = [{"step": f"extract {tag}", "command": f"xfer extract {tag}", "seconds": 1.0,
            "status": 0, "output": "xfer extract: 3409 images: 0 skipped\n"}
           for tag, *_ in study.BASES]
    return log


class Report(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.runs = os.path.join(self.tmp.name, "runs")
        self.log = write_study(self.runs)
        self.features = os.path.join(self.tmp.name, "features")
        self.old_features = study.FEATURES
        study.FEATURES = self.features
        self.meta = {"date": "2026-01-01", "commit": "abc1234"}

    def tearDown(self):
        study.FEATURES = self.old_features
        self.tmp.cleanup()

    def report(self):
        return study.report(self.runs, SEEDS, "DATA", self.log, self.meta)

    def test_table_means_spreads_epochs_and_best(self):
        text, problems = self.report()
        self.assertEqual(problems, [])
        self.assertIn("| EfficientNet-Lite0 (ImageNet) | 150 | Dense(10) | 0.001 | "
                      "85.0 ± 7.1 | 80.0–90.0 | 2, 2 | 85.0 |", text)
        # The inner row (0.95 for both seeds) is the best at each Lite0 size.
        self.assertIn("| 0.001 | **95.0 ± 0.0** | 95.0–95.0 | 2, 2 | 85.0 |", text)
        self.assertIn("| Xception (random weights) | 150 | Dense(10) | 0.001 | "
                      "**85.0 ± 7.1** |", text)
        self.assertNotIn("inner", "".join(ln for ln in text.splitlines()
                                          if ln.startswith("| Xception")))
        self.assertIn("2026-01-01 at commit abc1234", text)
        self.assertIn("train 0 (no errors.csv)", text)

    def test_best_rate_is_the_highest_mean(self):
        tag = study.LITE0[0][0]
        self.assertEqual(study.best_lr(self.runs, tag, SEEDS), "0.001")

    def test_skipped_images_are_counted(self):
        tag = study.BASES[0][0]
        os.makedirs(os.path.join(self.features, tag))
        with open(os.path.join(self.features, tag, "train.errors.csv"), "w") as f:
            f.write("path,error\na.jpg,bad\nb.jpg,bad\n")
        self.assertEqual(study.errors_note(tag),
                         "train 2 (errors.csv), validation 0 (no errors.csv)")

    def test_disagreeing_files_are_named(self):
        tag = study.BASES[0][0]
        sweep = study.sweep_dir(self.runs, tag, 2)
        path = os.path.join(sweep, "summary.csv")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("lr0.01,0.01,finished,2", "lr0.01,0.01,finished,3"))
        write_json(os.path.join(sweep, "baseline.json"), {"val_accuracy": 0.5})
        write_json(os.path.join(sweep, "lr0.1", "metrics.json"), {"accuracy": 0.1})
        _, problems = self.report()
        joined = "\n".join(problems)
        self.assertIn("summary.csv best_epoch 3, history.json's first maximum is epoch 2",
                      joined)
        self.assertIn("baseline val_accuracy 0.5 differs", joined)
        self.assertIn("metrics.json accuracy 0.1", joined)
        self.assertEqual(len(problems), 3)

    def test_wrong_seed_in_run_json_is_named(self):
        tag = study.LITE0[1][0]
        folder = study.inner_dir(self.runs, tag, "0.001", 1)
        write_json(os.path.join(folder, "run.json"),
                   {"seed": 7, "model": {"xfer.size": "150x150"}})
        _, problems = self.report()
        self.assertEqual(len(problems), 1)
        self.assertIn("run.json says seed 7, size 150x150; expected 1, 224", problems[0])


if __name__ == "__main__":
    unittest.main()
