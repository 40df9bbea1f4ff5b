#!/usr/bin/env bash
# What bounded staleness buys over MPI: `copse train` on SST for 1, 2 and 4
# ranks, BSP against SSP (--staleness 1 and 3), with no straggler, with the
# last rank computing 2x slower throughout, and with a rank drawn afresh at
# every step or clock computing 2x slower (COPSE_TEST_STRAGGLE, see
# models/transport.h). Reports trees/s, bytes per clock, time blocked, and
# test accuracy after the run; plots test accuracy against wall time.
#
#   benchmarks/ssp.sh [--build DIR] [--data DIR] [--ranks "1 2 4"]
#       [--staleness "1 3"] [--stragglers "none last2 any2"] [--embed 300]
#       [--hidden 150] [--batch 100] [--optimizer adagrad] [--epochs 5]
#       [--out DIR] [--png FILE]
# One run per configuration (BSP is deterministic; SSP's accuracy moves by
# the order in which pushes land: compare runs, see benchmarks/RESULTS.md).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build"
data="$root/../shared/data/sst"
ranks="1 2 4" stalenesses="1 3" stragglers="none last2 any2"
embed=300 hidden=150 batch=100 optimizer=adagrad epochs=5
out="${TMPDIR:-/tmp}/copse_ssp_$$" png=""
while (($#)); do
  case "$1" in
    --build) build="$2" ;;
    --data) data="$2" ;;
    --ranks) ranks="$2" ;;
    --staleness) stalenesses="$2" ;;
    --stragglers) stragglers="$2" ;;
    --embed) embed="$2" ;;
    --hidden) hidden="$2" ;;
    --batch) batch="$2" ;;
    --optimizer) optimizer="$2" ;;
    --epochs) epochs="$2" ;;
    --out) out="$2" ;;
    --png) png="$2" ;;
    *) echo "ssp.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
copse="$build/copse"
[[ -x "$copse" ]] || { echo "ssp.sh: $copse not built" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "ssp.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
flags=(train --data "$data" --embed "$embed" --hidden "$hidden" --batch "$batch"
       --optimizer "$optimizer" --epochs "$epochs" --seed 1 --threads 1 --quiet --transport mpi)

echo "copse SSP benchmark"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg); $(mpirun --version 2>/dev/null | head -1)"
echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "config: ${flags[*]} | ranks: $ranks | staleness: $stalenesses | stragglers: $stragglers"
max_ranks=${ranks##* }
(( $(nproc) < max_ranks )) && echo "note: $(nproc) cores: $max_ranks ranks share them (oversubscribed)"

runs=()
for w in $ranks; do
  for g in $stragglers; do
    case "$g" in
      none) env=() ;;
      last2) env=(COPSE_TEST_STRAGGLE="$((w - 1)):2") ;;
      any2) env=(COPSE_TEST_STRAGGLE="any:2") ;;
      *) echo "ssp.sh: straggler must be none, last2 or any2, got $g" >&2; exit 2 ;;
    esac
    # One rank: the straggler is the only worker (any2 = last2).
    [[ $w == 1 && $g == any2 ]] && continue
    modes="bsp"
    (( w > 1 )) && for s in $stalenesses; do modes+=" ssp$s"; done
    for mode in $modes; do
      dir="$out/r$w-$g-$mode"
      rm -rf "$dir"
      extra=()
      [[ $mode == ssp* ]] && extra=(--staleness "${mode#ssp}")
      echo "run: $w rank(s), straggler $g, $mode" >&2
      env "${env[@]}" /usr/bin/time -f "%e %U %S" -o "$dir.time" \
        mpirun --oversubscribe --bind-to none -np "$w" "$copse" "${flags[@]}" "${extra[@]}" \
        --out "$dir" > "$dir.log" 2>&1 || { echo "run $dir failed:"; cat "$dir.log"; exit 1; }
      runs+=("$dir")
    done
  done
done
echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$out" "$png" "${runs[@]}" <<'EOF'
import json, os, sys
out, png, runs = sys.argv[1], sys.argv[2], sys.argv[3:]
def lines(d):
    return [json.loads(l) for l in open(f"{d}/metrics.jsonl") if l.strip()]
