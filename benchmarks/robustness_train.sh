#!/usr/bin/env bash
# One arm of the robustness experiment (docs/sim2real.md, issue 22 item 5): the CPU pixel preset of
# scripts/demo_pixels.sh (CartpoleBalance-v0 pixels, 32 px, frame stack 3, action repeat 8), trained through
# ./run_learner.sh and ./run_actor.sh for a fixed number of updates, the actor's envs randomized with PRESET.
#   benchmarks/robustness_train.sh RUN_DIR PRESET PORT [MAX_UPDATES] [MAX_SECONDS]
# Both arms (PRESET none and strong) get the same MAX_UPDATES; MAX_SECONDS is only a safety cap (the learner
# logs which one stopped it). benchmarks/robustness_eval.sh then evaluates each arm's final checkpoint.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir=$1 preset=$2 port=$3 max_updates=${4:-5000} max_seconds=${5:-3000}
env_args=(--env serl_gs/CartpoleBalance-v0 --obs_mode pixels --image_size 32 --frame_stack 3 --action_repeat 8)
"$root/run_learner.sh" "${env_args[@]}" --run_dir "$run_dir" --port "$port" --max_updates "$max_updates" \
  --max_seconds "$max_seconds" --hidden_dims 128,128 --critic_ensemble_size 2 --batch_size 128 \
  --critic_actor_ratio 1 --discount 0.99 --lr 1e-3 --encoder_channels 32,32 --encoder_latent_dim 50 \
  --augmentation_pad 2 --initial_temperature 0.1 --utd 0.5 --training_starts 1000 --replay_capacity 100000 \
  --publish_every 10 --checkpoint_every 1000 --keep_checkpoints 10 --save_replay=false --log_every_s 30 &
learner_pid=$!
"$root/run_actor.sh" "${env_args[@]}" --randomize "$preset" --learner_host 127.0.0.1 --port "$port" --num_envs 8 \
  --random_steps 1000 --run_dir "$run_dir" --log_every_s 30 &
actor_pid=$!
trap 'kill $actor_pid $learner_pid 2>/dev/null || true' EXIT
status=0
wait "$learner_pid" || status=$?
kill -INT "$actor_pid" 2>/dev/null || true
wait "$actor_pid" || true
trap - EXIT
echo "[robustness] $preset: learner exited with status $status"
exit "$status"
