#!/usr/bin/env bash
# The API reference: Doxygen (Debian's `doxygen`, installed if missing) over
# the public headers (COPSE_PUBLIC_HEADERS in cmake/install.cmake), into
# OUT/html (default build/api). The headers keep the project's `//` comments:
# an input filter reads a comment block above a declaration as its
# documentation. Lists every public declaration without a comment; with
# --check exits 1 if there is one.
# Usage: scripts/doxygen.sh [--check] [OUT]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
check=0
if [[ "${1:-}" == "--check" ]]; then check=1; shift; fi
out="${1:-$root/build/api}"
if ! command -v doxygen >/dev/null; then
  echo "copse: installing doxygen" >&2
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  if ! { $sudo apt-get update -qq >/dev/null &&
         DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq doxygen >/dev/null; }; then
    echo "copse: error: doxygen is missing and apt-get could not install it" >&2
    exit 2
  fi
fi
version="$(sed -n 's/^project(copse VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")"
# The header list between `set(COPSE_PUBLIC_HEADERS` and its `)`.
headers="$(sed -n '/^set(COPSE_PUBLIC_HEADERS/,/)/p' "$root/cmake/install.cmake" \
  | sed -e 's/set(COPSE_PUBLIC_HEADERS//' -e 's/)//' | tr -s ' \n' '\n' | grep '\.h$' \
  | sed "s|^.*$|\"$root/&\"|" | tr '\n' ' ')"
mkdir -p "$out"
rm -rf "$out/html"
# Doxygen runs the filter through the shell unquoted: keep it on a path
# without spaces, whatever OUT is.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
filter="$tmp/comment_filter.sh"
# `// text` (a line of its own) -> `/// text`; trailing `// text` after code
# -> `///< text` (not inside a comment line: code in an example stays text).
# The comment at the top of a header, above `#pragma once`, documents the
# file (`\file` in place of the pragma), not the first declaration after it.
cat >"$filter" <<'SH'
#!/bin/sh
exec sed -e '/^[[:space:]]*\/\//!s|\([;,{]\)[[:space:]]*//\([^/<]\)|\1  ///<\2|' \
  -e 's|^\([[:space:]]*\)//\([^/]\)|\1///\2|' -e 's|^\([[:space:]]*\)//$|\1///|' \
  -e 's|^#pragma once[[:space:]]*$|/// \\file|' "$1"
SH
chmod +x "$filter"
# The namespaces, which no header documents on its own.
cat >"$tmp/namespaces.dox" <<'NS'
/// The public API: Model, Trainer, the graph builders, Error.
namespace copse {}
/// Vertex functions: the builder API, the IR, and the ExecPlan compiled from it.
namespace copse::vertex {}
/// Graphs, their level-major batches, and the Executor that runs a plan over them.
namespace copse::scheduler {}
/// Parameters, gradients and optimizer state; arenas; safetensors checkpoints.
namespace copse::memory {}
/// Backends (CPU, CUDA by name) and the fused elementwise programs they run.
namespace copse::ops {}
/// The model zoo (cells, the sentiment model, join heads), data readers and
/// generators, the `copse train` and `copse eval` jobs.
namespace copse::models {}
NS
headers="$headers \"$tmp/namespaces.dox\""
warnings="$out/undocumented.txt"
doxygen - >"$out/doxygen.log" 2>&1 <<DOX || { echo "copse: error: doxygen failed (see $out/doxygen.log)" >&2; exit 2; }
PROJECT_NAME = copse
PROJECT_NUMBER = $version
PROJECT_BRIEF = "Batched training of dynamic neural networks"
OUTPUT_DIRECTORY = "$out"
INPUT = $headers
STRIP_FROM_PATH = "$root" "$tmp"
FULL_PATH_NAMES = YES
INPUT_FILTER = $filter
FILTER_SOURCE_FILES = NO
EXTRACT_ALL = NO
EXTRACT_STATIC = YES
HIDE_UNDOC_MEMBERS = NO
JAVADOC_AUTOBRIEF = YES
MULTILINE_CPP_IS_BRIEF = NO
GENERATE_HTML = YES
GENERATE_LATEX = NO
QUIET = YES
WARNINGS = YES
WARN_IF_UNDOCUMENTED = YES
WARN_IF_DOC_ERROR = NO
WARN_NO_PARAMDOC = NO
WARN_LOGFILE = "$warnings"
ENABLE_PREPROCESSING = YES
MACRO_EXPANSION = NO
EXCLUDE_SYMBOLS = detail::* *::detail
HAVE_DOT = NO
DOX
# A filter or input that failed leaves nothing documented, and so nothing
# reported undocumented: that is an error, not a pass.
if ! compgen -G "$out/html/class*.html" >/dev/null; then
  echo "copse: error: doxygen documented no class (see $out/doxygen.log)" >&2
  exit 2
fi
nheaders="$(grep -o '\.h"' <<<"$headers" | wc -l)"
n="$(grep -c "is not documented" "$warnings" || true)"
echo "doxygen: $nheaders public headers -> $out/html/index.html; $n undocumented declarations"
if ((n > 0)); then
  grep "is not documented" "$warnings" | sed "s|$root/||" | head -${COPSE_DOXYGEN_SHOW:-40}
  ((check)) && exit 1
fi
exit 0
