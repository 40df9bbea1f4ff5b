#!/usr/bin/env bash
# Packs copse's CUDA build for a GPU machine that has the CUDA 13 toolkit (or
# NVIDIA's CUDA 13 Python wheels) and python3, but none of Debian's packages:
# the test and benchmark binaries (stripped), the non-CUDA shared libraries
# they load (oneDNN xz-compressed, unpacked on arrival by scripts/bundle_env.sh),
# a relocatable Open MPI runtime for the NCCL test (scripts/pack_openmpi.sh),
# and the SST files. Not packed: CUDA's own libraries, NCCL and cuDNN: the GPU
# machine's toolkit or python3's NVIDIA wheels provide them.
#
#   scripts/device_bundle.sh [OUT_DIR]     (default: .device/, git-ignored)
#   scripts/device_bundle.sh --from BUILD_DIR OUT_DIR
#                                          packs BUILD_DIR as it is configured
#                                          (CI: its -march=native build/, for
#                                          the size check and bundle_smoke.sh;
#                                          not a bundle for the GPU machine)
#
# It prints the bundle's size and fails when the bundle plus the repository's
# files (tracked and untracked-not-ignored: they travel together) exceed
# COPSE_BUNDLE_LIMIT_MIB (default 48; the GPU machine takes 64 MiB in all).
# COPSE_DEVICE_BUILD_DIR (default build-device/) is the build it configures
# and packs; COPSE_CMAKE_ARGS are added to its configuration.
# Then, on the GPU machine, from the repository root (carry .device):
#   scripts/gpu_checks.sh                  (tests, sanitizers, NCCL, benchmarks)
#   benchmarks/peers/run_gpu.sh            (the peer suite and bench_seq_lstm)
# The bundle is built for sm_90 (override with CMAKE_CUDA_ARCHITECTURES) and
# without -march=native, so its CPU code runs on the GPU machine's processor.
set -euo pipefail
me="device_bundle.sh"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${COPSE_DEVICE_BUILD_DIR:-$root/build-device}"
from=0
if [[ "${1:-}" == "--from" ]]; then
  (($# == 3)) || { echo "$me: usage: $me --from BUILD_DIR OUT_DIR" >&2; exit 2; }
  build="$2" from=1
  shift 2
  [[ -f "$build/CMakeCache.txt" ]] || { echo "$me: $build is not a configured build" >&2; exit 2; }
fi
out="${1:-$root/.device}"
arch="${CMAKE_CUDA_ARCHITECTURES:-90}"
limit_mib="${COPSE_BUNDLE_LIMIT_MIB:-48}"
[[ "$limit_mib" =~ ^[0-9]+$ ]] || { echo "$me: COPSE_BUNDLE_LIMIT_MIB must be a whole number of MiB, got '$limit_mib'" >&2; exit 2; }
if ((!from)); then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCOPSE_WITH_CUDA=ON -DCOPSE_NATIVE=OFF \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" ${COPSE_CMAKE_ARGS:-} >/dev/null
fi
grep -q '^COPSE_WITH_CUDA:BOOL=ON' "$build/CMakeCache.txt" ||
  { echo "$me: $build is not a CUDA build (COPSE_WITH_CUDA=OFF)" >&2; exit 2; }
bins=(copse copse_tests bench_treelstm bench_models dump_first_batch)
targets="$(cmake --build "$build" --target help)"
# bench_seq_lstm exists only where CMake found cuDNN, copse_mpi_tests where MPI.
for b in bench_seq_lstm copse_mpi_tests; do
  if grep -q "\\b$b\\b" <<<"$targets"; then
    bins+=("$b")
  else
    echo "$me: $b is not in this build (no cuDNN / no MPI here): left out" >&2
  fi
done
cmake --build "$build" -j "${COPSE_JOBS:-$(nproc)}" --target "${bins[@]}"
rm -rf "$out"
mkdir -p "$out/lib" "$out/data/sst"
for b in "${bins[@]}"; do
  cp "$build/$b" "$out/"
  strip "$out/$b"
done
# Open MPI, where the binaries use it: mpirun runs the NCCL test on the GPU machine.
if ldd "$out/copse" | grep 'libmpi\.so' >/dev/null; then
  "$root/scripts/pack_openmpi.sh" "$out/ompi"
fi
# Every other shared library the binaries load: not the C runtime, not CUDA's,
# NCCL's or cuDNN's (found on the GPU machine), not what ompi/lib holds.
for b in "${bins[@]}"; do
  ldd "$out/$b" | awk '/=>/ {print $3}'
done | sort -u | while read -r lib; do
  name="$(basename "$lib")"
  [[ -e "$out/ompi/lib/$name" ]] && continue
  case "$name" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libgcc_s.so*|libstdc++.so*) ;;
    libcudart*|libcublas*|libnvrtc*|libcuda.so*|libcudnn*|libnccl*) ;;
    *) cp -L "$lib" "$out/lib/"; strip --strip-unneeded "$out/lib/$name" ;;
  esac
