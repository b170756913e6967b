"""Keras Xception (include_top=False) as an ONNX base: input [N, 3, H, W],
output `features` [N, 2048] after global average pooling.

The graph follows keras/src/applications/xception.py layer for layer:
entry flow (two valid 3x3 convs, then blocks 2-4: separable convs, 'same'
3x3 stride-2 max pools and 1x1 stride-2 residual convs), middle flow (blocks
5-12: three ReLU + separable conv + BN, identity residual), exit flow (block 13
with its residual conv, block 14) and ReLUs exactly where Keras puts them. A
separable conv is a depthwise conv (group = C) followed by a 1x1 pointwise conv;
batch norm uses Keras's epsilon 1e-3; TF 'same' padding puts the odd extra
row/column at the end (ONNX SAME_UPPER), which matters for the stride-2 pools
at 150x150. H and W are dynamic, at least 71 (Keras's minimum).

Weights (`--weights`):
  imagenet  Keras's official `..._notop.h5`, downloaded once into the cache
            ($XDG_CACHE_HOME/xfer or ~/.cache/xfer, or --cache DIR) and checked
            against the md5 Keras publishes for it; a copy in Keras's own cache
            (~/.keras/models) is used as is.
  PATH.h5   any Keras Xception weight file: legacy layouts of Keras 1, 2 and 3
            (read by layer order, as Keras does, every shape checked) or Keras 3's
            `.weights.h5`; see h5weights.py.
  random    seeded He-scaled weights with non-trivial batch-norm statistics, no
            network; the model is marked pretrained=false.

The default size written to the metadata is 150, not Keras's 299: the course
trains its clothing head on 150x150 inputs (about 4x cheaper than 299 and what
`xfer extract --size` defaults to); any size >= 71 still works.
"""
import hashlib
import os
import sys
import urllib.request

import numpy as np

from . import ExportError, graph, h5weights, metadata
from .h5weights import Expected

KERAS_FILE = "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/xception/" + KERAS_FILE
# The hash Keras passes to get_file for this file (keras/src/applications/xception.py);
# 32 hex digits, so Keras checks it as md5.
KERAS_MD5 = "b0042744bf5b25fce3cb969f33bebb97"

DIM = 2048
DEFAULT_SIZE = 150
MIN_SIZE = 71
BN_EPSILON = 1e-3


# The layers with weights, in the order Keras lists them (Keras 3's
# Functional order, which is also the order of the official file's layer
# groups): within blocks 2-4 and 13 the residual conv comes after the two
# separable convs. Shapes are Keras's (TF layout).
def _conv(role, kh, cin, cout):
    return [Expected(role, "conv", ((kh, kh, cin, cout),)), Expected(role + "_bn", "bn", ((cout,),) * 4)]


def _sep(role, cin, cout):
    return [Expected(role, "sepconv", ((3, 3, cin, 1), (1, 1, cin, cout))),
            Expected(role + "_bn", "bn", ((cout,),) * 4)]


def _residual_block(b, cin, cmid, cout):
    return (_sep(f"block{b}_sepconv1", cin, cmid) + _sep(f"block{b}_sepconv2", cmid, cout)
            + _conv(f"block{b}_residual", 1, cin, cout))


def layers():
    out = _conv("block1_conv1", 3, 3, 32) + _conv("block1_conv2", 3, 32, 64)
    out += _residual_block(2, 64, 128, 128) + _residual_block(3, 128, 256, 256)
    out += _residual_block(4, 256, 728, 728)
    for b in range(5, 13):
        out += sum((_sep(f"block{b}_sepconv{i}", 728, 728) for i in (1, 2, 3)), [])
    out += _residual_block(13, 728, 728, 1024)
    out += _sep("block14_sepconv1", 1024, 1536) + _sep("block14_sepconv2", 1536, DIM)
    return out


LAYERS = layers()


