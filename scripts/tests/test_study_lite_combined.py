"""scripts/study_lite_combined.py's report on synthetic run folders (nothing runs xfer).

The run folders are those `xfer train` writes for each base's sweeps and for the
recipe's seeds, with accuracies chosen by hand, so the best rows, the recipe's mean and
the verdict on the 91% goal are known; then files are made to disagree (a missing
sweep, a wrong seed, a recipe run that differs from the grid's same run) and the report
must name them.
"""
import os
import sys
import tempfile
import unittest

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, SCRIPTS)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import study_lite_combined as study  # noqa: E402
from test_study_lite0 import write_run, write_summary  # noqa: E402

SEEDS = [1, 2]
RECIPE_SEEDS = [1, 2, 3, 4]
META = {"date": "2026-01-01", "commit": "abc1234", "data": "../data", "seeds": SEEDS,
        "recipe_seeds": RECIPE_SEEDS, "load_before": "1.0 / 1.0 / 1.0", "load_after": "2.0 / 2.0 / 2.0"}


def write_study(runs, recipe_acc):
    """Every row reaches 0.88 and 0.89 (seeds 1, 2) but the recipe's, which reaches
    `recipe_acc` with every seed, in the grid and in the recipe's own runs."""
    for tag, _, size in study.BASES:
        for head, _, _ in study.HEADS:
            for seed in SEEDS:
                sweep = study.sweep_dir(runs, tag, head, seed)
                rows = []
                for lr in study.RATES.split(","):
                    best = recipe_acc if (tag, head, lr) == study.RECIPE else 0.88 + 0.01 * (seed - 1)
                    name = f"lr{lr}"
                    write_run(os.path.join(sweep, name), best, seed, size)
                    rows.append({"name": name, "lr": lr, "status": "finished", "best_epoch": "2",
                                 "best_val_accuracy": str(best)})
                write_summary(sweep, rows)
    for seed in RECIPE_SEEDS:
        write_run(study.recipe_dir(runs, seed), recipe_acc, seed, 299)


class Report(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.runs = os.path.join(self.tmp.name, "runs")

    def tearDown(self):
        self.tmp.cleanup()

    def test_recipe_meets_the_goal_at_91(self):
        write_study(self.runs, 0.912)
        text, problems = study.report(self.runs, META, [])
        self.assertEqual(problems, [])
        self.assertIn("**Met** by the recommended recipe, Lite0 + Lite1 + Lite2 at 299", text)
        self.assertIn("**91.2 ± 0.0%** over 4 seeds (1, 2, 3, 4; range 91.2–91.2)", text)
        self.assertIn(study.recipe_command(), text)
        self.assertIn("| Lite0 + Lite1 + Lite2 | 299 | 3840 | Dense(100, relu) + Dropout(0.2) + Dense(10) "
                      "| 0.001 | **91.2 ± 0.0** | 91.2–91.2 | 2, 2 |", text)
        self.assertIn("| Lite0 | 380 | 1280 | Dense(10) | 0.0003 | **88.5 ± 0.7** | 88.0–89.0 | 2, 2 |", text)

    def test_recipe_below_91_is_not_met(self):
        write_study(self.runs, 0.905)
        text, problems = study.report(self.runs, META, [])
        self.assertEqual(problems, [])
        self.assertIn("**Not met**", text)

    def test_missing_disagreeing_and_unrepeatable_runs_are_named(self):
        write_study(self.runs, 0.912)
        missing = study.sweep_dir(self.runs, "lite1", "dense10", 2)
        os.remove(os.path.join(missing, "summary.csv"))
        wrong = os.path.join(study.sweep_dir(self.runs, "lite2", "inner100", 1), "lr0.001")
        write_run(wrong, 0.88, 7, 299)
        again = study.recipe_dir(self.runs, 2)
        write_run(again, 0.9, 2, 299)
        _, problems = study.report(self.runs, META, [])
        self.assertTrue(any(p.startswith(missing) and "missing" in p for p in problems))
        self.assertTrue(any(p.startswith(wrong) and "seed 7" in p for p in problems))
        self.assertTrue(any(p.startswith(again) and "the grid's seed 2 run" in p for p in problems), problems)


if __name__ == "__main__":
    unittest.main()
