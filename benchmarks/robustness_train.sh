#!/usr/bin/env bash
# One arm of the robustness experiment (docs/sim2real.md, issue 22 item 5): the CPU pixel preset of
# the cpu_pixels preset (until 2026-12-08 scripts/demo_pixels.sh's; CartpoleBalance-v0 pixels, 32 px, frame stack 3, action repeat 8), trained through
# ./run_learner.sh and ./run_actor.sh for a fixed number of updates, the actor's envs randomized with PRESET.
#   benchmarks/robustness_train.sh RUN_DIR PRESET PORT [MAX_UPDATES] [MAX_SECONDS]
# Both arms (PRESET none and strong) get the same MAX_UPDATES; MAX_SECONDS is only a safety cap (the learner
# logs which one stopped it). benchmarks/robustness_eval.sh then evaluates each arm's final checkpoint.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir=$1 preset=$2 port=$3 max_updates=${4:-6000} max_seconds=${5:-4800}
# The arm's settings are the preset's (serl_gs.nodes.presets.cpu_pixels); only the stop (a fixed update count,
# not the preset's training return) and the kept checkpoints differ. (The kept runs used the same values spelled
# out as flags, before --preset existed.)
"$root/run_learner.sh" --preset cpu_pixels --run_dir "$run_dir" --port "$port" --max_updates "$max_updates" \
  --max_seconds "$max_seconds" --stop_return 0 --keep_checkpoints 10 &
learner_pid=$!
"$root/run_actor.sh" --preset cpu_pixels --randomize "$preset" --learner_host 127.0.0.1 --port "$port" \
  --run_dir "$run_dir" &
actor_pid=$!
trap 'kill $actor_pid $learner_pid 2>/dev/null || true' EXIT
status=0
wait "$learner_pid" || status=$?
kill -INT "$actor_pid" 2>/dev/null || true
wait "$actor_pid" || true
trap - EXIT
echo "[robustness] $preset: learner exited with status $status"
exit "$status"
