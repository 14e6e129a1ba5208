"""Gaussian scenes generated from an MJCF's geoms, so every task has a scene without a capture.

Flat Gaussians (discs) tile the surface of every visible geom (plane, box, sphere, capsule, cylinder,
ellipsoid, mesh), in the geom's body frame and bound to that body. Colours come from the geom's rgba
(or its material's), with a deterministic procedural texture and lighting baked in at the model's qpos0,
the way a real capture bakes the lab's lighting into its Gaussians. Same model + same config = same
scene, bit for bit; `scene_for_model` caches it in memory and on disk, keyed by a hash of the compiled
model and the config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import threading
from pathlib import Path

import mujoco
import numpy as np

from serl_gs.render.config import SceneConfig
from serl_gs.render.ply import read_ply, write_ply
from serl_gs.render.scene import GaussianScene, concat_scenes, quat_to_matrix, rgb_to_sh_dc

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # bump when the generated Gaussians change, so disk caches are not reused
_GT = mujoco.mjtGeom
_DEFAULT_RGBA = np.array([0.5, 0.5, 0.5, 1.0])
_LIGHT_DIR = np.array([0.3, -0.4, 1.0]) / np.linalg.norm([0.3, -0.4, 1.0])  # key light, from above
_MIN_SPACING = 0.003  # metres
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))
_MEMORY_CACHE: dict[str, GaussianScene] = {}
_CACHE_LOCK = threading.Lock()


def scene_for_model(mj_model: mujoco.MjModel, config: SceneConfig = SceneConfig()) -> GaussianScene:
    """The generated scene of `mj_model`, from the in-memory or on-disk cache when present."""
    key = scene_cache_key(mj_model, config)
    with _CACHE_LOCK:
        if key in _MEMORY_CACHE:
            return _MEMORY_CACHE[key]
    path = Path(config.cache_dir).expanduser() / f"{key}.ply" if config.cache_dir else None
    scene = None
    if path is not None and path.exists():
        try:
            scene = read_ply(path)
        except ValueError as err:  # a damaged cache file is regenerated, not fatal
            log.warning("regenerating scene: cached %s is unreadable (%s)", path, err)
    if scene is None:
        scene = generate_scene(mj_model, config)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_ply(path, scene)
                log.info("generated %d Gaussians, cached at %s", scene.num_gaussians, path)
            except OSError as err:  # a read-only home still renders; it just regenerates next time
                log.warning("could not cache the scene at %s: %s", path, err)
    with _CACHE_LOCK:
        _MEMORY_CACHE[key] = scene
    return scene


def scene_cache_key(mj_model: mujoco.MjModel, config: SceneConfig) -> str:
    """sha256 of the compiled model (MJB bytes), the generation settings and the generator version."""
    mjb = np.zeros(mujoco.mj_sizeModel(mj_model), np.uint8)
    mujoco.mj_saveModel(mj_model, None, mjb)
    settings = dataclasses.replace(config, cache_dir=None)
    digest = hashlib.sha256(mjb.tobytes())
    digest.update(f"{settings!r} v{GENERATOR_VERSION}".encode())
    return digest.hexdigest()[:32]


def generate_scene(mj_model: mujoco.MjModel, config: SceneConfig = SceneConfig()) -> GaussianScene:
    """Gaussians on every visible geom (group < 3, alpha > 0). Heightfields and SDF geoms are skipped."""
    data = mujoco.MjData(mj_model)
    mujoco.mj_forward(mj_model, data)  # geom poses at qpos0, for the baked lighting
    parts = []
    for geom in range(mj_model.ngeom):
        rgba = _geom_rgba(mj_model, geom)
        if mj_model.geom_group[geom] >= 3 or rgba[3] <= 0:
            continue
        rng = np.random.default_rng([config.seed, geom])
        sampled = _sample_geom(mj_model, geom, config, rng)
        if sampled is None:
            log.debug("geom %d (type %d) has no surface sampler; skipped", geom, mj_model.geom_type[geom])
            continue
        points, normals, spacing = sampled  # geom frame
        parts.append(_gaussians_for_geom(mj_model, data, geom, points, normals, spacing, rgba, config, rng))
    if not parts:
        raise ValueError("the model has no visible geoms to generate Gaussians from")
    return concat_scenes(parts)


def _geom_rgba(mj_model, geom) -> np.ndarray:
    rgba = np.array(mj_model.geom_rgba[geom], np.float64)
    mat = mj_model.geom_matid[geom]
    if mat >= 0 and np.allclose(rgba, _DEFAULT_RGBA):  # MuJoCo: an explicit geom rgba wins over the material
        rgba = np.array(mj_model.mat_rgba[mat], np.float64)
    return rgba


def _sample_geom(mj_model, geom, config: SceneConfig, rng):
    """(points [M, 3], outward normals [M, 3], spacing) on the geom's surface, in the geom's frame."""
    kind = mujoco.mjtGeom(int(mj_model.geom_type[geom]))  # numpy ints do not match enums with `in`
    size = np.array(mj_model.geom_size[geom], np.float64)

    def count(area: float, feature: float = math.inf) -> int:
        # Spacing at most a quarter of the geom's feature size (a cube's half-size, a capsule's radius) but
        # not below 3 mm, so small parts stay sharp when a wrist camera comes close without thousands of
        # Gaussians on a fingertip; the caps keep huge geoms affordable.
        spacing = max(0.25 * feature, _MIN_SPACING)
        wanted = max(area * config.density, area / spacing**2)
        return int(np.clip(round(wanted), config.min_per_geom, config.max_per_geom))

    if kind == _GT.mjGEOM_PLANE:
        hx = size[0] if size[0] > 0 else config.plane_extent
        hy = size[1] if size[1] > 0 else config.plane_extent
        n = count(4 * hx * hy)
        pts, nrm = _rectangle(np.zeros(3), np.array([hx, 0, 0]), np.array([0, hy, 0]), n, rng)
        return pts, nrm, math.sqrt(4 * hx * hy / n)
    if kind == _GT.mjGEOM_BOX:
        area = 8 * (size[0] * size[1] + size[1] * size[2] + size[0] * size[2])
        n = count(area, float(np.median(size)))  # a thin plate is sampled by its faces, not its edge
        pts, nrm = [], []
        for axis in range(3):
            u, v = (axis + 1) % 3, (axis + 2) % 3
            face_n = max(1, round(n * 4 * size[u] * size[v] / area))
            for sign in (1.0, -1.0):
                center = np.zeros(3)
                center[axis] = sign * size[axis]
                du, dv = np.zeros(3), np.zeros(3)
                du[u], dv[v] = size[u], size[v]
                p, q = _rectangle(center, du, dv, face_n, rng)
                pts.append(p)
                nrm.append(q * sign)
        pts, nrm = np.concatenate(pts), np.concatenate(nrm)
        return pts, nrm, math.sqrt(area / len(pts))
    if kind == _GT.mjGEOM_SPHERE:
        n = count(4 * math.pi * size[0] ** 2, size[0])
        d = _fibonacci_sphere(n)
        return size[0] * d, d, math.sqrt(4 * math.pi / n) * size[0]
    if kind == _GT.mjGEOM_ELLIPSOID:
        a, b, c = size
        p = 1.6075  # Knud Thomsen's approximation of the ellipsoid's area
        area = 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
        n = count(area, float(np.median(size)))
        d = _fibonacci_sphere(n)
        normals = d / size
        return d * size, normals / np.linalg.norm(normals, axis=1, keepdims=True), math.sqrt(area / n)
    if kind in (_GT.mjGEOM_CAPSULE, _GT.mjGEOM_CYLINDER):
        r, h = size[0], size[1]
        side_area = 2 * math.pi * r * 2 * h
        end_area = 4 * math.pi * r * r if kind == _GT.mjGEOM_CAPSULE else 2 * math.pi * r * r
        n = count(side_area + end_area, r)
        n_side = round(n * side_area / (side_area + end_area))
        pts, nrm = [], []
        if n_side > 0:
            p, q = _cylinder_side(r, h, n_side, rng)
            pts.append(p)
            nrm.append(q)
        n_end = max(2, n - n_side)
        if kind == _GT.mjGEOM_CAPSULE:
            d = _fibonacci_sphere(n_end)
            d = d[np.abs(d[:, 2]) > 1e-9]
            pts.append(r * d + np.sign(d[:, 2:3]) * np.array([0.0, 0.0, h]))
            nrm.append(d)
        else:
            for sign in (1.0, -1.0):
                disc = _disc(r, max(1, n_end // 2))
                pts.append(disc + np.array([0.0, 0.0, sign * h]))
                nrm.append(np.tile([0.0, 0.0, sign], (len(disc), 1)))
        pts, nrm = np.concatenate(pts), np.concatenate(nrm)
        return pts, nrm, math.sqrt((side_area + end_area) / len(pts))
    if kind == _GT.mjGEOM_MESH:
        mesh = mj_model.geom_dataid[geom]
        v0, nv = mj_model.mesh_vertadr[mesh], mj_model.mesh_vertnum[mesh]
        f0, nf = mj_model.mesh_faceadr[mesh], mj_model.mesh_facenum[mesh]
        verts = np.asarray(mj_model.mesh_vert[v0 : v0 + nv], np.float64)  # already in the geom's frame
        tri = verts[np.asarray(mj_model.mesh_face[f0 : f0 + nf])]  # [F, 3, 3]
        cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        areas = 0.5 * np.linalg.norm(cross, axis=1)
        keep = areas > 0
        tri, cross, areas = tri[keep], cross[keep], areas[keep]
        if len(tri) == 0:
            return None
        n = count(float(areas.sum()), float(np.ptp(verts, axis=0).min()) / 2)
        face = rng.choice(len(tri), size=n, p=areas / areas.sum())
        r1, r2 = rng.random(n), rng.random(n)
        s = np.sqrt(r1)
        bary = np.stack([1 - s, s * (1 - r2), s * r2], -1)
        pts = np.einsum("nk,nkj->nj", bary, tri[face])
        nrm = cross[face] / (2 * areas[face])[:, None]
        return pts, nrm, math.sqrt(float(areas.sum()) / n)
    return None  # heightfields, SDFs


def _rectangle(center, du, dv, n, rng):
    """n jittered-grid points on the rectangle center + [-1, 1] du + [-1, 1] dv; normal du x dv."""
    lu, lv = np.linalg.norm(du), np.linalg.norm(dv)
    nu = max(1, round(math.sqrt(n * lu / max(lv, 1e-9))))
    nv = max(1, round(n / nu))
    gu, gv = np.meshgrid((np.arange(nu) + 0.5) / nu, (np.arange(nv) + 0.5) / nv, indexing="ij")
    gu = gu.ravel() + rng.uniform(-0.3, 0.3, gu.size) / nu  # jitter breaks up grid aliasing
    gv = gv.ravel() + rng.uniform(-0.3, 0.3, gv.size) / nv
    pts = center + (2 * gu - 1)[:, None] * du + (2 * gv - 1)[:, None] * dv
    normal = np.cross(du, dv)
    return pts, np.tile(normal / np.linalg.norm(normal), (len(pts), 1))


def _fibonacci_sphere(n: int) -> np.ndarray:
    """n near-uniform unit vectors [n, 3]."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(np.clip(1 - z * z, 0, None))
    phi = i * _GOLDEN_ANGLE
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], -1)


