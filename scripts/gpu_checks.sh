#!/usr/bin/env bash
# What a GPU session runs, in one command, on the bundle of
# scripts/device_bundle.sh (carry .device/):
#   1. the CUDA tests (CUDA vs CPU differential tests, NVRTC kernels);
#   2. compute-sanitizer memcheck and racecheck over them;
#   3. bench_treelstm --device cuda on SST: e300/h150/b100 (Adagrad), and the
#      DyNet sizes e=h=128 and 256 at batch 64; bench_models (every cell).
# Logs go to $OUT (the device tool brings that folder back) or ./gpu-out.
#   scripts/gpu_checks.sh [--quick]      (--quick: tests and one benchmark)
# The peer comparison on the GPU is the separate benchmarks/peers/run_gpu.sh.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${OUT:-$root/gpu-out}"
mkdir -p "$out"
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
bundle="$root/.device"
[[ -x "$bundle/copse_tests" ]] || { echo "gpu_checks: no bundle at $bundle (run scripts/device_bundle.sh)" >&2; exit 2; }
export LD_LIBRARY_PATH="$bundle/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
status=0
step() {  # step NAME COMMAND...: runs it with its output in $out/NAME.log
  local name="$1"; shift
  echo "== $name: $*"
  local t0=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc after $((SECONDS - t0)) s; last lines:"
  tail -n 8 "$out/$name.log" | sed 's/^/   /'
  ((rc == 0)) || status=1
}
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
git -C "$root" rev-parse HEAD >"$out/commit.txt" 2>/dev/null || true
step cuda_tests "$bundle/copse_tests" --gtest_filter='Cuda*:Device*'
if command -v compute-sanitizer >/dev/null; then
  step memcheck compute-sanitizer --tool memcheck --error-exitcode 1 "$bundle/copse_tests" \
    --gtest_filter='CudaBackend.*:-CudaBackend.OutOfMemoryNamesTheSize'
  ((quick)) || step racecheck compute-sanitizer --tool racecheck --error-exitcode 1 \
    "$bundle/copse_tests" --gtest_filter='CudaBackend.FusedPrograms*:CudaBackend.RowKernels*:CudaBackend.EveryCell*'
fi
sst="$bundle/data/sst/train.txt"
bench() {  # bench NAME EMBED HIDDEN BATCH
  step "$1" "$bundle/bench_treelstm" --device cuda --data "$sst" --embed "$2" --hidden "$3" \
    --batch "$4" --optimizer adagrad --seconds 5 --no-unbatched
}
bench bench_e300_h150_b100 300 150 100
if ((!quick)); then
  bench bench_e128_h128_b64 128 128 64
  bench bench_e256_h256_b64 256 256 64
  step bench_models "$bundle/bench_models" --device cuda --sst "$bundle/data/sst" --embed 300 \
    --hidden 150 --batch 100 --seconds 3 --strided both
  step bench_e300_h150_b100_interpreter "$bundle/bench_treelstm" --device cuda --data "$sst" \
    --embed 300 --hidden 150 --batch 100 --optimizer adagrad --seconds 3 --no-unbatched --interpreter
fi
exit $status
