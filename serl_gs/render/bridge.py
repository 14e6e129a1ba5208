"""JAX <-> torch without host copies: DLPack both ways, outside `jit`.

The render stage sits between the jitted physics step and the jitted policy. Body poses leave JAX as
device arrays and enter torch through DLPack (same memory); images go back the same way. On a GPU no
byte crosses to the host; on a CPU the hand-off is also zero-copy. JAX is imported only when a JAX array
is actually passed in, so numpy callers (the CPU MuJoCo physics path) never pay for it.
"""

from __future__ import annotations

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


def to_torch(x, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A JAX array (via DLPack), numpy array or tensor as a torch tensor on `device`.

    Only a dtype or device change copies (e.g. MuJoCo's float64 numpy poses become float32).
    """
    if is_jax_array(x):
        t = torch.from_dlpack(x)
    elif isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        t = x
    else:
        raise ValueError(f"expected a JAX array, numpy array or torch tensor, got {type(x).__name__}")
    return t.to(device=device, dtype=dtype)


def to_jax(t: torch.Tensor):
    """A torch tensor as a JAX array on the same device, sharing its memory (DLPack)."""
    import jax.dlpack

    return jax.dlpack.from_dlpack(t.contiguous())


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()
