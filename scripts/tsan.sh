#!/usr/bin/env bash
# The host CUDA emulator's tests (copse_emu_tests: every generated fused
# kernel and every kernel of cuda/kernels_body.cuh on OS threads, one per GPU
# thread) under ThreadSanitizer, in build-tsan/ (no CUDA toolkit needed).
# Any data race fails the run; CudaOnHostDeathTest checks that a kernel
# missing a required __syncwarp is reported.
#   scripts/tsan.sh [CTEST ARGS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${COPSE_TSAN_BUILD_DIR:-$root/build-tsan}"
jobs="${COPSE_JOBS:-$(nproc)}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCOPSE_TSAN=ON -DCOPSE_WITH_CUDA=OFF \
  -DCOPSE_WITH_MPI=OFF -DCOPSE_BUILD_BENCHMARKS=OFF ${COPSE_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$jobs" --target copse_emu_tests
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"
cd "$build"
exec ctest --output-on-failure -j "$jobs" -L emu "$@"
