"""Scripted experts of the tasks that have one, registered into serl_gs.demos.experts (`import envs` does it).

An expert may read the simulator's state (the vector env's `state`), not only what the policy observes: the
pixel policy of PandaPickCube does not see the cube's position, its expert does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from envs.panda_peg_insertion import PEG_QPOS, scripted_insert
from envs.panda_pick_cube import CUBE_QPOS, scripted_action
from envs.panda_place_cube import scripted_place
from envs.piper_mobile_pick import scripted_pick
from serl_gs.demos.experts import register_expert


def panda_pick_expert(vec, obs: Mapping[str, Any]) -> np.ndarray:
    """The scripted pick (envs.panda_pick_cube.scripted_action) fed the cube's true position."""
    state = vec.state
    qpos = np.asarray(state.data.qpos)
    arm = np.asarray(obs["state"])[:, :7]  # tcp (3), tcp velocity (3), gripper opening (1)
    full_state = np.concatenate([arm, qpos[:, CUBE_QPOS]], axis=1)
    step = np.asarray(state.info["step"])
    return np.asarray(_scripted(full_state, step, vec.task.config.action_scale))


def panda_place_expert(vec, obs: Mapping[str, Any]) -> np.ndarray:
    """The scripted pick-and-place (envs.panda_place_cube.scripted_place) fed the cube's true position and the
    task's goal (PandaPlaceCube's mark, PandaStackCube's top of the other cube), and the controller's target."""
    state = vec.state
    qpos = np.asarray(state.data.qpos)
    arm = np.asarray(obs["state"])[:, :7]
    goal = np.asarray(jax.vmap(vec.task.goal)(qpos))
    full_state = np.concatenate([arm, qpos[:, CUBE_QPOS], goal], axis=1)
    target, step = np.asarray(state.info["target"]), np.asarray(state.info["step"])
    return np.asarray(_scripted_place(full_state, target, step, vec.task.config.action_scale))


def panda_peg_expert(vec, obs: Mapping[str, Any]) -> np.ndarray:
    """The scripted insertion (envs.panda_peg_insertion.scripted_insert) fed the peg's true position, the hole's
    (PandaPegInsertion.hole) and the controller's target."""
    state = vec.state
    qpos = np.asarray(state.data.qpos)
    arm = np.asarray(obs["state"])[:, :7]
    hole = np.asarray(jax.vmap(vec.task.hole)(qpos))
    full_state = np.concatenate([arm, qpos[:, PEG_QPOS], hole], axis=1)
    target = np.asarray(state.info["target"])
    return np.asarray(_scripted_insert(full_state, target, vec.task.config.action_scale))
def piper_mobile_pick_expert(vec, obs: Mapping[str, Any]) -> np.ndarray:
    """The scripted drive-and-pick (envs.piper_mobile_pick.scripted_pick) on the simulator's joint positions and
    the controller's end-effector target and wrist yaw."""
    state = vec.state
    return np.asarray(
        _scripted_mobile_pick(state.data.qpos, state.info["target"], state.info["wrist"], vec.task.config)
    )


_scripted = jax.jit(jax.vmap(scripted_action, in_axes=(0, 0, None)), static_argnums=2)
_scripted_place = jax.jit(jax.vmap(scripted_place, in_axes=(0, 0, 0, None)), static_argnums=3)
_scripted_insert = jax.jit(jax.vmap(scripted_insert, in_axes=(0, 0, None)), static_argnums=2)
_scripted_mobile_pick = jax.jit(jax.vmap(scripted_pick, in_axes=(0, 0, 0, None)), static_argnums=3)

register_expert("serl_gs/PandaPickCube-v0", panda_pick_expert)
register_expert("serl_gs/PandaPlaceCube-v0", panda_place_expert)
register_expert("serl_gs/PandaStackCube-v0", panda_place_expert)
register_expert("serl_gs/PandaPegInsertion-v0", panda_peg_expert)
register_expert("serl_gs/PiperMobilePick-v0", piper_mobile_pick_expert)
