"""Take ONNX Runtime's shared libraries out of downloaded PyPI wheels.

The Makefile fetches the wheels pinned in scripts/ort-pins.txt with pip, the
one channel that works behind a firewall that lets package registries through;
xfer loads the libraries at run time (`ort` with `load-dynamic`), so nothing
is downloaded at build time. Usage: unpack_ort.py WHEEL_DIR OUT_DIR.

- The onnxruntime (or onnxruntime-gpu) wheel: its `capi/libonnxruntime*.so*`
  go to OUT_DIR. The TensorRT provider is left out: xfer never asks for it,
  and it needs TensorRT, which no wheel here provides.
- With onnxruntime-gpu, the nvidia-* wheels: their `nvidia/<part>/lib/*.so*`
  go to OUT_DIR/nvidia/<part>/lib/, the layout pip gives them in
  site-packages, from where crates/extract/src/cuda.rs loads them by absolute
  path. Before anything is written the set is checked against the GPU wheel's
  METADATA: every requirement of its `cuda` and `cudnn` extras, and every
  requirement of those wheels in turn, must be met by a wheel in WHEEL_DIR,
  so a pin bumped out of range is refused here, not found on a GPU machine.
"""
import email.parser
import pathlib
import shutil
import sys
import zipfile

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # the Makefile's Python may have only pip, which vendors it
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

GPU_EXTRAS = ("cuda", "cudnn")


class Wheel:
    def __init__(self, path: pathlib.Path):
        self.path = path
        self.zip = zipfile.ZipFile(path)
        meta = [n for n in self.zip.namelist() if n.endswith(".dist-info/METADATA")]
        if len(meta) != 1:
            sys.exit(f"{path}: expected one .dist-info/METADATA, found {len(meta)}")
        msg = email.parser.Parser().parsestr(self.zip.read(meta[0]).decode())
        self.name = canonicalize_name(msg["Name"])
        self.version = msg["Version"]
        self.requires = [Requirement(r) for r in msg.get_all("Requires-Dist") or []]

    def needs(self, extra: str = ""):
        """The requirements of `extra`, or with "" the unconditional ones."""
        out = []
        for r in self.requires:
            in_extra = r.marker is not None and "extra" in str(r.marker)
            if extra and in_extra and r.marker.evaluate({"extra": extra}):
                out.append(r)
            elif not extra and not in_extra and (r.marker is None or r.marker.evaluate()):
                out.append(r)
        return out


def check_closure(ort: Wheel, others: list) -> None:
    """Every requirement of ort's GPU extras, and theirs, met by `others`."""
    have = {w.name: w for w in others}
    todo = [(ort.name + f"[{e}]", r) for e in GPU_EXTRAS for r in ort.needs(e)]
    if not todo:
        sys.exit(f"{ort.path}: no requirements in extras {GPU_EXTRAS}: not the CUDA wheel expected")
    seen = set()
    while todo:
        by, req = todo.pop()
        name = canonicalize_name(req.name)
        w = have.get(name)
        if w is None:
            sys.exit(f"{by} requires {req}, and no {name} wheel was fetched: "
                     "add it to scripts/ort-pins.txt")
        if not req.specifier.contains(w.version, prereleases=True):
            sys.exit(f"{by} requires {req}, and scripts/ort-pins.txt pins {name}=={w.version}")
        if name not in seen:
            seen.add(name)
            todo.extend((f"{name}=={w.version}", r) for r in w.needs())
    unused = sorted(set(have) - seen)
    if unused:
        sys.exit(f"{', '.join(unused)}: fetched but not required by {ort.name}{list(GPU_EXTRAS)}: "
                 "drop from scripts/ort-pins.txt")


def copy_out(zf: zipfile.ZipFile, member: str, dest: pathlib.Path) -> None:
    """One member to `dest`, through a temporary name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with zf.open(member) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    tmp.rename(dest)


def is_lib(base: str) -> bool:
    return base.endswith(".so") or ".so." in base


def main(wheel_dir: str, out_dir: str) -> None:
    wheels = [Wheel(p) for p in sorted(pathlib.Path(wheel_dir).glob("*.whl"))]
    orts = [w for w in wheels if w.name in ("onnxruntime", "onnxruntime-gpu")]
    if len(orts) != 1:
        sys.exit(f"{wheel_dir}: expected one onnxruntime wheel, found {len(orts)}")
    ort = orts[0]
    others = [w for w in wheels if w is not ort]
    if ort.name == "onnxruntime-gpu":
        check_closure(ort, others)
    elif others:
        sys.exit(f"{wheel_dir}: {', '.join(w.name for w in others)} besides the CPU wheel")

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kept = []
    for name in ort.zip.namelist():
        base = name.rsplit("/", 1)[-1]
        if "/capi/" in name and base.startswith("libonnxruntime") and is_lib(base) \
                and "tensorrt" not in base:
            copy_out(ort.zip, name, out / base)
            kept.append(base)
    main_lib = [b for b in kept if b.startswith("libonnxruntime.so")]
    if not main_lib:
        sys.exit(f"{ort.path}: no capi/libonnxruntime.so* inside")
    link = out / "libonnxruntime.so"
    if not link.exists():
        # The wheel ships libonnxruntime.so.<version>; give it the plain name.
        real = sorted(main_lib, key=len)[-1]
        link.symlink_to(real)
    cuda = []
    for w in others:
        for name in w.zip.namelist():
            parts = name.split("/")
            if len(parts) == 4 and parts[0] == "nvidia" and parts[2] == "lib" and is_lib(parts[3]):
                copy_out(w.zip, name, out.joinpath(*parts))
                cuda.append(f"{parts[1]}/{parts[3]}")
    print(f"ONNX Runtime {ort.version}: {', '.join(sorted(kept))} in {out}")
    if cuda:
        print(f"CUDA runtime ({len(others)} wheels): {len(cuda)} libraries in {out / 'nvidia'}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