# The check before the figures: every SSP read within its bound, every run complete.
ok = True
for d in runs:
    ms = lines(d)
    last = ms[-1]
    if "staleness" in last:
        s = last["staleness"]
        worst = max(int(k) for k in last["ssp_staleness_histogram"])
        bad = last["ssp_violations"] != 0 or worst > s or last["ssp_max_lead"] > s
        ok = ok and not bad
        print(f"check: {os.path.basename(d)}: {last['ssp_violations']} violations, oldest read "
              f"{worst} clocks behind, lead <= {last['ssp_max_lead']} (bound {s})"
              + (" FAILED" if bad else ""))
if not ok:
    print("check FAILED: no figures")
    sys.exit(1)
rows, curves = {}, {}
for d in runs:
    w, g, mode = os.path.basename(d).split("-")
    ms = lines(d)
    W = int(w[1:])
    trees = sum(m["train_trees_per_s"] * m["train_s"] for m in ms)
    train_s = sum(m["train_s"] for m in ms)
    steps = sum(m["steps"] for m in ms)
    last = ms[-1]
    if mode == "bsp":
        wait = sum(m.get("sync_wait_s", 0.0) for m in ms)  # mean per worker
        pushed = sum(m.get("sync_bytes", 0) for m in ms) / steps / W
        moved = sum(m.get("sync_sent_bytes", 0) for m in ms) / steps / W
    else:
        # Cumulative over the run, per clock of one worker (clocks: all workers' ticks).
        wait = sum(last["ssp_wait_s"]) / W
        pushed = last["ssp_bytes_pushed_per_clock"]
        moved = last["ssp_bytes_pulled_per_clock"]
    wall, user, sys_ = map(float, open(f"{d}.time").read().split()[-3:])
    rows[(W, g, mode)] = dict(rate=trees / train_s, wait=wait, pushed=pushed, moved=moved,
                             fine=last["test_fine"], binary=last["test_binary"],
                             cores=(user + sys_) / wall, wall=wall)
    curves[(W, g, mode)] = [(m["wall_s"], m["test_fine"]) for m in ms]
names = {"none": "none", "last2": "last rank 2x", "any2": "any rank 2x (drawn per clock)"}
print()
print("| ranks | straggler | mode | trees/s | vs BSP | test fine | vs BSP (points) | test binary | "
      "wait s/rank | bytes pushed/clock/rank | bytes pulled (SSP) or sent (BSP)/clock/rank | "
      "cores used | wall s |")
print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (W, g, mode), r in rows.items():
    b = rows[(W, g, "bsp")]
    print(f"| {W} | {names[g]} | {mode} | {r['rate']:,.0f} | {r['rate'] / b['rate']:.2f}x | "
          f"{r['fine']:.3f} | {100 * (r['fine'] - b['fine']):+.1f} | {r['binary']:.3f} | "
          f"{r['wait']:.2f} | {r['pushed']:,.0f} | {r['moved']:,.0f} | {r['cores']:.2f} | "
          f"{r['wall']:.0f} |")
print()
print("trees/s: training trees over training time, all epochs (evaluation excluded); test fine/"
      "binary: root accuracy on SST test after the last epoch; wait: time blocked on the other "
      "ranks (BSP: in the collectives; SSP: on the staleness bound), summed over the run, mean "
      "per rank; cores used: CPU time of all ranks over the wall time")
if png:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    W = max(k[0] for k in rows)
    gs = [g for g in names if (W, g, "bsp") in rows]
    fig, axes = plt.subplots(1, len(gs), figsize=(5 * len(gs), 4), sharey=True, squeeze=False)
    for ax, g in zip(axes[0], gs):
        for (w, gg, mode), c in curves.items():
            if w == W and gg == g:
                ax.plot([x for x, _ in c], [y for _, y in c], marker="o", label=mode)
        ax.set_title(f"{W} ranks, straggler: {names[g]}")
        ax.set_xlabel("wall time (s, evaluation included)")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0][0].set_ylabel("SST test fine accuracy")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"plot: {png}")
EOF
echo
echo "runs kept in $out"
