"""The learner node's entry point: flags -> `LearnerConfig` -> `Learner.run` (serl_gs.nodes.learner).

    ./run_learner.sh --env serl_gs/PandaPickCube-v0 --run_dir runs/pick --training_starts 1000 --utd 0.25

Drains what the actors send into the replay, trains DrQ/SAC under the rate limiter, publishes parameters and
checkpoints; on start, the newest checkpoint in `--run_dir` (and the replay saved beside it) is resumed.
"""

from __future__ import annotations


def main(argv: list[str]) -> None:
    from absl import flags

    from serl_gs.agents.config import AgentConfig, EncoderConfig
    from serl_gs.data.replay import ReplayConfig
    from serl_gs.logs import configure
    from serl_gs.nodes.cli import env_spec_from_flags, stop_on_signals
    from serl_gs.nodes.learner import Learner, LearnerConfig
    from serl_gs.nodes.rate_limiter import RateLimiterConfig
    from serl_gs.transport import AddressInUse, AuthConfig, LearnerTransportConfig
    from serl_gs.transport.config import port_layout

    f = flags.FLAGS
    configure("learner", f.verbosity if f["verbosity"].present else None)  # serl_gs.logs
    if len(argv) > 1:
        raise ValueError(f"unexpected positional arguments {argv[1:]}")
    lr = f.lr
    env = env_spec_from_flags()
    config = LearnerConfig(
        # The learner reads only observation shapes from its env: it never renders nor steps physics.
        env=env,
        agent=AgentConfig(
            hidden_dims=tuple(int(h) for h in f.hidden_dims.split(",")),
            critic_ensemble_size=f.critic_ensemble_size,
            discount=f.discount,
            n_step=f.n_step,
            batch_size=f.batch_size,
            critic_actor_ratio=f.critic_actor_ratio,
            actor_lr=lr,
            critic_lr=lr,
            temperature_lr=lr,
            initial_temperature=f.initial_temperature,
            encoder=EncoderConfig(
                channels=tuple(int(c) for c in f.encoder_channels.split(",")), latent_dim=f.encoder_latent_dim
            ),
            image_augmentation_pad=f.augmentation_pad,
            compute_dtype=f.compute_dtype,
        ),
        replay=ReplayConfig(capacity=f.replay_capacity, frame_stack=env.frame_stack),  # as logged and saved
        rate=RateLimiterConfig(
            utd=f.utd, min_inserts=f.training_starts, tolerance=f.rate_tolerance, auto=f.auto_tolerance
        ),
        transport=LearnerTransportConfig(
            bind=f.bind, **port_layout(f.port), auth=AuthConfig(secret_file=f.auth_secret_file or None)
        ),
        run_dir=f.run_dir,
        publish_every=f.publish_every,
        checkpoint_every=f.checkpoint_every,
        keep_checkpoints=f.keep_checkpoints,
        save_replay=f.save_replay,
        max_updates=f.max_updates,
        max_seconds=f.max_seconds,
        stop_success=f.stop_success,
        success_window=f.success_window,
        updates_per_call=f.updates_per_call,
        learner_devices=f.learner_devices,
        seed=f.seed,
        log_every_s=f.log_every_s,
        use_wandb=f.wandb,
        demo_paths=tuple(f.demo_path),
        demo_ratio=f.demo_ratio,
        demo_capacity=f.demo_capacity,
    )
    print(f"[learner] {config}", flush=True)
    try:
        learner = Learner(config)
    except AddressInUse as e:
        offset = {"transitions_port": "", "params_port": " + 1", "params_snapshot_port": " + 2"}[e.field]
        raise ValueError(
            f"port {e.port} ({e.field}: --port {f.port}{offset}) on {e.host} is already in use; choose another "
            "--port (the learner takes it and the next two) or stop the program holding it"
        ) from None
    try:
        final = learner.run(stop_on_signals())
    finally:
        learner.close()
    print(f"[learner] done: {final}", flush=True)
    print(f"[learner] {_ended_by(final, config)}", flush=True)


def _ended_by(final: dict, config) -> str:
    """One line saying what ended training, for people reading the console."""
    success, ended, reported = final.get("training_success"), final["episodes_ended"], final["episodes_with_success"]
    if success is not None:
        shown = f"{success:.0%}"
    elif ended and not reported:
        shown = f"n/a: the task reports no `success` ({ended} episodes ended without one)"
    else:
        shown = f"n/a (window not yet full: {reported} of {config.success_window} episodes)"
    window = f"training success over the last {config.success_window} episodes {shown}"
    reasons = {
        "success": f"stopped: {window} reached --stop_success {config.stop_success:.0%}",
        "max_updates": f"stopped: the update budget (--max_updates {config.max_updates}) is spent; {window}",
        "max_seconds": f"stopped: the wall-clock cap (--max_seconds {config.max_seconds:g}) is reached; {window}",
        "signal": f"stopped by a signal; {window}",
    }
    return f"{reasons[final['stop_reason']]}, at {final['updates']} updates after {final['seconds']:.0f} s"


