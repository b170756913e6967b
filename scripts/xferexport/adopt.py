"""Adopt any single-image ONNX model as an xfer base, without re-exporting it.

  export_model.py adopt --onnx IN.onnx --preprocess tf|torch|lite|raw [--size S]
                  [--input NAME] [--output NAME] [--name NAME] --out OUT.onnx

Why: `xfer extract` reads everything it needs from the model's `xfer.*` metadata
(metadata.py) and feeds one float32 NCHW batch `[N, 3, S, S]`, reading back one vector
`[N, D]` per image. Models from timm, torchvision, Hugging Face optimum or Keras (via
tf2onnx) carry no such metadata, and many differ in small ways: TF exports take NHWC
input, backbones cut before their classifier end in a feature map, and some exports fix
the batch at 1. This module makes those few changes and nothing else:

  - NHWC input `[N, H, W, 3]`: a new NCHW input (`input`, or `<name>_nchw` if that name
    is taken) feeds a Transpose into the original input tensor, so the metadata still
    says `xfer.layout=NCHW`, the one layout xfer feeds;
  - a feature map output (`[N, C, H, W]`, or `[N, H, W, C]` for an NHWC model) gets a
    global average pool (GlobalAveragePool + Flatten, after a Transpose for NHWC maps);
    a pooled output `[N, D]` is used as it is;
  - a fixed batch dimension becomes a symbolic `N` on the input and the output. ONNX
    shape inference (with data propagation) then shows whether the graph itself fixes
    the batch (a Reshape to a constant `[1, ...]`, say): if the output still comes out
    with the old fixed batch, or (where Python onnxruntime is installed) a batch of 2
    fails to run or gives another batch, the adoption is refused. Stale intermediate
    shape annotations (`value_info`) are dropped then, as they name the old batch;
  - the graph's outputs become just the vector; the `xfer.*` metadata is written
    (backbone: --name or the file's stem; weights: the file's name and sha256;
    pretrained: true; default size: --size or the input's fixed side), other metadata
    kept.

Every other node, initializer and attribute is kept as it is. Refused, with what to pass:
several inputs that need feeding (inputs that have an initializer are optional and stay
so), a non-float32 input (integer images included), no input axis of 3 channels,
outputs that are neither 2-D nor 4-D, several outputs without --output, and no fixed
spatial size without --size. The preprocessing is the model's own (torchvision and timm:
usually `torch`; Keras applications: `tf` or `torch` or `raw` by family; TF Lite: `lite`)
and cannot be read from the graph, so --preprocess is required.
"""
import copy
import os

import onnx
from onnx import TensorProto, helper

from . import ExportError, metadata
from .graph import load as load_onnx

BATCH = "N"


class AdoptError(ExportError):
    """The model cannot be fed by xfer as it is; the message says what to pass."""


