"""The robustness result (docs/sim2real.md, issue 22 item 5) from the two arms' runs and their evals: one JSON
document with, per arm, the training curve (benchmarks.learning_curve) and the eval return under each held-out
shift, plus the commands that made them.

    benchmarks/robustness_train.sh runs/robustness/none none 6710 &      # both arms, the same update budget
    benchmarks/robustness_train.sh runs/robustness/strong strong 6720
    benchmarks/robustness_eval.sh runs/robustness/none/checkpoints/STEP runs/robustness/eval/none
    benchmarks/robustness_eval.sh runs/robustness/strong/checkpoints/STEP runs/robustness/eval/strong
    python -m benchmarks.robustness_report runs/robustness --steps none=STEP,strong=STEP > benchmarks/results/...

Each arm is evaluated at the checkpoint of the same number of updates (a fixed update budget, not wall-clock);
where a run had to be stopped by hand the steps differ by the few updates between the stop and the signal, and
the document records each.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmarks._report import device_name
from benchmarks.learning_curve import learning_curve

SHIFTS = ("none", "camera", "lighting", "background")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="holds <arm>/ (run dirs) and eval/<arm>/<shift>/summary.json")
    p.add_argument("--steps", required=True, help="arm=step,...: the checkpoint each arm was evaluated at")
    p.add_argument("--note", default="")
    p.add_argument("--commands", default="", help="how the runs were made, if not the default commands")
    a = p.parse_args()
    steps = {arm: int(step) for arm, step in (x.split("=") for x in a.steps.split(","))}
    arms = {}
    for arm, step in steps.items():
        evals = {}
        for shift in SHIFTS:
            s = json.loads((a.root / "eval" / arm / shift / "summary.json").read_text())
            if s["step"] != step or s["shift"] != shift:
                raise ValueError(f"{arm}/{shift}: evaluated step {s['step']} shift {s['shift']}, expected {step}")
            evals[shift] = {k: s[k] for k in ("episodes", "return_mean", "return_std", "return_ci95")}
        curve = learning_curve(a.root / arm)
        arms[arm] = {"train_randomize": arm, "updates": step, "eval": evals, "training_curve": curve["training_curve"],
                     "learner_config": curve["config"]}  # fmt: skip
    out = {
        "bench": "robustness",
        "env": "serl_gs/CartpoleBalance-v0, pixels 32 px, frame stack 3, action repeat 8 (the cpu_pixels preset)",
        "shifts": {
            "camera": "camera moved (0.25, 0, 0.15) m and pitched 6 deg (strong trains +-3 cm, +-3 deg)",
            "lighting": "every colour x0.55 and hue +35 deg (strong trains x0.7-1.3, +-15 deg)",
            "background": "table and background purple (0.55, 0.25, 0.65), no PALETTE colour",
        },
        "arms": arms,
        "commands": [
            "benchmarks/robustness_train.sh runs/robustness/none none 6711 6000 4800",
            "benchmarks/robustness_train.sh runs/robustness/strong strong 6721 6000 4800   # concurrently",
            "benchmarks/robustness_eval.sh runs/robustness/<arm>/checkpoints/<step> runs/robustness/eval/<arm> 16",
            f"python -m benchmarks.robustness_report runs/robustness --steps {a.steps}",
        ] + ([a.commands] if a.commands else []),
        "device": device_name(),
        "load_average": os.getloadavg(),
        "note": a.note,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
