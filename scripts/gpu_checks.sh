#!/usr/bin/env bash
# What a GPU session runs, in one command, on the bundle of
# scripts/device_bundle.sh (carry .device/):
#   1. the CUDA tests (CUDA vs CPU differential tests, NVRTC kernels);
#   2. compute-sanitizer memcheck, racecheck and synccheck over them;
#   3. the NCCL transport through the packed Open MPI (the MpiTrain.Nccl*
#      tests): one rank must match the MPI transport, with the parameters in
#      host memory and on the GPU (--device cuda); two ranks with one silent
#      must fail within --sync-timeout where there are two GPUs, and be
#      refused with the one-GPU-per-rank error where there is one; then two
#      ranks must train where there are two GPUs, and be refused so where
#      there is one (not a crash or a hang);
#   4. bench_treelstm --device cuda on SST: e300/h150/b100 (Adagrad), and the
#      DyNet sizes e=h=128 and 256 at batch 64; bench_models (every cell);
#   5. benchmarks/peers/run_gpu.sh --quick (the GPU peers).
# Every step runs under a time limit, so that the whole stays within 10
# minutes; one report of all steps goes to $OUT/report.txt.
# It builds nothing: it stops at once without a GPU, or when a binary cannot
# find a library (scripts/bundle_env.sh: the bundle's own, the CUDA toolkit's,
# then python3's NVIDIA wheels for NCCL, cuDNN and CUDA's libraries).
# Logs go to $OUT (the device tool brings that folder back) or ./gpu-out.
#   scripts/gpu_checks.sh [--quick]      (--quick: tests and one benchmark)
# The peer comparison on the GPU is the separate benchmarks/peers/run_gpu.sh.
set -uo pipefail
me="gpu_checks.sh"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
# No GPU: stop before anything else.
if command -v nvidia-smi >/dev/null; then
  gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')"
else
  gpus="$(ls /dev/nvidia[0-9]* 2>/dev/null | wc -l)"
fi
((gpus > 0)) || { echo "$me: no GPU here (nvidia-smi -L lists none): nothing to check" >&2; exit 2; }
bundle="$root/.device"
[[ -x "$bundle/copse_tests" ]] || { echo "$me: no bundle at $bundle (run scripts/device_bundle.sh and carry .device)" >&2; exit 2; }
source "$root/scripts/bundle_env.sh"
bundle_env "$bundle" "$me" || exit 2
bundle_check_libs "$me" "$bundle"/copse* "$bundle"/bench_* "$bundle"/dump_first_batch || exit 2
out="${OUT:-$root/gpu-out}"
mkdir -p "$out"
if [[ -f "$bundle/build-info.txt" ]]; then
  cp "$bundle/build-info.txt" "$out/"
  grep -q '^COPSE_NATIVE:BOOL=ON' "$bundle/build-info.txt" &&
    echo "$me: warning: this bundle was packed from a -march=native build (device_bundle.sh --from): its CPU code may fault here" >&2
fi
status=0
report="$out/report.txt"
: >"$report"
# step NAME COMMAND...: runs it under a time limit ($limit seconds, default
# 240) with its output in $out/NAME.log; the summary goes to stdout and to
# the one report, $out/report.txt.
step() {
  local name="$1"; shift
  local t0=$SECONDS
  timeout "${limit:-240}" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  {
    echo "== $name: $*"
    echo "   exit $rc after $((SECONDS - t0)) s$( ((rc == 124)) && echo ' (time limit)'); last lines:"
    tail -n 8 "$out/$name.log" | sed 's/^/   /'
  } | tee -a "$report"
  ((rc == 0)) || status=1
}
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
git -C "$root" rev-parse HEAD >"$out/commit.txt" 2>/dev/null || true
step cuda_tests "$bundle/copse_tests" --gtest_filter='Cuda*:Device*'
if command -v compute-sanitizer >/dev/null; then
  step memcheck compute-sanitizer --tool memcheck --error-exitcode 1 "$bundle/copse_tests" \
    --gtest_filter='CudaBackend.*:-CudaBackend.OutOfMemoryNamesTheSize'
  if ((!quick)); then
    limit=120 step racecheck compute-sanitizer --tool racecheck --error-exitcode 1 \
      "$bundle/copse_tests" --gtest_filter='CudaBackend.FusedPrograms*:CudaBackend.RowKernels*:CudaBackend.EveryCell*'
    limit=120 step synccheck compute-sanitizer --tool synccheck --error-exitcode 1 \
      "$bundle/copse_tests" --gtest_filter='CudaBackend.FusedPrograms*:CudaBackend.RowKernels*:CudaBackend.Softmax*'
  fi
fi
# NCCL: one rank against the MPI transport (the test), then two ranks.
if [[ -x "$bundle/copse_mpi_tests" && -x "$bundle/ompi/bin/mpirun" ]]; then
  step nccl_one_rank env COPSE_TEST_BINARY_DIR="$bundle" COPSE_TEST_MPIEXEC="$bundle/ompi/bin/mpirun" \
    "$bundle/copse_mpi_tests" --gtest_filter='MpiTrain.Nccl*'
  grep -q '\[  SKIPPED \]' "$out/nccl_one_rank.log" && { echo "   the NCCL test skipped: FAILED"; status=1; }
  nccl_two_ranks() {  # two ranks on this machine's $gpus GPUs
    local rc=0 dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/copse-nccl.XXXXXX")"
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 mpirun --oversubscribe \
      --bind-to none -np 2 "$bundle/copse" train --transport nccl --batch 32 --optimizer sgd \
      --seed 1 --epochs 1 --embed 16 --hidden 16 --threads 1 --quiet --sync-timeout 30 \
      --out "$dir" || rc=$?
    rm -rf "$dir"
    echo "exit $rc with 2 ranks on $gpus GPU(s)"
    if ((gpus >= 2)); then return "$rc"; fi
    ((rc != 0 && rc != 124)) &&
      grep -q 'copse: error: --transport nccl needs one GPU per rank on each machine: 2 ranks, 1 GPUs on' \
        "$out/nccl_two_ranks.log" ||
      { echo "expected the one-GPU-per-rank error (two ranks on one GPU), not exit $rc"; return 1; }
  }
  step nccl_two_ranks nccl_two_ranks
else
  echo "== nccl: skipped (no copse_mpi_tests or Open MPI in the bundle: built without MPI)"
fi
sst="$bundle/data/sst/train.txt"
bench() {  # bench NAME EMBED HIDDEN BATCH
  step "$1" "$bundle/bench_treelstm" --device cuda --data "$sst" --embed "$2" --hidden "$3" \
    --batch "$4" --optimizer adagrad --seconds 5 --no-unbatched
}
bench bench_e300_h150_b100 300 150 100
limit=180 step peers_quick "$root/benchmarks/peers/run_gpu.sh" --quick --bundle "$bundle"
if ((!quick)); then
  bench bench_e128_h128_b64 128 128 64
  bench bench_e256_h256_b64 256 256 64
  step bench_models "$bundle/bench_models" --device cuda --sst "$bundle/data/sst" --embed 300 \
    --hidden 150 --batch 100 --seconds 3 --strided both
  step bench_e300_h150_b100_interpreter "$bundle/bench_treelstm" --device cuda --data "$sst" \
    --embed 300 --hidden 150 --batch 100 --optimizer adagrad --seconds 3 --no-unbatched --interpreter
fi
echo "gpu_checks.sh: exit $status (report: $report)" | tee -a "$report"
exit $status
