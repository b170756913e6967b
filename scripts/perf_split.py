#!/usr/bin/env python3
"""Where `xfer extract`'s CPU goes: a `perf record` profile summed into the
steps of an image's way (docs/decode.md).

    perf record -g -o full.data target/release/xfer extract ... --decode full
    scripts/perf_split.py full.data [draft.data ...]

Reads `perf report --no-children --sort dso,symbol` (self time per symbol,
all threads) and puts each symbol in one step by its library and name:
libjpeg-turbo's functions (linked into xfer through the mozjpeg crate) by
what they do, xfer's own Rust functions by module, ONNX Runtime as one
block (its library has no symbols), the kernel (reading files, page faults,
thread switches) and libc (memcpy, memset, malloc: batch buffers) apart.
Prints a Markdown table: the share of each step and its CPU seconds.
"""
import argparse
import re
import subprocess
import sys

# (step, library test, symbol pattern), first match wins.
STEPS = [
    ("reading, paging, scheduling (kernel)", lambda d: d.startswith("[kernel"), r""),
    ("sha256", lambda d: d == "xfer", r"sha2::|sha256"),
    ("JPEG entropy decoding (Huffman)", lambda d: d == "xfer",
     r"^decode_mcu|huff|fill_bit_buffer|derived_tbl|process_restart"),
    ("JPEG inverse DCT", lambda d: d == "xfer", r"idct"),
    ("JPEG chroma upsampling", lambda d: d == "xfer", r"upsample"),
    ("JPEG colour conversion", lambda d: d == "xfer", r"ycc_rgb|color_convert|gray_rgb|rgb_gray|cmyk"),
    ("JPEG other (libjpeg control, buffers)", lambda d: d == "xfer", r"^(?!.*::)"),
    ("resize (PIL's filters)", lambda d: d == "xfer", r"xfer_extract::resize::"),
    ("preprocessing (to CHW floats)", lambda d: d == "xfer", r"pixels::to_chw|Preprocess"),
    ("ONNX Runtime", lambda d: d.startswith("libonnxruntime"), r""),
    ("libc (memcpy, memset, malloc)", lambda d: d.startswith("libc"), r""),
    ("xfer other (pipeline, Parquet, PNG...)", lambda d: d == "xfer", r""),
    ("other", lambda d: True, r""),
]


def step_of(dso, symbol):
    for name, lib, pattern in STEPS:
        if lib(dso) and re.search(pattern, symbol):
            return name
    return "other"


def profile(path):
    """({step: share of samples}, CPU seconds of the whole profile)."""
    cmd = ["perf", "report", "-i", path, "--no-children", "--sort", "dso,symbol", "--stdio",
           "-g", "none", "-t", "\t"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    shares, seconds = {}, None
    for line in out.splitlines():
        m = re.match(r"# Event count \(approx\.\): (\d+)", line)
        if m:
            seconds = int(m.group(1)) / 1e9  # cpu-clock counts nanoseconds
        if line.startswith("#") or "\t" not in line:
            continue
        pct, dso, sym = (f.strip() for f in line.split("\t")[:3])
        sym = re.sub(r"^\[[.k]\] ", "", sym)
        step = step_of(dso, sym)
        shares[step] = shares.get(step, 0.0) + float(pct.rstrip("%")) / 100
    return shares, seconds


def table(profiles):
    """A Markdown table: one row per step, share and seconds per profile."""
    heads = " | ".join(f"{name} share | {name} CPU s" for name, _ in profiles)
    rows = [f"| step | {heads} |", "| --- |" + " ---: | ---: |" * len(profiles)]
    for step, _, _ in STEPS:
        cells = []
        for _, (shares, seconds) in profiles:
            s = shares.get(step, 0.0)
            cells.append(f"{100 * s:.1f} % | {s * seconds:.2f}" if seconds else f"{100 * s:.1f} % | ?")
        if any(shares.get(step) for _, (shares, _) in profiles):
            rows.append(f"| {step} | " + " | ".join(cells) + " |")
    totals = [f"100 % | {seconds:.2f}" for _, (_, seconds) in profiles]
    rows.append("| total | " + " | ".join(totals) + " |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="+", help="perf.data files (their stem names the column)")
    args = p.parse_args(argv)
    names = [re.sub(r"\.data$", "", path.rsplit("/", 1)[-1]) for path in args.data]
    print(table([(n, profile(path)) for n, path in zip(names, args.data)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
