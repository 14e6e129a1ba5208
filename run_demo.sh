#!/usr/bin/env bash
# The README's main job: a learner and one local actor on localhost with CPU defaults train state-based SAC on
# PandaPickCube-v0 until the policy picks reliably, then the eval runs on the checkpoint the learner wrote.
#   ./run_demo.sh                         # ~10 minutes in all on a quiet 2-core CPU
#   STOP_SUCCESS=0.5 ./run_demo.sh        # stop training earlier (training success over the last 64 episodes)
#   ./run_demo.sh --num_envs 64           # extra flags go to the actor (./run_actor.sh --help)
# Training ends at the first of: training success (stochastic policy, last SUCCESS_WINDOW episodes) reaching
# STOP_SUCCESS, MAX_UPDATES updates, TRAIN_SECONDS seconds; the learner says which. A slower machine takes
# longer to get there, not a worse policy, up to the caps.
#   ./run_demo.sh --pixels                # the pixel main job: 20 scripted demos, then DrQ + RLPD on
#                                         # PandaPickCube from front + wrist 3DGS frames until the actor's eval
#                                         # envs pick in 11 of their last 12 episodes, with 60-minute / 50,000-
#                                         # update safety caps (scripts/demo_pixels.sh)
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
# The preset pick_state (serl_gs.nodes.presets; ./run_learner.sh --preset pick_state --help shows every value):
# 75 % over 64 episodes, at most 100,000 updates or 3,600 s. The variables override it.
demo_env_flags overrides STOP_SUCCESS=--stop_success SUCCESS_WINDOW=--success_window MAX_UPDATES=--max_updates \
  TRAIN_SECONDS=--max_seconds
demo_env_flags port PORT=--port
learner_args=(--preset pick_state --run_dir "$run_dir" "${port[@]}" "${overrides[@]}")
actor_args=(--preset pick_state --run_dir "$run_dir" "${port[@]}" "$@")
eval_args=(--checkpoint "$run_dir" --num_envs 16 --episodes 32 --video_episodes 2 --video_size 64)

echo "[demo] training (--preset pick_state, the learner's first line shows its config) until its training" \
  "success, update or time cap; run directory: $run_dir"
demo_train_and_eval
