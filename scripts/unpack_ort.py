"""Take ONNX Runtime's shared library out of a downloaded PyPI wheel.

The Makefile fetches the pinned `onnxruntime` (or `onnxruntime-gpu`) wheel with
pip, the one channel that works behind a firewall that lets package registries
through; xfer loads the library at run time (`ort` with `load-dynamic`), so
nothing is downloaded at build time. Usage: unpack_ort.py WHEEL_DIR OUT_DIR.
"""
import pathlib
import sys
import zipfile


def main(wheel_dir: str, out_dir: str) -> None:
    wheels = sorted(pathlib.Path(wheel_dir).glob("onnxruntime*.whl"))
    if len(wheels) != 1:
        sys.exit(f"{wheel_dir}: expected one onnxruntime wheel, found {len(wheels)}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kept = []
    with zipfile.ZipFile(wheels[0]) as zf:
        for name in zf.namelist():
            base = name.rsplit("/", 1)[-1]
            if "/capi/" in name and base.startswith("libonnxruntime") and ".so" in base:
                tmp = out / (base + ".tmp")
                tmp.write_bytes(zf.read(name))
                tmp.rename(out / base)
                kept.append(base)
    main_lib = [b for b in kept if b.startswith("libonnxruntime.so")]
    if not main_lib:
        sys.exit(f"{wheels[0]}: no capi/libonnxruntime.so* inside")
    link = out / "libonnxruntime.so"
    if not link.exists():
        # The wheel ships libonnxruntime.so.<version>; give it the plain name.
        real = sorted(main_lib, key=len)[-1]
        link.symlink_to(real)
    print(f"ONNX Runtime: {', '.join(sorted(kept))} in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
