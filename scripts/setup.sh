#!/usr/bin/env bash
# Installs what copse needs (Debian packages) and builds it into build/.
# Used by ./run.sh and ./test.sh; safe to run again (only missing packages are
# installed, the build is incremental).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(cmake g++ make libfmt-dev libdnnl-dev libcli11-dev nlohmann-json3-dev libgtest-dev
          libopenblas-dev libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "copse: installing ${missing[*]}" >&2
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

build="${COPSE_BUILD_DIR:-$root/build}"
jobs="${COPSE_JOBS:-$(nproc)}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release ${COPSE_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$jobs" "$@"
