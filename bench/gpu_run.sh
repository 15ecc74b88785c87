#!/usr/bin/env bash
# One GPU session, start to end: install llmref from this checkout, run the GPU conformance and
# `llmref bench` on the GPU backends (cupy, numba-cuda), and leave the results in
# bench/results/ (gpu_check.json, gpu_pytest.xml, bench_gpu_<device>.json; device and
# versions in each). Meant for a CUDA machine that already has numpy, numba, numba-cuda,
# cupy-cuda13x, torch, onnxruntime, safetensors, ml_dtypes, pyyaml, regex, rich, pytest and
# hypothesis, and no network; the whole run stays under 8 minutes (LLMREF_GPU_BUDGET_S).
#
#   bench/gpu_run.sh                 the real run; stops at once, saying so, without a GPU
#   bench/gpu_run.sh --rehearse      the same steps on a CPU: numba.cuda in the CUDA simulator
#                                    (NUMBA_ENABLE_CUDASIM=1), cupy rows skipped with the
#                                    reason, tiny benchmark shapes, no install
#   --out DIR                        where the results go (default bench/results; a fresh
#                                    temporary folder for --rehearse)
#
# Environment: PYTHON (default python3), LLMREF_GPU_BUDGET_S (default 470), LLMREF_GPU_JOBS
# (worker processes of `llmref check`, default 8), LLMREF_REHEARSE_COMPONENTS (the components
# the rehearsal checks, default "w4a16_matmul nf4_quantize"). Every step runs, each within what is
# left of the budget; the exit status is 1 if any step failed or ran out of time.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
PYTHON="${PYTHON:-python3}"
BUDGET="${LLMREF_GPU_BUDGET_S:-470}"
JOBS="${LLMREF_GPU_JOBS:-8}"
REHEARSE=0
OUT=""

while [ $# -gt 0 ]; do
    case "$1" in
        --rehearse) REHEARSE=1 ;;
        --out) OUT="${2:?--out needs a folder}"; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "bench/gpu_run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$REHEARSE" = 1 ]; then
    export NUMBA_ENABLE_CUDASIM=1
    unset LLMREF_REAL_GPU
    OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/llmref-gpu-rehearsal.XXXXXX")}"
    TINY=--tiny
    REPEATS=1
    MODE="rehearsal (CPU: numba.cuda in the CUDA simulator, cupy skipped, tiny shapes)"
else
    unset NUMBA_ENABLE_CUDASIM
    export LLMREF_REAL_GPU=1
    OUT="${OUT:-bench/results}"
    TINY=""
    REPEATS=3
    MODE="GPU run"
fi
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"

FAILED=()
SUMMARY=()

# step NAME CAP_SECONDS COMMAND...: run COMMAND within min(CAP, what is left of the budget).
step() {
    local name="$1" cap="$2"
    shift 2
    local left=$((BUDGET - SECONDS))
    local limit=$((cap < left ? cap : left))
    if [ "$limit" -lt 5 ]; then
        echo "== $name: not run, the ${BUDGET} s budget is spent"
        FAILED+=("$name (out of time)")
        SUMMARY+=("$(printf '%-38s %s' "$name" "not run: out of time")")
        return
    fi
    echo "== $name (at most ${limit} s): $*"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    local took=$((SECONDS - start))
    if [ "$rc" -eq 0 ]; then
        SUMMARY+=("$(printf '%-38s ok    %4d s' "$name" "$took")")
    else
        [ "$rc" -eq 124 ] && echo "== $name: stopped after ${limit} s"
        FAILED+=("$name (exit $rc)")
        SUMMARY+=("$(printf '%-38s FAIL  %4d s  exit %d' "$name" "$took" "$rc")")
    fi
}

# skip NAME REASON: a step the rehearsal does not run, and why.
skip() {
    echo "== $1: skipped, $2"
    SUMMARY+=("$(printf '%-38s skipped: %s' "$1" "$2")")
}

echo "bench/gpu_run.sh: $MODE; results in $OUT; budget ${BUDGET} s"

# --- the device, before anything else (its name, as a slug, goes into the result names)
if [ "$REHEARSE" = 0 ]; then
    DEVICE="$("$PYTHON" - <<'EOF'
import sys
try:
    from numba import cuda
    ok = cuda.is_available()
except Exception as exc:  # numba-cuda missing or broken
    sys.exit(f"bench/gpu_run.sh: numba.cuda cannot look for a GPU ({type(exc).__name__}: {exc})")
if not ok:
    sys.exit("bench/gpu_run.sh: no CUDA GPU found (numba.cuda.is_available() is False: no driver "
             "or no device); nothing was run. On a CPU machine use bench/gpu_run.sh --rehearse")
device = cuda.get_current_device()
name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
print(f"device: {name}, compute capability {device.compute_capability}", file=sys.stderr)
print("".join(c if c.isalnum() else "_" for c in name.lower()).strip("_"))
EOF
)" || exit 3
else
    DEVICE=simulator
fi

# --- install
if [ "$REHEARSE" = 0 ]; then
    step "install" 120 "$PYTHON" -m pip install --no-deps --no-build-isolation -e .
else
    skip "install" "the rehearsal does not reinstall the environment it runs from; it checks that llmref imports from this checkout"
    step "llmref from this checkout" 30 "$PYTHON" -c "
import pathlib, sys, llmref
where = pathlib.Path(llmref.__file__).resolve().parent
sys.exit(0 if where == pathlib.Path('$ROOT/llmref') else f'llmref imports from {where}, not $ROOT')"
fi

# --- conformance. tests/downstream_project is a separate project (its own rootdir and
# pythonpath), run by tests/test_downstream.py; collected from here it cannot import itself.
step "pytest -m gpu" 150 "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider \
    --ignore=tests/downstream_project --junitxml="$OUT/gpu_pytest.xml"
if [ "$REHEARSE" = 0 ]; then
    step "llmref check (numba-cuda, cupy)" 200 "$PYTHON" -m llmref check --backend numba-cuda \
        --backend cupy --jobs "$JOBS" --json "$OUT/gpu_check.json"
else
    components=()
    for c in ${LLMREF_REHEARSE_COMPONENTS:-w4a16_matmul nf4_quantize}; do components+=(--component "$c"); done
    step "llmref check (numba-cuda, cupy)" 120 "$PYTHON" -m llmref check --backend numba-cuda \
        --backend cupy "${components[@]}" --json "$OUT/gpu_check.json"
fi

# --- benchmarks: `llmref bench`, every component with a GPU backend beside the NumPy reference
# and the peer libraries (the shapes, bytes and peers are the specs' bench: sections). The
# rehearsal runs the tiny shapes; there its numba.cuda rows are listed as skipped (the CUDA
# simulator is not a benchmark) and its cupy rows say why cupy cannot run.
step "llmref bench (cupy, numba-cuda)" 240 "$PYTHON" -m llmref bench --backend cupy \
    --backend numba-cuda $TINY --repeats "$REPEATS" --json "$OUT/bench_gpu_$DEVICE.json"

echo
echo "bench/gpu_run.sh: $MODE finished in ${SECONDS} s; results in $OUT"
printf '  %s\n' "${SUMMARY[@]}"
if [ "${#FAILED[@]}" -gt 0 ]; then
    printf 'FAILED: %s\n' "${FAILED[@]}"
    exit 1
fi
