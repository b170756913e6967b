#!/usr/bin/env python3
"""The seed's extraction: Keras 3 (JAX backend, CPU), flow_from_directory + predict.

What the course notebook does, minus TensorFlow (Keras 3 on JAX has no
tf.data, so the generator is Keras's own legacy ImageDataGenerator, the class
the seed imports from tensorflow.keras.preprocessing.image):

    gen = ImageDataGenerator(preprocessing_function=xception.preprocess_input)
    flow = gen.flow_from_directory(DATA/<split>, target_size=(S, S),
                                   batch_size=32, shuffle=False)
    base = keras.applications.Xception(weights=None, include_top=False,
                                       pooling='avg', input_shape=(S, S, 3))
    vectors = base.predict(flow)

weights=None (random Keras init): the arithmetic is the same as with ImageNet
weights. --sample N runs on N images spread evenly over DATA (hard links in a
temp folder) when the whole set would take too long; the driver scales by
images/s. With --sample each split is predicted twice: the first pass
(predict_s) includes JAX's JIT compile of each batch shape, the second
(warm_s) does not, so compile_s = predict_s - warm_s is known and the driver
estimates the whole set as build_s + compile_s + N / (images / warm_s).
Runs under .venv-keras. Appends one JSON line to --json-out: import_s (keras
+ jax), build_s (model), predict_s, warm_s (--sample only), total_s, images.

    KERAS_BACKEND=jax python scripts/bench/keras_extract.py --data DATA --size 150 --batch-size 32
"""
import argparse
import os
import sys
import tempfile
import time

T0 = time.perf_counter()
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import benchlib  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--size", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--sample", type=int, default=0, help="N images (0 = all)")
    p.add_argument("--json-out")
    a = p.parse_args(argv)

    import keras
    from keras.applications import xception
    from keras.src.legacy.preprocessing.image import ImageDataGenerator
    t_import = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="xfer-bench-keras-") as tmp:
        data = a.data
        if a.sample > 0:
            data = benchlib.sample_tree(a.data, os.path.join(tmp, "data"), a.sample)
        t1 = time.perf_counter()
        base = xception.Xception(weights=None, include_top=False, pooling="avg",
                                 input_shape=(a.size, a.size, 3))
        t2 = time.perf_counter()
        gen = ImageDataGenerator(preprocessing_function=xception.preprocess_input)
        n = 0
        dim = None
        predict = warm = 0.0
        for split, folder in benchlib.split_dirs(data):
            flow = gen.flow_from_directory(folder, target_size=(a.size, a.size),
                                           batch_size=a.batch_size, shuffle=False)
            if flow.samples == 0:
                continue
            s = time.perf_counter()
            y = base.predict(flow, verbose=0)
            predict += time.perf_counter() - s
            if a.sample > 0:
                flow.reset()
                s = time.perf_counter()
                base.predict(flow, verbose=0)
                warm += time.perf_counter() - s
            n += len(y)
            dim = y.shape[1]
    rec = {"import_s": t_import - T0, "build_s": t2 - t1, "predict_s": predict,
           "warm_s": warm if a.sample > 0 else None,
           "total_s": time.perf_counter() - T0, "images": n, "sample": a.sample,
           "batch_size": a.batch_size, "dim": dim, "keras": keras.__version__,
           "backend": keras.backend.backend()}
    benchlib.append_json(a.json_out, rec)
    print(f"keras_extract: {n} images, predict {rec['predict_s']:.1f} s "
          f"({n / rec['predict_s']:.1f} images/s), build {rec['build_s']:.1f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
