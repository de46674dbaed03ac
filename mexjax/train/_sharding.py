"""Data parallelism with jax.sharding: the batch is split over every local device, state replicated."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis "data" over `devices` (default: every device of every process, i.e. the
    local ones unless jax.distributed was initialised)."""
    devices = list(devices) if devices is not None else jax.devices()
    return Mesh(np.array(devices), ("data",))


def to_mesh(tree, sharding: NamedSharding):
    """Host arrays onto the mesh. One process: a device_put. Several (jax.distributed): each process
    passes its own part (the whole array for a replicated sharding, its rows of the global batch for
    the batch sharding, see `process_rows`) and the parts form one global array."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree_util.tree_map(
        lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), tree
    )


def process_rows(rows: np.ndarray) -> np.ndarray:
    """This process's share of a global batch's row indices (all of them with one process): process p
    feeds the p-th contiguous block, which the batch sharding places on its own devices."""
    count = jax.process_count()
    if count == 1:
        return rows
    share = len(rows) // count
    start = jax.process_index() * share
    return rows[start : start + share]


def to_host(tree):
    """Replicated arrays back to NumPy; with several processes each reads its own (identical) copy."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return jax.tree_util.tree_map(lambda a: np.asarray(a.addressable_data(0)), tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_divisible(batch_size: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(f"batch size {batch_size} does not split over {n} devices; use a multiple of {n}")
    if batch_size % jax.process_count():
        raise ValueError(f"batch size {batch_size} does not split over {jax.process_count()} processes")
