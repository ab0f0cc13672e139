"""Data parallelism with ``jax.sharding``: a 1-D mesh over all devices, batch sharded, state replicated.

Several hosts join through ``jax.distributed.initialize``; each process feeds its own shard of every
global batch (``jax.make_array_from_process_local_data``).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Join a multi-process run (CPU collectives through gloo). Call before any other JAX work."""
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(f"process_id={process_id} must be in [0, num_processes={num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)


def make_mesh() -> Mesh:
    """A mesh with one axis, ``data``, over every device of every process."""
    return Mesh(np.asarray(jax.devices()), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec("data"))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
    """The global batch must split evenly over devices and processes."""
    n = mesh.devices.size
    if batch_size % n or batch_size % jax.process_count():
        raise ValueError(f"{what}={batch_size} must be divisible by the number of devices ({n}) and processes "
                         f"({jax.process_count()})")


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """This process's part of a batch -> global arrays sharded over the ``data`` axis."""
    sharding = batch_sharded(mesh)
    if jax.process_count() == 1 and mesh.devices.size == 1:
        return jax.device_put(batch, sharding)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def replicate(tree, mesh: Mesh):
    """Place ``tree`` on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))
