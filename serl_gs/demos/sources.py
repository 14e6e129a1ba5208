"""Who acts in a demonstration or takes over from the policy: the scripted expert, or a person at a keyboard.

A source is asked each env step for actions for every env and says where it is active:

    actions, active = source.act(vec, obs)      # [N, A] float32, [N] bool (False: the policy's action stands)
    source.episodes_ended(done)                 # [N] bool: those envs start new episodes
    source.show(policy_obs)                     # the frames the policy sees (the keyboard window draws them)

`ScriptedSource` wraps an expert, `expert(vec, obs) -> [N, A]` (the task's own: it reads the simulator's state,
e.g. the cube's position that a pixel policy does not observe; found by task id in serl_gs.demos.experts), active
always or on a `TaperedSchedule` (the sim stand-in for a person who intervenes less as the policy improves).
`KeyboardSource` shows the live cameras in a pygame window and maps held keys to actions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from serl_gs.data.records import PIXELS_PREFIX

Expert = Callable[[Any, Mapping[str, Any]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class TaperedSchedule:
    """Each new episode is handed to the expert with probability `start * max(0, 1 - env_steps / taper_steps)`:
    whole episodes, so the expert's time-phased pick starts from a reset state and its episodes are clean demos."""

    start: float = 0.5  # share of episodes the expert takes at the start
    taper_steps: int = 20_000  # env steps (all envs together) after which nobody intervenes
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.start <= 1.0:
            raise ValueError(f"intervention start probability must be in [0, 1], got {self.start}")
        if self.taper_steps < 1:
            raise ValueError(f"intervention taper_steps must be >= 1, got {self.taper_steps}")

    def probability(self, env_steps: int) -> float:
        return self.start * max(0.0, 1.0 - env_steps / self.taper_steps)


class ScriptedSource:
    """The expert, in every env (`schedule` None: recording) or in the episodes its schedule draws."""

    name = "scripted"

    def __init__(self, expert: Expert, num_envs: int, schedule: TaperedSchedule | None = None):
        self._expert, self._schedule = expert, schedule
        self._rng = np.random.default_rng(None if schedule is None else schedule.seed)
        self.env_steps = 0
        self._active = np.zeros((num_envs,), bool)
        self.episodes_ended(np.ones((num_envs,), bool))

    def act(self, vec, obs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        self.env_steps += self._active.size
        if not self._active.any():  # the expert is not asked where nobody intervenes
            return np.zeros((self._active.size, vec.single_action_space.shape[0]), np.float32), self._active.copy()
        return np.asarray(self._expert(vec, obs), np.float32), self._active.copy()

    def episodes_ended(self, done: np.ndarray) -> None:
        done = np.asarray(done, bool)
        if self._schedule is None:
            self._active[:] = True
            return
        draw = self._rng.random(done.shape) < self._schedule.probability(self.env_steps)
        self._active = np.where(done, draw, self._active)

    def show(self, policy_obs: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


# Held keys -> action dims (+1 / -1): x (right/left), y (up/down), z (w/s); space toggles the gripper dim (3).
_AXES = (("K_RIGHT", "K_LEFT"), ("K_UP", "K_DOWN"), ("K_w", "K_s"))


class KeyboardSource:
    """A person at the keyboard, watching the policy's cameras in a window (pygame).

    Arrows move x / y, W / S move z, space toggles the gripper (action dim 3: -1 open, +1 closed), Esc asks to
    stop (`quit_requested`). Recording (`takeover=False`) acts in every step; as an intervention source
    (`takeover=True`) it is active only while a motion key is held, or for the step in which space is pressed.
    One env (a person drives one arm). Under a test, SDL_VIDEODRIVER=dummy and posted pygame events drive it.
    """

    name = "keyboard"

    def __init__(self, action_dim: int, *, takeover: bool = False, scale: int = 4, title: str = "serl_gs demo"):
        import pygame

        self._pg = pygame
        pygame.display.init()
        pygame.display.set_caption(title)
        self._screen = None
        self._scale = scale
        self.action_dim, self.takeover = action_dim, takeover
        self._held: set[int] = set()
        self._keys = [(getattr(pygame, pos), getattr(pygame, neg)) for pos, neg in _AXES[: min(action_dim, 3)]]
        self.gripper = -1.0
        self.quit_requested = False
        self.env_steps = 0

    def _poll(self) -> bool:
        """Reads pending events into the held-key set; True if space was pressed since the last poll."""
        pg, toggled = self._pg, False
        for event in pg.event.get():
            if event.type == pg.QUIT or (event.type == pg.KEYDOWN and event.key == pg.K_ESCAPE):
                self.quit_requested = True
            elif event.type == pg.KEYDOWN:
                self._held.add(event.key)
                if event.key == pg.K_SPACE and self.action_dim > 3:
                    self.gripper, toggled = -self.gripper, True
            elif event.type == pg.KEYUP:
                self._held.discard(event.key)
        return toggled

    def act(self, vec, obs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        num_envs = vec.num_envs
        if num_envs != 1:
            raise ValueError(f"the keyboard drives one env, got num_envs={num_envs}")
        toggled = self._poll()
        action = np.zeros((1, self.action_dim), np.float32)
        moving = False
        for dim, (pos, neg) in enumerate(self._keys):
            action[0, dim] = float(pos in self._held) - float(neg in self._held)
            moving = moving or action[0, dim] != 0.0
        if self.action_dim > 3:
            action[0, 3] = self.gripper
        self.env_steps += 1
        active = np.array([moving or toggled or not self.takeover])
        return action, active

    def episodes_ended(self, done: np.ndarray) -> None:
        if np.asarray(done).any():
            self.gripper = -1.0

    def show(self, policy_obs: Mapping[str, Any]) -> None:
        """Draws env 0's newest frame of every camera side by side."""
        pg = self._pg
        frames = [np.asarray(v)[0, ..., -3:] for k, v in sorted(policy_obs.items()) if k.startswith(PIXELS_PREFIX)]
        if not frames:
            frames = [np.zeros((32, 32, 3), np.uint8)]  # state-only tasks: a blank window still takes the keys
        row = np.concatenate(frames, axis=1).repeat(self._scale, axis=0).repeat(self._scale, axis=1)
        if self._screen is None or self._screen.get_size() != (row.shape[1], row.shape[0]):
            self._screen = pg.display.set_mode((row.shape[1], row.shape[0]))
        pg.surfarray.blit_array(self._screen, np.ascontiguousarray(row.transpose(1, 0, 2)))
        pg.display.flip()

    def close(self) -> None:
        self._pg.display.quit()