def _dims(value_info):
    """Shape as a list of ints (fixed) and strings (symbolic, '?' unknown), or None."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]


def _fixed(d):
    return isinstance(d, int) and d > 0


def _show(dims):
    return "[" + ", ".join(str(d) for d in dims) + "]" if dims is not None else "[no shape]"


def _dtype(value_info):
    return TensorProto.DataType.Name(value_info.type.tensor_type.elem_type).lower()


def _describe(values):
    return ", ".join(f"{v.name} {_dtype(v)} {_show(_dims(v))}" for v in values)


def _unique(name, taken):
    out, i = name, 1
    while out in taken:
        i += 1
        out = f"{name}_{i}"
    taken.add(out)
    return out


def _tensor_names(graph):
    names = {i.name for i in graph.input} | {o.name for o in graph.output}
    names |= {i.name for i in graph.initializer} | {i.values.name for i in graph.sparse_initializer}
    for n in graph.node:
        names.update(n.input)
        names.update(n.output)
        names.add(n.name)
    return names


def _pick_input(graph, wanted, src):
    defaults = {i.name for i in graph.initializer}
    defaults |= {i.values.name for i in graph.sparse_initializer}
    needed = [i for i in graph.input if i.name not in defaults]
    if wanted is not None:
        chosen = next((i for i in graph.input if i.name == wanted), None)
        if chosen is None:
            raise AdoptError(f"{src}: no input named {wanted!r} (inputs: {_describe(graph.input)})")
    elif needed:
        chosen = needed[0]
    else:
        raise AdoptError(f"{src}: the graph has no input to feed")
    others = [i for i in needed if i.name != chosen.name]
    if others:
        raise AdoptError(f"{src}: several inputs need feeding ({_describe(needed)}); xfer feeds "
                         "one image tensor: export the model with a single image input (other "
                         "inputs folded into constants)")
    return chosen


def _input_layout(inp, src):
    """('NCHW'|'NHWC', batch dim, (h, w)) of a float32 rank-4 image input."""
    et = inp.type.tensor_type.elem_type
    dims = _dims(inp)
    if et != TensorProto.FLOAT:
        kind = "an integer" if et in (TensorProto.UINT8, TensorProto.INT8, TensorProto.UINT16,
                                      TensorProto.INT16, TensorProto.INT32, TensorProto.INT64,
                                      TensorProto.UINT32, TensorProto.UINT64) else "a"
        raise AdoptError(f"{src}: input {inp.name} is {kind} {_dtype(inp)} tensor {_show(dims)}; "
                         "xfer feeds float32 pixels: export the model with a float32 image input "
                         "(for an integer one, drop its Cast or export before it)")
    if dims is None or len(dims) != 4:
        raise AdoptError(f"{src}: input {inp.name} has shape {_show(dims)}; xfer feeds images "
                         "[N, 3, H, W] or [N, H, W, 3]: pass --input naming the image input")
    if dims[1] == 3:
        return "NCHW", dims[0], (dims[2], dims[3])
    if dims[3] == 3:
        return "NHWC", dims[0], (dims[1], dims[2])
    raise AdoptError(f"{src}: input {inp.name} {_show(dims)} has no axis of 3 colour channels "
                     "(axis 1 for NCHW, axis 3 for NHWC); xfer feeds RGB images: export the "
                     "model with a fixed channel dimension of 3")


def _default_size(inp, hw, size, src):
    fixed = [d for d in hw if _fixed(d)]
    if len(fixed) == 2 and fixed[0] != fixed[1]:
        raise AdoptError(f"{src}: input {inp.name} fixes {fixed[0]}x{fixed[1]} images; xfer feeds "
                         "square ones: export the model with a square or dynamic input size")
    if size is not None:
        if size < 1:
            raise AdoptError(f"--size {size} is not a positive side")
        if fixed and fixed[0] != size:
            raise AdoptError(f"{src}: input {inp.name} takes {fixed[0]}x{fixed[0]} images only, "
                             f"not --size {size}: pass --size {fixed[0]} or leave it out")
        return size
    if fixed:
        return fixed[0]
    raise AdoptError(f"{src}: input {inp.name} {_show(_dims(inp))} fixes no spatial size: pass "
                     "--size S, the side the model was trained at (e.g. 224)")


def _pick_output(graph, wanted, src):
    if wanted is not None:
        out = next((o for o in graph.output if o.name == wanted), None)
        if out is None:
            raise AdoptError(f"{src}: no output named {wanted!r} (outputs: "
                             f"{_describe(graph.output)})")
        return out
    if len(graph.output) != 1:
        raise AdoptError(f"{src}: several outputs ({_describe(graph.output)}): pass --output NAME, "
                         "the pooled vectors [N, D] or the last feature map")
    return graph.output[0]


def _inferred_dims(model, name):
    """`name`'s shape after ONNX shape inference with data propagation (None if it fails
    or says nothing)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 -- custom ops and the like: inference is best effort
        return None
    g = inferred.graph
    for v in list(g.output) + list(g.value_info):
        if v.name == name:
            return _dims(v)
    return None


def _merge(declared, inferred):
    """The declared shape, its unknown entries filled from inference."""
    if declared is None or (inferred is not None and len(inferred) != len(declared)):
        return inferred if declared is None else declared
    if inferred is None:
        return declared
    return [a if _fixed(a) else (b if _fixed(b) or a == "?" else a)
            for a, b in zip(declared, inferred)]


def _set_dim(dim, value):
    if isinstance(value, int) and value > 0:
        dim.dim_value = value
    else:
        dim.dim_param = value


