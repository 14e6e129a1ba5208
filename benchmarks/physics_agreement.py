"""Why MJX-JAX parts ways with MuJoCo C on the Panda, measured: each MJX path against MuJoCo C over the same
physics steps with saturating joint targets (every servo pinned at its force limit).

    python -m benchmarks.physics_agreement              # ~3 min on a 2-core CPU (MJX-JAX compiles twice)

One JSON line per path: the largest |qpos - MuJoCo C's qpos| over the run, in micro-radians / micro-metres
(lower is better):
  mjx_warp        MJX's Warp implementation
  mjx_jax         MJX's JAX implementation as released
  mjx_jax_skip    MJX-JAX with its implicitfast velocity derivative (mjx/_src/derivative.py, deriv_smooth_vel)
                  made to skip actuators whose force sits at its forcerange, as MuJoCo C's mjd_actuator_vel
                  (engine_derivative.c) and MuJoCo Warp's derivative kernel do
If mjx_jax_skip agrees like mjx_warp does, that skipped check is the whole difference.
"""

from __future__ import annotations

import argparse
import contextlib

import gymnasium as gym
import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from benchmarks._report import emit, log
from envs.panda_pick_cube import ASSET
from serl_gs.env_options import import_mjx, warp_installed


def state_trajectory(env_id: str, actions: np.ndarray, seed: int = 11, **make_kwargs) -> np.ndarray:
    """The observed `state` of `gym.make_vec(env_id, **make_kwargs)` from `reset(seed)` through `actions`
    ([T, num_envs, A]): [T + 1, num_envs, S]. The physics paths' agreement tests compare two of these."""
    vec = gym.make_vec(env_id, num_envs=actions.shape[1], array_backend="numpy", **make_kwargs)
    obs, _ = vec.reset(seed=seed)
    states = [obs["state"]]
    for a in actions:
        states.append(vec.step(a)[0]["state"])
    vec.close()
    return np.stack(states)


def mujoco_c(model: mujoco.MjModel, qpos0: np.ndarray, ctrl: np.ndarray, steps: int) -> np.ndarray:
    d = mujoco.MjData(model)
    d.qpos[:], d.ctrl[:] = qpos0, ctrl
    out = []
    for _ in range(steps):
        mujoco.mj_step(model, d)
        out.append(d.qpos.copy())
    return np.stack(out)


def mjx_run(model: mujoco.MjModel, impl: str, qpos0: np.ndarray, ctrl: np.ndarray, steps: int) -> np.ndarray:
    mjx = import_mjx()
    mx = mjx.put_model(model, impl=impl)
    template = mjx.make_data(model if impl == "warp" else mx, impl=impl)

    def body(d, _):
        d = mjx.step(mx, d)
        return d, d.qpos

    def rollout(q, u):
        return jax.lax.scan(body, template.replace(qpos=q, ctrl=u), None, length=steps)[1]

    as32 = lambda x: jnp.asarray(x, jnp.float32)[None]  # noqa: E731  (one world: MJX-Warp runs batched)
    qpos = jax.jit(jax.vmap(rollout))(as32(qpos0), as32(ctrl))
    return np.asarray(qpos[0], np.float64)


@contextlib.contextmanager
def skip_saturated_actuators():
    """MJX-JAX's deriv_smooth_vel without the velocity derivative of actuators held at their force limits."""
    from mujoco.mjx._src import derivative
    from mujoco.mjx._src.types import BiasType, GainType

    original = derivative.deriv_smooth_vel

    def patched(m, d):
        qderiv = original(m, d)
        affine_bias = m.actuator_biastype == BiasType.AFFINE
        affine_gain = m.actuator_gaintype == GainType.AFFINE
        vel = m.actuator_biasprm[:, 2] * affine_bias + m.actuator_gainprm[:, 2] * affine_gain * d.ctrl
        lo, hi = m.actuator_forcerange[:, 0], m.actuator_forcerange[:, 1]
        force = d.actuator_force
        clamped = m.actuator_forcelimited & ((force <= lo) | (force >= hi))
        moment = d._impl.actuator_moment
        # take back what `original` added for the clamped actuators (d force / d qvel = 0 there)
        removed = moment.T @ (moment * jnp.where(clamped, vel, 0.0)[:, None])
        return qderiv - removed

    derivative.deriv_smooth_vel = patched
    try:
        yield
    finally:
        derivative.deriv_smooth_vel = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="physics steps (4 ms each)")
    parser.add_argument("--target_offset", type=float, default=1.0, help="joint targets this far from the start, rad")
    args = parser.parse_args()
    model = mujoco.MjModel.from_xml_path(str(ASSET))
    qpos0 = model.key_qpos[0].copy()
    ctrl = model.key_ctrl[0].copy()
    ctrl[:7] += args.target_offset * np.array([1, -1, 1, -1, 1, -1, 1])  # far targets: servos saturate
    log("MuJoCo C ...")
    ref = mujoco_c(model, qpos0, ctrl, args.steps)
    d = mujoco.MjData(model)
    d.qpos[:], d.ctrl[:] = qpos0, ctrl
    mujoco.mj_forward(model, d)
    lo, hi = model.actuator_forcerange[:7].T
    saturated = int(np.count_nonzero((d.actuator_force[:7] <= lo) | (d.actuator_force[:7] >= hi)))
    paths = {"mjx_jax": ("jax", contextlib.nullcontext), "mjx_jax_skip": ("jax", skip_saturated_actuators)}
    if warp_installed():
        paths = {"mjx_warp": ("warp", contextlib.nullcontext), **paths}
    for name, (impl, context) in paths.items():
        log(f"{name} ...")
        with context():
            qpos = mjx_run(model, impl, qpos0, ctrl, args.steps)
        config = {"model": "panda_pick_cube", "steps": args.steps, "target_offset_rad": args.target_offset,
                  "arm_servos_saturated_at_start": saturated, "jax_backend": jax.default_backend()}  # fmt: skip
        # in micro-units: emit rounds to 4 decimals, and MJX-Warp's figure is far below 1e-4
        emit("physics_agreement", "max_abs_qpos_diff_vs_mujoco_c (lower is better)",
             1e6 * float(np.abs(qpos - ref).max()), "1e-6 rad|m", config={"path": name, **config},
             quick=False)  # fmt: skip


if __name__ == "__main__":
    main()
