"""The learner node: receives records into the replay, trains DrQ/SAC, publishes parameters, checkpoints.

    ./run_learner.sh --env serl_gs/PandaPickCube-v0 --run_dir runs/pick --training_starts 1000 --utd 0.25

One loop, one thread: drain what the actors sent (inserting into the replay, acknowledging once stored),
update when the rate limiter allows, publish every `publish_every` updates, checkpoint every
`checkpoint_every`. The rate limiter withholds actor credit when the learner lags and idles the learner when
data lags. On start, the newest checkpoint in `run_dir` (and the replay saved beside it) is resumed.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from serl_gs.agents.config import AgentConfig
from serl_gs.nodes.checkpoint import Checkpointer, existing_directory
from serl_gs.nodes.experiment import (
    INFO_PREFIX,
    EnvSpec,
    agent_config_to_dict,
    obs_spec_of,
    pack_policy,
    spec_to_jsonable,
)
from serl_gs.nodes.metrics_log import MetricsLog, format_console
from serl_gs.nodes.rate_limiter import RateLimiter, RateLimiterConfig
from serl_gs.nodes.receive_log import ReceiveLog
from serl_gs.nodes.run_dir import write_run_info


@dataclasses.dataclass(frozen=True)
class LearnerConfig:
    env: EnvSpec = EnvSpec()
    agent: AgentConfig = AgentConfig()
    run_dir: str = "runs/default"
    replay_capacity: int = 200_000
    replay_storage: str = "auto"
    training_starts: int = 1000  # transitions in the replay before the first update
    utd: float = 0.25  # updates (each critic_actor_ratio gradient steps) per inserted transition
    rate_tolerance: float = 200.0  # updates the learner may run ahead of or behind `utd`
    publish_every: int = 20  # updates
    checkpoint_every: int = 1000  # updates
    keep_checkpoints: int = 3
    save_replay: bool = True  # with each checkpoint, so a restarted learner resumes with its data
    bind: str = "127.0.0.1"
    port: int = 5588  # transitions; params on port+1, parameter snapshots on port+2
    auth_secret_file: str | None = None
    credits_per_actor: int = 8
    max_updates: int = 0  # stop after this many updates (0 = never)
    max_seconds: float = 0.0  # stop after this long (0 = never)
    seed: int = 0
    log_every_s: float = 10.0
    use_wandb: bool = False

    def __post_init__(self):
        if self.training_starts < 1:
            raise ValueError(f"training_starts must be >= 1, got {self.training_starts}")
        for name in ("publish_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_updates < 0 or self.max_seconds < 0:
            raise ValueError(f"max_updates and max_seconds must be >= 0, got {self.max_updates}, {self.max_seconds}")


class Learner:
    """The learner's state and one `step()` of its loop; `run()` loops until told to stop."""

    def __init__(self, config: LearnerConfig):
        from serl_gs.agents.learning import init_training_state, make_update_fn
        from serl_gs.agents.networks import make_networks, policy_params
        from serl_gs.data.records import RecordSpec
        from serl_gs.data.replay import ReplayBuffer, ReplayConfig
        from serl_gs.transport import (
            AuthConfig,
            LearnerTransportConfig,
            ParamPublisher,
            StreamPosition,
            TransitionServer,
        )

        self.config = c = config
        self.run_dir = Path(c.run_dir).expanduser().resolve()
        write_run_info(self.run_dir, "learner", c)
        probe = c.env.make_vec(1, seed=0)
        self.obs_spec, self.action_dim = obs_spec_of(probe), probe.single_action_space.shape[0]
        probe.close()
        self.networks = make_networks(c.agent, self.obs_spec, self.action_dim)
        self._policy_params = policy_params
        self._update = make_update_fn(self.networks)
        self.state = init_training_state(self.networks, jax.random.PRNGKey(c.seed))
        self.key = jax.random.PRNGKey(c.seed + 1)
        self.rate = RateLimiter(RateLimiterConfig(c.utd, c.training_starts, c.rate_tolerance))
        self.checkpoints = Checkpointer(self.run_dir / "checkpoints", keep=c.keep_checkpoints)
        self.counters = collections.Counter({"updates": 0, "inserted": 0, "records": 0})

        spec = RecordSpec(
            obs=tuple((name, tuple(s.shape), np.dtype(s.dtype).name) for name, s in sorted(self.obs_spec.items())),
            action_dim=self.action_dim,
        )
        positions = None
        replay_dir = existing_directory(self.run_dir / "replay")
        step = self.checkpoints.latest_step()
        if step is not None:
            step, self.state, meta = self.checkpoints.restore(self.state, step)
            for name, value in meta["counters"].items():  # assignment: Counter.update would add
                self.counters[name] = int(value)
            self.key = jax.random.PRNGKey(int(meta["key_seed"]))
            print(f"[learner] resumed from checkpoint {step}: {dict(self.counters)}", flush=True)
        replay_state = None
        if step is not None and replay_dir is not None and c.save_replay:
            self.replay = ReplayBuffer.restore(replay_dir)
            replay_state = _load_replay_state(self.run_dir, self.replay.total_inserted)
            if replay_state is None:
                print(
                    f"[learner] warning: the saved replay ({self.replay.total_inserted} records) matches no saved "
                    "transport state; starting with an empty replay",
                    flush=True,
                )
        if replay_state is not None:
            positions = [StreamPosition(**p) for p in replay_state["positions"]]
            # The data counters were saved with the replay they describe (the orbax meta may be a save older).
            for name, value in replay_state["counters"].items():
                self.counters[name] = int(value)
            print(f"[learner] resumed replay: {self.replay.stats()}", flush=True)
        else:
            self.replay = ReplayBuffer(spec, ReplayConfig(c.replay_capacity, c.replay_storage))

        # Batches acknowledged since the last checkpoint live in a write-ahead log until the next one.
        self.receive_log = ReceiveLog(self.run_dir / "receive_log") if c.save_replay else None
        if self.receive_log is not None:
            if replay_state is None:
                self.receive_log.clear()  # nothing to add them to: a fresh run
            else:
                positions = self._replay_receive_log(positions or [])

        transport = LearnerTransportConfig(
            bind=c.bind,
            transitions_port=c.port,
            params_port=c.port + 1,
            params_snapshot_port=c.port + 2,
            auth=AuthConfig(secret_file=c.auth_secret_file),
            credits_per_actor=c.credits_per_actor,
        )
        self.server = TransitionServer(transport, resume_positions=positions or ())
        self.publisher = ParamPublisher(transport)
        self.log = MetricsLog(self.run_dir, "learner", c.use_wandb, config=agent_config_to_dict(c.agent))
        self._episodes: dict[str, list[float]] = {"episode_return": [], "success": []}
        self._timing = collections.Counter({"update_s": 0.0, "wait_s": 0.0})
        self._metrics: dict[str, Any] = {}
        self._credits = c.credits_per_actor
        self._published_version: int | None = None
        self.publish()

    def _replay_receive_log(self, positions: list) -> list:
        """Re-inserts logged batches past the checkpointed positions; returns the positions moved past them."""
        from serl_gs.transport import StreamPosition

        next_seq = {(p.actor_id, p.session): p.next_seq for p in positions}
        replayed = 0
        for batch in self.receive_log:
            key = (batch.actor_id, batch.session)
            if batch.seq < next_seq.get(key, 0):
                continue  # already in the checkpointed replay
            self._store(batch.actor_id, batch.session, batch.records)
            next_seq[key] = batch.seq + 1
            replayed += 1
        if replayed:
            print(f"[learner] re-inserted {replayed} batches received after the checkpoint", flush=True)
        return [StreamPosition(actor, session, seq) for (actor, session), seq in next_seq.items()]

    def _store(self, actor_id: str, session: int, records: dict) -> int:
        self.replay.insert(f"{actor_id}:{session}", records)
        n = len(records["env_index"])
        self.counters["records"] += n
        self.counters[f"records/{actor_id}"] += n
        self.counters["inserted"] += int((~records["is_first"]).sum())
        return n

    # ---- pieces of the loop -----------------------------------------------------------------------------
    def publish(self) -> None:
        """Broadcasts the policy, versioned by the update count (once per version: versions must increase)."""
        version = int(self.counters["updates"])
        if version == self._published_version:
            return
        params = self._policy_params(self.state.params)
        data = pack_policy(self.config.agent, self.obs_spec, self.action_dim, params)
        self.publisher.publish(data, version=version)
        self._published_version = version

    def receive(self, timeout: float) -> int:
        """Inserts every batch that arrives within `timeout` s (then whatever is queued); returns records."""
        got, wait = 0, timeout
        while True:
            batch = self.server.get(timeout=wait, ack=False)
            if batch is None:
                return got
            records = dict(batch.arrays)
            info = {k[len(INFO_PREFIX) :]: records.pop(k) for k in list(records) if k.startswith(INFO_PREFIX)}
            ended = records["terminated"] | records["truncated"]
            for name in ("episode_return", "success"):
                if name in info and ended.any():
                    self._episodes[name].extend(np.asarray(info[name])[ended].tolist())
            header = batch.header
            n = self._store(header.actor_id, header.session, records)
            if self.receive_log is not None:
                self.receive_log.append(header.actor_id, header.session, header.seq, records)
            self.server.ack(header)  # only now may the actor forget it
            got += n
            wait = 0.0

    def update(self) -> None:
        self.key, sample_key = jax.random.split(self.key)
        batch = self.replay.sample(sample_key, self.config.agent.batch_size, self.config.agent.critic_actor_ratio)
        self.state, self._metrics = self._update(self.state, batch)
        self.counters["updates"] += 1

    def checkpoint(self) -> None:
        """Training state and counters (orbax, atomic), then the replay and the transport positions it holds."""
        updates = int(self.counters["updates"])
        key_seed = int(jax.random.randint(self.key, (), 0, 2**31 - 1))
        self.key = jax.random.PRNGKey(key_seed)
        if self.config.save_replay:
            self._save_replay()
        meta = {
            "counters": {k: int(v) for k, v in self.counters.items()},
            "key_seed": key_seed,
            "agent_config": agent_config_to_dict(self.config.agent),
            "env": dataclasses.asdict(self.config.env),
            "obs_spec": spec_to_jsonable(self.obs_spec),
            "action_dim": self.action_dim,
        }
        if self.checkpoints.latest_step() == updates:
            # No update since that save (e.g. a stop right after a periodic checkpoint): the training state is
            # the saved one; only the data counters and the key moved on, and they live in the meta.
            self.checkpoints.replace_meta(updates, meta)
        else:
            self.checkpoints.save(updates, self.state, meta)

    def _save_replay(self) -> None:
        """The replay, and beside it the transport positions and data counters that describe it.

        The state file is written first under a pending name stamped with the replay's insert count, then the
        replay (atomic rename), then the state file is renamed: whichever of the two state files matches the
        replay on disk is the right one, wherever a crash falls. Then the receive log is spent.
        """
        state = {
            "total_inserted": int(self.replay.total_inserted),
            "positions": [dataclasses.asdict(p) for p in self.server.positions()],
            "counters": {k: int(v) for k, v in self.counters.items() if k != "updates"},
        }
        pending = self.run_dir / _REPLAY_STATE_PENDING
        pending.write_text(json.dumps(state))
        self.replay.save(self.run_dir / "replay")
        os.replace(pending, self.run_dir / _REPLAY_STATE)
        self.receive_log.clear()

    def step(self) -> None:
        c, counters = self.config, self.counters
        can_update = self.rate.can_update(counters["inserted"], counters["updates"]) and self.replay.num_transitions
        start = time.perf_counter()
        self.receive(timeout=0.0 if can_update else 0.05)
        if not can_update:
            self._timing["wait_s"] += time.perf_counter() - start
        else:
            start = time.perf_counter()
            self.update()
            self._timing["update_s"] += time.perf_counter() - start
            if counters["updates"] % c.publish_every == 0:
                self.publish()
            if counters["updates"] % c.checkpoint_every == 0:
                self.checkpoint()
        credits = c.credits_per_actor if self.rate.can_insert(counters["inserted"], counters["updates"]) else 0
        if credits != self._credits:
            self.server.set_credits(credits)
            self._credits = credits

    def report(self, elapsed: float, since: collections.Counter) -> dict[str, Any]:
        c = self.counters
        busy = self._timing["update_s"] + self._timing["wait_s"]
        metrics: dict[str, Any] = {
            "updates": c["updates"],
            "inserted": c["inserted"],
            "updates_per_s": (c["updates"] - since["updates"]) / elapsed,
            "transitions_per_s": (c["inserted"] - since["inserted"]) / elapsed,
            "replay_size": self.replay.size,
            "idle_fraction": self._timing["wait_s"] / busy if busy else 0.0,
            "credits": self._credits,
        }
        metrics.update({k: float(v) for k, v in jax.device_get(self._metrics).items()})
        for name, values in self._episodes.items():
            if values:
                metrics[name] = float(np.mean(values))
        self._episodes = {k: [] for k in self._episodes}
        stats = self.server.stats(current_param_version=int(c["updates"]))
        for actor, actor_stats in stats["actors"].items():
            if actor_stats.get("param_lag") is not None:
                metrics[f"param_lag/{actor}"] = actor_stats["param_lag"]
        metrics.update(
            rejected=stats["rejected_total"],
            duplicates_dropped=stats["duplicates_dropped"],
            queue_batches=stats["queue_batches"],
        )
        self._timing = collections.Counter({"update_s": 0.0, "wait_s": 0.0})
        return metrics

    def run(self, stop: threading.Event | None = None) -> dict[str, Any]:
        c = self.config
        stop = stop or threading.Event()
        t0 = last = time.monotonic()
        since = collections.Counter(self.counters)
        start_updates = self.counters["updates"]
        metrics: dict[str, Any] = {}
        while not stop.is_set():
            if c.max_updates and self.counters["updates"] - start_updates >= c.max_updates:
                break
            if c.max_seconds and time.monotonic() - t0 >= c.max_seconds:
                break
            self.step()
            now = time.monotonic()
            if now - last >= c.log_every_s:
                metrics = self.report(now - last, since)
                keys = [
                    "updates",
                    "inserted",
                    "updates_per_s",
                    "transitions_per_s",
                    "idle_fraction",
                    "episode_return",
                    "success",
                    "critic_loss",
                    "temperature",
                ]
                print(format_console("learner", metrics, keys), flush=True)
                self.log.log(int(self.counters["updates"]), metrics)
                last, since = now, collections.Counter(self.counters)
        self.checkpoint()
        self.publish()
        return {**metrics, **{k: int(v) for k, v in self.counters.items()}}

    def close(self) -> None:
        self.server.close()
        self.publisher.close()
        self.checkpoints.close()
        self.log.close()


