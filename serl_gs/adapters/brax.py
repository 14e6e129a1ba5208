"""A serl_gs task as a Brax env (`brax.envs.base.Env`), so Brax's PPO and SAC (and MuJoCo Playground's Brax
training path) train it: `BraxEnv(make_task("serl_gs/CartpoleBalance-v0"))`, then `brax.envs.training.wrap` or
the trainers' own `wrap_env=True`.

What differs between the two contracts, and how this adapter bridges it:
- Field names: Brax's `State(pipeline_state, obs, reward, done, metrics, info)` holds our `mjx.Data` as
  `pipeline_state`; `done` (float32) is our `terminated`.
- Time limits are the trainer's: Brax's EpisodeWrapper counts steps, ends episodes at its `episode_length`
  (pass `env.episode_length` for the task's own) and marks them as truncated, so SAC bootstraps through them.
  The task's own truncation is not reported as `done`.
- Observations: Brax's agents take one array; `obs_key="state"` (the default) passes `obs["state"]`, None the
  dict (PPO's `policy_obs_key`). Pixels are not rendered here: that is the vector env's render stage.
- Per-episode state: Brax's AutoResetWrapper puts back the first `pipeline_state` and `obs` of each env when an
  episode ends (its own or EpisodeWrapper's time limit), but leaves `info` as it was; our tasks keep
  per-episode state there (PandaPickCube's controller target, the step counter). The adapter keeps the task's
  `info` under one key beside the first one, and whenever a step starts from a state at simulated time 0 (an
  episode's first state: reset or put back by any autoreset wrapper; every physics step advances `time`) it
  starts from that first `info` too, so `pipeline_state` and `info` always belong to the same episode.
- Keys that wrappers add to `info` and `metrics` stay (MjxEnv keeps metrics it did not make), so the state has
  one structure through `lax.scan`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

try:
    from brax.envs.base import Env, State
except ImportError as e:  # the adapter's one dependency: say so instead of a bare traceback
    raise ImportError("serl_gs.adapters.brax needs brax: pip install brax==0.14.2 (as in requirements.txt)") from e

from serl_gs.env_options import MjxImpl
from serl_gs.mjx_env import MjxEnv, Task
from serl_gs.mjx_env import State as SerlState

TASK_INFO = "serl_gs/info"  # the task's own info now
FIRST_INFO = "serl_gs/first_info"  # ... and at the episode's start (what an autoreset returns to)


class BraxEnv(Env):
    """One env of a serl_gs task on MJX with Brax's interface (unbatched; Brax's VmapWrapper batches it).

    `num_envs`: how many envs the trainer vmaps (MJX-Warp sizes its shared contact buffer by it; see MjxEnv)."""

    def __init__(self, task: Task, impl: MjxImpl = "jax", obs_key: str | None = "state", num_envs: int = 1):
        self.task = task
        self._env = MjxEnv(task, impl, num_envs)
        self._obs_key = obs_key
        if obs_key is not None and obs_key not in task.observation_shapes():
            raise ValueError(f"obs_key {obs_key!r} is not an observation of {type(task).__name__}: "
                             f"{sorted(task.observation_shapes())}")  # fmt: skip

    @property
    def episode_length(self) -> int:
        """The task's episode length in env steps (EpisodeWrapper's `episode_length`)."""
        return self.task.episode_length // self.task.action_repeat

    @property
    def observation_size(self):
        shapes = self.task.observation_shapes()
        if self._obs_key is not None:
            return shapes[self._obs_key].shape[-1]
        return {k: s.shape for k, s in shapes.items()}

    @property
    def action_size(self) -> int:
        return self.task.action_size

    @property
    def backend(self) -> str:
        return "mjx"

    @property
    def dt(self) -> float:
        return float(self.task.mj_model.opt.timestep) * self.task.n_substeps * self.task.action_repeat

    def _obs(self, obs: dict):
        return obs if self._obs_key is None else obs[self._obs_key]

    def reset(self, rng: jax.Array) -> State:
        s = self._env.reset(rng)
        info = {TASK_INFO: s.info, FIRST_INFO: s.info}
        return State(s.data, self._obs(s.obs), s.reward, s.terminated.astype(jnp.float32), s.metrics, info)

    def step(self, state: State, action: jax.Array) -> State:
        starts = state.pipeline_state.time <= 0.0  # an episode's first state, however it came back
        task_info = jax.tree.map(lambda first, now: jnp.where(starts, first, now),
                                 state.info[FIRST_INFO], state.info[TASK_INFO])  # fmt: skip
        ours = SerlState(
            data=state.pipeline_state, obs={}, reward=state.reward, terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool), metrics=state.metrics, info=task_info,
        )  # fmt: skip
        new = self._env.step(ours, action)
        return state.replace(
            pipeline_state=new.data, obs=self._obs(new.obs), reward=new.reward,
            done=new.terminated.astype(jnp.float32), metrics=new.metrics, info={**state.info, TASK_INFO: new.info},
        )  # fmt: skip
