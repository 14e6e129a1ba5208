"""The actor node: steps a batch of envs with the newest policy and streams records to the learner.

    ./run_actor.sh --learner_host 127.0.0.1 --env serl_gs/PandaPickCube-v0 --num_envs 64 --actor_id gpu0

Each step: one jitted policy call for all envs, one batched env step (physics + render), and the step's
records handed to the transport's background sender (stepping waits only when the learner's rate limiter
withholds credit). New parameters are applied between steps; while the learner is away the actor keeps
acting with the parameters it has and its sender resends what the learner did not acknowledge.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from serl_gs.nodes.experiment import INFO_PREFIX, EnvSpec, check_obs_spec, obs_spec_of, unpack_policy
from serl_gs.nodes.metrics_log import MetricsLog, format_console


@dataclasses.dataclass(frozen=True)
class ActorConfig:
    env: EnvSpec = EnvSpec()
    num_envs: int = 16
    actor_id: str = "actor0"
    learner_host: str = "127.0.0.1"
    transitions_port: int = 5588
    params_port: int = 5589
    params_snapshot_port: int = 5590
    auth_secret_file: str | None = None
    random_steps: int = 1000  # env steps (all envs together) of uniform random actions before the policy acts
    seed: int = 0
    max_steps: int = 0  # batched steps to run; 0 = until stopped (SIGINT/SIGTERM)
    run_dir: str | None = None  # where to write actor metrics (JSONL, TensorBoard); None = console only
    log_every_s: float = 10.0
    # While the learner is unreachable the actor keeps acting into a buffer of this many MiB; the learner gets the
    # backlog when it returns.
    away_buffer_mb: int = 256
    # When the send buffer is full (the learner holds back credit, or stays away longer than the buffer lasts):
    # "block" pauses stepping and loses nothing; "drop_oldest" keeps stepping and drops the oldest unsent batches.
    overflow: str = "block"

    def __post_init__(self):
        if self.overflow not in ("block", "drop_oldest"):
            raise ValueError(f"overflow must be 'block' or 'drop_oldest', got {self.overflow!r}")
        if self.num_envs <= 0:
            raise ValueError(f"num_envs must be positive, got {self.num_envs}")
        if self.away_buffer_mb < 0:
            raise ValueError(f"away_buffer_mb must be >= 0, got {self.away_buffer_mb}")
        if self.random_steps < 0 or self.max_steps < 0:
            raise ValueError(f"random_steps and max_steps must be >= 0, got {self.random_steps}, {self.max_steps}")
        if not self.actor_id:
            raise ValueError("actor_id must not be empty")


class _Policy:
    """The newest policy the learner published, ready to act for a whole batch in one call."""

    def __init__(self, obs_spec, action_dim: int):
        self._obs_spec, self._action_dim = obs_spec, action_dim
        self._networks_config = None
        self._act: Callable | None = None
        self.params = None
        self.version = -1

    def update(self, data: bytes, version: int) -> None:
        from serl_gs.agents.networks import make_inference_fn, make_networks

        payload = unpack_policy(data)
        if payload.action_dim != self._action_dim:
            raise ValueError(f"the policy acts in {payload.action_dim} dims, the env in {self._action_dim}")
        if payload.agent_config != self._networks_config:  # build (and compile) once per architecture
            check_obs_spec(payload.obs_spec, self._obs_spec, "actor")
            networks = make_networks(payload.agent_config, self._obs_spec, self._action_dim)
            self._act = make_inference_fn(networks)
            self._networks_config = payload.agent_config
        self.params, self.version = payload.params, version

    def __call__(self, obs, key, deterministic: bool = False):
        return self._act(self.params, obs, key, deterministic)


class _EpisodeTracker:
    """Per-env running return; finished episodes' return and success for logs and the learner."""

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs, np.float64)
        self.finished_returns: list[float] = []
        self.finished_success: list[float] = []

    def step(self, reward: np.ndarray, done: np.ndarray, success: np.ndarray | None) -> np.ndarray:
        self.returns += reward
        episode_return = self.returns.astype(np.float32)
        if done.any():
            self.finished_returns.extend(self.returns[done].tolist())
            if success is not None:
                self.finished_success.extend(success[done].tolist())
            self.returns[done] = 0.0
        return episode_return

    def drain(self) -> dict[str, float]:
        out = {}
        if self.finished_returns:
            out["episode_return"] = float(np.mean(self.finished_returns))
            out["episodes"] = float(len(self.finished_returns))
        if self.finished_success:
            out["success"] = float(np.mean(self.finished_success))
        self.finished_returns, self.finished_success = [], []
        return out


