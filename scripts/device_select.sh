#!/usr/bin/env bash
# Which package set the venv gets: cpu (requirements.txt), cuda12 or cuda13 (requirements-cuda12.txt /
# requirements-cuda13.txt: requirements.txt plus JAX's CUDA plugin and a CUDA torch of the same versions).
#   SERL_GS_DEVICE=auto (default)  nvidia-smi present and answering -> CUDA 13 when its driver is >= 580, CUDA 12
#                                  when >= 525 (older: one line saying to update the driver); else cpu
#   SERL_GS_DEVICE=cpu|cuda|cuda12|cuda13   that set (cuda: 12 or 13 by the driver, as auto does)
# Sourced by scripts/venv.sh (serl_gs_select_device sets SERL_GS_DEVICE_SET and SERL_GS_DEVICE_REASON), or run
# alone to print "SET<TAB>REASON" without touching any venv (tests/test_install_select.py does).

# Driver versions that run each CUDA major's runtime (NVIDIA's CUDA compatibility table: CUDA 13.0 needs
# 580+, CUDA 12.x 525+ through minor-version compatibility).
SERL_GS_CUDA13_MIN_DRIVER=580
SERL_GS_CUDA12_MIN_DRIVER=525

# The driver version nvidia-smi reports for the first GPU (e.g. 580.65.06), or nothing when it is absent or fails.
serl_gs_driver_version() {
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  local out
  # One line per GPU; the first is kept by bash, not `| head -n1`: under the launchers' `set -o pipefail` head's
  # early exit can kill nvidia-smi with SIGPIPE and fail the pipeline, so a GPU machine would read as a CPU one.
  out="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null)" || return 0
  out="${out%%$'\n'*}"
  out="${out//[[:space:]]/}"
  [[ "$out" =~ ^[0-9]+(\.[0-9]+)*$ ]] && echo "$out"
  return 0
}

# Sets SERL_GS_DEVICE_SET (cpu|cuda12|cuda13) and SERL_GS_DEVICE_REASON; returns 2 with a one-line error on
# stderr for a bad SERL_GS_DEVICE or a driver too old for either CUDA set.
serl_gs_select_device() {
  local want="${SERL_GS_DEVICE:-auto}" driver major
  case "$want" in
    cpu) SERL_GS_DEVICE_SET=cpu; SERL_GS_DEVICE_REASON="SERL_GS_DEVICE=cpu"; return 0 ;;
    cuda12|cuda13) SERL_GS_DEVICE_SET="$want"; SERL_GS_DEVICE_REASON="SERL_GS_DEVICE=$want"; return 0 ;;
    auto|cuda) ;;
    *)
      echo "error: SERL_GS_DEVICE=$want is not one of auto, cpu, cuda, cuda12, cuda13" >&2
      return 2 ;;
  esac
  driver="$(serl_gs_driver_version)"
  if [[ -z "$driver" ]]; then
    if [[ "$want" == cuda ]]; then
      echo "error: SERL_GS_DEVICE=cuda, but nvidia-smi is missing or reports no driver version, so CUDA 12 vs 13" \
        "cannot be chosen: set SERL_GS_DEVICE=cuda12 or cuda13" >&2
      return 2
    fi
    SERL_GS_DEVICE_SET=cpu
    if command -v nvidia-smi >/dev/null 2>&1; then
      SERL_GS_DEVICE_REASON="auto: nvidia-smi is there but reports no driver version (SERL_GS_DEVICE=cuda12|cuda13 to override)"
    else
      SERL_GS_DEVICE_REASON="auto: no nvidia-smi (SERL_GS_DEVICE=cuda12|cuda13 to override)"
    fi
    return 0
  fi
  major="${driver%%.*}"
  if (( major >= SERL_GS_CUDA13_MIN_DRIVER )); then
    SERL_GS_DEVICE_SET=cuda13
  elif (( major >= SERL_GS_CUDA12_MIN_DRIVER )); then
    SERL_GS_DEVICE_SET=cuda12
  else
    echo "error: NVIDIA driver $driver is older than CUDA 12 needs ($SERL_GS_CUDA12_MIN_DRIVER+): update the driver," \
      "or SERL_GS_DEVICE=cpu for the CPU set" >&2
    return 2
  fi
  SERL_GS_DEVICE_REASON="${want}: nvidia-smi reports driver $driver (CUDA 13 needs $SERL_GS_CUDA13_MIN_DRIVER+, CUDA 12 $SERL_GS_CUDA12_MIN_DRIVER+)"
  return 0
}

# The requirements file of a set, relative to the checkout.
serl_gs_requirements_file() {
  case "$1" in
    cpu) echo requirements.txt ;;
    *) echo "requirements-$1.txt" ;;
  esac
}

# The venv's key for a set: its name and the contents (not paths) of the files it installs from, so the same
# checkout anywhere gets the same key and another set gets another venv build.
serl_gs_venv_key() {
  local root="$1" set="$2"
  (echo "$set"; cat "$root/requirements.txt" "$root/$(serl_gs_requirements_file "$set")" "$root/pyproject.toml") \
    | sha256sum | cut -d' ' -f1
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then  # run, not sourced
  serl_gs_select_device || exit $?
  printf '%s\t%s\n' "$SERL_GS_DEVICE_SET" "$SERL_GS_DEVICE_REASON"
fi
