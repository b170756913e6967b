#!/usr/bin/env bash
# BENCHMARKS.md section 6, for a machine with an NVIDIA GPU and its driver:
# images/s of `xfer extract --device cuda` at 150 and 299, batch 32, 64, 128
# and 256, decoding overlapped on all cores, with xfer's own split of the
# time (ONNX Runtime busy vs decoding/hashing/writing); ONNX Runtime alone
# on the same batches already decoded (Python onnxruntime-gpu); and every
# CUDA output compared with `xfer extract --device cpu` of the same data and
# size (tolerance 1e-4 relative). When the CUDA provider cannot load, the
# rows record xfer's one-line reason (xfer registers CUDA strictly, never
# falling back to the CPU under --device cuda).
#
# From the repository root on the GPU machine; the driver is the only thing
# it needs besides PyPI (the CUDA 13 runtime comes as wheels, pinned in
# scripts/ort-pins.txt, loaded by xfer from .ort/ with no LD_LIBRARY_PATH):
#   make setup ORT=gpu        # onnxruntime-gpu + CUDA wheels, .venv, target/release/xfer
#   scripts/bench/gpu.sh      # env: DATA RUNS XFER GPU_PY; extra arguments go to run.py
# It makes .venv-gpu (the dev venv's packages with onnxruntime-gpu[cuda,cudnn]
# for onnxruntime, same pins) for the "ORT alone" rows. Results join
# target/bench/results.json and BENCHMARKS.md is re-rendered (the other
# sections keep their figures).
set -euo pipefail
cd "$(dirname "$0")/../.."
pins=scripts/ort-pins.txt
version=$(sed -n 's/^onnxruntime-gpu==//p' "$pins")
DATA=${DATA:-data/clothing-dataset-small}
XFER=${XFER:-target/release/xfer}
RUNS=${RUNS:-3}
GPU_PY=${GPU_PY:-.venv-gpu/bin/python}
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/.ort/gpu-$version/libonnxruntime.so}
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-$PWD/.cache}

missing=()
command -v hyperfine >/dev/null || missing+=("hyperfine (apt-get install -y hyperfine)")
[ -x /usr/bin/time ] || missing+=("GNU time (apt-get install -y time)")
[ -x "$XFER" ] || missing+=("$XFER (make setup ORT=gpu)")
[ -f "$ORT_DYLIB_PATH" ] || missing+=("$ORT_DYLIB_PATH (make setup ORT=gpu)")
[ -d "$DATA" ] || missing+=("DATA=$DATA")
if [ ${#missing[@]} -gt 0 ]; then
    printf 'gpu.sh: missing %s\n' "${missing[@]}" >&2
    exit 1
fi
if [ ! -x "$GPU_PY" ]; then
    venv=$(dirname "$(dirname "$GPU_PY")")
    echo "gpu.sh: making $venv: scripts/requirements-dev.txt with onnxruntime-gpu[cuda,cudnn]==$version" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet -r scripts/requirements-dev.txt
    "$venv/bin/pip" uninstall --quiet -y onnxruntime
    "$venv/bin/pip" install --quiet -c "$pins" "onnxruntime-gpu[cuda,cudnn]"
fi
if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L
else
    echo "gpu.sh: nvidia-smi not found; the xfer rows will say whether CUDA loads" >&2
fi
exec "$GPU_PY" scripts/bench/run.py --parts gpu --data "$DATA" --xfer "$XFER" --python "$GPU_PY" \
    --runs "$RUNS" "$@"
