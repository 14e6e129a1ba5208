#!/usr/bin/env bash
# The test command: builds .venv on first use, lints, then runs the whole suite.
# Extra arguments go to pytest (e.g. ./run_tests.sh -k transport).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/venv.sh"
ruff check .
python -m pytest "$@"
