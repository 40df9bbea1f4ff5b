# Sourced (bash) on the GPU machine by scripts/gpu_checks.sh and
# benchmarks/peers/run_gpu.sh: makes the bundle of scripts/device_bundle.sh
# runnable there without installing anything.
#   source scripts/bundle_env.sh; bundle_env BUNDLE_DIR CALLER
# 1. unpacks the libraries device_bundle.sh compressed (BUNDLE/lib/*.xz, with
#    python3's lzma module: python3 is the one tool the GPU machine surely has);
# 2. LD_LIBRARY_PATH: BUNDLE/lib, BUNDLE/ompi/lib, then the CUDA toolkit's
#    libraries (cudart, cuBLAS, NVRTC), then every lib/ folder of the NVIDIA
#    wheels in python3's environment (nvidia/nccl/lib, nvidia/cudnn/lib, ...:
#    NCCL and cuDNN are not packed; the wheels also stand in for a toolkit);
# 3. the packed Open MPI (BUNDLE/ompi): OPAL_PREFIX, PMIX_PREFIX, PATH;
# 4. bundle_check_libs BIN...: stops, naming what is missing, when a binary
#    cannot find one of its shared libraries.

# The lib/ folders of python3's NVIDIA wheels, ':'-separated ("" if none).
# `nvidia` is a namespace package: no __file__, its folders are __path__.
bundle_wheel_lib_dirs() {
  python3 - <<'EOF' 2>/dev/null || true
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
dirs = []
for base in list(nvidia.__path__):
    for d in sorted(glob.glob(os.path.join(base, "*", "lib"))):
        if glob.glob(os.path.join(d, "lib*.so*")) and d not in dirs:
            dirs.append(d)
print(":".join(dirs))
EOF
}

bundle_unpack() {  # bundle_unpack BUNDLE CALLER: BUNDLE/lib/X.xz -> BUNDLE/lib/X, once
  local bundle="$1" caller="$2" xzf
  for xzf in "$bundle"/lib/*.xz; do
    [[ -e "$xzf" ]] || continue
    [[ -e "${xzf%.xz}" && "${xzf%.xz}" -nt "$xzf" ]] && continue
    echo "$caller: unpacking $(basename "$xzf")" >&2
    python3 - "$xzf" <<'EOF' || { echo "$caller: could not unpack $xzf with python3's lzma" >&2; return 1; }
import lzma, os, shutil, sys
src = sys.argv[1]
dst = src[:-3]
with lzma.open(src) as i, open(dst + ".part", "wb") as o:
    shutil.copyfileobj(i, o, 1 << 20)
os.chmod(dst + ".part", 0o755)
os.replace(dst + ".part", dst)
EOF
  done
}

bundle_env() {  # bundle_env BUNDLE CALLER
  local bundle="$1" caller="$2" d path="" wheels
  command -v python3 >/dev/null || { echo "$caller: no python3 here (the bundle needs it to unpack)" >&2; return 1; }
  bundle_unpack "$bundle" "$caller" || return 1
  path="$bundle/lib"
  [[ -d "$bundle/ompi/lib" ]] && path="$path:$bundle/ompi/lib"
  for d in ${CUDA_HOME:+"$CUDA_HOME/lib64"} /usr/local/cuda/lib64 /usr/local/cuda/lib \
           /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -e "$d/libcudart.so.13" ]] && path="$path:$d"
  done
  wheels="$(bundle_wheel_lib_dirs)"
  [[ -n "$wheels" ]] && path="$path:$wheels"
  export LD_LIBRARY_PATH="$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if [[ -x "$bundle/ompi/bin/mpirun" ]]; then
    export OPAL_PREFIX="$bundle/ompi" PMIX_PREFIX="$bundle/ompi/pmix"
    export PMIX_LIBDIR="$bundle/ompi/pmix/lib" PMIX_DATADIR="$bundle/ompi/pmix/share"
    export PMIX_DATAROOTDIR="$bundle/ompi/pmix/share"
    export PATH="$bundle/ompi/bin:$PATH"
  fi
}

bundle_check_libs() {  # bundle_check_libs CALLER BIN...: every BIN finds every library
  local caller="$1" b missing bad=0
  shift
  for b in "$@"; do
    [[ -e "$b" ]] || continue
    missing="$( (ldd "$b" 2>&1 || true) | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')"
    if [[ -n "$missing" ]]; then
      echo "$caller: $(basename "$b") cannot find: $missing(looked in LD_LIBRARY_PATH=$LD_LIBRARY_PATH)" >&2
      bad=1
    fi
  done
  ((bad == 0)) || { echo "$caller: install the CUDA 13 toolkit or python3's NVIDIA wheels (nvidia-nccl-cu13, nvidia-cudnn-cu13, nvidia-cublas, nvidia-cuda-nvrtc, nvidia-cuda-runtime)" >&2; return 1; }
}
