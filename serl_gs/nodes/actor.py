"""The actor node: steps a batch of envs with the newest policy and streams records to the learner.

Each step: one jitted policy call for all envs, one batched env step (physics + render), and the step's
records handed to the transport's background sender (stepping waits only when the learner's rate limiter
withholds credit). New parameters are applied between steps; while the learner is away the actor keeps
acting with the parameters it has and its sender resends what the learner did not acknowledge.

    run_actor(ActorConfig(env=EnvSpec("serl_gs/CartpoleBalance-v0"),
                          transport=ActorTransportConfig(actor_id="a0", **port_layout(5588))), stop)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from serl_gs.agents.exploration import ColoredNoise
from serl_gs.agents.networks import make_inference_fn, make_networks
from serl_gs.agents.payload import check_obs_spec, spec_to_jsonable, unpack_policy
from serl_gs.data.device_records import step_records_via_device
from serl_gs.data.frame_stack import FrameStacker
from serl_gs.data.records import step_records, with_extras
from serl_gs.gpu_paths import env_choice_lines
from serl_gs.nodes.adder import Adder
from serl_gs.nodes.env_spec import EnvSpec, obs_spec_of
from serl_gs.nodes.metrics_log import MetricsLog, format_console
from serl_gs.nodes.run_dir import write_run_info
from serl_gs.transport import ParamSubscriber, TransitionClient
from serl_gs.transport.config import ActorTransportConfig
from serl_gs.vec_env import MJX_IMPL_CHOICES

logger = logging.getLogger(__name__)  # (`log` is the metrics log here)

# Short waits for the learner's credit, so that a stop request is heard while the learner is away.
STOP_AWARE_BLOCK_S = 0.5


@dataclasses.dataclass(frozen=True)
class ActorConfig:
    """The actor's env and transport configs, nested, plus the loop's own settings.

    The transport's `away_buffer_bytes` (keep acting into a buffer while the learner is unreachable) and
    `overflow` ("block": pause stepping when the buffer is full; "drop_oldest": keep stepping, drop the oldest
    unsent batches) are the actor's flow-control choices; `block_timeout_s` must be set so that a stop request
    is heard while the actor waits for credit.
    """

    env: EnvSpec = EnvSpec()
    transport: ActorTransportConfig = ActorTransportConfig(actor_id="actor0", block_timeout_s=STOP_AWARE_BLOCK_S)
    num_envs: int = 16  # envs stepped together in one batch
    random_steps: int = 1000  # env steps (all envs together) of uniform random actions before the policy acts
    seed: int = 0  # seed of the envs and of the action noise
    max_steps: int = 0  # batched steps to run; 0 = until stopped (SIGINT/SIGTERM)
    run_dir: str | None = None  # where to write actor metrics (JSONL, TensorBoard); None = console only
    log_every_s: float = 10.0  # progress lines; also how often an unreachable learner is reported
    # At start, wait this long for the learner's policy (it names the learner's task) before sending anything,
    # so an actor of another task refuses to start; a learner that is not up yet is then waited for no longer.
    learner_wait_s: float = 2.0
    # Colour of the policy's exploration noise: 0 = white (independent every step, SAC's own sampling), 1 = pink
    # (correlated over an episode, agents.exploration), 2 = red.
    noise_beta: float = 0.0
    # Most episodes that end per step (serl_gs.vec_env): "auto" sizes it from the episode length, so that with
    # the actor's staggered first episodes each env renders once per step plus ceil(num_envs / steps) reset rows;
    # None: every env. The actor always staggers its envs' first episodes.
    resets_per_step: int | str | None = "auto"
    mjx_impl: str = "auto"  # MJX physics only: "warp" | "jax"; auto: warp where warp-lang is installed
    # In-loop eval, as SERL's and Brax's training loops keep one: the batch's last `eval_envs` envs act with the
    # policy's mean (no exploration noise, never an intervention) and report their episodes apart
    # (`eval_return`, `eval_success`), for the learner's `stop_on="eval"`. Their transitions are trained on too.
    eval_envs: int = 0

    def __post_init__(self):
        if self.num_envs <= 0:
            raise ValueError(f"num_envs must be positive, got {self.num_envs}")
        if self.learner_wait_s < 0 or self.log_every_s <= 0:
            raise ValueError(
                f"learner_wait_s must be >= 0 and log_every_s > 0, got {self.learner_wait_s}, {self.log_every_s}"
            )
        if self.noise_beta < 0:
            raise ValueError(f"noise_beta must be >= 0 (0 = white noise), got {self.noise_beta}")
        if self.random_steps < 0 or self.max_steps < 0:
            raise ValueError(f"random_steps and max_steps must be >= 0, got {self.random_steps}, {self.max_steps}")
        r = self.resets_per_step
        if r is not None and r != "auto" and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
            raise ValueError(f"resets_per_step must be 'auto', None or an int >= 1, got {r!r}")
        if not 0 <= self.eval_envs < self.num_envs:
            raise ValueError(f"eval_envs must be in [0, num_envs {self.num_envs}) (some env must explore), "
                             f"got {self.eval_envs}")  # fmt: skip
        if self.mjx_impl not in MJX_IMPL_CHOICES:
            raise ValueError(f"mjx_impl must be one of {MJX_IMPL_CHOICES}, got {self.mjx_impl!r}")
        if self.transport.block_timeout_s is None:
            raise ValueError("transport.block_timeout_s must be set (seconds) so the actor hears a stop request")

    @property
    def actor_id(self) -> str:
        return self.transport.actor_id


class TaskMismatch(ValueError):
    """The learner trains another task than this actor's env (another env, observations or action size)."""


