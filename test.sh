#!/usr/bin/env bash
# Builds everything and runs the whole test suite; non-zero exit on any failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$root/scripts/setup.sh"
cd "${COPSE_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "${COPSE_JOBS:-$(nproc)}" "$@"
