#!/usr/bin/env bash
# The runs behind swing-cartpole-state-cpu2-2026-12-07.json: does the pixel preset's agent swing between
# checkpoints without pixels? The cpu_pixels agent (2 critics with LayerNorm, 128x128 tanh MLPs, lr 1e-3,
# initial temperature 0.1, n_step 1, discount 0.99, batch 128; no encoder) on STATE CartpoleBalance with the
# pixel job's action repeat 8, 8 envs and utd 0.5, 12,000 updates, every 1000-update checkpoint kept, then a
# deterministic eval (8 episodes) of each.
#   SEED=0 benchmarks/results/swing-cartpole-state-cpu2-2026-12-07.sh base0 6850
#   SEED=1 benchmarks/results/swing-cartpole-state-cpu2-2026-12-07.sh seed1 6853
set -uo pipefail
name=$1 port=$2; shift 2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"; cd "$root"
source "${SERL_GS_VENV:-.venv}/bin/activate"
export PYTHONPATH=$PWD
run_dir=${RUNS:-/work/runs/pixjob/proxy}/$name
mkdir -p "$run_dir"
env_args=(--env serl_gs/CartpoleBalance-v0 --action_repeat 8)
nice -n 10 python -m learners.learner "${env_args[@]}" --run_dir "$run_dir" --port "$port" --max_updates ${UPD:-12000} \
  --hidden_dims 128 128 --critic_ensemble_size 2 --batch_size 128 --critic_actor_ratio 1 --discount 0.99 \
  --actor_lr 1e-3 --critic_lr 1e-3 --temperature_lr 1e-3 --initial_temperature 0.1 \
  --utd 0.5 --training_starts 1000 --replay_capacity 100000 --publish_every 10 --checkpoint_every 1000 \
  --keep_checkpoints 100 --no_save_replay --log_every_s 10 --seed ${SEED:-0} "$@" > $run_dir.learner.log 2>&1 &
lp=$!
nice -n 10 python -m actors.actor "${env_args[@]}" --port "$port" --num_envs 8 --random_steps 1000 \
  --run_dir "$run_dir" --log_every_s 10 --seed ${SEED:-0} > $run_dir.actor.log 2>&1 &
ap=$!
wait $lp
kill -INT $ap; wait $ap
for ck in $(ls "$run_dir/checkpoints" | grep -E '^[0-9]+$' | sort -n); do
  nice -n 10 python -m actors.evaluate --checkpoint "$run_dir/checkpoints/$ck" --num_envs 8 --episodes 8 \
    --video_episodes 0 --out_dir "$run_dir/eval/$ck" > /dev/null 2>&1
  python -c "import json;d=json.load(open('$run_dir/eval/$ck/summary.json'));print('$name', $ck, round(d['return_mean'],1), round(d['return_std'],1))"
done | tee $run_dir.evals.txt
echo done $name
