"""Domain randomization: one frozen dataclass of ranges (`RandomizeConfig`, presets none | light | strong) and
the pure JAX draws of each env's values from its own key.

Every value an env gets is a function of its episode key (`State.info["rng"]`, set at reset and unchanged during
the episode) and nothing else, so:
- per-env values differ across envs (each env's key is its own) and repeat from the same key;
- both physics paths (MuJoCo C and MJX) and every render backend see the same values, since they are drawn here,
  in JAX, from the same keys (the render stage only applies them);
- a restored env (serl_gs.env_state) gets the values it had, and an autoreset draws new ones.
With `per_step=True` the visual values are redrawn every step from (key, step).

Visual values (applied inside the one batched render call, serl_gs.render.randomize):
- colour, per body group (background, table, robot, object) and env: an affine map of RGB composed of a hue
  rotation about the grey axis, a saturation blend with luma, a contrast stretch about mid-grey and a brightness
  gain; with probability `appearance_prob` the table and the background first take another appearance: a colour
  of `PALETTE` carrying the group's own texture (its luma variation). Affine maps of RGB act exactly on 3DGS
  colours: every SH band is mixed by the matrix and the offset goes to the DC term.
- cameras, per camera and env: a position offset (world frame), a small rotation (camera frame), a focal-length
  scale and a principal-point shift.
- image, per env: Gaussian blur of a random width and Gaussian pixel noise of a random level.
- object size, per env (once per episode, also with per_step): the object bodies' Gaussians scale about their
  body's origin by the same number the physics scales the bodies' geoms by (`object_scale`, its own stream).
- distractors, per env (once per episode): up to k copies of the object's Gaussians in PALETTE colours, placed
  and turned on the table near the object (`draw_distractors`); render only, the physics has no such bodies.
Physics values are drawn by `draw_physics` (serl_gs.physics_randomize applies them).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types

import jax
import jax.numpy as jnp

GROUPS = ("background", "table", "robot", "object")  # body groups: segmentation labels 0..3, in this order
LUMA = (0.299, 0.587, 0.114)
# Other appearances a table or a background may take (RGB in [0, 1]): woods, laminates, cloths, painted walls;
# none red, so the red cube of PandaPickCube stays visible.
MAX_DISTRACTORS = 8
DISTRACTOR_SPREAD = 0.2  # metres: a distractor's centre is within this of the object's rest position (x and y)
PALETTE = (
    (0.78, 0.64, 0.46),
    (0.45, 0.30, 0.20),
    (0.88, 0.88, 0.86),
    (0.35, 0.36, 0.38),
    (0.25, 0.45, 0.30),
    (0.30, 0.40, 0.60),
    (0.55, 0.55, 0.45),
)


@dataclasses.dataclass(frozen=True)
class RandomizeConfig:
    """Ranges of every randomized quantity; 0 turns one off. Each is drawn uniformly in [-r, r] (or [1-r, 1+r]
    for gains) per env from its key."""

    # colour, per body group
    brightness: float = 0.0  # gain in [1 - b, 1 + b]
    contrast: float = 0.0  # stretch about mid-grey in [1 - c, 1 + c]
    saturation: float = 0.0  # blend with luma in [1 - s, 1 + s]
    hue_deg: float = 0.0  # rotation about the grey axis in [-h, h] degrees
    appearance_prob: float = 0.0  # chance the table / background take a PALETTE appearance
    # cameras, per camera
    camera_position: float = 0.0  # metres per axis
    camera_rotation_deg: float = 0.0  # degrees per axis (camera frame)
    focal: float = 0.0  # focal length scale in [1 - f, 1 + f]
    principal_px: float = 0.0  # principal point shift in pixels per axis
    # image, per env
    blur_px: float = 0.0  # Gaussian blur sigma in [0, blur_px] pixels (kernel radius 2 * blur_px, at most 4)
    noise: float = 0.0  # pixel noise std in [0, noise] (colours in [0, 1])
    per_step: bool = False  # redraw the visual values every step (else once per episode)
    # scene, per env (render only, once per episode): up to k copies of the object in other colours (PALETTE),
    # standing on the table within DISTRACTOR_SPREAD of the object's rest position; the physics does not see them
    distractors: int = 0
    # physics, per env (serl_gs.physics_randomize)
    friction: float = 0.0  # sliding friction scale in [1 - f, 1 + f]
    object_mass: float = 0.0  # mass and inertia scale of the object bodies in [1 - m, 1 + m]
    actuator_gain: float = 0.0  # actuator gain (and position servos' bias) scale in [1 - g, 1 + g]
    latency_steps: int = 0  # the action applied is the one from k steps ago, k in {0, ..., latency_steps}
    # physics and render, per env: the object bodies' geoms (mass and inertia with them) and their Gaussians
    object_size: float = 0.0  # length scale about each object body's origin in [1 - s, 1 + s]

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "per_step":
                if not isinstance(v, bool):
                    raise ValueError(f"per_step must be a bool, got {v!r}")
                continue
            if f.name == "latency_steps":
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 16:
                    raise ValueError(f"latency_steps must be an int in [0, 16], got {v!r}")
                continue
            if f.name == "distractors":
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_DISTRACTORS:
                    raise ValueError(f"distractors must be an int in [0, {MAX_DISTRACTORS}], got {v!r}")
                continue
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{f.name} must be a finite number >= 0, got {v!r}")
        for name in ("brightness", "contrast", "saturation", "focal", "friction", "object_mass", "actuator_gain",
                     "object_size"):  # fmt: skip
            if getattr(self, name) >= 1:
                raise ValueError(
                    f"{name} must be < 1 (a scale in [1 - r, 1 + r] stays positive), got {getattr(self, name)}"
                )
        if self.appearance_prob > 1:
            raise ValueError(f"appearance_prob must be in [0, 1], got {self.appearance_prob}")
        if self.hue_deg > 180 or self.camera_rotation_deg > 30 or self.blur_px > 2:
            raise ValueError(
                f"hue_deg <= 180, camera_rotation_deg <= 30 and blur_px <= 2 are the ranges supported, got "
                f"{self.hue_deg}, {self.camera_rotation_deg}, {self.blur_px}"
            )

    @property
    def visual(self) -> bool:
        """Whether any visual quantity is randomized."""
        return any(getattr(self, n) > 0 for n in _VISUAL)

    @property
    def physics(self) -> bool:
        """Whether any physics quantity is randomized."""
        return any(getattr(self, n) > 0 for n in _PHYSICS)

    @property
    def physics_model(self) -> bool:
        """Whether model fields are randomized (friction, object mass and size, actuator gain; latency is not a
        field)."""
        return any(getattr(self, n) > 0 for n in _PHYSICS if n != "latency_steps")

    @property
    def active(self) -> bool:
        return self.visual or self.physics

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


_VISUAL = ("brightness", "contrast", "saturation", "hue_deg", "appearance_prob", "camera_position",
           "camera_rotation_deg", "focal", "principal_px", "blur_px", "noise", "object_size",
           "distractors")  # fmt: skip
_PHYSICS = ("friction", "object_mass", "actuator_gain", "latency_steps", "object_size")  # object_size: both kinds

PRESETS: dict[str, RandomizeConfig] = {
    "none": RandomizeConfig(),
    # What a calibrated lab rig still varies by: light changes, small camera bumps, sensor noise.
    "light": RandomizeConfig(
        brightness=0.1,
        contrast=0.1,
        saturation=0.1,
        hue_deg=4.0,
        camera_position=0.01,
        camera_rotation_deg=1.0,
        focal=0.02,
        principal_px=0.5,
        blur_px=0.5,
        noise=0.01,
        friction=0.1,
        object_mass=0.1,
        actuator_gain=0.05,
    ),  # fmt: skip
    # Squint / GaussGym-like ranges: other tables and walls, visibly moved cameras, soft focus, latency.
    "strong": RandomizeConfig(
        brightness=0.3,
        contrast=0.3,
        saturation=0.4,
        hue_deg=15.0,
        appearance_prob=0.5,
        camera_position=0.03,
        camera_rotation_deg=3.0,
        focal=0.06,
        principal_px=2.0,
        blur_px=1.0,
        noise=0.03,
        friction=0.3,
        object_mass=0.3,
        actuator_gain=0.15,
        latency_steps=1,
        object_size=0.15,
    ),  # fmt: skip
}


def resolve(randomize: str | RandomizeConfig | None) -> RandomizeConfig | None:
    """A preset name, a RandomizeConfig or None -> the config, or None when nothing is randomized."""
    if randomize is None:
        return None
    if isinstance(randomize, str):
        if randomize not in PRESETS:
            raise ValueError(f"unknown randomize preset {randomize!r}; presets: {sorted(PRESETS)}")
        randomize = PRESETS[randomize]
    if not isinstance(randomize, RandomizeConfig):
        raise ValueError(f"randomize must be a preset name, a RandomizeConfig or None, got {randomize!r}")
    return randomize if randomize.active else None


# ---- visual draws -------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class VisualDraw:
    """One row per rendered env: what the render stage applies (JAX arrays)."""

    colour_matrix: jax.Array  # [k, G, 3, 3] rgb' = M rgb + o, per body group
    colour_offset: jax.Array  # [k, G, 3]
    cam_offset: jax.Array  # [k, C, 3] world frame
    cam_rotation: jax.Array  # [k, C, 3, 3] applied in the camera frame: cam_xmat' = cam_xmat @ R
    focal_scale: jax.Array  # [k, C]
    principal_shift: jax.Array  # [k, C, 2] pixels
    blur_sigma: jax.Array  # [k] pixels
    noise_std: jax.Array  # [k]
    noise_seed: jax.Array  # [k] int32
    # [k] length scale of the object bodies' Gaussians (object_size), or None when sizes are not randomized
    object_scale: jax.Array | None = None
    # distractors (k = RandomizeConfig.distractors > 0, else None): [k, D, 2] metres from the object's rest position
    # (world x, y), [k, D] yaw in radians, [k, D] PALETTE index, [k, D] 1 where the copy is there this episode
    distractor_xy: jax.Array | None = None
    distractor_yaw: jax.Array | None = None
    distractor_colour: jax.Array | None = None
    distractor_visible: jax.Array | None = None


# Streams of an env's key, one per kind of value: adding a kind never changes the values of the others.
_STREAM = {"colour": 1, "camera": 2, "image": 3, "physics": 4, "size": 5, "distractors": 6}


def _spread(u: jax.Array, r) -> jax.Array:
    """Uniforms in [0, 1) -> [-r, r]."""
    return (2 * u - 1) * r


def _axis_angle(v: jax.Array) -> jax.Array:
    """Rotation matrices [..., 3, 3] of rotation vectors [..., 3] (Rodrigues)."""
    theta = jnp.linalg.norm(v, axis=-1)[..., None, None]
    safe = jnp.where(theta > 0, theta, 1.0)
    k = v / safe[..., 0]
    zero = jnp.zeros_like(k[..., 0])
    kx = jnp.stack(
        [jnp.stack([zero, -k[..., 2], k[..., 1]], -1), jnp.stack([k[..., 2], zero, -k[..., 0]], -1),
         jnp.stack([-k[..., 1], k[..., 0], zero], -1)], -2,
    )  # fmt: skip
    eye = jnp.eye(3, dtype=v.dtype)
    return eye + jnp.sin(theta) * kx + (1 - jnp.cos(theta)) * (kx @ kx)


def _colour_maps(c: RandomizeConfig, u: jax.Array, group_luma: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(M [G, 3, 3], o [G, 3]) for one env from its colour uniforms u [6, G]."""
    g = len(GROUPS)
    gain, stretch, sat = 1 + _spread(u[0], c.brightness), 1 + _spread(u[1], c.contrast), 1 + _spread(u[2], c.saturation)
    hue = jnp.deg2rad(_spread(u[3], c.hue_deg))
    luma = jnp.asarray(LUMA, jnp.float32)
    eye = jnp.eye(3, dtype=jnp.float32)
    rotate = _axis_angle(jnp.full((g, 3), 1 / math.sqrt(3), jnp.float32) * hue[:, None])  # about the grey axis
    saturate = sat[:, None, None] * eye + (1 - sat)[:, None, None] * jnp.ones((3, 1)) * luma[None, :]
    m = (gain * stretch)[:, None, None] * (saturate @ rotate)
    o = jnp.broadcast_to((gain * 0.5 * (1 - stretch))[:, None], (g, 3))
    # Another appearance for the table and the background: a palette colour times the Gaussian's relative luma.
    palette = jnp.asarray(PALETTE, jnp.float32)
    pick = jnp.minimum((u[4] * len(PALETTE)).astype(jnp.int32), len(PALETTE) - 1)
    swap = (u[5] < c.appearance_prob) & (jnp.arange(g) < 2)
    recolour = palette[pick][:, :, None] * luma[None, None, :] / jnp.maximum(group_luma, 1e-3)[:, None, None]
    m = jnp.where(swap[:, None, None], m @ recolour, m)
    return m, o


