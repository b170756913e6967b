"""scripts/compare_vectors.py: rows matched by path, cosine as computed by hand,
xfer.quant shown, other images refused."""
import contextlib
import io
import os
import sys
import tempfile
import unittest

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import compare_vectors  # noqa: E402


def write(folder, paths, vectors, quant=None):
    os.makedirs(folder)
    kv = {"xfer.dim": str(vectors.shape[1])}
    if quant:
        kv["xfer.quant"] = quant
    flat = pa.array(vectors.astype(np.float32).reshape(-1), type=pa.float32())
    t = pa.table({"path": pa.array(paths, pa.utf8()),
                  "features": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
    pq.write_table(t.replace_schema_metadata(kv), os.path.join(folder, "validation.parquet"))


class CompareVectorsTest(unittest.TestCase):
    def test_cosine_by_path_and_quant_shown(self):
        with tempfile.TemporaryDirectory() as d:
            a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
            b = np.array([[0.0, 3.0], [1.0, 0.0], [1.0, 1.0]])  # rows of x, z, y
            write(os.path.join(d, "a"), ["x", "y", "z"], a)
            write(os.path.join(d, "b"), ["z", "x", "y"], b, quant='{"type":"int8"}')
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                compare_vectors.main([os.path.join(d, "a"), os.path.join(d, "b")])
            # x: (1,0)·(1,0) = 1; y: (1,1)·(1,1) = 1; z: (0,2)·(0,3) = 1
            self.assertIn("3 rows, cosine mean 1.0000 min 1.0000", out.getvalue())
            self.assertIn('quant none vs {"type":"int8"}', out.getvalue())
            write(os.path.join(d, "c"), ["x", "y", "w"], a)
            with self.assertRaises(SystemExit) as e:
                compare_vectors.main([os.path.join(d, "a"), os.path.join(d, "c")])
            self.assertIn("other images", str(e.exception))

    def test_cosine_of_different_vectors(self):
        with tempfile.TemporaryDirectory() as d:
            write(os.path.join(d, "a"), ["x", "y"], np.array([[1.0, 0.0], [1.0, 0.0]]))
            write(os.path.join(d, "b"), ["x", "y"], np.array([[0.0, 1.0], [1.0, 1.0]]))
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                compare_vectors.main([os.path.join(d, "a"), os.path.join(d, "b")])
            # cosines 0 and 1/sqrt(2): mean 0.3536, min 0
            self.assertIn("cosine mean 0.3536 min 0.0000", out.getvalue())


if __name__ == "__main__":
    unittest.main()
