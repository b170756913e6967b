"""Shared pieces of the benchmark references (scripts/bench/*.py).

Everything here mirrors what Keras's `flow_from_directory` + `load_img` do, so
every reference feeds the model the same pixels in the same order as
`xfer extract`:

- splits are the `train`, `validation`, `test` folders that exist, else DATA
  itself is one split;
- classes are the sorted subfolder names; files are Keras's extensions
  (png, jpg, jpeg, bmp, ppm, tif, tiff, any case), sorted by name within a
  class, classes in order;
- an image is `PIL.Image.open`, `convert('RGB')`, `resize((S, S), NEAREST)`;
- preprocessing is the model's `xfer.preprocess` mode, layout NCHW float32.

Only numpy and PIL are needed here (both venvs have them).
"""
import json
import os
import shutil
import statistics

import numpy as np

# The repository root: the bench's commands run there.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPLITS = ("train", "validation", "test")
IMAGE_EXTS = ("png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff")


def split_dirs(data):
    """[(split name, folder)] as xfer reads DATA: the known split folders that
    exist, else DATA itself as the single split ''."""
    found = [(s, os.path.join(data, s)) for s in SPLITS if os.path.isdir(os.path.join(data, s))]
    return found or [("", data)]


def classes_of(folder):
    return sorted(e.name for e in os.scandir(folder) if e.is_dir(follow_symlinks=False))


def list_images(data):
    """Every image of DATA in flow_from_directory order:
    [(split, path relative to DATA, class, label)]."""
    out = []
    for split, folder in split_dirs(data):
        classes = classes_of(folder)
        for label, cls in enumerate(classes):
            cdir = os.path.join(folder, cls)
            names = sorted(
                e.name for e in os.scandir(cdir)
                if e.name.lower().rsplit(".", 1)[-1] in IMAGE_EXTS and "." in e.name
                and not e.is_dir())
            for name in names:
                rel = os.path.join(split, cls, name) if split else os.path.join(cls, name)
                out.append((split, rel, cls, label))
    return out


def load_image(path, size):
    """uint8 [S, S, 3] as keras.utils.load_img(path, target_size=(S, S))."""
    from PIL import Image

    with open(path, "rb") as f:
        img = Image.open(f)
        img.load()
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.NEAREST)
    return np.asarray(img, dtype=np.uint8)


def preprocess(batch, mode):
    """uint8 [N, H, W, 3] to the model's float32 NCHW input."""
    x = batch.astype(np.float32)
    if mode == "tf":
        x = x / 127.5 - 1.0
    elif mode == "torch":
        x = (x / 255.0 - np.array([0.485, 0.456, 0.406], np.float32)) / np.array(
            [0.229, 0.224, 0.225], np.float32)
    elif mode == "lite":
        x = (x - 127.0) / 128.0
    elif mode != "raw":
        raise ValueError(f"unknown preprocessing mode {mode!r}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def ort_session(model, threads, provider="cpu", spin=True):
    """An onnxruntime session with THREADS intra-op threads (one inter-op
    thread, sequential execution, ORT's other defaults), and the model's
    xfer.* metadata. SPIN False turns off the spinning of idle intra-op
    threads (xfer's setting). PROVIDER cuda takes the CUDA provider only, and fails
    (ValueError, saying why) when this onnxruntime lacks it."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if provider == "cuda":
        if hasattr(ort, "preload_dlls"):
            # the CUDA 13 wheels in site-packages/nvidia, as xfer loads them
            ort.preload_dlls()
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError("this onnxruntime has no CUDAExecutionProvider (available: "
                             + ", ".join(ort.get_available_providers()) + ")")
        providers = ["CUDAExecutionProvider"]
    sess = ort.InferenceSession(model, so, providers=providers)
    if provider == "cuda" and "CUDAExecutionProvider" not in sess.get_providers():
        raise ValueError("onnxruntime could not start the CUDA provider")
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    return sess, meta


def ort_pin(package):
    """The version scripts/ort-pins.txt pins for PACKAGE (onnxruntime,
    onnxruntime-gpu, nvidia-...): the one place every ONNX Runtime version is."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ort-pins.txt")
    with open(path) as f:
        for line in f:
            name, sep, version = line.strip().partition("==")
            if sep and name == package:
                return version
    raise KeyError(f"{path} pins no {package}")


def link_or_copy(src, dst):
    """A hard link when DATA and the temp folder share a file system, else a
    copy: either way a real file, never a symlink that a walker which does
    not follow links (Keras's, xfer's) might skip."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def sample_tree(data, dest, n):
    """A DATA tree under DEST holding N images spread evenly over DATA's
    flow_from_directory order (every class and split keeps its place);
    returns DEST. N <= 0 or >= the total links everything."""
    items = list_images(data)
    if 0 < n < len(items):
        step = len(items) / n
        items = [items[int(i * step)] for i in range(n)]
    if os.path.exists(dest):
        shutil.rmtree(dest)
    for split, folder in split_dirs(data):
        for cls in classes_of(folder):
            os.makedirs(os.path.join(dest, split, cls), exist_ok=True)
    for _, rel, _, _ in items:
        link_or_copy(os.path.join(data, rel), os.path.join(dest, rel))
    return dest


def repeated_tree(data, dest, times):
    """DATA repeated TIMES over under DEST: copy k of `name.jpg` is
    `name-rK.jpg` (hard links where possible, see link_or_copy). Returns DEST."""
    if os.path.exists(dest):
        shutil.rmtree(dest)
    for split, folder in split_dirs(data):
        for cls in classes_of(folder):
            os.makedirs(os.path.join(dest, split, cls), exist_ok=True)
    for _, rel, _, _ in list_images(data):
        stem, ext = os.path.splitext(rel)
        for k in range(times):
            link_or_copy(os.path.join(data, rel), os.path.join(dest, f"{stem}-r{k}{ext}"))
    return dest


def append_json(path, record):
    """Appends one JSON line (each run of a timed command adds one)."""
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_json_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def row_median(row, field="runs"):
    """Median of a bench row's FIELD over its runs; None for a row not
    measured or failed."""
    if not row or row.get("error"):
        return None
    return median(row.get(field) or [])


def fmt_mib(kb):
    return "n/a" if kb is None else f"{kb / 1024:.0f} MiB"
