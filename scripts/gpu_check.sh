#!/usr/bin/env bash
# The CUDA checks, in one run on a GPU machine that has torch 2.11 but no
# cargo: installs the abi3 wheel built elsewhere (`maturin build --release`,
# copied to .whl/), then runs the CUDA tests and the GPU benchmark. Logs go
# to $OUT (or ./gpu-out).
#     bash scripts/gpu_check.sh [bench rounds]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -m pip install -q --no-index --no-deps --no-compile .whl/epsvec-*.whl || exit 1
python3 -c "import epsvec; print('GPUs seen by epsvec:', epsvec.cuda_device_count())"
# The image's transformers differs from the test pin: its warnings are not errors here.
timeout 200 python3 -m pytest tests/test_gpu.py -q -o addopts="" -o filterwarnings="" -p no:cacheprovider \
    2>&1 | tee "$out/gpu_tests.log"
timeout 300 python3 benches/bench_gpu.py --rounds "${1:-1}" --reps 2 2>&1 | tee "$out/bench_gpu.log"
