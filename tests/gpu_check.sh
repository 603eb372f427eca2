#!/usr/bin/env bash
# The GPU check (issue 16): one run on a machine with an NVIDIA GPU, CuPy, PyTorch CUDA,
# NumPy, h5py, pillow, protobuf and pytest preinstalled; nothing is downloaded.
#
#   bash tests/gpu_check.sh                # or: make gpu-check
#   DEVICE=fakegpu INSTALL=0 bash tests/gpu_check.sh   # the plumbing, on any CPU machine
#
# Steps, in order of importance, each under its own timeout and all under one deadline
# (DEADLINE seconds, default 450: the whole check ends under 8 minutes):
#   1 environment report (nvidia-smi, python, pip show of each package, the pins of setup.py)
#   2 install caffelite without downloads (pip --no-deps --no-build-isolation --no-index -e .;
#     on failure the check goes on with PYTHONPATH=<repo>)
#   3 caffelite device_query -gpu 0, the LRCN data (tools/prepare_lrcn_data.py)
#   4 tests/test_backends.py on the GPU (every layer and 20 solver steps, CuPy vs NumPy)
#   5 the GPU benchmarks (benchmarks/bench_gpu.py: LeNet, CaffeNet batch 256, the LSTM at both
#     LRCN sizes, the LRCN solver step; PyTorch CUDA in the same run)
#   6 caffelite train --solver prototxt/lrcn_solver.prototxt --gpu 0 for 50 iterations
#   7 every other GPU test (-m gpu: the layer and net tests on cupy)
# Everything goes to one folder: $OUT if set, else ./gpu-check-logs (LOG=... to choose):
# one log per step, summary.txt (step, exit status, seconds), junit XML of the tests and the
# benchmark JSON. With DEVICE=fakegpu the same steps run on caffelite.fakegpu (tests selected
# with -k fakegpu, the benchmark as a --dry-run, PyTorch on the CPU).
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
LOG=${LOG:-${OUT:-$REPO/gpu-check-logs}}
DEVICE=${DEVICE:-cupy}
INSTALL=${INSTALL:-1}
DEADLINE=${DEADLINE:-450}
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
SUMMARY="$LOG/summary.txt"
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-/tmp/cupy-kernel-cache}
export PYTHONUNBUFFERED=1
if [ "$DEVICE" = fakegpu ]; then
    export CAFFELITE_FAKE_GPU=1
    SELECT=(-k fakegpu)
    BENCH_ARGS=(--device fakegpu --dry-run)
    ITERATIONS=${ITERATIONS:-5}
else
    unset CAFFELITE_FAKE_GPU
    SELECT=(-m gpu)
    BENCH_ARGS=(--device cupy --runs 5 --warmup 2)
    ITERATIONS=${ITERATIONS:-50}
fi

# step NAME BUDGET_SECONDS COMMAND...: run under min(budget, time left), log to NAME.log.
step() {
    local name=$1 budget=$2
    shift 2
    local now left limit t0 rc
    now=$(date +%s)
    left=$((START + DEADLINE - now))
    limit=$((budget < left ? budget : left))
    if [ "$limit" -lt 5 ]; then
        printf '%-14s skipped (deadline)\n' "$name" | tee -a "$SUMMARY"
        return 0
    fi
    echo "== $name (limit ${limit}s): $*"
    t0=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" > "$LOG/$name.log" 2>&1
    rc=$?
    tail -n 15 "$LOG/$name.log"
    printf '%-14s rc=%-4s %4ss  (limit %ss)\n' "$name" "$rc" "$(($(date +%s) - t0))" "$limit" \
        | tee -a "$SUMMARY"
    return 0
}

environment() {
    date -u
    git -C "$REPO" rev-parse HEAD 2>/dev/null || true
    nvidia-smi || echo 'nvidia-smi: not available'
    "$PYTHON" -VV
    for p in numpy cupy-cuda13x cupy-cuda12x torch h5py pillow protobuf pytest onnx \
             onnxruntime setuptools; do
        echo "-- pip show $p"
        "$PYTHON" -m pip show "$p" 2>/dev/null | grep -E '^(Name|Version|Location):' \
            || echo "   (not installed)"
    done
    "$PYTHON" - <<'EOF'
import importlib.metadata as md, re
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
text = open('setup.py').read()
pins = re.findall(r"'([A-Za-z0-9_.-]+(?:[~=<>!]=?)[^']+)'", text)
print('-- the pins of setup.py against what is installed')
for pin in pins:
    req = Requirement(pin)
    try:
        have = md.version(req.name)
    except md.PackageNotFoundError:
        print(f'   {pin:<28} not installed')
        continue
    ok = req.specifier.contains(have, prereleases=True)
    print(f'   {pin:<28} {have:<14} {"ok" if ok else "OUTSIDE THE PIN"}')
try:
    import cupy
    print('-- cupy', cupy.__version__, 'devices:', cupy.cuda.runtime.getDeviceCount())
except Exception as err:
    print('-- cupy: not usable:', type(err).__name__, err)
try:
    import torch
    print('-- torch', torch.__version__, 'cuda available:', torch.cuda.is_available())
except Exception as err:
    print('-- torch: not usable:', type(err).__name__, err)
EOF
}

install() {
    if "$PYTHON" -m pip install --no-deps --no-build-isolation --no-index -e "$REPO"; then
        "$PYTHON" -c 'import caffelite, sys; print("caffelite from", caffelite.__file__)'
    else
        echo "pip install failed: the check goes on with PYTHONPATH=$REPO"
        return 1
    fi
}

train() {
    sed -e "s/^max_iter: .*/max_iter: $ITERATIONS/" -e 's/^display: .*/display: 10/' \
        -e 's/^average_loss: .*/average_loss: 10/' \
        -e "s|^snapshot_prefix: .*|snapshot_prefix: \"$LOG/lrcn\"|" \
        -e '$a snapshot_after_train: false' \
        prototxt/lrcn_solver.prototxt > "$LOG/lrcn_solver_check.prototxt"
    "$PYTHON" -m caffelite train --solver "$LOG/lrcn_solver_check.prototxt" --gpu 0
}

# `bash tests/gpu_check.sh --run FUNCTION`: one step's function, run by `step` under timeout.
if [ "${1:-}" = --run ]; then
    "$2"
    exit $?
fi

mkdir -p "$LOG"
START=$(date +%s)
: > "$SUMMARY"
step environment 30 bash "$0" --run environment
if [ "$INSTALL" = 1 ]; then
    step install 60 bash "$0" --run install
    grep -q '^install .*rc=0 ' "$SUMMARY" || export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi
step device-query 20 "$PYTHON" -m caffelite device_query -gpu 0
step data 40 "$PYTHON" tools/prepare_lrcn_data.py
step test-backends 100 "$PYTHON" -m pytest -q -p no:cacheprovider -rs "${SELECT[@]}" \
    --durations=10 --junitxml="$LOG/test-backends.xml" tests/test_backends.py
step bench 110 "$PYTHON" benchmarks/bench_gpu.py "${BENCH_ARGS[@]}" --json "$LOG/bench_gpu.json"
step train 60 bash "$0" --run train
step test-gpu 200 "$PYTHON" -m pytest -q -p no:cacheprovider -rs "${SELECT[@]}" \
    --durations=20 --junitxml="$LOG/test-gpu.xml" tests --ignore=tests/test_backends.py
echo "== done in $(($(date +%s) - START))s; logs in $LOG"
cat "$SUMMARY"
