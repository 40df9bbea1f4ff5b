#!/usr/bin/env bash
# Installs copse from an existing build and checks it as a user's project sees
# it; nothing in the build is recompiled. Into a temporary prefix, then moved
# (the package must be relocatable):
#   1. every installed header compiles alone, with only the prefix (and the
#      system's directories) on the include path;
#   2. no installed text file names the source or the build tree;
#   3. P/bin/copse --version prints the version of CMakeLists.txt;
#   4. examples/consumer_smoke, configured with -DCMAKE_PREFIX_PATH=P alone,
#      builds and trains (its loss must fall); in a CUDA build it must also
#      find the "cuda" backend by name (copse::cuda's registrar linked);
#   5. the examples (examples/*/) build against the prefix alone and do what
#      they claim (scripts/check_examples.sh).
# Usage: scripts/check_install.sh [BUILD_DIR]   (default build/)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(cd "${1:-${COPSE_BUILD_DIR:-$root/build}}" && pwd)"
jobs="${COPSE_JOBS:-$(nproc)}"
cache="$build/CMakeCache.txt"
[[ -f "$cache" ]] || { echo "check_install: $build is not a configured build" >&2; exit 2; }
cxx="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$cache")"
version="$(sed -n 's/^CMAKE_PROJECT_VERSION:[A-Z]*=//p' "$cache")"
cuda="$(sed -n 's/^COPSE_WITH_CUDA:BOOL=//p' "$cache")"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/copse-install.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/stage" >/dev/null
mv "$tmp/stage" "$tmp/prefix"
prefix="$tmp/prefix"
fail=0

# 1. Each header alone, compiled in an empty directory (so that a quoted
# include cannot find a file next to the translation unit).
headers=()
while IFS= read -r h; do headers+=("$h"); done < <(cd "$prefix/include/copse" && find . -name '*.h' | sed 's|^\./||' | sort)
((${#headers[@]} > 20)) || { echo "check_install: only ${#headers[@]} headers installed" >&2; exit 1; }
export cxx prefix tmp
if ! printf '%s\n' "${headers[@]}" | xargs -P "$jobs" -I{} bash -c '
    tu="$tmp/tu/$(echo "{}" | tr / _).cpp"; mkdir -p "$tmp/tu"
    printf "#include \"%s\"\n" "{}" >"$tu"
    "$cxx" -std=c++17 -fsyntax-only -Wall -Wextra -Werror -I"$prefix/include/copse" "$tu" \
      || { echo "check_install: installed header {} does not compile alone" >&2; exit 1; }'; then
  fail=1
fi
echo "check_install: ${#headers[@]} installed headers compile alone against the prefix"

# 2. Nothing installed points back at the trees it came from.
if grep -rIl -e "$root" -e "$build" "$prefix"; then
  echo "check_install: the files above name the source or build tree" >&2
  fail=1
fi

# 3. The version, from the one place it is set.
got="$("$prefix/bin/copse" --version)"
if [[ "$got" != "copse $version" ]]; then
  echo "check_install: copse --version printed '$got', expected 'copse $version'" >&2
  fail=1
fi

# 4. A project of its own, against the prefix alone.
cmake -S "$root/examples/consumer_smoke" -B "$tmp/consumer" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF \
  -DCMAKE_COMPILE_WARNING_AS_ERROR=ON >"$tmp/consumer.log" 2>&1 \
  || { cat "$tmp/consumer.log" >&2; exit 1; }
cmake --build "$tmp/consumer" -j "$jobs" >>"$tmp/consumer.log" 2>&1 || { cat "$tmp/consumer.log" >&2; exit 1; }
args=()
[[ "$cuda" == ON ]] && args+=(--expect-cuda)
"$tmp/consumer/consumer_smoke" "${args[@]}" || { echo "check_install: consumer_smoke failed" >&2; fail=1; }

# 5. The examples.
CXX="$cxx" "$root/scripts/check_examples.sh" "$prefix" || fail=1
exit $fail
