"""deploy/ and scripts/slurm/: the files README points to for running shards
on many machines say what README says.

- deploy/k8s/extract-job.yaml parses, is an Indexed Job whose `completions`
  equals the N of `--shard $(JOB_COMPLETION_INDEX)/N`, and runs exactly the
  command README shows; its flags are flags of `xfer extract` (checked
  against the binary's --help where `make test` has built it).
- scripts/slurm/extract.sbatch is the script README tells to submit, with
  the array and shard arguments README describes. `make check-slurm` runs it
  on a real Slurm; this test only reads it.
"""
import os
import re
import subprocess
import unittest

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFEST = os.path.join(REPO, "deploy", "k8s", "extract-job.yaml")
SBATCH = os.path.join(REPO, "scripts", "slurm", "extract.sbatch")


def readme():
    with open(os.path.join(REPO, "README.md")) as f:
        return f.read()


def read(path):
    with open(path) as f:
        return f.read()


class KubernetesJob(unittest.TestCase):
    def setUp(self):
        with open(MANIFEST) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        self.assertEqual(len(docs), 1, "one Job in the manifest")
        self.job = docs[0]
        pod = self.job["spec"]["template"]["spec"]
        self.assertEqual(len(pod["containers"]), 1)
        self.container = pod["containers"][0]
        self.pod = pod

    def test_indexed_job_with_one_shard_per_completion(self):
        self.assertEqual(self.job["apiVersion"], "batch/v1")
        self.assertEqual(self.job["kind"], "Job")
        spec = self.job["spec"]
        self.assertEqual(spec["completionMode"], "Indexed")
        self.assertIn(self.pod["restartPolicy"], ("Never", "OnFailure"))
        argv = self.container["command"] + self.container.get("args", [])
        shard = argv[argv.index("--shard") + 1]
        m = re.fullmatch(r"\$\(JOB_COMPLETION_INDEX\)/(\d+)", shard)
        self.assertIsNotNone(m, shard)
        self.assertEqual(int(m.group(1)), spec["completions"])
        env = {e["name"]: e for e in self.container["env"]}
        self.assertEqual(env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"],
                         "metadata.annotations['batch.kubernetes.io/job-completion-index']")
        mounts = {v["mountPath"] for v in self.container["volumeMounts"]}
        self.assertIn(self.container["workingDir"], mounts, "paths are relative to the shared volume")

    def test_command_is_the_one_readme_shows(self):
        argv = self.container["command"] + self.container.get("args", [])
        shown = [line.strip() for line in readme().splitlines()
                 if line.strip().startswith("xfer extract") and "$(JOB_COMPLETION_INDEX)" in line]
        self.assertEqual(shown, [" ".join(argv)])
        self.assertTrue("deploy/k8s/extract-job.yaml" in readme(), "README names the manifest")

    def test_flags_are_xfer_extract_flags(self):
        argv = self.container["command"] + self.container.get("args", [])
        self.assertEqual(argv[:2], ["xfer", "extract"])
        flags = [a for a in argv if a.startswith("--")]
        self.assertIn("--shard", flags)
        xfer = next((p for p in (os.path.join(REPO, "target", d, "xfer") for d in ("debug", "release"))
                     if os.path.exists(p)), None)
        if xfer is None:
            print("SKIPPED: no target/*/xfer; flags not checked against --help")
            return
        help_text = subprocess.run([xfer, "extract", "--help"], capture_output=True, text=True,
                                   check=True).stdout
        for flag in flags:
            self.assertRegex(help_text, r"\s" + re.escape(flag) + r"\b", flag)


class SlurmScript(unittest.TestCase):
    def test_readme_submits_the_repository_script(self):
        text = readme()
        for phrase in ("sbatch scripts/slurm/extract.sbatch", "make check-slurm"):
            self.assertTrue(phrase in text, f"README does not say {phrase!r}")

    def test_array_task_is_the_shard(self):
        script = read(SBATCH)
        self.assertTrue(script.startswith("#!/usr/bin/env bash\n"))
        self.assertRegex(script, r"(?m)^#SBATCH --array=0-\d+$")
        self.assertIn('--shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT"', script)
        self.assertTrue(os.access(SBATCH, os.X_OK))
        # bash can parse it
        subprocess.run(["bash", "-n", SBATCH], check=True)


if __name__ == "__main__":
    unittest.main()