_REPLAY_STATE = "replay_state.json"
_REPLAY_STATE_PENDING = "replay_state.pending.json"


def _load_replay_state(run_dir: Path, total_inserted: int) -> dict | None:
    """The saved transport positions and counters that match a restored replay (see `_save_replay`)."""
    for name in (_REPLAY_STATE_PENDING, _REPLAY_STATE):
        path = run_dir / name
        if path.exists():
            state = json.loads(path.read_text())
            if state["total_inserted"] == total_inserted:
                return state
    return None


# ---- entry point: flags are parsed here and nowhere else --------------------------------------------------
def main(argv: list[str]) -> None:
    from absl import flags

    from serl_gs.nodes.cli import env_spec_from_flags, stop_on_signals

    f = flags.FLAGS
    if len(argv) > 1:
        raise ValueError(f"unexpected positional arguments {argv[1:]}")
    # The learner only reads the observation spec from its env: it never renders nor steps physics.
    env = env_spec_from_flags(render_backend="reference", physics="mujoco")
    agent = AgentConfig(
        hidden_dims=tuple(int(h) for h in f.hidden_dims.split(",")),
        critic_ensemble_size=f.critic_ensemble_size,
        discount=f.discount,
        batch_size=f.batch_size,
        critic_actor_ratio=f.critic_actor_ratio,
        actor_lr=f.lr,
        critic_lr=f.lr,
        temperature_lr=f.lr,
    )
    config = LearnerConfig(
        env=env,
        agent=agent,
        run_dir=f.run_dir,
        replay_capacity=f.replay_capacity,
        training_starts=f.training_starts,
        utd=f.utd,
        publish_every=f.publish_every,
        checkpoint_every=f.checkpoint_every,
        keep_checkpoints=f.keep_checkpoints,
        save_replay=f.save_replay,
        bind=f.bind,
        port=f.port,
        auth_secret_file=f.auth_secret_file or None,
        max_updates=f.max_updates,
        max_seconds=f.max_seconds,
        seed=f.seed,
        log_every_s=f.log_every_s,
        use_wandb=f.wandb,
    )
    print(f"[learner] {config}", flush=True)
    learner = Learner(config)
    try:
        final = learner.run(stop_on_signals())
    finally:
        learner.close()
    print(f"[learner] done: {final}", flush=True)


