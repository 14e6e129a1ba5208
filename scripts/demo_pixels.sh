#!/usr/bin/env bash
# The pixel main job (./run_demo.sh --pixels): a learner and one local actor train DrQ on CartpoleBalance-v0
# from its 3DGS camera only (no state; DrQ's setting: action repeat 8, the last 3 frames per observation,
# random-shift augmentation), then the eval runs on the checkpoint the learner wrote and prints the return
# (out of 1000; uniform random actions score ~280) and where the video of the policy's frames is.
#   ./run_demo.sh --pixels                           # measured times: docs/pixels-cpu.md
#   PIXEL_STOP_RETURN=900 ./run_demo.sh --pixels     # train to a higher training return (the preset: 800)
#   PIXEL_STOP_RETURN=0 PIXEL_TRAIN_SECONDS=1800 KEEP_CHECKPOINTS=100 ./run_demo.sh --pixels   # 30 min, every
#                                                    # checkpoint kept, for run_eval.sh on each (learning_curve.py)
#   ./run_demo.sh --pixels --num_envs 16             # extra flags go to the actor (./run_actor.sh --help)
# Training ends by progress: once the mean return of the last 16 training episodes (the actor's sampled actions)
# reaches PIXEL_STOP_RETURN (800 of 1000); PIXEL_TRAIN_SECONDS (2400) and PIXEL_MAX_UPDATES (25,000) are safety
# caps. A slower or busier machine takes longer to get there, not a worse policy. The learner says which bound
# ended training and the script repeats it after the eval (the run's figures: docs/pixels-cpu.md).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/venv.sh"
source "$root/scripts/demo_run.sh"

run_dir="${RUN_DIR:-runs/demo-pixels-$(date +%Y%m%d-%H%M%S)}"
# The CPU pixel preset (serl_gs.nodes.presets.cpu_pixels: serl_gs.agents.config.cpu_pixel_preset's agent,
# docs/pixels-cpu.md; ./run_learner.sh --preset cpu_pixels --help shows every value). The variables override it.
demo_env_flags overrides PIXEL_STOP_RETURN=--stop_return PIXEL_MAX_UPDATES=--max_updates \
  PIXEL_TRAIN_SECONDS=--max_seconds KEEP_CHECKPOINTS=--keep_checkpoints
demo_env_flags port PORT=--port
learner_args=(--preset cpu_pixels --run_dir "$run_dir" "${port[@]}" "${overrides[@]}")
actor_args=(--preset cpu_pixels --run_dir "$run_dir" "${port[@]}" "$@")
eval_args=(--checkpoint "$run_dir" --num_envs 8 --episodes 8 --video_episodes 2 --policy_frames)

echo "[demo] pixels: training DrQ (--preset cpu_pixels, the learner's first line shows its config);" \
  "run directory: $run_dir"
demo_train_and_eval
