#!/usr/bin/env bash
# The SICK pair model (child-sum Tree-LSTM over both trees, Tai et al.'s
# similarity head, KL loss) against its PyTorch level-batched peer, on one
# CPU thread each, forward + backward per batch (no optimizer step):
#   benchmarks/peers/run_pairs.sh [--data DIR] [--seconds S] [--no-install]
# 1. the peers' virtualenv (benchmarks/peers/.venv: torch, numpy, safetensors);
# 2. copse's bench_pairs (built by scripts/setup.sh) dumps the initial
#    parameters and the first batch's loss and gradients; the peer must
#    reproduce them to 1e-4 (norm-wise per tensor) before it is timed;
# 3. bench_pairs times copse with batching on and off, then the peer runs;
#    a table of pairs/s and the ratios.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/benchmarks/peers"
data="$root/../shared/data/sick"
seconds=5
install=1
while (($#)); do
  case "$1" in
    --data) data="$2"; shift ;;
    --seconds) seconds="$2"; shift ;;
    --no-install) install=0 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "run_pairs.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ -f "$data/train/a.parents" ]] || { echo "run_pairs.sh: no SICK data at $data (use --data DIR)" >&2; exit 2; }
py="$here/.venv/bin/python"
if ((install)); then
  [[ -x "$py" ]] || python3 -m venv "$here/.venv"
  "$py" -m pip install -q --disable-pip-version-check torch numpy safetensors
fi
COPSE_JOBS="${COPSE_JOBS:-2}" "$root/scripts/setup.sh" --target bench_pairs >/dev/null
build="${COPSE_BUILD_DIR:-$root/build}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
work="$(mktemp -d "${TMPDIR:-/tmp}/copse-pairs.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$build/bench_pairs" --data "$data" --dump "$work/ref" >/dev/null
"$build/bench_pairs" --data "$data" --seconds "$seconds" --threads 1 | tee "$work/copse.txt"
(cd "$here" && "$py" torch_pairs.py --data "$data" --ref "$work/ref" --seconds "$seconds" \
  --json "$work/peer.jsonl") | tee "$work/peer.txt"
on="$(sed -n 's/^| on (2B trees per level loop) | \([0-9]*\) |.*/\1/p' "$work/copse.txt")"
off="$(sed -n 's/^| off (one pair at a time) | \([0-9]*\) |.*/\1/p' "$work/copse.txt")"
peer="$("$py" -c 'import json,sys; print(round(json.loads(open(sys.argv[1]).readline())["pairs_per_s"]))' "$work/peer.jsonl")"
echo
echo "| system | pairs/s (fwd+bwd, 1 thread) | copse batched / this |"
echo "|---|---:|---:|"
echo "| copse, batching on | $on | 1.00 |"
echo "| copse, batching off | $off | $(awk -v a="$on" -v b="$off" 'BEGIN{printf "%.2f", a/b}') |"
echo "| PyTorch level-batched (torch_pairs.py) | $peer | $(awk -v a="$on" -v b="$peer" 'BEGIN{printf "%.2f", a/b}') |"
