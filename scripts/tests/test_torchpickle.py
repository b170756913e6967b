"""xferexport.torchpickle: the restricted reader for legacy torch checkpoints.

There is no torch here, so the checkpoints are written by hand: `dumps` below emits
pickle protocol-2 opcodes for a small expression language (globals, calls,
persistent ids), and `legacy_checkpoint` lays out the legacy format exactly as
torch/serialization.py `_legacy_save` does (magic, protocol, sys info, object,
storage keys, then each storage as an int64 count and raw little-endian bytes).
test_lite0.py reuses both helpers.
"""
import collections
import io
import os
import pickle
import struct
import sys
import tempfile
import unittest
import zipfile

import numpy as np

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, SCRIPTS)

from xferexport import ExportError, torchpickle  # noqa: E402


# -------------------------------------------------------------- a tiny pickle writer
class Global:
    """`module.name`, pickled as a GLOBAL opcode (nothing is imported)."""

    def __init__(self, module, name):
        self.module, self.name = module, name


class Call:
    """`fn(*args)`, pickled as REDUCE."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, tuple(args)


class PersistentId:
    """A persistent id (BINPERSID): torch's way to refer to a storage."""

    def __init__(self, pid):
        self.pid = pid


class ODict:
    """collections.OrderedDict() then SETITEMS, as torch pickles a state_dict."""

    def __init__(self, items=()):
        self.items = list(items)


def _emit(obj, out):
    if obj is None:
        out += b"N"
    elif obj is True or obj is False:
        out += b"\x88" if obj else b"\x89"
    elif isinstance(obj, int):
        if -2**31 <= obj < 2**31:
            out += b"J" + struct.pack("<i", obj)
        else:
            n = (obj.bit_length() + 8) // 8
            out += b"\x8a" + bytes([n]) + obj.to_bytes(n, "little", signed=True)
    elif isinstance(obj, str):
        data = obj.encode()
        out += b"X" + struct.pack("<I", len(data)) + data
    elif isinstance(obj, tuple):
        out += b"("
        for v in obj:
            _emit(v, out)
        out += b"t"
    elif isinstance(obj, list):
        out += b"]("
        for v in obj:
            _emit(v, out)
        out += b"e"
    elif isinstance(obj, Global):
        out += f"c{obj.module}\n{obj.name}\n".encode()
    elif isinstance(obj, Call):
        _emit(obj.fn, out)
        _emit(obj.args, out)
        out += b"R"
    elif isinstance(obj, PersistentId):
        _emit(obj.pid, out)
        out += b"Q"
    elif isinstance(obj, ODict):
        _emit(Call(Global("collections", "OrderedDict"), ()), out)
        out += b"("
        for k, v in obj.items:
            _emit(k, out)
            _emit(v, out)
        out += b"u"
    else:
        raise TypeError(type(obj))


def dumps(obj):
    out = bytearray(b"\x80\x02")
    _emit(obj, out)
    return bytes(out + b".")


# ------------------------------------------------------ legacy checkpoints by hand
STYPES = {"<f4": "FloatStorage", "<f2": "HalfStorage", "<i8": "LongStorage"}