def describe_task(task: dict | None, obs_spec: dict, action_dim: int) -> str:
    named = ", ".join(f"{key}={value}" for key, value in (task or {}).items())
    shapes = ", ".join(f"{key}: {dtype}{list(shape)}" for key, (shape, dtype) in sorted(obs_spec.items()))
    return f"{named + '; ' if named else ''}observations {{{shapes}}}, actions [{action_dim}]"


class PolicyHolder:
    """The newest policy the learner published, ready to act for a whole batch in one call.

    Every policy is checked against this actor's task first: the learner's first one, fetched as the actor
    connects, makes an actor of another task refuse to start (`TaskMismatch`) before it sends a record.
    """

    def __init__(self, obs_spec, action_dim: int, task: dict | None = None, learner: str = "the learner"):
        self._obs_spec, self._action_dim = obs_spec, action_dim
        self._task, self._learner = task, learner
        self._networks_config = None
        self._act: Callable | None = None
        self.params = None
        self.version = -1

    def update(self, data: bytes, version: int) -> None:
        payload = unpack_policy(data)
        self._check_task(payload)
        if payload.action_dim != self._action_dim:
            raise ValueError(f"the policy acts in {payload.action_dim} dims, the env in {self._action_dim}")
        if payload.agent_config != self._networks_config:  # build (and compile) once per architecture
            check_obs_spec(payload.obs_spec, self._obs_spec, "actor")
            networks = make_networks(payload.agent_config, self._obs_spec, self._action_dim)
            self._act = make_inference_fn(networks)
            self._networks_config = payload.agent_config
        self.params, self.version = payload.params, version

    def _check_task(self, payload) -> None:
        mine = spec_to_jsonable(self._obs_spec)
        same = payload.obs_spec == mine and payload.action_dim == self._action_dim
        if payload.task is not None and self._task is not None:
            same = same and all(payload.task.get(k) == self._task.get(k) for k in ("env", "obs_mode"))
        if not same:
            raise TaskMismatch(
                f"this actor's task ({describe_task(self._task, mine, self._action_dim)}) is not the task of "
                f"{self._learner} ({describe_task(payload.task, payload.obs_spec, payload.action_dim)}); "
                "start the actor with the learner's env flags (--env, --obs_mode, --image_size, --cameras)"
            )

    def __call__(self, obs, key, deterministic: bool = False, noise=None):
        return self._act(self.params, obs, key, deterministic, noise)


