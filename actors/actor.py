"""The actor node's entry point: flags -> `ActorConfig` -> `run_actor` (serl_gs.nodes.actor).

    ./run_actor.sh --learner_host 127.0.0.1 --env serl_gs/PandaPickCube-v0 --num_envs 64 --actor_id gpu0

Steps a batch of envs with the newest policy the learner published and streams records to it; while the
learner is away it keeps acting (buffering up to --away_buffer_mb) and sends the backlog when it returns.
"""

from __future__ import annotations


def main(argv: list[str]) -> None:
    from absl import flags

    from serl_gs.gpu_paths import check_gpu_paths
    from serl_gs.logs import configure
    from serl_gs.nodes.actor import STOP_AWARE_BLOCK_S, ActorConfig, run_actor
    from serl_gs.nodes.cli import env_spec_from_flags, set_render_threads, stop_on_signals
    from serl_gs.transport import ActorTransportConfig, AuthConfig
    from serl_gs.transport.config import MIB, port_layout

    f = flags.FLAGS
    configure(f"actor {f.actor_id}", f.verbosity if f["verbosity"].present else None)  # serl_gs.logs
    if len(argv) > 1:
        raise ValueError(f"unexpected positional arguments {argv[1:]}")
    config = ActorConfig(
        env=env_spec_from_flags(render_backend=f.render_backend, physics=f.physics),
        transport=ActorTransportConfig(
            actor_id=f.actor_id,
            host=f.learner_host,
            **port_layout(f.port),
            auth=AuthConfig(secret_file=f.auth_secret_file or None),
            away_buffer_bytes=f.away_buffer_mb * MIB,
            overflow=f.overflow,
            block_timeout_s=STOP_AWARE_BLOCK_S,
        ),
        num_envs=f.num_envs,
        random_steps=f.random_steps,
        seed=f.seed,
        max_steps=f.max_steps,
        run_dir=f.run_dir or None,
        log_every_s=f.log_every_s,
        noise_beta=f.noise_beta,
        resets_per_step=parse_resets_per_step(f.resets_per_step),
        mjx_impl=f.mjx_impl,
    )
    print(f"[actor {config.actor_id}] {config}", flush=True)
    check_gpu_paths(config.env.physics, config.env.render_backend, renders=config.env.obs_mode == "pixels")
    if config.env.obs_mode == "pixels":
        set_render_threads(f.render_threads)
    run_actor(config, stop_on_signals(), _intervention(f, config))


def _intervention(f, config):
    """--intervention: who may take over from the policy (serl_gs.demos.sources); None for nobody."""
    if f.intervention == "none":
        return None
    from serl_gs.demos.sources import KeyboardSource, ScriptedSource, TaperedSchedule

    if f.intervention == "keyboard":
        if config.num_envs != 1:
            raise ValueError(f"--intervention keyboard drives one env: use --num_envs 1, got {config.num_envs}")
        return KeyboardSource(config.env.observation_spec()[1], takeover=True, title=f"serl_gs: {config.actor_id}")
    from serl_gs.demos.experts import expert_for

    schedule = TaperedSchedule(f.intervention_start, f.intervention_taper_steps, seed=f.seed)
    print(f"[actor {config.actor_id}] scripted interventions: {schedule}", flush=True)
    return ScriptedSource(expert_for(config.env.env), config.num_envs, schedule)


def parse_resets_per_step(value: str) -> int | str | None:
    """--resets_per_step: "auto", "all" (None: every env) or a positive int."""
    if value in ("auto", "all"):
        return None if value == "all" else value
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"--resets_per_step must be 'auto', 'all' or a positive int, got {value!r}")
    return int(value)


def define_flags() -> None:
    from absl import flags

    from serl_gs.nodes.cli import define_env_flags

    define_env_flags()
    flags.DEFINE_enum("render_backend", "auto", ["auto", "gsplat", "reference"], "3DGS render backend (pixels).")
    flags.DEFINE_integer("render_threads", 1, "Torch CPU threads of the reference renderer (0 = torch's default).")
    flags.DEFINE_enum("physics", "auto", ["auto", "mjx", "mujoco"], "Physics path; auto = MJX on GPU, else MuJoCo C.")
    flags.DEFINE_integer("num_envs", 16, "Envs stepped together in one batch.")
    flags.DEFINE_string(
        "resets_per_step", "auto",
        "Most episodes that end in one step (more wait a step; first episodes are staggered): 'auto' = "
        "ceil(num_envs / env steps per episode) for tasks that cannot terminate, 'all', or a number.",
    )  # fmt: skip
    flags.DEFINE_enum("mjx_impl", "auto", ["auto", "warp", "jax"], "MJX implementation (--physics mjx); auto = warp.")
    flags.DEFINE_string("actor_id", "actor0", "This actor's name; several actors feed one learner.")
    flags.DEFINE_string("learner_host", "127.0.0.1", "Host name or address of the learner.")
    flags.DEFINE_integer("port", 5588, "Learner's transitions port; params use port+1 and port+2.")
    flags.DEFINE_string("auth_secret_file", "", "Shared secret file (CURVE auth); must match the learner's.")
    flags.DEFINE_integer("random_steps", 1000, "Env steps (all envs) of uniform random actions first.")
    flags.DEFINE_integer("seed", 0, "Seed of the envs and of the action noise.")
    flags.DEFINE_float(
        "noise_beta", 0.0, "Exploration noise colour: 0 white (SAC's own), 1 pink (correlated over an episode)."
    )
    flags.DEFINE_integer("max_steps", 0, "Batched steps to run before exiting; 0 = until Ctrl-C.")
    flags.DEFINE_string("run_dir", "", "Directory for this actor's metric logs; empty = console only.")
    flags.DEFINE_float("log_every_s", 10.0, "Seconds between progress lines.")
    flags.DEFINE_integer(
        "away_buffer_mb", 256,
        "While the learner is unreachable, keep acting and buffer up to this many MiB of transitions for it.",
    )  # fmt: skip
    flags.DEFINE_enum(
        "intervention", "none", ["none", "scripted", "keyboard"],
        "Who may override the policy (HIL-SERL): the scripted expert on a tapering schedule, or you at the "
        "keyboard (hold a key to take over; one env). Intervened steps also go to the learner's demo buffer.",
    )  # fmt: skip
    flags.DEFINE_float("intervention_start", 0.5, "Scripted: share of episodes the expert takes at the start.")
    flags.DEFINE_integer("intervention_taper_steps", 20_000, "Scripted: env steps until nobody intervenes.")
    flags.DEFINE_enum(
        "overflow", "block", ["block", "drop_oldest"],
        "When the send buffer is full (the learner holds back credit, or stays away past --away_buffer_mb): "
        "pause acting (lose nothing), or keep acting and drop the oldest unsent batches.",
    )  # fmt: skip


if __name__ == "__main__":
    from serl_gs.nodes.cli import run

    run(main, define_flags)
