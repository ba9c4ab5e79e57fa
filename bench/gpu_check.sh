#!/usr/bin/env bash
# One prepared run of the STDeformAttn CUDA checks on a GPU machine, sized to ~5 minutes (each step
# stops after 300 s).
#
#   bash bench/gpu_check.sh [OUT_DIR]        # OUT_DIR defaults to $OUT, else results/gpu_check
#
# Needs only python3 with torch (CUDA build), pytest and a CUDA toolkit: the repository is used
# in place (nothing is installed). Steps, each logged to OUT_DIR and each run even when an
# earlier one failed (a failed build fails the tests, which say why):
#   1. environment.txt  the card, driver, torch, nvcc and the toolkit root the build will use;
#   2. build.log        compile the CPU + CUDA extension for the visible GPU and report which
#                       kernels are active (attention.register_op());
#   3. tests.log        tests/test_stdeform_cuda.py: forward and the three gradients vs the
#                       float64 reference (float64/32/16, bfloat16), vs the CPU kernel,
#                       gradcheck, opcheck, current stream, bad inputs, > 2**31 elements (and
#                       the CPU-emulated device-code tests); junit.xml holds per-test results;
#   4. op_bench.log     python -m bench.op_bench --device cuda: reference vs kernel vs SDPA full
#                       attention, forward and forward+backward, quick and paper shapes,
#                       float32 (+ float16/bfloat16 kernels); op_bench.csv holds the rows.
# Exit status: 0 only when every step passed; summary.txt lists each step's status and time.
set -uo pipefail

cd "$(dirname "$0")/.."
out=${1:-${OUT:-results/gpu_check}}
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-/tmp/visbench_torch_extensions}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}

status=0
summary="$out/summary.txt"
: >"$summary"

step() {  # step NAME LIMIT_SECONDS COMMAND...: run it with a time limit, log its status
  local name=$1 limit=$2 began rc
  shift 2
  began=$(date +%s)
  echo "== $name: $*" | tee "$out/$name.log"
  timeout "$limit" "$@" 2>&1 | tee -a "$out/$name.log"
  rc=${PIPESTATUS[0]}
  echo "$name: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $(($(date +%s) - began)) s" |
    tee -a "$summary"
  [ "$rc" -eq 0 ] || status=1
}

if ! "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible to $python (torch.cuda.is_available() is False);" \
    "this script is for a GPU machine" | tee -a "$summary" >&2
  exit 2
fi

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$python" - <<'EOF'
import platform
import torch
from attention.extension import find_cuda_toolkit
p = torch.cuda.get_device_properties(0)
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda})")
print(f"{p.name}: sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.1f} GiB")
print(f"CUDA toolkit root: {find_cuda_toolkit()}")
EOF
  nvcc --version | tail -n 2
  nproc
} 2>&1 | tee "$out/environment.txt"

step build 300 "$python" -c "
import time
t = time.perf_counter()
import attention
info = attention.register_op()
print(info)
print(f'build + load: {time.perf_counter() - t:.1f} s')
print('active: cpu', attention.stdeform_impl('cpu'), '| cuda', attention.stdeform_impl('cuda'))
raise SystemExit(0 if info.cuda_kernel else 1)
"
# pytest under c10's fatal-signal handler: a crash in C++ prints its native backtrace too.
step tests 300 "$python" -c "
import sys, torch
torch._C._set_print_stack_traces_on_fatal_signal(True)
import pytest
sys.exit(pytest.main(sys.argv[1:]))
" tests/test_stdeform_cuda.py -p no:cacheprovider -v --durations=5 --junitxml="$out/junit.xml"
step op_bench 300 "$python" -m bench.op_bench --device cuda --min-run-time 0.5 \
  --out "$out/op_bench.csv"

echo "gpu_check: $([ "$status" -eq 0 ] && echo 'every step passed' || echo 'some step FAILED')," \
  "logs in $out" | tee -a "$summary"
exit "$status"
