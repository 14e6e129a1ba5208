"""The figure of docs/sim2real.md: randomized frames of PandaPickCube with their depth and segmentation.

    python scripts/sim2real_grid.py --out docs/sim2real_grid.png

Rows: env 0 without randomization, then envs 0-3 with the `strong` preset (one draw each from its own key).
Columns: front RGB, wrist RGB, front depth (near = bright, nothing drawn = black), front segmentation
(background grey, table tan, robot blue, object red).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
from PIL import Image

import envs  # noqa: F401
from serl_gs.render.preview import image_grid

LABEL_COLOURS = np.array([[90, 90, 90], [200, 170, 120], [60, 110, 220], [220, 50, 40]], np.uint8)


def depth_image(mm: np.ndarray) -> np.ndarray:
    """uint16 mm [H, W] -> uint8 grey [H, W, 3]: near bright, far dark, nothing drawn black."""
    drawn = mm > 0
    d = mm.astype(np.float32)
    lo, hi = (np.percentile(d[drawn], [1, 99]) if drawn.any() else (0.0, 1.0))
    grey = np.clip(1.0 - (d - lo) / max(hi - lo, 1.0), 0.0, 1.0) * 0.85 + 0.15
    return np.repeat(np.where(drawn, grey * 255, 0).astype(np.uint8)[..., None], 3, -1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/sim2real_grid.png")
    p.add_argument("--image_size", type=int, default=96)
    p.add_argument("--preset", default="strong")
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    rows = []
    for randomize, envs_shown in (("none", 1), (a.preset, 4)):
        env = gym.make_vec("serl_gs/PandaPickCube-v0", num_envs=4, physics="mujoco", obs_mode="pixels",
                           render_backend="reference", image_size=a.image_size, array_backend="numpy",
                           randomize=randomize, depth=True, segmentation=True)  # fmt: skip
        obs, _ = env.reset(seed=a.seed)
        for i in range(envs_shown):
            rows.append([obs["pixels/front"][i], obs["pixels/wrist"][i], depth_image(obs["depth/front"][i, ..., 0]),
                         LABEL_COLOURS[obs["segmentation/front"][i, ..., 0]]])  # fmt: skip
        env.close()
    Image.fromarray(image_grid(np.array(rows), scale=2, gap=3)).save(a.out)
    print(a.out)


if __name__ == "__main__":
    main()
