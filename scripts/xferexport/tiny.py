"""A tiny base for tests: a few KB, same interface as the real backbones.

Conv 3x3 stride 2 (TF 'same') -> ReLU -> Conv 1x1 -> global average pool, with
seeded weights, `tf` preprocessing and metadata like a real export, so the
extract, train and predict paths run end to end in milliseconds.
"""
import numpy as np

from . import graph, metadata


def build(dim=8, seed=0, default_size=32, preprocess="tf"):
    rng = np.random.default_rng(seed)
    g = graph.Graph()
    hidden = max(4, dim)
    x = g.conv(g.input, rng.normal(0, 0.5, (hidden, 3, 3, 3)), bias=rng.normal(0, 0.1, hidden), stride=2)
    x = g.relu(x)
    x = g.conv(x, rng.normal(0, 0.5, (dim, hidden, 1, 1)), bias=rng.normal(0, 0.1, dim), pad="VALID")
    x = g.global_avg_pool(x)
    props = metadata.props(backbone="tiny", preprocess=preprocess, default_size=default_size, dim=dim,
                           pretrained=False, weights="random", weights_sha256=f"seed-{seed}")
    return g.finish(x, dim, props, doc="xfer tiny test base (random weights)")