# Weight sources: `take(role)` gives the arrays of the next layer, in order.
class _FileWeights:
    def __init__(self, path):
        wf = h5weights.read(path)
        self._arrays = iter(h5weights.match(wf, LAYERS, model="Xception include_top=False"))
        self._roles = iter(LAYERS)

    def take(self, role):
        e = next(self._roles)
        assert e.role == role, (e.role, role)  # the graph walks LAYERS in order
        return next(self._arrays)


class _RandomWeights:
    """He-scaled kernels and batch-norm statistics that keep activations in a
    sane range; generated layer by layer as the graph asks for them."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)
        self._roles = iter(LAYERS)

    def take(self, role):
        e = next(self._roles)
        assert e.role == role, (e.role, role)
        r = self._rng
        if e.kind == "bn":
            (c,) = e.shapes[0]
            var = r.uniform(0.5, 1.5, c)
            gamma = np.sqrt(var + BN_EPSILON) * r.uniform(0.8, 1.2, c)  # gain about 1
            return [gamma, r.normal(0, 0.1, c), r.normal(0, 0.1, c), var]
        out = []
        for i, s in enumerate(e.shapes):
            depthwise = e.kind == "sepconv" and i == 0
            # He after a ReLU; the depthwise half has no ReLU before the pointwise one
            gain = 1.0 if depthwise else 2.0
            if i == len(e.shapes) - 1 and _feeds_add(role):
                gain /= 2  # two branches meet in an Add: keep the sum's variance
            std = np.sqrt(gain / (s[0] * s[1] * (1 if depthwise else s[2])))
            out.append(r.standard_normal(s, dtype=np.float32) * np.float32(std))
        return out


def _feeds_add(role):
    """The last conv of each residual branch (its BN output goes into an Add)."""
    b = int(role[5:role.index("_")])
    if role.endswith("_residual"):
        return True
    return role.endswith("_sepconv3") or (b in (2, 3, 4, 13) and role.endswith("_sepconv2"))


# ONNX layout: conv [kh, kw, in, out] -> [out, in, kh, kw]; depthwise
# [kh, kw, C, 1] -> [C, 1, kh, kw].
def _oihw(k):
    return np.ascontiguousarray(np.transpose(k, (3, 2, 0, 1)))


def _depthwise(k):
    kh, kw, c, m = k.shape
    return np.ascontiguousarray(np.transpose(k, (2, 3, 0, 1)).reshape(c * m, 1, kh, kw))


class _Builder:
    def __init__(self, weights):
        self.g = graph.Graph()
        self.w = weights

    def bn(self, x, role):
        gamma, beta, mean, var = self.w.take(role)
        return self.g.batchnorm(x, gamma, beta, mean, var, BN_EPSILON, hint=role)

    def conv_bn(self, x, role, stride, pad):
        (k,) = self.w.take(role)
        x = self.g.conv(x, _oihw(k), stride=stride, pad=pad, hint=role)
        return self.bn(x, role + "_bn")

    def sep_bn(self, x, role):
        dw, pw = self.w.take(role)
        x = self.g.conv(x, _depthwise(dw), pad="SAME_UPPER", group=dw.shape[2], hint=role + "_dw")
        x = self.g.conv(x, _oihw(pw), pad="VALID", hint=role + "_pw")
        return self.bn(x, role + "_bn")

    def residual_block(self, x, b, relu_first):
        """Blocks 2-4 and 13: two separable convs, a stride-2 pool, plus a 1x1
        stride-2 conv of the block's input."""
        y = self.g.relu(x) if relu_first else x
        y = self.sep_bn(y, f"block{b}_sepconv1")
        y = self.g.relu(y)
        y = self.sep_bn(y, f"block{b}_sepconv2")
        y = self.g.maxpool(y, 3, 2, pad="SAME_UPPER")
        r = self.conv_bn(x, f"block{b}_residual", stride=2, pad="SAME_UPPER")
        return self.g.add(y, r)

    def build(self):
        g = self.g
        x = g.relu(self.conv_bn(g.input, "block1_conv1", stride=2, pad="VALID"))
        x = g.relu(self.conv_bn(x, "block1_conv2", stride=1, pad="VALID"))
        x = self.residual_block(x, 2, relu_first=False)
        x = self.residual_block(x, 3, relu_first=True)
        x = self.residual_block(x, 4, relu_first=True)
        for b in range(5, 13):
            y = x
            for i in (1, 2, 3):
                y = self.sep_bn(g.relu(y), f"block{b}_sepconv{i}")
            x = g.add(y, x)
        x = self.residual_block(x, 13, relu_first=True)
        x = g.relu(self.sep_bn(x, "block14_sepconv1"))
        x = g.relu(self.sep_bn(x, "block14_sepconv2"))
        return g.global_avg_pool(x)