def draw_visual(c: RandomizeConfig, keys: jax.Array, steps: jax.Array, num_cameras: int, group_luma) -> VisualDraw:
    """Visual values of k rendered envs from their episode keys [k, 2] (and steps [k], with per_step).
    The ranges enter as numbers, so every config shares one compiled program."""
    ranges = {n: jnp.float32(getattr(c, n)) for n in _VISUAL}
    program = _draw_visual_program(c.per_step, num_cameras, c.object_size > 0, c.distractors)
    return program(jnp.asarray(keys), jnp.asarray(steps), jnp.asarray(group_luma, jnp.float32), ranges)


def stream_uniforms(key: jax.Array, stream: str, n: int) -> jax.Array:
    """n uniforms in [0, 1) of one stream of an env's key: one counter-based draw (cheap to compile)."""
    return jax.random.uniform(jax.random.fold_in(key, _STREAM[stream]), (n,), jnp.float32)


def object_scale(key: jax.Array, object_size) -> jax.Array:
    """One env's object length scale [] from its episode key: drawn once per episode (never per step, since the
    physics holds it for the episode), the same number for the physics paths and the renderer."""
    return 1 + _spread(stream_uniforms(key, "size", 1)[0], object_size)


def draw_distractors(key: jax.Array, count: int) -> dict[str, jax.Array]:
    """One env's `count` distractor slots from its episode key: each slot's place, yaw and colour, and how many
    of them stand this episode (uniform in 0..count; the first ones)."""
    u = stream_uniforms(key, "distractors", 4 * count + 1)
    there = jnp.minimum((u[-1] * (count + 1)).astype(jnp.int32), count)
    u = u[:-1].reshape(count, 4)
    return {
        "distractor_xy": _spread(u[:, 0:2], DISTRACTOR_SPREAD),
        "distractor_yaw": _spread(u[:, 2], math.pi),
        "distractor_colour": jnp.minimum((u[:, 3] * len(PALETTE)).astype(jnp.int32), len(PALETTE) - 1),
        "distractor_visible": (jnp.arange(count) < there).astype(jnp.float32),
    }


