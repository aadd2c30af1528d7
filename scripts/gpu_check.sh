#!/usr/bin/env bash
# The GPU checks, in one call on a machine with an NVIDIA GPU, CUDA and CuPy (and no package
# registry): build pynn with its CUDA extension, run the CUDA kernel tests, the CUDA engine's
# tests under compute-sanitizer's memcheck, time bench/gpu_compare.py, then run the whole
# test suite, where the cuda and cupy backends join
# the tests parametrised over every available backend (tests/test_gpu_*.py and
# test_cuda_*.py are the GPU's own). Each stage has its own time limit so a
# slow or hung stage leaves the later ones their time; logs go to $OUT (default /tmp/gpu_check).
#
#   bash scripts/gpu_check.sh                 # everything (~6 minutes on an H200)
#   STAGES="build kernels" bash scripts/gpu_check.sh
#   BENCH_ARGS="--libs pynn-cuda torch-cuda" bash scripts/gpu_check.sh
# The bench stage times the workloads as they are, then with a Dropout after each hidden
# layer (BENCH_DROPOUT, 0 to skip), the GPU libraries and the host's C++ engine; the GEMM
# table with BENCH_ARGS="" (its numbers are in bench/RESULTS.md's first GPU run).
set -u
OUT=${OUT:-/tmp/gpu_check}
STAGES=${STAGES:-"build kernels memcheck bench suite"}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
export PYTHONHASHSEED=${PYTHONHASHSEED:-0}  # xdist workers must collect the same tests

stage() { [[ " $STAGES " == *" $1 "* ]]; }
# run NAME SECONDS CMD...: the command's output shown and kept in $OUT/NAME.log
run() {
    local name=$1 limit=$2 t0=$SECONDS
    shift 2
    echo "=== $name (limit ${limit} s)"
    timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n "${TAIL:-25}" "$OUT/$name.log"
    echo "=== $name: exit $rc after $((SECONDS - t0)) s"
    return $rc
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
    --format=csv,noheader
$PY -c "import sys, numpy, cupy, torch; print('python', sys.version.split()[0], 'numpy', \
numpy.__version__, 'cupy', cupy.__version__, 'torch', torch.__version__)"

if stage build; then
    PYNN_CUDA=ON PYNN_CUDA_ARCHITECTURES=${PYNN_CUDA_ARCHITECTURES:-90} TAIL=5 \
        run build 240 $PY -m pip install --no-build-isolation --no-deps -v . || exit 1
fi
# From here on the installed package is imported (the checkout keeps it under src/).
$PY -c "import pynn; i = pynn.info(); print('pynn', i['version'], i['backend'], i['backends'])"

if stage kernels; then
    run kernels 120 $PY -m pytest -q -p no:cacheprovider -rfE --timeout 120 \
        --junitxml="$OUT/kernels.xml" tests/test_cuda_backend.py tests/test_cuda_bindings.py \
        tests/test_cuda_engine.py tests/test_gpu_arrays.py tests/test_gpu_features.py
fi
if stage memcheck; then  # the CUDA engine's and kernels' device memory accesses
    SANITIZER=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    # 3-6 s a test under the sanitizer: a subset by default (every loss and optimizer, the
    # awkward sizes, several update blocks, no bias, dropout); MEMCHECK_K="<pytest -k expr>"
    # picks another, MEMCHECK_K="" all of them (two calls' worth)
    K=${MEMCHECK_K-"plain or awkward or several_update_blocks or without_bias or dropout"}
    run memcheck 150 "$SANITIZER" --tool memcheck --error-exitcode 9 $PY -m pytest -q \
        -p no:cacheprovider -rfE -x ${K:+-k "$K"} tests/test_cuda_engine.py
fi
if stage bench; then
    BENCH_ARGS=${BENCH_ARGS-"--no-gemm --libs pynn-cuda pynn-cuda-layers torch-cuda pynn-cpu"}
    TAIL=20 run bench 150 $PY bench/gpu_compare.py $BENCH_ARGS
    if [ "${BENCH_DROPOUT:-0.2}" != 0 ]; then
        TAIL=20 run bench_dropout 150 $PY bench/gpu_compare.py $BENCH_ARGS \
            --dropout "${BENCH_DROPOUT:-0.2}"
    fi
fi
if stage suite; then
    TAIL=60 run suite "${SUITE_LIMIT:-240}" $PY -m pytest -q \
        -p no:cacheprovider -rfE --timeout 120 --disable-warnings \
        -n "${WORKERS:-8}" --junitxml="$OUT/suite.xml" tests
fi
