#!/usr/bin/env bash
# Builds everything and runs the whole test suite; non-zero exit on any failure.
#   ./test.sh [CTEST ARGS]             build/, ctest, the installed package
#                                      (scripts/check_install.sh), the API
#                                      reference (scripts/doxygen.sh --check),
#                                      then a short
#                                      fuzz smoke of tests/fuzz/ (when clang++
#                                      is there)
#   ./test.sh --sanitize [CTEST ARGS]  build-asan/: the test suite built with
#                                      -fsanitize=address,undefined, ctest
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jobs="${COPSE_JOBS:-$(nproc)}"

if [[ "${1:-}" == "--sanitize" ]]; then
  shift
  export COPSE_BUILD_DIR="${COPSE_ASAN_BUILD_DIR:-$root/build-asan}"
  export COPSE_CMAKE_ARGS="${COPSE_CMAKE_ARGS:-} -DCOPSE_SANITIZE=ON -DCOPSE_WITH_CUDA=OFF -DCOPSE_BUILD_BENCHMARKS=OFF"
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
  "$root/scripts/setup.sh"
  cd "$COPSE_BUILD_DIR"
  exec ctest --output-on-failure -j "$jobs" "$@"
fi

"$root/scripts/setup.sh"
status=0
(cd "${COPSE_BUILD_DIR:-$root/build}" && ctest --output-on-failure -j "$jobs" "$@") || status=$?
# Installs that build into a temporary prefix and builds a project against it
# alone (examples/consumer_smoke); nothing of copse is recompiled.
"$root/scripts/check_install.sh" "${COPSE_BUILD_DIR:-$root/build}" || status=1
# The API reference: every declaration of the public headers has a comment.
"$root/scripts/doxygen.sh" --check "${COPSE_BUILD_DIR:-$root/build}/api" || status=1

if command -v clang++ >/dev/null; then
  "$root/scripts/fuzz.sh" --runs "${COPSE_FUZZ_SMOKE_RUNS:-5000}" || status=1
else
  echo "copse: clang++ not found: skipping the fuzz smoke (scripts/fuzz.sh)" >&2
fi
exit $status
