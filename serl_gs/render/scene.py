"""A Gaussian scene: Gaussians in their bodies' frames, each bound to one MuJoCo body (0 = the static world).

Parameters are stored the way 3DGS trainers store them (log-scales, opacity logits, SH coefficients), as
float32 numpy arrays, so a `.ply` round trip is exact. The renderer activates them (exp, sigmoid).
Other per-Gaussian `.ply` properties a tool wrote (INRIA's nx ny nz, a viewer's colours, a segmentation
label) ride along in `extras`, so `read_ply` -> `write_ply` keeps every property.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import numpy as np

from serl_gs.render.sh import SH_C0, rotate_sh  # SH_C0: rgb = SH_C0 * dc + 0.5


def sh_bands_to_degree(num_bands: int) -> int:
    """K = (degree + 1)^2 coefficients per colour channel; degrees 0-3 are the 3DGS standard."""
    for degree in range(4):
        if (degree + 1) ** 2 == num_bands:
            return degree
    raise ValueError(f"SH coefficient count must be 1, 4, 9 or 16 (degree 0-3), got {num_bands}")


def rgb_to_sh_dc(rgb: np.ndarray) -> np.ndarray:
    """Degree-0 SH coefficient whose colour is `rgb` (in [0, 1]): the inverse of rgb = SH_C0 * dc + 0.5."""
    return ((np.asarray(rgb, np.float32) - 0.5) / SH_C0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class GaussianScene:
    """N Gaussians, each in the frame of body `body_ids[i]`.

    World pose in env b: mean_w = R(xquat[b, body]) @ mean + xpos[b, body]; rot_w = xquat[b, body] * quat.
    """

    means: np.ndarray  # [N, 3] float32, body frame
    quats: np.ndarray  # [N, 4] float32, wxyz, body frame, need not be normalised
    log_scales: np.ndarray  # [N, 3] float32
    opacity_logits: np.ndarray  # [N] float32
    sh: np.ndarray  # [N, K, 3] float32, K = (sh_degree + 1)^2; sh[:, 0] is the DC term
    body_ids: np.ndarray  # [N] int32
    # name -> [N] array of any PLY number type, in file order; not rendered, kept for write_ply
    extras: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        n = _rows(self.means, "means", (3,))
        for name, trailing in (("quats", (4,)), ("log_scales", (3,)), ("opacity_logits", ())):
            if _rows(getattr(self, name), name, trailing) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, means has {n}")
        sh = np.asarray(self.sh)
        if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3:
            raise ValueError(f"sh must be [N={n}, K, 3], got shape {sh.shape}")
        sh_bands_to_degree(sh.shape[1])
        if _rows(self.body_ids, "body_ids", ()) != n:
            raise ValueError(f"body_ids has {len(self.body_ids)} rows, means has {n}")
        # Normalise dtypes once so every consumer (renderer, .ply writer) sees the same bits.
        for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float32))
        object.__setattr__(self, "body_ids", np.ascontiguousarray(self.body_ids, dtype=np.int32))
        if n and self.body_ids.min() < 0:
            raise ValueError(f"body_ids must be >= 0, got {int(self.body_ids.min())}")
        for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"{name} contains NaN or inf")
        if n and (np.linalg.norm(self.quats, axis=-1) == 0).any():
            raise ValueError("quats contains a zero quaternion")
        object.__setattr__(self, "extras", _checked_extras(self.extras, n))

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return sh_bands_to_degree(self.sh.shape[1])

    def with_sh_degree(self, degree: int) -> GaussianScene:
        """Pads higher SH bands with zeros or drops them, so scenes of different degrees can be merged."""
        bands = (degree + 1) ** 2
        sh_bands_to_degree(bands)
        k = self.sh.shape[1]
        if bands <= k:
            sh = self.sh[:, :bands]
        else:
            sh = np.concatenate([self.sh, np.zeros((len(self.sh), bands - k, 3), np.float32)], axis=1)
        return dataclasses.replace(self, sh=sh)

    def bound_to(self, body_id: int) -> GaussianScene:
        """The same Gaussians, all bound to `body_id`."""
        return dataclasses.replace(self, body_ids=np.full(self.num_gaussians, body_id, np.int32))

    def transformed(
        self, rotation_wxyz=(1.0, 0.0, 0.0, 0.0), translation=(0.0, 0.0, 0.0), scale: float = 1.0
    ) -> GaussianScene:
        """Applies x -> scale * R x + t, e.g. to place a captured background into the sim's world frame.

        Rotations compose with each Gaussian's own rotation; a uniform scale adds log(scale) to log-scales.
        Higher SH bands (view-dependent colour) turn with the capture; so do normals (extras nx ny nz).
        """

        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        q = np.asarray(rotation_wxyz, np.float64)
        if q.shape != (4,) or np.linalg.norm(q) == 0:
            raise ValueError(
                f"rotation_wxyz must be a non-zero quaternion (w, x, y, z), got {rotation_wxyz!r}"
            )
        t = np.asarray(translation, np.float64)
        if t.shape != (3,):
            raise ValueError(f"translation must be (x, y, z), got {translation!r}")
        q = q / np.linalg.norm(q)
        rot = quat_to_matrix(q)
        means = scale * self.means.astype(np.float64) @ rot.T + t
        extras = dict(self.extras)
        if all(k in extras and extras[k].dtype.kind == "f" for k in NORMAL_NAMES):
            normals = np.stack([extras[k] for k in NORMAL_NAMES], -1).astype(np.float64) @ rot.T
            extras.update({k: normals[:, i].astype(extras[k].dtype) for i, k in enumerate(NORMAL_NAMES)})
        return dataclasses.replace(
            self,
            means=means,
            quats=quat_multiply(q[None], self.quats.astype(np.float64)),
            log_scales=self.log_scales + np.float32(np.log(scale)),
            sh=rotate_sh(self.sh, rot),
            extras=extras,
        )

    def subset(self, mask_or_index: np.ndarray) -> GaussianScene:
        return GaussianScene(
            means=self.means[mask_or_index],
            quats=self.quats[mask_or_index],
            log_scales=self.log_scales[mask_or_index],
            opacity_logits=self.opacity_logits[mask_or_index],
            sh=self.sh[mask_or_index],
            body_ids=self.body_ids[mask_or_index],
            extras={k: v[mask_or_index] for k, v in self.extras.items()},
        )


def concat_scenes(scenes: list[GaussianScene]) -> GaussianScene:
    """One scene holding all Gaussians of `scenes`; SH is padded to the highest degree among them.

    An extra property that only some scenes have is zero for the others' Gaussians (a generated scene has
    no normals column; a capture's stays whole).
    """
    if not scenes:
        raise ValueError("concat_scenes needs at least one scene")
    degree = max(s.sh_degree for s in scenes)
    scenes = [s.with_sh_degree(degree) for s in scenes]
    fields = {
        f.name: np.concatenate([getattr(s, f.name) for s in scenes])
        for f in dataclasses.fields(GaussianScene)
        if f.name != "extras"
    }
    names = list(dict.fromkeys(k for s in scenes for k in s.extras))
    extras = {}
    for name in names:
        dtype = np.result_type(*(s.extras[name] for s in scenes if name in s.extras))
        extras[name] = np.concatenate(
            [s.extras[name] if name in s.extras else np.zeros(s.num_gaussians, dtype) for s in scenes]
        ).astype(dtype)
    return GaussianScene(**fields, extras=extras)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """wxyz quaternion(s) [..., 4] (normalised here) -> rotation matrices [..., 3, 3]."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of wxyz quaternions, broadcasting over leading dims."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b), -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


