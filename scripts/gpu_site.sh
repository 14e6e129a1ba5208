# Sourced by scripts/gpu_check.sh and scripts/gpu_learn.sh on the GPU machine: unpacks the carried bundle
# (.gpu_bundle/b here, the staged half in $stage) into $site once, then puts it on PYTHONPATH. Without
# .gpu_bundle/b, or with SERL_GS_USE_BUNDLE=0, the Python environment is used as it is (a CUDA install made by
# ./run_*.sh, or a dry run on a CPU). Reads root, stage, site, python; never calls pip.
serl_gs_gpu_site() {
  if [[ -d "$root/.gpu_bundle/b" && "${SERL_GS_USE_BUNDLE:-1}" != 0 ]]; then
    if [[ ! -f "$site/.complete" ]]; then
      local parts=("$stage"/bundle.part* "$root"/.gpu_bundle/b/bundle.part*)
      [[ -f "${parts[0]}" ]] || { echo "no staged half in $stage: run 'scripts/gpu_check.sh stage' first (call 1)" >&2; exit 2; }
      mkdir -p "$site"
      cat "${parts[@]}" | "$python" -c \
        'import sys, tarfile; tarfile.open(fileobj=sys.stdin.buffer, mode="r|xz").extractall(sys.argv[1], filter="data")' "$site"
      touch "$site/.complete"
    fi
    export PYTHONPATH="$site:$root"
  else
    export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
  fi
  export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
  export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$HOME/torch_ext}"
}
