#!/usr/bin/env bash
# The run behind learning-cartpole-pixels-nstep-cpu2-2026-12-07.json (issue 25: why the pixel cartpole policy
# swings between checkpoints): the pixel main job's preset (cpu_pixels) with one change, LEARNER_EXTRA (e.g.
# "--n_step 3"), trained to a fixed update count with no progress stop, every checkpoint (1,000 updates apart)
# kept and evaluated (deterministic policy, 8 episodes), then the result JSON. The baseline is the preset's
# own 30-minute curve (learning-cartpole-pixels-cpu2-2026-12-06.json, n_step 1), compared per update.
#   LEARNER_EXTRA="--n_step 3" benchmarks/results/learning-cartpole-pixels-nstep-cpu2-2026-12-07.sh RUN_DIR PORT
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
run_dir=$1 port=$2
read -r -a extra <<< "${LEARNER_EXTRA:---n_step 3}"
cd "$root"
mkdir -p "$run_dir"
caps=(--stop_return 0 --max_updates "${MAX_UPDATES:-10000}" --max_seconds "${MAX_SECONDS:-2400}" --keep_checkpoints 100)
nice -n 10 ./run_learner.sh --preset cpu_pixels "${extra[@]}" "${caps[@]}" --run_dir "$run_dir" --port "$port" \
  > "$run_dir/learner.log" 2>&1 &
learner=$!
nice -n 10 ./run_actor.sh --preset cpu_pixels --run_dir "$run_dir" --port "$port" > "$run_dir/actor.log" 2>&1 &
actor=$!
trap 'kill $actor $learner 2>/dev/null || true' EXIT
wait "$learner" || true
kill -INT "$actor" 2>/dev/null || true
wait "$actor" || true
trap - EXIT
for step in $(ls "$run_dir/checkpoints" | grep -E '^[0-9]+$' | sort -n); do
  [[ -f "$run_dir/eval/$step/summary.json" ]] || nice -n 10 ./run_eval.sh --checkpoint "$run_dir/checkpoints/$step" \
    --num_envs 8 --episodes 8 --video_episodes 0 --out_dir "$run_dir/eval/$step" > /dev/null
done
python -m benchmarks.learning_curve "$run_dir" \
  --command "LEARNER_EXTRA=\"${extra[*]}\" $0 $*" > "${OUT:-$root/benchmarks/results/learning-cartpole-pixels-nstep-cpu2-2026-12-07.json}"
