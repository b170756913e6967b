"""Exporters that write frozen bases (and joined classifiers) as ONNX for xfer.

Each backbone module builds its graph with `graph.Graph` and returns an ONNX
model carrying the metadata xfer reads (`metadata.py`), so users never pass
preprocessing, size or dimension by hand. Only numpy, h5py and onnx are used.
"""


class ExportError(Exception):
    """A user-facing failure: export_model.py prints it as one line and exits 1,
    leaving no output file."""
