"""A learner and an actor as two threads of the test's process: the harness tests/test_nodes_learner.py,
test_demos.py, test_hostile_input.py and sharded_checks.py share, and `learn_until`, the learning tests'
(test_learning_sac.py, test_learning_drq_pixels.py) train-and-score loop."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator

from serl_gs.nodes.actor import run_actor
from serl_gs.transport import ActorTransportConfig


class ResultThread(threading.Thread):
    """Runs `fn`, keeps its result or its exception for the test to look at."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self._fn, self._args = fn, args
        self.result, self.error = None, None

    def run(self):
        try:
            self.result = self._fn(*self._args)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            self.error = e

    def outcome(self, timeout: float):
        self.join(timeout)
        assert not self.is_alive(), f"{self._fn.__name__} did not stop in {timeout} s"
        if self.error is not None:
            raise self.error
        return self.result


def wait_for(predicate, timeout: float, what: str, threads) -> None:
    """Polls `predicate` until true; fails on the timeout or, with its error, when one of `threads` ended."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for t in threads:
            if not t.is_alive():
                t.outcome(0)
                raise AssertionError(f"{t._fn.__name__} ended while waiting for {what}")
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def actor_transport(learner) -> ActorTransportConfig:
    """Actor "a0"'s transport to `learner`'s OS-picked ports, blocking at most 0.2 s at a time."""
    return ActorTransportConfig(
        actor_id="a0",
        transitions_port=learner.server.port,
        params_port=learner.publisher.port,
        params_snapshot_port=learner.publisher.snapshot_port,
        block_timeout_s=0.2,
    )


@dataclasses.dataclass
class Nodes:
    learner_thread: ResultThread
    actor_thread: ResultThread
    stop_learner: threading.Event
    stop_actor: threading.Event

    @property
    def threads(self) -> list[ResultThread]:
        return [self.learner_thread, self.actor_thread]


@contextlib.contextmanager
def learner_and_actor(learner, actor_config, *actor_args) -> Iterator[Nodes]:
    """Starts `learner.run` and `run_actor(actor_config, stop, *actor_args)` in threads; on exit, however it
    exits, sets both stop events, joins both threads (30 s each) and closes the learner."""
    stop_learner, stop_actor = threading.Event(), threading.Event()
    learner_thread = ResultThread(learner.run, stop_learner)
    actor_thread = ResultThread(run_actor, actor_config, stop_actor, *actor_args)
    nodes = Nodes(learner_thread, actor_thread, stop_learner, stop_actor)
    try:
        nodes.learner_thread.start()
        nodes.actor_thread.start()
        yield nodes
    finally:
        stop_actor.set()
        stop_learner.set()
        nodes.actor_thread.join(30)
        nodes.learner_thread.join(30)
        learner.close()


def learn_until(learner, actor_config, score, threshold: float, every: int) -> tuple[list[float], dict]:
    """Runs learner and actor as threads, scoring the learner's current parameters (`score(params) -> float`)
    before training and every `every` updates, until a score reaches `threshold` or the learner stops (its
    max_updates). Returns the scores and the learner's final counters; the actor stopping early fails."""
    from serl_gs.agents.networks import policy_params

    scores = [score(policy_params(learner.state.params))]
    start = time.monotonic()
    with learner_and_actor(learner, actor_config) as nodes:
        scored = 0
        while nodes.learner_thread.is_alive() and scores[-1] < threshold:
            assert nodes.actor_thread.is_alive() or nodes.actor_thread.outcome(0) is None, "the actor stopped"
            if learner.counters["updates"] >= scored + every:
                scored = learner.counters["updates"] // every * every
                scores.append(score(policy_params(learner.state.params)))
                print(f"{scored} updates ({time.monotonic() - start:.0f} s): {scores[-1]:.1f}", flush=True)
            else:
                nodes.learner_thread.join(0.05)  # until the learner ends or its counter may have moved on
        nodes.stop_learner.set()
        counters = nodes.learner_thread.outcome(120)
        nodes.stop_actor.set()
        nodes.actor_thread.outcome(60)
    return scores, counters


def learn_through_threads(
    run_dir, env, agent, rate, *, num_envs, random_steps, max_updates, score, threshold, every, log_every_s=10.0
) -> tuple[list[float], dict, object]:
    """A learning test's run: a Learner (OS-picked ports, no checkpoint while learning) and an actor of
    `num_envs` envs, scored by `score(vec, policy, params)` on its own vector env (seed 1) until `threshold`
    (`learn_until`). Returns the scores, the learner's final counters and the learner."""
    from serl_gs.agents.networks import make_inference_fn
    from serl_gs.data.replay import ReplayConfig
    from serl_gs.nodes.actor import ActorConfig
    from serl_gs.nodes.learner import Learner, LearnerConfig
    from serl_gs.transport import LearnerTransportConfig
    from serl_gs.transport.config import port_layout

    learner = Learner(
        LearnerConfig(
            env=env, agent=agent, replay=ReplayConfig(capacity=50_000), rate=rate,
            transport=LearnerTransportConfig(**port_layout(0)), run_dir=str(run_dir), publish_every=10,
            checkpoint_every=100_000,  # no checkpoint while learning: these tests are about the loop
            max_updates=max_updates, log_every_s=log_every_s,
        )
    )  # fmt: skip
    actor = ActorConfig(env=env, transport=actor_transport(learner), num_envs=num_envs, random_steps=random_steps,
                        log_every_s=log_every_s)  # fmt: skip
    vec = env.make_vec(num_envs, seed=1)
    policy = make_inference_fn(learner.networks)
    try:
        scores, counters = learn_until(learner, actor, lambda params: score(vec, policy, params), threshold, every)
    finally:
        vec.close()
    return scores, counters, learner
