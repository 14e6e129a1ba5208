#!/usr/bin/env bash
# The command of ladder-learning-cpu2-2026-12-07.jsonl: state SAC from scratch on one task of the ladder (issue 23,
# item 5) through the real launchers: ./run_learner.sh and ./run_actor.sh with --preset pick_state (the main job's
# settings: stop at 75 % training success over 64 episodes) on ENV, capped by CAPS, then ./run_eval.sh on the
# final checkpoint (deterministic policy, 32 episodes). Prints one JSON line; with CURVES=<file.json> it also
# merges the run's training curve into that file under the task's name.
#   ENV=PandaReachCube-v0 RUN=/tmp/ladderlearn/reach PORT=6800 CAPS="--max_seconds 900" \
#     CURVES=benchmarks/results/ladder-learning-curves-cpu2-2026-12-07.json \
#     bash benchmarks/results/ladder-learning-cpu2-2026-12-07.sh
# DEMOS=1: the labelled RLPD arm, 20 scripted successes recorded first (--demo_path, half of every batch).
# PIXELS=1: DrQ from front + wrist 3DGS frames (32x32) + proprio instead, with the agent, learner and 8-env actor
# flags of learning-panda-pixels-cpu2-2026-12-06.sh (no preset; the same 75 % / 64-episode stop, then CAPS).
# PIXELS=1 ran once, for PandaReachCube-v0 (the .jsonl's line with "obs": "pixels"); the other lines are PIXELS=0.
# PIXELS=1 DEMOS=1 ENV=PandaPickCube-v0 (issue 25) printed rlpd-panda-pixels-cpu2-2026-12-07.jsonl.
# SIZE=16 [RENDER=32]: the policy's image side (default 32) and, with RENDER, the side rasterized before the area
# downsample. CKPT_EVERY / KEEP: the learner's --checkpoint_every (default 2000) and --keep_checkpoints (default 3),
# to keep a curve of checkpoints for run_eval.sh afterwards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ENV="${ENV:?set ENV, e.g. PandaReachCube-v0}"; RUN="${RUN:?set RUN}"; PORT="${PORT:-6800}"; SEED="${SEED:-0}"
DEMOS="${DEMOS:-0}"; PIXELS="${PIXELS:-0}"; SIZE="${SIZE:-32}"; RENDER="${RENDER:-}"
CKPT_EVERY="${CKPT_EVERY:-2000}"; KEEP="${KEEP:-3}"
read -r -a CAPS <<< "${CAPS:---max_seconds 1800}"
mkdir -p "$RUN"
env_args=(--env "serl_gs/$ENV")
learner_args=(--preset pick_state)
actor_args=(--preset pick_state)
if [[ "$PIXELS" == 1 ]]; then
  env_args+=(--obs_mode pixels --image_size "$SIZE" --cameras front wrist --frame_stack 1)
  [[ -n "$RENDER" ]] && env_args+=(--render_size "$RENDER")
  learner_args=(--stop_success 0.75 --success_window 64 --hidden_dims 128 128 --critic_ensemble_size 2
    --batch_size 128 --critic_actor_ratio 1 --discount 0.96 --actor_lr 1e-3 --critic_lr 1e-3 --temperature_lr 1e-3
    --encoder_channels 32 32 --encoder_latent_dim 50 --augmentation_pad 2 --initial_temperature 0.1 --n_step 3
    --utd 0.5 --training_starts 2000 --replay_capacity 200000 --publish_every 10 --checkpoint_every "$CKPT_EVERY"
    --keep_checkpoints "$KEEP" --no_save_replay --log_every_s 30)
  actor_args=(--num_envs 8 --random_steps 2000 --noise_beta 1 --render_threads 1 --log_every_s 30)
fi
demo_args=()
if [[ "$DEMOS" == 1 ]]; then
  nice -n 10 python -m serl_gs.demos record "${env_args[@]}" --source scripted --successes 20 --num_envs 8 \
    --seed $((1000 + SEED)) --out "$RUN/demos.hdf5" > "$RUN/record.log" 2>&1
  demo_args=(--demo_path "$RUN/demos.hdf5" --demo_ratio 0.5)
fi
start=$SECONDS
nice -n 10 ./run_learner.sh "${learner_args[@]}" "${env_args[@]}" --run_dir "$RUN" --port "$PORT" --seed "$SEED" \
  "${CAPS[@]}" "${demo_args[@]}" > "$RUN/learner.log" 2>&1 &
learner=$!
nice -n 10 ./run_actor.sh "${actor_args[@]}" "${env_args[@]}" --run_dir "$RUN" --port "$PORT" --seed "$SEED" \
  > "$RUN/actor.log" 2>&1 &
actor=$!
trap 'kill $actor $learner 2>/dev/null || true' EXIT
wait "$learner" || true
kill -INT "$actor" 2>/dev/null || true
wait "$actor" || true
trap - EXIT
train_s=$((SECONDS - start))
nice -n 10 ./run_eval.sh --checkpoint "$RUN" --num_envs 16 --episodes 32 --video_episodes 0 \
  --out_dir "$RUN/eval" > "$RUN/eval.log" 2>&1
python - "$RUN" "$ENV" "$SEED" "$DEMOS" "$train_s" "${CURVES:-}" "${CAPS[*]}" "$PIXELS" <<'PY'
import ast, json, os, sys
run, env, seed, demos, train_s, curves, caps, pixels = sys.argv[1:]
obs = "pixels" if pixels == "1" else "state"
done = next(line for line in open(f"{run}/learner.log") if line.startswith("[learner] done: "))
final = ast.literal_eval(done[len("[learner] done: "):])
rows = [json.loads(line) for line in open(f"{run}/learner_metrics.jsonl")]
curve = [{k: r[k] for k in ("wall_s", "updates", "transitions", "episode_return", "success") if k in r}
         for r in rows if "success" in r]
first = next((r for r in curve if r["success"] > 0), None)  # the first interval with a successful episode
best = max(curve, key=lambda r: r["success"], default=None)
ev = json.load(open(f"{run}/eval/summary.json"))
print(json.dumps({"figure": "ladder_learning", "task": env, "obs": obs, "preset": None if obs == "pixels" else "pick_state", "caps": caps,
                  "seed": int(seed), "demos": 20 if demos == "1" else 0,
                  "updates": final["updates"], "env_steps": final["transitions"],
                  "seconds": round(final["seconds"], 1), "train_wall_s": int(train_s),
                  "stop_reason": final["stop_reason"], "training_success": final["training_success"],
                  "first_success_updates": first and first["updates"],
                  "best_interval_success": best and [best["updates"], best["success"]],
                  "last_interval_success": curve[-1]["success"] if curve else None,
                  "eval_episodes": ev["episodes"], "eval_success": ev.get("success_rate"),
                  "eval_return_mean": round(ev["return_mean"], 2), "eval_step": ev["step"], "run_dir": run}))
if curves:
    merged = json.load(open(curves)) if os.path.exists(curves) else {}
    merged[f"{env} {obs} seed{seed}" + (" demos20" if demos == "1" else "")] = {
        "command": f"ENV={env} CAPS='{caps}' DEMOS={demos} PIXELS={pixels} bash benchmarks/results/ladder-learning-cpu2-2026-12-07.sh",
        "device": "cpu (2 cores, x86_64)", "stop_reason": final["stop_reason"], "eval": ev, "training_curve": curve}
    with open(curves, "w") as f:
        json.dump(merged, f, indent=1)
PY
