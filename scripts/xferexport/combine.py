"""Several xfer bases as one: each image goes through every base, the vectors are joined.

  export_model.py combine --onnx A.onnx --onnx B.onnx [...] [--name NAME] [--size S]
                  --out OUT.onnx
  export_model.py efficientnet-lite0+efficientnet-lite2 --out OUT.onnx

Why: a linear probe (or a small head) on the joined vectors of a few different
backbones is stronger than on any one of them: on the clothing data, EfficientNet-Lite0,
Lite1 and Lite2 at 299 joined (3840 numbers) reach 91.4% where the best single one
reaches 89.7% (docs/accuracy-lite-combined.md). Making the joint one ONNX model, rather
than teaching train, predict and serve to read several feature folders, keeps every
other part of xfer as it is: the combined file is a base like any other, with one input,
one `[N, D1 + D2 + ...]` output and its `xfer.*` metadata, so extract's cache, shards,
draft decoding, int8 quantization, predict, serve and the joined classifier all work on
it unchanged.

How: every part's graph is kept as it is, its names prefixed (`p0_`, `p1_`, ...) so
they cannot collide; one shared `input` feeds each part's own input tensor, and a
Concat on axis 1 joins the parts' outputs, in the order given, into `features`. Parts
with the same preprocessing share it (the combined model declares it, and xfer does it
as before); parts that differ get `raw` pixels and each its own scaling inside the graph,
in the same float32 operations xfer's pixels.rs does, so their vectors stay those of
the part alone. Different ONNX opsets are brought to the newest of them. The default
side is --size, else the side every part fixes, else the largest part's default (no
part sees less than its own). `xfer.parts` (JSON) records each part's backbone, file,
sha256, dimension, preprocessing, default side and weights, and where its numbers sit
in the joined vector.

Refused, saying which file and why: fewer than two parts, a part without xfer metadata
(adopt it first), a part whose input is not NCHW float32 or that needs another input
fed, parts that fix different input sides.
"""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper, version_converter

from . import ExportError, metadata
from .graph import load as load_onnx

# pixels.rs's float32 operations for each mode, as ONNX ops on raw 0..255 pixels.
TORCH_MEAN = [0.485, 0.456, 0.406]
TORCH_STD = [0.229, 0.224, 0.225]


class CombineError(ExportError):
    """The parts cannot be joined as given; the message names the file and the reason."""


def _props(model):
    return {p.key: p.value for p in model.metadata_props}


def _onnx_opset(model):
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return None


def _input_side(model, name, src):
    inp = next((i for i in model.graph.input if i.name == name), None)
    if inp is None:
        raise CombineError(f"{src}: xfer.input names {name!r}, which is not an input of the graph")
    t = inp.type.tensor_type
    if t.elem_type != TensorProto.FLOAT:
        raise CombineError(f"{src}: input {name} is {TensorProto.DataType.Name(t.elem_type).lower()}, "
                           "not float32: adopt the model first (export_model.py adopt)")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    if len(dims) != 4 or dims[1] != 3:
        raise CombineError(f"{src}: input {name} is not [N, 3, H, W] (NCHW): adopt the model first "
                           "(export_model.py adopt turns NHWC inputs into NCHW)")
    h, w = dims[2], dims[3]
    return (h, w) if h and w else None


def _fed_inputs(model):
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def _scaling(mode, x, out, tag):
    """Nodes and initializers turning raw pixels `x` into `mode`'s values in `out`."""
    nodes, inits = [], []

    def const(name, value, shape=()):
        inits.append(numpy_helper.from_array(np.array(value, dtype=np.float32).reshape(shape), f"{tag}_{name}"))
        return f"{tag}_{name}"

    def op(kind, a, b, result):
        nodes.append(helper.make_node(kind, [a, b], [result], name=result))
        return result

    if mode == "tf":
        op("Sub", op("Div", x, const("div", 127.5), f"{tag}_scaled"), const("one", 1.0), out)
    elif mode == "torch":
        y = op("Div", x, const("div", 255.0), f"{tag}_unit")
        y = op("Sub", y, const("mean", TORCH_MEAN, (1, 3, 1, 1)), f"{tag}_centred")
        op("Div", y, const("std", TORCH_STD, (1, 3, 1, 1)), out)
    elif mode == "lite":
        op("Div", op("Sub", x, const("sub", 127.0), f"{tag}_centred"), const("div", 128.0), out)
    elif mode == "raw":
        nodes.append(helper.make_node("Identity", [x], [out], name=out))
    else:
        raise CombineError(f"unknown preprocessing mode {mode!r}")
    return nodes, inits


class Part:
    """One base to join: its model, metadata and where it came from."""

    def __init__(self, model, source, file_sha256=""):
        self.model = model
        self.source = source
        self.file_sha256 = file_sha256
        self.props = _props(model)
        if "xfer.backbone" not in self.props:
            raise CombineError(f"{source}: no xfer metadata (xfer.backbone, xfer.preprocess, ...): "
                               "adopt the model first (export_model.py adopt)")
        for key in ("xfer.input", "xfer.output", "xfer.dim", "xfer.preprocess"):
            if key not in self.props:
                raise CombineError(f"{source}: no {key} in its xfer metadata")
        if self.props.get("xfer.layout", "NCHW") != "NCHW":
            raise CombineError(f"{source}: xfer.layout is {self.props['xfer.layout']}, not NCHW")
        self.dim = int(self.props["xfer.dim"])
        self.side = _input_side(model, self.props["xfer.input"], source)
        fed = [n for n in _fed_inputs(model) if n != self.props["xfer.input"]]
        if fed:
            raise CombineError(f"{source}: inputs {', '.join(fed)} need feeding besides the image; "
                               "xfer feeds one image input")
        if not any(o.name == self.props["xfer.output"] for o in model.graph.output):
            raise CombineError(f"{source}: xfer.output {self.props['xfer.output']!r} is not an "
                               "output of the graph")


