#!/usr/bin/env bash
# Proves the CUDA package sets resolve: `pip install --dry-run` of requirements-cuda12.txt and
# requirements-cuda13.txt for this Python on Linux x86-64, as a GPU machine's first ./run_*.sh would install them.
# Not CI (it needs the package index). pip fetches each wheel's metadata only where the index serves it apart
# (PEP 658), else the wheel; nothing is installed. Run it after changing a pin:
#   bash scripts/check_cuda_pins.sh            # both sets
#   bash scripts/check_cuda_pins.sh cuda13     # one set
# Local pip settings are ignored (PIP_CONFIG_FILE=/dev/null): a machine whose pip.conf points at a folder of CPU
# wheels would otherwise satisfy `torch==2.13.0` with torch 2.13.0+cpu. An index that does not answer (e.g. the
# PyTorch index from a machine that reaches only the default one) is reported, and the set is then checked
# without the lines that need it, so the rest of the set is still proven.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sets=("${@:-cuda12}")
[[ $# -gt 0 ]] || sets=(cuda12 cuda13)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip)
export PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
status=0
for set in "${sets[@]}"; do
  file="$root/requirements-$set.txt"
  [[ -f "$file" ]] || { echo "no $file (sets: cuda12, cuda13)" >&2; exit 2; }
  echo "== $set: pip install --dry-run -r requirements-$set.txt" >&2
  if "${pip[@]}" install --dry-run --ignore-installed --timeout 20 --retries 1 --report "$work/$set.json" \
      -r "$file" >"$work/$set.log" 2>&1; then
    checked="the whole file"
  else
    index="$(grep -oE -- '--extra-index-url +[^ ]+' "$file" | awk '{print $2}' || true)"
    host="${index#*://}"; host="${host%%/*}"
    if [[ -n "$index" ]] && grep -qE "($host|Network is unreachable|timed out|ConnectTimeout|NewConnectionError)" \
        "$work/$set.log" && grep -q "$host" "$work/$set.log"; then
      echo "   $index does not answer from here; checking $set without the lines that need it:" >&2
      (cd "$root" && grep -vE -- '^--extra-index-url|\+cu[0-9]+' "$file") > "$work/$set-without-index.txt"
      grep -E '\+cu[0-9]+' "$file" | sed 's/^/   not checked here: /' >&2
      sed -i "s|^-r requirements.txt|-r $root/requirements.txt|" "$work/$set-without-index.txt"
      if "${pip[@]}" install --dry-run --ignore-installed --timeout 20 --retries 1 --report "$work/$set.json" \
          -r "$work/$set-without-index.txt" >"$work/$set.log" 2>&1; then
        checked="all but its PyTorch-index lines"
      else
        tail -n 20 "$work/$set.log" >&2; status=1; continue
      fi
    else
      tail -n 20 "$work/$set.log" >&2; status=1; continue
    fi
  fi
  "$work/venv/bin/python" - "$work/$set.json" "$set" "$checked" <<'PY'
import json, sys
report, name, checked = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
pins = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report["install"]}
key = [p for p in pins if p.startswith(("jax", "torch", "cuda-toolkit", "nvidia-cudnn"))]
print(json.dumps({"set": name, "resolves": True, "checked": checked, "packages": len(pins),
                  "key": {p: pins[p] for p in sorted(key)}}))
PY
done
exit "$status"
