"""The ONNX metadata_props that `xfer extract` and `xfer predict` read.

Every exported base carries these; `xfer` refuses a model without them.

Keys (all strings):
  xfer.backbone        xception | efficientnet-lite0|1|2 | tiny | an adopted model's name
  xfer.layout          NCHW (the input is [N, 3, H, W], RGB, float32)
  xfer.input           name of the image input (`input` for our exports)
  xfer.output          name of the pooled-vector output ([N, D]; `features` for ours)
  xfer.preprocess      tf (x/127.5 - 1, Keras 'tf' mode) | torch (x/255, then
                       ImageNet mean/std) | lite ((x - 127) / 128) | raw (0..255)
  xfer.default_size    default square input side, e.g. 150
  xfer.dim             D
  xfer.pretrained      true | false
  xfer.weights         where the weights came from (imagenet, random, a file name)
  xfer.weights_sha256  sha256 (hex) of the weight source file, or the seed for random

Some exports add their own: xfer.padding (EfficientNet-Lite), xfer.classifier (ImageNet
logits, checks only), xfer.adopted_from and xfer.adopt (adopt.py: the source file and
what it changed), xfer.quant (quantize.py: the int8 copy's settings, JSON), xfer.parts
(combine.py: each joined part's backbone, file, sha256, dimension and columns, JSON).
"""
import hashlib

PREPROCESS_MODES = ("tf", "torch", "lite", "raw")
INPUT = "input"
OUTPUT = "features"


def props(*, backbone, preprocess, default_size, dim, pretrained, weights, weights_sha256,
          extra=None):
    if preprocess not in PREPROCESS_MODES:
        raise ValueError(f"unknown preprocessing mode {preprocess!r}")
    out = {
        "xfer.backbone": backbone,
        "xfer.layout": "NCHW",
        "xfer.input": INPUT,
        "xfer.output": OUTPUT,
        "xfer.preprocess": preprocess,
        "xfer.default_size": str(int(default_size)),
        "xfer.dim": str(int(dim)),
        "xfer.pretrained": "true" if pretrained else "false",
        "xfer.weights": str(weights),
        "xfer.weights_sha256": weights_sha256,
    }
    out.update(extra or {})
    return out


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes):
    return hashlib.sha256(data).hexdigest()
