#!/usr/bin/env bash
# Thin launcher: sets up .venv on first use, then runs the eval node with every argument forwarded.
# ./run_eval.sh --help lists its flags.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/venv.sh"
exec python -m actors.evaluate "$@"
