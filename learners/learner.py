"""The learner node's entry point: flags -> `LearnerConfig` -> `Learner.run` (serl_gs.nodes.learner).

    ./run_learner.sh --env serl_gs/PandaPickCube-v0 --run_dir runs/pick --training_starts 1000 --utd 0.25
    ./run_learner.sh --preset cpu_pixels --run_dir runs/px   # a named preset (serl_gs.nodes.presets); flags override it

Drains what the actors send into the replay, trains DrQ/SAC under the rate limiter, publishes parameters and
checkpoints; on start, the newest checkpoint in `--run_dir` (and the replay saved beside it) is resumed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

STOP_FILE = "training_stop.json"  # in the run directory: the learner's stop reason and its line

# Flag names that are not the field's own (serl_gs.nodes.flags.Layout); every other field is a flag of its name.
LAYOUT_RENAME = {
    "learner.replay.capacity": "replay_capacity",
    "learner.rate.min_inserts": "training_starts",
    "learner.rate.tolerance": "rate_tolerance",
    "learner.rate.auto": "auto_tolerance",
    "learner.agent.image_augmentation_pad": "augmentation_pad",
    "learner.use_wandb": "wandb",
    "learner.demo_paths": "demo_path",
}


def layout():
    """The learner's flags: its LearnerConfig's fields, less what it derives (the replay's frame stack from the
    env, the parameter ports from --port) and what only actors use (physics, render backend)."""
    from serl_gs.agents.config import EncoderConfig
    from serl_gs.nodes.cli import TRANSPORT_RENAME
    from serl_gs.nodes.flags import Layout

    encoder = {f"learner.agent.encoder.{f.name}": f"encoder_{f.name}" for f in dataclasses.fields(EncoderConfig)}
    transport = {f"learner.transport.{path}": name for path, name in TRANSPORT_RENAME.items()}
    return Layout(
        rename={**LAYOUT_RENAME, **encoder, **transport},
        hidden=frozenset({"learner.replay.frame_stack", "learner.env.physics", "learner.env.render_backend"}),
        only={"learner.transport": ("bind", "transitions_port", "auth")},
        append=frozenset({"learner.demo_paths"}),
    )


def parse_config(argv: list[str]):
    """The LearnerConfig the command line describes (with --preset, the preset's learner under the flags)."""
    from serl_gs.nodes.cli import configure_logging, parse_node_flags, with_port_layout
    from serl_gs.nodes.learner import LearnerConfig
    from serl_gs.nodes.presets import preset

    parsed = parse_node_flags(
        argv, {"learner": LearnerConfig()}, layout(), prog="run_learner.sh", description=__doc__,
        presets=lambda name: {"learner": preset(name).learner},
    )  # fmt: skip
    configure_logging("learner", parsed["node"].verbosity)
    config = parsed["learner"]
    # Derived here only: the replay stacks what the env's observations stack (as logged and saved).
    replay = dataclasses.replace(config.replay, frame_stack=config.env.frame_stack)
    return dataclasses.replace(config, replay=replay, transport=with_port_layout(config.transport))


def main(argv: list[str]) -> None:
    from serl_gs.nodes.cli import stop_on_signals
    from serl_gs.nodes.learner import Learner
    from serl_gs.transport import AddressInUse

    config = parse_config(argv)
    print(f"[learner] {config}", flush=True)
    try:
        learner = Learner(config)
    except AddressInUse as e:
        port = config.transport.transitions_port
        offset = {"transitions_port": "", "params_port": " + 1", "params_snapshot_port": " + 2"}[e.field]
        raise ValueError(
            f"port {e.port} ({e.field}: --port {port}{offset}) on {e.host} is already in use; choose another "
            "--port (the learner takes it and the next two) or stop the program holding it"
        ) from None
    try:
        final = learner.run(stop_on_signals())
    finally:
        learner.close()
    print(f"[learner] done: {final}", flush=True)
    line = _ended_by(final, config)
    print(f"[learner] {line}", flush=True)
    # For the scripts that ran this learner (scripts/demo_run.sh): what ended training, in the run directory.
    keys = ("stop_reason", "updates", "seconds", "training_return", "training_success", "eval_return", "eval_success")
    stop = {key: final.get(key) for key in keys}
    (Path(config.run_dir) / STOP_FILE).write_text(json.dumps({**stop, "line": line}) + "\n")


def _ended_by(final: dict, config) -> str:
    """One line saying what ended training, for people reading the console."""
    which, size = ("eval", config.eval_window) if config.stop_on == "eval" else ("training", config.success_window)
    episodes = f"the last {size} {'eval-env ' if which == 'eval' else ''}episodes"
    success, ended, reported = final.get(f"{which}_success"), final["episodes_ended"], final["episodes_with_success"]
    if success is not None:
        shown = f"{success:.0%}"
    elif ended and not reported:
        shown = f"n/a: the task reports no `success` ({ended} episodes ended without one)"
    else:
        shown = f"n/a (window not yet full: {reported} of {size} episodes)" if which == "training" else (
            "n/a (window not yet full)")
    window = f"{which} success over {episodes} {shown}"
    mean_return = final.get(f"{which}_return")
    returns = f"{which} return over {episodes} " + (
        f"{mean_return:.1f}" if mean_return is not None else "n/a (window not yet full)"
    )
    if config.stop_return:  # the return is what this run is bounded by: say where it stands
        window = f"{returns} (--stop_return {config.stop_return:g}); {window}"
    reasons = {
        "success": f"stopped: {window} reached --stop_success {config.stop_success:.0%}",
        "return": f"stopped: {returns} reached --stop_return {config.stop_return:g}",
        "max_updates": f"stopped: the update budget (--max_updates {config.max_updates}) is spent; {window}",
        "max_seconds": f"stopped: the wall-clock cap (--max_seconds {config.max_seconds:g}) is reached; {window}",
        "signal": f"stopped by a signal; {window}",
    }
    return f"{reasons[final['stop_reason']]}, at {final['updates']} updates after {final['seconds']:.0f} s"


if __name__ == "__main__":
    from serl_gs.nodes.cli import run

    run(main)