@functools.lru_cache(maxsize=16)
def _draw_visual_program(per_step: bool, num_cameras: int, sized: bool, distractors: int):
    g, cams = len(GROUPS), num_cameras

    def one(key, step, group_luma, ranges):
        c = types.SimpleNamespace(**ranges)
        # Drawn from the episode's key, before any per-step fold: the scene's objects hold for the episode.
        scale = object_scale(key, c.object_size) if sized else None
        scene = draw_distractors(key, distractors) if distractors else {}
        if per_step:
            key = jax.random.fold_in(key, step)
        m, o = _colour_maps(c, stream_uniforms(key, "colour", 6 * g).reshape(6, g), group_luma)
        u = stream_uniforms(key, "camera", 9 * cams).reshape(cams, 9)
        im = stream_uniforms(key, "image", 3)
        return VisualDraw(
            colour_matrix=m,
            colour_offset=o,
            cam_offset=_spread(u[:, 0:3], c.camera_position),
            cam_rotation=_axis_angle(jnp.deg2rad(_spread(u[:, 3:6], c.camera_rotation_deg))),
            focal_scale=1 + _spread(u[:, 6], c.focal),
            principal_shift=_spread(u[:, 7:9], c.principal_px),
            blur_sigma=im[0] * c.blur_px,
            noise_std=im[1] * c.noise,
            noise_seed=(im[2] * (1 << 24)).astype(jnp.int32),
            object_scale=scale,
            **scene,
        )

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)))