def build(weights="random", seed=0, cache=None):
    """The ONNX model for WEIGHTS ('imagenet', 'random' or a path to an .h5)."""
    if weights == "random":
        source, sha, label, pretrained = _RandomWeights(seed), f"seed-{seed}", "random", False
    else:
        path = imagenet_weights(cache) if weights == "imagenet" else weights
        if weights != "imagenet" and not os.path.isfile(path):
            raise ExportError(f"{path}: no such weight file (use imagenet, random or PATH.h5)")
        source = _FileWeights(path)
        sha = metadata.sha256_file(path)
        label = "imagenet" if weights == "imagenet" else os.path.basename(path)
        pretrained = True
    b = _Builder(source)
    out = b.build()
    props = metadata.props(backbone="xception", preprocess="tf", default_size=DEFAULT_SIZE, dim=DIM,
                           pretrained=pretrained, weights=label, weights_sha256=sha)
    return b.g.finish(out, DIM, props,
                      doc=f"Keras Xception include_top=False + global average pooling ({label} weights)")


# ImageNet weights -------------------------------------------------------------
def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xfer")


def _md5(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def imagenet_weights(cache=None, url=None, md5=KERAS_MD5, name=KERAS_FILE):
    """Path to Keras's official notop file, downloading it once into CACHE.

    A copy already in Keras's cache ($KERAS_HOME or ~/.keras, models/) is used
    if its hash is right. A failed download or a wrong hash is an ExportError
    and leaves nothing in the cache."""
    cache = cache or cache_dir()
    url = url or KERAS_URL
    dest = os.path.join(cache, name)
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    for candidate in (dest, os.path.join(keras_home, "models", name)):
        if os.path.isfile(candidate) and _md5(candidate) == md5:
            return candidate
    os.makedirs(cache, exist_ok=True)
    part = f"{dest}.part-{os.getpid()}"
    print(f"downloading {url}\n  into {dest}", file=sys.stderr)
    h = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                h.update(chunk)
                f.write(chunk)
        if h.hexdigest() != md5:
            raise ExportError(f"downloaded {url} has md5 {h.hexdigest()}, Keras publishes {md5}; "
                              "not using it")
        os.replace(part, dest)
    except ExportError:
        raise
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise ExportError(f"could not download the ImageNet Xception weights from {url} ({reason}); "
                          f"offline, copy {name} to {dest} or pass --weights PATH.h5 "
                          "(or --weights random)") from None
    finally:
        if os.path.exists(part):
            os.remove(part)
    return dest


# command line -----------------------------------------------------------------
def _build_args(args):
    return build(weights=args.weights, seed=args.seed, cache=args.cache)


def add_parser(subparsers):
    p = subparsers.add_parser("xception", help="Keras Xception, include_top=False, average pooled",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="imagenet", metavar="imagenet|random|PATH.h5",
                   help="weight source (default imagenet)")
    p.add_argument("--seed", type=int, default=0, help="seed for --weights random (default 0)")
    p.add_argument("--cache", default=None,
                   help="where the ImageNet file is kept (default $XDG_CACHE_HOME/xfer or ~/.cache/xfer)")
    p.add_argument("--out", required=True)
    p.set_defaults(build=_build_args)
    return p
