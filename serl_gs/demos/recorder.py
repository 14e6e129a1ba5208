"""Recording demonstrations through the nodes' EnvSpec, so that every frame is rendered as the policy will see it
(image size, cameras, action repeat) and the frame stacks the learner rebuilds from the file equal the ones the
recorder showed (`on_step` gets them; the keyboard window draws them).

    result = record(RecordConfig(env=EnvSpec(...), out="demos/pick.hdf5", successes=20), source)

Envs step in a batch; each env's episode is kept whole when it succeeded (any step with info "success" > 0),
or always with `keep_failures`. Recording stops at `successes` kept episodes, or after `max_episodes` tries.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from serl_gs.data.frame_stack import FrameStacker
from serl_gs.demos.dataset import Episode, write_demos
from serl_gs.nodes.env_spec import EnvSpec

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RecordConfig:
    env: EnvSpec
    out: str
    successes: int = 20  # kept episodes to record
    num_envs: int = 1
    keep_failures: bool = False
    max_episodes: int = 0  # give up after this many finished episodes (0: 10 x successes)
    seed: int = 0
    log_every_s: float = 5.0

    def __post_init__(self):
        if self.successes < 1 or self.num_envs < 1 or self.max_episodes < 0:
            raise ValueError(
                f"successes and num_envs must be >= 1 and max_episodes >= 0, got {self.successes}, "
                f"{self.num_envs}, {self.max_episodes}"
            )


@dataclasses.dataclass(frozen=True)
class RecordResult:
    path: Path | None  # None when no episode was kept (nothing written)
    kept: int
    episodes: int
    env_steps: int
    seconds: float


class _Open:
    """One env's episode in progress."""

    def __init__(self, first_obs: dict[str, np.ndarray]):
        self.obs = {k: [v] for k, v in first_obs.items()}
        self.action, self.reward, self.terminated, self.truncated, self.intervened = [], [], [], [], []
        self.success = False

    def episode(self, source: str) -> Episode:
        return Episode(
            obs={k: np.stack(v) for k, v in self.obs.items()},
            action=np.stack(self.action),
            reward=np.asarray(self.reward, np.float32),
            terminated=np.asarray(self.terminated, bool),
            truncated=np.asarray(self.truncated, bool),
            success=self.success,
            intervened=np.asarray(self.intervened, bool),
            source=source,
        )


def _row(obs: dict[str, Any], i: int) -> dict[str, np.ndarray]:
    return {k: np.asarray(v[i]) for k, v in obs.items()}


def record(
    config: RecordConfig,
    source,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] = logger.info,
) -> RecordResult:
    """Runs `source` in `config.env` until enough episodes are kept, writes them to `config.out`.

    `on_step(policy_obs)` sees every observation the policy would see (frame stacks included), in step order,
    starting with the reset's."""
    c = config
    max_episodes = c.max_episodes or 10 * c.successes
    vec = c.env.make_vec(c.num_envs, seed=c.seed)
    kept: list[Episode] = []
    finished = env_steps = 0
    t0 = last_log = time.monotonic()
    try:
        stacker = FrameStacker(c.env.frame_stack)
        obs, _ = vec.reset(seed=c.seed)
        obs = {k: np.asarray(v) for k, v in obs.items()}
        policy_obs = stacker.reset(obs)
        source.show(policy_obs)
        if on_step is not None:
            on_step(policy_obs)
        open_eps = [_Open(_row(obs, i)) for i in range(c.num_envs)]
        while len(kept) < c.successes and finished < max_episodes:
            if getattr(source, "quit_requested", False):
                log("stop requested")
                break
            actions, active = source.act(vec, obs)
            obs, reward, terminated, truncated, infos = vec.step(actions)
            obs = {k: np.asarray(v) for k, v in obs.items()}
            done = np.asarray(terminated) | np.asarray(truncated)
            success = np.asarray(infos.get("success", np.zeros(c.num_envs)), np.float32)
            final = {k: np.asarray(v) for k, v in infos["final_obs"].items()} if done.any() else None
            env_steps += c.num_envs
            for i, ep in enumerate(open_eps):
                ended_obs = _row(final, i) if done[i] else _row(obs, i)
                for k, v in ended_obs.items():
                    ep.obs[k].append(v)
                ep.action.append(np.asarray(actions[i], np.float32))
                ep.reward.append(float(reward[i]))
                ep.terminated.append(bool(terminated[i]))
                ep.truncated.append(bool(truncated[i]))
                ep.intervened.append(bool(active[i]))
                ep.success = ep.success or bool(success[i] > 0)
                if done[i]:
                    finished += 1
                    if (ep.success or c.keep_failures) and len(kept) < c.successes:
                        kept.append(ep.episode(source.name))
                    open_eps[i] = _Open(_row(obs, i))
            source.episodes_ended(done)
            policy_obs = stacker.step(obs, done)
            source.show(policy_obs)
            if on_step is not None:
                on_step(policy_obs)
            now = time.monotonic()
            if now - last_log >= c.log_every_s:
                log(_progress(len(kept), c.successes, finished, env_steps, now - t0))
                last_log = now
    finally:
        vec.close()
        source.close()
    seconds = time.monotonic() - t0
    log(_progress(len(kept), c.successes, finished, env_steps, seconds))
    path = None
    if kept:
        path = Path(c.out)
        write_demos(path, kept, task=c.env.task(), env_kwargs=c.env.make_kwargs(), frame_stack=c.env.frame_stack)
        log(f"wrote {len(kept)} episodes ({sum(e.length for e in kept)} transitions) to {path}")
    return RecordResult(path, len(kept), finished, env_steps, seconds)


def _progress(kept: int, wanted: int, finished: int, env_steps: int, seconds: float) -> str:
    rate = env_steps / seconds if seconds > 0 else 0.0
    return (
        f"kept {kept}/{wanted} episodes ({finished} finished, "
        f"{kept / finished if finished else 0:.0%} kept), {env_steps} env steps, {rate:.1f} steps/s"
    )
