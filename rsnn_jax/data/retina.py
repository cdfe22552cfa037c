"""Retina importer: binarised spike arrays in 1.667 ms bins, several movies (docs/data.md).

The paper's retina data (25 OFF alpha ganglion cells; appendix A) are private, so the input
format here is the plainest one that holds them: per movie, the stimulus frames, the
spike array and how frames map to bins. One input file per stimulus condition
(checkerboard, moving bars), HDF5 or NumPy ``.npz`` (read with ``allow_pickle=False``)::

    <movie>/stimulus      [frames, H, W]          numeric (uint8 is scaled to [0, 1])
    <movie>/spikes        [trials, bins, cells]   binarised counts (integer or bool)
    <movie>/frame_bins    scalar int              bins per frame (constant refresh), or
    <movie>/frame_index   int [bins]              the frame shown in each bin
    <movie>/repeated      scalar bool (optional)  default: trials > 1

(in ``.npz`` the keys are these paths; in HDF5 ``frame_bins`` and ``repeated`` may also be
attributes of the ``<movie>`` group). Frames are repeated onto the bin grid: the recording
stores one frame per bin.

Split (appendix A): train on the unrepeated movie plus one repeated movie, test on the
other repeated movie; optionally hold out the last repeats of the training repeated movie
as validation.

Command line (``experiments/import_retina.py``)::

    python -m experiments.import_retina --input=checkerboard.h5 --unrepeated=unrepeated \\
        --train_repeated=repeated_1 --test_repeated=repeated_2 --out=retina.h5
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import h5py
import numpy as np

from rsnn_jax.data.recording import DataError, Problem, Recording

BIN_WIDTH_S = 1.0 / 600.0  # 1.667 ms


class RetinaMovie(NamedTuple):
    """One movie of a retina recording before import.

    Attributes:
      stimulus: [frames, H, W] numeric; uint8 frames are scaled to [0, 1].
      spikes: [trials, bins, cells] integer or bool, binarised (counts > 1 only with
        ``clip_counts``).
      frame_bins: bins per frame (frame ``b // frame_bins`` is shown in bin b), or None.
      frame_index: int [bins], the frame shown in each bin, or None (exactly one of the two).
      repeated: shown on several trials; default ``trials > 1``.
    """

    stimulus: np.ndarray
    spikes: np.ndarray
    frame_bins: int | None = None
    frame_index: np.ndarray | None = None
    repeated: bool | None = None


def frames_to_bins(movie: RetinaMovie, name: str = "movie") -> np.ndarray:
    """float32 [bins, H, W]: the stimulus resampled to one frame per bin."""
    stimulus, spikes = np.asarray(movie.stimulus), np.asarray(movie.spikes)
    problems = []
    if stimulus.ndim != 3:
        problems.append(
            Problem(f"{name}/stimulus", f"expected [frames, H, W], got {list(stimulus.shape)}")
        )
    if spikes.ndim != 3:
        problems.append(
            Problem(f"{name}/spikes", f"expected [trials, bins, cells], got {list(spikes.shape)}")
        )
    if (movie.frame_bins is None) == (movie.frame_index is None):
        problems.append(Problem(name, "give exactly one of frame_bins and frame_index"))
    if problems:
        raise DataError(problems)
    num_bins = spikes.shape[1]
    if movie.frame_index is not None:
        index = np.asarray(movie.frame_index, np.int64).reshape(-1)
        if index.shape != (num_bins,):
            raise DataError(
                [Problem(f"{name}/frame_index", f"{index.shape[0]} entries for {num_bins} bins")]
            )
    else:
        if int(movie.frame_bins) < 1:
            raise DataError([Problem(f"{name}/frame_bins", "must be >= 1")])
        index = np.arange(num_bins) // int(movie.frame_bins)
    if index.min(initial=0) < 0 or index.max(initial=0) >= stimulus.shape[0]:
        raise DataError(
            [
                Problem(
                    f"{name}/stimulus",
                    f"{stimulus.shape[0]} frames, but the bins need frame {index.max()}",
                )
            ]
        )
    frames = stimulus[index].astype(np.float32)
    if stimulus.dtype == np.uint8:
        frames /= np.float32(255)
    return frames


def appendix_a_split(
    unrepeated: str | Sequence[str],
    train_repeated: str | Sequence[str],
    test_repeated: str | Sequence[str],
    num_trials: Mapping[str, int],
    num_validation_repeats: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """Appendix A: train = unrepeated movie(s) + one repeated movie, test = the other.

    Args:
      unrepeated, train_repeated, test_repeated: movie names (or lists of names).
      num_trials: movie name → trials.
      num_validation_repeats: the last this many repeats of each training repeated movie go
        to a validation split instead (0: no validation split, as in the paper).

    Returns:
      split → movie → int64 trial indices.

    Raises:
      ValueError: a movie name that ``num_trials`` lacks, or a bad ``num_validation_repeats``.
    """
    names = lambda x: [x] if isinstance(x, str) else list(x)  # noqa: E731
    unknown = [
        m
        for m in names(unrepeated) + names(train_repeated) + names(test_repeated)
        if m not in num_trials
    ]
    if unknown:
        raise ValueError(f"unknown movie(s) {unknown}; the recording has {list(num_trials)}")
    splits: dict[str, dict[str, np.ndarray]] = {"train": {}, "test": {}}
    for movie in names(unrepeated):
        splits["train"][movie] = np.arange(num_trials[movie])
    for movie in names(train_repeated):
        n = num_trials[movie]
        if not 0 <= num_validation_repeats < n:
            raise ValueError(f"num_validation_repeats must be in [0, {n}) for {movie!r}")
        splits["train"][movie] = np.arange(n - num_validation_repeats)
        if num_validation_repeats:
            splits.setdefault("validation", {})[movie] = np.arange(n - num_validation_repeats, n)
    for movie in names(test_repeated):
        splits["test"][movie] = np.arange(num_trials[movie])
    return splits


def import_retina(
    movies: Mapping[str, RetinaMovie],
    splits: Mapping[str, Mapping[str, Sequence[int]]],
    *,
    bin_width_s: float = BIN_WIDTH_S,
    neuron_ids: Sequence[int] | None = None,
    clip_counts: bool = False,
    attrs: Mapping | None = None,
) -> Recording:
    """Builds a ``Recording`` from retina movies.

    Args:
      movies: movie name → RetinaMovie.
      splits: split → movie → trial indices (e.g. from ``appendix_a_split``).
      bin_width_s: bin width (1/600 s).
      neuron_ids: ids of the cells (default 0..N − 1).
      clip_counts: clip counts > 1 to 1 (reported in ``attrs['num_clipped_spikes']``);
        without it such counts are an error.
      attrs: extra provenance.

    Returns:
      Recording with one frame per bin.

    Raises:
      DataError: listing malformed movies (paths ``<movie>/stimulus`` etc.).
    """
    stimuli, spikes, repeated, problems = {}, {}, {}, []
    clipped = multi = 0
    for name, movie in movies.items():
        counts = np.asarray(movie.spikes)
        if counts.dtype.kind not in "biu":
            problems.append(
                Problem(f"{name}/spikes", f"expected integer counts, got {counts.dtype}")
            )
            continue
        if counts.dtype.kind == "i" and (counts < 0).any():
            problems.append(Problem(f"{name}/spikes", "negative counts"))
            continue
        over = counts > 1
        if over.any() and not clip_counts:
            problems.append(
                Problem(
                    f"{name}/spikes",
                    f"{int(over.sum())} bins hold counts > 1 (binarised "
                    "spikes expected); pass clip_counts=True to clip them",
                )
            )
            continue
        try:
            stimuli[name] = frames_to_bins(movie, name)
        except DataError as error:
            problems += error.problems
            continue
        clipped += int(np.maximum(counts.astype(np.int64) - 1, 0).sum())
        multi += int(over.sum())
        spikes[name] = np.minimum(counts, 1).astype(np.uint8)
        repeated[name] = counts.shape[0] > 1 if movie.repeated is None else bool(movie.repeated)
    if problems:
        raise DataError(problems, "import_retina")
    num_cells = next(iter(spikes.values())).shape[2]
    ids = np.arange(num_cells) if neuron_ids is None else np.asarray(neuron_ids, np.int64)
    info = {
        "source": "retina (binarised spike arrays)",
        "importer": "rsnn_jax.data.retina",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "num_clipped_spikes": clipped,
        "num_multi_spike_bins": multi,
    }
    info.update(attrs or {})
    return Recording(
        stimuli=stimuli,
        spikes=spikes,
        bin_width_s=float(bin_width_s),
        repeated=repeated,
        splits={s: {m: np.asarray(t, np.int64) for m, t in ms.items()} for s, ms in splits.items()},
        neuron_ids=ids,
        attrs=info,
    )


def read_retina_file(path: str | os.PathLike) -> dict[str, RetinaMovie]:
    """Reads the importer's input file (HDF5 or ``.npz``, layout in the module docstring)."""
    path = os.fspath(path)
    entries: dict[str, dict] = {}
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            for name, group in f.items():
                if not isinstance(group, h5py.Group):
                    raise DataError([Problem(f"/{name}", "expected a group per movie")], path)
                entry = {k: v[()] for k, v in group.items() if isinstance(v, h5py.Dataset)}
                for key in ("frame_bins", "repeated"):
                    if key in group.attrs:
                        entry[key] = group.attrs[key]
                entries[name] = entry
    else:
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                movie, _, field = key.rpartition("/")
                if not movie:
                    raise DataError([Problem(key, "keys must be <movie>/<field>")], path)
                entries.setdefault(movie, {})[field] = archive[key]
    movies = {}
    for name, entry in entries.items():
        missing = [k for k in ("stimulus", "spikes") if k not in entry]
        if missing:
            raise DataError([Problem(f"{name}/{k}", "missing") for k in missing], path)
        movies[name] = RetinaMovie(
            stimulus=entry["stimulus"],
            spikes=entry["spikes"],
            frame_bins=int(entry["frame_bins"]) if "frame_bins" in entry else None,
            frame_index=entry.get("frame_index"),
            repeated=bool(entry["repeated"]) if "repeated" in entry else None,
        )
    return movies
