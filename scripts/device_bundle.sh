#!/usr/bin/env bash
# Packs copse's CUDA build for a GPU machine that has the CUDA toolkit but
# none of Debian's packages (oneDNN, fmt, ...): the test and benchmark
# binaries, the non-CUDA shared libraries they load, and the SST files.
# cuDNN (bench_seq_lstm) is not packed (hundreds of MB): the GPU machine's own
# is used, e.g. the one in PyTorch's wheels (benchmarks/peers/run_gpu.sh finds it).
#
#   scripts/device_bundle.sh [OUT_DIR]     (default: .device/, git-ignored)
#
# Then, on the GPU machine, from the repository root:
#   export LD_LIBRARY_PATH=$PWD/.device/lib:$LD_LIBRARY_PATH
#   .device/copse_tests --gtest_filter='Cuda*:Device*'
#   .device/bench_treelstm --device cuda --data .device/data/sst/train.txt ...
#   benchmarks/peers/run_gpu.sh          (the peer suite and bench_seq_lstm on the GPU)
# The bundle is built for sm_90 (override with CMAKE_CUDA_ARCHITECTURES) and
# without -march=native, so its CPU code runs on the GPU machine's processor.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/.device}"
build="${COPSE_DEVICE_BUILD_DIR:-$root/build-device}"
arch="${CMAKE_CUDA_ARCHITECTURES:-90}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCOPSE_WITH_CUDA=ON -DCOPSE_NATIVE=OFF \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
bins=(copse copse_tests bench_treelstm bench_models dump_first_batch)
# bench_seq_lstm exists only where CMake found cuDNN.
if cmake --build "$build" --target help | grep bench_seq_lstm >/dev/null; then
  bins+=(bench_seq_lstm)
else
  echo "device_bundle.sh: no cuDNN here: bench_seq_lstm is left out" >&2
fi
cmake --build "$build" -j "${COPSE_JOBS:-$(nproc)}" --target "${bins[@]}"
rm -rf "$out"
mkdir -p "$out/lib" "$out/data/sst"
for b in "${bins[@]}"; do
  cp "$build/$b" "$out/"
  strip "$out/$b"
done
# Every shared library the binaries load that is neither the C runtime nor CUDA's.
for b in "${bins[@]}"; do
  ldd "$out/$b" | awk '/=>/ {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libgcc_s.so*|libstdc++.so*) ;;
    libcudart*|libcublas*|libnvrtc*|libcuda.so*|libcudnn*) ;;
    *) cp -L "$lib" "$out/lib/" ;;
  esac
done
sst="$root/../shared/data/sst"
[[ -d "$sst" ]] && cp "$sst"/{train,dev,test}.txt "$out/data/sst/"
du -sh "$out"
