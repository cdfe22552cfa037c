"""Data-parallel training over several devices with ``jax.sharding``.

The trials of a batch are split over a 1-D device mesh whose axis is named ``"trials"``;
parameters and optimiser state are replicated on every device. The model code does not
change: the jitted step (``train.make_train_step(..., mesh=mesh)``) receives a batch placed
by ``shard_batch`` and a state placed by ``replicate``, and XLA's sharding propagation
(GSPMD) runs each device's trials through the simulation passes locally and all-reduces
the sums over trials (weight gradients, PSTH and coincidence means). The encoder of a
stimulus shared by all trials runs on every device (it has no trial axis to split).

Every trial's noise is the same as on one device: ``jax.random`` draws are partitionable
(``jax_threefry_partitionable``, the default), so a sharded step computes the same numbers as
an unsharded one up to the order of floating-point sums.

The same code runs on CPU (``XLA_FLAGS=--xla_force_host_platform_device_count=4`` fakes four
devices), GPUs and TPUs.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

TRIALS = "trials"


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` local devices, axis name ``"trials"``.

    Args:
      num_devices: how many devices; 0 means all local devices.

    Raises:
      ValueError: if more devices are asked for than exist (or a negative count).
    """
    devices = jax.local_devices()
    if num_devices == 0:
        num_devices = len(devices)
    if not 1 <= num_devices <= len(devices):
        raise ValueError(
            f"--devices={num_devices}: this process sees {len(devices)} "
            f"{devices[0].platform} device(s); use 1..{len(devices)}, or 0 for all"
        )
    return Mesh(np.array(devices[:num_devices]), (TRIALS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy of an array on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def trial_sharded(mesh: Mesh) -> NamedSharding:
    """The sharding that splits an array's leading (trial) axis over ``mesh``."""
    return NamedSharding(mesh, PartitionSpec(TRIALS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of ``tree`` (parameters, optimiser state) on all devices.

    The result may share a device buffer with the input (its copy on the same device): a
    step that donates the result (``train.make_train_step``) then invalidates the input too,
    so replicate a copy of arrays you keep.
    """
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch, mesh: Mesh):
    """Splits a batch's trials over the devices of ``mesh``.

    Args:
      batch: a ``data.batching.Batch``: ``spikes`` float32 [K, T, N_V], ``history``
        [K, D, N_V] (or None), ``stimulus`` [T + R − 1, H, W] shared by the trials (then
        replicated) or [K, T + R − 1, H, W] per trial (then sharded like the spikes).
      mesh: from ``make_mesh``.

    Returns:
      The batch with device arrays; trial-axis arrays are sharded ``PartitionSpec("trials")``.

    Raises:
      ValueError: if K is not a multiple of the number of devices.
    """
    num_trials = np.shape(batch.spikes)[0]
    num_devices = mesh.devices.size
    if num_trials % num_devices:
        raise ValueError(
            f"data-parallel training: a batch of {num_trials} trials cannot be split evenly "
            f"over {num_devices} devices; choose a batch size (K, or K_m × K_t for clips) "
            f"that is a multiple of {num_devices}, or another --devices"
        )
    sharded, whole = trial_sharded(mesh), replicated(mesh)
    per_trial_stimulus = np.ndim(batch.stimulus) == 4
    return batch._replace(
        stimulus=jax.device_put(batch.stimulus, sharded if per_trial_stimulus else whole),
        spikes=jax.device_put(batch.spikes, sharded),
        history=None if batch.history is None else jax.device_put(batch.history, sharded),
    )
