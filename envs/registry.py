"""The checkout's tasks and their options for pixels, registered into the library's registry
(`serl_gs.tasks`) as `serl_gs/<Name>-v0` when `envs` is imported. The library finds them by name
(`serl_gs.tasks.DEFAULT_TASK_MODULES`), so `gymnasium.make_vec("serl_gs/PandaPickCube-v0", ...)` works once
`serl_gs.tasks` or `envs` is imported, and the nodes take these ids with nothing imported by hand.
"""

from __future__ import annotations

from typing import Any

from envs.cartpole import CartpoleBalance, CartpoleConfig
from envs.panda_peg_insertion import PandaPegInsertion, PandaPegInsertionConfig
from envs.panda_pick_cube import PandaPickCube, PandaPickCubeConfig
from envs.panda_place_cube import PandaPlaceCube, PandaPlaceCubeConfig
from envs.panda_reach_cube import PandaReachCube, PandaReachCubeConfig
from envs.panda_stack_cube import PandaStackCube, PandaStackCubeConfig
from envs.piper_mobile_pick import PiperMobilePick, PiperMobilePickConfig
from serl_gs import tasks
from serl_gs.mjx_env import Task

NAMESPACE = tasks.DEFAULT_NAMESPACE
TASKS: dict[str, tuple[type[Task], type]] = {
    "PandaPickCube-v0": (PandaPickCube, PandaPickCubeConfig),
    "CartpoleBalance-v0": (CartpoleBalance, CartpoleConfig),
    "PandaReachCube-v0": (PandaReachCube, PandaReachCubeConfig),
    "PandaPlaceCube-v0": (PandaPlaceCube, PandaPlaceCubeConfig),
    "PandaStackCube-v0": (PandaStackCube, PandaStackCubeConfig),
    "PandaPegInsertion-v0": (PandaPegInsertion, PandaPegInsertionConfig),
    "PiperMobilePick-v0": (PiperMobilePick, PiperMobilePickConfig),
}
# Task options that change when the policy sees pixels: with images, the cube's position is for it to find, and
# the cartpole's state is for it to infer.
PIXEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "PandaPickCube-v0": {"cube_in_state": False},
    "CartpoleBalance-v0": {"state_in_obs": False},  # pixels only, DrQ's setting
    "PandaReachCube-v0": {"cube_in_state": False},
    "PandaPlaceCube-v0": {"cube_in_state": False},  # the cube and the target mark are in the images
    "PandaStackCube-v0": {"cube_in_state": False},
    "PandaPegInsertion-v0": {"cube_in_state": False},  # the peg and the socket are in the images
    "PiperMobilePick-v0": {"cube_in_state": False},  # the base and wrist cameras find the cube
}


def task_names() -> list[str]:
    return sorted(TASKS)


def register_all() -> None:
    for name, (task_cls, config_cls) in TASKS.items():
        tasks.register_task(
            f"{NAMESPACE}/{name}", task_cls, config_cls, pixel_defaults=PIXEL_DEFAULTS.get(name), module="envs"
        )
