"""Records: one per env per step, the unit that actors send and the replay stores.

A record holds one observation and the action / reward / done flags that *led to* it (ignored when
`is_first`). Records travel as a flat dict of numpy arrays sharing a leading dim `n`:

    "env_index"           int32   [n]
    "obs/state"           float32 [n, d]
    "obs/pixels/<camera>" uint8   [n, H, W, 3]      (optional, any number of cameras)
    "action"              float32 [n, A]
    "reward"              float32 [n]
    "terminated"          bool    [n]
    "truncated"           bool    [n]
    "is_first"            bool    [n]
    "extras/<name>"       numeric [n, ...]      (optional: per-record values the actor adds, e.g. episode return)

Extras ride along for the learner's logs (episode return so far, success at episode ends); the replay does not
store them. `with_extras` adds them to a step's records, `split_extras` takes them out again.

Pairing (done by the replay): a transition is (obs of the previous record of the same (actor, env) stream,
action, reward, terminated, obs of this record), valid when this record is not `is_first`. At an episode end
the record carries the true final obs, and the stream's next record is the new episode's first obs.

`reset_records` and `step_records` turn a gymnasium vector env's reset and same-step-autoreset step
into records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

OBS_PREFIX = "obs/"
PIXELS_PREFIX = "pixels/"
DEPTH_PREFIX = "depth/"  # uint16 millimetres [H, W, 1] per camera (0: nothing drawn)
SEGMENTATION_PREFIX = "segmentation/"  # uint8 body group [H, W, 1] per camera (serl_gs.randomize.GROUPS)
EXTRAS_PREFIX = "extras/"
# Camera images, channels last, stored and sent in these compact dtypes; frame stacks stack their channels.
IMAGE_DTYPES = {PIXELS_PREFIX: np.dtype(np.uint8), DEPTH_PREFIX: np.dtype(np.uint16),
                SEGMENTATION_PREFIX: np.dtype(np.uint8)}  # fmt: skip
IMAGE_CHANNELS = {PIXELS_PREFIX: 3, DEPTH_PREFIX: 1, SEGMENTATION_PREFIX: 1}


def image_prefix(name: str) -> str | None:
    """The image prefix of an observation name ("pixels/", "depth/", "segmentation/"), or None for a vector."""
    return next((p for p in IMAGE_DTYPES if name.startswith(p)), None)


def is_image(name: str) -> bool:
    return image_prefix(name) is not None

# Every record dict has these keys besides its "obs/..." ones; dtype and the number of dims after `n`.
_FIXED_FIELDS: dict[str, tuple[np.dtype, int]] = {
    "env_index": (np.dtype(np.int32), 0),
    "action": (np.dtype(np.float32), 1),
    "reward": (np.dtype(np.float32), 0),
    "terminated": (np.dtype(np.bool_), 0),
    "truncated": (np.dtype(np.bool_), 0),
    "is_first": (np.dtype(np.bool_), 0),
}

Records = dict[str, np.ndarray]


@dataclass(frozen=True)
class RecordSpec:
    """Shapes and dtypes of one record (no leading dim): what a replay is built for.

    `obs` maps observation names without the "obs/" prefix ("state", "pixels/front") to (shape, dtype).
    """

    obs: tuple[tuple[str, tuple[int, ...], str], ...]
    action_dim: int

    @classmethod
    def from_records(cls, records: Mapping[str, np.ndarray]) -> RecordSpec:
        n = validate_records(records)
        if n == 0:
            raise ValueError("cannot infer a RecordSpec from an empty message (n = 0)")
        obs = tuple(
            (key[len(OBS_PREFIX) :], tuple(int(s) for s in value.shape[1:]), np.dtype(value.dtype).name)
            for key, value in sorted(records.items())
            if key.startswith(OBS_PREFIX)
        )
        return cls(obs=obs, action_dim=int(records["action"].shape[1]))

    @property
    def obs_names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.obs)

    def obs_shape(self, name: str) -> tuple[int, ...]:
        for obs_name, shape, _ in self.obs:
            if obs_name == name:
                return shape
        raise ValueError(f"unknown observation {name!r}; this spec has {self.obs_names}")

    def describe(self) -> str:
        """The record schema in one line, in `describe_records`' format, so the two can be compared by eye."""
        fields = {
            key: f"{dtype.name}{_dims([self.action_dim] if key == 'action' else [])}"
            for key, (dtype, _) in _FIXED_FIELDS.items()
        }
        fields.update({OBS_PREFIX + name: f"{dtype}{_dims(shape)}" for name, shape, dtype in self.obs})
        return _format_fields(fields)

    def check(self, records: Mapping[str, np.ndarray]) -> int:
        """Validates `records` against this spec; returns n. Raises ValueError naming what differs."""
        n = validate_records(records)
        got_obs = sorted(k[len(OBS_PREFIX) :] for k in records if k.startswith(OBS_PREFIX))
        if got_obs != sorted(self.obs_names):
            raise ValueError(
                f"records have observations {got_obs}, the replay expects {sorted(self.obs_names)}"
            )
        for name, shape, dtype in self.obs:
            value = records[OBS_PREFIX + name]
            if value.shape[1:] != shape or value.dtype != np.dtype(dtype):
                raise ValueError(
                    f"records[{OBS_PREFIX + name!r}] is {value.dtype}{list(value.shape[1:])} per record, "
                    f"expected {dtype}{list(shape)}"
                )
        if records["action"].shape[1] != self.action_dim:
            raise ValueError(f"action dim {records['action'].shape[1]} != expected {self.action_dim}")
        return n


