#!/usr/bin/env bash
# make check-gpu-libs: the CUDA path provisioned and proved up to the NVIDIA
# driver, on a machine without a GPU (opt-in: the wheels are over 1 GB).
#
# 1. Pins: pip resolves every line of scripts/ort-pins.txt (a dry run, nothing
#    installed): the CPU wheel, and the GPU wheel with its `cuda` and `cudnn`
#    extras under the pins as constraints, every nvidia-* package it pulls in
#    being one the file pins.
# 2. Libraries (after `make ort ORT=gpu`, which the Makefile runs first): the
#    CUDA provider and every CUDA/cuDNN library in .ort/gpu-<version> resolve
#    all their dependencies among those folders and the system's, except the
#    NVIDIA driver's libcuda.so.1 (ldd).
# 3. xfer itself, with no LD_LIBRARY_PATH, on the tiny test model: without a
#    driver, `extract --device cuda` stops (status 2) with one line naming the
#    missing driver, and `--device auto` runs on CPU saying the same; with a
#    driver, `--device cuda` runs on CUDA.
# Env: PYTHON (python3), XFER (target/release/xfer), VPY (.venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
XFER=${XFER:-target/release/xfer}
VPY=${VPY:-.venv/bin/python}
pins=scripts/ort-pins.txt
version=$(sed -n 's/^onnxruntime-gpu==//p' "$pins")
dir=.ort/gpu-$version
say() { echo "check-gpu-libs: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- 1. pins ------------------------------------------------------------------
dry() { "$PYTHON" -m pip install --dry-run --quiet --ignore-installed --only-binary=:all: \
    --target "$tmp/site" -c "$pins" "$@"; }
dry onnxruntime --report "$tmp/cpu.json" || fail "pip cannot fetch the CPU pin"
dry "onnxruntime-gpu[cuda,cudnn]" --report "$tmp/gpu.json" ||
    fail "pip cannot fetch onnxruntime-gpu[cuda,cudnn] under $pins"
"$PYTHON" - "$pins" "$tmp/cpu.json" "$tmp/gpu.json" <<'EOF' || fail "pins"
import json, sys
pins = {l.split("==")[0]: l.split("==")[1] for l in open(sys.argv[1]).read().split()
        if "==" in l and not l.startswith("#")}
got = {}
for report in sys.argv[2:]:
    for item in json.load(open(report))["install"]:
        got[item["metadata"]["name"].lower()] = item["metadata"]["version"]
for name in ("onnxruntime", "onnxruntime-gpu"):
    if got.get(name) != pins[name]:
        sys.exit(f"{name}: pip resolves {got.get(name)}, the pin is {pins[name]}")
nvidia = {n: v for n, v in got.items() if n.startswith("nvidia-")}
unpinned = sorted(set(nvidia) - set(pins))
if unpinned:
    sys.exit(f"onnxruntime-gpu[cuda,cudnn] pulls in {unpinned}, which {sys.argv[1]} does not pin")
unused = sorted(n for n in pins if n.startswith("nvidia-") and n not in nvidia)
if unused:
    sys.exit(f"{unused} pinned but not required by onnxruntime-gpu[cuda,cudnn]")
print(f"check-gpu-libs: pins fetchable: onnxruntime {pins['onnxruntime']}, onnxruntime-gpu "
      f"{pins['onnxruntime-gpu']} + {len(nvidia)} CUDA wheels", file=sys.stderr)
EOF

# --- 2. libraries -------------------------------------------------------------
[ -f "$dir/libonnxruntime.so" ] || fail "$dir/libonnxruntime.so missing: make ort ORT=gpu"
provider=$dir/libonnxruntime_providers_cuda.so
[ -f "$provider" ] || fail "$provider missing"
libs=("$provider" "$dir"/nvidia/*/lib/*.so*)
[ ${#libs[@]} -gt 10 ] || fail "only ${#libs[@]} libraries under $dir/nvidia"
path=$dir
for d in "$dir"/nvidia/*/lib; do path=$path:$d; done
driver_wanted=()
for f in "${libs[@]}"; do
    out=$(LD_LIBRARY_PATH=$path ldd "$f" 2>&1) || fail "ldd $f: $out"
    missing=$(awk '/not found/ {print $1}' <<<"$out" | sort -u)
    others=$(grep -vx 'libcuda.so.1' <<<"$missing" || true)
    [ -z "$others" ] || fail "$f needs $(echo $others), found nowhere"
    [ -z "$missing" ] || driver_wanted+=("${f##*/}")
done
driver=no
if /sbin/ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then driver=yes; fi
say "${#libs[@]} libraries in $dir resolve; libcuda.so.1 (the driver) wanted by: ${driver_wanted[*]:-none}; driver installed: $driver"

# --- 3. xfer, no LD_LIBRARY_PATH ---------------------------------------------
[ -x "$XFER" ] || fail "$XFER missing: make setup"
"$VPY" scripts/export_model.py tiny --dim 8 --seed 0 --out "$tmp/tiny.onnx" >/dev/null
"$VPY" - "$tmp/data" <<'EOF'
import pathlib, sys
from PIL import Image
for c, colour in (("a", (200, 30, 30)), ("b", (30, 30, 200))):
    d = pathlib.Path(sys.argv[1]) / "train" / c
    d.mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (20 + i, 16), colour).save(d / f"{i}.png")
EOF
xfer() {
    env -u LD_LIBRARY_PATH ORT_DYLIB_PATH="$PWD/$dir/libonnxruntime.so" XDG_CACHE_HOME="$tmp/cache" \
        "$XFER" extract --data "$tmp/data" --model "$tmp/tiny.onnx" --out "$tmp/out-$1" --size 32 --device "$1"
}
if [ "$driver" = yes ]; then
    xfer cuda 2>"$tmp/cuda.err" || fail "--device cuda with a driver: $(cat "$tmp/cuda.err")"
    grep -q 'provider CUDA' "$tmp/cuda.err" || fail "--device cuda ran, but not on CUDA: $(cat "$tmp/cuda.err")"
    say "a driver is installed: --device cuda ran on CUDA"
else
    rc=0
    xfer cuda 2>"$tmp/cuda.err" || rc=$?
    [ "$rc" = 2 ] || fail "--device cuda without a driver: status $rc, expected 2: $(cat "$tmp/cuda.err")"
    [ "$(wc -l <"$tmp/cuda.err")" = 1 ] || fail "--device cuda: not one line: $(cat "$tmp/cuda.err")"
    grep -q 'the NVIDIA driver (libcuda.so.1) is missing' "$tmp/cuda.err" ||
        fail "--device cuda does not name the missing driver: $(cat "$tmp/cuda.err")"
    say "--device cuda: $(cat "$tmp/cuda.err")"
    xfer auto 2>"$tmp/auto.err" || fail "--device auto: $(cat "$tmp/auto.err")"
    grep -q 'running on CPU.*the NVIDIA driver (libcuda.so.1) is missing' "$tmp/auto.err" ||
        fail "--device auto does not say why it runs on CPU: $(cat "$tmp/auto.err")"
    say "--device auto: ran on CPU, saying: $(grep 'running on CPU' "$tmp/auto.err")"
fi
say "ok"
