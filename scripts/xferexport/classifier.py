"""Join a frozen base and a trained head into one ONNX classifier for serving.

  export_model.py classifier --base M.onnx --head HEAD.safetensors --out C.onnx

The result is the base graph unchanged (input `input` [N, 3, H, W], output
`features` [N, D]) followed by the head: Gemm (dense, Keras layout
`x @ kernel + bias`), or Gemm -> ReLU -> Gemm when the head has an inner
layer, then Softmax, as a second output `probabilities` [N, C]. Any ONNX
Runtime client can then classify images preprocessed as the metadata says.

The head file is read by hand (no `safetensors` package needed): an 8-byte
little-endian header length, a JSON header naming each tensor's dtype, shape
and byte range plus a `__metadata__` map of strings, then raw little-endian
data. The head's metadata must describe this very base: `xfer.model_sha256`
equal to the sha256 of the base file's bytes, `xfer.backbone`,
`xfer.preprocess` and `xfer.dim` equal to the base's ONNX metadata. A head
trained on another model's vectors is refused, never joined into a model that
gives silently wrong answers.

The joined model's metadata is the base's plus `xfer.classes` (JSON array),
`xfer.size` / `xfer.resize` / `xfer.decode` (the input the head was
trained on; `xfer.decode` only for a head on `--decode draft` vectors),
`xfer.model_sha256` (of the base), `xfer.head_sha256`, `xfer.head_inner` and
`xfer.probabilities` (the name of the probability output).
"""
import hashlib
import json
import struct

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import ExportError, metadata

PROBABILITIES = "probabilities"

# Head metadata that must agree with the base's ONNX metadata_props.
_SAME_AS_BASE = ("xfer.backbone", "xfer.preprocess", "xfer.dim")

_DTYPES = {"F32": "<f4"}


def read_safetensors(path):
    """Read a safetensors file: ({name: float32 array}, {metadata str: str}).

    Only float32 tensors are accepted (the head contract). Any malformed part
    raises ExportError naming the file.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ExportError(f"{path}: cannot read head file: {e.strerror or e}") from None
    if len(raw) < 8:
        raise ExportError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ExportError(f"{path}: not a safetensors file (header length {n} past the end of the file)")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: not a safetensors file (header is not JSON: {e})") from None
    if not isinstance(header, dict):
        raise ExportError(f"{path}: not a safetensors file (header is not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ExportError(f"{path}: __metadata__ must map strings to strings")
    data = raw[8 + n:]
    tensors = {}
    for name, spec in header.items():
        try:
            dtype, shape, (begin, end) = spec["dtype"], [int(s) for s in spec["shape"]], spec["data_offsets"]
        except (TypeError, KeyError, ValueError) as e:
            raise ExportError(f"{path}: tensor {name!r} has a malformed header entry ({e})") from None
        if dtype not in _DTYPES:
            raise ExportError(f"{path}: tensor {name!r} is {dtype}, heads are F32")
        count = int(np.prod(shape)) if shape else 1
        if not (0 <= begin <= end <= len(data)) or end - begin != 4 * count:
            raise ExportError(f"{path}: tensor {name!r} byte range [{begin}, {end}) does not fit shape {shape}")
        tensors[name] = np.frombuffer(data[begin:end], dtype=_DTYPES[dtype]).astype(np.float32).reshape(shape)
    return tensors, meta


def write_safetensors(path, tensors, meta):
    """Write float32 tensors and string metadata as safetensors (tests, tools)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    header["__metadata__"] = {str(k): str(v) for k, v in meta.items()}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def load_head(path):
    """The head's layers and metadata, shapes checked against each other.

    Returns (layers, meta, classes): layers is [(kernel, bias, relu_after)],
    input first; classes the list from `xfer.classes`.
    """
    tensors, meta = read_safetensors(path)
    for key in ("dense.kernel", "dense.bias"):
        if key not in tensors:
            raise ExportError(f"{path}: no {key} tensor (found {', '.join(sorted(tensors)) or 'none'})")
    layers = []
    if "inner.kernel" in tensors or "inner.bias" in tensors:
        if "inner.kernel" not in tensors or "inner.bias" not in tensors:
            raise ExportError(f"{path}: inner.kernel and inner.bias must come together")
        layers.append((tensors["inner.kernel"], tensors["inner.bias"], True))
    layers.append((tensors["dense.kernel"], tensors["dense.bias"], False))
    width = None
    for (k, b, _), name in zip(layers, ["inner", "dense"][-len(layers):]):
        if k.ndim != 2 or b.shape != (k.shape[1],):
            raise ExportError(f"{path}: {name}.kernel {list(k.shape)} and {name}.bias {list(b.shape)} "
                              "do not form a Dense layer ([inputs, outputs] and [outputs])")
        if width is not None and k.shape[0] != width:
            raise ExportError(f"{path}: {name}.kernel takes {k.shape[0]} inputs but the inner layer gives {width}")
        width = k.shape[1]
    if "xfer.classes" not in meta:
        raise ExportError(f"{path}: metadata has no xfer.classes")
    try:
        classes = json.loads(meta["xfer.classes"])
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: xfer.classes is not JSON ({e})") from None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ExportError(f"{path}: xfer.classes is not a JSON array of strings")
    if len(classes) != width:
        raise ExportError(f"{path}: {len(classes)} classes in xfer.classes but dense.kernel has {width} outputs")
    return layers, meta, classes


