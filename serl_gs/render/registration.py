"""Placing a capture in the sim frame: a similarity transform x_sim = s R x_capture + t, written into a manifest.

A capture comes in its reconstruction's frame (COLMAP's: any scale, any orientation, any origin). Two ways in:

- point pairs: a few points picked in the capture (a 3DGS viewer shows coordinates) and where they are in the
  sim (a site, a body, the table's corners): `fit_similarity` (Umeyama's least squares; 3+ pairs, not on one
  line). `residual_rms` says how well they agree.
- a plane: points of the table in the capture (picked, or found by `dominant_plane`): the table's normal turns
  to +z and the table lands at `height` (tilt and height fixed). With 2+ point pairs besides,
  `fit_on_plane` also fits yaw, xy and scale within that plane, which needs fewer and less careful picks.

    python -m serl_gs.render.registration scene.json --ply lab.ply --pairs pairs.json
    python -m serl_gs.render.registration scene.json --ply lab.ply --plane auto --up 0,-1,0 --pairs pairs.json
    python -m serl_gs.render.registration scene.json --ply cube.ply --like lab.ply --centre   # same capture

pairs.json: {"capture": [[x, y, z], ...], "sim": [[x, y, z], ...]}. Check the result by eye with
`python -m serl_gs.render.preview --model <mjcf> --scene scene.json --overlay overlay.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from serl_gs.render.manifest import Transform
from serl_gs.render.scene import quat_to_matrix


@dataclasses.dataclass(frozen=True)
class Similarity:
    """x -> scale * rotation @ x + translation."""

    scale: float
    rotation: np.ndarray  # [3, 3], det +1
    translation: np.ndarray  # [3]

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(points, np.float64) @ self.rotation.T + self.translation

    def then(self, other: Similarity) -> Similarity:
        """`other` after `self`."""
        return Similarity(
            other.scale * self.scale,
            other.rotation @ self.rotation,
            other.scale * other.rotation @ self.translation + other.translation,
        )

    def transform(self) -> Transform:
        """The manifest's form (rotation as a wxyz quaternion)."""
        return Transform(tuple(matrix_to_quat(self.rotation)), tuple(self.translation.tolist()), float(self.scale))


def fit_similarity(capture_points, sim_points, with_scale: bool = True) -> Similarity:
    """Least-squares s, R, t with sim ~ s R capture + t (Umeyama 1991); never a reflection.

    Needs 3+ pairs not all on one line; raises ValueError naming what is wrong with the points.
    """
    src, dst = _pairs(capture_points, sim_points, minimum=3)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    if np.linalg.matrix_rank(xs, tol=1e-9 * max(1.0, np.abs(xs).max())) < 2:
        raise ValueError("the capture points lie on one line (or one point): the rotation is undetermined")
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0  # the closest rotation, not a mirror
    rotation = u @ sign @ vt
    var_s = (xs**2).sum() / len(src)
    scale = float(np.trace(np.diag(d) @ sign) / var_s) if with_scale else 1.0
    return Similarity(scale, rotation, mu_d - scale * rotation @ mu_s)


def residual_rms(similarity: Similarity, capture_points, sim_points) -> float:
    """RMS distance (sim units) between the placed capture points and their sim points."""
    src, dst = _pairs(capture_points, sim_points, minimum=1)
    return float(np.sqrt(((similarity.apply(src) - dst) ** 2).sum(1).mean()))


def fit_plane(points) -> tuple[np.ndarray, np.ndarray]:
    """(centroid [3], unit normal [3]) of the least-squares plane through 3+ points (sign arbitrary)."""
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 3:
        raise ValueError(f"a plane needs 3+ points [N, 3], got shape {points.shape}")
    centroid = points.mean(0)
    _, s, vt = np.linalg.svd(points - centroid)
    if s[1] <= 1e-9 * max(1.0, s[0]):
        raise ValueError("the plane points lie on one line: the plane is undetermined")
    return centroid, vt[2]


