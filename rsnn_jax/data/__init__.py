"""Recordings: one HDF5 layout, its importers and batching (docs/data.md).

A plain NumPy / h5py layer: nothing here imports JAX or the model; the synthetic ground
truth is ``rsnn_jax.synthetic`` and its model I/O ``rsnn_jax.ground_truth``.
"""

from rsnn_jax.data.batching import (
    Batch,
    ClipBatcher,
    Clips,
    TrialBatcher,
    first_usable_bin,
    make_batch,
    make_clip_batch,
    make_trial_batch,
)
from rsnn_jax.data.recording import (
    DataError,
    Problem,
    Recording,
    load_recording,
    save_recording,
    validate_recording,
)

__all__ = [
    "Batch",
    "ClipBatcher",
    "Clips",
    "DataError",
    "Problem",
    "Recording",
    "TrialBatcher",
    "first_usable_bin",
    "load_recording",
    "make_batch",
    "make_clip_batch",
    "make_trial_batch",
    "save_recording",
    "validate_recording",
]