def _with_info(records: dict, n_env: int, **per_env: np.ndarray | None) -> dict:
    """Appends per-env values (episode return so far, success) as `info/<name>` record fields; the extra
    `is_first` rows of new episodes get 0. The learner logs them at episode ends and strips them."""
    pad = np.zeros(len(records["env_index"]) - n_env, np.float32)
    for name, values in per_env.items():
        if values is not None:
            records[INFO_PREFIX + name] = np.concatenate([np.asarray(values, np.float32), pad])
    return records


def _send(client, records: dict, version: int, stop: threading.Event) -> bool:
    """Hands records to the background sender, waiting for the learner's credit in short slices so that a
    stop request is heard even while the learner is away; False if stopped before the batch was taken."""
    while True:
        try:
            client.send(records, version)
            return True
        except TimeoutError:
            if stop.is_set():
                return False


def run_actor(config: ActorConfig, stop: threading.Event | None = None) -> dict[str, float]:
    """Acts until `max_steps` or `stop`; returns final counters."""
    from serl_gs.data.records import reset_records, step_records
    from serl_gs.transport import ActorTransportConfig, AuthConfig, ParamSubscriber, TransitionClient

    stop = stop or threading.Event()
    vec = config.env.make_vec(config.num_envs, seed=config.seed)
    obs_spec, action_dim = obs_spec_of(vec), vec.single_action_space.shape[0]
    transport = ActorTransportConfig(
        actor_id=config.actor_id,
        host=config.learner_host,
        transitions_port=config.transitions_port,
        params_port=config.params_port,
        params_snapshot_port=config.params_snapshot_port,
        auth=AuthConfig(secret_file=config.auth_secret_file),
        overflow=config.overflow,
        away_buffer_bytes=config.away_buffer_mb * 2**20,
        block_timeout_s=0.5,  # short waits, so a stop request is heard while the learner is away
    )
    log = MetricsLog(Path(config.run_dir), f"actor_{config.actor_id}") if config.run_dir else None
    policy = _Policy(obs_spec, action_dim)
    tracker = _EpisodeTracker(config.num_envs)
    key = jax.random.PRNGKey(config.seed + 7919)
    env_steps, steps, last_log, t0 = 0, 0, time.monotonic(), time.monotonic()
    counters: dict[str, float] = {}
    with TransitionClient(transport) as client, ParamSubscriber(transport) as params:
        obs, _ = vec.reset(seed=config.seed)
        _send(client, reset_records(obs, action_dim), -1, stop)
        while not stop.is_set() and (config.max_steps == 0 or steps < config.max_steps):
            update = params.poll()
            if update is not None:
                policy.update(update.data, update.version)
            key, act_key = jax.random.split(key)
            if env_steps < config.random_steps or policy.version < 0:
                actions = jax.random.uniform(act_key, (config.num_envs, action_dim), minval=-1.0, maxval=1.0)
            else:
                actions = policy(obs, act_key)
            obs, reward, terminated, truncated, infos = vec.step(actions)
            reward_np = np.asarray(reward)
            done = np.asarray(terminated) | np.asarray(truncated)
            success = np.asarray(infos["success"]) if "success" in infos else None
            episode_return = tracker.step(reward_np, done, success)
            records = step_records(obs, actions, reward, terminated, truncated, infos)
            records = _with_info(records, config.num_envs, episode_return=episode_return, success=success)
            if not _send(client, records, policy.version, stop):
                break
            env_steps += config.num_envs
            steps += 1
            now = time.monotonic()
            if now - last_log >= config.log_every_s:
                counters = {
                    "env_steps": env_steps,
                    "env_steps_per_s": env_steps / (now - t0),
                    "param_version": policy.version,
                    **tracker.drain(),
                }
                print(format_console(f"actor {config.actor_id}", counters, list(counters)), flush=True)
                if log is not None:
                    log.log(env_steps, counters)
                last_log = now
        client.flush(timeout=10.0)
    # After close() (which waits up to linger_s more for the learner to take the rest): a backlog that the
    # learner's credits were still pacing at the flush above has gone out by now and counts as sent.
    sent = client.stats()
    vec.close()
    if log is not None:
        log.close()
    counters.update(env_steps=env_steps, param_version=policy.version, records_sent=sent["transitions_sent"])
    print(f"[actor {config.actor_id}] final: {json.dumps(counters)}", flush=True)
    return counters


