"""Record demonstrations into a robomimic-layout HDF5 file (serl_gs.demos.dataset), rendered as the policy sees them.

    python -m serl_gs.demos record --env serl_gs/PandaPickCube-v0 --obs_mode pixels --image_size 32 \
        --cameras front wrist --source scripted --successes 20 --out demos/pick_px32.hdf5
    python -m serl_gs.demos record --preset pick_pixels --out demos/pick.hdf5   # a preset's env (the nodes')
    python -m serl_gs.demos record --source keyboard --obs_mode pixels --out demos/mine.hdf5   # a window opens
    python -m serl_gs.demos record --help                                                     # every flag
    python -m serl_gs.demos info demos/pick_px32.hdf5

`record` takes the nodes' env flags, derived from the same `EnvSpec` (--env, --obs_mode, --image_size,
--cameras, --frame_stack, --action_repeat, --episode_length, --scene, --render_size, --depth, ...), and they must
be the learner's: the learner refuses a file recorded for another task, naming the difference.
Keyboard: arrows move x / y, W / S move z, space toggles the gripper, Esc stops (what was kept is written).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Literal


@dataclasses.dataclass(frozen=True)
class RecordOptions:
    """What `record` takes beside the env flags (serl_gs.demos.recorder.RecordConfig)."""

    out: str  # the HDF5 file to write
    source: Literal["scripted", "keyboard"] = "scripted"  # the task's scripted expert, or you at the keyboard
    successes: int = 20  # episodes to keep
    num_envs: int = 8  # envs stepped together (keyboard: 1)
    keep_failures: bool = False  # keep unsuccessful episodes too
    max_episodes: int = 0  # give up after this many finished episodes (0: 10 x successes)
    seed: int = 0


USAGE = "usage: python -m serl_gs.demos {record,info} ...  (record --help: its flags; info PATH: a file's contents)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__ + "\n" + USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "info":
            if len(rest) != 1:
                raise ValueError(f"info takes one path, got {rest!r}")
            from serl_gs.demos.dataset import describe

            d = describe(rest[0])
            print(f"{d.path}: {d.episodes} episodes, {d.transitions} transitions; task {d.task}; "
                  f"observations {d.obs}; actions [{d.action_dim}]")  # fmt: skip
            return 0
        if command == "record":
            return _record(rest)
        raise ValueError(f"unknown command {command!r}; {USAGE}")
    except (ValueError, FileNotFoundError) as e:  # bad flags (FlagError is a ValueError) or input: one line
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2


def _record(argv: list[str]) -> int:
    from serl_gs.demos.recorder import RecordConfig, record
    from serl_gs.demos.sources import KeyboardSource, ScriptedSource
    from serl_gs.nodes.cli import RenderOptions, configure_logging, parse_node_flags, set_render_threads
    from serl_gs.nodes.env_spec import EnvSpec
    from serl_gs.nodes.flags import Layout
    from serl_gs.nodes.presets import preset

    roots = {"record": RecordOptions, "env": EnvSpec(), "render": RenderOptions()}  # required flags first
    parsed = parse_node_flags(argv, roots, Layout(), prog="python -m serl_gs.demos record",
                              description="Record demonstrations (the env flags are the nodes').",
                              presets=lambda name: {"env": preset(name).actor.env})  # fmt: skip
    configure_logging("record", parsed["node"].verbosity)  # progress lines as "[record] kept 3/20 episodes ..."
    env, options = parsed["env"], RecordOptions(**parsed["record"])
    set_render_threads(parsed["render"].render_threads)
    num_envs = 1 if options.source == "keyboard" else options.num_envs
    config = RecordConfig(env=env, out=options.out, successes=options.successes, num_envs=num_envs,
                          keep_failures=options.keep_failures, max_episodes=options.max_episodes,
                          seed=options.seed)  # fmt: skip
    if options.source == "scripted":
        from serl_gs.demos.experts import expert_for

        source = ScriptedSource(expert_for(env.env), num_envs)
    else:
        _, action_dim = env.observation_spec()
        source = KeyboardSource(action_dim, title=f"serl_gs demo: {env.env}")
    result = record(config, source)
    return 0 if result.kept >= options.successes else 1


if __name__ == "__main__":
    sys.exit(main())
