#!/usr/bin/env bash
# The peer benchmark suite: copse's Tree-LSTM training throughput (trees/s) on
# SST against Python peers of the SAME model, on one CPU thread each.
#
#   benchmarks/peers/run.sh [--quick] [--data FILE] [--no-install] [--peers "torch_level torch_eager ..."]
#
# 1. a virtualenv at benchmarks/peers/.venv with the peers' packages from PyPI;
# 2. copse built by ./scripts/setup.sh (bench_treelstm, dump_first_batch, copse);
# 3. per configuration (embed, hidden, batch): build/dump_first_batch writes the
#    initial parameters and copse's first-batch loss and gradients; each peer
#    loads those parameters and must reproduce the loss and every gradient to
#    1e-4 relative (per tensor, norm-wise) before it is timed (FAILED otherwise);
#    then copse (bench_treelstm --threads 1, and `copse train` for one epoch
#    in the full run) and every peer are timed on training steps (forward,
#    backward, Adam lr 1e-3);
# 4. a table (trees/s, copse's ratio to each peer), benchmarks/peers/results.csv
#    and benchmarks/figures/peers_cpu.png.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/benchmarks/peers"
cd "$root"

quick=0
install=1
data="$root/../shared/data/sst/train.txt"
peers="torch_level torch_eager jax_padded dynet_autobatch"
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --no-install) install=0 ;;
    --data) data="$2"; shift ;;
    --peers) peers="$2"; shift ;;
    -h|--help) sed -n 2,20p "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ -f "$data" ]] || { echo "run.sh: no treebank at $data (use --data FILE)" >&2; exit 2; }
data="$(cd "$(dirname "$data")" && pwd)/$(basename "$data")"

# ---------------------------------------------------------------- environment
venv="$here/.venv"
py="$venv/bin/python"
if ((install)); then
  [[ -x "$py" ]] || python3 -m venv "$venv"
  "$py" -m pip install -q --disable-pip-version-check torch numpy safetensors matplotlib "jax[cpu]"
  # DyNet with autobatching: dynet38 ships wheels for Python 3.8+; optional.
  if ! "$py" -c "import dynet" >/dev/null 2>&1; then
    "$py" -m pip install -q --disable-pip-version-check dynet38 >/dev/null 2>&1 \
      || echo "run.sh: dynet38 did not install; the DyNet peer is skipped" >&2
  fi
fi
COPSE_JOBS="${COPSE_JOBS:-2}" ./scripts/setup.sh --target bench_treelstm dump_first_batch copse
build="${COPSE_BUILD_DIR:-$root/build}"

# One thread everywhere.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
export JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=2

if ((quick)); then
  configs=("128 128 16" "128 128 64")
  seconds=5; trees=2048; eager_trees=128; train_epoch=0
else
  configs=("128 128 1" "128 128 16" "128 128 64" "128 128 256"
           "256 256 1" "256 256 16" "256 256 64" "256 256 256" "300 150 100")
  seconds=15; trees=4096; eager_trees=512; train_epoch=1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/copse-peers.XXXXXX")"
trap 'rm -rf "$work"' EXIT
results="$work/results.jsonl"
: >"$results"
load0="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "peer suite | data $data | $(getconf _NPROCESSORS_ONLN) cores | load average: $load0 | quick=$quick"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
failed=0
for cfg in "${configs[@]}"; do
  read -r E H B <<<"$cfg"
  echo
  echo "== embed $E hidden $H batch $B"
  ref="$work/ref_${E}_${H}_${B}"
  "$build/dump_first_batch" --data "$data" --embed "$E" --hidden "$H" --batch "$B" --seed 1 \
    --out "$ref" >/dev/null
  # copse: bench_treelstm (batched; its own shuffled order, time-based)
  line="$("$build/bench_treelstm" --data "$data" --embed "$E" --hidden "$H" --batch "$B" \
          --threads 1 --seconds "$seconds" --no-unbatched | tail -n 1)"
  "$py" - "$line" "$E" "$H" "$B" >>"$results" <<'EOF'
import json, sys
j = json.loads(sys.argv[1])
print(json.dumps({"system": "copse", "embed": int(sys.argv[2]), "hidden": int(sys.argv[3]),
                  "batch": int(sys.argv[4]), "trees_per_s": j["trees_per_s"],
                  "check_ok": True, "check_max_rel_err": 0.0, "note": "bench_treelstm --threads 1"}))
EOF
  echo "copse (bench_treelstm): $(tail -n 1 "$results")"
  # copse itself: one epoch of `copse train` (train_trees_per_s excludes evaluation)
  if ((train_epoch)) && [[ -f "$(dirname "$data")/dev.txt" && -f "$(dirname "$data")/test.txt" ]]; then
    out="$work/train_${E}_${H}_${B}"
    "$build/copse" train --data "$(dirname "$data")" --epochs 1 --batch "$B" --embed "$E" \
      --hidden "$H" --optimizer adam --lr 1e-3 --threads 1 --out "$out" >/dev/null 2>&1 || true
    if [[ -f "$out/metrics.jsonl" ]]; then
      "$py" - "$out/metrics.jsonl" "$E" "$H" "$B" >>"$results" <<'EOF'
import json, sys
j = json.loads(open(sys.argv[1]).readline())
print(json.dumps({"system": "copse_train", "embed": int(sys.argv[2]), "hidden": int(sys.argv[3]),
                  "batch": int(sys.argv[4]), "trees_per_s": j["train_trees_per_s"],
                  "check_ok": True, "note": "copse train, 1 epoch"}))
EOF
      echo "copse train (1 epoch): $(tail -n 1 "$results")"
    fi
  fi
  for p in $peers; do
    script="$here/$p.py"
    [[ -f "$script" ]] || continue
    n="$trees"
    [[ "$p" == torch_eager ]] && n="$eager_trees"
    ((n < B)) && n="$B"
    set +e
    (cd "$here" && "$py" "$script" --data "$data" --ref "$ref" --batch "$B" --trees "$n" \
      --seconds "$seconds" --json "$results")
    rc=$?
    set -e
    case $rc in
      0) ;;
      3) echo "$p: FAILED the same-function check (not timed)"; failed=1 ;;
      4) echo "$p: not available here (skipped)" ;;
      *) echo "$p: exited with status $rc"; failed=1 ;;
    esac
  done
done

# Self-test of the check: with one weight of U perturbed it must fail loudly.
ref="$(ls -d "$work"/ref_* | head -n 1)"
B="${ref##*_}"
for p in torch_level; do
  if (cd "$here" && "$py" "$p.py" --data "$data" --ref "$ref" --batch "$B" --perturb) >"$work/perturb.log" 2>&1; then
    echo "self-test: $p with a perturbed weight fails the check, as it must: $(grep -m1 '^\[check\]' "$work/perturb.log")"
  else
    cat "$work/perturb.log"; echo "self-test: the perturbed $p PASSED the check: the check is broken"; failed=1
  fi
done

echo
mkdir -p "$root/benchmarks/figures"
load1="$(cut -d' ' -f1-3 /proc/loadavg)"
"$py" "$here/report.py" "$results" --csv "$here/results.csv" --png "$root/benchmarks/figures/peers_cpu.png" \
  --note "$( ((quick)) && echo quick || echo full); load average $load0 at start, $load1 at end"
echo "load average: $load0 at the start, $load1 at the end"
exit "$failed"
