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

The run ends at a signal, at `max_updates`, at `max_seconds`, or once training success (or the mean training
return) over the last `success_window` finished episodes reaches `stop_success` (`stop_return`); with
`stop_on="eval"`, success (return) over the actors' eval envs' last `eval_window` episodes, the policy's mean
acting. `run()` says which (`stop_reason`).

This module holds the state and the loop; each other job is a part of `Learner` in a module of its own, which
says why its share is correct: its config (serl_gs.nodes.learner_config), ingest (learner_ingest), checkpoints
(learner_checkpoint), the demo buffer (learner_demos) and the metrics rows (learner_report).

    learner = Learner(LearnerConfig(env=EnvSpec("serl_gs/CartpoleBalance-v0"), run_dir="runs/cp"))
    try:
        learner.run(stop)          # or call learner.step() yourself; learner.save() checkpoints
    finally:
        learner.close()
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from serl_gs.agents import sharding
from serl_gs.agents.learning import (
    init_training_state,
    make_learner_step_fn,
    make_update_fn,
    make_update_many_fn,
    unrolls_updates,
)
from serl_gs.agents.networks import make_networks, policy_params
from serl_gs.agents.payload import agent_config_to_dict, pack_policy, spec_to_jsonable
from serl_gs.data.records import RecordSpec, split_extras
from serl_gs.data.replay import ReplayBuffer
from serl_gs.demos.mixing import INTERVENED
from serl_gs.gpu_paths import learner_choice_lines
from serl_gs.nodes.episode_stats import EpisodeStats
from serl_gs.nodes.learner_checkpoint import DEMO_REPLAY_DIR, LearnerCheckpoints
from serl_gs.nodes.learner_config import LearnerConfig
from serl_gs.nodes.learner_demos import LearnerDemos
from serl_gs.nodes.learner_ingest import LearnerIngest
from serl_gs.nodes.learner_report import CONSOLE_KEYS, LearnerReport
from serl_gs.nodes.metrics_log import MetricsLog, format_console
from serl_gs.nodes.rate_limiter import RateLimiter
from serl_gs.nodes.resume import ResumableRun
from serl_gs.nodes.run_dir import write_run_info
from serl_gs.transport import ParamPublisher, TransitionServer

__all__ = ["DEMO_REPLAY_DIR", "Learner", "LearnerConfig"]  # where entry points, tests and benchmarks import them
log = logging.getLogger(__name__)