# ---- entry point: flags are parsed here and nowhere else --------------------------------------------------
def main(argv: list[str]) -> None:
    from absl import flags

    from serl_gs.nodes.cli import env_spec_from_flags, stop_on_signals

    f = flags.FLAGS
    if len(argv) > 1:
        raise ValueError(f"unexpected positional arguments {argv[1:]}")
    env = env_spec_from_flags(render_backend=f.render_backend, physics=f.physics)
    config = ActorConfig(
        env=env,
        num_envs=f.num_envs,
        actor_id=f.actor_id,
        learner_host=f.learner_host,
        transitions_port=f.port,
        params_port=f.port + 1,
        params_snapshot_port=f.port + 2,
        auth_secret_file=f.auth_secret_file or None,
        random_steps=f.random_steps,
        seed=f.seed,
        max_steps=f.max_steps,
        run_dir=f.run_dir or None,
        log_every_s=f.log_every_s,
        away_buffer_mb=f.away_buffer_mb,
        overflow=f.overflow,
    )
    print(f"[actor {config.actor_id}] {config}", flush=True)
    run_actor(config, stop_on_signals())


def define_flags() -> None:
    from absl import flags

    from serl_gs.nodes.cli import define_env_flags

    define_env_flags()
    flags.DEFINE_enum("render_backend", "auto", ["auto", "gsplat", "reference"], "3DGS render backend (pixels).")
    flags.DEFINE_enum("physics", "auto", ["auto", "mjx", "mujoco"], "Physics path; auto = MJX on GPU, else MuJoCo C.")
    flags.DEFINE_integer("num_envs", 16, "Envs stepped together in one batch.")
    flags.DEFINE_string("actor_id", "actor0", "This actor's name; several actors feed one learner.")
    flags.DEFINE_string("learner_host", "127.0.0.1", "Host name or address of the learner.")
    flags.DEFINE_integer("port", 5588, "Learner's transitions port; params use port+1 and port+2.")
    flags.DEFINE_string("auth_secret_file", "", "Shared secret file (CURVE auth); must match the learner's.")
    flags.DEFINE_integer("random_steps", 1000, "Env steps (all envs) of uniform random actions first.")
    flags.DEFINE_integer("seed", 0, "Seed of the envs and of the action noise.")
    flags.DEFINE_integer("max_steps", 0, "Batched steps to run before exiting; 0 = until Ctrl-C.")
    flags.DEFINE_string("run_dir", "", "Directory for this actor's metric logs; empty = console only.")
    flags.DEFINE_float("log_every_s", 10.0, "Seconds between progress lines.")
    flags.DEFINE_integer(
        "away_buffer_mb", 256,
        "While the learner is unreachable, keep acting and buffer up to this many MiB of transitions for it.",
    )  # fmt: skip
    flags.DEFINE_enum(
        "overflow", "block", ["block", "drop_oldest"],
        "When the send buffer is full (the learner holds back credit, or stays away past --away_buffer_mb): "
        "pause acting (lose nothing), or keep acting and drop the oldest unsent batches.",
    )  # fmt: skip


if __name__ == "__main__":
    from serl_gs.nodes.cli import run

    run(main, define_flags)