def define_flags() -> None:
    from absl import flags

    from serl_gs.nodes.cli import define_env_flags

    define_env_flags()
    flags.DEFINE_string("run_dir", "runs/default", "Checkpoints, logs, config and git revision go here.")
    flags.DEFINE_integer("replay_capacity", 200_000, "Replay capacity in transitions.")
    flags.DEFINE_integer("training_starts", 1000, "Transitions in the replay before the first update.")
    flags.DEFINE_float("utd", 0.25, "Updates per inserted transition (each update = critic_actor_ratio steps).")
    flags.DEFINE_integer("publish_every", 20, "Publish the policy every this many updates.")
    flags.DEFINE_integer("checkpoint_every", 1000, "Checkpoint every this many updates.")
    flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept.")
    flags.DEFINE_bool("save_replay", True, "Save the replay with each checkpoint (for resuming).")
    flags.DEFINE_string("bind", "127.0.0.1", "Interface to listen on; 0.0.0.0 opens the learner to the network.")
    flags.DEFINE_integer("port", 5588, "Transitions port; params use port+1 and port+2.")
    flags.DEFINE_string("auth_secret_file", "", "Shared secret file: CURVE-authenticate and encrypt actors.")
    flags.DEFINE_integer("max_updates", 0, "Stop after this many updates (0 = never).")
    flags.DEFINE_float("max_seconds", 0.0, "Stop after this many seconds (0 = never).")
    flags.DEFINE_integer("seed", 0, "Seed of the networks and of sampling.")
    flags.DEFINE_float("log_every_s", 10.0, "Seconds between progress lines and metric rows.")
    flags.DEFINE_bool("wandb", False, "Also log to wandb (offline unless configured).")
    flags.DEFINE_string("hidden_dims", "256,256", "MLP hidden sizes.")
    flags.DEFINE_integer("critic_ensemble_size", 10, "Critic ensemble size (REDQ).")
    flags.DEFINE_float("discount", 0.96, "Discount (SERL's pick task: 0.96).")
    flags.DEFINE_integer("batch_size", 256, "Minibatch size.")
    flags.DEFINE_integer("critic_actor_ratio", 4, "Critic steps per actor step within one update.")
    flags.DEFINE_float("lr", 3e-4, "Adam learning rate of actor, critic and temperature.")


if __name__ == "__main__":
    from serl_gs.nodes.cli import run

    run(main, define_flags)
