"""Tests of scripts/perf_split.py: which step a profiled symbol counts in."""
import os
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import perf_split  # noqa: E402


class Steps(unittest.TestCase):
    def test_symbols_fall_in_their_step(self):
        cases = [
            ("[kernel.kallsyms]", "copy_user_generic", "reading, paging, scheduling (kernel)"),
            ("xfer", "sha2::sha256::x86::digest_blocks", "sha256"),
            ("xfer", "decode_mcu", "JPEG entropy decoding (Huffman)"),
            ("xfer", "decode_mcu_AC_refine", "JPEG entropy decoding (Huffman)"),
            ("xfer", "jpeg_fill_bit_buffer", "JPEG entropy decoding (Huffman)"),
            ("xfer", "jsimd_idct_4x4_sse2.columnDCT", "JPEG inverse DCT"),
            ("xfer", "jsimd_idct_islow_avx2", "JPEG inverse DCT"),
            ("xfer", "jsimd_h2v2_fancy_upsample_avx2.upsample", "JPEG chroma upsampling"),
            ("xfer", "jsimd_ycc_rgb_convert_avx2.columnloop", "JPEG colour conversion"),
            ("xfer", "decompress_onepass", "JPEG other (libjpeg control, buffers)"),
            ("xfer", "xfer_extract::resize::resize", "resize (PIL's filters)"),
            ("xfer", "xfer_extract::pixels::to_chw", "preprocessing (to CHW floats)"),
            ("libonnxruntime.so.1.32.0", "0x00000000013e5ff2", "ONNX Runtime"),
            ("libc.so.6", "__memmove_avx_unaligned_erms", "libc (memcpy, memset, malloc)"),
            ("xfer", "xfer_extract::pipeline::extract", "xfer other (pipeline, Parquet, PNG...)"),
            ("libm.so.6", "sin", "other"),
        ]
        for dso, sym, step in cases:
            self.assertEqual(perf_split.step_of(dso, sym), step, f"{dso} {sym}")

    def test_table_has_shares_seconds_and_total(self):
        t = perf_split.table([("a", ({"sha256": 0.25, "ONNX Runtime": 0.75}, 2.0))])
        self.assertIn("| sha256 | 25.0 % | 0.50 |", t)
        self.assertIn("| ONNX Runtime | 75.0 % | 1.50 |", t)
        self.assertIn("| total | 100 % | 2.00 |", t)
        self.assertNotIn("resize", t)  # steps with no samples are left out


if __name__ == "__main__":
    unittest.main()