NORMAL_NAMES = ("nx", "ny", "nz")
# Properties GaussianScene holds in its own fields; an extra may not take one of these names.
STANDARD_NAMES = frozenset(
    ["x", "y", "z", "opacity", "body_id"]
    + [f"f_dc_{i}" for i in range(3)]
    + [f"scale_{i}" for i in range(3)]
    + [f"rot_{i}" for i in range(4)]
)
_EXTRA_KINDS = {"i1", "u1", "i2", "u2", "i4", "u4", "f4", "f8"}  # the PLY number types


def _checked_extras(extras: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    if not isinstance(extras, Mapping):
        raise ValueError(f"extras must be a mapping of name -> [N] array, got {type(extras).__name__}")
    out = {}
    for name, values in extras.items():
        if not isinstance(name, str) or not re.fullmatch(r"[^\s]+", name):
            raise ValueError(f"extra property name must be a non-empty word without spaces, got {name!r}")
        if name in STANDARD_NAMES or re.fullmatch(r"f_rest_\d+", name):
            raise ValueError(f"extra property {name!r} clashes with a standard 3DGS property")
        values = np.asarray(values)
        if values.shape != (n,):
            raise ValueError(f"extra property {name!r} must have shape [{n}], got {values.shape}")
        code = values.dtype.str[1:]
        if code not in _EXTRA_KINDS:
            raise ValueError(
                f"extra property {name!r} has dtype {values.dtype}; PLY stores {sorted(_EXTRA_KINDS)}"
            )
        out[name] = np.ascontiguousarray(values, values.dtype.newbyteorder("="))
    return out


def _rows(array, name: str, trailing: tuple[int, ...]) -> int:
    shape = np.shape(array)
    if len(shape) != 1 + len(trailing) or tuple(shape[1:]) != trailing:
        raise ValueError(
            f"{name} must have shape [N, {', '.join(map(str, trailing))}], got {shape}".replace(", ]", "]")
        )
    return int(shape[0])
