#!/usr/bin/env bash
# Builds each project of examples/ against an installed copse (the prefix
# alone: no path into this tree) and checks what it does:
#   (a) peephole_sst: 300 steps on a synthetic PTB treebank (`copse synth`);
#       the mean loss of the last 50 steps must be at most 60% of the first 50's;
#   (b) expression_dag: 400 steps; the test error must fall to at most 25% of
#       the untrained model's;
#   (c) score_trees: scores the test file with a model written by
#       `copse train`; its figures must equal `copse eval`'s on the same file.
# Usage: scripts/check_examples.sh PREFIX   (run by scripts/check_install.sh)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$(cd "$1" && pwd)"
jobs="${COPSE_JOBS:-$(nproc)}"
cxx="${CXX:-c++}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/copse-examples.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
fail=0

for ex in peephole_sst expression_dag score_trees; do
  cmake -S "$root/examples/$ex" -B "$tmp/$ex" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
    -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF -DCMAKE_COMPILE_WARNING_AS_ERROR=ON \
    >"$tmp/$ex.log" 2>&1 && cmake --build "$tmp/$ex" -j "$jobs" >>"$tmp/$ex.log" 2>&1 \
    || { cat "$tmp/$ex.log" >&2; echo "check_examples: $ex does not build" >&2; exit 1; }
done
echo "check_examples: peephole_sst, expression_dag, score_trees build against the prefix"

"$prefix/bin/copse" synth --out "$tmp/data" --train 800 --dev 200 --test 200 >/dev/null
# The result line's KEY=VALUE pairs.
value() { grep -o " $2=[^ ]*" <<<" $1" | head -1 | cut -d= -f2; }
# a <= f * b, both numbers.
below() {
  [[ "$1" =~ ^[0-9.eE+-]+$ && "$2" =~ ^[0-9.eE+-]+$ ]] || return 1
  awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN { exit !(a <= f * b) }'
}

out="$(cd "$tmp" && "$tmp/peephole_sst/peephole_sst" "$tmp/data" 300)"
line="$(grep '^result:' <<<"$out")"
first="$(value "$line" first_loss)"; last="$(value "$line" last_loss)"
if below "$last" "$first" 0.6; then
  echo "check_examples: (a) peephole_sst loss $first -> $last"
else
  echo "check_examples: (a) peephole_sst loss $first -> $last, not down to 60%" >&2
  fail=1
fi

line="$("$tmp/expression_dag/expression_dag" 400 | grep '^result:')"
before="$(value "$line" test_mse_before)"; after="$(value "$line" test_mse_after)"
if below "$after" "$before" 0.25; then
  echo "check_examples: (b) expression_dag test mse $before -> $after"
else
  echo "check_examples: (b) expression_dag test mse $before -> $after, not down to 25%" >&2
  fail=1
fi

"$prefix/bin/copse" train --data "$tmp/data" --epochs 2 --embed 32 --hidden 32 --quiet \
  --out "$tmp/run" >/dev/null
want="$("$prefix/bin/copse" eval --model "$tmp/run/model.safetensors" --data "$tmp/data/test.txt")"
got="$("$tmp/score_trees/score_trees" "$tmp/run/model.safetensors" "$tmp/data/test.txt")"
if python3 - "$want" "$got" <<'PY'
import json, sys
want, got = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.exit(0 if want.keys() == got.keys() and all(want[k] == got[k] for k in want) else 1)
PY
then
  echo "check_examples: (c) score_trees agrees with copse eval: $got"
else
  echo "check_examples: (c) score_trees printed $got, copse eval $want" >&2
  fail=1
fi
exit $fail
