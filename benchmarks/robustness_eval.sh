#!/usr/bin/env bash
# Evaluates one checkpoint of a robustness arm (benchmarks/robustness_train.sh) through ./run_eval.sh, unshifted
# and under each held-out shift (serl_gs.randomize.SHIFTS, outside every range the strong preset trains in):
#   benchmarks/robustness_eval.sh CHECKPOINT_STEP_FOLDER OUT_DIR [EPISODES]
# Writes OUT_DIR/<shift>/summary.json for shift in none camera lighting background (the same eval seed each).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
checkpoint=$1 out=$2 episodes=${3:-16}
for shift in none camera lighting background; do
  "$root/run_eval.sh" --checkpoint "$checkpoint" --num_envs 8 --episodes "$episodes" --video_episodes 0 \
    --render_backend reference --physics mujoco --randomize none --shift "$shift" --out_dir "$out/$shift"
done