def dominant_plane(points, threshold: float, iterations: int = 256, seed: int = 0) -> np.ndarray:
    """RANSAC: mask [N] of the points within `threshold` of the plane that most points lie on (a table)."""
    points = np.asarray(points, np.float64)
    if len(points) < 3:
        raise ValueError(f"need 3+ points to find a plane, got {len(points)}")
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    rng = np.random.default_rng(seed)
    best = np.zeros(len(points), bool)
    for _ in range(iterations):
        a, b, c = points[rng.choice(len(points), 3, replace=False)]
        normal = np.cross(b - a, c - a)
        norm = np.linalg.norm(normal)
        if norm < 1e-12:
            continue
        inliers = np.abs((points - a) @ (normal / norm)) < threshold
        if inliers.sum() > best.sum():
            best = inliers
    if best.sum() < 3:
        raise ValueError(f"no plane with 3+ points within {threshold} found")
    centroid, normal = fit_plane(points[best])  # refit on all inliers
    return np.abs((points - centroid) @ normal) < threshold


def level_plane(plane_points, up_hint, height: float = 0.0) -> Similarity:
    """Turns the plane's normal (on `up_hint`'s side, a capture-frame vector pointing roughly up) to +z by the
    smallest rotation and lifts the plane to z = `height`; scale 1, x and y of the centroid unchanged."""
    centroid, normal = fit_plane(plane_points)
    up = np.asarray(up_hint, np.float64)
    if up.shape != (3,) or abs(up @ normal) < 1e-6 * np.linalg.norm(up):
        raise ValueError(f"up_hint must be a 3-vector not parallel to the plane, got {up_hint!r}")
    normal = normal if up @ normal > 0 else -normal
    rotation = _rotation_between(normal, np.array([0.0, 0.0, 1.0]))
    moved = rotation @ centroid
    return Similarity(1.0, rotation, np.array([0.0, 0.0, height - moved[2]]))


def fit_on_plane(plane_points, up_hint, capture_points, sim_points, height: float = 0.0) -> Similarity:
    """`level_plane`, then yaw, xy and scale from 2+ point pairs within the plane (heights of pairs unused)."""
    level = level_plane(plane_points, up_hint, height=0.0)
    src, dst = _pairs(capture_points, sim_points, minimum=2)
    a, b = level.apply(src)[:, :2], dst[:, :2]
    mu_a, mu_b = a.mean(0), b.mean(0)
    xa, xb = a - mu_a, b - mu_b
    var_a = (xa**2).sum()
    if var_a < 1e-18:
        raise ValueError("the capture points coincide within the plane: yaw and scale are undetermined")
    # 2D Umeyama in complex form: xb ~ s e^{i yaw} xa.
    za, zb = xa[:, 0] + 1j * xa[:, 1], xb[:, 0] + 1j * xb[:, 1]
    k = (np.conj(za) * zb).sum() / var_a
    scale, yaw = float(abs(k)), float(np.angle(k))
    c, s = np.cos(yaw), np.sin(yaw)
    rot_z = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    shift = mu_b - scale * rot_z[:2, :2] @ mu_a
    return level.then(Similarity(scale, rot_z, np.array([shift[0], shift[1], height])))


def centred(similarity: Similarity, capture_points) -> Similarity:
    """The same placement shifted so the placed points' bounding-box centre is the origin: a captured object
    segmented out of a registered capture, bound to a body that moves (the cube) at the body's origin."""
    placed = similarity.apply(capture_points)
    centre = (placed.min(0) + placed.max(0)) / 2
    return Similarity(similarity.scale, similarity.rotation, similarity.translation - centre)


