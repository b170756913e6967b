"""Read Keras HDF5 weight files as an ordered list of layers, and match them
against the layers a backbone expects, checking every shape.

Keras loads a legacy `.h5` weight file by *order*, not by name: the groups
listed in the file's `layer_names` attribute that hold weights are paired, in
turn, with the model's layers that have weights. The names differ between Keras
versions, so they cannot be relied on:

  Keras 1   convolution2d_3/convolution2d_3_W:0, batchnormalization_3/
            batchnormalization_3_running_std:0 (which holds the *variance*),
            separableconvolution2d_1/..._depthwise_kernel:0
  Keras 2   block1_conv1/block1_conv1/kernel:0, .../moving_variance:0
  Keras 3   the same without ':0' (legacy `save_weights_to_hdf5_group`, and
            `model.save('m.h5')`, which nests it all under `model_weights/`)

Keras 3's own `model.save_weights('m.weights.h5')` writes another layout:
`layers/<class>[_<k>]/vars/<i>`, one group per layer named after its class
(`conv2d_2`, `separable_conv2d_11`, `batch_normalization_5`) and numbered in
the model's layer order. The order across classes is lost, so `match` rebuilds
it from the kinds of layer the backbone expects, in turn.

Within a layer the weights come in the order Keras keeps (`weight_names`, or
`vars/0, 1, ...`): kernel; depthwise then pointwise kernel; gamma, beta, moving
mean, moving variance. Everything read is a float32 numpy array.
"""
import re
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import ExportError

# Class names (snake case, as Keras 3's native layout writes them) per layer kind.
KERAS3_CLASS = {"conv": "conv2d", "sepconv": "separable_conv2d", "bn": "batch_normalization",
                "dense": "dense"}

# Weight-name endings that give a batch-norm weight's role away, by position.
_BN_ROLES = (("gamma",), ("beta",), ("moving_mean", "running_mean"),
             ("moving_variance", "running_std"))


class Layer(NamedTuple):
    """One layer with weights: its name in the file, its weights in Keras order
    as (name, array) pairs, and for Keras 3's native layout its class name and
    index (`conv2d_3` -> ('conv2d', 3))."""
    name: str
    weights: List[Tuple[str, np.ndarray]]
    keras3_class: Optional[Tuple[str, int]] = None


class Expected(NamedTuple):
    """A layer the backbone needs: a role name (Keras 3's layer name), a kind
    (conv, sepconv, bn) and the shape of each weight, in Keras order."""
    role: str
    kind: str
    shapes: Tuple[Tuple[int, ...], ...]


class WeightFile(NamedTuple):
    path: str
    layout: str  # 'legacy' or 'keras3'
    layers: List[Layer]


def _decode(values):
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _attr_list(group, name):
    """A list attribute, also when Keras split it into name0, name1, ...
    because it outgrew the HDF5 object header."""
    if name in group.attrs:
        v = group.attrs[name]
        return _decode(np.atleast_1d(v)) if np.size(v) else []
    out, k = [], 0
    while f"{name}{k}" in group.attrs:
        out.extend(_decode(np.atleast_1d(group.attrs[f"{name}{k}"])))
        k += 1
    return out


def _array(group, name, where):
    try:
        ds = group[name]
    except KeyError:
        raise ExportError(f"{where}: weight {name!r} is listed but missing") from None
    if not hasattr(ds, "shape") or not hasattr(ds, "dtype"):
        raise ExportError(f"{where}: {name!r} is not a dataset")
    return np.asarray(ds[()], dtype=np.float32)