def _dims(shape) -> str:
    return f"[{','.join(str(int(d)) for d in shape)}]" if len(shape) else ""


def _format_fields(fields: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{key}: {fields[key]}" for key in sorted(fields)) + "}"


def describe_records(records: Mapping[str, Any]) -> str:
    """A record dict's schema in one line, per record (without the leading dim n; extras left out):
    "{action: float32[1], env_index: int32, ..., obs/state: float32[5], ...}". Safe on any mapping."""
    fields = {}
    for key, value in records.items():
        if str(key).startswith(EXTRAS_PREFIX):
            continue
        if isinstance(value, np.ndarray) and value.ndim >= 1:
            fields[str(key)] = f"{value.dtype.name}{_dims(value.shape[1:])}"
        else:
            fields[str(key)] = type(value).__name__
    return _format_fields(fields)


def check_finite(records: Mapping[str, np.ndarray]) -> None:
    """Raises ValueError naming the first float field holding NaN or inf (they would poison every update)."""
    for key, value in records.items():
        if not key.startswith(EXTRAS_PREFIX) and value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(f"records[{key!r}] holds NaN or inf")


def validate_records(records: Mapping[str, np.ndarray]) -> int:
    """Checks keys, dtypes and the shared leading dim of a record dict; returns n."""
    if not isinstance(records, Mapping):
        raise ValueError(f"records must be a mapping of name -> numpy array, got {type(records).__name__}")
    missing = [k for k in _FIXED_FIELDS if k not in records]
    if missing:
        raise ValueError(f"records lack {missing}; got keys {sorted(records)}")
    unknown = [k for k in records if k not in _FIXED_FIELDS and not k.startswith((OBS_PREFIX, EXTRAS_PREFIX))]
    if unknown:
        raise ValueError(
            f"unknown record keys {unknown}; observation keys start with {OBS_PREFIX!r}, extras with "
            f"{EXTRAS_PREFIX!r}"
        )
    if not any(k.startswith(OBS_PREFIX) for k in records):
        raise ValueError("records hold no observation (no key starts with 'obs/')")
    n = None
    for key, value in records.items():
        if not isinstance(value, np.ndarray):
            raise ValueError(f"records[{key!r}] must be a numpy array, got {type(value).__name__}")
        if value.ndim == 0:
            raise ValueError(f"records[{key!r}] is a scalar; every field has a leading dim n")
        if n is None:
            n = value.shape[0]
        elif value.shape[0] != n:
            raise ValueError(f"records[{key!r}] has leading dim {value.shape[0]}, others have {n}")
        if key in _FIXED_FIELDS:
            dtype, extra_dims = _FIXED_FIELDS[key]
            if value.dtype != dtype or value.ndim != 1 + extra_dims:
                raise ValueError(
                    f"records[{key!r}] is {value.dtype} with {value.ndim} dims, "
                    f"expected {dtype} with {1 + extra_dims}"
                )
        elif key.startswith(EXTRAS_PREFIX):
            if value.dtype.kind not in "biuf":
                raise ValueError(f"records[{key!r}] is {value.dtype}; extras must be numeric or bool")
        elif (prefix := image_prefix(key[len(OBS_PREFIX) :])) is not None and (
            value.dtype != IMAGE_DTYPES[prefix] or value.ndim != 4 or value.shape[-1] != IMAGE_CHANNELS[prefix]
        ):
            shape, want = list(value.shape), f"{IMAGE_DTYPES[prefix]} [n, H, W, {IMAGE_CHANNELS[prefix]}]"
            raise ValueError(f"records[{key!r}] is {value.dtype}{shape}, expected {want}")
    if n is not None and n > 0 and records["env_index"].min() < 0:
        raise ValueError(f"negative env_index {int(records['env_index'].min())}")
    return int(n)


def _to_numpy(x: Any) -> np.ndarray:
    return np.asarray(x)  # JAX (device -> host copy) or numpy arrays alike