done
# Libraries over 4 MiB (oneDNN) travel xz-compressed; the compressed copy is
# kept in the build folder and made again only when the library changes.
cache="$build/bundle-xz"
mkdir -p "$cache"
for f in "$out"/lib/*; do
  (($(stat -c %s "$f") > 4 * 1048576)) || continue
  name="$(basename "$f")"
  stamp="$(sha256sum "$f" | cut -c1-16)"
  if [[ ! -e "$cache/$name.$stamp.xz" ]]; then
    echo "$me: compressing $name (xz -9, about a minute)" >&2
    rm -f "$cache/$name".*.xz
    xz -9 -T"${COPSE_JOBS:-$(nproc)}" -c "$f" >"$cache/$name.$stamp.xz.part"
    mv "$cache/$name.$stamp.xz.part" "$cache/$name.$stamp.xz"
  fi
  cp "$cache/$name.$stamp.xz" "$out/lib/$name.xz"
  rm "$f"
done
# What the GPU machine's scripts print first: how this bundle was built.
{
  echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  grep -E '^(COPSE_NATIVE|CMAKE_CUDA_ARCHITECTURES|COPSE_WITH_MPI|COPSE_WITH_NCCL|CMAKE_BUILD_TYPE):' \
    "$build/CMakeCache.txt"
} >"$out/build-info.txt"
sst="$root/../shared/data/sst"
if [[ -d "$sst" ]]; then
  cp "$sst"/{train,dev,test}.txt "$out/data/sst/"
else
  echo "$me: no SST at $sst: the benchmarks on the GPU machine will lack their data" >&2
fi

# The size, and the limit: the bundle travels inside the working tree.
bytes() { du -sb "$@" | awk '{s += $1} END {print s + 0}'; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
bin_bytes="$(bytes "${bins[@]/#/$out/}")"
lib_bytes="$(bytes "$out/lib")"
ompi_bytes=0
[[ -d "$out/ompi" ]] && ompi_bytes="$(bytes "$out/ompi")"
data_bytes="$(bytes "$out/data")"
bundle_bytes="$(bytes "$out")"
repo_bytes="$(cd "$root" && git ls-files -z --cached --others --exclude-standard |
  du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)"
total=$((bundle_bytes + repo_bytes))
echo "$me: bundle $out: $(mib "$bundle_bytes") MiB (binaries $(mib "$bin_bytes"), lib $(mib "$lib_bytes"), ompi $(mib "$ompi_bytes"), data $(mib "$data_bytes"))"
echo "$me: with the repository's files ($(mib "$repo_bytes") MiB): $(mib "$total") MiB of a ${limit_mib} MiB limit"
if ((total > limit_mib * 1048576)); then
  echo "$me: too big: the bundle and the repository make $(mib "$total") MiB, over the ${limit_mib} MiB limit (COPSE_BUNDLE_LIMIT_MIB; the GPU machine takes at most 64 MiB of working tree): pack less, or compress more" >&2
  exit 1
fi
