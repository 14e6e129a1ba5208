"""CartpoleBalance: dm_control's cartpole `balance` task (the one MuJoCo Playground, ManiSkill3 and Isaac Lab
report batched pixel throughput on).

Action (1,) in [-1, 1]: the cart motor (gear 10). State observation (5,): cart position, cos and sin of the
pole angle, cart velocity, pole angular velocity. Reward per step in [0, 1], dm_control's smooth reward:
upright * centered * small_control * small_velocity. Episodes of 1000 steps of 10 ms; no termination.
With `action_repeat=k` one env step spans k of them (return still out of 1000). With pixels the policy sees only
the camera (`state_in_obs=False`), DrQ's setting.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import mujoco

from serl_gs.mjx_env import Info, Obs, Task

ASSET = Path(__file__).parent / "assets" / "cartpole.xml"


@dataclasses.dataclass(frozen=True)
class CartpoleConfig:
    episode_length: int = 1000
    cart_range: float = 0.1  # initial cart position ~ U(-r, r)
    angle_range: float = 0.034  # initial pole angle ~ U(-r, r), radians
    action_repeat: int = 1  # control steps per env step (DrQ's pixel cartpole: 8, the policy acts every 80 ms)
    state_in_obs: bool = True  # False: the policy sees only pixels (the default with obs_mode="pixels", as DrQ)

    def __post_init__(self):
        if self.episode_length <= 0:
            raise ValueError(f"episode_length must be positive, got {self.episode_length}")
        if not isinstance(self.action_repeat, int) or self.action_repeat < 1:
            raise ValueError(f"action_repeat must be an int >= 1, got {self.action_repeat!r}")


def tolerance_gaussian(x: jax.Array, margin: float, value_at_margin: float = 0.1) -> jax.Array:
    """dm_control's `rewards.tolerance(x, bounds=(0, 0), margin, sigmoid='gaussian')`."""
    scale = math.sqrt(-2.0 * math.log(value_at_margin))
    return jnp.exp(-0.5 * (x / margin * scale) ** 2)


def tolerance_quadratic(x: jax.Array, margin: float, value_at_margin: float = 0.0) -> jax.Array:
    """dm_control's `rewards.tolerance(x, bounds=(0, 0), margin, sigmoid='quadratic')`."""
    scaled = x / margin * math.sqrt(1.0 - value_at_margin)
    return jnp.where(jnp.abs(scaled) < 1.0, 1.0 - scaled**2, 0.0)


class CartpoleBalance(Task):
    can_terminate = False  # episodes end by the time limit only

    def __init__(self, config: CartpoleConfig | None = None):
        self.config = config = config or CartpoleConfig()
        self.mj_model = mujoco.MjModel.from_xml_path(str(ASSET))
        self.n_substeps = 1
        self.episode_length = config.episode_length
        self.action_size = 1
        self.action_repeat = config.action_repeat

    def init(self, rng: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, Info]:
        c = self.config
        k_cart, k_pole, k_vel = jax.random.split(rng, 3)
        cart = jax.random.uniform(k_cart, (1,), minval=-c.cart_range, maxval=c.cart_range)
        pole = jax.random.uniform(k_pole, (1,), minval=-c.angle_range, maxval=c.angle_range)
        qpos = jnp.concatenate([cart, pole]).astype(jnp.float32)
        qvel = (0.01 * jax.random.normal(k_vel, (2,))).astype(jnp.float32)
        return qpos, qvel, jnp.zeros(1, jnp.float32), {}

    def control(
        self, qpos: jax.Array, qvel: jax.Array, info: Info, action: jax.Array
    ) -> tuple[jax.Array, Info]:
        return jnp.clip(action, -1.0, 1.0).astype(jnp.float32), info

    def observe(self, qpos: jax.Array, qvel: jax.Array, info: Info) -> Obs:
        if not self.config.state_in_obs:
            return {}
        state = jnp.stack([qpos[0], jnp.cos(qpos[1]), jnp.sin(qpos[1]), qvel[0], qvel[1]])
        return {"state": state.astype(jnp.float32)}

    def reward(
        self, qpos: jax.Array, qvel: jax.Array, info: Info, action: jax.Array
    ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        upright = (jnp.cos(qpos[1]) + 1.0) / 2.0
        centered = (1.0 + tolerance_gaussian(qpos[0], margin=2.0)) / 2.0
        small_control = (4.0 + tolerance_quadratic(jnp.clip(action[0], -1.0, 1.0), margin=1.0)) / 5.0
        small_velocity = (1.0 + tolerance_gaussian(qvel[1], margin=5.0)) / 2.0
        reward = upright * centered * small_control * small_velocity
        metrics = {"upright": upright, "centered": centered}
        return reward, jnp.zeros((), bool), metrics
