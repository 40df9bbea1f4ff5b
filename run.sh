#!/usr/bin/env bash
# The main job: builds copse if needed, then runs `build/copse ARGS`
# (default: `train`, on the built-in synthetic treebank).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$root/scripts/setup.sh" --target copse
if (($# == 0)); then set -- train; fi
exec "${COPSE_BUILD_DIR:-$root/build}/copse" "$@"
