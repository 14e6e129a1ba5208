"""Entry-point plumbing shared by the node mains: flags from the configs (serl_gs.nodes.flags), the options every
node has, and bad input as a one-line error."""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal


@dataclasses.dataclass(frozen=True)
class NodeOptions:
    """What every node takes beside its config."""

    # Log level of the libraries' logs (orbax, absl: they log every save at INFO, read-only opens at WARNING),
    # on absl's scale: None errors only, -1 also warnings, 0 also info, 1 debug.
    verbosity: int | None = None


@dataclasses.dataclass(frozen=True)
class PresetOption:
    """A named preset (serl_gs.nodes.presets) as the other flags' defaults; flags given explicitly override it."""

    preset: str | None = None  # pick_state, pick_pixels, cpu_pixels or gpu_pixels (serl_gs.nodes.presets); None: none


@dataclasses.dataclass(frozen=True)
class RenderOptions:
    """The reference renderer's CPU threads (set_render_threads)."""

    render_threads: int = 1  # torch CPU threads of the reference renderer (0 = torch's default)


@dataclasses.dataclass(frozen=True)
class InterventionOptions:
    """Who may override the policy (HIL-SERL, serl_gs.demos.sources); intervened steps also go to the learner's
    demo buffer."""

    # "scripted": the task's expert on a tapering schedule (--intervention_start, --intervention_taper_steps);
    # "keyboard": you (hold a key to take over; one env).
    intervention: Literal["none", "scripted", "keyboard"] = "none"


def run(main: Callable[[list[str]], None]) -> None:
    """Runs `main(argv)`; bad flags, a ValueError or a missing file exit with status 2 and a one-line message.

    First, before JAX starts its threads: freed memory stays in the process where JAX runs on the CPU
    (serl_gs.cpu_memory; on XLA:CPU a pixel update otherwise page-faults through hundreds of MB per call)."""
    apply_cpu_tuning()

    from serl_gs.transport.errors import AddressInUse, BatchRejected, ProtocolMismatch, TransportError

    try:
        main(sys.argv[1:])
    except (ValueError, FileNotFoundError, AddressInUse, BatchRejected, ProtocolMismatch) as e:
        # Bad input, a taken port, or a learner that refuses this node (another task or version).
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except TransportError as e:  # the transport cannot go on (e.g. its I/O thread failed): still one line
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


def parse_node_flags(
    argv: Sequence[str], roots: Mapping[str, Any], layout, *, prog: str, description: str | None,
    presets: Callable[[str], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The node's roots (configs) from its flags, plus "node" (NodeOptions: the caller then calls
    `configure_logging`). With `presets`, `--preset NAME` first replaces the roots `presets(NAME)` returns, then
    the flags apply."""
    from serl_gs.nodes.flags import parse, pre_parse

    roots = {**roots, "node": NodeOptions()}
    if presets is not None:
        name = pre_parse(argv, "preset")
        roots = {**roots, **(presets(name) if name is not None else {}), "preset": PresetOption(name)}
    return parse(argv, roots, layout, prog=prog, description=(description or "").strip())


def configure_logging(node: str, verbosity: int | None) -> None:
    """The node's one log setup (serl_gs.logs.configure): the node's name on each line; `verbosity` on absl's
    scale (None errors only, -1 warnings, 0 info, 1 debug) for the libraries around serl_gs."""
    from serl_gs.logs import configure

    configure(node, verbosity)


def with_port_layout(transport):
    """A transport config whose ports follow `transitions_port` (the --port flag): port_layout's one rule."""
    from serl_gs.transport.config import port_layout

    return dataclasses.replace(transport, **port_layout(transport.transitions_port))


# How the nodes' shared configs become flags: the names users know (--port, --auth_secret_file).
TRANSPORT_RENAME = {"transitions_port": "port", "auth.secret_file": "auth_secret_file"}


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


def set_render_threads(threads: int) -> None:
    """Torch's CPU threads for the reference renderer (0 = torch's default). One thread by default: on a machine
    that also runs the learner (or other work) torch's OpenMP threads spin-wait for each other; measured on a
    shared 2-core machine, 16 cartpole frames rendered in 1.7-4.4 s with 1 thread, 11-27 s with 2."""
    if threads < 0:
        raise ValueError(f"render_threads must be >= 0, got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)
