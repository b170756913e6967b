#!/usr/bin/env bash
# BENCHMARKS.md section 6, for a machine with an NVIDIA GPU: images/s of
# `xfer extract --device cuda` at 150 and 299, batch 32 and 256, with xfer's
# own split of the time (ONNX Runtime busy vs decoding/hashing/writing), and
# ONNX Runtime alone on the same batches already decoded when the Python venv
# has onnxruntime-gpu. When the CUDA provider cannot load, the rows record
# xfer's message saying why (xfer registers CUDA strictly, never falling back
# to the CPU under --device cuda).
#
# From the repository root on the GPU machine:
#   make ORT=gpu .ort/gpu-1.32.0/libonnxruntime.so   # ONNX Runtime's CUDA build
#   cargo build --release --bin xfer
#   scripts/bench/gpu.sh                              # env: DATA RUNS PY XFER
# Results join target/bench/results.json and BENCHMARKS.md is re-rendered
# (the other sections keep their figures). Extra arguments go to run.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/clothing-dataset-small}
XFER=${XFER:-target/release/xfer}
RUNS=${RUNS:-3}
PY=${PY:-.venv/bin/python}
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/.ort/gpu-1.32.0/libonnxruntime.so}
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-$PWD/.cache}

missing=()
command -v hyperfine >/dev/null || missing+=("hyperfine (apt-get install -y hyperfine)")
[ -x /usr/bin/time ] || missing+=("GNU time (apt-get install -y time)")
[ -x "$XFER" ] || missing+=("$XFER (cargo build --release --bin xfer)")
[ -f "$ORT_DYLIB_PATH" ] || missing+=("$ORT_DYLIB_PATH (make ORT=gpu .ort/gpu-1.32.0/libonnxruntime.so)")
[ -x "$PY" ] || missing+=("$PY (make .venv/.done)")
[ -d "$DATA" ] || missing+=("DATA=$DATA")
if [ ${#missing[@]} -gt 0 ]; then
    printf 'gpu.sh: missing %s\n' "${missing[@]}" >&2
    exit 1
fi
if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L
else
    echo "gpu.sh: nvidia-smi not found; the xfer rows will say whether CUDA loads" >&2
fi
exec "$PY" scripts/bench/run.py --parts gpu --data "$DATA" --xfer "$XFER" --python "$PY" \
    --runs "$RUNS" "$@"
