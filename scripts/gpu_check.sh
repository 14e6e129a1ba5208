#!/usr/bin/env bash
# The GPU ledger in one run, on the GPU machine (benchmarks/results/README.md, "GPU ledger"):
#   bash scripts/gpu_check.sh stage               call 1: keeps the first half of the carried bundle
#   bash scripts/gpu_check.sh run OUT [ARGS...]   call 2: unpacks the bundle, runs benchmarks.gpu_check
# The bundle (.gpu_bundle/{a,b}) is made here first by scripts/gpu_bundle.sh. Without .gpu_bundle/b, or with
# SERL_GS_USE_BUNDLE=0, `run` uses the Python environment as it is (e.g. `run OUT --dry-run` on a CPU).
# It calls the machine's own python3 (or $PYTHON) and never pip: that machine reaches no registry.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stage="${SERL_GS_STAGE:-$HOME/serl_gs_stage}"
site="${SERL_GS_SITE:-$HOME/serl_gs_site}"
python="${PYTHON:-python3}"
cmd="${1:-}"
case "$cmd" in
  stage)
    mkdir -p "$stage"
    cp "$root"/.gpu_bundle/a/bundle.part* "$stage"/
    ls -l "$stage"
    ;;
  run)
    [[ $# -ge 2 ]] || { echo "usage: $0 run OUT [gpu_check args...]" >&2; exit 2; }
    out="$2"
    shift 2
    # shellcheck source=scripts/gpu_site.sh
    source "$root/scripts/gpu_site.sh"
    serl_gs_gpu_site
    cd "$root"
    exec "$python" -m benchmarks.gpu_check --out "$out" "$@"
    ;;
  *)
    echo "usage: $0 stage | run OUT [gpu_check args...]" >&2
    exit 2
    ;;
esac
