#!/usr/bin/env bash
# Sourced by every launcher: makes sure the venv exists and matches its package set, then activates it.
# The set is cpu (requirements.txt) or cuda12/cuda13 (requirements-cuda1X.txt), chosen by scripts/device_select.sh
# from SERL_GS_DEVICE (auto by default: nvidia-smi and its driver version; docs/gpu.md) and printed once per start.
# The venv is rebuilt when the set or its files change (their hash is stored inside the venv).
set -euo pipefail
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="${SERL_GS_VENV:-$_root/.venv}"
# shellcheck source=scripts/device_select.sh
source "$_root/scripts/device_select.sh"
serl_gs_select_device || exit $?
_reqs="$(serl_gs_requirements_file "$SERL_GS_DEVICE_SET")"
_want="$(serl_gs_venv_key "$_root" "$SERL_GS_DEVICE_SET")"
_have="$(cat "$_venv/.serl_gs_requirements" 2>/dev/null || true)"
# SERL_GS_VENV_AS_IS=1 uses an existing venv without checking it (developers sharing one venv across worktrees).
if [[ "${SERL_GS_VENV_AS_IS:-0}" == 1 ]]; then
  echo "[serl_gs] packages: $_venv as it is (SERL_GS_VENV_AS_IS=1; the $SERL_GS_DEVICE_SET set would be chosen:" \
    "$SERL_GS_DEVICE_REASON)" >&2
else
  echo "[serl_gs] packages: the $SERL_GS_DEVICE_SET set ($_reqs; $SERL_GS_DEVICE_REASON)" >&2
fi
if [[ "${SERL_GS_VENV_AS_IS:-0}" != 1 && "$_want" != "$_have" ]]; then
  echo "[serl_gs] setting up $_venv from $_reqs (first use, or the set or its files changed)..." >&2
  rm -rf "$_venv"
  python3 -m venv "$_venv"
  "$_venv/bin/python" -m pip install -q --upgrade pip >&2
  "$_venv/bin/python" -m pip install -q -r "$_root/$_reqs" >&2
  "$_venv/bin/python" -m pip install -q --no-deps -e "$_root" >&2
  echo "$_want" > "$_venv/.serl_gs_requirements"
fi
# shellcheck disable=SC1091
source "$_venv/bin/activate"
# JAX and PyTorch share one GPU: neither may grab all of its memory up front.
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
export PYTHONPATH="$_root${PYTHONPATH:+:$PYTHONPATH}"
