#!/usr/bin/env python3
"""A features folder whose train split is SRC's repeated K times (for the
train-time scaling rows); the validation split is copied as is.

Copy k of a row keeps its vector, label and sha256, and gets the path
`<path>#k`, so nothing looks like a duplicate. The file's xfer.* metadata is
kept, so `xfer train` accepts the folder as SRC's.

    python scripts/bench/repeat_features.py --features SRC --out DST --times 4
"""
import argparse
import os
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--features", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--times", type=int, required=True)
    p.add_argument("--train", default="train")
    p.add_argument("--val", default="validation")
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.features, f"{a.train}.parquet")
    src = pq.read_table(path)
    # xfer writes its xfer.* entries as Parquet key-value metadata, outside
    # the embedded Arrow schema: carry them over as the schema's metadata,
    # which pyarrow writes back as key-value metadata
    kv = {k: v for k, v in (pq.read_metadata(path).metadata or {}).items()
          if k != b"ARROW:schema"}
    parts = []
    for k in range(a.times):
        t = src.set_column(src.schema.get_field_index("path"), src.schema.field("path"),
                           pc.binary_join_element_wise(src.column("path"), f"#{k}", ""))
        parts.append(t)
    out = pa.concat_tables(parts).replace_schema_metadata(kv)
    pq.write_table(out, os.path.join(a.out, f"{a.train}.parquet"), compression="snappy",
                   row_group_size=1024)
    shutil.copyfile(os.path.join(a.features, f"{a.val}.parquet"),
                    os.path.join(a.out, f"{a.val}.parquet"))
    print(f"repeat_features: {out.num_rows} train rows -> {a.out}")


if __name__ == "__main__":
    main()
