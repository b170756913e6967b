"""scripts/check_train.py's helpers, without Keras: the hand-written
safetensors and the Parquet feature files it feeds to `xfer train`.

When an `xfer` binary is built (target/release or target/debug), Python-made
features and a Python-made head also go through `xfer train --init` and
`xfer eval`, proving the two sides read each other's files. The Keras
comparison itself needs .venv-keras: `make check-train`.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import check_train  # noqa: E402


def xfer_binary():
    for profile in ("release", "debug"):
        p = ROOT / "target" / profile / "xfer"
        if p.exists():
            return p
    return None


class SafetensorsTest(unittest.TestCase):
    def test_round_trip_and_layout(self):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "h.safetensors"
            k = np.arange(12, dtype=np.float32).reshape(4, 3)
            b = np.array([0.5, -1.0, 2.0], dtype=np.float32)
            check_train.write_safetensors(path, {"dense.kernel": k, "dense.bias": b}, {"xfer.dim": "4"})
            raw = path.read_bytes()
            n = int.from_bytes(raw[:8], "little")
            self.assertEqual(n % 8, 0, "header padded to 8 bytes")
            header = json.loads(raw[8 : 8 + n])
            self.assertEqual(header["dense.kernel"], {"dtype": "F32", "shape": [4, 3], "data_offsets": [0, 48]})
            self.assertEqual(header["__metadata__"], {"xfer.dim": "4"})
            self.assertEqual(len(raw), 8 + n + 60)
            tensors, meta = check_train.read_safetensors(path)
            np.testing.assert_array_equal(tensors["dense.kernel"], k)
            np.testing.assert_array_equal(tensors["dense.bias"], b)
            self.assertEqual(meta, {"xfer.dim": "4"})


class FeaturesTest(unittest.TestCase):
    def test_contract_schema_and_metadata(self):
        with tempfile.TemporaryDirectory() as d:
            names = check_train.make_features(Path(d), train=25, val=7, dim=6, classes=3, seed=2)
            self.assertEqual(names, ["class00", "class01", "class02"])
            t = pq.read_table(Path(d) / "train.parquet")
            self.assertEqual(t.column_names, ["path", "class", "label", "sha256", "features"])
            ftype = t.schema.field("features").type
            self.assertTrue(pa.types.is_fixed_size_list(ftype))
            self.assertEqual((ftype.list_size, ftype.value_type), (6, pa.float32()))
            self.assertEqual(str(t.schema.field("sha256").type), "fixed_size_binary[32]")
            meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
            self.assertEqual(json.loads(meta["xfer.classes"]), names)
            self.assertEqual(meta["xfer.dim"], "6")
            labels = t["label"].to_pylist()
            self.assertEqual(labels, sorted(labels), "flow_from_directory order: class by class")
            self.assertEqual(t.num_rows, 25)
            self.assertEqual(pq.read_table(Path(d) / "validation.parquet").num_rows, 7)


@unittest.skipIf(xfer_binary() is None, "no xfer binary built (cargo build --bin xfer)")
class XferReadsPythonFilesTest(unittest.TestCase):
    def test_train_from_python_head_and_eval(self):
        xfer = xfer_binary()
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            names = check_train.make_features(d / "f", train=40, val=12, dim=5, classes=3, seed=4)
            meta = check_train.feature_metadata(names, 5)
            rng = np.random.default_rng(0)
            head = d / "init.safetensors"
            check_train.write_safetensors(
                head,
                {
                    "inner.kernel": rng.normal(size=(5, 4)).astype(np.float32),
                    "inner.bias": np.zeros(4, np.float32),
                    "dense.kernel": rng.normal(size=(4, 3)).astype(np.float32),
                    "dense.bias": np.zeros(3, np.float32),
                },
                meta,
            )
            env = dict(os.environ, XDG_CACHE_HOME=str(d / "cache"))
            run = d / "run"
            cmd = [str(xfer), "train", "--features", str(d / "f"), "--out", str(run), "--epochs", "2",
                   "--no-shuffle", "--init", str(head)]  # fmt: skip
            subprocess.run(cmd, check=True, env=env, capture_output=True)
            tensors, out_meta = check_train.read_safetensors(run / "last.safetensors")
            self.assertEqual(tensors["inner.kernel"].shape, (5, 4))
            self.assertEqual(json.loads(out_meta["xfer.classes"]), names)
            os.replace(d / "f" / "validation.parquet", d / "f" / "test.parquet")
            done = subprocess.run(
                [str(xfer), "eval", "--features", str(d / "f"), "--head", str(run / "head.safetensors"), "--json"],
                check=True,
                env=env,
                capture_output=True,
                text=True,
            )
            report = json.loads(done.stdout)
            self.assertEqual(report["classes"], names)
            self.assertEqual(sum(map(sum, report["confusion"])), 12)


if __name__ == "__main__":
    unittest.main()
