"""A small helper to build ONNX graphs from numpy weights.

Backbones call the layer methods in order; each returns the name of its output
tensor. Inputs are NCHW with dynamic batch and spatial size. Weights are
float32 initializers. `finish` checks the model with the ONNX checker and
attaches xfer's metadata.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import metadata

OPSET = 17


class Graph:
    def __init__(self, input_name=metadata.INPUT):
        self.nodes = []
        self.inits = []
        self.input = input_name
        self._n = 0

    def _name(self, hint):
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, hint, array, dtype=np.float32):
        name = self._name(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def op(self, op_type, inputs, hint=None, **attrs):
        out = self._name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    # layers -----------------------------------------------------------------
    def conv(self, x, w_oihw, bias=None, stride=1, pad="SAME_UPPER", group=1, dilation=1, hint="conv"):
        """Conv with weights in ONNX layout [out, in/group, kh, kw].

        pad: 'SAME_UPPER' (TF 'same': the odd extra row/column at the end),
        'VALID', or explicit [top, left, bottom, right].
        """
        w_oihw = np.asarray(w_oihw, dtype=np.float32)
        inputs = [x, self.const(hint + "_w", w_oihw)]
        if bias is not None:
            inputs.append(self.const(hint + "_b", bias))
        attrs = dict(kernel_shape=list(w_oihw.shape[2:]), strides=[stride, stride],
                     group=group, dilations=[dilation, dilation])
        if isinstance(pad, str):
            attrs["auto_pad"] = pad
        else:
            attrs["pads"] = list(pad)
        return self.op("Conv", inputs, hint, **attrs)

    def batchnorm(self, x, gamma, beta, mean, var, eps, hint="bn"):
        return self.op("BatchNormalization",
                       [x, self.const(hint + "_g", gamma), self.const(hint + "_b", beta),
                        self.const(hint + "_m", mean), self.const(hint + "_v", var)],
                       hint, epsilon=float(eps))

    def relu(self, x):
        return self.op("Relu", [x])

    def relu6(self, x):
        lo = self.const("zero", np.array(0.0, dtype=np.float32))
        hi = self.const("six", np.array(6.0, dtype=np.float32))
        return self.op("Clip", [x, lo, hi], "relu6")

    def add(self, a, b):
        return self.op("Add", [a, b])

    def maxpool(self, x, k, stride, pad="SAME_UPPER"):
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride])
        if isinstance(pad, str):
            attrs["auto_pad"] = pad
        else:
            attrs["pads"] = list(pad)
        return self.op("MaxPool", [x], "maxpool", **attrs)

    def global_avg_pool(self, x):
        """[N, C, H, W] -> [N, C] (Keras GlobalAveragePooling2D)."""
        p = self.op("GlobalAveragePool", [x], "gap")
        return self.op("Flatten", [p], "flatten", axis=1)

    def gemm(self, x, kernel_io, bias, hint="dense"):
        """Keras Dense: x @ kernel + bias, kernel [inputs, outputs]."""
        return self.op("Gemm", [x, self.const(hint + "_k", kernel_io), self.const(hint + "_b", bias)], hint)

    def softmax(self, x):
        return self.op("Softmax", [x], "softmax", axis=-1)

    def identity(self, x, name):
        self.nodes.append(helper.make_node("Identity", [x], [name], name=name))
        return name

    # model ------------------------------------------------------------------
    def finish(self, output, dim, props, output_name=metadata.OUTPUT, doc=""):
        out = self.identity(output, output_name)
        g = helper.make_graph(
            self.nodes, "xfer_base",
            [helper.make_tensor_value_info(self.input, TensorProto.FLOAT, ["N", 3, "H", "W"])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", int(dim)])],
            initializer=self.inits,
        )
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="xfer scripts/export_model.py", doc_string=doc)
        model.ir_version = 8  # readable by ONNX Runtime 1.14 and later
        helper.set_model_props(model, props)
        onnx.checker.check_model(model)
        return model


def load(path, error):
    """The ONNX model at `path`; an unreadable file or one that is not ONNX raises
    `error` (the caller's ExportError subclass) naming the file and the reason."""
    try:
        return onnx.load(path)
    except OSError as e:
        raise error(f"{path}: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 -- protobuf's DecodeError and friends
        raise error(f"{path}: not an ONNX model ({e})") from None


def save_atomic(model, path):
    """Write to PATH.tmp then rename, so a failed export leaves nothing behind."""
    import os

    tmp = str(path) + ".tmp"
    try:
        onnx.save(model, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
