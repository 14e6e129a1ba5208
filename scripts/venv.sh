#!/usr/bin/env bash
# Sourced by every launcher: makes sure .venv exists and matches requirements.txt, then activates it.
# The venv is rebuilt when requirements.txt changes (its hash is stored inside the venv).
set -euo pipefail
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="${SERL_GS_VENV:-$_root/.venv}"
# Contents only (not paths), so the same checkout anywhere gets the same key.
_want="$(cat "$_root/requirements.txt" "$_root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
_have="$(cat "$_venv/.serl_gs_requirements" 2>/dev/null || true)"
# SERL_GS_VENV_AS_IS=1 uses an existing venv without checking it (developers sharing one venv across worktrees).
if [[ "${SERL_GS_VENV_AS_IS:-0}" != 1 && "$_want" != "$_have" ]]; then
  echo "[serl_gs] setting up $_venv from requirements.txt (first use or requirements changed)..." >&2
  rm -rf "$_venv"
  python3 -m venv "$_venv"
  "$_venv/bin/python" -m pip install -q --upgrade pip >&2
  "$_venv/bin/python" -m pip install -q -r "$_root/requirements.txt" >&2
  "$_venv/bin/python" -m pip install -q --no-deps -e "$_root" >&2
  echo "$_want" > "$_venv/.serl_gs_requirements"
fi
# shellcheck disable=SC1091
source "$_venv/bin/activate"
# JAX and PyTorch share one GPU: neither may grab all of its memory up front.
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
export PYTHONPATH="$_root${PYTHONPATH:+:$PYTHONPATH}"