class Learner(LearnerIngest, LearnerCheckpoints, LearnerDemos, LearnerReport):
    """The learner's state and one `step()` of its loop; `save()` checkpoints, `run()` loops until told to stop.

    `counters`: "updates"; "records" (every record stored, each actor's also under "records/<actor>", for the
    first `transport.max_actors` actor ids; later ones under "records/(more actors)", so peers cannot grow it);
    "transitions" (records that are not an episode's first frame, each the end of one (obs, next_obs) pair:
    what `utd` and the rate limiter count).
    """

    def __init__(self, config: LearnerConfig):
        self.config = c = config
        self.run_dir = Path(c.run_dir).expanduser().resolve()
        write_run_info(self.run_dir, "learner", c)
        if c.env.scene:  # the captures the actors render, with their hashes (lazy: the learner needs no MuJoCo)
            from serl_gs.render.manifest import record_scene

            record_scene(c.env.scene, self.run_dir)
        self.obs_spec, self.action_dim = c.env.observation_spec()  # one frame per camera: what records carry
        self.policy_obs_spec = c.env.policy_obs_spec(self.obs_spec)  # what the networks see (frame stacks)
        self.networks = make_networks(c.agent, self.policy_obs_spec, self.action_dim)
        self.updates_per_call = c.updates_per_call or (
            1 if unrolls_updates(self.networks) else min(c.publish_every, int(2 * c.rate.tolerance))
        )
        choices = learner_choice_lines(
            self.updates_per_call, c.updates_per_call, unrolls_updates(self.networks), c.agent.scan_unroll
        )
        for line in choices:  # each `auto` choice, once (docs/gpu.md)
            log.info(line)
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
            log.info("resumed from checkpoint %s: %s", restored.step, dict(self.counters))
        if restored.warning:
            log.warning(restored.warning)
        if restored.replay is not None:
            self.replay = restored.replay
            log.info("resumed replay: %s", self.replay.stats())
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
            log.info("re-inserted %d batches received after the checkpoint", replayed)

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
        self.return_window: collections.deque[float] = collections.deque(maxlen=c.success_window)
        self.eval_success_window: collections.deque[float] = collections.deque(maxlen=c.eval_window)
        self.eval_return_window: collections.deque[float] = collections.deque(maxlen=c.eval_window)
        self._refused_peers: set[str] = set()
        self._timing = collections.Counter({"update_s": 0.0, "wait_s": 0.0, "save_s": 0.0})
        self._metrics: dict[str, Any] = {}
        self._demo_batches = 0  # updates on mixed batches since the last report
        self._credits = c.transport.credits_per_actor
        self._published_version: int | None = None
        self.publish()

    # ---- pieces of the loop -----------------------------------------------------------------------------
    def publish(self) -> None:
        """Broadcasts the policy, versioned by the update count (once per version: versions must increase)."""
        version = int(self.counters["updates"])
        if version == self._published_version:
            return
        params = policy_params(self.state.params)
        data = pack_policy(
            self.config.agent, self.policy_obs_spec, self.action_dim, params, task=self.config.env.task()
        )
        self.publisher.publish(data, version=version)
        self._published_version = version

    def update(self) -> None:
        """`updates_per_call` updates on fresh minibatches, in one call."""
        agent, k = self.config.agent, self.updates_per_call
        self.key, sample_key = jax.random.split(self.key)
        if self.demos is not None and self.demos.num_transitions:  # RLPD: demo + online parts, concatenated
            self._apply(self._mixed_sample(sample_key))
            self._demo_batches += k
        # Device-resident frames on one device, K > 1: sampled inside the fused call. Otherwise frames in host
        # memory (one gather, one transfer, one call), or sampled on the replay's device and then split.
        elif self.mesh is not None or k == 1 or self._fused_step(sample_key) is None:
            self._apply(self.replay.sample(sample_key, agent.batch_size, k * agent.critic_actor_ratio, agent.n_step,
                                           agent.discount))  # fmt: skip
        with self._counters_lock:
            self.counters["updates"] += k

    def _apply(self, flat) -> None:
        """The call's `updates_per_call` updates on `flat`, its minibatches stacked along the first axis; with
        several devices each gets its share of every minibatch (agents.sharding)."""
        agent, k = self.config.agent, self.updates_per_call
        if self.mesh is None and k == 1:
            self.state, self._metrics = self._update(self.state, flat)
            return
        batches = jax.tree.map(lambda x: x.reshape(k, agent.critic_actor_ratio, *x.shape[1:]), flat)
        if self.mesh is not None:
            batches = sharding.shard_batches(batches, self.mesh)
        self.state, self._metrics = self._update_many(self.state, batches)

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
        return self._full_window_mean(self.success_window)

    def training_return(self) -> float | None:
        """Mean return of the last `success_window` finished episodes; None until the window is full."""
        return self._full_window_mean(self.return_window)

    def eval_success(self) -> float | None:
        """Success over the actors' eval envs' last `eval_window` episodes; None until the window is full."""
        return self._full_window_mean(self.eval_success_window)

    def eval_return(self) -> float | None:
        """Mean return of the actors' eval envs' last `eval_window` episodes; None until the window is full."""
        return self._full_window_mean(self.eval_return_window)

    def _full_window_mean(self, window: collections.deque) -> float | None:
        with self._counters_lock:
            values = list(window)
        return float(np.mean(values)) if len(values) == window.maxlen else None

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

    def run(self, stop: threading.Event | None = None) -> dict[str, Any]:
        """Steps until `stop`, `max_updates`, `max_seconds`, `stop_success` or `stop_return`; then saves and
        publishes.

        Returns the final counters and metrics, with `stop_reason` ("signal", "max_updates", "max_seconds",
        "success" or "return"), `training_success`, `training_return`, `eval_success` and `eval_return` (over their
        windows, each when full)."""
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
            "training_return": self.training_return(),
            "eval_success": self.eval_success(),
            "eval_return": self.eval_return(),
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
            on_eval = c.stop_on == "eval"
            success = self.eval_success() if on_eval else self.training_success()
            if c.stop_success and success is not None and success >= c.stop_success:
                return "success"
            mean_return = self.eval_return() if on_eval else self.training_return()
            if c.stop_return and mean_return is not None and mean_return >= c.stop_return:
                return "return"
            self.step()
            now = time.monotonic()
            if now - last >= c.log_every_s:
                metrics = self.report(now - last, since)
                log.info(format_console(metrics, CONSOLE_KEYS))
                self.log.log(int(self.counters["updates"]), metrics)
                self._last_metrics = metrics
                last, since = now, self.counters_snapshot()
        return "signal"

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
