#!/usr/bin/env bash
# The README's main job. Until the learner/actor nodes land it runs a batched scripted rollout and prints its
# success rate and throughput. Arguments are forwarded (see: ./run_demo.sh --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/venv.sh"

exec python -m envs.demo "$@"
