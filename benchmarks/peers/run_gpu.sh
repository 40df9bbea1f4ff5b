#!/usr/bin/env bash
# The peer suite on one GPU, for a machine that has python3 with torch and jax
# (CUDA), numpy, safetensors and matplotlib, and nothing else: no packages are
# installed and copse is not built there. It uses the bundle that
# scripts/device_bundle.sh packs here (.device/: copse's CUDA binaries, their
# non-CUDA libraries, SST).
#
#   benchmarks/peers/run_gpu.sh [--quick] [--bundle DIR] [--peers "torch_level torch_eager jax_padded"]
#                               [--no-seq] [--budget SECONDS]
#
# Per configuration (embed, hidden, batch), e300/h150/b100 first:
#  1. DIR/dump_first_batch (on the CPU) writes copse's initial parameters and
#     its first-batch loss and gradients;
#  2. copse: DIR/bench_treelstm --device cuda (it checks its first-batch loss
#     against its CPU backend, then times training steps);
#  3. every peer with --device cuda loads those parameters and must reproduce
#     the loss and every gradient to 1e-4 relative before it is timed (FAILED,
#     not timed, otherwise); then training steps (forward, backward, Adam).
# Then a self-test of the check (torch_level on the GPU with one weight
# perturbed must fail), and DIR/bench_seq_lstm (copse's sequence LSTM against
# cuDNN's LSTM, checked the same way). Trees/s of every system, copse's ratio
# to each peer, and the issue's criterion (copse >= 10x torch_level at
# e300/h150/b100).
#
# Output, written as it goes to $OUT if set, else benchmarks/peers/gpu_out/:
# results_gpu.jsonl (one line per system and configuration), peers_gpu.csv
# (rewritten after every configuration), seq_lstm.txt and seq_lstm.jsonl
# (bench_seq_lstm), peers_gpu.png (at the end). The CSV and the PNG are also
# copied to benchmarks/peers/results_gpu.csv and benchmarks/figures/peers_gpu.png.
# Configurations that would start after --budget seconds (default 420) are
# skipped, so that the whole run ends inside a 10-minute command.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/benchmarks/peers"
cd "$root"

quick=0
seq=1
budget=420
bundle="$root/.device"
peers="torch_level torch_eager jax_padded"
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --no-seq) seq=0 ;;
    --bundle) bundle="$2"; shift ;;
    --peers) peers="$2"; shift ;;
    --budget) budget="$2"; shift ;;
    -h|--help) sed -n 2,32p "$0"; exit 0 ;;
    *) echo "run_gpu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
bundle="$(cd "$bundle" 2>/dev/null && pwd)" || { echo "run_gpu.sh: no bundle directory (run scripts/device_bundle.sh here and carry .device)" >&2; exit 2; }
for b in bench_treelstm dump_first_batch; do
  [[ -x "$bundle/$b" ]] || { echo "run_gpu.sh: $bundle/$b is missing (rebuild the bundle with scripts/device_bundle.sh)" >&2; exit 2; }
done
data="$bundle/data/sst/train.txt"
[[ -f "$data" ]] || { echo "run_gpu.sh: no treebank at $data" >&2; exit 2; }
out="${OUT:-$here/gpu_out}"
mkdir -p "$out"
t_start=$SECONDS

# ---------------------------------------------------------------- environment
# copse's binaries: the bundle's libraries (unpacked on first use), the CUDA
# toolkit's, then python3's NVIDIA wheels for NCCL, cuDNN and CUDA's own
# (scripts/bundle_env.sh). The peers run with the environment they came with.
py_ld="${LD_LIBRARY_PATH:-}"
run_py() { LD_LIBRARY_PATH="$py_ld" python3 "$@"; }
source "$root/scripts/bundle_env.sh"
bundle_env "$bundle" run_gpu.sh || exit 2
bundle_check_libs run_gpu.sh "$bundle/bench_treelstm" "$bundle/dump_first_batch" || exit 2
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export JAX_PLATFORMS=cuda XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2
export PYTHONUNBUFFERED=1
if ! gpu="$(run_py -c 'import torch; torch.cuda.init(); print(torch.cuda.get_device_name(0))' 2>&1 | tail -n 1)"; then
  echo "run_gpu.sh: needs a GPU: torch says: $gpu" >&2
  exit 2
fi
run_py -c 'import numpy, safetensors' || { echo "run_gpu.sh: python3 lacks numpy or safetensors" >&2; exit 2; }

if ((quick)); then
  configs=("300 150 100" "128 128 64")
  seconds=2; trees=2048; eager_trees=128
  seq_configs=("300 150 100")
else
  configs=("300 150 100" "128 128 16" "128 128 64" "128 128 256"
           "256 256 16" "256 256 64" "256 256 256")
  seconds=3; trees=8192; eager_trees=256
  seq_configs=("300 150 100" "256 256 64")
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/copse-peers-gpu.XXXXXX")"
trap 'rm -rf "$work"' EXIT
results="$out/results_gpu.jsonl"
: >"$results"
note="$( ((quick)) && echo quick || echo full) run, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "peer suite on the GPU | data $data | gpu: $gpu | quick=$quick | budget ${budget}s"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(getconf _NPROCESSORS_ONLN) cores)"
report() {  # the table and the CSV so far (and the PNG with --png)
  run_py "$here/report.py" "$results" --csv "$out/peers_gpu.csv" \
    --title "Tree-LSTM training on SST, $gpu, float32" --note "$note" "$@"
}
failed=0
first_ref=""
for cfg in "${configs[@]}"; do
  read -r E H B <<<"$cfg"
  if ((SECONDS - t_start > budget)); then
    echo; echo "== embed $E hidden $H batch $B: skipped (past the ${budget}s budget)"
    continue
  fi
  echo
  echo "== embed $E hidden $H batch $B ($((SECONDS - t_start)) s so far)"
  ref="$work/ref_${E}_${H}_${B}"
  "$bundle/dump_first_batch" --data "$data" --embed "$E" --hidden "$H" --batch "$B" --seed 1 \
    --out "$ref" >/dev/null
  [[ -n "$first_ref" ]] || first_ref="$ref"
  set +e
  log="$("$bundle/bench_treelstm" --device cuda --data "$data" --embed "$E" --hidden "$H" \
         --batch "$B" --threads 1 --seconds "$seconds" --no-unbatched 2>&1)"
  rc=$?
  set -e
  echo "$log" | grep -E '^(check|cuda, unprofiled)' || true
  if ((rc != 0)); then
    echo "$log" | tail -n 5
    echo "copse: bench_treelstm exited with status $rc"; failed=1
  else
    run_py - "$(echo "$log" | tail -n 1)" "$E" "$H" "$B" >>"$results" <<'EOF'
