#!/usr/bin/env python3
"""What one PIL core does per image, for the bench's decode rows.

For every image of DATA (flow_from_directory order), one thread, no model:
read the file, sha256 it (xfer hashes every file for its cache, so the
comparison includes it), open it with PIL, optionally `draft('RGB', (S, S))`
(libjpeg's DCT scaling, what `xfer extract --decode draft` follows), load,
convert to RGB, resize NEAREST to SxS (Keras's load_img), and preprocess into
the float32 CHW tensor a model would get. This is the rate a user's own
single-threaded loader reaches; `xfer extract` with a model that costs
nothing is measured against it.

Appends one JSON line to --json-out: images, total_s (wall), cpu_s.

    python scripts/bench/pil_decode.py --data DATA --size 150 [--draft] --json-out F
"""
import argparse
import hashlib
import io
import os
import time

import numpy as np

import benchlib


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--size", type=int, default=150)
    p.add_argument("--preprocess", default="tf", help="tf|torch|lite|raw")
    p.add_argument("--draft", action="store_true", help="PIL's draft('RGB', (S, S)) before loading")
    p.add_argument("--json-out")
    a = p.parse_args(argv)
    from PIL import Image

    items = benchlib.list_images(a.data)
    t0, c0 = time.perf_counter(), time.process_time()
    size = (a.size, a.size)
    for _, rel, _, _ in items:
        with open(os.path.join(a.data, rel), "rb") as f:
            data = f.read()
        hashlib.sha256(data).digest()
        img = Image.open(io.BytesIO(data))
        if a.draft:
            img.draft("RGB", size)
        img.load()
        if img.mode != "RGB":
            img = img.convert("RGB")
        if img.size != size:
            img = img.resize(size, Image.NEAREST)
        benchlib.preprocess(np.asarray(img, dtype=np.uint8)[None], a.preprocess)
    rec = {"images": len(items), "total_s": time.perf_counter() - t0,
           "cpu_s": time.process_time() - c0, "draft": a.draft}
    if a.json_out:
        benchlib.append_json(a.json_out, rec)
    print(f"{len(items)} images in {rec['total_s']:.2f} s ({len(items) / rec['total_s']:.0f}/s), "
          f"CPU {rec['cpu_s']:.2f} s")


if __name__ == "__main__":
    main()
