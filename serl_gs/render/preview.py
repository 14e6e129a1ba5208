"""Look at what the policy sees: a PNG grid of every env's cameras (rows: envs, columns: cameras).

    python -m serl_gs.render.preview --env serl_gs/PandaPickCube-v0 --num_envs 4 --out preview.png
    python -m serl_gs.render.preview --env serl_gs/PiperMobilePick-v0 --expert --steps 70 --out mid_task.png
    python -m serl_gs.render.preview --model envs/assets/panda_pick_cube.xml --keyframe home --out scene.png
    python -m serl_gs.render.preview --model envs/assets/panda_pick_cube.xml --scene scene.json --overlay --out o.png

`--env` builds the registered vector env with pixel observations and takes a few random steps (`--expert`: the
task's scripted expert acts instead, on the state env, and the last state alone is rendered); `--model`
renders one MJCF at its qpos0 (or a keyframe) with CPU MuJoCo, no env needed. `--scene` renders with a
manifest's captures (serl_gs.render.manifest); `--overlay` draws the captures alone, half transparent, over
the generated scene instead, to check a registration by eye.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import mujoco
import numpy as np

from serl_gs.data.records import PIXELS_PREFIX
from serl_gs.render.cameras import camera_rig
from serl_gs.render.config import RenderConfig, SceneConfig
from serl_gs.render.manifest import scene_with_captures
from serl_gs.render.scene import GaussianScene


def model_poses(mj_model: mujoco.MjModel, keyframe: str | None = None):
    """Poses of one env of `mj_model` at qpos0 or `keyframe`, batched: (xpos, xquat, cam_xpos, cam_xmat)."""
    data = mujoco.MjData(mj_model)
    if keyframe is not None:
        key = mujoco.mj_name2id(mj_model, mujoco.mjtObj.mjOBJ_KEY, keyframe)
        if key < 0:
            names = [mj_model.key(i).name for i in range(mj_model.nkey)]
            raise ValueError(f"unknown keyframe {keyframe!r}; the model has {names}")
        mujoco.mj_resetDataKeyframe(mj_model, data, key)
    mujoco.mj_forward(mj_model, data)
    return data.xpos[None], data.xquat[None], data.cam_xpos[None], data.cam_xmat[None]


def render_model_preview(
    mj_model: mujoco.MjModel,
    config: RenderConfig,
    scene: GaussianScene | None = None,
    keyframe: str | None = None,
    scene_config: SceneConfig | None = None,
) -> tuple[np.ndarray, tuple[str, ...], str]:
    """One env of `mj_model` at qpos0 or `keyframe`: (uint8 [C, H, W, 3], camera names, backend)."""
    from serl_gs.render.stage import RenderStage

    stage = RenderStage(mj_model, config, scene, scene_config)
    images = stage.render(*model_poses(mj_model, keyframe))[0]
    return images, stage.camera_names, f"{stage.backend} ({stage.backend_reason})"


def render_overlay(mj_model: mujoco.MjModel, poses, config: RenderConfig, manifest: str) -> np.ndarray:
    """The manifest's captures alone, half transparent, over the generated scene: uint8 [B, C, H, W, 3].

    The captures' coverage (alpha) comes from drawing them over black and over white.
    """
    from serl_gs.render.manifest import body_name_to_id, load_scene_manifest
    from serl_gs.render.stage import RenderStage

    captures = load_scene_manifest(manifest, body_name_to_id(mj_model))
    generated = RenderStage(mj_model, config).render(*poses).astype(np.float32)
    on_black = RenderStage(mj_model, dataclasses.replace(config, background=(0.0, 0.0, 0.0)), captures)
    on_white = RenderStage(mj_model, dataclasses.replace(config, background=(1.0, 1.0, 1.0)), captures)
    premultiplied = on_black.render(*poses).astype(np.float32)  # colour * alpha
    alpha = 1.0 - (on_white.render(*poses).astype(np.float32) - premultiplied).mean(-1, keepdims=True) / 255.0
    out = generated * (1.0 - 0.5 * np.clip(alpha, 0.0, 1.0)) + 0.5 * premultiplied
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def env_poses(env_id: str, num_envs: int, steps: int, seed: int, expert: bool = False, **env_kwargs):
    """Poses of `num_envs` envs of a registered task after `steps` random actions, or the task's scripted
    expert's (`expert`; see serl_gs.demos.experts), with state observations."""
    from serl_gs.demos.experts import expert_for
    from serl_gs.tasks import make_vec

    act = expert_for(env_id) if expert else None  # before the env: an id without an expert fails at once
    env = make_vec(env_id, num_envs, array_backend="numpy", **env_kwargs)
    try:
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        for _ in range(steps):
            obs, *_ = env.step(act(env, obs) if act else env.action_space.sample())
        return env.task.mj_model, tuple(np.asarray(x) for x in env.body_poses())
    finally:
        env.close()


