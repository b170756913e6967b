"""check_augment.py's Python copy of xfer's view parameters (no Keras needed)."""
import os
import sys
import types
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import check_augment  # noqa: E402


def settings(**kw):
    base = dict(seed=1, rotation=0.0, width_shift=0.0, height_shift=0.0, shear=10.0, zoom=0.1,
                horizontal_flip=True, vertical_flip=False)
    base.update(kw)
    return types.SimpleNamespace(**base)


class UniformsTest(unittest.TestCase):
    def test_pinned_like_the_rust_test(self):
        # crates/extract/src/augment.rs, uniforms_are_spelled_out
        u = check_augment.uniforms(1, 1, "a/b.jpg")
        self.assertEqual((u[0], u[7]), (0.6177548484216161, 0.8790697617772154))
        self.assertTrue(all(0 <= x < 1 for x in u))
        self.assertNotEqual(u, check_augment.uniforms(1, 2, "a/b.jpg"))

    def test_params_follow_keras_ranges(self):
        a = settings(rotation=30.0, width_shift=0.1, height_shift=10.0)
        for k in range(200):
            p = check_augment.params(a, f"x/{k}.png", 1, 150, 150)
            self.assertLessEqual(abs(p["theta"]), 30)
            self.assertLessEqual(abs(p["ty"]), 15)  # 0.1 of 150 pixels
            self.assertLessEqual(abs(p["tx"]), 10)  # pixels
            self.assertLessEqual(abs(p["shear"]), 10)
            self.assertTrue(0.9 <= p["zx"] <= 1.1 and 0.9 <= p["zy"] <= 1.1)
            self.assertFalse(p["flip_vertical"])
        plain = check_augment.params(settings(shear=0, zoom=0, horizontal_flip=False), "x.png", 1, 9, 9)
        self.assertEqual((plain["theta"], plain["shear"], plain["zx"], plain["flip_horizontal"]),
                         (0, 0, 1.0, False))


if __name__ == "__main__":
    unittest.main()