def define_flags() -> None:
    from absl import flags

    from serl_gs.nodes.cli import define_env_flags

    define_env_flags()
    flags.DEFINE_string("run_dir", "runs/default", "Checkpoints, logs, config and git revision go here.")
    flags.DEFINE_integer("replay_capacity", 200_000, "Replay capacity in records (about one transition each).")
    flags.DEFINE_integer("training_starts", 1000, "Transitions in the replay before the first update.")
    flags.DEFINE_float("utd", 0.25, "Updates per inserted transition (each update = critic_actor_ratio steps).")
    flags.DEFINE_float(
        "rate_tolerance", 200.0, "Updates the learner may be ahead of or behind --utd (--auto_tolerance: the floor)."
    )
    flags.DEFINE_bool(
        "auto_tolerance", True,
        "Raise the tolerance to hold one credit window of the largest batch seen (docs/scale.md: the tolerance rule).",
    )  # fmt: skip
    flags.DEFINE_integer("publish_every", 20, "Publish the policy every this many updates.")
    flags.DEFINE_integer("checkpoint_every", 1000, "Checkpoint every this many updates.")
    flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept.")
    flags.DEFINE_bool("save_replay", True, "Save the replay with each checkpoint (for resuming).")
    flags.DEFINE_string("bind", "127.0.0.1", "Interface to listen on; 0.0.0.0 opens the learner to the network.")
    flags.DEFINE_integer("port", 5588, "Transitions port; params use port+1 and port+2.")
    flags.DEFINE_string("auth_secret_file", "", "Shared secret file: CURVE-authenticate and encrypt actors.")
    flags.DEFINE_integer("max_updates", 0, "Stop after this many updates (0 = never).")
    flags.DEFINE_float("max_seconds", 0.0, "Stop after this many seconds (0 = never).")
    flags.DEFINE_float(
        "stop_success", 0.0, "Stop once training success over the last --success_window episodes reaches this (0: off)."
    )
    flags.DEFINE_integer("success_window", 64, "Finished training episodes (all actors) in the success window.")
    flags.DEFINE_integer(
        "updates_per_call", 0,
        "Updates (with their sampling) per jitted call; 0 = auto (--publish_every for state agents), 1 = one per call.",
    )  # fmt: skip
    flags.DEFINE_integer(
        "learner_devices", 0, "Devices the update is split over (data parallel); 0 = auto: every GPU, else one."
    )
    flags.DEFINE_enum("compute_dtype", "float32", ["auto", "float32", "bfloat16"],
                      "Conv/dense compute dtype (params stay float32); auto: bfloat16 on a GPU.")  # fmt: skip
    flags.DEFINE_integer("seed", 0, "Seed of the networks and of sampling.")
    flags.DEFINE_float("log_every_s", 10.0, "Seconds between progress lines and metric rows.")
    flags.DEFINE_bool("wandb", False, "Also log to wandb (offline unless configured).")
    flags.DEFINE_multi_string("demo_path", [], "RLPD: a demo file (python -m serl_gs.demos record); repeatable.")
    flags.DEFINE_float("demo_ratio", 0.5, "RLPD: share of each batch drawn from the demos (with --demo_path).")
    flags.DEFINE_integer("demo_capacity", 50_000, "Records of room in the demo buffer for intervened records.")
    flags.DEFINE_string("hidden_dims", "256,256", "MLP hidden sizes.")
    flags.DEFINE_integer("critic_ensemble_size", 10, "Critic ensemble size (REDQ).")
    flags.DEFINE_float("discount", 0.96, "Discount (SERL's pick task: 0.96).")
    flags.DEFINE_integer("n_step", 1, "n-step returns: the critic's target sums this many discounted rewards.")
    flags.DEFINE_integer("batch_size", 256, "Minibatch size.")
    flags.DEFINE_integer("critic_actor_ratio", 4, "Critic steps per actor step within one update.")
    flags.DEFINE_float("lr", 3e-4, "Adam learning rate of actor, critic and temperature.")
    flags.DEFINE_float("initial_temperature", 0.01, "Initial SAC temperature (entropy weight).")
    flags.DEFINE_string("encoder_channels", "32,32,32,32", "Pixels: 3x3 conv widths, the first with stride 2.")
    flags.DEFINE_integer("encoder_latent_dim", 50, "Pixels: image features after the encoder's bottleneck.")
    flags.DEFINE_integer("augmentation_pad", 4, "Pixels: random-shift padding of DrQ's augmentation (0 = off).")


if __name__ == "__main__":
    from serl_gs.nodes.cli import run

    run(main, define_flags)
