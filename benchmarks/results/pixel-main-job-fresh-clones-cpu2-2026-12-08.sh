#!/usr/bin/env bash
# The command of pixel-main-job-fresh-clones-cpu2-2026-12-08.jsonl (issue 25, item 6): the pixel main job from a
# fresh clone, as a user runs it (`git clone REPO D && cd D && ./run_demo.sh --pixels`, which builds its own venv),
# then one JSON line from the run's files: what stopped training, the eval of the final checkpoint (32 episodes,
# deterministic) against the goal it trained for (90 % success: --preset pick_pixels's stop), and the wall time
# from clone to the eval's end.
#   RUN=1 PORT=6940 bash benchmarks/results/pixel-main-job-fresh-clones-cpu2-2026-12-08.sh >> OUT.jsonl
#   HOG=1 ...   the same beside a one-core busy loop (python `while True`), started first and killed at the end
# REPO (default: this checkout's directory) is what is cloned; the clone goes to /tmp/pixel-main-job-$RUN.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REPO="${REPO:-$here}"; RUN="${RUN:?set RUN, e.g. 1}"; PORT="${PORT:-6940}"; HOG="${HOG:-0}"
clone="/tmp/pixel-main-job-$RUN"
rm -rf "$clone"
hog=""
if [[ "$HOG" == 1 ]]; then
  python3 -c 'while True: pass' &
  hog=$!
  trap 'kill $hog 2>/dev/null || true' EXIT
fi
start=$SECONDS
git clone -q "$REPO" "$clone"
commit="$(git -C "$clone" rev-parse --short HEAD)"
(cd "$clone" && PORT="$PORT" RUN_DIR=runs/pixels ./run_demo.sh --pixels > demo.log 2>&1)
wall=$((SECONDS - start))
python3 - "$clone" "$RUN" "$commit" "$wall" "$HOG" "$PORT" <<'PY'
import glob, json, sys
clone, run, commit, wall, hog, port = sys.argv[1:]
stop = json.load(open(f"{clone}/runs/pixels/training_stop.json"))
summary = json.load(open(sorted(glob.glob(f"{clone}/runs/pixels/eval/*/summary.json"))[-1]))
machine = "cpu (2 cores, x86_64), " + ("beside a one-core busy loop (python while True)" if hog == "1" else "alone")
print(json.dumps({
    "figure": "pixel_main_job_fresh_clone", "run": int(run), "commit": commit,
    "command": f"git clone REPO D && cd D && PORT={port} ./run_demo.sh --pixels", "machine": machine,
    "wall_s_with_venv": int(wall), "stop_reason": stop["stop_reason"], "stop_line": stop["line"],
    "updates": stop["updates"], "train_seconds": round(stop["seconds"], 1),
    "training_success": stop.get("training_success"), "eval_env_success": stop.get("eval_success"),
    "eval_episodes": summary["episodes"], "eval_success": summary["success_rate"],
    "eval_return_mean": round(summary["return_mean"], 2), "eval_return_std": round(summary["return_std"], 2),
    "goal_success": 0.9, "reached_goal": summary["success_rate"] >= 0.9}))
PY
