#!/usr/bin/env bash
# The pixel main job (./run_demo.sh --pixels): SERL's recipe on two CPU cores. The scripted expert records 20
# successful PandaPickCube episodes, rendered as the policy will see them (front + wrist 3DGS cameras at 32², plus
# proprio); a learner and one local actor then train DrQ + RLPD (half of every batch from the demos) until the
# actor's 2 eval envs, which act with the policy's mean, pick in 11 of their last 12 episodes; then the eval runs
# on the checkpoint the learner wrote and prints the success rate and where the video is.
#   ./run_demo.sh --pixels                            # measured times: docs/pixels-cpu.md
#   PIXEL_STOP_SUCCESS=1 ./run_demo.sh --pixels       # train until all of the last 12 eval-env episodes pick
#   PIXEL_DEMOS=40 ./run_demo.sh --pixels             # record more demonstrations first
#   ./run_demo.sh --pixels --num_envs 12              # extra flags go to the actor (./run_actor.sh --help)
# Training ends by progress (the eval envs' success, not the exploring envs': theirs hovers at 60-75 % while the
# policy's mean picks every time); PIXEL_TRAIN_SECONDS (3600) and PIXEL_MAX_UPDATES (50,000) are safety caps. A
# slower or busier machine takes longer to get there, not a worse policy. The learner says which bound ended
# training and the script repeats it after the eval. Pixel cartpole (DrQ from frames alone) is `--preset
# cpu_pixels` on ./run_learner.sh and ./run_actor.sh (docs/pixels-cpu.md).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/venv.sh"
source "$root/scripts/demo_run.sh"

run_dir="${RUN_DIR:-runs/demo-pixels-$(date +%Y%m%d-%H%M%S)}"
demos="$run_dir/demos.hdf5"
# The preset pick_pixels (serl_gs.nodes.presets; ./run_learner.sh --preset pick_pixels --help shows every value).
# The variables override it.
demo_env_flags overrides PIXEL_STOP_SUCCESS=--stop_success PIXEL_MAX_UPDATES=--max_updates \
  PIXEL_TRAIN_SECONDS=--max_seconds KEEP_CHECKPOINTS=--keep_checkpoints
demo_env_flags port PORT=--port
learner_args=(--preset pick_pixels --run_dir "$run_dir" "${port[@]}" "${overrides[@]}" --demo_path "$demos")
actor_args=(--preset pick_pixels --run_dir "$run_dir" "${port[@]}" "$@")
eval_args=(--checkpoint "$run_dir" --num_envs 16 --episodes 32 --video_episodes 2 --video_size 128)

mkdir -p "$run_dir"
if [[ ! -f "$demos" ]]; then  # (a rerun in the same RUN_DIR resumes training with the demos it recorded)
  echo "[demo] pixels: recording ${PIXEL_DEMOS:-20} scripted demonstrations (--preset pick_pixels's env) into $demos"
  python -m serl_gs.demos record --preset pick_pixels --source scripted --successes "${PIXEL_DEMOS:-20}" \
    --out "$run_dir/demos-recording.hdf5"
  mv "$run_dir/demos-recording.hdf5" "$demos"
fi
echo "[demo] pixels: training DrQ + RLPD (--preset pick_pixels, the learner's first line shows its config);" \
  "run directory: $run_dir"
demo_train_and_eval