class Checkpoint:
    """Collects storages and strided tensors, then writes the legacy format."""

    def __init__(self):
        self.storages = collections.OrderedDict()  # key -> 1-D array
        self.entries = []

    def storage(self, key, flat):
        self.storages[key] = np.ascontiguousarray(flat).ravel()
        return key

    def tensor_expr(self, key, offset, size, stride, parameter=False):
        flat = self.storages[key]
        pid = PersistentId(("storage", Global("torch", STYPES[flat.dtype.str]), key, "cpu",
                            int(flat.size), None))
        t = Call(Global("torch._utils", "_rebuild_tensor_v2"),
                 (pid, offset, tuple(size), tuple(stride), False, ODict()))
        if parameter:
            t = Call(Global("torch._utils", "_rebuild_parameter"), (t, True, ODict()))
        return t

    def add(self, name, key, offset, size, stride, parameter=False):
        self.entries.append((name, self.tensor_expr(key, offset, size, stride, parameter)))

    def add_array(self, name, arr, perm=None, offset=0, tail=0, parameter=False):
        """`arr` stored as a view: storage = `offset` junk values, then
        arr.transpose(perm) in C order, then `tail` junk values."""
        arr = np.asarray(arr)
        perm = tuple(range(arr.ndim)) if perm is None else tuple(perm)
        stored = np.ascontiguousarray(arr.transpose(perm))
        junk = np.full(offset, 7, arr.dtype), np.full(tail, -7, arr.dtype)
        key = self.storage(f"{len(self.storages) + 100}", np.concatenate(
            [junk[0], stored.ravel(), junk[1]]))
        cstride = [int(np.prod(stored.shape[i + 1:], dtype=np.int64)) for i in range(arr.ndim)]
        stride = [0] * arr.ndim
        for i, axis in enumerate(perm):
            stride[axis] = cstride[i]
        self.add(name, key, offset, arr.shape, stride, parameter)

    def to_bytes(self, obj=None, keys=None):
        out = bytearray()
        out += pickle.dumps(torchpickle.MAGIC_NUMBER, protocol=2)
        out += pickle.dumps(torchpickle.PROTOCOL_VERSION, protocol=2)
        out += pickle.dumps({"protocol_version": 1001, "little_endian": True,
                             "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
        out += dumps(ODict(self.entries) if obj is None else obj)
        keys = sorted(self.storages) if keys is None else keys
        out += pickle.dumps(keys, protocol=2)
        for k in keys:
            flat = self.storages[k]
            out += struct.pack("<q", flat.size) + flat.astype(flat.dtype.newbyteorder("<")).tobytes()
        return bytes(out)


def legacy_checkpoint(state, layouts=None):
    """Bytes of a legacy checkpoint holding `state` (name -> array); layouts maps a
    name to the permutation its storage is kept in (e.g. HWIO for conv kernels)."""
    ck = Checkpoint()
    for name, arr in state.items():
        ck.add_array(name, arr, perm=(layouts or {}).get(name))
    return ck.to_bytes()


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------------------- tests
class RefusesForeignGlobals(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.marker = os.path.join(self.tmp.name, "pwned")

    def tearDown(self):
        self.tmp.cleanup()

    def assertRefused(self, data, name):
        with self.assertRaises(torchpickle.CheckpointError) as cm:
            torchpickle.load(data, source="evil.pth")
        msg = str(cm.exception)
        self.assertIn("refusing", msg)
        self.assertIn(name, msg)
        self.assertIn("evil.pth", msg)
        self.assertFalse(os.path.exists(self.marker), "the pickle ran its command")
        self.assertIsInstance(cm.exception, ExportError)

    def test_os_system_as_the_state_dict(self):
        ck = Checkpoint()
        obj = Call(Global("os", "system"), (f"touch {self.marker}",))
        self.assertRefused(ck.to_bytes(obj=obj, keys=[]), "os.system")

    def test_os_system_inside_a_state_dict(self):
        ck = Checkpoint()
        ck.add_array("w", np.ones((2, 2), np.float32))
        ck.entries.append(("x", Call(Global("os", "system"), (f"touch {self.marker}",))))
        self.assertRefused(ck.to_bytes(), "os.system")

    def test_pickle_made_by_python_naming_os_system(self):
        # what pickle.dumps writes for os.system on this platform (posix.system here)
        evil = pickle.dumps(Evil(self.marker), protocol=2)
        data = pickle.dumps(torchpickle.MAGIC_NUMBER, protocol=2) + evil
        self.assertRefused(data, "system")
        with self.assertRaises(torchpickle.CheckpointError):
            torchpickle.RestrictedUnpickler(io.BytesIO(evil), "evil.pth").load()
        self.assertFalse(os.path.exists(self.marker))

    def test_other_globals(self):
        for module, name in [("builtins", "eval"), ("torch", "load"), ("torch._utils", "os"),
                             ("collections", "namedtuple"), ("subprocess", "Popen")]:
            with self.subTest(f"{module}.{name}"):
                obj = Call(Global(module, name), ("1",))
                self.assertRefused(Checkpoint().to_bytes(obj=obj, keys=[]), f"{module}.{name}")

    def test_stack_global_protocol_4(self):
        evil = pickle.dumps(Evil(self.marker), protocol=4)
        with self.assertRaises(torchpickle.CheckpointError):
            torchpickle.RestrictedUnpickler(io.BytesIO(evil), "evil.pth").load()
        self.assertFalse(os.path.exists(self.marker))

    def test_persistent_ids_other_than_storages(self):
        ck = Checkpoint()
        obj = ODict([("m", PersistentId(("module", Global("torch", "FloatStorage"), "x")))])
        with self.assertRaisesRegex(torchpickle.CheckpointError, "persistent id 'module'"):
            torchpickle.load(ck.to_bytes(obj=obj, keys=[]))


class ReadsLegacyCheckpoints(unittest.TestCase):
    def test_strided_views_offsets_and_dtypes(self):
        rng = np.random.default_rng(0)
        kernel = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)  # [O, I, kh, kw]
        fc = rng.normal(size=(5, 6)).astype(np.float32)
        ck = Checkpoint()
        ck.add_array("conv.weight", kernel, perm=(2, 3, 1, 0), parameter=True)  # HWIO storage
        ck.add_array("fc.weight", fc, perm=(1, 0), offset=3, tail=2)
        # two tensors over one storage, the second at an offset, plus a strided slice
        shared = ck.storage("7", np.arange(20, dtype=np.float32))
        ck.add("a", shared, 0, (4,), (1,))
        ck.add("b", shared, 4, (2, 3), (3, 1))
        ck.add("every_other", shared, 10, (5,), (2,))
        ck.add("broadcast", shared, 5, (2, 3), (0, 1))
        ck.add_array("half", np.array([1.5, -2.0], np.float16))
        ck.storage("9", np.array([12345], np.int64))
        ck.add("bn.num_batches_tracked", "9", 0, (), ())
        ck.add("empty", "7", 0, (0, 3), (3, 1))
        got = torchpickle.load(ck.to_bytes(keys=["9", "7"] + [k for k in ck.storages
                                                              if k not in ("7", "9")]))

        self.assertIsInstance(got, collections.OrderedDict)
        self.assertEqual(list(got)[:3], ["conv.weight", "fc.weight", "a"])
        np.testing.assert_array_equal(got["conv.weight"], kernel)
        np.testing.assert_array_equal(got["fc.weight"], fc)
        np.testing.assert_array_equal(got["a"], [0, 1, 2, 3])
        np.testing.assert_array_equal(got["b"], [[4, 5, 6], [7, 8, 9]])
        np.testing.assert_array_equal(got["every_other"], [10, 12, 14, 16, 18])
        np.testing.assert_array_equal(got["broadcast"], [[5, 6, 7], [5, 6, 7]])
        np.testing.assert_array_equal(got["half"], np.array([1.5, -2.0], np.float16))
        self.assertEqual(got["half"].dtype, np.float16)
        self.assertEqual(got["bn.num_batches_tracked"].shape, ())
        self.assertEqual(int(got["bn.num_batches_tracked"]), 12345)
        self.assertEqual(got["empty"].shape, (0, 3))
        for k, v in got.items():
            self.assertTrue(v.flags["C_CONTIGUOUS"] and v.flags["OWNDATA"], k)
        # the point of honouring strides: the raw bytes reshaped are not the kernel
        raw = ck.storages[next(iter(ck.storages))].reshape(kernel.shape)
        self.assertFalse(np.array_equal(raw, kernel))

    def test_file_path(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "w.pth")
            with open(path, "wb") as f:
                f.write(legacy_checkpoint({"x": np.eye(3, dtype=np.float32)}))
            np.testing.assert_array_equal(torchpickle.load_file(path)["x"], np.eye(3))

    def test_view_outside_its_storage_is_refused(self):
        ck = Checkpoint()
        key = ck.storage("1", np.zeros(6, np.float32))
        ck.add("w", key, 2, (2, 3), (3, 1))  # would read elements 2..7 of 6
        with self.assertRaisesRegex(torchpickle.CheckpointError, "reaches element 7"):
            torchpickle.load(ck.to_bytes())

    def test_malformed_files(self):
        good = legacy_checkpoint({"x": np.ones(4, np.float32)})
        cases = {
            "truncated": good[:-3],
            "not a legacy": pickle.dumps(42, protocol=2) + good[20:],
            "zip-format": b"PK\x03\x04" + good,
            "not a readable": b"\x80\x02garbage",
        }
        for why, data in cases.items():
            with self.subTest(why), self.assertRaisesRegex(torchpickle.CheckpointError, why):
                torchpickle.load(data, source="bad.pth")

    def test_storage_keys_must_match(self):
        ck = Checkpoint()
        ck.add_array("x", np.ones(2, np.float32))
        with self.assertRaisesRegex(torchpickle.CheckpointError, "listed but not used"):
            torchpickle.load(ck.to_bytes(keys=[]))

    def test_zip_of_a_wheel_is_not_a_checkpoint(self):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("a.txt", "x")
        with self.assertRaisesRegex(torchpickle.CheckpointError, "zip-format"):
            torchpickle.load(buf.getvalue())


if __name__ == "__main__":
    unittest.main()
