"""Named presets of the learner's and the actor's configs: `--preset NAME` on either node makes the preset the
flags' defaults, and any flag given explicitly overrides it. Each preset is what one of our scripts runs, and
the scripts name it instead of retyping its values (tests/test_flags.py checks both).

- `pick_state`: ./run_demo.sh's CPU main job, state SAC on PandaPickCube to 75 % training success.
- `pick_pixels`: ./run_demo.sh --pixels (scripts/demo_pixels.sh), DrQ + RLPD (20 scripted demos) on PandaPickCube
  from front + wrist 3DGS frames and proprio, sized for a few CPU cores (docs/pixels-cpu.md), until the actor's
  eval envs pick reliably.
- `cpu_pixels`: DrQ on CartpoleBalance from 3DGS frames alone (`serl_gs.agents.config.cpu_pixel_preset`,
  docs/pixels-cpu.md), until a training return (the pixel main job until 2026-12-08).
- `gpu_pixels`: scripts/gpu_learn.sh (benchmarks/gpu_learn.py), pixel DrQ on PandaPickCube with 1,024
  MJX-Warp + gsplat envs to 90 % training success (docs/gpu.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from serl_gs.agents.config import cpu_pixel_preset
from serl_gs.nodes.actor import ActorConfig
from serl_gs.nodes.learner import LearnerConfig


@dataclasses.dataclass(frozen=True)
class Preset:
    """One run's learner and actor configs (the env spec is the same in both)."""

    learner: LearnerConfig
    actor: ActorConfig


def replaced(config: Any, changes: dict[str, Any]) -> Any:
    """`config` with `changes` applied; a dict value changes the nested config of that name, field by field."""
    flat = {
        name: replaced(getattr(config, name), value) if isinstance(value, dict) else value
        for name, value in changes.items()
    }
    return dataclasses.replace(config, **flat)


def _preset(env: dict, learner: dict, actor: dict, actor_env: dict | None = None) -> Preset:
    """`actor_env`: the env fields that are each node's own (physics, render backend), the actor's."""
    return Preset(
        learner=replaced(LearnerConfig(), {"env": env, **learner}),
        actor=replaced(ActorConfig(), {"env": {**env, **(actor_env or {})}, **actor}),
    )


def _lr(lr: float) -> dict[str, float]:
    return {"actor_lr": lr, "critic_lr": lr, "temperature_lr": lr}


def pick_state() -> Preset:
    return _preset(
        env={"env": "serl_gs/PandaPickCube-v0"},
        learner={
            "agent": {"n_step": 3, "hidden_dims": (128, 128), "critic_ensemble_size": 4, "batch_size": 128,
                      "critic_actor_ratio": 2, **_lr(1e-3)},
            "rate": {"utd": 0.25, "min_inserts": 2000},
            "stop_success": 0.75, "success_window": 64, "max_updates": 100_000, "max_seconds": 3600.0,
            "checkpoint_every": 5000, "publish_every": 10, "log_every_s": 30.0,
        },
        actor={"num_envs": 16, "random_steps": 2000, "noise_beta": 1.0, "log_every_s": 30.0},
    )  # fmt: skip


def cpu_pixels() -> Preset:
    pixel = cpu_pixel_preset()
    return _preset(
        env={"env": "serl_gs/CartpoleBalance-v0", "obs_mode": "pixels", "image_size": pixel.image_size,
             "frame_stack": pixel.frames, "action_repeat": 8},
        learner={
            "agent": pixel.agent,
            "rate": {"utd": 0.5, "min_inserts": 1000},
            "replay": {"capacity": 100_000},
            # Bounded by progress: the mean training return of the last 16 episodes (2 per env) reaching 800 of
            # 1000; the update and wall-clock caps are only safety nets (docs/pixels-cpu.md). (`stop_on="eval"`
            # with the actor's `eval_envs` would watch the policy's mean instead, as pick_pixels does; not measured
            # on cartpole.)
            "stop_return": 800.0, "success_window": 16, "max_updates": 25_000, "max_seconds": 2400.0,
            "publish_every": 10, "checkpoint_every": 1000, "save_replay": False, "log_every_s": 30.0,
        },
        actor={"num_envs": 8, "random_steps": 1000, "log_every_s": 30.0},
    )  # fmt: skip


# SERL's observations of the pick from pixels: front + wrist 3DGS frames at 32², one per camera, and proprio.
_PICK_PIXELS_ENV = {"env": "serl_gs/PandaPickCube-v0", "obs_mode": "pixels", "image_size": 32,
                    "cameras": ("front", "wrist"), "frame_stack": 1}  # fmt: skip


def _pick_pixel_agent(**changes: Any) -> Any:
    """The CPU pixel agent (cpu_pixel_preset) with SERL's discount for 100-step episodes."""
    return replaced(cpu_pixel_preset().agent, {"discount": 0.96, **changes})


def pick_pixels() -> Preset:
    """The CPU pixel agent (cpu_pixel_preset: 32², two 32-channel convs, 2 critics, 3-step returns) on SERL's
    observations, with SERL's discount for 100-step episodes, pink noise, and RLPD: the
    script records 20 scripted demos and passes them as --demo_path (half of every batch). With 8 envs it reached
    32/32 at 6.6k updates and 900 s (benchmarks/results/ladder-learning-cpu2-2026-12-07.sh, PIXELS=1 DEMOS=1).
    Training's own success hovers at 60-75 % while the deterministic policy picks every time, so the stop watches
    the actor's 2 eval envs (the policy's mean): 11 of their last 12 episodes (0.9)."""
    return _preset(
        env=_PICK_PIXELS_ENV,
        learner={
            "agent": _pick_pixel_agent(),
            "rate": {"utd": 0.5, "min_inserts": 2000},
            "replay": {"capacity": 200_000},
            "demo_ratio": 0.5,
            "stop_success": 0.9, "stop_on": "eval", "eval_window": 12, "success_window": 64,
            "max_updates": 50_000, "max_seconds": 3600.0,
            "publish_every": 10, "checkpoint_every": 1000, "save_replay": False, "log_every_s": 30.0,
        },
        actor={"num_envs": 8, "eval_envs": 2, "random_steps": 2000, "noise_beta": 1.0, "log_every_s": 30.0},
    )  # fmt: skip


def gpu_pixels() -> Preset:
    """The CPU recipe that learned (benchmarks/results/learning-panda-pixels-cpu2-2026-12-06.sh: 32², front +
    wrist, 2 critics, 32-channel convs) at 1,024 envs with a larger batch; 1,024 envs bring transitions faster
    than any learner uses them, so utd 0.1 paces the actor."""
    return _preset(
        env=_PICK_PIXELS_ENV,
        learner={
            "agent": _pick_pixel_agent(batch_size=256),
            "rate": {"utd": 0.1, "min_inserts": 10_000},
            "replay": {"capacity": 300_000},
            "stop_success": 0.9, "success_window": 1024, "publish_every": 20, "checkpoint_every": 5000,
            "keep_checkpoints": 2, "save_replay": False, "log_every_s": 10.0,
        },
        actor={"num_envs": 1024, "random_steps": 10_000, "noise_beta": 1.0, "log_every_s": 10.0},
        actor_env={"physics": "mjx", "render_backend": "gsplat"},
    )  # fmt: skip


PRESETS: dict[str, Callable[[], Preset]] = {"pick_state": pick_state, "pick_pixels": pick_pixels,
                                            "cpu_pixels": cpu_pixels, "gpu_pixels": gpu_pixels}  # fmt: skip


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]()
