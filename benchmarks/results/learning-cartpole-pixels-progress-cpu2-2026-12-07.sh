#!/usr/bin/env bash
# The run behind learning-cartpole-pixels-progress-cpu2-2026-12-07.json: the pixel main job as it ships
# (./run_demo.sh --pixels, the cpu_pixels preset: training ends when the mean training return of the last 16
# episodes reaches 800, with 40-minute / 25,000-update safety caps), every checkpoint kept; then each checkpoint
# evaluated twice, 8 episodes each: the deterministic policy (tanh(mean), what run_eval.sh reports) and sampled
# actions (--stochastic, as the actors act), to tell the policy's mean from the policy; then the result JSON.
#   benchmarks/results/learning-cartpole-pixels-progress-cpu2-2026-12-07.sh RUN_DIR PORT
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
run_dir=$1 port=$2
cd "$root"
PORT=$port RUN_DIR=$run_dir KEEP_CHECKPOINTS=100 nice -n 10 ./run_demo.sh --pixels
steps=$(ls "$run_dir/checkpoints" | grep -E '^[0-9]+$' | sort -n)
for step in $steps; do  # the newest was evaluated by run_demo.sh
  [[ -f "$run_dir/eval/$step/summary.json" ]] || nice -n 10 ./run_eval.sh --checkpoint "$run_dir/checkpoints/$step" \
    --num_envs 8 --episodes 8 --video_episodes 0
done
for step in $(echo "$steps" | sort -rn); do  # newest first
  nice -n 10 ./run_eval.sh --checkpoint "$run_dir/checkpoints/$step" --num_envs 8 --episodes 8 --video_episodes 0 \
    --stochastic --out_dir "$run_dir/eval_stochastic/$step"
done
