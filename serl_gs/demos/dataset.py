"""Demonstration files: robomimic's HDF5 layout, read and written with h5py (no pickle anywhere).

    data/                         attrs: total (transitions), env_args (JSON: env_name, type, env_kwargs),
                                         serl_gs (JSON: format, task, frame_stack, obs, action_dim)
    data/demo_<i>/                attrs: num_samples (T), success, source
        obs/<key>                 [T, ...]   the observation each action was taken at
        next_obs/<key>            [T, ...]   the observation it led to
        actions                   [T, A] float32
        rewards                   [T] float32
        dones                     [T] uint8  (robomimic: 1 where the episode ended)
        terminated, truncated     [T] bool   (the split of dones that bootstrapping needs)
        interventions             [T] bool   (where a person / the scripted expert overrode the policy)

Why robomimic's layout: it is the one most robot-learning code already reads (robomimic, LeRobot's converters,
RLDS builders, HIL-SERL's tooling takes obs/actions/next_obs the same way), it is a single self-describing file
(h5py, `h5ls -r` shows it all), it holds uint8 images as plain datasets, and it needs no pickle. LeRobot's layout
(parquet + mp4 videos) would re-encode frames lossily, so demo frames would no longer equal the frames the policy
saw; exactness is what the replay's frame stacks need.

Observation keys are robomimic-style flat dataset names ("state", "pixels_front"); each dataset's attr `name`
keeps serl_gs's name ("pixels/front"). Frames are single frames per camera (as records carry them): the learner
rebuilds frame stacks from them as it does for online records, so a file does not depend on `frame_stack`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serl_gs.data.records import OBS_PREFIX, Records

FORMAT = 1


@dataclass
class Episode:
    """One episode as records carry it: T+1 observations (the first at reset) and T steps."""

    obs: dict[str, np.ndarray]  # name ("state", "pixels/front") -> [T+1, ...]
    action: np.ndarray  # [T, A] float32
    reward: np.ndarray  # [T] float32
    terminated: np.ndarray  # [T] bool
    truncated: np.ndarray  # [T] bool
    success: bool = False
    intervened: np.ndarray | None = None  # [T] bool
    source: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.action.shape[0])

    def records(self, env_index: int = 0) -> Records:
        """The episode's T+1 records (the first `is_first`), ready for `ReplayBuffer.insert`."""
        t = self.length
        a = self.action.shape[1]
        return {
            "env_index": np.full((t + 1,), env_index, np.int32),
            **{OBS_PREFIX + name: np.asarray(v) for name, v in self.obs.items()},
            "action": np.concatenate([np.zeros((1, a), np.float32), self.action.astype(np.float32)]),
            "reward": np.concatenate([np.zeros((1,), np.float32), self.reward.astype(np.float32)]),
            "terminated": np.concatenate([[False], self.terminated.astype(bool)]),
            "truncated": np.concatenate([[False], self.truncated.astype(bool)]),
            "is_first": np.concatenate([[True], np.zeros((t,), bool)]),
        }


def _dataset_name(obs_name: str) -> str:
    return obs_name.replace("/", "_")


