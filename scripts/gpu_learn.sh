#!/usr/bin/env bash
# One short GPU run that learns (benchmarks/gpu_learn.py; docs/gpu.md): learner + actor processes on one GPU train
# DrQ on pixel PandaPickCube (front + wrist 3DGS, MJX-Warp + gsplat, 1,024 envs) to 90 % training success or the
# time cap, then the eval with a video of the frames the policy saw; results into OUT.
#   bash scripts/gpu_learn.sh OUT [--dry-run] [--budget_s S]
# On the GPU ledger machine (benchmarks/results/README.md, "GPU ledger"): device call 1 carries .gpu_bundle/a
# and runs `bash scripts/gpu_check.sh stage`; call 2 carries .gpu_bundle/b and runs `bash scripts/gpu_learn.sh
# "$OUT"` (it unpacks the bundle, as gpu_check does, and uses the machine's own python3 or $PYTHON).
# On a user's machine: ./run_demo.sh calls this after installing the CUDA set (scripts/venv.sh), so `python3`
# is the venv's; without .gpu_bundle/b the Python environment is used as it is.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stage="${SERL_GS_STAGE:-$HOME/serl_gs_stage}"
site="${SERL_GS_SITE:-$HOME/serl_gs_site}"
python="${PYTHON:-python3}"
[[ $# -ge 1 && "$1" != -* ]] || { echo "usage: $0 OUT [--dry-run] [--budget_s S] [--port P] [--run_dir DIR]" >&2; exit 2; }
out="$1"
shift
# shellcheck source=scripts/gpu_site.sh
source "$root/scripts/gpu_site.sh"
serl_gs_gpu_site
cd "$root"
exec "$python" -m benchmarks.gpu_learn --out "$out" "$@"
