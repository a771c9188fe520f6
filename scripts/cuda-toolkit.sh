#!/usr/bin/env bash
# The CUDA toolkit candle's `cuda` feature compiles with, from PyPI's wheels (no GPU, no system
# CUDA needed): installs it once into a project-local folder (.cuda, ≈ 1.2 GB) and exports what
# the build reads: nvcc on PATH and in NVCC, CUDA_HOME/CUDA_PATH/CUDA_ROOT (cudarc links from
# there), CUDA_COMPUTE_CAP (candle-kernels compiles for it) and CUDARC_CUDA_VERSION.
# Sourced from the repository root by scripts/build-cuda and scripts/test.
# Environment: TUNELAB_CUDA_DIR (default .cuda), CUDA_COMPUTE_CAP (default 90; see build-cuda),
# TUNELAB_CUDA_TOOLKIT_FROM (an existing `pip --target` folder of the same wheels to link from
# instead of downloading).

cuda_toolkit_die() {
  echo "cuda-toolkit: error: $*" >&2
  exit 1
}

# The CUDA version the GPU machines' driver (580) supports: PTX from a newer nvcc may not load.
cuda_release="13.0"
# nvcc with its headers and CCCL (thrust, cub), and the libraries cudarc links: cudart, cuBLAS
# (+ cuBLASLt), cuRAND, NVRTC. The -cu12 nvcc wheel has no nvcc binary; the CUDA 13 ones do.
cuda_requirement="cuda-toolkit[nvcc,cudart,cccl,cublas,curand,nvrtc]==${cuda_release}.*"
cuda_dir="$PWD/${TUNELAB_CUDA_DIR:-.cuda}"
cuda_home="$cuda_dir/nvidia/cu13"

# A stamp records the requirement the folder was installed for: a second run skips pip, a
# changed pin reinstalls.
cuda_stamp="$cuda_dir/.tunelab-toolkit"
if [ -f "$cuda_stamp" ] && [ "$(cat "$cuda_stamp")" = "$cuda_requirement" ] && [ -x "$cuda_home/bin/nvcc" ]; then
  :
elif [ -n "${TUNELAB_CUDA_TOOLKIT_FROM:-}" ]; then
  [ -x "$TUNELAB_CUDA_TOOLKIT_FROM/nvidia/cu13/bin/nvcc" ] ||
    cuda_toolkit_die "$TUNELAB_CUDA_TOOLKIT_FROM has no nvidia/cu13/bin/nvcc"
  echo "cuda-toolkit: linking the CUDA wheels from $TUNELAB_CUDA_TOOLKIT_FROM into $cuda_dir" >&2
  rm -rf "$cuda_dir"
  # Hard links cost no space; build-cuda only ever adds files beside them, never changes one.
  cp -al "$TUNELAB_CUDA_TOOLKIT_FROM" "$cuda_dir" 2>/dev/null || cp -a "$TUNELAB_CUDA_TOOLKIT_FROM" "$cuda_dir" ||
    cuda_toolkit_die "could not copy $TUNELAB_CUDA_TOOLKIT_FROM"
  rm -rf "$cuda_home/lib/stubs"
  echo "$cuda_requirement" >"$cuda_stamp"
else
  if ! python3 -m pip --version >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "cuda-toolkit: installing python3-pip" >&2
    cuda_sudo=""
    if [ "$(id -u)" != 0 ]; then cuda_sudo="sudo"; fi
    $cuda_sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $cuda_sudo apt-get install -y -qq --no-install-recommends python3-pip
  fi
  python3 -m pip --version >/dev/null 2>&1 || cuda_toolkit_die "python3 with pip is needed (apt-get install python3-pip)"
  echo "cuda-toolkit: installing $cuda_requirement into $cuda_dir (≈ 1.2 GB)" >&2
  rm -rf "$cuda_dir"
  # --target also works with a Debian/Ubuntu python3 that refuses system-wide installs (PEP 668).
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$cuda_dir" "$cuda_requirement" ||
    cuda_toolkit_die "pip could not install $cuda_requirement (no network? no wheels for this platform?)"
  echo "$cuda_requirement" >"$cuda_stamp"
fi

[ -x "$cuda_home/bin/nvcc" ] || cuda_toolkit_die "no nvcc at $cuda_home/bin/nvcc after installing $cuda_requirement"
nvcc_release="$("$cuda_home/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\),.*/\1/p')"
[ "$nvcc_release" = "$cuda_release" ] ||
  cuda_toolkit_die "nvcc in $cuda_home reports release '$nvcc_release', expected $cuda_release"

export CUDA_HOME="$cuda_home" CUDA_PATH="$cuda_home" CUDA_ROOT="$cuda_home"
export NVCC="$cuda_home/bin/nvcc" PATH="$cuda_home/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
[[ "$CUDA_COMPUTE_CAP" =~ ^[0-9]+[a-z]?$ ]] ||
  cuda_toolkit_die "CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP is not like 80, 90 or 90a"
# candle asks cudarc to read the version from `nvcc --version`; saying it keeps that explicit.
export CUDARC_CUDA_VERSION="${cuda_release%%.*}0${cuda_release#*.}0"
