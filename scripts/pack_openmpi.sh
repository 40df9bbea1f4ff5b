#!/usr/bin/env bash
# Packs this machine's Open MPI 4 runtime (Debian's) into a relocatable tree,
# for a GPU machine that has no Open MPI: mpirun and orted, libmpi and its
# libraries, the MCA plugins whose libraries are all packed or in the C
# runtime, the help texts, and PMIx (libpmix, its plugins and help texts).
# scripts/device_bundle.sh calls it; scripts/mpi_env.sh sets the environment
# (OPAL_PREFIX, PMIX_PREFIX, PATH, LD_LIBRARY_PATH) that makes mpirun use it.
#
#   scripts/pack_openmpi.sh OUT_DIR      (OUT_DIR/bin/mpirun, OUT_DIR/lib, ...)
set -euo pipefail
me="pack_openmpi.sh"
die() { echo "$me: $*" >&2; exit 1; }
(($# == 1)) || die "usage: $me OUT_DIR"
out="$1"
command -v ompi_info >/dev/null || die "no ompi_info: Open MPI is not installed here (apt-get install openmpi-bin)"
path_of() { ompi_info --path "$1" --parsable | sed -n "s/^path:$1://p"; }
prefix="$(path_of prefix)"
libdir="$(path_of libdir)"
pkglibdir="$(path_of pkglibdir)"
pkgdatadir="$(path_of pkgdatadir)"
bindir="$(path_of bindir)"
for d in "$libdir" "$pkglibdir" "$pkgdatadir" "$bindir"; do
  [[ "$d" == "$prefix"/* ]] || die "$d is not under Open MPI's prefix $prefix: it cannot be relocated"
done
rel() { echo "${1#"$prefix"/}"; }
rm -rf "$out"
mkdir -p "$out/$(rel "$bindir")" "$out/$(rel "$pkglibdir")" "$out/$(rel "$pkgdatadir")"
# mpirun is a link to orterun (through /etc/alternatives on Debian).
cp -L "$bindir/orterun" "$out/$(rel "$bindir")/mpirun"
cp -L "$bindir/orted" "$out/$(rel "$bindir")/orted"
cp "$pkgdatadir"/help-*.txt "$out/$(rel "$pkgdatadir")/"

# The shared libraries mpirun, libmpi and the plugins load, outside the C
# runtime, land in OUT/lib (scripts/mpi_env.sh puts it on LD_LIBRARY_PATH).
mkdir -p "$out/lib"
# (awk reads all of ldconfig's output: an early exit would be a SIGPIPE under pipefail)
libmpi="$(ldconfig -p | awk '/libmpi\.so\.40 .*x86-64/ && !f {print $NF; f = 1}')"
[[ -n "$libmpi" ]] || die "no libmpi.so.40 in ldconfig's cache"
pmix_lib="$(ldconfig -p | awk '/libpmix\.so\.2 .*x86-64/ && !f {print $NF; f = 1}')"
system_lib() {  # the C runtime and the libraries every Linux has
  case "$1" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libgcc_s.so*|libstdc++.so*|ld-linux*) return 0 ;;
    libz.so*|libudev.so*) return 0 ;;
  esac
  return 1
}
copy_deps() {  # copy_deps FILE...: every non-system library they load, into OUT/lib
  local f lib
  for f in "$@"; do ldd "$f" | awk '/=>/ {print $3}'; done | sort -u | while read -r lib; do
    [[ -n "$lib" ]] || continue
    system_lib "$(basename "$lib")" || cp -L "$lib" "$out/lib/"
  done
}
copy_deps "$bindir/orterun" "$bindir/orted" "$libmpi" ${pmix_lib:+"$pmix_lib"}
# Plugins: those whose every NEEDED library is packed or a system one (no UCX,
# libfabric, verbs, PSM or OpenSHMEM: this is for ranks on one machine).
packed_or_system() { system_lib "$1" || [[ -e "$out/lib/$1" ]]; }
cp -L "$libmpi" "$out/lib/"
[[ -n "$pmix_lib" ]] && cp -L "$pmix_lib" "$out/lib/"
for common in "$libdir"/libmca_common_{sm,monitoring,ompio}.so; do
  cp -L "$common" "$out/lib/$(objdump -p "$common" | awk '/SONAME/ {print $2}')"
done
kept=0 dropped=0
for p in "$pkglibdir"/*.so; do
  ok=1
  for n in $(objdump -p "$p" | awk '/NEEDED/ {print $2}'); do
    packed_or_system "$n" || { ok=0; break; }
  done
  if ((ok)); then cp "$p" "$out/$(rel "$pkglibdir")/"; kept=$((kept + 1)); else dropped=$((dropped + 1)); fi
done
# PMIx (Open MPI's ext3x plugin loads it): its plugins and help texts,
# relocated with PMIX_PREFIX.
if [[ -n "$pmix_lib" ]]; then
  pmix_prefix="$(dirname "$(dirname "$(readlink -f "$pmix_lib")")")"
  mkdir -p "$out/pmix/lib" "$out/pmix/share"
  [[ -d "$pmix_prefix/lib/pmix" ]] && cp -r "$pmix_prefix/lib/pmix" "$out/pmix/lib/"
  [[ -d "$pmix_prefix/share/pmix" ]] && cp -r "$pmix_prefix/share/pmix" "$out/pmix/share/"
fi
find "$out" -type f \( -name '*.so*' -o -path '*/bin/*' \) -exec strip --strip-unneeded {} +
echo "$me: $(ompi_info --version | head -n 1) in $out: $kept plugins ($dropped left out: they need libraries not packed), $(du -sh "$out" | cut -f1)"
