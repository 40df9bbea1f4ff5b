#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ with clang into build-fuzz/ and
# runs each one. Usage:
#   scripts/fuzz.sh [SECONDS]       run each target SECONDS (default 600)
#   scripts/fuzz.sh --runs N        run each target on N inputs (test.sh smoke)
# New inputs go to build-fuzz/corpus/<target>/ (the checked-in seeds in
# tests/fuzz/corpus/ are only read); a crash leaves its input in
# build-fuzz/artifacts/ and makes the script exit non-zero.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
limit=(-max_total_time="${1:-600}")
if [[ "${1:-}" == "--runs" ]]; then limit=(-runs="${2:?--runs needs a count}"); fi

command -v clang++ >/dev/null || { echo "copse: fuzz: clang++ not found" >&2; exit 1; }
build="${COPSE_FUZZ_BUILD_DIR:-$root/build-fuzz}"
jobs="${COPSE_JOBS:-$(nproc)}"
CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCOPSE_FUZZ=ON \
  -DCOPSE_WITH_CUDA=OFF -DCOPSE_BUILD_TESTS=OFF -DCOPSE_BUILD_BENCHMARKS=OFF \
  -DCOPSE_WERROR=ON >/dev/null
cmake --build "$build" -j "$jobs" --target copse_fuzz_all >/dev/null

targets=(${COPSE_FUZZ_TARGETS:-fuzz_ptb fuzz_glove fuzz_safetensors fuzz_vocab fuzz_conllu
  fuzz_sequence fuzz_graph_json})
status=0
mkdir -p "$build/artifacts"
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus/$t"
  log="$build/$t.log"
  if "$build/$t" "${limit[@]}" -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" \
       "$build/corpus/$t" "$root/tests/fuzz/corpus/$t" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "copse: fuzz: $t: ok, ${runs:-?} executions, $cov"
  else
    status=1
    echo "copse: fuzz: $t: FAILED (log $log)" >&2
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*fuzz check failed|.*runtime error|terminate called)' "$log" >&2 || tail -20 "$log" >&2
  fi
done
exit $status
