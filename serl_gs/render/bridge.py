"""JAX <-> torch without host copies: DLPack both ways, outside `jit`.

The render stage sits between the jitted physics step and the jitted policy. Body poses leave JAX as
device arrays and enter torch through DLPack (same memory); images go back the same way. On a GPU no
byte crosses to the host; on a CPU the hand-off is also zero-copy. JAX is imported only when a JAX array
is actually passed in, so numpy callers (the CPU MuJoCo physics path) never pay for it.

Order between the two libraries' GPU streams: into torch, `torch.from_dlpack` hands JAX torch's current
stream and JAX makes it wait for the array. Back to JAX, JAX asks its device for the stream it uses for
external arrays and torch makes that stream wait for its own; a JAX build whose device reports none
(UNIMPLEMENTED) would read the images unordered, so then torch's stream is synchronised first.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import torch


def is_jax_array(x) -> bool:
    jax = sys.modules.get("jax")  # if JAX was never imported, x cannot be a JAX array
    return jax is not None and isinstance(x, jax.Array)


def array_kind(x) -> str:
    """"jax", "torch" or "numpy": the kind of array the caller gave, so results come back the same kind."""
    if is_jax_array(x):
        return "jax"
    return "torch" if isinstance(x, torch.Tensor) else "numpy"


def from_torch(t: torch.Tensor, kind: str):
    """A result tensor as the caller's kind of array (JAX via DLPack, numpy via the host)."""
    if kind == "jax":
        return to_jax(t)
    return to_numpy(t) if kind == "numpy" else t


def render_device(source: torch.device, default: torch.device) -> torch.device:
    """Where an input living on `source` is rendered: on `source` itself when it is a device of the kind
    the stage renders on (a JAX array on cuda:1 stays on cuda:1), else on `default` (which copies)."""
    return source if source.type == default.type else default


def to_torch(x, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A JAX array (via DLPack), numpy array or tensor as a torch tensor.

    numpy goes to `device`; JAX arrays and tensors stay where they are if that is a `device.type` device
    (`render_device`). Only a dtype or device change copies (e.g. MuJoCo's float64 numpy poses).
    """
    if is_jax_array(x):
        t = torch.from_dlpack(x)  # torch's current stream waits for the array (see the module docstring)
    elif isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        t = x
    else:
        raise ValueError(f"expected a JAX array, numpy array or torch tensor, got {type(x).__name__}")
    target = device if isinstance(x, np.ndarray) else render_device(t.device, torch.device(device))
    return t.to(device=target, dtype=dtype)


def to_jax(t: torch.Tensor):
    """A torch tensor as a JAX array on the same device, sharing its memory (DLPack), stream-ordered."""
    import jax.dlpack

    t = t.contiguous()
    if t.device.type != "cuda":
        return jax.dlpack.from_dlpack(t)
    with torch.cuda.device(t.device):  # torch exports only from its current device
        if not jax_orders_external_arrays(t.device.index):
            torch.cuda.current_stream().synchronize()
        return jax.dlpack.from_dlpack(t)


@functools.cache
def jax_orders_external_arrays(cuda_index: int) -> bool:
    """Whether JAX's device `cuda_index` reports the stream it reads external (DLPack) arrays on, so that
    torch can make that stream wait for its own instead of synchronising."""
    import jax

    for device in jax.devices():
        if device.platform == "gpu" and device.local_hardware_id == cuda_index:
            try:
                return bool(device.get_stream_for_external_ready_events())
            except Exception:  # UNIMPLEMENTED on some builds: no stream to wait on
                return False
    return False


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()
