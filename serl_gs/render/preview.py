"""Look at what the policy sees: a PNG grid of every env's cameras (rows: envs, columns: cameras).

    python -m serl_gs.render.preview --env serl_gs/PandaPickCube-v0 --num_envs 4 --out preview.png
    python -m serl_gs.render.preview --model envs/assets/panda_pick_cube.xml --keyframe home --out scene.png

`--env` builds the registered vector env with pixel observations and takes a few random steps; `--model`
renders one MJCF at its qpos0 (or a keyframe) with CPU MuJoCo, no env needed.
"""

from __future__ import annotations

import argparse
import sys

import mujoco
import numpy as np

from serl_gs.data.records import PIXELS_PREFIX
from serl_gs.render.config import RenderConfig, SceneConfig
from serl_gs.render.scene import GaussianScene


def render_model_preview(
    mj_model: mujoco.MjModel,
    config: RenderConfig,
    scene: GaussianScene | None = None,
    keyframe: str | None = None,
    scene_config: SceneConfig | None = None,
) -> tuple[np.ndarray, tuple[str, ...], str]:
    """One env of `mj_model` at qpos0 or `keyframe`: (uint8 [C, H, W, 3], camera names, backend)."""
    from serl_gs.render.stage import RenderStage

    data = mujoco.MjData(mj_model)
    if keyframe is not None:
        key = mujoco.mj_name2id(mj_model, mujoco.mjtObj.mjOBJ_KEY, keyframe)
        if key < 0:
            names = [mj_model.key(i).name for i in range(mj_model.nkey)]
            raise ValueError(f"unknown keyframe {keyframe!r}; the model has {names}")
        mujoco.mj_resetDataKeyframe(mj_model, data, key)
    mujoco.mj_forward(mj_model, data)
    stage = RenderStage(mj_model, config, scene, scene_config)
    images = stage.render(data.xpos[None], data.xquat[None], data.cam_xpos[None], data.cam_xmat[None])[0]
    return images, stage.camera_names, f"{stage.backend} ({stage.backend_reason})"


def render_env_preview(
    env_id: str, num_envs: int, config: RenderConfig, steps: int, seed: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    """`num_envs` envs of a registered task after `steps` random actions: (uint8 [N, C, H, W, 3], cameras)."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the serl_gs/* ids)

    env = gym.make_vec(
        env_id,
        num_envs=num_envs,
        obs_mode="pixels",
        render_backend=config.backend,
        image_size=config.image_size,
        cameras=config.cameras,
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
    parser.add_argument("--keyframe", default=None, help="keyframe name to pose the model (--model)")
    parser.add_argument("--backend", default="auto", choices=("auto", "gsplat", "reference"))
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--cameras", default="", help="comma-separated camera names (default: all)")
    parser.add_argument("--scale", type=int, default=0, help="pixel upscaling in the PNG (0: to ~256 px)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="preview.png")
    args = parser.parse_args(argv)

    cameras = tuple(name for name in args.cameras.split(",") if name)
    config = RenderConfig(backend=args.backend, image_size=args.image_size, cameras=cameras)
    if args.model:
        images, names, backend = render_model_preview(
            mujoco.MjModel.from_xml_path(args.model), config, keyframe=args.keyframe
        )
        images = images[None]
        print(f"rendered {args.model} with {backend}", file=sys.stderr)
    else:
        images, names = render_env_preview(args.env, args.num_envs, config, args.steps, args.seed)
    scale = args.scale or max(1, 256 // args.image_size)
    import imageio.v3 as iio

    iio.imwrite(args.out, image_grid(images, scale))
    print(f"wrote {args.out}: {images.shape[0]} envs x cameras {list(names)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
