"""make's defaults on a fresh clone, without a network: where DATA comes from
and which backbone runs (scripts/provide.py)."""
import contextlib
import io
import os
import subprocess
import tempfile
import unittest

from scripts import provide

UNREACHABLE = "http://127.0.0.1:1/weights.h5"  # refused at once


def run(*argv):
    err = io.StringIO()
    out = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = provide.main(list(argv))
    return code, out.getvalue(), err.getvalue()


class DataTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        self.dest = os.path.join(self.root, "repo", "data", "clothing-dataset-small")

    def tearDown(self):
        self.tmp.cleanup()

    def test_shared_copy_is_linked_not_copied(self):
        shared = os.path.join(self.root, "shared", "clothing-dataset-small")
        os.makedirs(os.path.join(shared, "train", "a"))
        code, _, err = run("data", self.dest, "--shared", shared, "--url", "/nonexistent")
        self.assertEqual(code, 0)
        self.assertTrue(os.path.islink(self.dest))
        self.assertFalse(os.path.isabs(os.readlink(self.dest)), "a relative link")
        self.assertTrue(os.path.isdir(os.path.join(self.dest, "train", "a")))
        self.assertIn("linked", err)
        # Present now: nothing more is done, nothing said.
        self.assertEqual(run("data", self.dest, "--shared", "/nonexistent")[0:3:2], (0, ""))

    def test_clone_at_the_pinned_commit(self):
        src = os.path.join(self.root, "course")
        os.makedirs(os.path.join(src, "train", "a"))
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", src]
        subprocess.run(["git", "init", "-q", src], check=True)
        with open(os.path.join(src, "train", "a", "1.txt"), "w") as f:
            f.write("pinned")
        subprocess.run(git + ["add", "."], check=True)
        subprocess.run(git + ["commit", "-qm", "one"], check=True)
        pin = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True,
                             text=True).stdout.strip()
        with open(os.path.join(src, "train", "a", "1.txt"), "w") as f:
            f.write("later")
        subprocess.run(git + ["commit", "-qam", "two"], check=True)
        code, _, err = run("data", self.dest, "--shared", os.path.join(self.root, "none"),
                           "--url", src, "--commit", pin)
        self.assertEqual(code, 0, err)
        with open(os.path.join(self.dest, "train", "a", "1.txt")) as f:
            self.assertEqual(f.read(), "pinned")
        self.assertEqual(os.listdir(os.path.dirname(self.dest)), ["clothing-dataset-small"],
                         "no temporary clone left")

    def test_neither_gives_one_message_that_says_what_to_do(self):
        code, _, err = run("data", self.dest, "--shared", os.path.join(self.root, "none"),
                           "--url", os.path.join(self.root, "no-such-repo"))
        self.assertEqual(code, 2)
        last = err.strip().splitlines()[-1]
        self.assertIn("git clone", last)
        self.assertIn("DATA=", last)
        self.assertFalse(os.path.exists(self.dest))
        self.assertEqual(os.listdir(os.path.dirname(self.dest)), [])


class BackboneTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.cache = os.path.join(self.tmp.name, "xfer")
        os.makedirs(self.cache)
        self.env = {k: os.environ.get(k) for k in ("KERAS_HOME",)}
        os.environ["KERAS_HOME"] = os.path.join(self.tmp.name, "keras")

    def tearDown(self):
        for k, v in self.env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self.tmp.cleanup()

    def pick(self, *extra):
        return run("backbone", "--cache", self.cache, "--url", UNREACHABLE, *extra)

    def test_offline_without_weights_falls_back_to_lite0_and_says_how_to_insist(self):
        code, out, err = self.pick()
        self.assertEqual((code, out.strip()), (0, "efficientnet-lite0"))
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertIn("BACKBONE=xception", lines[0])
        self.assertIn("cannot be downloaded", lines[0])

    def test_cached_weights_keep_xception(self):
        open(os.path.join(self.cache, provide.KERAS_FILE), "wb").close()
        code, out, err = self.pick()
        self.assertEqual(out.strip(), "xception")
        self.assertIn("cached", err)

    def test_keras_own_cache_counts(self):
        d = os.path.join(os.environ["KERAS_HOME"], "models")
        os.makedirs(d)
        open(os.path.join(d, provide.KERAS_FILE), "wb").close()
        self.assertEqual(self.pick()[1].strip(), "xception")

    def test_random_or_file_weights_are_xception_without_asking(self):
        self.assertEqual(self.pick("--weights", "random")[1:], ("xception\n", ""))


class MakeDefaultsTest(unittest.TestCase):
    """make's own names, read with `make -n` (nothing runs)."""

    def make_n(self, *args):
        repo = os.path.dirname(os.path.dirname(os.path.abspath(provide.__file__)))
        r = subprocess.run(["make", "-n", "-C", repo, *args], capture_output=True, text=True,
                           env={**os.environ, "MAKEFLAGS": ""})
        return r.stdout + r.stderr

    def test_explicit_backbone_is_not_resolved(self):
        out = self.make_n("train", "BACKBONE=xception", "FEATURES=f", "WEIGHTS=random", "SEED=7")
        self.assertIn("runs/xception-random-s7-150", out)
        self.assertNotIn("efficientnet", out)

    def test_sweep_and_single_run_have_their_own_folders(self):
        single = self.make_n("train", "BACKBONE=xception", "WEIGHTS=random")
        sweep = self.make_n("train", "BACKBONE=xception", "WEIGHTS=random", "LR=0.001,0.01")
        self.assertIn("--out runs/xception-random-s1-150 ", single)
        self.assertIn("--out runs/xception-random-s1-150-sweep ", sweep)


if __name__ == "__main__":
    unittest.main()
