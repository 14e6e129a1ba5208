#!/usr/bin/env bash
# The run behind learning-cartpole-pixels-progress-cpu2-2026-12-07.json: the pixel main job as it ships
# (./run_demo.sh --pixels, the cpu_pixels preset: training ends when the mean training return of the last 16
# episodes reaches 800, with 40-minute / 25,000-update safety caps), every checkpoint kept; then each checkpoint
# evaluated twice, 8 episodes each: the deterministic policy (tanh(mean), what run_eval.sh reports) and sampled
# actions (--stochastic, as the actors act), to tell the policy's mean from the policy; then the result JSON.
#   benchmarks/results/learning-cartpole-pixels-progress-cpu2-2026-12-07.sh RUN_DIR PORT
# (From 2026-12-08 ./run_demo.sh --pixels trains PandaPickCube: this reruns the cartpole job at commits before.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
run_dir=$1 port=$2
cd "$root"
# (EVAL_ONLY=1: the evals and the result of a finished run; the kept run's training ran first, then this.)
if [[ -z "${EVAL_ONLY:-}" ]]; then
  PORT=$port RUN_DIR=$run_dir KEEP_CHECKPOINTS=100 nice -n 10 ./run_demo.sh --pixels
fi
# Newest first, each deterministic (the newest was evaluated by run_demo.sh) then sampled, as far as
# EVAL_UNTIL (a date; default: all): the result lists exactly the checkpoints evaluated.
for step in $(ls "$run_dir/checkpoints" | grep -E '^[0-9]+$' | sort -rn); do
  if [[ -n "${EVAL_UNTIL:-}" && $(date +%s) -ge $(date -d "$EVAL_UNTIL" +%s) ]]; then break; fi
  [[ -f "$run_dir/eval/$step/summary.json" ]] || nice -n 10 ./run_eval.sh --checkpoint "$run_dir/checkpoints/$step" \
    --num_envs 8 --episodes 8 --video_episodes 0
  [[ -f "$run_dir/eval_stochastic/$step/summary.json" ]] || nice -n 10 ./run_eval.sh --checkpoint \
    "$run_dir/checkpoints/$step" --num_envs 8 --episodes 8 --video_episodes 0 --stochastic \
    --out_dir "$run_dir/eval_stochastic/$step"
done
# The result: learning_curve.py's document plus the stop line, the sampled-action evals and the learner's
# loss / temperature / entropy rows (what a swing between checkpoints would show first).
python -m benchmarks.learning_curve "$run_dir" --command "${COMMAND:-$0 $*}" | python -c '
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
result = json.load(sys.stdin)
result["training_stop"] = json.loads((run / "training_stop.json").read_text())
result["eval_curve_stochastic"] = [
    {"updates": int(p.parent.name), **{k: s[k] for k in ("return_mean", "return_std", "return_ci95", "episodes")}}
    for p in sorted(run.glob("eval_stochastic/*/summary.json"), key=lambda p: int(p.parent.name))
    for s in [json.loads(p.read_text())]
]
keys = ("updates", "temperature", "entropy", "q", "target_q", "critic_loss", "actor_loss", "episode_return")
rows = [json.loads(line) for line in (run / "learner_metrics.jsonl").read_text().splitlines() if line.strip()]
result["learner_rows"] = [{k: r[k] for k in keys if k in r} for r in rows if "temperature" in r]
result["note"] = sys.argv[2]
print(json.dumps(result, indent=1))
' "$run_dir" "${NOTE:-}" > "$root/benchmarks/results/learning-cartpole-pixels-progress-cpu2-2026-12-07.json"
