"""Real spherical harmonics in the 3DGS order (numpy), and their rotation.

A capture's higher SH bands hold view-dependent colour in the capture's own frame. Placing the capture with
a rotation R must turn that colour with it: the colour seen along a world direction d is the old colour
along R^T d. Each band l (2l+1 coefficients) is closed under rotation, so its coefficients transform by one
(2l+1) x (2l+1) matrix, found here exactly by least squares over sample directions (no Wigner formulas to
get wrong; the basis is the renderer's own, with gsplat's constants and signs).
"""

from __future__ import annotations

import math

import numpy as np

SH_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)  # fmt: skip


def sh_basis(degree: int, dirs: np.ndarray) -> np.ndarray:
    """Real SH basis [..., (degree+1)^2] at unit directions [..., 3] (same as `reference.sh_basis`)."""
    if degree not in (0, 1, 2, 3):
        raise ValueError(f"SH degree must be 0-3, got {degree}")
    dirs = np.asarray(dirs, np.float64)
    x, y, z = np.moveaxis(dirs, -1, 0)
    out = [np.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [_C2[0] * x * y, _C2[1] * y * z, _C2[2] * (2 * zz - xx - yy), _C2[3] * x * z, _C2[4] * (xx - yy)]
    if degree >= 3:
        out += [
            _C3[0] * y * (3 * xx - yy),
            _C3[1] * x * y * z,
            _C3[2] * y * (4 * zz - xx - yy),
            _C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            _C3[4] * x * (4 * zz - xx - yy),
            _C3[5] * z * (xx - yy),
            _C3[6] * x * (xx - 3 * yy),
        ]
    return np.stack(out, -1)


def sh_rotation(rotation: np.ndarray, degree: int) -> np.ndarray:
    """[K, K] block-diagonal matrix M with basis(d) @ M c == basis(R^T d) @ c for every unit d.

    So `M @ c` is the coefficient vector of the colour rotated by `rotation` (a 3x3 rotation matrix).
    """
    rotation = np.asarray(rotation, np.float64)
    if rotation.shape != (3, 3) or not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6):
        raise ValueError(f"rotation must be a 3x3 rotation matrix, got {rotation.tolist()}")
    dirs = _fibonacci_sphere(64)
    a = sh_basis(degree, dirs)  # [64, K]
    b = sh_basis(degree, dirs @ rotation)  # rows: R^T d_i
    k = (degree + 1) ** 2
    m = np.zeros((k, k))
    m[0, 0] = 1.0  # the DC term has no direction: exactly unchanged
    for band in range(1, degree + 1):
        sl = slice(band * band, (band + 1) ** 2)
        m[sl, sl] = np.linalg.lstsq(a[:, sl], b[:, sl], rcond=None)[0]
    return m


def rotate_sh(sh: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """SH coefficients [N, K, 3] of Gaussians turned by `rotation` (3x3): DC unchanged, higher bands rotated."""
    sh = np.asarray(sh)
    k = sh.shape[1]
    degree = math.isqrt(k) - 1
    if (degree + 1) ** 2 != k:
        raise ValueError(f"SH coefficient count must be 1, 4, 9 or 16, got {k}")
    if degree == 0:
        return sh
    m = sh_rotation(rotation, degree)
    out = np.einsum("ij,njc->nic", m, sh.astype(np.float64)).astype(sh.dtype)
    out[:, 0] = sh[:, 0]  # bit-exact DC, whatever the float rounding of the product
    return out


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(np.clip(1 - z * z, 0, None))
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], -1)