def matrix_to_quat(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] -> unit wxyz quaternion with w >= 0."""
    m = np.asarray(rotation, np.float64)
    w = np.sqrt(max(0.0, 1.0 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    x = np.sqrt(max(0.0, 1.0 + m[0, 0] - m[1, 1] - m[2, 2])) / 2
    y = np.sqrt(max(0.0, 1.0 - m[0, 0] + m[1, 1] - m[2, 2])) / 2
    z = np.sqrt(max(0.0, 1.0 - m[0, 0] - m[1, 1] + m[2, 2])) / 2
    x = np.copysign(x, m[2, 1] - m[1, 2])
    y = np.copysign(y, m[0, 2] - m[2, 0])
    z = np.copysign(z, m[1, 0] - m[0, 1])
    q = np.array([w, x, y, z])
    return q / np.linalg.norm(q)


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vector a onto unit vector b."""
    v, c = np.cross(a, b), float(a @ b)
    if c < -1 + 1e-12:  # opposite: a half turn about any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def _pairs(capture_points, sim_points, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    src, dst = np.asarray(capture_points, np.float64), np.asarray(sim_points, np.float64)
    if src.ndim != 2 or src.shape[1] != 3 or src.shape != dst.shape:
        raise ValueError(f"point pairs must be two [N, 3] arrays of equal N, got {src.shape} and {dst.shape}")
    if len(src) < minimum:
        raise ValueError(f"need {minimum}+ point pairs, got {len(src)}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("point pairs contain NaN or inf")
    return src, dst


def main(argv: list[str] | None = None) -> int:
    from serl_gs.render.manifest import read_manifest
    from serl_gs.render.ply import read_ply

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", help="the scene manifest (JSON) whose part gets the transform")
    parser.add_argument("--ply", required=True, help="the part to place, as named in the manifest")
    parser.add_argument("--pairs", help='JSON {"capture": [[x, y, z], ...], "sim": [[x, y, z], ...]}')
    parser.add_argument("--plane", help="'auto' (RANSAC on the capture's Gaussians) or a JSON list of points")
    parser.add_argument("--up", default="0,0,1", help="with --plane: a capture-frame vector pointing roughly up")
    parser.add_argument("--height", type=float, default=0.0, help="with --plane: the plane's z in the sim")
    parser.add_argument("--threshold", type=float, default=0.01, help="--plane auto: inlier distance (capture units)")
    parser.add_argument("--like", help="take the transform of this part (one registration for one capture's parts)")
    parser.add_argument("--centre", action="store_true", help="then centre the part on its body's origin")
    args = parser.parse_args(argv)
    if sum(map(bool, (args.pairs or args.plane, args.like))) != 1:
        parser.error("give --pairs and/or --plane, or --like")
    by_name = {str(p.ply.relative_to(Path(args.manifest).parent)): p for p in read_manifest(args.manifest)}
    for name in filter(None, (args.ply, args.like)):
        if name not in by_name:
            parser.error(f"{args.manifest} has no part with ply {name!r}; parts: {sorted(by_name)}")
    part = by_name[args.ply]
    if args.like:
        t = by_name[args.like].transform
        if t is None:
            parser.error(f"part {args.like!r} has no transform yet")
        fit = Similarity(t.scale, quat_to_matrix(np.asarray(t.rotation_wxyz)), np.asarray(t.translation))
        return _write(args, fit, read_ply(part.ply).means)
    pairs = json.loads(Path(args.pairs).read_text()) if args.pairs else None
    if pairs is not None and (not isinstance(pairs, dict) or {"capture", "sim"} - set(pairs)):
        parser.error(f"{args.pairs} must hold an object with 'capture' and 'sim' point lists")
    means = read_ply(part.ply).means
    if args.plane:
        if args.plane == "auto":
            plane_points = means[dominant_plane(means, args.threshold)]
            print(f"plane: {len(plane_points)} of {len(means)} Gaussians within {args.threshold}", file=sys.stderr)
        else:
            plane_points = np.asarray(json.loads(Path(args.plane).read_text()), np.float64)
        up = [float(v) for v in args.up.split(",")]
        if pairs is not None:
            fit = fit_on_plane(plane_points, up, pairs["capture"], pairs["sim"], height=args.height)
        else:
            fit = level_plane(plane_points, up, height=args.height)
    else:
        fit = fit_similarity(pairs["capture"], pairs["sim"])
    if pairs is not None:
        rms = residual_rms(fit, pairs["capture"], pairs["sim"])
        print(f"point pairs: rms {rms:.4g} (sim units) over {len(pairs['sim'])} pairs", file=sys.stderr)
    return _write(args, fit, means)


def _write(args, fit: Similarity, means: np.ndarray) -> int:
    from serl_gs.render.manifest import set_part_transform

    if args.centre:
        fit = centred(fit, means)
    set_part_transform(args.manifest, args.ply, fit.transform())
    print(json.dumps(fit.transform().to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
