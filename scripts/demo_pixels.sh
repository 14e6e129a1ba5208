#!/usr/bin/env bash
# The pixel main job (./run_demo.sh --pixels): a learner and one local actor train DrQ on CartpoleBalance-v0
# from its 3DGS camera only (no state; DrQ's setting: action repeat 8, the last 3 frames per observation,
# random-shift augmentation), then the eval runs on the checkpoint the learner wrote and prints the return
# (out of 1000; uniform random actions score ~280) and where the video of the policy's frames is.
#   ./run_demo.sh --pixels                           # ~15 minutes on a 2-core CPU
#   PIXEL_MAX_UPDATES=20000 ./run_demo.sh --pixels   # train longer
#   PIXEL_MAX_UPDATES=0 PIXEL_TRAIN_SECONDS=1800 KEEP_CHECKPOINTS=100 ./run_demo.sh --pixels   # 30 min, every
#                                                    # checkpoint kept, for run_eval.sh on each (learning_curve.py)
#   ./run_demo.sh --pixels --num_envs 16             # extra flags go to the actor (./run_actor.sh --help)
# Training ends at PIXEL_MAX_UPDATES updates or after PIXEL_TRAIN_SECONDS, whichever comes first (the learner
# says which). On our 2-core machine the cap came first (5,210 updates, eval 949: docs/pixels-cpu.md); a
# slower machine gets fewer updates before it, so raise PIXEL_TRAIN_SECONDS there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/venv.sh"
source "$root/scripts/demo_run.sh"

run_dir="${RUN_DIR:-runs/demo-pixels-$(date +%Y%m%d-%H%M%S)}"
max_updates="${PIXEL_MAX_UPDATES:-6000}"
train_seconds="${PIXEL_TRAIN_SECONDS:-780}"
keep_checkpoints="${KEEP_CHECKPOINTS:-3}"  # a learning curve wants every checkpoint: KEEP_CHECKPOINTS=100
port="${PORT:-5588}"

# The CPU pixel preset (serl_gs.agents.config.cpu_pixel_preset, docs/pixels-cpu.md).
env_args=(--env serl_gs/CartpoleBalance-v0 --obs_mode pixels --image_size 32 --frame_stack 3 --action_repeat 8)
learner_args=(
  "${env_args[@]}" --run_dir "$run_dir" --port "$port" --max_updates "$max_updates" --max_seconds "$train_seconds"
  --hidden_dims 128,128 --critic_ensemble_size 2 --batch_size 128 --critic_actor_ratio 1 --discount 0.99
  --lr 1e-3 --encoder_channels 32,32 --encoder_latent_dim 50 --augmentation_pad 2 --initial_temperature 0.1
  --utd 0.5 --training_starts 1000 --replay_capacity 100000 --publish_every 10 --checkpoint_every 1000
  --keep_checkpoints "$keep_checkpoints" --save_replay=false --log_every_s 30
)
actor_args=(
  "${env_args[@]}" --learner_host 127.0.0.1 --port "$port" --num_envs 8 --random_steps 1000
  --run_dir "$run_dir" --log_every_s 30 "$@"
)
eval_args=(--checkpoint "$run_dir" --num_envs 8 --episodes 8 --video_episodes 2 --policy_frames)

echo "[demo] pixels: training DrQ for ${max_updates} updates, at most ${train_seconds} s; run directory: $run_dir"
demo_train_and_eval
