"""Data parallel learning over several devices with JAX's own sharding (`jax.jit` + `NamedSharding`, not pmap).

One mesh axis, "data". The training state (parameters, targets, optimizer states, RNG) is replicated on every
device; each minibatch is split along its batch axis, each device holding B / n transitions. The update is the
single-device update jitted with those shardings: XLA's partitioner runs the forward and backward passes on each
device's slice and inserts the all-reduce of the gradients (the losses are means over the batch, so the sum of
the per-device partial sums is the full gradient). Nothing in the update is written for several devices, so it
computes what the single-device update computes on the same batch, up to the order of float additions (tested
on 4 virtual CPU devices: tests/test_agents_sharding.py).

Random numbers (augmentation shifts, the actor's noise, the REDQ subset) are drawn from the replicated key with
the same values as on one device: jit's result does not depend on how its inputs are laid out.

One process only: several hosts (jax.distributed) would need every host's learner to run the same number of
updates in lockstep (each call is a collective), which the per-host rate limiter does not guarantee; not built
(docs/learner-throughput.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from serl_gs.agents.learning import TrainingState, _make_update_many
from serl_gs.agents.networks import AgentNetworks
from serl_gs.data.batch import Batch

log = logging.getLogger(__name__)

DATA_AXIS = "data"
_LOGGED: set[str] = set()


def learner_devices(requested: int) -> list[jax.Device]:
    """The devices the learner spreads over: `requested` of them, or (0 = auto) every GPU, else one device.

    "auto" is logged once. Asking for more devices than there are is a ValueError naming both counts."""
    if requested < 0:
        raise ValueError(f"learner_devices must be >= 0 (0 = auto), got {requested}")
    if jax.process_count() > 1:
        raise ValueError(
            f"the learner runs in one process; JAX was initialized with {jax.process_count()} processes "
            "(several hosts are not supported, docs/learner-throughput.md)"
        )
    devices = jax.devices()
    if requested == 0:
        gpus = [d for d in devices if d.platform == "gpu"]
        chosen = gpus or devices[:1]
        key = f"{len(chosen)} {chosen[0].platform}"
        if key not in _LOGGED:
            _LOGGED.add(key)
            what = "every GPU" if gpus else "one device (no GPU)"
            log.info("learner_devices auto: %d x %s (%s)", len(chosen), chosen[0].platform, what)
        return chosen
    if requested > len(devices):
        raise ValueError(f"learner_devices={requested} but JAX sees {len(devices)} device(s): {devices}")
    return devices[:requested]


def data_mesh(devices: Sequence[jax.Device]) -> Mesh:
    """A one-axis mesh ("data") over `devices`."""
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, batch_axis: int) -> NamedSharding:
    """Leaves split along `batch_axis` (the others whole): [K, U, B, ...] batches use batch_axis=2."""
    return NamedSharding(mesh, PartitionSpec(*([None] * batch_axis), DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(f"batch_size {batch_size} must be a multiple of the learner's {n} devices")


def replicate(tree, mesh: Mesh):
    """`tree` (e.g. a TrainingState) placed whole on every device of `mesh`."""
    return jax.device_put(tree, replicated(mesh))


def shard_batches(batches: Batch, mesh: Mesh) -> Batch:
    """[K, U, B, ...] batches split along B over the mesh (each device receives its B / n transitions)."""
    check_batch_size(batches.reward.shape[2], mesh)
    return jax.device_put(batches, batch_sharding(mesh, 2))


def make_sharded_update_many_fn(
    networks: AgentNetworks, mesh: Mesh
) -> Callable[[TrainingState, Batch], tuple[TrainingState, dict]]:
    """`update_many(state, batches)` (agents.learning) over `mesh`: the state replicated, batches [K, U, B, ...]
    split along B, the new state and metrics replicated."""
    check_batch_size(networks.config.batch_size, mesh)
    rep = replicated(mesh)
    return jax.jit(
        _make_update_many(networks), in_shardings=(rep, batch_sharding(mesh, 2)), out_shardings=(rep, rep)
    )