def check_head_against_base(head_path, meta, layers, base_path, base_bytes, base_props):
    """Raise ExportError on the first fact where head and base disagree."""
    for key in ("xfer.model_sha256", "xfer.size") + _SAME_AS_BASE:
        if key not in meta:
            raise ExportError(f"{head_path}: metadata has no {key}; cannot tell which base it belongs to")
    for key in _SAME_AS_BASE + ("xfer.output",):
        if key not in base_props:
            raise ExportError(f"{base_path}: ONNX metadata has no {key}; is it an xfer base?")
    sha = metadata.sha256_bytes(base_bytes)
    if meta["xfer.model_sha256"] != sha:
        raise ExportError(f"{head_path} was trained on vectors of another model: its xfer.model_sha256 is "
                          f"{meta['xfer.model_sha256']}, {base_path} has sha256 {sha}")
    for key in _SAME_AS_BASE:
        if meta[key] != base_props[key]:
            raise ExportError(f"{head_path} does not fit {base_path}: {key} is {meta[key]!r} in the head, "
                              f"{base_props[key]!r} in the base")
    d_in = layers[0][0].shape[0]
    if str(d_in) != base_props["xfer.dim"]:
        raise ExportError(f"{head_path}: first kernel takes {d_in} inputs, {base_path} gives "
                          f"{base_props['xfer.dim']}")
    w, _, h = meta["xfer.size"].partition("x")
    if not (w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
        raise ExportError(f"{head_path}: xfer.size {meta['xfer.size']!r} is not WxH")


def join(base_path, head_path):
    """Build the joined classifier model (onnx.ModelProto)."""
    try:
        with open(base_path, "rb") as f:
            base_bytes = f.read()
    except OSError as e:
        raise ExportError(f"{base_path}: cannot read base model: {e.strerror or e}") from None
    try:
        model = onnx.load_from_string(base_bytes)
    except Exception as e:  # onnx raises DecodeError and others
        raise ExportError(f"{base_path}: not an ONNX model ({e})") from None
    base_props = {p.key: p.value for p in model.metadata_props}
    layers, meta, classes = load_head(head_path)
    check_head_against_base(head_path, meta, layers, base_path, base_bytes, base_props)

    g = model.graph
    features = base_props["xfer.output"]
    if features not in [o.name for o in g.output]:
        raise ExportError(f"{base_path}: no graph output named {features!r} (xfer.output)")
    taken = {n.name for n in g.node} | {i.name for i in g.initializer} | {o for n in g.node for o in n.output}
    if PROBABILITIES in taken:
        raise ExportError(f"{base_path}: already has a tensor named {PROBABILITIES!r}; is it a classifier?")

    def fresh(hint):
        i = 0
        while f"head_{hint}_{i}" in taken:
            i += 1
        name = f"head_{hint}_{i}"
        taken.add(name)
        return name

    x = features
    for idx, (kernel, bias, relu) in enumerate(layers):
        hint = "inner" if relu else "dense"
        k, b, y = fresh(hint + "_kernel"), fresh(hint + "_bias"), fresh(hint)
        g.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(kernel, np.float32), k),
                              numpy_helper.from_array(np.ascontiguousarray(bias, np.float32), b)])
        g.node.append(helper.make_node("Gemm", [x, k, b], [y], name=y))
        x = y
        if relu:
            r = fresh("relu")
            g.node.append(helper.make_node("Relu", [x], [r], name=r))
            x = r
    g.node.append(helper.make_node("Softmax", [x], [PROBABILITIES], name=PROBABILITIES, axis=-1))
    g.output.append(helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["N", len(classes)]))

    with open(head_path, "rb") as f:
        head_sha = hashlib.sha256(f.read()).hexdigest()
    props = dict(base_props)
    props.update({
        "xfer.classes": json.dumps(classes, ensure_ascii=False),
        "xfer.size": meta["xfer.size"],
        "xfer.model_sha256": meta["xfer.model_sha256"],
        "xfer.head_sha256": head_sha,
        "xfer.head_inner": str(layers[0][0].shape[1]) if len(layers) == 2 else "0",
        "xfer.probabilities": PROBABILITIES,
    })
    for key in ("xfer.resize", "xfer.decode"):
        if key in meta:
            props[key] = meta[key]
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    model.doc_string = (model.doc_string + "\n" if model.doc_string else "") + \
        f"xfer classifier: base + dense head ({len(classes)} classes) + softmax"
    model.graph.name = "xfer_classifier"
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"joined model does not pass the ONNX checker: {e}") from None
    return model


def build(args):
    return join(args.base, args.head)


def add_parser(subparsers):
    p = subparsers.add_parser("classifier", help="join a base and a trained head (+ softmax) into one ONNX")
    p.add_argument("--base", required=True, help="the base ONNX the head's features came from")
    p.add_argument("--head", required=True, help="head safetensors written by xfer train")
    p.add_argument("--out", required=True)
    p.set_defaults(build=build)
