"""Batched MuJoCo C physics on CPU threads: the physics path for CPU-only machines.

MJX compiles the whole physics step into one XLA program; on a GPU that is what makes thousands of envs fast,
but on a CPU the same program runs far slower than MuJoCo's C engine (measured in docs/physics-paths.md).
This backend steps all envs of a batch with `mujoco.rollout` (a C++ thread pool, no Python loop per env per
substep) and hands back qpos/qvel, so the task's pure JAX control/observation/reward run unchanged on top.
"""

from __future__ import annotations

import os

import mujoco
import numpy as np
from mujoco import rollout

_STATE_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS
_CTRL_SPEC = mujoco.mjtState.mjSTATE_CTRL


class CpuBatchedPhysics:
    """Physics state of `num_envs` copies of one model, stepped together on CPU threads.

    Arrays are float64 numpy on the host: qpos [B, nq], qvel [B, nv].
    """

    def __init__(self, mj_model: mujoco.MjModel, num_envs: int, n_substeps: int, nthread: int | None = None):
        if num_envs <= 0:
            raise ValueError(f"num_envs must be positive, got {num_envs}")
        if n_substeps <= 0:
            raise ValueError(f"n_substeps must be positive, got {n_substeps}")
        self.model = mj_model
        self.models: list[mujoco.MjModel] | None = None  # one per env when physics is randomized (serl_gs.vec_batches)
        self.num_envs = num_envs
        self.n_substeps = n_substeps
        self.nthread = max(1, min(nthread or os.cpu_count() or 1, num_envs))
        self._datas = [mujoco.MjData(mj_model) for _ in range(self.nthread)]
        self._scratch = self._datas[0]
        self._rollout = rollout.Rollout(nthread=self.nthread)
        nstate = mujoco.mj_stateSize(mj_model, _STATE_SPEC)
        self._state = np.zeros((num_envs, nstate))
        # Offsets of qpos and qvel inside a full-physics state vector (time comes first).
        self._qpos = slice(1, 1 + mj_model.nq)
        self._qvel = slice(1 + mj_model.nq, 1 + mj_model.nq + mj_model.nv)
        self._warmstart = np.zeros((num_envs, mj_model.nv))
        self._out = np.zeros((num_envs, n_substeps, nstate))

    @property
    def qpos(self) -> np.ndarray:  # [B, nq] float64 view
        return self._state[:, self._qpos]

    @property
    def qvel(self) -> np.ndarray:  # [B, nv] float64 view
        return self._state[:, self._qvel]

    def set_state(self, env_ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Starts envs `env_ids` [k] at qpos [k, nq], qvel [k, nv] (time 0, no warm start)."""
        d = self._scratch
        for i, p, v in zip(env_ids, qpos, qvel, strict=True):
            mujoco.mj_resetData(self.model, d)
            d.qpos[:] = p
            d.qvel[:] = v
            mujoco.mj_getState(self.model, d, self._state[i], _STATE_SPEC)
            self._warmstart[i] = 0.0

    def rows(self, env_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(full physics state [k, nstate], warm start [k, nv]) of envs env_ids: all the engine carries between
        steps (serl_gs.env_state)."""
        return self._state[env_ids].copy(), self._warmstart[env_ids].copy()

    def set_rows(self, env_ids: np.ndarray, state: np.ndarray, warmstart: np.ndarray) -> None:
        """Puts back what `rows` returned, into envs env_ids."""
        if state.shape != (len(env_ids), self._state.shape[1]) or warmstart.shape != (len(env_ids), self.model.nv):
            raise ValueError(
                f"physics rows of shapes {state.shape}, {warmstart.shape} do not fit {len(env_ids)} envs of "
                f"this model ({self._state.shape[1]} state values, nv={self.model.nv})"
            )
        self._state[env_ids] = state
        self._warmstart[env_ids] = warmstart

    def step(self, ctrl: np.ndarray, hold: np.ndarray | None = None) -> None:
        """Holds ctrl [B, nu] for `n_substeps` physics steps in every env, except where `hold` [B] bool is True:
        those envs keep their state (an episode that ended inside a repeated action)."""
        ctrl = np.asarray(ctrl, dtype=np.float64)
        if ctrl.shape != (self.num_envs, self.model.nu):
            raise ValueError(f"ctrl has shape {ctrl.shape}, expected {(self.num_envs, self.model.nu)}")
        controls = np.broadcast_to(ctrl[:, None, :], (self.num_envs, self.n_substeps, self.model.nu))
        self._rollout.rollout(
            self.models or self.model,
            self._datas,
            self._state,
            np.ascontiguousarray(controls),
            control_spec=_CTRL_SPEC,
            nstep=self.n_substeps,
            initial_warmstart=self._warmstart,
            state=self._out,
        )
        if hold is None:
            self._state[:] = self._out[:, -1]
        else:
            moving = ~np.asarray(hold, bool)
            self._state[moving] = self._out[moving, -1]

    def poses(self, env_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Body and camera world poses of envs `env_ids` [k] (default: all) for rendering:
        xpos [k, nbody, 3], xquat [k, nbody, 4], cam_xpos [k, ncam, 3], cam_xmat [k, ncam, 3, 3]."""
        from serl_gs.render.poses import pose_rows

        m, d = self.model, self._scratch
        ids = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids)
        return pose_rows(m, d, len(ids), lambda row: mujoco.mj_setState(m, d, self._state[ids[row]], _STATE_SPEC))

    def close(self) -> None:
        self._rollout.close()
