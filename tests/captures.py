"""Captures the tests write themselves: known shapes with known colours and SH, laid out as 3DGS tools
write them (the INRIA trainer with nx ny nz, gsplat's exporter without), so tests never need a download."""

from __future__ import annotations

import math

import numpy as np

from serl_gs.render.scene import GaussianScene, rgb_to_sh_dc


def write_tool_ply(path, scene: GaussianScene, *, normals: bool, fmt="binary_little_endian", extra=()):
    """A .ply laid out the way a 3DGS tool writes it: the INRIA trainer (with nx ny nz) or gsplat's
    exporter (without); f_rest_* channel-major. `extra` adds (name, values) vertex properties after rot_3;
    `normals` may be True (zeros, as INRIA writes them) or an [N, 3] array."""
    n, k = scene.num_gaussians, scene.sh.shape[1]
    cols = [("x", scene.means[:, 0]), ("y", scene.means[:, 1]), ("z", scene.means[:, 2])]
    if normals is not False:
        values = np.zeros((n, 3), np.float32) if normals is True else np.asarray(normals, np.float32)
        cols += [(name, values[:, i]) for i, name in enumerate(("nx", "ny", "nz"))]
    cols += [(f"f_dc_{c}", scene.sh[:, 0, c]) for c in range(3)]
    rest = scene.sh[:, 1:].transpose(0, 2, 1).reshape(n, -1)
    cols += [(f"f_rest_{i}", rest[:, i]) for i in range(3 * (k - 1))]
    cols += [("opacity", scene.opacity_logits)]
    cols += [(f"scale_{i}", scene.log_scales[:, i]) for i in range(3)]
    cols += [(f"rot_{i}", scene.quats[:, i]) for i in range(4)]
    types = {"f4": "float", "u1": "uchar", "f8": "double", "i2": "short", "i4": "int"}
    cols = [(name, values.astype(np.float32)) for name, values in cols] + list(extra)
    header = f"ply\nformat {fmt} 1.0\ncomment written by a test\nelement vertex {n}\n"
    header += "".join(f"property {types[v.dtype.str[1:]]} {name}\n" for name, v in cols) + "end_header\n"
    if fmt == "ascii":
        body = "".join(" ".join(repr(v[i].item()) for _, v in cols) + "\n" for i in range(n)).encode()
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        table = np.empty(n, [(name, order + v.dtype.str[1:]) for name, v in cols])
        for name, v in cols:
            table[name] = v
        body = table.tobytes()
    path.write_bytes(header.encode() + body)


def ball_capture(radius=0.1, n=400, rgb=(0.9, 0.2, 0.1), degree=0, rest=None, opacity=0.99) -> GaussianScene:
    """A ball of flat Gaussians on a sphere (Fibonacci points, discs tangent to the surface), one colour.

    `rest` [(degree+1)^2 - 1, 3] sets the higher SH bands of every Gaussian (default zeros): a known
    view-dependent colour. Centred at the origin in the capture's frame, bound to body 0.
    """
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = i * math.pi * (3 - math.sqrt(5))
    normals = np.stack([r * np.cos(phi), r * np.sin(phi), z], -1)
    # Quaternion taking +z onto each normal (the disc's thin axis along the normal).
    q = np.concatenate([1 + normals[:, 2:3], -normals[:, 1:2], normals[:, 0:1], np.zeros((n, 1))], 1)
    q[normals[:, 2] < -1 + 1e-9] = [0, 1, 0, 0]
    spacing = radius * math.sqrt(4 * math.pi / n)
    sh = np.zeros((n, (degree + 1) ** 2, 3), np.float32)
    sh[:, 0] = rgb_to_sh_dc(np.asarray(rgb))
    if rest is not None:
        sh[:, 1:] = rest
    return GaussianScene(
        means=radius * normals,
        quats=q,
        log_scales=np.log(np.tile([0.7 * spacing, 0.7 * spacing, 0.1 * spacing], (n, 1))),
        opacity_logits=np.full(n, math.log(opacity / (1 - opacity))),
        sh=sh,
        body_ids=np.zeros(n, np.int32),
    )
