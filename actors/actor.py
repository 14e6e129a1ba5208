"""The actor node's entry point: flags -> `ActorConfig` -> `run_actor` (serl_gs.nodes.actor).

    ./run_actor.sh --learner_host 127.0.0.1 --env serl_gs/PandaPickCube-v0 --num_envs 64 --actor_id gpu0

Steps a batch of envs with the newest policy the learner published and streams records to it; while the
learner is away it keeps acting (buffering up to --away_buffer_mb) and sends the backlog when it returns.
"""

from __future__ import annotations

import dataclasses


def layout():
    """The actor's flags: its ActorConfig's fields (the transport's that a user picks), the render threads, and
    who may intervene; derived here: the parameter ports from --port, the schedule's seed from --seed."""
    from serl_gs.nodes.cli import TRANSPORT_RENAME
    from serl_gs.nodes.flags import Convert, Layout
    from serl_gs.transport.config import MIB

    transport = {f"actor.transport.{path}": name for path, name in TRANSPORT_RENAME.items()}
    return Layout(
        rename={
            **transport,
            "actor.transport.host": "learner_host",
            "actor.transport.away_buffer_bytes": "away_buffer_mb",
            "schedule.start": "intervention_start",
            "schedule.taper_steps": "intervention_taper_steps",
        },
        hidden=frozenset({"schedule.seed"}),
        only={"actor.transport": ("actor_id", "host", "transitions_port", "auth", "away_buffer_bytes", "overflow")},
        convert={
            "actor.transport.away_buffer_bytes": Convert(
                int, lambda b: b // MIB, lambda mb: mb * MIB,
                help="while the learner is unreachable, keep acting and buffer up to this many MiB of transitions "
                "for it (0: block, or drop, after a few batches)",
            ),  # fmt: skip
            "actor.resets_per_step": Convert(str, _resets_flag, parse_resets_per_step),
        },
    )


def parse_flags(argv: list[str]) -> dict:
    """The parsed roots: "actor" (its ActorConfig), "render", "intervention" and "schedule"."""
    from serl_gs.demos.sources import TaperedSchedule
    from serl_gs.nodes.actor import ActorConfig
    from serl_gs.nodes.cli import (
        InterventionOptions,
        RenderOptions,
        configure_logging,
        parse_node_flags,
        with_port_layout,
    )
    from serl_gs.nodes.presets import preset

    roots = {"actor": ActorConfig(), "render": RenderOptions(), "intervention": InterventionOptions(),
             "schedule": TaperedSchedule()}  # fmt: skip
    parsed = parse_node_flags(
        argv, roots, layout(), prog="run_actor.sh", description=__doc__,
        presets=lambda name: {"actor": preset(name).actor},
    )  # fmt: skip
    actor = parsed["actor"]
    configure_logging(f"actor {actor.actor_id}", parsed["node"].verbosity)
    parsed["actor"] = dataclasses.replace(actor, transport=with_port_layout(actor.transport))
    parsed["schedule"] = dataclasses.replace(parsed["schedule"], seed=actor.seed)
    return parsed


def main(argv: list[str]) -> None:
    from serl_gs.gpu_paths import check_gpu_paths
    from serl_gs.nodes.actor import run_actor
    from serl_gs.nodes.cli import set_render_threads, stop_on_signals

    parsed = parse_flags(argv)
    config = parsed["actor"]
    print(f"[actor {config.actor_id}] {config}", flush=True)
    check_gpu_paths(config.env.physics, config.env.render_backend, renders=config.env.obs_mode == "pixels")
    if config.env.obs_mode == "pixels":
        set_render_threads(parsed["render"].render_threads)
    run_actor(config, stop_on_signals(), _intervention(parsed["intervention"].intervention, parsed["schedule"], config))


def _intervention(who: str, schedule, config):
    """--intervention: who may take over from the policy (serl_gs.demos.sources); None for nobody."""
    if who == "none":
        return None
    from serl_gs.demos.sources import KeyboardSource, ScriptedSource

    if who == "keyboard":
        if config.num_envs != 1:
            raise ValueError(f"--intervention keyboard drives one env: use --num_envs 1, got {config.num_envs}")
        return KeyboardSource(config.env.observation_spec()[1], takeover=True, title=f"serl_gs: {config.actor_id}")
    from serl_gs.demos.experts import expert_for

    print(f"[actor {config.actor_id}] scripted interventions: {schedule}", flush=True)
    return ScriptedSource(expert_for(config.env.env), config.num_envs, schedule)


def parse_resets_per_step(value: str) -> int | str | None:
    """--resets_per_step: "auto", "all" (None: every env) or a positive int."""
    if value in ("auto", "all"):
        return None if value == "all" else value
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"--resets_per_step must be 'auto', 'all' or a positive int, got {value!r}")
    return int(value)


def _resets_flag(value: int | str | None) -> str:
    return "all" if value is None else str(value)


if __name__ == "__main__":
    from serl_gs.nodes.cli import run

    run(main)
