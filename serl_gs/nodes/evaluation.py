"""Evaluates a checkpoint: N episodes with the deterministic policy, success and return statistics, a video.

Works on the checkpoint of a learner that is still running: checkpoints are finished folders (orbax writes
to a temporary folder and renames it), and this only reads them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from serl_gs.agents.learning import init_training_state
from serl_gs.agents.networks import make_inference_fn, make_networks, policy_params
from serl_gs.agents.payload import agent_config_from_dict, check_obs_spec, spec_from_jsonable
from serl_gs.data.frame_stack import FrameStacker
from serl_gs.gpu_paths import env_choice_lines
from serl_gs.logs import Progress
from serl_gs.nodes.checkpoint import CheckpointDamaged, Checkpointer, checkpoint_root
from serl_gs.nodes.env_spec import EnvSpec, obs_spec_of
from serl_gs.randomize import resolve_shift

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    checkpoint: str  # a run directory (newest checkpoint) or one checkpoint step folder
    num_envs: int = 8  # envs evaluated in one batch
    episodes: int = 16  # episodes to evaluate
    seed: int = 12345  # seed of the eval envs
    physics: str = "auto"  # auto | mjx | mujoco
    render_backend: str = "auto"  # 3DGS backend (pixels, video): auto | gsplat | reference
    video_episodes: int = 2  # envs recorded (their first episode each); 0 = no video
    video_size: int = 128  # video frame side in pixels
    video_camera: str = ""  # empty: the task's first camera
    policy_frames: bool = False  # pixel policies: the video shows the frames the policy saw (newest of each stack)
    scene: str | None = None  # a scene manifest of captures; None: the one the run trained with, if any
    randomize: str = "none"  # domain randomization preset of the eval envs (serl_gs.randomize.PRESETS)
    shift: str = "none"  # a held-out change of the frames, outside training ranges (serl_gs.randomize.SHIFTS)
    out_dir: str | None = None  # default: <run dir>/eval/<step>
    # Sample actions as the actors do (tanh(mean + std * eps), no exploration noise schedule) instead of
    # tanh(mean): a checkpoint evaluated both ways tells the policy's mean from the policy.
    stochastic: bool = False

    def __post_init__(self):
        if self.num_envs <= 0 or self.episodes <= 0:
            raise ValueError(f"num_envs and episodes must be positive, got {self.num_envs}, {self.episodes}")
        if self.video_episodes < 0 or self.video_episodes > self.num_envs:
            raise ValueError(f"video_episodes must be in [0, num_envs={self.num_envs}], got {self.video_episodes}")
        resolve_shift(self.shift)  # an unknown name fails here, naming the shifts


def summarize(returns: list[float], successes: list[float]) -> dict[str, float]:
    r = np.asarray(returns, np.float64)
    n = len(r)
    std = float(r.std(ddof=1)) if n > 1 else 0.0
    out = {
        "episodes": n,
        "return_mean": float(r.mean()),
        "return_std": std,
        "return_ci95": 1.96 * std / math.sqrt(n) if n > 1 else 0.0,
        "return_min": float(r.min()),
        "return_max": float(r.max()),
    }
    if successes:
        s = np.asarray(successes, np.float64)
        out["success_rate"] = float(s.mean())
        out["success_ci95"] = 1.96 * math.sqrt(out["success_rate"] * (1 - out["success_rate"]) / n)
    return out


def _load_newest(root: Path, requested: int | None):
    """(step, meta, networks, training state) of checkpoint `requested`, default the newest intact one.

    Damaged checkpoints are skipped (and named); a running learner keeps only its last K checkpoints and may
    delete the one being read, then the next newest is read.
    """
    built = {}

    def template_for(meta: dict[str, Any]):
        try:
            obs_spec = spec_from_jsonable(meta["obs_spec"])
            config = agent_config_from_dict(meta["agent_config"])
            action_dim = int(meta["action_dim"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointDamaged(f"its meta lacks what the networks were built for ({e!r})") from None
        built["networks"] = make_networks(config, obs_spec, action_dim)
        return init_training_state(built["networks"], jax.random.PRNGKey(0))

    checkpoints = Checkpointer(root, read_only=True)
    try:
        intact = checkpoints.restore_intact(template_for=template_for, step=requested)
    finally:
        checkpoints.close()
    note = intact.fallback_note()
    if note:
        log.warning(note)
    return intact.step, intact.meta, built["networks"], intact.state


def _policy_frames(obs: dict[str, Any], envs: int, size: int, finished: np.ndarray) -> np.ndarray:
    """The newest frame of every camera the policy saw, for the first `envs` envs, side by side, enlarged by
    pixel repetition to about `size` (the policy's own images are small); finished envs fade out."""
    cameras = [np.asarray(x)[:envs, ..., -3:] for name, x in sorted(obs.items()) if name.startswith("pixels/")]
    images = np.concatenate(cameras, axis=2)  # [envs, H, W * cameras, 3]
    images[finished[:envs]] //= 3
    scale = max(1, size // images.shape[1])
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    return np.concatenate(list(images), axis=1)


def evaluate(config: EvalConfig) -> dict[str, Any]:
    root, requested = checkpoint_root(config.checkpoint)
    step, meta, networks, state = _load_newest(root, requested)
    env_spec = EnvSpec(**{**meta["env"], "cameras": tuple(meta["env"]["cameras"])})
    env_spec = dataclasses.replace(env_spec, physics=config.physics, render_backend=config.render_backend)
    if config.scene:
        env_spec = dataclasses.replace(env_spec, scene=config.scene)
    env_spec = dataclasses.replace(env_spec, randomize=config.randomize)
    shift = {"shift": config.shift} if config.shift != "none" else {}
    if shift and env_spec.obs_mode != "pixels":
        raise ValueError(f"shift={config.shift!r} changes rendered frames: the run trained on obs_mode='state'")
    vec = env_spec.make_vec(config.num_envs, seed=config.seed, **shift)
    for line in env_choice_lines(env_spec, vec):  # each `auto` choice, once (docs/gpu.md)
        log.info(line)
    check_obs_spec(meta["obs_spec"], env_spec.policy_obs_spec(obs_spec_of(vec)), "eval")
    params = policy_params(state.params)
    policy = make_inference_fn(networks)

    renderer = None
    if config.policy_frames and env_spec.obs_mode != "pixels":
        raise ValueError("policy_frames needs a pixel policy (the run trained on obs_mode='state')")
    if config.video_episodes and not config.policy_frames:
        from serl_gs.render import RenderConfig, RenderStage

        camera = config.video_camera or vec.task.mj_model.camera(0).name
        render_config = RenderConfig(backend=config.render_backend, image_size=config.video_size, cameras=(camera,))
        renderer = RenderStage(vec.task.mj_model, render_config, vec.gaussian_scene)
    frames: list[np.ndarray] = []
    recording = np.zeros(config.num_envs, bool)
    recording[: config.video_episodes] = True

    def record() -> None:
        if config.policy_frames and config.video_episodes and recording.any():
            frames.append(_policy_frames(obs, config.video_episodes, config.video_size, ~recording))
        if renderer is not None and recording.any():
            poses = [np.asarray(x)[: config.video_episodes] for x in vec.body_poses()]
            images = renderer.render(*poses)[:, 0]  # [k, H, W, 3]
            images[~recording[: config.video_episodes]] //= 3  # finished envs fade out
            frames.append(np.concatenate(list(images), axis=1))

    returns, successes = [], []
    running = np.zeros(config.num_envs)
    succeeded = np.zeros(config.num_envs)
    stacker = FrameStacker(env_spec.frame_stack)
    obs = stacker.reset(vec.reset(seed=config.seed)[0])
    record()
    key = jax.random.PRNGKey(config.seed)
    progress = Progress(log, "episodes", config.episodes)
    while len(returns) < config.episodes:
        key, step_key = jax.random.split(key)
        actions = policy(params, obs, step_key, not config.stochastic)
        obs, reward, terminated, truncated, infos = vec.step(actions)
        obs = stacker.step(obs, np.asarray(terminated) | np.asarray(truncated))
        running += np.asarray(reward)
        if "success" in infos:
            succeeded = np.maximum(succeeded, np.asarray(infos["success"]))
        done = np.asarray(terminated) | np.asarray(truncated)
        for i in np.flatnonzero(done):
            if len(returns) < config.episodes:
                returns.append(float(running[i]))
                if "success" in infos:
                    successes.append(float(succeeded[i]))
        if done.any():
            rate = f", success {np.mean(successes):.0%}" if successes else ""
            progress(len(returns), f"return {np.mean(returns):.2f}{rate}")
        running[done], succeeded[done] = 0.0, 0.0
        recording[done] = False
        record()
    vec.close()

    out_dir = Path(config.out_dir) if config.out_dir else root.parent / "eval" / str(step)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "checkpoint": str(root / str(step)),
        "step": step,
        "env": env_spec.env,
        "obs_mode": env_spec.obs_mode,
        "randomize": env_spec.randomize,
        "shift": config.shift,
        "deterministic": not config.stochastic,
        **summarize(returns, successes),
    }
    if frames:
        import imageio.v2 as imageio

        video = out_dir / "eval.mp4"
        with warnings.catch_warnings():
            # imageio starts ffmpeg with subprocess (fork + exec at once): JAX's warning about os.fork() in a
            # multithreaded process does not apply to it.
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            imageio.mimwrite(video, frames, fps=25, macro_block_size=1)
        summary["video"] = str(video)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    summary["summary_json"] = str(out_dir / "summary.json")
    return summary