def write_demos(
    path: str | Path,
    episodes: Sequence[Episode],
    *,
    task: Mapping[str, Any],
    env_kwargs: Mapping[str, Any] | None = None,
    frame_stack: int = 1,
) -> None:
    """Writes `episodes` to `path` (replaced whole: written beside, then renamed in)."""
    import h5py

    if not episodes:
        raise ValueError("no episodes to write")
    first = episodes[0]
    obs_spec = {name: [list(v.shape[1:]), v.dtype.name] for name, v in sorted(first.obs.items())}
    meta = {
        "format": FORMAT,
        "task": dict(task),
        "frame_stack": frame_stack,
        "obs": obs_spec,
        "action_dim": int(first.action.shape[1]),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        data.attrs["total"] = int(sum(e.length for e in episodes))
        env_args = {"env_name": task.get("env", ""), "type": "serl_gs", "env_kwargs": dict(env_kwargs or {})}
        data.attrs["env_args"] = json.dumps(env_args)
        data.attrs["serl_gs"] = json.dumps(meta)
        for i, ep in enumerate(episodes):
            if sorted(ep.obs) != sorted(first.obs):
                raise ValueError(f"episode {i} observes {sorted(ep.obs)}, episode 0 {sorted(first.obs)}")
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = ep.length
            g.attrs["success"] = bool(ep.success)
            g.attrs["source"] = ep.source
            for group_name, rows in (("obs", slice(0, -1)), ("next_obs", slice(1, None))):
                group = g.create_group(group_name)
                for name, values in sorted(ep.obs.items()):
                    ds = group.create_dataset(_dataset_name(name), data=np.asarray(values)[rows])
                    ds.attrs["name"] = name
            g.create_dataset("actions", data=ep.action.astype(np.float32))
            g.create_dataset("rewards", data=ep.reward.astype(np.float32))
            g.create_dataset("dones", data=(ep.terminated | ep.truncated).astype(np.uint8))
            g.create_dataset("terminated", data=ep.terminated.astype(bool))
            g.create_dataset("truncated", data=ep.truncated.astype(bool))
            intervened = ep.intervened if ep.intervened is not None else np.zeros((ep.length,), bool)
            g.create_dataset("interventions", data=intervened.astype(bool))
    tmp.replace(path)


@dataclass(frozen=True)
class DemoFile:
    """A demo file's description: what it was recorded for, and how much it holds."""

    path: Path
    task: dict[str, Any]
    obs: dict[str, tuple[tuple[int, ...], str]]  # name -> (shape, dtype) of single frames
    action_dim: int
    episodes: int
    transitions: int


def describe(path: str | Path) -> DemoFile:
    """Reads a file's attributes; ValueError naming the file when it is not a serl_gs demo file."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"demo file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            data = f["data"]
            meta = json.loads(data.attrs["serl_gs"])
            episodes = sum(1 for key in data if key.startswith("demo_"))
            total = int(data.attrs["total"])
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path} is not a serl_gs demo file (robomimic HDF5 with data.attrs['serl_gs']): {e}") from e
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has demo format {meta.get('format')!r}; this version reads format {FORMAT}")
    obs = {name: (tuple(int(d) for d in shape), dtype) for name, (shape, dtype) in meta["obs"].items()}
    return DemoFile(path, dict(meta["task"]), obs, int(meta["action_dim"]), episodes, total)


def check_against(
    demo: DemoFile,
    obs_spec: Mapping[str, Any],  # the learner's per-frame observation shapes (name -> ShapeDtypeStruct)
    action_dim: int,
    task: Mapping[str, Any],  # EnvSpec.task() of the learner
) -> None:
    """Raises ValueError in one line naming the first way `demo` differs from what the learner trains."""
    where = f"demo file {demo.path}"
    for key in ("env", "obs_mode", "action_repeat", "image_size", "cameras"):
        if demo.task.get(key) != task.get(key):
            raise ValueError(
                f"{where} was recorded with {key}={demo.task.get(key)!r}, the learner trains {key}={task.get(key)!r}"
            )
    mine = {name: (tuple(int(d) for d in s.shape), np.dtype(s.dtype).name) for name, s in obs_spec.items()}
    if sorted(demo.obs) != sorted(mine):
        raise ValueError(f"{where} observes {sorted(demo.obs)}, the learner observes {sorted(mine)}")
    for name, (shape, dtype) in sorted(mine.items()):
        if demo.obs[name] != (shape, dtype):
            got_shape, got_dtype = demo.obs[name]
            raise ValueError(
                f"{where}: observation {name!r} is {got_dtype}{list(got_shape)}, the learner expects "
                f"{dtype}{list(shape)}"
            )
    if demo.action_dim != action_dim:
        raise ValueError(f"{where} has actions of {demo.action_dim} dims, the learner's env {action_dim}")


def read_episodes(path: str | Path) -> Iterator[Episode]:
    """The file's episodes in order (demo_0, demo_1, ...)."""
    import h5py

    with h5py.File(path, "r") as f:
        data = f["data"]
        names = sorted((key for key in data if key.startswith("demo_")), key=lambda k: int(k.split("_")[1]))
        for key in names:
            g = data[key]
            obs = {}
            for ds_name, ds in g["obs"].items():
                name = str(ds.attrs.get("name", ds_name))
                obs[name] = np.concatenate([ds[...], g["next_obs"][ds_name][-1:]])
            yield Episode(
                obs=obs,
                action=g["actions"][...].astype(np.float32),
                reward=g["rewards"][...].astype(np.float32),
                terminated=g["terminated"][...].astype(bool),
                truncated=g["truncated"][...].astype(bool),
                success=bool(g.attrs.get("success", False)),
                intervened=g["interventions"][...].astype(bool) if "interventions" in g else None,
                source=str(g.attrs.get("source", "")),
            )


def load_checked(
    path: str | Path, obs_spec: Mapping[str, Any], action_dim: int, task: Mapping[str, Any]
) -> tuple[DemoFile, list[Episode]]:
    """`describe` + `check_against` + `read_episodes`: a file's episodes if it fits the learner, else ValueError."""
    demo = describe(path)
    check_against(demo, obs_spec, action_dim, task)
    return demo, list(read_episodes(path))
