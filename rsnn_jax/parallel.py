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

Several processes (hosts) run as one job on JAX's multi-controller runtime: every process
calls ``initialize`` first, runs the same program, and the mesh spans the devices of all of
them (``jax.devices()``). Each process places only its own trials of a batch on its devices
(``shard_batch``), parameters are replicated everywhere, and files are written by process 0
(``is_main_process``).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

TRIALS = "trials"


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins a multi-process job (``jax.distributed.initialize``); call before any JAX work.

    With no arguments JAX reads the job from the cluster's environment (SLURM, Open MPI,
    TPU pod slices, Kubernetes). On CPU the processes exchange sums over TCP with gloo.

    Args:
      coordinator_address: ``host:port`` of process 0, reachable from every process.
      num_processes: processes in the job.
      process_id: this process's rank in [0, num_processes).
    """
    # Only the CPU backend reads it; GPUs and TPUs keep their own collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def is_main_process() -> bool:
    """Whether this process writes the job's files (process 0; always True alone)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process of the job reaches the barrier ``name`` (no-op alone)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
    """True when ``flag`` is True in any process of the job (a collective: every process
    must call it at the same point)."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))


def make_mesh(num_devices: int = 0, axis: str = TRIALS) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` local devices, or, in a multi-process job,
    over every device of every process.

    Args:
      num_devices: how many devices; 0 means all. In a multi-process job the mesh always
        spans all devices, so only 0 or their total is accepted.
      axis: the mesh axis name ("trials"; ``ensemble`` splits "members").

    Raises:
      ValueError: if more devices are asked for than exist (or a negative count).
    """
    if jax.process_count() > 1:
        devices = jax.devices()
        if num_devices not in (0, len(devices)):
            raise ValueError(
                f"--devices={num_devices}: a job of {jax.process_count()} processes splits "
                f"the trials over all its {len(devices)} devices; use 0 (all)"
            )
        return Mesh(np.array(devices), (axis,))
    devices = jax.local_devices()
    if num_devices == 0:
        num_devices = len(devices)
    if not 1 <= num_devices <= len(devices):
        raise ValueError(
            f"--devices={num_devices}: this process sees {len(devices)} "
            f"{devices[0].platform} device(s); use 1..{len(devices)}, or 0 for all"
        )
    return Mesh(np.array(devices[:num_devices]), (axis,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy of an array on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def trial_sharded(mesh: Mesh) -> NamedSharding:
    """The sharding that splits an array's leading (trial or member) axis over ``mesh``."""
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def _place(value, sharding: NamedSharding) -> jax.Array:
    """``value`` (the same global array in every process) as a global array; each process
    copies only the slices its own devices hold."""
    if jax.process_count() == 1:
        return jax.device_put(value, sharding)
    value = np.asarray(jax.device_get(value))
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of ``tree`` (parameters, optimiser state) on all devices.

    The result may share a device buffer with the input (its copy on the same device): a
    step that donates the result (``train.make_train_step``) then invalidates the input too,
    so replicate a copy of arrays you keep.
    """
    sharding = replicated(mesh)
    return jax.tree.map(lambda leaf: _place(leaf, sharding), tree)


def shard_leading(tree: Any, mesh: Mesh) -> Any:
    """Splits every leaf's leading axis over ``mesh`` (ensemble members over processes)."""
    sharding = trial_sharded(mesh)
    return jax.tree.map(lambda leaf: _place(leaf, sharding), tree)


def gather(tree: Any) -> Any:
    """Every leaf as a host NumPy array of its global value, also where other processes
    hold parts of it (a collective in a multi-process job: every process calls it)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


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
        stimulus=_place(batch.stimulus, sharded if per_trial_stimulus else whole),
        spikes=_place(batch.spikes, sharded),
        history=None if batch.history is None else _place(batch.history, sharded),
    )
