#!/usr/bin/env bash
# The command of learning-panda-pixels-cpu2-2026-12-06.json: DrQ on PandaPickCube from front + wrist 3DGS frames
# (32²) + proprio, learner and one 8-env actor on localhost at nice 19, stopped by SIGINT after 2 hours
# (--max_seconds is the fallback); then run_eval.sh on checkpoints (see benchmarks/results/README.md).
#   RUN=runs/panda_pixels bash benchmarks/results/learning-panda-pixels-cpu2-2026-12-06.sh
# Flags in today's syntax (docs/flags.md, issue 24); the values are the run's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
RUN="${RUN:-runs/panda_pixels}"
mkdir -p "$RUN"
ENV=(--env serl_gs/PandaPickCube-v0 --obs_mode pixels --image_size 32 --cameras front wrist --frame_stack 1)
nice -n 19 ./run_learner.sh "${ENV[@]}" --run_dir "$RUN" --port 6600 --max_seconds 7800 \
  --hidden_dims 128 128 --critic_ensemble_size 2 --batch_size 128 --critic_actor_ratio 1 --discount 0.96 \
  --actor_lr 1e-3 --critic_lr 1e-3 --temperature_lr 1e-3 --encoder_channels 32 32 --encoder_latent_dim 50 \
  --augmentation_pad 2 --initial_temperature 0.1 \
  --n_step 3 --utd 0.5 --training_starts 2000 --replay_capacity 200000 --publish_every 10 \
  --checkpoint_every 2000 --keep_checkpoints 100 --no_save_replay --log_every_s 60 > "$RUN/learner.log" 2>&1 &
learner=$!
nice -n 19 ./run_actor.sh "${ENV[@]}" --learner_host 127.0.0.1 --port 6600 --num_envs 8 --random_steps 2000 \
  --noise_beta 1 --render_threads 1 --run_dir "$RUN" --log_every_s 60 > "$RUN/actor.log" 2>&1 &
actor=$!
wait "$learner" || true
kill -INT "$actor" 2>/dev/null || true
wait "$actor" || true
