#!/usr/bin/env bash
# Data-parallel training over the thread and MPI transports: for 1, 2 and 4
# workers, one epoch of `copse train` on SST; reports trees/s, time waiting,
# compute and gradient bytes per step, after checking that every run ends
# with the parameters of the one-worker run (to 1e-5).
#
#   benchmarks/data_parallel.sh [--build DIR] [--data DIR] [--workers "1 2 4"]
#       [--transports "thread mpi"] [--embed 300] [--hidden 150] [--batch 100]
#       [--optimizer sgd] [--epochs 1] [--repeat 2] [--out DIR]
# Every configuration runs --repeat times; the table shows its fastest run
# (the machine may be shared).
# (SGD by default: Adagrad and Adam divide by the gradient's magnitude, so
# the last-bit differences of another summation order grow in entries whose
# gradient is mostly cancellation; see benchmarks/RESULTS.md.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build"
data="$root/../shared/data/sst"
workers="1 2 4"
transports="thread mpi"
embed=300 hidden=150 batch=100 optimizer=sgd epochs=1 repeat=2
out="${TMPDIR:-/tmp}/copse_data_parallel_$$"
while (($#)); do
  case "$1" in
    --build) build="$2" ;;
    --data) data="$2" ;;
    --workers) workers="$2" ;;
    --transports) transports="$2" ;;
    --embed) embed="$2" ;;
    --hidden) hidden="$2" ;;
    --batch) batch="$2" ;;
    --optimizer) optimizer="$2" ;;
    --epochs) epochs="$2" ;;
    --repeat) repeat="$2" ;;
    --out) out="$2" ;;
    *) echo "data_parallel.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
copse="$build/copse"
[[ -x "$copse" ]] || { echo "data_parallel.sh: $copse not built" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "data_parallel.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
mkdir -p "$out"
# mpirun: root allowed (CI containers), more ranks than cores, no pinning.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
flags=(train --data "$data" --embed "$embed" --hidden "$hidden" --batch "$batch"
       --optimizer "$optimizer" --epochs "$epochs" --seed 1 --threads 1 --quiet)

echo "copse data-parallel benchmark"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg); $(mpirun --version 2>/dev/null | head -1)"
echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "config: ${flags[*]} | workers: $workers | transports: $transports"
if (( $(nproc) < ${workers##* } )); then
  echo "note: $(nproc) cores: runs with more workers than cores share them (oversubscribed)"
fi

for r in $(seq 1 "$repeat"); do
  for t in $transports; do
    for w in $workers; do
      dir="$out/$t$w.$r"
      rm -rf "$dir"
      # CPU time of the run (all ranks) over its wall time: the cores it got.
      if [[ $t == thread ]]; then
        /usr/bin/time -f "%e %U %S" -o "$dir.time" \
          "$copse" "${flags[@]}" --workers "$w" --out "$dir" > "$dir.log" 2>&1
      else
        /usr/bin/time -f "%e %U %S" -o "$dir.time" \
          mpirun --oversubscribe --bind-to none -np "$w" "$copse" "${flags[@]}" --transport "$t" \
          --out "$dir" > "$dir.log" 2>&1
      fi || { echo "run $t x $w failed:"; cat "$dir.log"; exit 1; }
    done
  done
done
echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$out" "$transports" "$workers" "$repeat" <<'EOF'
import array, json, math, struct, sys
out, transports, workers = sys.argv[1], sys.argv[2].split(), [int(w) for w in sys.argv[3].split()]
repeat = int(sys.argv[4])
# The fastest of the repeated runs of each configuration.
runs = {}
for t in transports:
    for w in workers:
        best = max(range(1, repeat + 1), key=lambda r: json.loads(
            open(f"{out}/{t}{w}.{r}/metrics.jsonl").readline())["train_trees_per_s"])
        runs[(t, w)] = f"{out}/{t}{w}.{best}"

def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        body = f.read()
    out = {}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        a = array.array("f")
        a.frombytes(body[t["data_offsets"][0]:t["data_offsets"][1]])
        out[name] = (t["shape"], a)
    return out

def rel(a, b):
    d = sum((x - y) ** 2 for x, y in zip(a, b))
    n = sum(y * y for y in b)
    return math.sqrt(d / max(n, 1e-30))

# The check before the figures: final parameters against one worker (1e-5)
# and, for the same number of workers, every transport against the first
# (the same bits: both sum in worker order).
final = {k: tensors(f"{d}/checkpoint.safetensors")["params"][1] for k, d in runs.items()}
first = (transports[0], workers[0])
model = tensors(f"{runs[first]}/model.safetensors")
dense = sum(math.prod(s) for name, (s, _) in model.items() if name != "embed")
ok = True
for (t, w), p in final.items():
    d = rel(p, final[first])
    same = p == final[(transports[0], w)]
    ok = ok and d <= 1e-5 and same
    print(f"check: {t} x {w}: vs {first[0]} x {first[1]} {d:.2e}; "
          f"{'same bits as' if same else 'DIFFERS from'} {transports[0]} x {w}")
if not ok:
    print("check FAILED: no figures")
    sys.exit(1)
print(f"dense gradient: {dense} floats = {dense * 4 / 2**20:.2f} MiB per worker per step; "
      "embedding rows travel as touched rows")
print()
print("| transport | workers | trees/s | speed-up | cores used | steps | compute ms/step | "
      "wait ms/step | exchange ms/step | grad bytes/step/worker | sent bytes/step (all ranks) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for t in transports:
    base = None
    for w in workers:
        m = json.loads(open(f"{runs[(t, w)]}/metrics.jsonl").readline())
        steps = m["steps"]
        rate = m["train_trees_per_s"]
        base = base or rate
        wait = m.get("sync_wait_s", 0.0)
        step_ms = 1e3 * m["train_s"] / steps
        wait_ms = 1e3 * wait / steps
        grad = m.get("sync_bytes", 0) / steps / w
        sent = m.get("sync_sent_bytes")
        sent = f"{sent / steps:,.0f}" if sent is not None else "(shared memory)"
        exch = m.get("sync_exchange_s")
        exch = f"{1e3 * exch / steps:.1f}" if exch is not None else "-"
        wall, user, sys_ = map(float, open(f"{runs[(t, w)]}.time").read().split()[-3:])
        cores = (user + sys_) / wall
        print(f"| {t} | {w} | {rate:,.0f} | {rate / base:.2f}x | {cores:.2f} | {steps} | "
              f"{step_ms - wait_ms:.1f} | {wait_ms:.1f} | {exch} | {grad:,.0f} | {sent} |")
print()
print("cores used: CPU time of the whole run (all workers, start-up and evaluation included) "
      "over its wall time; less than min(workers, cores) means other load shared the machine")
print("compute: time per step not blocked in the exchange; wait: blocked (threads: in the "
      "exchange's barriers; MPI: in every collective, the per-step loss sum included, so a "
      "slower rank's lag counts here); exchange: MPI's gradient exchange alone")
EOF
echo
echo "runs kept in $out"
