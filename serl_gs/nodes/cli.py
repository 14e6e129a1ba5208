"""Entry-point plumbing shared by the node mains: absl flags, and bad input as a one-line error."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any


def run(main: Callable[[list[str]], None], define_flags: Callable[[], None]) -> None:
    """Runs `main` under absl; a ValueError or a missing file exits with status 2 and a message naming it.

    First, before JAX starts its threads: freed memory stays in the process where JAX runs on the CPU
    (serl_gs.cpu_memory; on XLA:CPU a pixel update otherwise page-faults through hundreds of MB per call)."""
    from absl import app, flags

    apply_cpu_tuning()

    define_flags()
    if any(arg in ("-h", "--help", "--helpshort") for arg in sys.argv[1:]):
        # absl exits with status 1 after help; asking for help is not an error.
        main_module = sys.modules["__main__"]
        print((main_module.__doc__ or "").strip() + "\n")
        print(flags.FLAGS.main_module_help())
        shared = flags.FLAGS.flags_by_module_dict().get(__name__)
        if shared:  # the env flags, defined here for every node
            print(flags.FLAGS.module_help(__name__))
        sys.exit(0)

    def guarded(argv: list[str]) -> None:
        from absl import logging

        from serl_gs.transport.errors import AddressInUse, BatchRejected, ProtocolMismatch, TransportError

        # Users see our lines only: libraries (orbax) log every save at INFO and every read-only open at
        # WARNING. absl's own --verbosity (e.g. --verbosity=-1 for warnings, 0 for info) asks for more.
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.ERROR)
        try:
            main(argv)
        except (ValueError, FileNotFoundError, AddressInUse, BatchRejected, ProtocolMismatch) as e:
            # Bad input, a taken port, or a learner that refuses this node (another task or version).
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        except TransportError as e:  # the transport cannot go on (e.g. its I/O thread failed): still one line
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(1)

    app.run(guarded)


def apply_cpu_tuning() -> bool:
    """serl_gs.cpu_memory's `keep_freed_memory` where JAX will run on the CPU only (decided before JAX starts):
    on a GPU node XLA's buffers live on the device, and the process would only keep its host peak for nothing.
    Returns whether it was applied."""
    from serl_gs.cpu_memory import keep_freed_memory
    from serl_gs.gpu_paths import jax_may_use_gpu

    if jax_may_use_gpu():
        return False
    return keep_freed_memory()


def stop_on_signals() -> threading.Event:
    """An event set by Ctrl-C or SIGTERM, so a node's loop ends cleanly (final checkpoint, flushed sends)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def define_env_flags() -> None:
    """The flags that say which env and observations a node works with (they must match across nodes)."""
    from absl import flags

    flags.DEFINE_string("env", "serl_gs/PandaPickCube-v0", "Registered env id (the same on every node).")
    flags.DEFINE_enum("obs_mode", "state", ["state", "pixels"], "State observations, or pixels (+ proprio state).")
    flags.DEFINE_integer("image_size", 64, "Square image side for pixel observations.")
    flags.DEFINE_string("cameras", "", "Comma-separated MJCF camera names (pixels); empty = all cameras.")
    flags.DEFINE_integer("episode_length", 0, "Override the task's episode length (0 = the task's default).")
    flags.DEFINE_integer("action_repeat", 0, "Control steps per env step, one action each (0 = the task's default).")
    flags.DEFINE_integer("frame_stack", 1, "Frames per camera in the policy's observation (pixels; DrQ: 3).")
    flags.DEFINE_integer("render_size", 0, "Pixels: rasterize at this side, area-downsample to --image_size (0: off).")
    flags.DEFINE_string("scene", "", "A scene manifest (JSON) of captures bound to bodies, or a .ply; empty: generated")
    flags.DEFINE_enum("randomize", "none", ["none", "light", "strong"], "Randomization preset (docs/sim2real.md).")
    flags.DEFINE_bool("depth", False, "Pixels: add depth/<camera> (uint16 mm; the encoder takes RGB-D).")
    flags.DEFINE_bool("segmentation", False, "Pixels: add segmentation/<camera> (uint8 body group), stored.")


def env_spec_from_flags(**overrides: Any):
    """The EnvSpec the env flags describe; `overrides` set the fields a node decides itself."""
    from absl import flags

    from serl_gs.nodes.env_spec import EnvSpec

    f = flags.FLAGS
    fields = dict(
        env=f.env,
        obs_mode=f.obs_mode,
        image_size=f.image_size,
        cameras=tuple(c for c in f.cameras.split(",") if c),
        episode_length=f.episode_length or None,
        action_repeat=f.action_repeat or None,
        frame_stack=f.frame_stack,
        render_size=f.render_size or None,
        scene=f.scene or None,
        randomize=f.randomize,
        depth=f.depth,
        segmentation=f.segmentation,
    )
    return EnvSpec(**{**fields, **overrides})


def set_render_threads(threads: int) -> None:
    """Torch's CPU threads for the reference renderer (0 = torch's default). One thread by default: on a machine
    that also runs the learner (or other work) torch's OpenMP threads spin-wait for each other; measured on a
    shared 2-core machine, 16 cartpole frames rendered in 1.7-4.4 s with 1 thread, 11-27 s with 2."""
    if threads < 0:
        raise ValueError(f"render_threads must be >= 0, got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)