def read(path) -> WeightFile:
    """Every layer with weights in PATH, in the order Keras would load them.

    Raises ExportError for anything that is not a readable Keras weight file
    (not HDF5, truncated, a listed layer or weight missing)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise ExportError(f"{path}: not a readable HDF5 file ({e})") from None
    try:
        with f:
            root = f
            if "layer_names" not in f.attrs and "layer_names0" not in f.attrs \
                    and "model_weights" in f:
                root = f["model_weights"]  # model.save('m.h5'): the whole model
            if "layer_names" in root.attrs or "layer_names0" in root.attrs:
                return WeightFile(str(path), "legacy", _read_legacy(root, path))
            if "layers" in f and hasattr(f["layers"], "keys"):
                return WeightFile(str(path), "keras3", _read_keras3(f["layers"], path))
            raise ExportError(f"{path}: no Keras weights found (neither a legacy 'layer_names' "
                              "attribute nor a Keras 3 'layers' group)")
    except ExportError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise ExportError(f"{path}: unreadable HDF5 content, truncated or damaged? ({e})") from None


def _read_legacy(root, path):
    layers = []
    for name in _attr_list(root, "layer_names"):
        if name not in root:
            raise ExportError(f"{path}: layer {name!r} is listed in layer_names but missing")
        g = root[name]
        names = _attr_list(g, "weight_names")
        if names:
            where = f"{path}: layer {name!r}"
            layers.append(Layer(name, [(w, _array(g, w, where)) for w in names]))
    return layers


def _read_keras3(layers_group, path):
    layers = []
    for name in layers_group.keys():
        g = layers_group[name]
        if "vars" not in g or not len(g["vars"]):
            if "layers" in g:
                raise ExportError(f"{path}: layer {name!r} is a nested model; save the "
                                  "Xception model itself, or use the legacy .h5 layout")
            continue
        v = g["vars"]
        n = len(v)
        if sorted(v.keys()) != sorted(str(i) for i in range(n)):
            raise ExportError(f"{path}: layer {name!r} has unexpected variables {sorted(v.keys())}")
        m = re.fullmatch(r"(.*?)(?:_(\d+))?", name)
        cls = (m.group(1), int(m.group(2) or 0))
        where = f"{path}: layer {name!r}"
        layers.append(Layer(name, [(str(i), _array(v, str(i), where)) for i in range(n)], cls))
    return layers


def _keras3_order(wf: WeightFile, expected: Sequence[Expected]):
    """Put the per-class Keras 3 layers back in model order, following the
    kinds the backbone expects in turn."""
    queues = {}
    for layer in wf.layers:
        queues.setdefault(layer.keras3_class[0], []).append(layer)
    for q in queues.values():
        q.sort(key=lambda la: la.keras3_class[1])
    want = {}
    for e in expected:
        want[KERAS3_CLASS[e.kind]] = want.get(KERAS3_CLASS[e.kind], 0) + 1
    for cls, q in sorted(queues.items()):
        if cls not in want:
            raise ExportError(f"{wf.path}: unexpected {cls} layer(s) {[la.name for la in q]}"
                              f" (an include_top=True model, or another architecture?)")
        if len(q) != want[cls]:
            raise ExportError(f"{wf.path}: {len(q)} {cls} layers with weights, expected {want[cls]}")
    ordered = []
    for e in expected:
        q = queues.get(KERAS3_CLASS[e.kind], [])
        if not q:
            raise ExportError(f"{wf.path}: no {KERAS3_CLASS[e.kind]} layer left for {e.role}")
        ordered.append(q.pop(0))
    return ordered


def _fmt(shapes):
    return ", ".join(str(tuple(s)) for s in shapes) or "none"


def match(wf: WeightFile, expected: Sequence[Expected], model="the model"):
    """Pair the file's layers with EXPECTED in order and check every shape.

    Returns one list of arrays per expected layer. The first disagreement is
    reported as one ExportError naming the file, the position, the file's
    layer name and the layer expected there."""
    layers = _keras3_order(wf, expected) if wf.layout == "keras3" else list(wf.layers)
    for k, (layer, e) in enumerate(zip(layers, expected)):
        got = [tuple(a.shape) for _, a in layer.weights]
        want = [tuple(s) for s in e.shapes]
        if got != want:
            raise ExportError(
                f"{wf.path}: layer #{k} {layer.name!r} has weight shapes [{_fmt(got)}], "
                f"{model} expects [{_fmt(want)}] for {e.role} ({len(layers)} layers with "
                f"weights in the file, {len(expected)} expected)")
        if e.kind == "bn":
            _check_bn_names(wf.path, layer)
    if len(layers) != len(expected):
        extra = ""
        if len(layers) > len(expected):
            nxt = layers[len(expected)]
            shapes = [a.shape for _, a in nxt.weights]
            if len(shapes) == 2 and len(shapes[0]) == 2:
                extra = (f"; the extra layer {nxt.name!r} [{_fmt(shapes)}] is a classifier: this "
                         "looks like an include_top=True file, use the _notop one")
            else:
                extra = f"; first extra layer {nxt.name!r} [{_fmt(shapes)}]"
        raise ExportError(f"{wf.path}: {len(layers)} layers with weights, {model} has "
                          f"{len(expected)}{extra}")
    return [[a for _, a in layer.weights] for layer in layers]


def _check_bn_names(path, layer):
    """Where the names say which batch-norm weight is which, they must agree
    with the position Keras gives them (the shapes cannot tell)."""
    for pos, (name, _) in enumerate(layer.weights):
        base = name.split(":")[0]
        for other, endings in enumerate(_BN_ROLES):
            if other != pos and any(base.endswith(x) for x in endings) \
                    and not any(base.endswith(x) for x in _BN_ROLES[pos]):
                raise ExportError(f"{path}: layer {layer.name!r}: weight #{pos} is {name!r}, "
                                  f"expected the {_BN_ROLES[pos][0]} there")