def _disc(radius: float, n: int) -> np.ndarray:
    """n near-uniform points on a disc in the z = 0 plane (Vogel's sunflower)."""
    i = np.arange(n) + 0.5
    r = radius * np.sqrt(i / n)
    phi = i * _GOLDEN_ANGLE
    return np.stack([r * np.cos(phi), r * np.sin(phi), np.zeros(n)], -1)


def _cylinder_side(r, h, n, rng):
    n_theta = max(3, round(math.sqrt(n * 2 * math.pi * r / max(2 * h, 1e-9))))
    n_z = max(1, round(n / n_theta))
    theta, z = np.meshgrid(
        (np.arange(n_theta) + 0.5) / n_theta * 2 * math.pi, (np.arange(n_z) + 0.5) / n_z, indexing="ij"
    )
    theta = theta.ravel() + rng.uniform(-0.3, 0.3, theta.size) * 2 * math.pi / n_theta
    z = (2 * (z.ravel() + rng.uniform(-0.3, 0.3, z.size) / n_z) - 1) * h
    normals = np.stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)], -1)
    return normals * r + np.stack([0 * z, 0 * z, z], -1), normals


def _gaussians_for_geom(mj_model, data, geom, points, normals, spacing, rgba, config, rng) -> GaussianScene:
    n = len(points)
    geom_rot = quat_to_matrix(mj_model.geom_quat[geom])
    means = points @ geom_rot.T + mj_model.geom_pos[geom]  # geom frame -> body frame
    normals_body = normals @ geom_rot.T
    disc_quats = _quats_z_to(normals_body)  # each disc's thin axis along the surface normal
    # Discs a bit wider than the spacing overlap into a closed surface; thin along the normal.
    sigma = 0.6 * spacing
    log_scales = np.log(np.tile([sigma, sigma, max(0.1 * sigma, 5e-4)], (n, 1)))

    # Lighting baked at qpos0 (world normal), plus smooth and fine procedural texture in the body frame.
    world_normals = normals @ data.geom_xmat[geom].reshape(3, 3).T
    lambert = np.clip(world_normals @ _LIGHT_DIR, 0.0, 1.0)
    shade = 1.0 - config.shading + config.shading * (0.45 + 0.55 * lambert)
    freqs = rng.normal(0.0, 25.0, (4, 3))  # rad/m: blotches a few cm to a few dm wide
    phases = rng.uniform(0, 2 * math.pi, 4)
    smooth = np.sin(means @ freqs.T + phases).mean(axis=1) * 1.4  # roughly [-1, 1]
    fine = rng.uniform(-1.0, 1.0, n)
    variation = 1.0 + config.texture * (0.7 * smooth + 0.3 * fine)
    tint = 1.0 + 0.25 * config.texture * rng.uniform(-1.0, 1.0, (n, 3))  # slight hue noise
    rgb = np.clip(rgba[:3] * (shade * variation)[:, None] * tint, 0.0, 1.0)
    opacity = np.clip(config.opacity * rgba[3], 1e-4, 1 - 1e-4)
    return GaussianScene(
        means=means,
        quats=disc_quats,
        log_scales=log_scales,
        opacity_logits=np.full(n, math.log(opacity / (1 - opacity))),
        sh=rgb_to_sh_dc(rgb)[:, None, :],
        body_ids=np.full(n, mj_model.geom_bodyid[geom]),
    )


def _quats_z_to(normals: np.ndarray) -> np.ndarray:
    """wxyz quaternions [N, 4] rotating +z onto each unit normal (the shortest arc)."""
    z = np.array([0.0, 0.0, 1.0])
    dot = normals @ z
    axis = np.cross(np.broadcast_to(z, normals.shape), normals)
    q = np.concatenate([(1.0 + dot)[:, None], axis], axis=1)
    opposite = dot < -1 + 1e-9  # +z onto -z: any half turn about a horizontal axis
    q[opposite] = [0.0, 1.0, 0.0, 0.0]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q
