#!/usr/bin/env bash
# The command of learner-threads-cpu2-2026-12-07.jsonl: where a running learner node's CPU goes, by thread, next to
# its actor's. Reads /proc/<pid>/task/*/stat (utime + stime) of both processes twice, SECONDS_ apart, and the
# learner's updates and transitions from its metrics log; prints one JSON line. Threads are named from their comm
# and, for the learner's Python threads, from py-spy's thread list when PYSPY points to a py-spy binary.
#   LEARNER_PID=... ACTOR_PID=... RUN=/tmp/rlpd/s0_none LABEL="main job settings, no demos" \
#     bash benchmarks/results/learner-threads-cpu2-2026-12-07.sh
set -euo pipefail
: "${LEARNER_PID:?}" "${ACTOR_PID:?}" "${RUN:?}"; SECONDS_="${SECONDS_:-30}"
snap() { for t in /proc/$1/task/*; do s=($(cut -d' ' -f14,15 "$t/stat")); echo "$(basename "$t") $(cat "$t/comm") $((s[0] + s[1]))"; done; }
names=""
if [[ -n "${PYSPY:-}" ]]; then names=$("$PYSPY" dump --pid "$LEARNER_PID" 2>/dev/null | grep -E '^Thread' || true); fi
before_rows=$(wc -l < "$RUN/learner_metrics.jsonl")
snap "$LEARNER_PID" > "$RUN/.threads0"; snap "$ACTOR_PID" > "$RUN/.actor0"; load0=$(cut -d' ' -f1 /proc/loadavg)
sleep "$SECONDS_"
snap "$LEARNER_PID" > "$RUN/.threads1"; snap "$ACTOR_PID" > "$RUN/.actor1"; load1=$(cut -d' ' -f1 /proc/loadavg)
python3 - "$RUN" "$SECONDS_" "$before_rows" "$load0 $load1" "${LABEL:-}" "$names" <<'PY'
import json, re, sys
run, seconds, before_rows, loads, label, names = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
hz = 100.0  # USER_HZ
pyspy = {m.group(1): m.group(2) for m in re.finditer(r'Thread (\d+) \([^)]*\): "([^"]+)"', names)}
def delta(a, b):
    x = {l.split()[0]: int(l.split()[2]) for l in open(a)}
    out = {}
    for l in open(b):
        tid, comm, v = l.split()
        name = pyspy.get(tid, comm)
        out[name] = out.get(name, 0.0) + (int(v) - x.get(tid, 0)) / hz
    return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0}
learner, actor = delta(f"{run}/.threads0", f"{run}/.threads1"), delta(f"{run}/.actor0", f"{run}/.actor1")
rows = [json.loads(l) for l in open(f"{run}/learner_metrics.jsonl")][max(0, before_rows - 1):]
ups = [r["updates_per_s"] for r in rows[1:]] or [rows[-1]["updates_per_s"]]
print(json.dumps({"bench": "learner_threads", "label": label, "seconds": seconds, "load_average": loads,
                  "learner_cpu_s": learner, "learner_cpu_s_total": round(sum(learner.values()), 2),
                  "actor_cpu_s": actor, "actor_cpu_s_total": round(sum(actor.values()), 2),
                  "learner_updates_per_s_logged": [round(u, 1) for u in ups],
                  "updates": rows[-1]["updates"], "device": "cpu (2 cores, x86_64)"}))
PY
