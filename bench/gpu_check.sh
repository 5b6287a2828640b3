#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, from the repository root,
#
#     OUT=/some/folder bash bench/gpu_check.sh
#
# runs the GPU tests (tests/gpu: every setup of experiments/paper.yaml trains on the GPU;
# determinism, SIGTERM resume, alpha = 0, no host syncs, compile), then the CUDA benchmarks
# (bench/gpu.py: the project's loop vs a DataLoader loop and the bare loop; the per-epoch cost
# of every kind of paper run and the projected GPU-hours of experiments/paper.yaml; torch.compile).
# It needs python3 with torch, numpy, pandas, pyarrow and pyyaml (timm for timm: models only),
# and nothing installed: PYTHONPATH=src. Every part writes as it goes and has its own time limit,
# so a part that fails or hangs leaves the others' results; the exit code is non-zero if any part
# failed. Written under $OUT (at most 10 files):
#
#     gpu_check.log                    everything printed, the machine first, a summary last
#     gpu_tests.xml                    the GPU tests (JUnit XML: each test's time and failure)
#     gpu-training.md|csv              loop comparison and cost classes (bench/results/ format)
#     gpu-projection.md|csv            projected GPU-hours of experiments/paper.yaml
#     gpu-compile.md|csv               torch.compile of ResNet-18 (when asked for)
#     gpu-concurrency.md|csv           a pack's throughput at pack_concurrency K = 1, 2, 4, 8 (when asked for)
#
# GPU_CHECK_BUDGET_S (default 420): seconds for all parts; a part's limit is its own cap or what
# is left, whichever is less (the benchmarks leave 20 s for the projection).
# GPU_CHECK_PARTS (default "tests training projection", and compile and concurrency in a smoke
# run; add "compile" for gpu-compile, about two minutes more, or "concurrency" for
# gpu-concurrency, up to five): the parts to run, e.g. "concurrency" alone on a second call, or
# "training projection" to rerun the benchmarks; GPU_CHECK_PYTEST_ARGS: extra pytest arguments
# (e.g. -k vit), GPU_CHECK_BENCH_ARGS: extra `python -m bench` arguments (e.g. --gpu-classes vit).
# GPU_CHECK_SMOKE=1: the same steps on the CPU with tiny sizes, a few of the tests and ten times
# the time limits, and with
# jsonschema, snakemake, mnist1d and mlxtend made unimportable as on the GPU machine
# (bench/device_env): checks that the script and the code it runs work, measures nothing.
# PYTHON (default python3): the interpreter.
set -uo pipefail

: "${OUT:?set OUT to the folder for the results}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}
SMOKE=${GPU_CHECK_SMOKE:-0}
SLOWER=1  # the CPU of a smoke run is far slower than a GPU: its limits are ten times as long
[ "$SMOKE" = 1 ] && SLOWER=10
BUDGET=${GPU_CHECK_BUDGET_S:-$((420 * SLOWER))}
DEFAULT_PARTS="tests training projection"
[ "$SMOKE" = 1 ] && DEFAULT_PARTS="$DEFAULT_PARTS compile concurrency"  # the smoke run checks every part
PARTS=" ${GPU_CHECK_PARTS:-$DEFAULT_PARTS} "
export PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
if [ "$SMOKE" = 1 ]; then
    export PYTHONPATH="$REPO/bench/device_env:$PYTHONPATH"
    export KDTRANSFER_TEST_DEVICE=cpu
    TEST_ARGS=(-k "speech_cnn or names_gru")
    BENCH_ARGS=(--gpu-smoke --repeats 1 --gpu-classes "names / char_gru,speech_commands / audio_cnn,resnet18_w8,rcd hint")
    CONCURRENCY_ARGS=(--concurrency-cases "width 8,gru")
else
    export KDTRANSFER_TEST_DEVICE=cuda  # a machine whose CUDA is broken fails the tests instead of skipping them
    TEST_ARGS=()
    BENCH_ARGS=(--repeats 3)
    CONCURRENCY_ARGS=()
fi
# Test processes share the GPU (pytest-xdist, where installed: the GPU machine has it): the
# tests' time is mostly Python and the CPU (model set-up, checkpoints), which then overlaps.
if "$PY" -c "import xdist" 2>/dev/null; then
    TEST_ARGS+=(-n "${GPU_CHECK_TEST_WORKERS:-4}")
