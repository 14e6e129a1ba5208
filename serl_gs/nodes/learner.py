"""The learner node: receives records into the replay, trains DrQ/SAC, publishes parameters, checkpoints.

One loop, one thread: drain what the actors sent (inserting into the replay, acknowledging once stored),
update when the rate limiter allows, publish every `publish_every` updates, save every `checkpoint_every`.
The rate limiter withholds actor credit when the learner lags and idles the learner when data lags. On start,
the newest checkpoint in `run_dir` (and the replay saved beside it) is restored (serl_gs.nodes.resume).

Updates run `updates_per_call` at a time in one jitted call that also samples their minibatches
(agents.learning.make_learner_step_fn): on a CPU a small state agent pays per-call costs (dispatch, the
sampler's pass over the replay) once per call instead of once per update. The rate limiter lets a call start
only if its last update is still allowed, and publishing / saving happen when a call crosses their multiples,
so both keep their meaning. `updates_per_call=1` is the one-update-per-call path.

The run ends at a signal, at `max_updates`, at `max_seconds`, or once training success over the last
`success_window` finished episodes reaches `stop_success`; `run()` says which (`stop_reason`).

    learner = Learner(LearnerConfig(env=EnvSpec("serl_gs/CartpoleBalance-v0"), run_dir="runs/cp"))
    try:
        learner.run(stop)          # or call learner.step() yourself; learner.save() checkpoints
    finally:
        learner.close()
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from serl_gs.agents.config import AgentConfig
from serl_gs.agents.payload import agent_config_to_dict, pack_policy, spec_to_jsonable
from serl_gs.data.records import EXTRAS_PREFIX, describe_records, split_extras
from serl_gs.data.replay import ReplayConfig
from serl_gs.demos.mixing import INTERVENED, check_intervened
from serl_gs.nodes.env_spec import EnvSpec
from serl_gs.nodes.episode_stats import EpisodeStats
from serl_gs.nodes.metrics_log import MetricsLog, format_console
from serl_gs.nodes.rate_limiter import RateLimiter, RateLimiterConfig
from serl_gs.nodes.resume import ResumableRun
from serl_gs.nodes.run_dir import write_run_info
from serl_gs.transport.config import LearnerTransportConfig

_CONSOLE_KEYS = [
    "updates",
    "transitions",
    "updates_per_s",
    "transitions_per_s",
    "idle_fraction",
    "episode_return",
    "success",
    "critic_loss",
    "temperature",
    "rejected",
]
DEMO_REPLAY_DIR = "demo_replay"  # the demo buffer, saved beside the replay (serl_gs.demos.mixing)
_MAX_REFUSED_PEERS_LOGGED = 1024  # peers named in the log; beyond that refusals are only counted


@dataclasses.dataclass(frozen=True)
class LearnerConfig:
    """The learner's components' configs, nested, plus the loop's own settings."""

    env: EnvSpec = EnvSpec()
    agent: AgentConfig = AgentConfig()
    replay: ReplayConfig = ReplayConfig(capacity=200_000)
    # rate.min_inserts is --training_starts: transitions in the replay before the first update.
    rate: RateLimiterConfig = RateLimiterConfig(utd=0.25, min_inserts=1000, tolerance=200.0)
    transport: LearnerTransportConfig = LearnerTransportConfig()
    run_dir: str = "runs/default"
    publish_every: int = 20  # updates
    checkpoint_every: int = 1000  # updates
    keep_checkpoints: int = 3
    save_replay: bool = True  # with each checkpoint, so a restarted learner resumes with its data
    max_updates: int = 0  # stop after this many updates (0 = never)
    max_seconds: float = 0.0  # stop after this long (0 = never)
    stop_success: float = 0.0  # stop once training success over the last `success_window` episodes reaches it
    success_window: int = 64  # finished episodes (all actors) in the training-success window
    # Updates per jitted call; 0 = auto: publish_every for state agents (a call ends where a publish falls),
    # 1 where the update is unrolled (pixel agents on a CPU: K copies of the conv update would take long to
    # compile).
    updates_per_call: int = 0
    seed: int = 0
    log_every_s: float = 10.0
    use_wandb: bool = False
    # RLPD (serl_gs.demos.mixing): demo files (serl_gs.demos.dataset) in a second replay; each batch draws
    # round(batch_size * demo_ratio) transitions from it and the rest online. Intervened records join it too.
    demo_paths: tuple[str, ...] = ()
    demo_ratio: float = 0.5
    demo_capacity: int = 50_000  # records of room in the demo buffer for intervened records (beyond the files')

    def __post_init__(self):
        if self.rate.min_inserts < 1:
            raise ValueError(f"training_starts (rate.min_inserts) must be >= 1, got {self.rate.min_inserts}")
        for name in ("publish_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_updates < 0 or self.max_seconds < 0:
            raise ValueError(f"max_updates and max_seconds must be >= 0, got {self.max_updates}, {self.max_seconds}")
        if not 0.0 <= self.stop_success <= 1.0:
            raise ValueError(f"stop_success must be in [0, 1] (0 = off), got {self.stop_success}")
        if self.success_window < 1:
            raise ValueError(f"success_window must be >= 1, got {self.success_window}")
        if self.updates_per_call < 0:
            raise ValueError(f"updates_per_call must be >= 0 (0 = auto), got {self.updates_per_call}")
        if isinstance(self.demo_paths, str):
            raise ValueError(f"demo_paths must be a tuple of paths, got the string {self.demo_paths!r}")
        if not 0.0 < self.demo_ratio < 1.0:
            raise ValueError(f"demo_ratio must be in (0, 1), got {self.demo_ratio}")
        if not 0 < round(self.agent.batch_size * self.demo_ratio) < self.agent.batch_size:
            raise ValueError(
                f"demo_ratio {self.demo_ratio} of batch_size {self.agent.batch_size} leaves no demo or no online "
                "transition in a batch"
            )
        if self.demo_capacity < 0:
            raise ValueError(f"demo_capacity must be >= 0, got {self.demo_capacity}")
        if self.updates_per_call > 2 * self.rate.tolerance:
            # A call needs the learner `updates_per_call` ahead; past 2 x tolerance learner and actors could both wait.
            raise ValueError(
                f"updates_per_call {self.updates_per_call} exceeds 2 x the rate limiter's tolerance "
                f"({self.rate.tolerance})"
            )


class Learner:
    """The learner's state and one `step()` of its loop; `save()` checkpoints, `run()` loops until told to stop.

    `counters`: "updates"; "records" (every record stored, each actor's also under "records/<actor>", for the
    first `transport.max_actors` actor ids; later ones under "records/(more actors)", so peers cannot grow it);
    "transitions" (records that are not an episode's first frame, each the end of one (obs, next_obs) pair:
    what `utd` and the rate limiter count).
    """

    def __init__(self, config: LearnerConfig):
        from serl_gs.agents.learning import (
            init_training_state,
            make_learner_step_fn,
            make_update_fn,
            make_update_many_fn,
            unrolls_updates,
        )
        from serl_gs.agents.networks import make_networks, policy_params
        from serl_gs.data.records import RecordSpec
        from serl_gs.data.replay import ReplayBuffer
        from serl_gs.transport import ParamPublisher, TransitionServer

        self.config = c = config
        self.run_dir = Path(c.run_dir).expanduser().resolve()
        write_run_info(self.run_dir, "learner", c)
        if c.env.scene:  # the captures the actors render, with their hashes
            from serl_gs.render.manifest import record_scene

            record_scene(c.env.scene, self.run_dir)
        self.obs_spec, self.action_dim = c.env.observation_spec()  # one frame per camera: what records carry
        self.policy_obs_spec = c.env.policy_obs_spec(self.obs_spec)  # what the networks see (frame stacks)
        self.networks = make_networks(c.agent, self.policy_obs_spec, self.action_dim)
        self._policy_params = policy_params
        self.updates_per_call = c.updates_per_call or (
            1 if unrolls_updates(self.networks) else min(c.publish_every, int(2 * c.rate.tolerance))
        )
        if self.updates_per_call == 1:
            self._update = make_update_fn(self.networks)
        else:  # device-resident replay: sampled inside the call; host replay: gathered once, then one call
            self._learner_step = make_learner_step_fn(self.networks, self.updates_per_call, c.env.frame_stack)
            self._update_many = make_update_many_fn(self.networks)
        self.rate = RateLimiter(c.rate)
        self.counters = collections.Counter({"updates": 0, "transitions": 0, "records": 0})
        self._actor_counters = 0  # "records/<actor>" keys in `counters`

        meta = {
            "agent_config": agent_config_to_dict(c.agent),
            "env": dataclasses.asdict(c.env),
            "obs_spec": spec_to_jsonable(self.policy_obs_spec),
            "action_dim": self.action_dim,
        }
        self.persistence = ResumableRun(self.run_dir, keep=c.keep_checkpoints, save_replay=c.save_replay, meta=meta)
        restored = self.persistence.restore(init_training_state(self.networks, jax.random.PRNGKey(c.seed)))
        self.state = restored.state
        self.key = jax.random.PRNGKey(c.seed + 1 if restored.key_seed is None else restored.key_seed)
        for name, value in restored.counters.items():  # assignment: Counter.update would add
            self.counters[name] = value
        self._actor_counters = sum(name.startswith("records/") for name in self.counters)
        if restored.step is not None:
            print(f"[learner] resumed from checkpoint {restored.step}: {dict(self.counters)}", flush=True)
        if restored.warning:
            print(f"[learner] warning: {restored.warning}", flush=True)
        if restored.replay is not None:
            self.replay = restored.replay
            print(f"[learner] resumed replay: {self.replay.stats()}", flush=True)
        else:
            spec = RecordSpec(
                obs=tuple((name, tuple(s.shape), np.dtype(s.dtype).name) for name, s in sorted(self.obs_spec.items())),
                action_dim=self.action_dim,
            )
            self.replay = ReplayBuffer(spec, dataclasses.replace(c.replay, frame_stack=c.env.frame_stack))
        self.demos = self._load_demos(resumed=restored.replay is not None)
        replayed = 0
        for batch in restored.unsaved_batches():
            records, extras = split_extras(batch.records)
            self._store(batch.actor_id, batch.session, records, extras.get(INTERVENED))
            replayed += 1
        if replayed:
            print(f"[learner] re-inserted {replayed} batches received after the checkpoint", flush=True)

        server = None
        try:
            server = TransitionServer(c.transport, resume_positions=restored.stream_positions())
            self.publisher = ParamPublisher(c.transport)
        except BaseException:  # e.g. a taken port: leave nothing running behind the one-line error
            if server is not None:
                server.close()
            self.persistence.close()
            raise
        self.server = server
        self.log = MetricsLog(self.run_dir, "learner", c.use_wandb, config=agent_config_to_dict(c.agent))
        self._episodes = EpisodeStats()
        self.success_window: collections.deque[float] = collections.deque(maxlen=c.success_window)
        self._refused_peers: set[str] = set()
        self._timing = collections.Counter({"update_s": 0.0, "wait_s": 0.0})
        self._metrics: dict[str, Any] = {}
        self._demo_batches = 0  # updates on mixed batches since the last report
        self._credits = c.transport.credits_per_actor
        self._published_version: int | None = None
        self.publish()

    def _load_demos(self, resumed: bool):
        """The demo buffer: the one saved with the restored replay, else the files' (checked against this
        learner's spec first), else None until an intervened record arrives."""
        from serl_gs.data.replay import ReplayBuffer
        from serl_gs.data.saving import existing_directory
        from serl_gs.demos.mixing import DemoBuffer

        c = self.config
        saved = existing_directory(self.run_dir / DEMO_REPLAY_DIR)
        if resumed and saved is not None:
            demos = DemoBuffer(ReplayBuffer.restore(saved))
            print(f"[learner] resumed demo buffer: {demos.replay.stats()}", flush=True)
        elif c.demo_paths:
            demos = DemoBuffer.from_files(c.demo_paths, self.replay.spec, self.replay.config, c.demo_capacity,
                                          self.obs_spec, self.action_dim, c.env.task())  # fmt: skip
            episodes = sum(f.episodes for f in demos.files)
            print(f"[learner] demos: {len(demos.files)} files, {episodes} episodes, {demos.num_transitions} "
                  f"transitions; each batch {self._demo_count()} demo + "
                  f"{c.agent.batch_size - self._demo_count()} online", flush=True)  # fmt: skip
        else:
            return None
        return demos

    def _demo_count(self) -> int:
        from serl_gs.demos.mixing import demo_count

        return demo_count(self.config.agent.batch_size, self.config.demo_ratio)

    def _store(self, actor_id: str, session: int, records: dict, intervened: np.ndarray | None = None) -> int:
        self.replay.insert(f"{actor_id}:{session}", records)  # a restarted actor (new session) starts new streams
        if intervened is not None and intervened.any():  # HIL-SERL: corrected steps go to the demo buffer too
            self.counters["intervened"] += int((intervened.astype(bool) & ~records["is_first"]).sum())
            if self.demos is None:  # (without demo files: made at the first intervention, see docs/demos.md)
                from serl_gs.data.replay import ReplayBuffer
                from serl_gs.demos.mixing import DemoBuffer

                config = dataclasses.replace(self.replay.config, capacity=max(2, self.config.demo_capacity))
                self.demos = DemoBuffer(ReplayBuffer(self.replay.spec, config))
        if self.demos is not None:  # every message: a run's first transition needs the record before it
            self.demos.add_intervened(f"{actor_id}:{session}", records, intervened)
        n = len(records["env_index"])
        self.counters["records"] += n
        key = f"records/{actor_id}"
        if key not in self.counters and self._actor_counters >= self.config.transport.max_actors:
            key = "records/(more actors)"
        self._actor_counters += key not in self.counters
        self.counters[key] += n
        self.counters["transitions"] += int((~records["is_first"]).sum())
        return n

    # ---- pieces of the loop -----------------------------------------------------------------------------
    def publish(self) -> None:
        """Broadcasts the policy, versioned by the update count (once per version: versions must increase)."""
        version = int(self.counters["updates"])
        if version == self._published_version:
            return
        params = self._policy_params(self.state.params)
        data = pack_policy(
            self.config.agent, self.policy_obs_spec, self.action_dim, params, task=self.config.env.task()
        )
        self.publisher.publish(data, version=version)
        self._published_version = version

    def receive(self, timeout: float) -> int:
        """Inserts every batch that arrives within `timeout` s (then whatever is queued); returns records.

        Nothing of a batch is used before it is checked: records of another schema (an actor of another task,
        missing fields) or that the replay cannot take (NaN, env_index out of range) are refused; the actor
        hears why and stops, the refusal is counted (`rejected`) and logged once per actor, training goes on.
        """
        got, wait = 0, timeout
        while True:
            batch = self.server.get(timeout=wait, ack=False)
            if batch is None:
                return got
            wait = 0.0
            header = batch.header
            records, extras = split_extras(batch.arrays)
            if not self._check(header, records, extras):
                continue
            intervened = extras.get(INTERVENED)
            n = self._store(header.actor_id, header.session, records, intervened)
            logged = records if intervened is None else {**records, EXTRAS_PREFIX + INTERVENED: intervened}
            self.persistence.log_received(header.actor_id, header.session, header.seq, logged)
            self.server.ack(header)  # only now may the actor forget it
            success = self._episodes.add(records, extras)
            if success is not None:
                self.success_window.extend(success.tolist())
            got += n

    def _check(self, header, records: dict, extras: dict | None = None) -> bool:
        """True if the replay can take `records`; otherwise refuses the batch (and its stream) and says why."""
        try:
            self.replay.spec.check(records)
        except ValueError as e:
            reason = "schema"
            detail = (
                f"{e}. The actor sends records {describe_records(records)}; this learner ({self._task()}) stores "
                f"{self.replay.spec.describe()}. Start the actor with the learner's env flags"
            )
        else:
            try:
                self.replay.check(records)
                check_intervened((extras or {}).get(INTERVENED), len(records["env_index"]))
                return True
            except ValueError as e:
                reason, detail = "bad_records", str(e)
        self.server.refuse(header, reason, detail)
        peer = header.actor_id
        if peer not in self._refused_peers and len(self._refused_peers) < _MAX_REFUSED_PEERS_LOGGED:
            self._refused_peers.add(peer)
            print(f"[learner] refused actor {peer!r} ({reason}; training goes on): {detail}", flush=True)
        return False

    def _task(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.config.env.task().items())

    def update(self) -> None:
        """`updates_per_call` updates on fresh minibatches, in one call."""
        agent, k = self.config.agent, self.updates_per_call
        self.key, sample_key = jax.random.split(self.key)
        if self.demos is not None and self.demos.num_transitions:  # RLPD: demo + online halves, concatenated
            from serl_gs.demos.mixing import mixed_sample

            flat = mixed_sample(self.replay, self.demos.replay, sample_key, agent.batch_size,
                                k * agent.critic_actor_ratio, self.config.demo_ratio, agent.n_step,
                                agent.discount)  # fmt: skip
            if k == 1:
                self.state, self._metrics = self._update(self.state, flat)
            else:
                batches = jax.tree.map(lambda x: x.reshape(k, agent.critic_actor_ratio, *x.shape[1:]), flat)
                self.state, self._metrics = self._update_many(self.state, batches)
            self._demo_batches += k
        elif k == 1:
            batch = self.replay.sample(sample_key, agent.batch_size, agent.critic_actor_ratio, agent.n_step,
                                       agent.discount)  # fmt: skip
            self.state, self._metrics = self._update(self.state, batch)
        elif (fields := self.replay.device_fields()) is not None:
            self.state, self._metrics = self._learner_step(self.state, fields, sample_key)
        else:  # frames in host memory: one gather for all K updates, one transfer, one call
            flat = self.replay.sample(sample_key, agent.batch_size, k * agent.critic_actor_ratio, agent.n_step,
                                      agent.discount)  # fmt: skip
            batches = jax.tree.map(lambda x: x.reshape(k, agent.critic_actor_ratio, *x.shape[1:]), flat)
            self.state, self._metrics = self._update_many(self.state, batches)
        self.counters["updates"] += k

    def training_success(self) -> float | None:
        """Success over the last `success_window` finished episodes; None until the window is full."""
        window = self.success_window
        return float(np.mean(window)) if len(window) == window.maxlen else None

    def save(self) -> None:
        """Checkpoints everything a restarted learner needs (serl_gs.nodes.resume)."""
        key_seed = int(jax.random.randint(self.key, (), 0, 2**31 - 1))
        self.key = jax.random.PRNGKey(key_seed)
        if self.demos is not None and self.config.save_replay:  # before the replay: see docs/demos.md (resume)
            self.demos.replay.save(self.run_dir / DEMO_REPLAY_DIR)
        self.persistence.save(self.state, self.counters, key_seed, self.replay, self.server.positions())

    def step(self) -> None:
        c, counters = self.config, self.counters
        # A call of K updates starts only if its last update is one the rate limiter allows now.
        last_update = counters["updates"] + self.updates_per_call - 1
        can_update = self.rate.can_update(counters["transitions"], last_update) and self.replay.num_transitions
        start = time.perf_counter()
        self.receive(timeout=0.0 if can_update else 0.05)
        if not can_update:
            self._timing["wait_s"] += time.perf_counter() - start
        else:
            start = time.perf_counter()
            before = counters["updates"]
            self.update()
            self._timing["update_s"] += time.perf_counter() - start
            crossed = lambda every: counters["updates"] // every > before // every
            if crossed(c.publish_every):
                self.publish()
            if crossed(c.checkpoint_every):
                self.save()
        may_insert = self.rate.can_insert(counters["transitions"], counters["updates"])
        credits = c.transport.credits_per_actor if may_insert else 0
        if credits != self._credits:
            self.server.set_credits(credits)
            self._credits = credits

    def report(self, elapsed: float, since: collections.Counter) -> dict[str, Any]:
        c = self.counters
        busy = self._timing["update_s"] + self._timing["wait_s"]
        metrics: dict[str, Any] = {
            "updates": c["updates"],
            "transitions": c["transitions"],
            **{k: v for k, v in c.items() if k.startswith("records")},  # stored, in all and per actor
            "updates_per_s": (c["updates"] - since["updates"]) / elapsed,
            "transitions_per_s": (c["transitions"] - since["transitions"]) / elapsed,
            "replay_size": self.replay.size,
            "idle_fraction": self._timing["wait_s"] / busy if busy else 0.0,
            "credits": self._credits,
        }
        if self.demos is not None:  # RLPD: the share of demo transitions in the batches of this interval
            share = self._demo_count() / self.config.agent.batch_size if self._demo_batches else 0.0
            metrics.update(demo_ratio=share, demo_transitions=self.demos.num_transitions)
        new = c["transitions"] - since["transitions"]
        metrics["intervention_rate"] = (c["intervened"] - since["intervened"]) / new if new else 0.0
        self._demo_batches = 0
        metrics.update({k: float(v) for k, v in jax.device_get(self._metrics).items()})
        metrics.update(self._episodes.drain())
        stats = self.server.stats(current_param_version=int(c["updates"]))
        for actor, actor_stats in stats["actors"].items():
            if actor_stats.get("param_lag") is not None:
                metrics[f"param_lag/{actor}"] = actor_stats["param_lag"]
        # Refused input on every port (transitions, parameters, snapshots), by reason.
        rejected = collections.Counter(stats["rejected"]) + collections.Counter(self.publisher.stats()["rejected"])
        metrics.update(
            rejected=sum(rejected.values()),
            duplicates_dropped=stats["duplicates_dropped"],
            queue_batches=stats["queue_batches"],
        )
        metrics.update({f"rejected/{reason}": n for reason, n in sorted(rejected.items()) if n})
        self._timing = collections.Counter({"update_s": 0.0, "wait_s": 0.0})
        return metrics

    def run(self, stop: threading.Event | None = None) -> dict[str, Any]:
        """Steps until `stop`, `max_updates`, `max_seconds` or `stop_success`; then saves and publishes.

        Returns the final counters and metrics, with `stop_reason` ("signal", "max_updates", "max_seconds" or
        "success") and `training_success` (over the window, when full)."""
        c = self.config
        stop = stop or threading.Event()
        t0 = last = time.monotonic()
        since = collections.Counter(self.counters)
        start_updates = self.counters["updates"]
        metrics: dict[str, Any] = {}
        reason = "signal"
        while not stop.is_set():
            if c.max_updates and self.counters["updates"] - start_updates >= c.max_updates:
                reason = "max_updates"
                break
            if c.max_seconds and time.monotonic() - t0 >= c.max_seconds:
                reason = "max_seconds"
                break
            success = self.training_success()
            if c.stop_success and success is not None and success >= c.stop_success:
                reason = "success"
                break
            self.step()
            now = time.monotonic()
            if now - last >= c.log_every_s:
                metrics = self.report(now - last, since)
                print(format_console("learner", metrics, _CONSOLE_KEYS), flush=True)
                self.log.log(int(self.counters["updates"]), metrics)
                last, since = now, collections.Counter(self.counters)
        self.save()
        self.publish()
        success = self.training_success()
        return {
            **metrics,
            **{k: int(v) for k, v in self.counters.items()},
            "stop_reason": reason,
            "training_success": success,
            "seconds": time.monotonic() - t0,
        }

    def close(self) -> None:
        self.server.close()
        self.publisher.close()
        self.persistence.close()
        self.log.close()