import json, sys
j = json.loads(sys.argv[1])
print(json.dumps({"system": "copse", "embed": int(sys.argv[2]), "hidden": int(sys.argv[3]),
                  "batch": int(sys.argv[4]), "device": "cuda", "trees_per_s": j["trees_per_s"],
                  "check_ok": True, "check_max_rel_err": 0.0,
                  "launches_per_batch": j.get("launches_per_batch"),
                  "note": "bench_treelstm --device cuda (loss checked against its CPU backend)"}))
EOF
    echo "copse (bench_treelstm --device cuda): $(tail -n 1 "$results")"
  fi
  for p in $peers; do
    script="$here/$p.py"
    [[ -f "$script" ]] || { echo "$p: no $script"; failed=1; continue; }
    extra=(--trees "$trees")
    case "$p" in
      torch_eager) extra=(--trees "$eager_trees" --warmup 1) ;;
      jax_padded) extra=(--trees "$trees" --distinct-batches 4) ;;  # bounds XLA compilations
    esac
    ((${extra[1]} < B)) && extra[1]="$B"
    set +e
    (cd "$here" && run_py "$script" --device cuda --data "$data" --ref "$ref" --batch "$B" \
      --seconds "$seconds" --json "$results" "${extra[@]}") >"$work/$p.log" 2>&1
    rc=$?
    set -e
    grep -v '^{' "$work/$p.log" || true
    case $rc in
      0) ;;
      3) echo "$p: FAILED the same-function check (not timed)"; failed=1 ;;
      4) echo "$p: skipped (not installed, or CPU only)" ;;
      5) echo "$p: no usable GPU"; failed=1 ;;
      *) echo "$p: exited with status $rc"; failed=1 ;;
    esac
  done
  report >/dev/null
done

# Self-test of the check on the GPU: with one weight of W perturbed it must fail loudly.
if [[ -n "$first_ref" ]]; then
  B="${first_ref##*_}"
  if (cd "$here" && run_py torch_level.py --device cuda --data "$data" --ref "$first_ref" \
        --batch "$B" --perturb) >"$work/perturb.log" 2>&1; then
    echo "self-test: torch_level (cuda) with a perturbed weight fails the check, as it must: $(grep -m1 '^\[check\]' "$work/perturb.log")"
  else
    cat "$work/perturb.log"; echo "self-test: the perturbed torch_level PASSED the check: the check is broken"; failed=1
  fi
fi

# copse's sequence LSTM against cuDNN's LSTM.
if ((seq)); then
  : >"$out/seq_lstm.txt"
  : >"$out/seq_lstm.jsonl"
  if [[ ! -x "$bundle/bench_seq_lstm" ]]; then
    echo "bench_seq_lstm: not in the bundle (built only where cuDNN is found)"; failed=1
  elif ! bundle_check_libs bench_seq_lstm "$bundle/bench_seq_lstm"; then
    failed=1
  else
    for cfg in "${seq_configs[@]}"; do
      read -r E H B <<<"$cfg"
      echo
      echo "== bench_seq_lstm: embed $E hidden $H batch $B ($((SECONDS - t_start)) s so far)"
      set +e
      "$bundle/bench_seq_lstm" --data "$data" --embed "$E" --hidden "$H" --batch "$B" \
        --seconds "$seconds" 2>&1 | tee -a "$out/seq_lstm.txt"
      rc=${PIPESTATUS[0]}
      set -e
      if ((rc != 0)); then
        echo "bench_seq_lstm: exited with status $rc"; failed=1
      elif grep -q '^needs a GPU' "$out/seq_lstm.txt"; then
        failed=1
      else
        tail -n 1 "$out/seq_lstm.txt" >>"$out/seq_lstm.jsonl"
      fi
    done
  fi
fi

echo
mkdir -p "$root/benchmarks/figures"
report --png "$out/peers_gpu.png"
cp "$out/peers_gpu.csv" "$here/results_gpu.csv"
cp "$out/peers_gpu.png" "$root/benchmarks/figures/peers_gpu.png"
run_py - "$results" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
tps = {(r["system"], r["embed"], r["hidden"], r["batch"]): r.get("trees_per_s")
       for r in rows if r.get("check_ok", True)}
c, t = tps.get(("copse", 300, 150, 100)), tps.get(("torch_level", 300, 150, 100))
if c and t:
    print(f"criterion: copse / torch_level at e300/h150/b100 = {c / t:.2f}x "
          f"(target >= 10x): {'met' if c / t >= 10 else 'NOT met'}")
else:
    print("criterion: copse / torch_level at e300/h150/b100: not measured")
EOF
echo "total $((SECONDS - t_start)) s; results in $out"
exit "$failed"
