#!/usr/bin/env bash
# Run HERE (any x86-64 or Arm machine with pip and a registry), once per checkout, before a GPU run: packs the
# packages the GPU machine lacks (its own Python 3.12 has torch, jax, numpy, flax, optax, orbax, chex, msgpack,
# absl, scipy, imageio, cloudpickle, etils, pytest, ninja, nvcc; imageio-ffmpeg, which writes gpu_learn's eval
# video, travels without its 165 MB ffmpeg binary: it then uses the machine's own ffmpeg, if any) into .gpu_bundle/{a,b}, each under the 64 MiB a device call may carry. Every version is requirements.txt's pin (the same pins the CUDA sets,
# requirements-cuda1X.txt, install on a user's GPU machine); a package without one there stops this script.
# What the machine brings itself (torch, jax and its CUDA plugin) is its own version, not our pin: gpu_learn and
# gpu_check print the versions they ran with.
#
# Why two halves: warp-lang's wheel is 149 MB and its warp.so alone compresses to ~77 MB, more than one call
# carries. So the run is two device calls, the second within the machine's idle window (~30 s) of the first:
#   1. carry [".gpu_bundle/a"], command: bash scripts/gpu_check.sh stage
#   2. carry [".gpu_bundle/b"], command: bash scripts/gpu_check.sh run "$OUT"
# (benchmarks/results/README.md, "GPU ledger", has the exact calls.) What the bundle leaves out on purpose:
# warp's CPU compiler (warp-clang.so, 69 MB: CUDA kernels compile through NVRTC inside warp.so), warp's and
# MJX's tests and examples, MuJoCo's Studio GUI (mujoco/experimental).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
pin() {  # the pinned requirement line for a package name, e.g. "mujoco==3.17.0"
  local line
  line="$(grep -iE "^$1==" requirements.txt | sed 's/[[:space:]]*#.*//')" || { echo "no pin for $1" >&2; return 1; }
  echo "$line"
}
packages=(
  "$(pin mujoco)" "$(pin mujoco-mjx)" "$(pin warp-lang)" "$(pin gsplat)" "$(pin gymnasium)" "$(pin pyzmq)"
  "$(pin tensorboardX)" "$(pin farama-notifications)" "$(pin trimesh)" "$(pin imageio-ffmpeg)"
  "$(pin tyro)" "$(pin docstring-parser)" "$(pin typeguard)" "$(pin typing-extensions)"  # the nodes' flags
)
for p in "${packages[@]}"; do [[ -n "$p" ]] || { echo "a package has no pin in requirements.txt" >&2; exit 1; }; done
if [[ "${1:-}" == --list ]]; then  # what would be packed, one requirement a line (tests/test_install_select.py)
  printf '%s\n' "${packages[@]}"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip install -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  --target "$work/site" "${packages[@]}"
rm -rf "$work/site/warp/bin/warp-clang.so" "$work/site/warp/tests" "$work/site/warp/examples" \
  "$work/site/mujoco/mjx/test_data" "$work/site/mujoco/experimental" "$work/site/bin" \
  "$work/site/imageio_ffmpeg/binaries/"ffmpeg-*
find "$work/site" -name __pycache__ -type d -prune -exec rm -rf {} +
tar -C "$work/site" -cf - . | xz -6 -T2 > "$work/bundle.tar.xz"
size=$(stat -c %s "$work/bundle.tar.xz")
half=$(( (size + 1) / 2 ))
if (( half > 60 * 1024 * 1024 )); then
  echo "bundle is $size bytes: a half would exceed 60 MiB; split it in three and add a stage call" >&2
  exit 1
fi
rm -rf .gpu_bundle
mkdir -p .gpu_bundle/a .gpu_bundle/b
split -b "$half" -d -a 2 "$work/bundle.tar.xz" "$work/bundle.part"
mv "$work/bundle.part00" .gpu_bundle/a/
mv "$work/bundle.part01" .gpu_bundle/b/
exclude="$(git rev-parse --git-path info/exclude)"  # git ignores the bundle; device calls carry it by name
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu_bundle/' "$exclude" 2>/dev/null || echo '/.gpu_bundle/' >> "$exclude"
ls -l .gpu_bundle/a .gpu_bundle/b
echo "packed: ${packages[*]}"
