# Sourced by run_demo.sh and scripts/demo_pixels.sh: the demo's run once its arguments are set.
# demo_train_and_eval reads run_dir and the arrays learner_args, actor_args and eval_args: starts the learner and
# one local actor, waits for the learner to stop itself (it writes a final checkpoint), stops the actor, then
# evaluates; it says which bound ended training (the learner's line in $run_dir/training_stop.json) before and
# after the eval.

# demo_env_flags ARRAY VAR=--flag ...: ARRAY gets "--flag value" for each variable VAR that is set, so a run's
# variables override its preset and the preset keeps every default.
demo_env_flags() {
  local -n into="$1"
  local pair var
  into=()
  for pair in "${@:2}"; do
    var="${pair%%=*}"
    if [[ -n "${!var:-}" ]]; then into+=("${pair#*=}" "${!var}"); fi
  done
}

demo_train_and_eval() {
  local start=$SECONDS learner_pid actor_pid learner_status=0
  python -m learners.learner "${learner_args[@]}" &
  learner_pid=$!
  python -m actors.actor "${actor_args[@]}" &
  actor_pid=$!
  trap "kill $actor_pid $learner_pid 2>/dev/null || true" EXIT

  wait "$learner_pid" || learner_status=$?
  kill -INT "$actor_pid" 2>/dev/null || true
  wait "$actor_pid" || true
  trap - EXIT
  if [[ "$learner_status" -ne 0 ]]; then
    echo "[demo] the learner exited with status $learner_status; evaluating its newest checkpoint anyway" >&2
  fi

  local stopped="the learner wrote no stop line"
  if [[ -f "$run_dir/training_stop.json" ]]; then  # learners/learner.py's STOP_FILE
    stopped="$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["line"])' "$run_dir/training_stop.json")"
  fi
  echo "[demo] trained for $((SECONDS - start)) s; the learner $stopped"
  echo "[demo] evaluating the final checkpoint (deterministic policy)"
  python -m actors.evaluate "${eval_args[@]}"
  echo "[demo] done in $((SECONDS - start)) s; training $stopped"
}