fi
read -r -a EXTRA_PYTEST <<< "${GPU_CHECK_PYTEST_ARGS:-}"
read -r -a EXTRA_BENCH <<< "${GPU_CHECK_BENCH_ARGS:-}"
TEST_ARGS+=("${EXTRA_PYTEST[@]}")
BENCH_ARGS+=("${EXTRA_BENCH[@]}")

START=$SECONDS
SUMMARY=()
FAILED=0

# part NAME CAP_SECONDS RESERVE_SECONDS COMMAND...: run COMMAND with a time limit of
# min(CAP, budget left - RESERVE), RESERVE being kept for the parts after it.
part() {
    local name=$1 cap=$2 reserve=$3
    shift 3
    if [[ "$PARTS" != *" ${name#gpu-} "* ]]; then
        SUMMARY+=("$(printf '%-16s not asked for (GPU_CHECK_PARTS)' "$name")")
        return
    fi
    cap=$((cap * SLOWER))
    local left=$((BUDGET - (SECONDS - START) - reserve * SLOWER))
    local limit=$((cap < left ? cap : left))
    if [ "$limit" -lt 10 ]; then
        SUMMARY+=("$(printf '%-16s skipped: %3d s of the %d s budget left' "$name" "$left" "$BUDGET")")
        return
    fi
    echo
    echo "=== $name (limit ${limit} s, at $((SECONDS - START)) s): $*"
    local began=$SECONDS
    timeout -k 10 "$limit" "$@"
    local rc=$?
    local took=$((SECONDS - began))
    local what="ok"
    if [ "$rc" -ne 0 ]; then
        FAILED=1
        what="FAILED (exit $rc)"
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then what="FAILED: stopped at its ${limit} s limit"; fi
    fi
    SUMMARY+=("$(printf '%-16s %-40s %4d s' "$name" "$what" "$took")")
}

main() {
    echo "=== machine, $(date -u '+%Y-%m-%d %H:%M UTC')"
    uname -a
    nproc
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,utilization.gpu \
            --format=csv
    fi
    "$PY" - <<'EOF'
import importlib, platform
import torch
print(f"Python {platform.python_version()}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, device: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
for name in ("numpy", "pandas", "pyarrow", "yaml", "scipy", "timm", "pytest", "jsonschema", "snakemake", "mnist1d", "mlxtend"):
    try:
        module = importlib.import_module(name)
        print(f"  {name} {getattr(module, '__version__', '?')}")
    except ImportError as exc:
        print(f"  {name}: not importable ({exc})")
EOF
    echo "PYTHONPATH=$PYTHONPATH KDTRANSFER_TEST_DEVICE=$KDTRANSFER_TEST_DEVICE budget ${BUDGET} s"

    part gpu-tests 180 60 "$PY" -m pytest tests/gpu -m gpu -v -rfEs -p no:cacheprovider --durations=15 \
        --junitxml="$OUT/gpu_tests.xml" "${TEST_ARGS[@]}"
    part gpu-training 260 20 "$PY" -m bench --only gpu-training --results-dir "$OUT" "${BENCH_ARGS[@]}"
    part gpu-projection 20 0 "$PY" -m bench --only gpu-projection --results-dir "$OUT" "${BENCH_ARGS[@]}"
    part gpu-compile 150 0 "$PY" -m bench --only gpu-compile --results-dir "$OUT" "${BENCH_ARGS[@]}"
    part gpu-concurrency 300 0 "$PY" -m bench --only gpu-concurrency --results-dir "$OUT" "${BENCH_ARGS[@]}" \
        "${CONCURRENCY_ARGS[@]}"
    echo
    for table in gpu-training gpu-projection gpu-compile gpu-concurrency; do
        if [ -f "$OUT/$table.md" ]; then
            echo "=== $OUT/$table.md"
            grep -v '^$' "$OUT/$table.md" | grep -v 'per cost class' || true
        fi
    done
    echo
    echo "=== summary ($((SECONDS - START)) s of a ${BUDGET} s budget; results in $OUT)"
    printf '%s\n' "${SUMMARY[@]}"
    return $FAILED
}

main 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
