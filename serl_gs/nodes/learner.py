"""The learner node: receives records into the replay, trains DrQ/SAC, publishes parameters, checkpoints.

Two threads. Ingest (`start_ingest`, started by `run()`): receive each batch the actors send, validate it once,
insert it into the replay, log it (serl_gs.nodes.receive_log), acknowledge it, grant or withhold credit. The loop:
update when the rate limiter allows, publish every `publish_every` updates, save every `checkpoint_every`. A
learner driven by `step()` alone (no ingest thread) receives inside `step()`, as before.

Why the two threads share the replay safely. `ReplayBuffer` takes its lock around each insert and around each
sampling dispatch (`sample`, `sampling_fields`): a sample sees the replay before or after a whole insert, never
inside one, and sampled slots' links are consistent (data.replay). Device-resident frames are donated to each
insert's scatter, so the fused update's read of them is dispatched while the lock is held: the runtime orders
the later donation after that read (critical sections are one dispatch long, not one update long). Counters
that both threads touch ("records", "transitions", episode statistics) change under `_counters_lock`. A save
holds `_ingest_lock`, which the ingest thread holds around each batch from insert to ack, so the replay, the
acknowledged transport positions and the data counters it writes describe the same batches.
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
    replay: ReplayConfig = ReplayConfig()
    rate: RateLimiterConfig = RateLimiterConfig()  # rate.min_inserts is the flag --training_starts
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
    # Devices the update spreads over (data parallel, serl_gs.agents.sharding): 0 = auto, every GPU or else one.
    learner_devices: int = 0
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
        if self.learner_devices < 0:
            raise ValueError(f"learner_devices must be >= 0 (0 = auto), got {self.learner_devices}")
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
        from serl_gs.gpu_paths import learner_choice_lines
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
        choices = learner_choice_lines(
            self.updates_per_call, c.updates_per_call, unrolls_updates(self.networks), c.agent.scan_unroll
        )
        for line in choices:  # each `auto` choice, once (docs/gpu.md)
            print(f"[learner] {line}", flush=True)
        from serl_gs.agents import sharding

        devices = sharding.learner_devices(c.learner_devices)
        # Several devices: the state replicated, each minibatch split along its batch axis (agents.sharding).
        self.mesh = sharding.data_mesh(devices) if len(devices) > 1 else None
        if self.mesh is not None:
            self._update_many = sharding.make_sharded_update_many_fn(self.networks, self.mesh)
        elif self.updates_per_call == 1:
            self._update = make_update_fn(self.networks)
        else:  # device-resident replay: sampled inside the call; host replay: gathered once, then one call
            self._learner_step = make_learner_step_fn(self.networks, self.updates_per_call, c.env.frame_stack)
            self._update_many = make_update_many_fn(self.networks)
        self.rate = RateLimiter(
            c.rate, credits_per_actor=c.transport.credits_per_actor, updates_per_call=self.updates_per_call
        )
        self._counters_lock = threading.Lock()  # counters and episode statistics both threads touch
        self._ingest_lock = threading.Lock()  # held from insert to ack of each batch, and by save()
        self._credit_lock = threading.Lock()
        self._arrived = threading.Condition()  # notified after each stored batch
        self._ingest_thread: threading.Thread | None = None
        self._ingest_stop = threading.Event()
        self._ingest_error: BaseException | None = None
        self._compiled_step = None  # the fused call, compiled on first use (`_fused_step`)
        self._checkpointer: threading.Thread | None = None  # a background checkpoint in progress
        self._checkpoint_error: BaseException | None = None
        self._background_save_s = 0.0
        self.counters = collections.Counter({"updates": 0, "transitions": 0, "records": 0})
        self._actor_counters = 0  # "records/<actor>" keys in `counters`

        meta = {
            "agent_config": agent_config_to_dict(c.agent),
            "env": dataclasses.asdict(c.env),
            "obs_spec": spec_to_jsonable(self.policy_obs_spec),
            "action_dim": self.action_dim,
        }
        self.persistence = ResumableRun(self.run_dir, keep=c.keep_checkpoints, save_replay=c.save_replay, meta=meta)
        template = init_training_state(self.networks, jax.random.PRNGKey(c.seed))
        if self.mesh is not None:  # restored in the template's layout: replicated
            template = sharding.replicate(template, self.mesh)
        restored = self.persistence.restore(template)
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
        self._timing = collections.Counter({"update_s": 0.0, "wait_s": 0.0, "save_s": 0.0})
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
        transitions = int((~records["is_first"]).sum())
        with self._counters_lock:
            self.counters["records"] += n
            key = f"records/{actor_id}"
            if key not in self.counters and self._actor_counters >= self.config.transport.max_actors:
                key = "records/(more actors)"
            self._actor_counters += key not in self.counters
            self.counters[key] += n
            self.counters["transitions"] += transitions
        self.rate.observe_batch(actor_id, transitions, self.config.transport.max_actors)
        return n

    def counters_snapshot(self) -> collections.Counter:
        """A copy of `counters` that no concurrent insert is halfway through."""
        with self._counters_lock:
            return collections.Counter(self.counters)

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
            n = self.ingest_one(wait)
            if n is None:
                return got
            wait = 0.0
            got += n

    def ingest_one(self, timeout: float) -> int | None:
        """Receives, validates, inserts, logs and acknowledges one batch; its records (0 if refused), or None
        when none came within `timeout` s. A batch that is one part of a split actor step (wire "part") is
        inserted like any other (serl_gs.nodes.adder says why that is the step, whole)."""
        batch = self.server.get(timeout=timeout, ack=False)
        if batch is None:
            return None
        header = batch.header
        records, extras = split_extras(batch.arrays)
        with self._ingest_lock:
            if not self._check(header, records, extras):
                return 0
            intervened = extras.get(INTERVENED)
            n = self._store(header.actor_id, header.session, records, intervened)
            logged = records if intervened is None else {**records, EXTRAS_PREFIX + INTERVENED: intervened}
            self.persistence.log_received(header.actor_id, header.session, header.seq, logged)
            self.server.ack(header)  # only now may the actor forget it
        with self._counters_lock:
            self.counters["split_batches"] += header.part[1] > 1
            success = self._episodes.add(records, extras)
            if success is not None:
                self.success_window.extend(success.tolist())
        with self._arrived:
            self._arrived.notify_all()
        return n

    # ---- the ingest thread --------------------------------------------------------------------------------
    def start_ingest(self) -> None:
        """Receives on its own thread from now on (`step()` then only waits for data when it cannot update)."""
        if self._ingest_thread is not None:
            return
        self._ingest_stop.clear()
        self._ingest_thread = threading.Thread(target=self._ingest_loop, name="serl_gs-learner-ingest", daemon=True)
        self._ingest_thread.start()

    def stop_ingest(self) -> None:
        """Stops and joins the ingest thread; raises what it died of, if anything."""
        thread, self._ingest_thread = self._ingest_thread, None
        if thread is not None:
            self._ingest_stop.set()
            thread.join()
        self._raise_ingest_error()

    def _raise_ingest_error(self) -> None:
        if self._ingest_error is not None:
            error, self._ingest_error = self._ingest_error, None
            raise RuntimeError(f"the learner's ingest thread failed: {error!r}") from error

    def _ingest_loop(self) -> None:
        try:
            while not self._ingest_stop.is_set():
                if self.ingest_one(timeout=0.05) is not None:
                    self._refresh_credits()
        except BaseException as e:  # surfaced by the loop's next step() and by stop_ingest()
            self._ingest_error = e
            with self._arrived:
                self._arrived.notify_all()

    def _refresh_credits(self) -> None:
        """Credits per actor as the rate limiter says now (from either thread; one at a time)."""
        with self._credit_lock:
            with self._counters_lock:
                transitions, updates = self.counters["transitions"], self.counters["updates"]
            may_insert = self.rate.can_insert(transitions, updates)
            credits = self.config.transport.credits_per_actor if may_insert else 0
            if credits != self._credits:
                self.server.set_credits(credits)
                self._credits = credits

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
            batches = jax.tree.map(lambda x: x.reshape(k, agent.critic_actor_ratio, *x.shape[1:]), flat)
            if self.mesh is not None:
                from serl_gs.agents.sharding import shard_batches

                self.state, self._metrics = self._update_many(self.state, shard_batches(batches, self.mesh))
            elif k == 1:
                self.state, self._metrics = self._update(self.state, flat)
            else:
                self.state, self._metrics = self._update_many(self.state, batches)
            self._demo_batches += k
        elif self.mesh is not None:  # sampled on the replay's device, then each device gets its share of the batch
            from serl_gs.agents.sharding import shard_batches

            flat = self.replay.sample(sample_key, agent.batch_size, k * agent.critic_actor_ratio, agent.n_step,
                                      agent.discount)  # fmt: skip
            batches = jax.tree.map(lambda x: x.reshape(k, agent.critic_actor_ratio, *x.shape[1:]), flat)
            self.state, self._metrics = self._update_many(self.state, shard_batches(batches, self.mesh))
        elif k == 1:
            batch = self.replay.sample(sample_key, agent.batch_size, agent.critic_actor_ratio, agent.n_step,
                                       agent.discount)  # fmt: skip
            self.state, self._metrics = self._update(self.state, batch)
        elif self._fused_step(sample_key) is None:  # frames in host memory: one gather, one transfer, one call
            flat = self.replay.sample(sample_key, agent.batch_size, k * agent.critic_actor_ratio, agent.n_step,
                                      agent.discount)  # fmt: skip
            batches = jax.tree.map(lambda x: x.reshape(k, agent.critic_actor_ratio, *x.shape[1:]), flat)
            self.state, self._metrics = self._update_many(self.state, batches)
        with self._counters_lock:
            self.counters["updates"] += k

    def _fused_step(self, key: jax.Array) -> bool | None:
        """K updates sampled inside one call from device-resident frames; None when frames are in host memory.

        The call is compiled ahead, outside the replay's lock (inserts go on while XLA compiles, which can take
        a minute), then dispatched under it: an insert may donate the fields once the call that reads them is
        dispatched (the module doc)."""
        if self._compiled_step is None:
            with self.replay.sampling_fields() as fields:
                if fields is None:
                    return None
                shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), fields)
            self._compiled_step = self._learner_step.lower(self.state, shapes, key).compile()
        with self.replay.sampling_fields() as fields:
            if fields is None:
                return None
            self.state, self._metrics = self._compiled_step(self.state, fields, key)
        return True

    def training_success(self) -> float | None:
        """Success over the last `success_window` finished episodes; None until the window is full."""
        with self._counters_lock:
            window = list(self.success_window)
        return float(np.mean(window)) if len(window) == self.success_window.maxlen else None

    def save(self) -> None:
        """Checkpoints everything a restarted learner needs (serl_gs.nodes.resume), now: after the background
        checkpoint in progress, if any."""
        start = time.perf_counter()
        self._wait_for_checkpoint()
        self._write_checkpoint(*self._checkpoint_of_now())
        self._timing["save_s"] += time.perf_counter() - start

    def _checkpoint_of_now(self) -> tuple[Any, int, int]:
        """(training state, its update count, a fresh sampling-key seed): what a checkpoint taken now holds."""
        key_seed = int(jax.random.randint(self.key, (), 0, 2**31 - 1))
        self.key = jax.random.PRNGKey(key_seed)
        return self.state, int(self.counters["updates"]), key_seed

    def _write_checkpoint(self, state: Any, updates: int, key_seed: int) -> None:
        # Under the ingest lock no batch is between insert and ack, and none is inserted: the replay, its
        # acknowledged positions and the data counters describe the same batches, and the replay is written
        # without its own lock (sampling goes on). The update count is the state's, taken when it was current.
        with self._ingest_lock:
            if self.demos is not None and self.config.save_replay:  # before the replay: see docs/demos.md (resume)
                self.demos.replay.save(self.run_dir / DEMO_REPLAY_DIR)
            counters = self.counters_snapshot()
            counters["updates"] = updates
            positions = self.server.positions()
            self.persistence.save(state, counters, key_seed, self.replay, positions, inserts_paused=True)

    def _checkpoint_in_background(self) -> None:
        """Starts a checkpoint of the current state on its own thread; the loop goes on updating meanwhile.

        The training state is immutable (each update makes a new one), so the one captured here is written as
        it was. Ingest pauses while the replay is written; actors' credit windows cover the pause."""
        start = time.perf_counter()
        self._wait_for_checkpoint()  # one at a time; a wait here counts as the loop's save time
        captured = self._checkpoint_of_now()

        def write() -> None:
            began = time.perf_counter()
            try:
                self._write_checkpoint(*captured)
            except BaseException as e:  # raised on the loop's thread by the next wait
                self._checkpoint_error = e
            self._background_save_s += time.perf_counter() - began

        self._checkpointer = threading.Thread(target=write, name="serl_gs-learner-checkpoint", daemon=True)
        self._checkpointer.start()
        self._timing["save_s"] += time.perf_counter() - start

    def _wait_for_checkpoint(self) -> None:
        thread, self._checkpointer = self._checkpointer, None
        if thread is not None:
            thread.join()
        if self._checkpoint_error is not None:
            error, self._checkpoint_error = self._checkpoint_error, None
            raise RuntimeError(f"a background checkpoint failed: {error!r}") from error

    def step(self) -> None:
        c, counters = self.config, self.counters
        # A call of K updates starts only if its last update is one the rate limiter allows now.
        last_update = counters["updates"] + self.updates_per_call - 1
        can_update = self.rate.can_update(counters["transitions"], last_update) and self.replay.num_transitions
        start = time.perf_counter()
        if self._ingest_thread is None:
            self.receive(timeout=0.0 if can_update else 0.05)
        elif not can_update:
            self._raise_ingest_error()
            with self._arrived:  # woken by the next stored batch
                self._arrived.wait(0.05)
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
                # Beside the ingest thread, in the background; a learner driven by step() alone, at once.
                self._checkpoint_in_background() if self._ingest_thread is not None else self.save()
        self._refresh_credits()

    def report(self, elapsed: float, since: collections.Counter) -> dict[str, Any]:
        c = self.counters_snapshot()
        busy = self._timing["update_s"] + self._timing["wait_s"]
        metrics: dict[str, Any] = {
            "updates": c["updates"],
            "transitions": c["transitions"],
            **{k: v for k, v in c.items() if k.startswith("records")},  # stored, in all and per actor
            "updates_per_s": (c["updates"] - since["updates"]) / elapsed,
            "transitions_per_s": (c["transitions"] - since["transitions"]) / elapsed,
            "replay_size": self.replay.size,
            "idle_fraction": self._timing["wait_s"] / busy if busy else 0.0,
            "save_fraction": self._timing["save_s"] / elapsed,  # the loop's time spent on checkpoints
            "checkpoint_s": self._take_background_save_s(),  # background checkpoints' time since the last row
            "credits": self._credits,
            "tolerance": self.rate.tolerance,
            "receive_log_s": self.persistence.take_log_seconds(),  # ingest thread's log writes since the last row
        }
        if self.demos is not None:  # RLPD: the share of demo transitions in the batches of this interval
            share = self._demo_count() / self.config.agent.batch_size if self._demo_batches else 0.0
            metrics.update(demo_ratio=share, demo_transitions=self.demos.num_transitions)
        new = c["transitions"] - since["transitions"]
        metrics["intervention_rate"] = (c["intervened"] - since["intervened"]) / new if new else 0.0
        self._demo_batches = 0
        metrics.update({k: float(v) for k, v in jax.device_get(self._metrics).items()})
        with self._counters_lock:
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
            bytes_in=stats["bytes_in"],  # record bytes received (wire payload), all actors
            queue_batches=stats["queue_batches"],
        )
        metrics.update({f"rejected/{reason}": n for reason, n in sorted(rejected.items()) if n})
        self._timing = collections.Counter({"update_s": 0.0, "wait_s": 0.0, "save_s": 0.0})
        return metrics

    def run(self, stop: threading.Event | None = None) -> dict[str, Any]:
        """Steps until `stop`, `max_updates`, `max_seconds` or `stop_success`; then saves and publishes.

        Returns the final counters and metrics, with `stop_reason` ("signal", "max_updates", "max_seconds" or
        "success") and `training_success` (over the window, when full)."""
        stop = stop or threading.Event()
        t0 = time.monotonic()
        self._last_metrics: dict[str, Any] = {}
        self.start_ingest()
        try:
            reason = self._loop(stop, t0)
        finally:
            self.stop_ingest()
        self.save()
        self.publish()
        success = self.training_success()
        return {
            **self._last_metrics,
            **{k: int(v) for k, v in self.counters.items()},
            "stop_reason": reason,
            "training_success": success,
            "episodes_ended": self._episodes.ended,  # in this process, with or without a success report
            "episodes_with_success": self._episodes.reported["success"],
            "seconds": time.monotonic() - t0,
        }

    def _loop(self, stop: threading.Event, t0: float) -> str:
        """`step()` until a stop condition; returns its reason. Logs every `log_every_s`."""
        c = self.config
        last, since = t0, self.counters_snapshot()
        start_updates = self.counters["updates"]
        while not stop.is_set():
            if c.max_updates and self.counters["updates"] - start_updates >= c.max_updates:
                return "max_updates"
            if c.max_seconds and time.monotonic() - t0 >= c.max_seconds:
                return "max_seconds"
            success = self.training_success()
            if c.stop_success and success is not None and success >= c.stop_success:
                return "success"
            self.step()
            now = time.monotonic()
            if now - last >= c.log_every_s:
                metrics = self.report(now - last, since)
                print(format_console("learner", metrics, _CONSOLE_KEYS), flush=True)
                self.log.log(int(self.counters["updates"]), metrics)
                self._last_metrics = metrics
                last, since = now, self.counters_snapshot()
        return "signal"

    def _take_background_save_s(self) -> float:
        seconds, self._background_save_s = self._background_save_s, 0.0
        return seconds

    def close(self) -> None:
        try:
            self._wait_for_checkpoint()
            self.stop_ingest()
        finally:
            self._ingest_stop.set()  # (if the wait above raised, the ingest thread still stops)
            self.server.close()
            self.publisher.close()
            self.persistence.close()
            self.log.close()