jax.tree_util.register_dataclass(
    VisualDraw, data_fields=[f.name for f in dataclasses.fields(VisualDraw)], meta_fields=[]
)


# ---- physics draws ------------------------------------------------------------------------------------------
def draw_physics(c: RandomizeConfig, key: jax.Array) -> dict[str, jax.Array]:
    """One env's physics values from its episode key [2] (vmappable): scales of friction, object mass and
    actuator gain and object size (float32 []), and its action latency in steps (int32 [])."""
    u = stream_uniforms(key, "physics", 4)
    return {
        "object_size": object_scale(key, c.object_size),
        "friction": 1 + _spread(u[0], c.friction),
        "object_mass": 1 + _spread(u[1], c.object_mass),
        "actuator_gain": 1 + _spread(u[2], c.actuator_gain),
        "latency": jnp.minimum((u[3] * (c.latency_steps + 1)).astype(jnp.int32), c.latency_steps),
    }


# ---- held-out shifts (eval only) ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ShiftConfig:
    """One fixed change of what every env sees, for evaluating a policy outside the ranges it trained in (the
    robustness experiment of docs/sim2real.md): the same values in every env and every step, applied by the
    render stage like a randomization draw (after it, when both are on)."""

    camera_position: tuple[float, float, float] = (0.0, 0.0, 0.0)  # metres, world frame, every camera
    camera_rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # degrees about the camera's own axes
    brightness: float = 1.0  # gain on every body group's colours
    hue_deg: float = 0.0  # rotation about the grey axis, every group
    background: tuple[float, float, float] | None = None  # RGB the table and background take (texture kept)

    def __post_init__(self):
        for name in ("camera_position", "camera_rotation_deg", "background"):
            v = getattr(self, name)
            if v is None and name == "background":
                continue
            if len(v) != 3 or not all(isinstance(x, int | float) and math.isfinite(x) for x in v):
                raise ValueError(f"{name} must be 3 finite numbers, got {v!r}")
        if not 0 < self.brightness <= 4:
            raise ValueError(f"brightness must be a gain in (0, 4], got {self.brightness!r}")
        if not -180 <= self.hue_deg <= 180 or max(map(abs, self.camera_rotation_deg)) > 30:
            raise ValueError(f"hue_deg must be in [-180, 180] and camera_rotation_deg in [-30, 30], got "
                             f"{self.hue_deg!r}, {self.camera_rotation_deg!r}")  # fmt: skip
        if self.background is not None and not all(0 <= x <= 1 for x in self.background):
            raise ValueError(f"background must be RGB in [0, 1], got {self.background!r}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# Each shift lies outside the `strong` preset's ranges (tested): a camera moved 25 cm and turned 6 degrees
# (strong: 3 cm, 3 degrees), light at 0.55 of its level turned 35 degrees in hue (strong: 0.7-1.3, 15 degrees),
# and a purple wall and table (no PALETTE colour is purple).
SHIFTS: dict[str, ShiftConfig | None] = {
    "none": None,
    "camera": ShiftConfig(camera_position=(0.25, 0.0, 0.15), camera_rotation_deg=(6.0, 0.0, 0.0)),
    "lighting": ShiftConfig(brightness=0.55, hue_deg=35.0),
    "background": ShiftConfig(background=(0.55, 0.25, 0.65)),
}


def resolve_shift(shift: str | ShiftConfig | None) -> ShiftConfig | None:
    """A shift name (SHIFTS), a ShiftConfig or None -> the config, or None for no shift."""
    if isinstance(shift, str):
        if shift not in SHIFTS:
            raise ValueError(f"unknown shift {shift!r}; shifts: {sorted(SHIFTS)}")
        return SHIFTS[shift]
    if shift is not None and not isinstance(shift, ShiftConfig):
        raise ValueError(f"shift must be a name in {sorted(SHIFTS)}, a ShiftConfig or None, got {shift!r}")
    return shift


def shift_draw(s: ShiftConfig, rows: int, num_cameras: int, group_luma) -> VisualDraw:
    """The VisualDraw of a shift: the same values in each of `rows` rows."""
    g = len(GROUPS)
    luma = jnp.asarray(LUMA, jnp.float32)
    hue = jnp.full((g, 3), 1 / math.sqrt(3), jnp.float32) * math.radians(s.hue_deg)
    m = s.brightness * _axis_angle(hue)  # [G, 3, 3]
    if s.background is not None:  # table and background: the colour times each Gaussian's relative luma
        lum = jnp.maximum(jnp.asarray(group_luma, jnp.float32), 1e-3)
        recolour = jnp.asarray(s.background, jnp.float32)[None, :, None] * luma[None, None, :] / lum[:, None, None]
        m = jnp.where((jnp.arange(g) < 2)[:, None, None], m @ recolour, m)
    rotation = _axis_angle(jnp.deg2rad(jnp.asarray(s.camera_rotation_deg, jnp.float32)))
    one = VisualDraw(
        colour_matrix=m,
        colour_offset=jnp.zeros((g, 3), jnp.float32),
        cam_offset=jnp.broadcast_to(jnp.asarray(s.camera_position, jnp.float32), (num_cameras, 3)),
        cam_rotation=jnp.broadcast_to(rotation, (num_cameras, 3, 3)),
        focal_scale=jnp.ones((num_cameras,), jnp.float32),
        principal_shift=jnp.zeros((num_cameras, 2), jnp.float32),
        blur_sigma=jnp.float32(0),
        noise_std=jnp.float32(0),
        noise_seed=jnp.int32(0),
    )
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (rows, *x.shape)), one)


def then_shift(draw: VisualDraw, shift: VisualDraw) -> VisualDraw:
    """A randomization draw followed by a shift: colours rgb'' = Ms (Mr rgb + or) + os, camera offsets add and
    rotations compose (the shift's in the randomized camera's frame); intrinsics and image values stay the draw's."""
    m = shift.colour_matrix @ draw.colour_matrix
    o = jnp.einsum("kgij,kgj->kgi", shift.colour_matrix, draw.colour_offset) + shift.colour_offset
    return dataclasses.replace(
        draw,
        colour_matrix=m,
        colour_offset=o,
        cam_offset=draw.cam_offset + shift.cam_offset,
        cam_rotation=draw.cam_rotation @ shift.cam_rotation,
    )
