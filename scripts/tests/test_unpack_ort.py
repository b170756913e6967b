"""scripts/unpack_ort.py on small wheels built here: which libraries are kept
and where (the layout crates/extract/src/cuda.rs loads from), and the check
that the CUDA wheels fetched meet onnxruntime-gpu's `cuda`/`cudnn` extras.
The real wheels (over a gigabyte) are `make check-gpu-libs`'s."""
import os
import sys
import tempfile
import unittest
import zipfile

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, SCRIPTS)

import unpack_ort  # noqa: E402

GPU_REQUIRES = [
    "flatbuffers", "numpy>=1.21.6",
    'sympy; extra == "symbolic"',
    'nvidia-cuda-runtime~=13.0; extra == "cuda"',
    'nvidia-cufft~=12.0; extra == "cuda"',
    'nvidia-cudnn-cu13~=9.0; extra == "cudnn"',
]


def wheel(folder, name, version, files, requires=()):
    """A wheel holding `files` (path -> bytes) and a METADATA."""
    path = os.path.join(folder, f"{name.replace('-', '_')}-{version}-py3-none-any.whl")
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", meta)
        for f, data in files.items():
            z.writestr(f, data)
    return path


def gpu_set(folder, cufft="12.5.0.14", skip=(), extra=()):
    wheel(folder, "onnxruntime-gpu", "1.31.1", {
        "onnxruntime/capi/libonnxruntime.so.1.31.1": b"ort",
        "onnxruntime/capi/libonnxruntime_providers_cuda.so": b"cuda",
        "onnxruntime/capi/libonnxruntime_providers_shared.so": b"shared",
        "onnxruntime/capi/libonnxruntime_providers_tensorrt.so": b"trt",
        "onnxruntime/capi/onnxruntime_pybind11_state.so": b"py",
        "onnxruntime/__init__.py": b"",
    }, GPU_REQUIRES)
    wheels = {
        "nvidia-cuda-runtime": ("13.5.37", {"nvidia/cu13/lib/libcudart.so.13": b"rt"}, ()),
        "nvidia-cufft": (cufft, {"nvidia/cu13/lib/libcufft.so.12": b"fft"}, ["nvidia-nvjitlink"]),
        "nvidia-nvjitlink": ("13.5.37", {"nvidia/cu13/lib/libnvJitLink.so.13": b"jit"}, ()),
        "nvidia-cudnn-cu13": ("9.28.1.4", {"nvidia/cudnn/lib/libcudnn.so.9": b"dnn",
                                           "nvidia/cudnn/include/cudnn.h": b"h"}, ()),
    }
    for name, (version, files, requires) in list(wheels.items()) + list(extra):
        if name not in skip:
            wheel(folder, name, version, files, requires)


class Unpack(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.wheels = os.path.join(self.tmp.name, "wheel")
        self.out = os.path.join(self.tmp.name, "out")
        os.mkdir(self.wheels)

    def tearDown(self):
        self.tmp.cleanup()

    def refused(self, *parts):
        with self.assertRaises(SystemExit) as e:
            unpack_ort.main(self.wheels, self.out)
        for p in parts:
            self.assertIn(p, str(e.exception))
        self.assertFalse(os.path.exists(self.out), "nothing written when refused")

    def test_cpu_wheel_gives_the_library_under_its_plain_name(self):
        wheel(self.wheels, "onnxruntime", "1.32.0", {"onnxruntime/capi/libonnxruntime.so.1.32.0": b"ort",
                                                     "onnxruntime/capi/libonnxruntime_providers_shared.so": b"s"})
        unpack_ort.main(self.wheels, self.out)
        self.assertEqual(sorted(os.listdir(self.out)),
                         ["libonnxruntime.so", "libonnxruntime.so.1.32.0", "libonnxruntime_providers_shared.so"])
        self.assertEqual(os.readlink(os.path.join(self.out, "libonnxruntime.so")), "libonnxruntime.so.1.32.0")

    def test_gpu_wheels_land_in_the_site_packages_layout(self):
        gpu_set(self.wheels)
        unpack_ort.main(self.wheels, self.out)
        found = sorted(os.path.relpath(os.path.join(d, f), self.out)
                       for d, _, fs in os.walk(self.out) for f in fs)
        self.assertEqual(found, [
            "libonnxruntime.so", "libonnxruntime.so.1.31.1",
            "libonnxruntime_providers_cuda.so", "libonnxruntime_providers_shared.so",
            "nvidia/cu13/lib/libcudart.so.13", "nvidia/cu13/lib/libcufft.so.12",
            "nvidia/cu13/lib/libnvJitLink.so.13", "nvidia/cudnn/lib/libcudnn.so.9",
        ])
        with open(os.path.join(self.out, "nvidia/cudnn/lib/libcudnn.so.9"), "rb") as f:
            self.assertEqual(f.read(), b"dnn")

    def test_a_missing_requirement_is_named(self):
        gpu_set(self.wheels, skip=("nvidia-cudnn-cu13",))
        self.refused("onnxruntime-gpu[cudnn] requires nvidia-cudnn-cu13~=9.0", "scripts/ort-pins.txt")

    def test_a_requirement_of_a_cuda_wheel_is_followed(self):
        gpu_set(self.wheels, skip=("nvidia-nvjitlink",))
        self.refused("nvidia-cufft==12.5.0.14 requires nvidia-nvjitlink")

    def test_a_pin_out_of_range_is_named(self):
        gpu_set(self.wheels, cufft="11.4.1.4")
        self.refused("requires nvidia-cufft~=12.0", "pins nvidia-cufft==11.4.1.4")

    def test_a_wheel_nothing_requires_is_refused(self):
        gpu_set(self.wheels, extra=[("nvidia-nccl-cu13", ("2.28.3", {"nvidia/nccl/lib/libnccl.so.2": b"n"}, ()))])
        self.refused("nvidia-nccl-cu13", "not required")


if __name__ == "__main__":
    unittest.main()
