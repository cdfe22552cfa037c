"""Recordings: one HDF5 layout, importers, synthetic ground truth and batching (docs/data.md)."""

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
    Target,
    load_recording,
    load_target,
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
    "Target",
    "TrialBatcher",
    "first_usable_bin",
    "load_recording",
    "load_target",
    "make_batch",
    "make_clip_batch",
    "make_trial_batch",
    "save_recording",
    "validate_recording",
]