class EpisodeTracker:
    """Per-env running return; finished episodes' return and success for logs and the learner.

    An episode in which an intervention acted (`step(..., intervened=)`) is "assisted": it is counted apart
    (`assisted_episodes`) and its return and success are not reported, neither in the actor's lines nor to the
    learner, whose progress windows (the stop at a training success or return) then measure the policy alone;
    otherwise an expert that takes half of the early episodes would stop training on its own success.

    The last `eval_envs` envs act with the policy's mean (ActorConfig.eval_envs): their episodes are reported
    under `eval_return` / `eval_success` instead, so that the learner windows the deterministic policy, the one
    it checkpoints and run_eval.sh measures, apart from the exploring one."""

    def __init__(self, num_envs: int, eval_envs: int = 0):
        self.returns = np.zeros(num_envs, np.float64)
        self.assisted = np.zeros(num_envs, bool)
        self.is_eval = np.arange(num_envs) >= num_envs - eval_envs
        self.names = ("episode_return", "success") + (("eval_return", "eval_success") if eval_envs else ())
        self.finished: dict[str, list[float]] = {name: [] for name in self.names}
        self.assisted_episodes = 0

    def step(
        self, reward: np.ndarray, done: np.ndarray, success: np.ndarray | None, intervened: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """The step's episode extras for the learner, read where episodes end: each env's return so far and its
        success, under `episode_return` / `success` for exploring envs and `eval_return` / `eval_success` for
        eval envs, NaN under the other pair and for an assisted episode (the learner leaves NaN out)."""
        self.returns += reward
        if intervened is not None:
            self.assisted |= intervened
        values = {"return": self.returns.astype(np.float32)}
        if success is not None:
            values["success"] = np.asarray(success, np.float32)
        reported = ~self.assisted
        kinds = [(reported & ~self.is_eval, {"return": "episode_return", "success": "success"})]
        if self.is_eval.any():
            kinds.append((reported & self.is_eval, {"return": "eval_return", "success": "eval_success"}))
        extras = {
            names[kind]: np.where(rows, value, np.float32(np.nan)).astype(np.float32)
            for rows, names in kinds
            for kind, value in values.items()
        }
        if done.any():
            for name, value in extras.items():
                ended = value[done]
                self.finished[name].extend(ended[np.isfinite(ended)].tolist())
            self.assisted_episodes += int((done & self.assisted).sum())
            self.returns[done] = 0.0
            self.assisted[done] = False
        return extras

    def drain(self) -> dict[str, float]:
        """Means of the episodes finished since the last drain, with their counts (`episodes`, `eval_episodes`)."""
        out = {}
        for name, values in self.finished.items():
            if values:
                out[name] = float(np.mean(values))
        for name, count in (("episodes", "episode_return"), ("eval_episodes", "eval_return")):
            if self.finished.get(count):
                out[name] = float(len(self.finished[count]))
        self.finished = {name: [] for name in self.names}
        return out


class LearnerWatch:
    """Says every `every_s` while the learner is unreachable: where, since when, and how much is buffered for it.

    Its own thread, so it speaks even while sending waits on a full buffer (the progress lines stop then).
    """

    def __init__(self, client, config: ActorTransportConfig, every_s: float):
        self._client, self._every_s = client, every_s
        self._where = f"{config.host}:{config.transitions_port}"
        self._away_mib = config.away_buffer_bytes / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serl_gs-learner-watch", daemon=True)
        self._thread.start()

    def message(self) -> str | None:
        """The line to log now, or None while the learner is connected."""
        s = self._client.stats()
        since = s["disconnected_since"]
        if since is None:
            return None
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
        hint = (
            f"; it refused the handshake {s['handshake_failures']} times: check --auth_secret_file"
            if s["handshake_failures"]
            else ""
        )
        return (
            f"the learner at {self._where} is unreachable since {when} ({time.time() - since:.0f} s); "
            f"{s['pending_bytes'] / 2**20:.1f} MiB buffered for it (at most {self._away_mib:.0f} MiB, then "
            f"the actor waits){hint}"
        )

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            line = self.message()
            if line is not None:
                logger.warning(line)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def run_actor(config: ActorConfig, stop: threading.Event | None = None, intervention=None) -> dict[str, float]:
    """Acts until `max_steps` or `stop`; returns final counters.

    `intervention`: a source (serl_gs.demos.sources: the scripted expert on a tapering schedule, or a keyboard)
    whose actions replace the policy's where it is active; those records carry "extras/intervened" and the
    learner puts them in its demo buffer too. Evaluation (serl_gs.nodes.evaluation) never takes one.

    Raises `TaskMismatch` when the learner trains another task, and the transport's `BatchRejected` when the
    learner refuses this actor's records: both one-line errors.
    """
    stop = stop or threading.Event()
    vec = config.env.make_vec(
        config.num_envs,
        seed=config.seed,
        stagger=True,
        resets_per_step=config.resets_per_step,
        mjx_impl=config.mjx_impl,
    )
    for line in env_choice_lines(config.env, vec):  # each `auto` choice, once (docs/gpu.md)
        logger.info(line)
    logger.info("resets_per_step: %d (%s)", vec.resets_per_step, vec.resets_reason)
    obs_spec, action_dim = config.env.policy_obs_spec(obs_spec_of(vec)), vec.single_action_space.shape[0]
    where = f"the learner at {config.transport.host}:{config.transport.transitions_port}"
    policy = PolicyHolder(obs_spec, action_dim, config.env.task(), where)
    log = MetricsLog(Path(config.run_dir), f"actor_{config.actor_id}") if config.run_dir else None
    if config.run_dir:  # the resolved config (randomization included) beside the actor's metrics
        write_run_info(Path(config.run_dir), f"actor_{config.actor_id}", config)
    try:
        with TransitionClient(config.transport) as client, ParamSubscriber(config.transport) as params:
            first = params.wait(timeout=config.learner_wait_s)
            if first is not None:
                policy.update(first.data, first.version)  # raises TaskMismatch before anything is sent
            watch = LearnerWatch(client, config.transport, config.log_every_s)
            try:
                env_steps, counters = _act(config, vec, policy, client, params, log, stop, intervention)
            finally:
                watch.close()
            client.flush(timeout=10.0)
        # After close() (which waits up to linger_s more for the learner to take the rest): a backlog that the
        # learner's credits were still pacing at the flush above has gone out by now and counts as sent.
        sent = client.stats()
    finally:
        vec.close()
        if log is not None:
            log.close()
    counters.update(env_steps=env_steps, param_version=policy.version, records_sent=sent["records_sent"])
    logger.info("final: %s", json.dumps(counters))
    return counters


def _step(vec, actions, on_device: bool):
    """One env step and its records: (obs, reward [N], done [N], success [N] or None, records), all but obs on the
    host. `on_device`: the records are built on the device and copied to the host once (data.device_records),
    the one blocking read of the step, and reward, done and success are read from that copy."""
    n = vec.num_envs
    if on_device:
        obs, reward, terminated, truncated, infos = vec.step_on_device(actions)
        success = infos.get("success")
        records = step_records_via_device(
            obs, actions, reward, terminated, truncated, infos, vec.resets_per_step, {"success": success}
        )
        success = records["extras/success"][:n] if success is not None else None
        return obs, records["reward"][:n], records["terminated"][:n] | records["truncated"][:n], success, records
    obs, reward, terminated, truncated, infos = vec.step(actions)
    success = np.asarray(infos["success"], np.float32) if "success" in infos else None
    records = step_records(obs, actions, reward, terminated, truncated, infos)
    if success is not None:
        records = with_extras(records, n, {"success": success})
    return obs, reward, terminated | truncated, success, records


def _act(
    config: ActorConfig, vec, policy: PolicyHolder, client, params, log, stop, intervention=None
) -> tuple[int, dict]:
    """The acting loop; returns (env steps, the last progress counters)."""
    action_dim = vec.single_action_space.shape[0]
    tracker = EpisodeTracker(config.num_envs, config.eval_envs)
    noise = None
    if config.noise_beta > 0:
        control_steps = config.env.episode_length or vec.task.episode_length
        steps_per_episode = -(-control_steps // vec.task.action_repeat)  # env steps: each spans a repeat
        noise = ColoredNoise(config.num_envs, action_dim, steps_per_episode, config.noise_beta, config.seed + 104729)
    # The sample is tanh(mean + std * eps): eps = 0 on the eval envs' rows is their deterministic action.
    explores = (np.arange(config.num_envs) < config.num_envs - config.eval_envs)[:, None].astype(np.float32)
    key = jax.random.PRNGKey(config.seed + 7919)
    env_steps, steps, last_log, t0 = 0, 0, time.monotonic(), time.monotonic()
    counters: dict[str, float] = {}
    last_sent = client.stats()  # for the credit-wait fraction and wire bytes of each progress line
    adder = Adder(client, config.num_envs, action_dim, stop)
    on_device = vec.physics == "mjx"  # on CPU MuJoCo the arrays are in host memory: numpy builds records faster
    stacker = FrameStacker(config.env.frame_stack)  # the policy sees frame stacks; records carry single frames
    obs, _ = vec.reset(seed=config.seed)
    adder.add_first(obs)
    policy_obs = stacker.reset(obs)
    intervened_steps = 0
    if intervention is not None:
        intervention.show(policy_obs)
    while not stop.is_set() and (config.max_steps == 0 or steps < config.max_steps):
        update = params.poll()
        if update is not None:
            policy.update(update.data, update.version)
        key, act_key = jax.random.split(key)
        if env_steps < config.random_steps or policy.version < 0:
            actions = jax.random.uniform(act_key, (config.num_envs, action_dim), minval=-1.0, maxval=1.0)
        else:
            eps = noise.next() if noise is not None else None
            if config.eval_envs:
                eps = explores * (eps if eps is not None else jax.random.normal(act_key, (config.num_envs, action_dim)))
            actions = policy(policy_obs, act_key, noise=eps)
        intervened = None
        if intervention is not None:  # where active, its action is the one stepped, sent and learned from
            override, intervened = intervention.act(vec, obs)
            intervened = intervened & explores[:, 0].astype(bool)  # eval envs are never intervened in
            actions = np.where(intervened[:, None], override, np.asarray(actions)).astype(np.float32)
            intervened_steps += int(intervened.sum())
        obs, reward, done, success, records = _step(vec, actions, on_device)
        policy_obs = stacker.step(obs, done)  # same-step autoreset: a done env's obs starts its next episode
        if intervention is not None:
            intervention.episodes_ended(done)
            intervention.show(policy_obs)
        if noise is not None:
            noise.reset(done)
        # For the learner's logs and progress windows: each env's return so far and success, read where episodes
        # end (NaN for assisted episodes, which the learner leaves out), and which steps an intervention acted.
        episode_extras = tracker.step(reward, done, success, intervened)
        records = with_extras(records, config.num_envs, {**episode_extras, "intervened": intervened})
        if not adder.add_records(records, param_version=policy.version):
            break
        env_steps += config.num_envs
        steps += 1
        now = time.monotonic()
        if now - last_log >= config.log_every_s:
            sent = client.stats()
            counters = {
                "env_steps": env_steps,
                "env_steps_per_s": env_steps / (now - t0),
                "param_version": policy.version,
                # Share of the time since the last line spent blocked on the learner's credit; bytes sent.
                "credit_wait_fraction": (sent["send_wait_s"] - last_sent["send_wait_s"]) / (now - last_log),
                "bytes_sent": sent["bytes_sent"],
                **({"intervened_steps": intervened_steps, "assisted_episodes": tracker.assisted_episodes}
                   if intervention is not None else {}),  # fmt: skip
                **tracker.drain(),
            }
            last_sent = sent
            logger.info(format_console(counters, list(counters)))
            if log is not None:
                log.log(env_steps, counters)
            last_log = now
    if intervention is not None:  # as of the last step, not the last progress line
        counters.update(intervened_steps=intervened_steps, assisted_episodes=tracker.assisted_episodes)
    return env_steps, counters
