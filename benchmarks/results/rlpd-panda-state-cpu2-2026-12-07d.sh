#!/usr/bin/env bash
# The command of rlpd-panda-state-50k-cpu2-2026-12-07d.jsonl (issue 25: the SAC temperature fits the entropy of
# each batch's online rows only, the learner's default from commit faa021d on; both arms run that learner):
# rlpd-panda-state-cpu2-2026-12-07.sh (state PandaPickCube through learner + actor processes with the main job's
# settings, until 80 % training success over 64 episodes or LIMIT, RLPD on 20 scripted demos with DEMOS=1 or
# none with DEMOS=0) plus LEARNER_EXTRA: more learner flags (e.g. "--demo_action_limit 0.9"), and the largest
# and last logged SAC temperature, the commit and the machine in the JSON line. The runs of the file, two at a
# time (seeds 0-4; demos with LEARNER_EXTRA="--demo_action_limit 0.9", none with it empty):
#   RUN=/work/runs/temp/sS_dD PORT=6840|6844|6847 SEED=S DEMOS=1|0 LIMIT="--max_updates 50000" \
#     LEARNER_EXTRA="--demo_action_limit 0.9" bash benchmarks/results/rlpd-panda-state-cpu2-2026-12-07d.sh
# ACTOR_EXTRA: more actor flags, e.g. "--intervention scripted --intervention_start 0.5
# --intervention_taper_steps 20000" (rlpd-panda-state-interventions-cpu2-2026-12-07.jsonl: HIL-SERL's
# interventions tapering off, on top of the demos, against the demos alone of the 07d file).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
RUN="${RUN:?set RUN}"; PORT="${PORT:-6710}"; SEED="${SEED:-0}"; DEMOS="${DEMOS:-1}"
read -r -a LIMIT <<< "${LIMIT:---max_updates 50000}"
read -r -a EXTRA <<< "${LEARNER_EXTRA:-}"
read -r -a ACTOR_EXTRA_ARGS <<< "${ACTOR_EXTRA:-}"
mkdir -p "$RUN"
ENV=(--env serl_gs/PandaPickCube-v0)
demo_args=()
if [[ "$DEMOS" == 1 ]]; then
  # 20 successful episodes of the scripted pick, recorded through the same EnvSpec (seed 1000 + SEED).
  nice -n 10 python -m serl_gs.demos record "${ENV[@]}" --source scripted --successes 20 --num_envs 8 \
    --seed $((1000 + SEED)) --out "$RUN/demos.hdf5" > "$RUN/record.log" 2>&1
  demo_args=(--demo_path "$RUN/demos.hdf5" --demo_ratio 0.5)
fi
nice -n 10 python -m learners.learner "${ENV[@]}" --run_dir "$RUN" --port "$PORT" --seed "$SEED" \
  --stop_success 0.8 --success_window 64 "${LIMIT[@]}" \
  --training_starts 2000 --utd 0.25 --n_step 3 --hidden_dims 128 128 --critic_ensemble_size 4 --batch_size 128 \
  --critic_actor_ratio 2 --actor_lr 1e-3 --critic_lr 1e-3 --temperature_lr 1e-3 --checkpoint_every 5000 \
  --publish_every 10 --log_every_s 30 \
  "${demo_args[@]}" "${EXTRA[@]}" > "$RUN/learner.log" 2>&1 &
learner=$!
nice -n 10 python -m actors.actor "${ENV[@]}" --learner_host 127.0.0.1 --port "$PORT" --num_envs 16 \
  --random_steps 2000 --noise_beta 1 --seed "$SEED" --run_dir "$RUN" --log_every_s 30 "${ACTOR_EXTRA_ARGS[@]}" \
  > "$RUN/actor.log" 2>&1 &
actor=$!
trap 'kill $actor $learner 2>/dev/null || true' EXIT
wait "$learner" || true
kill -INT "$actor" 2>/dev/null || true
wait "$actor" || true
trap - EXIT
python - "$RUN" "$SEED" "$DEMOS" "${LEARNER_EXTRA:-}" "$(git rev-parse --short HEAD)" "${ACTOR_EXTRA:-}" <<'PY'
import ast, json, os, sys
run, seed, demos, extra, commit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
actor_extra = sys.argv[6]
actor_final = next((json.loads(line.split("final: ", 1)[1]) for line in open(f"{run}/actor.log") if "final: " in line), {})
done = next(line for line in open(f"{run}/learner.log") if line.startswith("[learner] done: "))
final = ast.literal_eval(done[len("[learner] done: "):])
rows = [json.loads(line) for line in open(f"{run}/learner_metrics.jsonl")]
first = next((r for r in rows if r.get("success", 0) > 0), None)  # the first interval with a successful episode
best = max((r for r in rows if "success" in r), key=lambda r: r["success"], default=None)
print(json.dumps({"figure": "updates_to_80pct_training_success", "env": "PandaPickCube-v0 state", "seed": seed,
                  "demos": 20 if demos else 0, "reached": final["stop_reason"] == "success",
                  "updates": final["updates"], "transitions": final["transitions"],
                  "seconds": round(final["seconds"], 1), "training_success": final["training_success"],
                  "stop_reason": final["stop_reason"],
                  "first_success_updates": first and first["updates"],
                  "best_interval_success": best and [best["updates"], best["success"]],
                  "temperature_max": max((r["temperature"] for r in rows if "temperature" in r), default=None),
                  "temperature_last": next((r["temperature"] for r in reversed(rows) if "temperature" in r), None),
                  "learner_extra": extra, "run_dir": run, "commit": commit,
                  **({"actor_extra": actor_extra, "intervened_env_steps": actor_final.get("intervened_steps"),
                      "assisted_episodes": actor_final.get("assisted_episodes")} if actor_extra else {}),
                  "machine": os.environ.get("MACHINE", "cpu (2 cores, x86_64), shared with other lanes and a pixel learning run")}))
PY
