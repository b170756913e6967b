"""scripts/study_lite_recipes.py's report on synthetic run folders (nothing runs xfer).

The run folders are those `xfer train` writes for each arm's sweep, with accuracies
chosen by hand, so the best configuration, its mean and the verdict on the 91% goal
are known; then one file is made to disagree and the report must name it.
"""
import os
import sys
import tempfile
import unittest

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, SCRIPTS)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import study_lite_recipes as study  # noqa: E402
from test_study_lite0 import write_run, write_summary  # noqa: E402

SEEDS = [1, 2]
META = {"date": "2026-01-01", "commit": "abc1234", "data": "../data", "seeds": SEEDS,
        "load_before": "1.0 / 1.0 / 1.0", "load_after": "2.0 / 2.0 / 2.0"}


def write_study(runs, top):
    """Every arm's configurations reach 0.88 and 0.89; nearest-e30's first one
    reaches `top` with both seeds."""
    for arm, _, _, _, _ in study.ARMS:
        for seed in SEEDS:
            sweep = study.arm_dir(runs, arm, seed)
            rows = []
            for i, name in enumerate(["cfg-a", "cfg-b"]):
                best = top if (arm, i) == ("nearest-e30", 0) else 0.88 + 0.01 * (seed - 1)
                write_run(os.path.join(sweep, name), best, seed, study.SIZE)
                rows.append({"name": name, "status": "finished", "best_epoch": "2",
                             "best_val_accuracy": str(best)})
            write_summary(sweep, rows)


class Report(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.runs = os.path.join(self.tmp.name, "runs")

    def tearDown(self):
        self.tmp.cleanup()

    def test_best_is_bold_and_goal_not_met_below_91(self):
        write_study(self.runs, 0.9)
        text, problems, best = study.report(self.runs, META, [])
        self.assertEqual(problems, [])
        self.assertEqual(best, "90.0")
        self.assertIn("**Not met**", text)
        self.assertIn("| 30 | cfg-a | **90.0 ± 0.0** | 90.0–90.0 | 2, 2 |", text)
        self.assertIn("| 10 | cfg-b | 88.5 ± 0.7 | 88.0–89.0 | 2, 2 |", text)
        self.assertIn("1.0 / 1.0 / 1.0 before, 2.0 / 2.0 / 2.0 after", text)

    def test_goal_met_at_91(self):
        write_study(self.runs, 0.91)
        text, problems, best = study.report(self.runs, META, [])
        self.assertEqual((problems, best), ([], "91.0"))
        self.assertIn("**Met**", text)

    def test_missing_and_disagreeing_runs_are_named(self):
        write_study(self.runs, 0.9)
        missing = study.arm_dir(self.runs, "bilinear-e10", 2)
        os.remove(os.path.join(missing, "summary.csv"))
        wrong = os.path.join(study.arm_dir(self.runs, "nearest-e10", 1), "cfg-a")
        write_run(wrong, 0.88, 7, study.SIZE)
        _, problems, _ = study.report(self.runs, META, [])
        self.assertTrue(any(p.startswith(missing) and "missing" in p for p in problems))
        self.assertTrue(any(p.startswith(wrong) and "seed 7" in p for p in problems))


if __name__ == "__main__":
    unittest.main()