def render_env_preview(
    env_id: str, num_envs: int, config: RenderConfig, steps: int, seed: int, scene: str | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """`num_envs` envs of a registered task after `steps` random actions: (uint8 [N, C, H, W, 3], cameras).

    `scene`: a manifest of captures to render with (the env's `scene=` option)."""
    from serl_gs.tasks import make_vec

    env = make_vec(
        env_id,
        num_envs,
        obs_mode="pixels",
        render_backend=config.backend,
        image_size=config.image_size,
        cameras=config.cameras,
        **({"scene": scene} if scene else {}),
    )
    try:
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        for _ in range(steps):
            obs, *_ = env.step(env.action_space.sample())
        keys = sorted(k for k in obs if k.startswith(PIXELS_PREFIX))
        if config.cameras:
            keys = [PIXELS_PREFIX + name for name in config.cameras]
        if not keys:
            raise ValueError(f"{env_id} returned no pixels/<camera> observations; got keys {sorted(obs)}")
        images = np.stack([np.asarray(obs[k]) for k in keys], axis=1)  # [N, C, H, W, 3]
        return images, tuple(k.removeprefix(PIXELS_PREFIX) for k in keys)
    finally:
        env.close()


def image_grid(images: np.ndarray, scale: int = 1, gap: int = 2) -> np.ndarray:
    """uint8 [R, C, H, W, 3] -> one uint8 [R*(H*scale+gap)-gap, C*(W*scale+gap)-gap, 3] image, white gaps."""
    if images.ndim != 5 or images.shape[-1] != 3:
        raise ValueError(f"images must be [rows, cols, H, W, 3], got shape {images.shape}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    rows, cols, h, w, _ = images.shape
    big = images.repeat(scale, axis=2).repeat(scale, axis=3)
    hs, ws = h * scale, w * scale
    grid = np.full((rows * (hs + gap) - gap, cols * (ws + gap) - gap, 3), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            grid[r * (hs + gap) : r * (hs + gap) + hs, c * (ws + gap) : c * (ws + gap) + ws] = big[r, c]
    return grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--env", help="registered vector env id, e.g. serl_gs/PandaPickCube-v0")
    source.add_argument("--model", help="an MJCF file to render at qpos0 (no env needed)")
    parser.add_argument("--num_envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="random steps before the snapshot (--env)")
    parser.add_argument("--expert", action="store_true", help="with --env: the task's scripted expert takes "
                        "the steps instead of random actions")  # fmt: skip
    parser.add_argument("--keyframe", default=None, help="keyframe name to pose the model (--model)")
    parser.add_argument("--backend", default="auto", choices=("auto", "gsplat", "reference"))
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--cameras", default="", help="comma-separated camera names (default: all)")
    parser.add_argument("--scale", type=int, default=0, help="pixel upscaling in the PNG (0: to ~256 px)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scene", default=None, help="a scene manifest (JSON) of captures to render with")
    parser.add_argument("--overlay", action="store_true", help="with --scene: captures half transparent over "
                        "the generated scene, to check their placement")  # fmt: skip
    parser.add_argument("--out", default="preview.png")
    args = parser.parse_args(argv)
    if args.overlay and not args.scene:
        parser.error("--overlay needs --scene")
    if args.expert and (not args.env or args.scene):
        parser.error("--expert needs --env and no --scene")

    cameras = tuple(name for name in args.cameras.split(",") if name)
    config = RenderConfig(backend=args.backend, image_size=args.image_size, cameras=cameras)
    if args.overlay:
        if args.model:
            model = mujoco.MjModel.from_xml_path(args.model)
            poses = model_poses(model, args.keyframe)
        else:
            model, poses = env_poses(args.env, args.num_envs, args.steps, args.seed)
        images = render_overlay(model, poses, config, args.scene)
        names = tuple(camera_rig(model, cameras, 1, 1).names)
    elif args.model:
        model = mujoco.MjModel.from_xml_path(args.model)
        scene = scene_with_captures(model, args.scene) if args.scene else None
        images, names, backend = render_model_preview(model, config, scene=scene, keyframe=args.keyframe)
        images = images[None]
        print(f"rendered {args.model} with {backend}", file=sys.stderr)
    elif args.expert:
        from serl_gs.render.stage import RenderStage

        model, poses = env_poses(args.env, args.num_envs, args.steps, args.seed, expert=True)
        stage = RenderStage(model, config)
        images, names = stage.render(*poses), stage.camera_names
    else:
        images, names = render_env_preview(args.env, args.num_envs, config, args.steps, args.seed, args.scene)
    scale = args.scale or max(1, 256 // args.image_size)
    import imageio.v3 as iio

    iio.imwrite(args.out, image_grid(images, scale))
    print(f"wrote {args.out}: {images.shape[0]} envs x cameras {list(names)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
