#!/usr/bin/env bash
# Runs the GPU bundle (scripts/device_bundle.sh) here as the GPU machine would
# see it: in a mount namespace where Debian's oneDNN, fmt, Open MPI, PMIx,
# hwloc and libevent, and the toolkit's NCCL and cuDNN, are hidden, and NCCL
# and cuDNN come from a stand-in for python3's NVIDIA wheels (a namespace
# package nvidia/{nccl,cudnn}/lib on PYTHONPATH). Through scripts/bundle_env.sh
# it unpacks the bundle, checks that every binary finds its libraries, trains
# a few steps on the CPU, trains with 2 ranks under the packed mpirun, and
# runs the NCCL test under it (without a GPU: the clear "needs a GPU" error).
# It runs on a copy of the bundle, which it leaves as it was.
# Needs root (or user namespaces) for unshare -m; CI runs it after the bundle.
#   scripts/bundle_smoke.sh [BUNDLE_DIR]        (default .device/)
set -euo pipefail
me="bundle_smoke.sh"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bundle="$(cd "${1:-$root/.device}" 2>/dev/null && pwd)" ||
  { echo "$me: no bundle at ${1:-$root/.device} (run scripts/device_bundle.sh)" >&2; exit 2; }

if [[ -z "${COPSE_SMOKE_WORK:-}" ]]; then
  command -v unshare >/dev/null || { echo "$me: needs unshare (util-linux)" >&2; exit 2; }
  work="$(mktemp -d "${TMPDIR:-/tmp}/copse-smoke.XXXXXX")"
  # A copy: unpacking oneDNN in BUNDLE itself would make it too big to carry.
  cp -a "$bundle" "$work/bundle"
  rc=0
  unshare -m env COPSE_SMOKE_WORK="$work" "$0" "$work/bundle" || rc=$?
  # Only out here, where the namespace's bind mounts are gone, is it safe to
  # delete: inside, work/ holds views of the real CUDA libraries.
  rm -rf "$work"
  exit "$rc"
fi

# ---- inside the namespace: hide, then stand in for the wheels
work="$COPSE_SMOKE_WORK"
mount --make-rprivate /
mkdir -p "$work/empty" "$work/site/nvidia/nccl/lib" "$work/site/nvidia/cudnn/lib"
touch "$work/empty.so"
hide_file() { [[ ! -e "$1" ]] || mount --bind "$work/empty.so" "$1"; }
# The wheels' stand-in: the toolkit's NCCL and cuDNN, bound before they are hidden.
for f in $(ldconfig -p | awk '/(libnccl|libcudnn)[a-z_]*\.so\.[0-9]+ .*x86-64/ {print $NF}' | sort -u) \
         /usr/local/cuda/lib*/libnccl.so.2 /usr/local/cuda/lib*/libcudnn*.so.9; do
  [[ -e "$f" ]] || continue
  sub=cudnn; [[ "$(basename "$f")" == libnccl* ]] && sub=nccl
  dst="$work/site/nvidia/$sub/lib/$(basename "$f")"
  [[ -e "$dst" ]] && continue
  touch "$dst"; mount --bind "$(readlink -f "$f")" "$dst"
done
[[ -e "$work/site/nvidia/nccl/lib/libnccl.so.2" ]] || { echo "$me: no NCCL here to stand in for the wheel" >&2; exit 2; }
# The toolkit's lib/ without NCCL and cuDNN: links into a second view of it
# (an empty file in their place would stop the loader: "file too short").
cudalib="$(readlink -f /usr/local/cuda/lib64)"
if [[ -d "$cudalib" ]]; then
  mkdir -p "$work/cudalib.orig" "$work/cudalib"
  mount --bind "$cudalib" "$work/cudalib.orig"
  for f in "$work/cudalib.orig"/*; do
    case "$(basename "$f")" in libnccl*|libcudnn*) ;; *) ln -s "$f" "$work/cudalib/" ;; esac
  done
  mount --bind "$work/cudalib" "$cudalib"
fi
for d in /usr/lib/x86_64-linux-gnu/openmpi /usr/lib/x86_64-linux-gnu/pmix2 /usr/share/openmpi /etc/openmpi; do
  [[ -d "$d" ]] && mount --bind "$work/empty" "$d"
done
for lib in libdnnl.so.2 libfmt.so.9 libhwloc.so.15 libevent_core-2.1.so.7 libevent_pthreads-2.1.so.7 \
           libmunge.so.2 libnccl.so.2 libcudnn.so.9; do
  for f in $(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF}'); do hide_file "$(readlink -f "$f")"; done
done
for f in /usr/bin/orted /usr/bin/orterun /usr/bin/mpirun /usr/bin/mpiexec; do
  [[ -e "$f" ]] && hide_file "$(readlink -f "$f")"
done
! command -v mpirun >/dev/null || [[ ! -s "$(readlink -f "$(command -v mpirun)")" ]] ||
  { echo "$me: the system's mpirun is still visible" >&2; exit 1; }
export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"

# ---- the bundle, as gpu_checks.sh sets it up
source "$root/scripts/bundle_env.sh"
bundle_env "$bundle" "$me"
bundle_check_libs "$me" "$bundle"/copse* "$bundle"/bench_* "$bundle"/dump_first_batch
nccl="$(ldd "$bundle/copse" | awk '$1 == "libnccl.so.2" {print $3}')"
[[ "$nccl" == "$work/site/nvidia/nccl/lib/libnccl.so.2" ]] ||
  { echo "$me: copse loads NCCL from '$nccl', not from the wheels' stand-in" >&2; exit 1; }
echo "$me: every binary finds its libraries (NCCL and cuDNN from $work/site/nvidia)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
train=(train --batch 16 --optimizer sgd --seed 1 --epochs 1 --embed 8 --hidden 8 --threads 1 --quiet)
"$bundle/copse" "${train[@]}" --out "$work/cpu" >"$work/cpu.log" 2>&1 ||
  { cat "$work/cpu.log" >&2; echo "$me: copse train (CPU) failed" >&2; exit 1; }
echo "$me: copse train on the CPU: ok"
if [[ -x "$bundle/ompi/bin/mpirun" ]]; then
  mpirun --oversubscribe --bind-to none -np 2 "$bundle/copse" "${train[@]}" --transport mpi \
    --out "$work/mpi" >"$work/mpi.log" 2>&1 ||
    { cat "$work/mpi.log" >&2; echo "$me: 2 ranks under the packed mpirun failed" >&2; exit 1; }
  echo "$me: 2 ranks over MPI under the packed mpirun: ok"
  COPSE_TEST_BINARY_DIR="$bundle" COPSE_TEST_MPIEXEC="$bundle/ompi/bin/mpirun" \
    "$bundle/copse_mpi_tests" --gtest_filter='MpiTrain.Nccl*' >"$work/nccl.log" 2>&1 ||
    { cat "$work/nccl.log" >&2; echo "$me: the NCCL test failed under the packed mpirun" >&2; exit 1; }
  echo "$me: the NCCL test under the packed mpirun: $(grep -m1 -o 'no NCCL run here: .*\|PASSED.*' "$work/nccl.log")"
fi
echo "$me: ok"
