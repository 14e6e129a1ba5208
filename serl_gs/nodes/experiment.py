"""What actor, learner and eval must agree on: the env's observation spec and the agent's architecture.

The learner ships its `AgentConfig` inside every parameter message (`pack_policy`), so actors and eval build
the same networks without repeating the learner's flags; each side checks the observation spec it gets from
its own env against the one the networks were built for, and refuses a mismatch naming both.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, get_args

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from serl_gs.agents.config import AgentConfig, EncoderConfig
from serl_gs.data.records import PIXELS_PREFIX
from serl_gs.nodes.run_dir import to_jsonable
from serl_gs.render.config import BackendName
from serl_gs.vec_env import OBS_MODES, PHYSICS_PATHS, ObsMode, PhysicsPath

PAYLOAD_FORMAT = "serl_gs.policy.v1"
# Record fields an actor adds for the learner's logs (episode return so far, success); the learner reads them at
# episode ends and strips them before the replay, which stores only the record contract's fields.
INFO_PREFIX = "info/"


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Which env and which observations; every node builds its envs (or, the learner, its shapes) from this."""

    env: str = "serl_gs/PandaPickCube-v0"
    obs_mode: ObsMode = "state"
    image_size: int = 64
    cameras: tuple[str, ...] = ()  # empty: every camera of the task
    render_backend: BackendName = "auto"
    physics: PhysicsPath = "auto"
    episode_length: int | None = None  # None: the task's default

    def __post_init__(self):
        choices = (("obs_mode", OBS_MODES), ("physics", PHYSICS_PATHS), ("render_backend", get_args(BackendName)))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if isinstance(self.cameras, str):
            raise ValueError(f"cameras must be a tuple of camera names, got the string {self.cameras!r}")
        if not isinstance(self.image_size, int) or self.image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        if self.episode_length is not None and self.episode_length < 1:
            raise ValueError(f"episode_length must be >= 1 or None, got {self.episode_length!r}")

    def task_kwargs(self) -> dict[str, Any]:
        return {} if self.episode_length is None else {"episode_length": self.episode_length}

    def make_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"physics": self.physics, "obs_mode": self.obs_mode, **self.task_kwargs()}
        if self.obs_mode == "pixels":
            kwargs.update(image_size=self.image_size, cameras=tuple(self.cameras), render_backend=self.render_backend)
        return kwargs

    def make_vec(self, num_envs: int, seed: int | None = None):
        import gymnasium as gym

        import envs  # (registers the tasks)

        try:
            return gym.make_vec(self.env, num_envs=num_envs, seed=seed, **self.make_kwargs())
        except gym.error.Error as e:  # unknown ids: say which, and what exists
            raise ValueError(f"cannot make env {self.env!r} ({e}); registered: {envs.task_names()}") from e

    def observation_spec(self) -> tuple[dict[str, jax.ShapeDtypeStruct], int]:
        """(per-env observation shapes, action size) from the task and its camera list, the same as the vector
        env's, without building physics or a renderer (the learner needs nothing else from its env)."""
        from envs.registry import make_task_for
        from serl_gs.render.cameras import camera_rig

        task = make_task_for(self.env, self.obs_mode, **self.task_kwargs())
        spec = dict(task.observation_shapes())
        if self.obs_mode == "pixels":
            size = self.image_size
            for name in camera_rig(task.mj_model, tuple(self.cameras), size, size).names:
                spec[PIXELS_PREFIX + name] = jax.ShapeDtypeStruct((size, size, 3), np.uint8)
        return spec, int(task.action_size)


def obs_spec_of(vec_env) -> dict[str, jax.ShapeDtypeStruct]:
    """Per-env observation shapes of a vector env, as the agent's networks want them."""
    return {k: jax.ShapeDtypeStruct(s.shape, s.dtype) for k, s in vec_env.single_observation_space.items()}


def agent_config_to_dict(config: AgentConfig) -> dict[str, Any]:
    return to_jsonable(config)


def agent_config_from_dict(data: dict[str, Any]) -> AgentConfig:
    data = dict(data)
    encoder = EncoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.pop("encoder").items()})
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return AgentConfig(encoder=encoder, **fields)


def spec_to_jsonable(obs_spec: dict[str, jax.ShapeDtypeStruct]) -> dict[str, list]:
    return {k: [list(s.shape), np.dtype(s.dtype).name] for k, s in sorted(obs_spec.items())}


def pack_policy(config: AgentConfig, obs_spec: dict, action_dim: int, policy_params: Any) -> bytes:
    """One parameter message: the policy's params plus what is needed to rebuild its networks."""
    header = {
        "format": PAYLOAD_FORMAT,
        "agent_config": agent_config_to_dict(config),
        "obs_spec": spec_to_jsonable(obs_spec),
        "action_dim": int(action_dim),
    }
    state = {"header": json.dumps(header), "params": flax.serialization.to_state_dict(jax.device_get(policy_params))}
    return flax.serialization.msgpack_serialize(state)


@dataclasses.dataclass
class PolicyPayload:
    agent_config: AgentConfig
    obs_spec: dict[str, list]
    action_dim: int
    params: Any  # nested dicts of jnp arrays


def unpack_policy(data: bytes) -> PolicyPayload:
    """Inverse of `pack_policy`; raises ValueError on anything that is not one."""
    try:
        state = flax.serialization.msgpack_restore(data)
        header = json.loads(state["header"])
    except Exception as e:  # noqa: BLE001 - any decoding failure means "not a policy message"
        raise ValueError(f"not a serl_gs policy message: {e}") from e
    if header.get("format") != PAYLOAD_FORMAT:
        raise ValueError(f"policy message format {header.get('format')!r}, expected {PAYLOAD_FORMAT!r}")
    params = jax.tree.map(jnp.asarray, state["params"])
    return PolicyPayload(
        agent_config_from_dict(header["agent_config"]), header["obs_spec"], int(header["action_dim"]), params
    )


def check_obs_spec(expected: dict[str, list], obs_spec: dict[str, jax.ShapeDtypeStruct], who: str) -> None:
    got = spec_to_jsonable(obs_spec)
    if got != expected:
        raise ValueError(f"{who}: the env's observations {got} differ from the policy's {expected}")