def _obs_fields(obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if not isinstance(obs, Mapping):
        raise ValueError(f"vector env obs must be a dict of arrays, got {type(obs).__name__}")
    fields = {}
    for name, value in obs.items():
        array = _to_numpy(value)
        prefix = image_prefix(name)
        array = array.astype(IMAGE_DTYPES[prefix] if prefix else np.float32, copy=False)
        fields[OBS_PREFIX + name] = array
    return fields


def reset_records(obs: Mapping[str, Any], action_dim: int) -> Records:
    """Records for `vec.reset()`: every env starts a stream with its first obs (`is_first`)."""
    fields = _obs_fields(obs)
    n = next(iter(fields.values())).shape[0]
    records = {
        "env_index": np.arange(n, dtype=np.int32),
        **fields,
        "action": np.zeros((n, action_dim), np.float32),
        "reward": np.zeros((n,), np.float32),
        "terminated": np.zeros((n,), bool),
        "truncated": np.zeros((n,), bool),
        "is_first": np.ones((n,), bool),
    }
    validate_records(records)
    return records


def step_records(
    obs: Mapping[str, Any],  # each [N, ...]: after same-step autoreset, the new episode's obs where done
    action: Any,  # [N, A] float32: the actions that were stepped
    reward: Any,  # [N] float32
    terminated: Any,  # [N] bool
    truncated: Any,  # [N] bool
    infos: Mapping[str, Any],  # with "final_obs" (dict like obs) and "_final_obs" [N] bool where an env ended
) -> Records:
    """Records for one same-step-autoreset `vec.step(action)`.

    Rows 0..N-1: env i's record for this step; its obs is the true final obs where env i ended.
    Then one extra `is_first` record per ended env with the new episode's first obs, after its final record,
    so the order within each stream is kept.
    """
    fields = _obs_fields(obs)
    action = _to_numpy(action).astype(np.float32, copy=False)
    reward = _to_numpy(reward).astype(np.float32, copy=False)
    terminated = _to_numpy(terminated).astype(bool, copy=False)
    truncated = _to_numpy(truncated).astype(bool, copy=False)
    n = action.shape[0]
    if action.ndim != 2:
        raise ValueError(f"action must be [N, A], got shape {action.shape}")
    for name, value in (("reward", reward), ("terminated", terminated), ("truncated", truncated)):
        if value.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {value.shape}")
    ended = terminated | truncated
    if ended.any():
        if "final_obs" not in infos or "_final_obs" not in infos:
            raise ValueError(
                "envs ended this step but infos has no 'final_obs' / '_final_obs' (same-step autoreset)"
            )
        mask = _to_numpy(infos["_final_obs"]).astype(bool, copy=False)
        if mask.shape != (n,) or not np.array_equal(mask, ended):
            raise ValueError(
                f"infos['_final_obs'] {np.flatnonzero(mask).tolist()} disagrees with the envs that ended "
                f"{np.flatnonzero(ended).tolist()}"
            )
        final = _obs_fields(infos["final_obs"])
        if final.keys() != fields.keys():
            raise ValueError(f"final_obs keys {sorted(final)} differ from obs keys {sorted(fields)}")
    ended_idx = np.flatnonzero(ended)
    k = ended_idx.size

    records: Records = {"env_index": np.concatenate([np.arange(n), ended_idx]).astype(np.int32)}
    for key, value in fields.items():
        this_step = value.copy()
        if k:
            this_step[ended_idx] = final[key][ended_idx]
        records[key] = np.concatenate([this_step, value[ended_idx]])
    records["action"] = np.concatenate([action, np.zeros((k, action.shape[1]), np.float32)])
    records["reward"] = np.concatenate([reward, np.zeros((k,), np.float32)])
    records["terminated"] = np.concatenate([terminated, np.zeros((k,), bool)])
    records["truncated"] = np.concatenate([truncated, np.zeros((k,), bool)])
    records["is_first"] = np.concatenate([np.zeros((n,), bool), np.ones((k,), bool)])
    validate_records(records)
    return records


def with_extras(records: Records, num_envs: int, extras: Mapping[str, Any]) -> Records:
    """Adds per-env `extras` ({name: [num_envs, ...]}, None values skipped) to `step_records`' output as
    "extras/<name>": rows 0..N-1 are env i's, the extra `is_first` rows of new episodes get zeros."""
    n = len(records["env_index"])
    out = dict(records)
    for name, values in extras.items():
        if values is None:
            continue
        values = _to_numpy(values)
        if values.shape[:1] != (num_envs,):
            raise ValueError(f"extra {name!r} must have a leading dim of {num_envs} envs, got shape {values.shape}")
        pad = np.zeros((n - num_envs, *values.shape[1:]), values.dtype)
        out[EXTRAS_PREFIX + name] = np.concatenate([values, pad])
    validate_records(out)
    return out


def split_extras(records: Mapping[str, np.ndarray]) -> tuple[Records, dict[str, np.ndarray]]:
    """(the contract's fields, {name: extra}) of a record dict."""
    fields, extras = {}, {}
    for key, value in records.items():
        if key.startswith(EXTRAS_PREFIX):
            extras[key[len(EXTRAS_PREFIX) :]] = value
        else:
            fields[key] = value
    return fields, extras
