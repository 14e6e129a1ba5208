#!/usr/bin/env bash
# The runs behind learning-cartpole-pixels-{fp32,bf16,small16}-cpu2-2026-12-07.json, kept as run (from /tmp/tp):
# usage: parity.sh NAME PORT IMAGE_SIZE RENDER_SIZE COMPUTE_DTYPE  -- the pixel main job's learner + actor (scripts/demo_pixels.sh's args)
# Flags in today's syntax (docs/flags.md, issue 24); the values are the run's.
set -uo pipefail
name=$1 port=$2 size=$3 render=$4 dtype=$5
cd /work/wt/throughput
source /work/main/.venv/bin/activate
export PYTHONPATH=$PWD
run_dir=/tmp/tp/runs/$name
env_args=(--env serl_gs/CartpoleBalance-v0 --obs_mode pixels --image_size "$size" --frame_stack 3 --action_repeat 8)
actor_env=("${env_args[@]}" --render_size "$render")
nice -n 10 python -m learners.learner "${env_args[@]}" --run_dir "$run_dir" --port "$port" --max_updates 6000 --max_seconds 780 \
  --hidden_dims 128 128 --critic_ensemble_size 2 --batch_size 128 --critic_actor_ratio 1 --discount 0.99 \
  --actor_lr 1e-3 --critic_lr 1e-3 --temperature_lr 1e-3 --encoder_channels 32 32 --encoder_latent_dim 50 \
  --augmentation_pad 2 --initial_temperature 0.1 \
  --utd 0.5 --training_starts 1000 --replay_capacity 100000 --publish_every 10 --checkpoint_every 1000 \
  --keep_checkpoints 3 --no_save_replay --log_every_s 30 --compute_dtype "$dtype" > /tmp/tp/runs/$name.learner.log 2>&1 &
lp=$!
nice -n 10 python -m actors.actor "${actor_env[@]}" --learner_host 127.0.0.1 --port "$port" --num_envs 8 --random_steps 1000 \
  --run_dir "$run_dir" --log_every_s 30 > /tmp/tp/runs/$name.actor.log 2>&1 &
ap=$!
wait $lp
kill -INT $ap; wait $ap
python -m benchmarks.learning_curve "$run_dir" --command "parity.sh $*" > /tmp/tp/runs/$name.curve.json
echo done $name
