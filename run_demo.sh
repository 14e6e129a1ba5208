#!/usr/bin/env bash
# The README's main job: a learner and one local actor on localhost with CPU defaults train state-based SAC on
# PandaPickCube-v0 until the policy picks reliably, then the eval runs on the checkpoint the learner wrote.
#   ./run_demo.sh                         # ~10 minutes in all on a quiet 2-core CPU
#   STOP_SUCCESS=0.5 ./run_demo.sh        # stop training earlier (training success over the last 64 episodes)
#   ./run_demo.sh --num_envs 64           # extra flags go to the actor (./run_actor.sh --help)
# Training ends at the first of: training success (stochastic policy, last SUCCESS_WINDOW episodes) reaching
# STOP_SUCCESS, MAX_UPDATES updates, TRAIN_SECONDS seconds; the learner says which. A slower machine takes
# longer to get there, not a worse policy, up to the caps.
#   ./run_demo.sh --pixels                # the pixel main job: DrQ on CartpoleBalance from 3DGS frames only
#                                         # (action repeat 8, 3-frame stacks), bounded by PIXEL_MAX_UPDATES
#                                         # updates with a PIXEL_TRAIN_SECONDS cap (~15 min on a 2-core CPU)
# On a machine with an NVIDIA GPU (the CUDA set, scripts/device_select.sh) it runs the GPU main job instead:
# scripts/gpu_learn.sh, pixel DrQ on PandaPickCube with 1,024 MJX-Warp + gsplat envs to 90 % training success
# or its ~9-minute budget, then the eval and a video (docs/gpu.md). SERL_GS_DEMO=cpu runs the CPU job there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ "${1:-}" == "--pixels" ]]; then
  shift
  exec "$root/scripts/demo_pixels.sh" "$@"
fi
source "$root/scripts/venv.sh"
if [[ "$SERL_GS_DEVICE_SET" != cpu && "${SERL_GS_DEMO:-auto}" != cpu ]]; then
  out="${RUN_DIR:-runs/demo-gpu-$(date +%Y%m%d-%H%M%S)}"
  echo "[demo] the $SERL_GS_DEVICE_SET set: the GPU main job (scripts/gpu_learn.sh: pixel PandaPickCube, 1,024" \
    "MJX-Warp + gsplat envs); results in $out (SERL_GS_DEMO=cpu for the CPU job)"
  SERL_GS_USE_BUNDLE=0 exec "$root/scripts/gpu_learn.sh" "$out" --run_dir "$out/run" "$@"
fi
echo "[demo] the cpu set: the CPU main job (state SAC on PandaPickCube)"
source "$root/scripts/demo_run.sh"

run_dir="${RUN_DIR:-runs/demo-$(date +%Y%m%d-%H%M%S)}"
stop_success="${STOP_SUCCESS:-0.75}"
success_window="${SUCCESS_WINDOW:-64}"
max_updates="${MAX_UPDATES:-100000}"
train_seconds="${TRAIN_SECONDS:-3600}"
port="${PORT:-5588}"
env_id="serl_gs/PandaPickCube-v0"

learner_args=(
  --env "$env_id" --run_dir "$run_dir" --port "$port"
  --stop_success "$stop_success" --success_window "$success_window" --max_updates "$max_updates"
  --max_seconds "$train_seconds"
  --training_starts 2000 --utd 0.25 --n_step 3 --hidden_dims 128,128 --critic_ensemble_size 4 --batch_size 128
  --critic_actor_ratio 2 --lr 1e-3 --checkpoint_every 5000 --publish_every 10 --log_every_s 30
)
actor_args=(
  --env "$env_id" --learner_host 127.0.0.1 --port "$port" --num_envs 16 --random_steps 2000 --noise_beta 1
  --run_dir "$run_dir" --log_every_s 30 "$@"
)
eval_args=(--checkpoint "$run_dir" --num_envs 16 --episodes 32 --video_episodes 2 --video_size 64)

echo "[demo] training until ${stop_success} training success over ${success_window} episodes," \
  "at most ${max_updates} updates or ${train_seconds} s; run directory: $run_dir"
demo_train_and_eval