def combine(parts, *, name=None, size=None):
    """The combined model (an onnx.ModelProto) of `parts` (a list of Part), in that order."""
    if len(parts) < 2:
        raise CombineError("combine needs at least two models (--onnx A.onnx --onnx B.onnx)")
    sides = {p.side for p in parts if p.side}
    if len(sides) > 1:
        raise CombineError("the models fix different input sides: " + ", ".join(
            f"{p.source} {p.side[0]}x{p.side[1]}" for p in parts if p.side)
            + "; xfer feeds one side to all of them")
    fixed = sides.pop() if sides else None
    if fixed and fixed[0] != fixed[1]:
        raise CombineError(f"{parts[0].source}: the input fixes {fixed[0]}x{fixed[1]}, not a square side")
    if size is None:
        size = fixed[0] if fixed else max(int(p.props.get("xfer.default_size", 0)) for p in parts)
    if not size:
        raise CombineError("no part says its default side: pass --size")
    modes = [p.props["xfer.preprocess"] for p in parts]
    shared_mode = modes[0] if len(set(modes)) == 1 else "raw"

    opset = max(_onnx_opset(p.model) or 0 for p in parts)
    nodes, inits, inputs, value_info, functions, outs, layout = [], [], [], [], [], [], []
    other_opsets = {}
    start = 0
    for i, p in enumerate(parts):
        m = p.model
        if (_onnx_opset(m) or opset) < opset:
            try:
                m = version_converter.convert_version(m, opset)
            except Exception as e:  # noqa: BLE001 -- the converter raises several kinds
                raise CombineError(f"{p.source}: cannot bring opset {_onnx_opset(m)} to {opset}: "
                                   f"{str(e).splitlines()[0]}") from None
        m = compose.add_prefix(m, f"p{i}_")  # a renamed copy
        g = m.graph
        own_input = f"p{i}_{p.props['xfer.input']}"
        if shared_mode == "raw" and modes[i] != "raw":
            n, c = _scaling(modes[i], metadata.INPUT, own_input, f"p{i}_xfer_{modes[i]}")
        else:
            n, c = _scaling("raw", metadata.INPUT, own_input, f"p{i}_xfer_input")
        nodes += n
        inits += c
        nodes += list(g.node)
        inits += list(g.initializer)
        inputs += [x for x in g.input if x.name != own_input]  # optional inputs with defaults
        value_info += list(g.value_info)
        functions += list(m.functions)
        for o in m.opset_import:
            if o.domain not in ("", "ai.onnx"):
                other_opsets[o.domain] = max(other_opsets.get(o.domain, 0), o.version)
        outs.append(f"p{i}_{p.props['xfer.output']}")
        layout.append({
            "backbone": p.props["xfer.backbone"], "file": os.path.basename(p.source),
            "sha256": p.file_sha256, "dim": p.dim, "columns": [start, start + p.dim],
            "preprocess": modes[i], "default_size": p.props.get("xfer.default_size"),
            "weights": p.props.get("xfer.weights"), "weights_sha256": p.props.get("xfer.weights_sha256"),
            "pretrained": p.props.get("xfer.pretrained"),
        })
        start += p.dim
    nodes.append(helper.make_node("Concat", outs, [metadata.OUTPUT], axis=1, name="xfer_concat"))
    h, w = (fixed if fixed else ("H", "W"))
    graph = helper.make_graph(
        nodes, "xfer_combined",
        [helper.make_tensor_value_info(metadata.INPUT, TensorProto.FLOAT, ["N", 3, h, w])] + inputs,
        [helper.make_tensor_value_info(metadata.OUTPUT, TensorProto.FLOAT, ["N", start])],
        initializer=inits, value_info=value_info,
    )
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in sorted(other_opsets.items())]
    model = helper.make_model(graph, opset_imports=imports, functions=functions,
                              producer_name="xfer scripts/export_model.py combine")
    model.ir_version = max(p.model.ir_version for p in parts)
    backbones = [p.props["xfer.backbone"] for p in parts]
    props = metadata.props(
        backbone=name or "+".join(backbones), preprocess=shared_mode, default_size=size, dim=start,
        pretrained=all(p.props.get("xfer.pretrained") == "true" for p in parts),
        weights="+".join(p.props.get("xfer.weights", "?") for p in parts),
        weights_sha256="+".join(p.props.get("xfer.weights_sha256", "") for p in parts),
        extra={"xfer.parts": json.dumps(layout)},
    )
    helper.set_model_props(model, props)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as e:
        raise CombineError("the combined model does not pass the ONNX checker: "
                           f"{str(e).splitlines()[0]}") from None
    return model


def load_part(path):
    return Part(load_onnx(path, CombineError), path, metadata.sha256_file(path))


def build(args):
    return combine([load_part(p) for p in args.onnx], name=args.name, size=args.size)


def add_parser(subparsers):
    p = subparsers.add_parser("combine", help="several xfer bases as one, their vectors joined",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", action="append", required=True, metavar="M.onnx",
                   help="an xfer base (exported or adopted); give two or more, in the order "
                        "their vectors are joined")
    p.add_argument("--name", help="backbone name in the metadata (default: the parts' joined by +)")
    p.add_argument("--size", type=int, help="default input side (default: the parts' fixed or "
                                            "largest default side)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.set_defaults(build=build)
    return p