def _value_info(name, dims):
    vi = helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
    shape = vi.type.tensor_type.shape
    for d in dims:
        _set_dim(shape.dim.add(), d)
    return vi


def _ort_batch_probe(model, inp_name, out_name, side, src, old):
    """Run a batch of 2 (NCHW, after adoption) where Python onnxruntime is installed;
    None when it is not."""
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        return None
    shape = (2, 3, side, side)
    try:
        so = ort.SessionOptions()
        so.log_severity_level = 4  # the failure is reported below, once
        sess = ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        ro = ort.RunOptions()
        ro.log_severity_level = 4
        y = sess.run([out_name], {inp_name: np.zeros(shape, np.float32)}, ro)[0]
    except Exception as e:  # noqa: BLE001 -- ORT raises its own types
        raise AdoptError(f"{src}: the graph fixes the batch at {old}: with a dynamic batch a "
                         f"batch of 2 fails ({str(e).splitlines()[0][:200]}); re-export the "
                         "model with a dynamic batch axis") from None
    if y.shape[:1] != (2,):
        raise AdoptError(f"{src}: the graph fixes the batch at {old}: a batch of 2 gives output "
                         f"{list(y.shape)}; re-export the model with a dynamic batch axis")
    return True


def adopt(model, *, preprocess, size=None, input_name=None, output_name=None, name=None,
          source="model.onnx", weights_sha256=""):
    """The adopted copy of `model` (an onnx.ModelProto); `source` names the file in
    errors and the metadata."""
    if preprocess not in metadata.PREPROCESS_MODES:
        raise AdoptError(f"--preprocess {preprocess!r} is not one of "
                         f"{', '.join(metadata.PREPROCESS_MODES)}")
    src = source
    model = copy.deepcopy(model)
    g = model.graph
    inp = _pick_input(g, input_name, src)
    layout, batch, hw = _input_layout(inp, src)
    side = _default_size(inp, hw, size, src)
    out = _pick_output(g, output_name, src)
    if out.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise AdoptError(f"{src}: output {out.name} is {_dtype(out)}; xfer reads float32 vectors: "
                         "pass --output naming a float32 output")
    taken = _tensor_names(g)
    changes = []

    # The batch: symbolic on the input, the output's declared shape set aside (the
    # output is rebuilt), stale annotations dropped; then see whether the graph agrees.
    batch_dim = batch if isinstance(batch, str) and batch != "?" else BATCH
    fixed_batch = batch if _fixed(batch) else None
    if batch != batch_dim:
        _set_dim(inp.type.tensor_type.shape.dim[0], batch_dim)
    if fixed_batch is not None:
        del g.value_info[:]
        changes.append(f"batch {fixed_batch} -> {batch_dim}")
    declared = _dims(out)
    out.type.tensor_type.ClearField("shape")
    inferred = _inferred_dims(model, out.name)
    if inferred and _fixed(inferred[0]):
        was = f"the graph fixes the batch at {fixed_batch}" if fixed_batch is not None else \
            "the graph fixes the batch"
        raise AdoptError(f"{src}: {was}: with a dynamic input, output {out.name} is still "
                         f"{_show(inferred)} (a Reshape to a constant shape, say); re-export the "
                         "model with a dynamic batch axis (torch.onnx.export dynamic_axes, or "
                         "Keras's None batch through tf2onnx)")
    batch_free = bool(inferred) and inferred[0] != "?"
    out_dims = _merge(declared, inferred)
    if out_dims is None:
        raise AdoptError(f"{src}: the shape of output {out.name} is unknown (neither declared nor "
                         "inferable): pass --output naming a tensor of known rank")
    if len(out_dims) not in (2, 4):
        raise AdoptError(f"{src}: output {out.name} is {_show(out_dims)} ({len(out_dims)}-D); "
                         "xfer needs pooled vectors [N, D] or a feature map [N, C, H, W] or "
                         "[N, H, W, C]: pass --output naming one of those")

    nodes = []
    # NHWC input: a new NCHW input transposed into the original tensor.
    in_name = inp.name
    if layout == "NHWC":
        in_name = _unique("input" if "input" not in taken else f"{inp.name}_nchw", taken)
        new_in = _value_info(in_name, [batch_dim, 3, hw[0], hw[1]])
        idx = list(g.input).index(inp)
        g.input.remove(inp)
        g.input.insert(idx, new_in)
        nodes.append(helper.make_node("Transpose", [in_name], [inp.name], perm=[0, 2, 3, 1],
                                      name=_unique("xfer_nchw_to_nhwc", taken)))
        changes.append("NHWC input behind an NCHW one")

    tail = []
    if len(out_dims) == 2:
        dim, vec = out_dims[1], out.name
        if not _fixed(dim):
            raise AdoptError(f"{src}: output {out.name} {_show(out_dims)} has no fixed vector "
                             "size: export the model with a fixed feature dimension")
    else:
        c1, c3 = out_dims[1], out_dims[3]
        if _fixed(c1) and not _fixed(c3):
            map_layout = "NCHW"
        elif _fixed(c3) and not _fixed(c1):
            map_layout = "NHWC"
        else:
            map_layout = layout
        dim = c1 if map_layout == "NCHW" else c3
        if not _fixed(dim):
            raise AdoptError(f"{src}: feature map {out.name} {_show(out_dims)} has no fixed "
                             "channel count: export the model with a fixed channel dimension")
        x = out.name
        if map_layout == "NHWC":
            t = _unique(f"{out.name}_nchw", taken)
            tail.append(helper.make_node("Transpose", [x], [t], perm=[0, 3, 1, 2],
                                         name=_unique("xfer_nhwc_to_nchw", taken)))
            x = t
        pooled = _unique(f"{out.name}_gap", taken)
        vec = _unique("features", taken)
        tail.append(helper.make_node("GlobalAveragePool", [x], [pooled],
                                     name=_unique("xfer_gap", taken)))
        tail.append(helper.make_node("Flatten", [pooled], [vec], axis=1,
                                     name=_unique("xfer_flatten", taken)))
        changes.append(f"{map_layout} feature map {_show(out_dims)} average-pooled")

    if nodes or tail:
        kept = list(g.node)
        del g.node[:]
        g.node.extend(nodes + kept + tail)
    del g.output[:]
    g.output.append(_value_info(vec, [batch_dim, int(dim)]))
    if not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", 13))

    base = os.path.basename(source)
    stem = base[:-5] if base.lower().endswith(".onnx") else base
    extra = {"xfer.input": in_name, "xfer.output": vec, "xfer.adopted_from": base,
             "xfer.adopt": "; ".join(changes) or "metadata only"}
    props = metadata.props(backbone=name or stem, preprocess=preprocess, default_size=side,
                           dim=int(dim), pretrained=True, weights=base,
                           weights_sha256=weights_sha256, extra=extra)
    kept_props = {p.key: p.value for p in model.metadata_props if not p.key.startswith("xfer.")}
    del model.metadata_props[:]
    helper.set_model_props(model, {**kept_props, **props})

    if fixed_batch is not None and not batch_free:
        # Inference could not show the batch free: run a batch of 2 where ORT is at hand.
        _ort_batch_probe(model, in_name, vec, side, src, fixed_batch)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as e:
        raise AdoptError(f"{src}: the adopted model does not pass the ONNX checker: "
                         f"{str(e).splitlines()[0]}") from None
    return model


def build(args):
    path = args.onnx
    model = load_onnx(path, AdoptError)
    return adopt(model, preprocess=args.preprocess, size=args.size, input_name=args.input,
                 output_name=args.output, name=args.name, source=path,
                 weights_sha256=metadata.sha256_file(path))


def add_parser(subparsers):
    p = subparsers.add_parser("adopt", help="any single-image ONNX model as an xfer base",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", required=True, help="the ONNX model to adopt")
    p.add_argument("--preprocess", required=True, choices=metadata.PREPROCESS_MODES,
                   help="the model's own input scaling: tf (x/127.5-1), torch (ImageNet "
                        "mean/std), lite ((x-127)/128), raw (0..255)")
    p.add_argument("--size", type=int, help="default input side (needed when the input fixes none)")
    p.add_argument("--input", help="the image input (default: the one input without a default value)")
    p.add_argument("--output", help="the output to use, when there are several")
    p.add_argument("--name", help="backbone name in the metadata (default: the file's stem)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.set_defaults(build=build)
    return p
