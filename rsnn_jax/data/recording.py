"""One HDF5 layout for a multi-trial recording, its validator, reader and writer (docs/data.md).

A recording is a set of *movies*. Each movie has a stimulus with **one frame per time bin**
(``stimulus[f]`` is the frame shown during bin f; importers resample frames onto the bin grid)
and spikes ``[trials, bins, neurons]`` with ``bins == frames``. A repeated movie was shown on
several trials; an unrepeated movie on exactly one. The train / validation / test split lists,
for every movie it uses, the trial indices it owns.

File layout (``format = "rsnn_jax.recording"``, ``format_version = 1``; docs/data.md has the
full table)::

    /                          attrs: format, format_version, bin_width_s, provenance attrs
    /stimuli/<movie>           float32 [F, H, W]   one frame per bin, finite
    /spikes/<movie>            uint8 [K, F, N]     in {0, 1}; attr ``repeated`` (bool)
    /neuron_ids                int64 [N]           unique ids of the recorded neurons
    /splits/<split>/<movie>    int64 [n]           trial indices; split in {train, validation,
                                                   test}, ``train`` required
    /target/...                (optional) ground-truth model of a synthetic data set

The ``/target`` group holds a ``model.Model`` and its ``model.ModelParams``:
``/target/network/{input_weights [F, N], recurrent_weights [D, N, N] ([d − 1, pre, post]),
bias [N]}``, ``/target/encoder/<Flax path>`` (e.g. ``/target/encoder/params/SpatialCNN_0/
Conv_0/kernel``) and attrs ``encoder`` (class name), ``encoder_config`` (JSON of the module's
fields), ``num_visible``, ``num_hidden``, ``num_delays``, ``threshold``, ``temperature``,
``dampening``. This module validates the group's attributes and shapes; writing and
rebuilding the model are the model layer's (``rsnn_jax.ground_truth``): this module
imports only NumPy and h5py.

Files are only read after ``validate_recording`` found no problem; every problem is reported
with the HDF5 path it concerns, e.g. ``/spikes/natural: expected 3 dimensions [trials, bins,
neurons], got 2``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any, NamedTuple

import h5py
import numpy as np

FORMAT = "rsnn_jax.recording"
FORMAT_VERSION = 1
SPLITS = ("train", "validation", "test")
# Root attributes the layout owns; all other root attributes are provenance (Recording.attrs).
_RESERVED_ATTRS = ("format", "format_version", "bin_width_s")
# Values are checked in blocks of about this many elements (a paper-scale retina stimulus
# with one frame per 1.667 ms bin does not fit in memory comfortably).
_BLOCK_ELEMENTS = 1 << 22


class Problem(NamedTuple):
    """One problem found in a recording file: the HDF5 ``path`` and a one-line ``message``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class DataError(ValueError):
    """A recording is malformed; ``problems`` lists every problem found, with its HDF5 path."""

    def __init__(self, problems: list[Problem], source: str = "recording"):
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n{lines}")


@dataclasses.dataclass
class Recording:
    """A multi-trial recording in memory (the HDF5 layout of this module).

    Attributes:
      stimuli: movie name → float32 [F, H, W], one frame per bin.
      spikes: movie name → uint8 [K, F, N] in {0, 1}.
      bin_width_s: bin width in seconds (0.04 for V1, 1/600 for the retina).
      repeated: movie name → whether the movie was shown repeatedly (K ≥ 1) or once (K = 1).
      splits: split name ('train', 'validation', 'test') → movie name → int64 trial indices.
      neuron_ids: int64 [N], ids of the recorded neurons in the source (e.g. unit indices).
      attrs: provenance (source files, importer, options, clipping counts, …): str, number or
        bool values, or lists/arrays of them.
      target: the ground-truth model of a synthetic data set (an
        ``rsnn_jax.ground_truth.Target``), or None. ``save_recording`` asks it to fill the
        ``/target`` group (its ``write(group)`` method), so this module needs no model code.
    """

    stimuli: dict[str, np.ndarray]
    spikes: dict[str, np.ndarray]
    bin_width_s: float
    repeated: dict[str, bool]
    splits: dict[str, dict[str, np.ndarray]]
    neuron_ids: np.ndarray
    attrs: dict = dataclasses.field(default_factory=dict)
    target: Any = None

    @property
    def movies(self) -> tuple[str, ...]:
        """Movie names, in insertion order."""
        return tuple(self.spikes)

    @property
    def num_neurons(self) -> int:
        """N, recorded (visible) neurons."""
        return int(np.shape(self.neuron_ids)[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(H, W) of every stimulus frame."""
        return tuple(next(iter(self.stimuli.values())).shape[1:])

    def trials(self, split: str, movie: str) -> np.ndarray:
        """int64 trial indices of ``movie`` in ``split`` (empty if the split does not use it)."""
        return np.asarray(self.splits.get(split, {}).get(movie, ()), np.int64)


# ----------------------------------------------------------------------------- validation


def _is_dataset(node) -> bool:
    return isinstance(node, h5py.Dataset)


def _blocks(dataset: h5py.Dataset):
    """Yields consecutive blocks of ``dataset`` along axis 0, each about _BLOCK_ELEMENTS."""
    if dataset.ndim == 0 or dataset.shape[0] == 0:
        return
    row = max(1, int(np.prod(dataset.shape[1:])))
    step = max(1, _BLOCK_ELEMENTS // row)
    for start in range(0, dataset.shape[0], step):
        yield dataset[start : start + step]


def _check_stimulus(path: str, dataset) -> list[Problem]:
    if not _is_dataset(dataset):
        return [Problem(path, "expected a dataset float32 [frames, height, width], got a group")]
    problems = []
    if dataset.ndim != 3:
        problems.append(
            Problem(
                path,
                f"expected 3 dimensions [frames, height, width], got {dataset.ndim} "
                f"(shape {list(dataset.shape)})",
            )
        )
    if dataset.dtype.kind != "f":
        problems.append(
            Problem(path, f"expected a floating-point dtype (float32), got {dataset.dtype}")
        )
    elif dataset.ndim == 3:
        if 0 in dataset.shape:
            problems.append(Problem(path, f"empty stimulus, shape {list(dataset.shape)}"))
        num_nan = num_inf = 0
        for block in _blocks(dataset):
            num_nan += int(np.isnan(block).sum())
            num_inf += int(np.isinf(block).sum())
        if num_nan or num_inf:
            problems.append(
                Problem(path, f"stimulus has {num_nan} NaN and {num_inf} infinite values")
            )
    return problems


def _check_spikes(path: str, dataset, clip_counts: bool) -> list[Problem]:
    if not _is_dataset(dataset):
        return [Problem(path, "expected a dataset uint8 [trials, bins, neurons], got a group")]
    problems = []
    if dataset.ndim != 3:
        problems.append(
            Problem(
                path,
                f"expected 3 dimensions [trials, bins, neurons], got {dataset.ndim} "
                f"(shape {list(dataset.shape)})",
            )
        )
    if dataset.dtype.kind not in "biu":
        problems.append(
            Problem(path, f"expected an integer dtype (uint8) for spikes, got {dataset.dtype}")
        )
    elif dataset.ndim == 3:
        if 0 in dataset.shape:
            problems.append(Problem(path, f"empty spike array, shape {list(dataset.shape)}"))
        num_negative = num_counts = 0
        largest = 0
        for block in _blocks(dataset):
            block = np.asarray(block, np.int64)
            num_negative += int((block < 0).sum())
            num_counts += int((block > 1).sum())
            largest = max(largest, int(block.max(initial=0)))
        if num_negative:
            problems.append(Problem(path, f"{num_negative} negative spike counts"))
        if num_counts and not clip_counts:
            problems.append(
                Problem(
                    path,
                    f"spikes must be binary: {num_counts} bins hold counts > 1 (max {largest}); "
                    "load with clip_counts=True to clip them to 1",
                )
            )
    if "repeated" not in dataset.attrs:
        problems.append(Problem(path, "missing attribute 'repeated' (bool)"))
    return problems


def _check_root(f: h5py.File) -> list[Problem]:
    problems = []
    fmt = f.attrs.get("format")
    if fmt is None:
        problems.append(Problem("/", f"missing attribute 'format' (expected {FORMAT!r})"))
    elif _as_str(fmt) != FORMAT:
        problems.append(Problem("/", f"attribute 'format' is {_as_str(fmt)!r}, not {FORMAT!r}"))
    version = f.attrs.get("format_version")
    if version is None:
        problems.append(Problem("/", "missing attribute 'format_version'"))
    elif np.ndim(version) != 0 or int(version) != FORMAT_VERSION:
        problems.append(
            Problem("/", f"unsupported format_version {version!r} (this reader: {FORMAT_VERSION})")
        )
    width = f.attrs.get("bin_width_s")
    if width is None:
        problems.append(Problem("/", "missing attribute 'bin_width_s' (seconds per bin)"))
    else:
        try:
            width = float(width)
        except (TypeError, ValueError):
            width = float("nan")
        if not (np.isfinite(width) and width > 0):
            problems.append(Problem("/", f"bin_width_s must be a positive number, got {width!r}"))
    return problems


def _check_movies(f: h5py.File, clip_counts: bool) -> tuple[list[Problem], dict]:
    """Checks /stimuli and /spikes; returns problems and movie → (trials, bins, neurons)."""
    problems, shapes = [], {}
    for group in ("stimuli", "spikes"):
        if group not in f:
            problems.append(Problem(f"/{group}", "missing group"))
        elif _is_dataset(f[group]):
            problems.append(Problem(f"/{group}", "expected a group of movies, got a dataset"))
    if problems:
        return problems, shapes
    stimuli, spikes = f["stimuli"], f["spikes"]
    if not len(spikes):
        problems.append(Problem("/spikes", "no movie: the recording is empty"))
    for name in stimuli:
        if name not in spikes:
            problems.append(Problem(f"/spikes/{name}", "missing dataset (the stimulus has one)"))
    frame_shapes, neuron_counts = {}, {}
    for name in spikes:
        spike_path, stimulus_path = f"/spikes/{name}", f"/stimuli/{name}"
        movie_problems = _check_spikes(spike_path, spikes[name], clip_counts)
        if name not in stimuli:
            movie_problems.append(Problem(stimulus_path, "missing dataset (the spikes have one)"))
        else:
            movie_problems += _check_stimulus(stimulus_path, stimuli[name])
        problems += movie_problems
        spike_ds = spikes[name]
        if not _is_dataset(spike_ds) or spike_ds.ndim != 3:
            continue
        num_trials, num_bins, num_neurons = spike_ds.shape
        shapes[name] = spike_ds.shape
        neuron_counts[name] = num_neurons
        repeated = spike_ds.attrs.get("repeated")
        if repeated is not None and not bool(repeated) and num_trials != 1:
            problems.append(
                Problem(spike_path, f"an unrepeated movie has one trial, this one has {num_trials}")
            )
        if name in stimuli and _is_dataset(stimuli[name]) and stimuli[name].ndim == 3:
            num_frames = stimuli[name].shape[0]
            frame_shapes[name] = stimuli[name].shape[1:]
            if num_frames != num_bins:
                problems.append(
                    Problem(
                        spike_path,
                        f"{num_bins} bins but {stimulus_path} has {num_frames} frames "
                        "(one frame per bin expected)",
                    )
                )
    if len(set(frame_shapes.values())) > 1:
        first = next(iter(frame_shapes))
        for name, shape in frame_shapes.items():
            if shape != frame_shapes[first]:
                problems.append(
                    Problem(
                        f"/stimuli/{name}",
                        f"frames are {list(shape)}, but /stimuli/{first} has "
                        f"{list(frame_shapes[first])}: all movies share one frame size",
                    )
                )
    if len(set(neuron_counts.values())) > 1:
        first = next(iter(neuron_counts))
        for name, count in neuron_counts.items():
            if count != neuron_counts[first]:
                problems.append(
                    Problem(
                        f"/spikes/{name}",
                        f"{count} neurons, but /spikes/{first} has {neuron_counts[first]}",
                    )
                )
    return problems, shapes


def _check_neuron_ids(f: h5py.File, shapes: dict) -> list[Problem]:
    if "neuron_ids" not in f:
        return [Problem("/neuron_ids", "missing dataset (int64 [neurons])")]
    ids = f["neuron_ids"]
    if not _is_dataset(ids):
        return [Problem("/neuron_ids", "expected a dataset int64 [neurons], got a group")]
    if ids.ndim != 1:
        return [Problem("/neuron_ids", f"expected 1 dimension [neurons], got {ids.ndim}")]
    if ids.dtype.kind not in "iu":
        return [Problem("/neuron_ids", f"expected an integer dtype (int64), got {ids.dtype}")]
    problems = []
    counts = {s[2] for s in shapes.values()}
    if len(counts) == 1 and ids.shape[0] != next(iter(counts)):
        problems.append(
            Problem("/neuron_ids", f"{ids.shape[0]} ids for {next(iter(counts))} neurons")
        )
    values = ids[()]
    if len(np.unique(values)) != len(values):
        problems.append(Problem("/neuron_ids", "ids are not unique"))
    return problems


def _check_splits(f: h5py.File, shapes: dict, batch_size: int | None) -> list[Problem]:
    if "splits" not in f:
        return [Problem("/splits", "missing group (train / validation / test trial indices)")]
    splits = f["splits"]
    if _is_dataset(splits):
        return [Problem("/splits", "expected a group of splits, got a dataset")]
    problems = []
    if "train" not in splits:
        problems.append(Problem("/splits/train", "missing group: a recording needs a train split"))
    owner: dict[tuple[str, int], str] = {}
    for split in splits:
        split_path = f"/splits/{split}"
        if split not in SPLITS:
            problems.append(Problem(split_path, f"unknown split (expected one of {SPLITS})"))
            continue
        group = splits[split]
        if _is_dataset(group):
            problems.append(Problem(split_path, "expected a group movie → trial indices"))
            continue
        total = 0
        for movie in group:
            path = f"{split_path}/{movie}"
            ds = group[movie]
            if not _is_dataset(ds):
                problems.append(Problem(path, "expected a dataset int64 [trials], got a group"))
                continue
            if movie not in shapes:
                problems.append(Problem(path, f"refers to movie {movie!r} absent from /spikes"))
                continue
            if ds.ndim != 1:
                problems.append(Problem(path, f"expected 1 dimension [trials], got {ds.ndim}"))
                continue
            if ds.dtype.kind not in "iu":
                problems.append(Problem(path, f"expected integer trial indices, got {ds.dtype}"))
                continue
            trials = np.asarray(ds[()], np.int64)
            total += len(trials)
            num_trials = shapes[movie][0]
            bad = trials[(trials < 0) | (trials >= num_trials)]
            if len(bad):
                problems.append(
                    Problem(
                        path,
                        f"trial indices out of range [0, {num_trials}): {bad[:5].tolist()}",
                    )
                )
                continue
            if len(np.unique(trials)) != len(trials):
                problems.append(Problem(path, "repeated trial indices"))
            for trial in np.unique(trials).tolist():
                other = owner.setdefault((movie, trial), split)
                if other != split:
                    problems.append(
                        Problem(path, f"trial {trial} of {movie!r} is also in split {other!r}")
                    )
                    break
            if (
                split == "train"
                and batch_size is not None
                and bool(f["spikes"][movie].attrs.get("repeated", True))
                and len(trials) < batch_size
            ):
                problems.append(
                    Problem(
                        path,
                        f"{len(trials)} training trials, fewer than the batch size {batch_size}",
                    )
                )
        if total == 0:
            problems.append(Problem(split_path, "empty split: it holds no trial"))
    return problems


def _check_target(f: h5py.File, shapes: dict) -> list[Problem]:
    if "target" not in f:
        return []
    target = f["target"]
    problems = []
    for name in ("encoder", "encoder_config", "num_visible", "num_hidden", "num_delays"):
        if name not in target.attrs:
            problems.append(Problem("/target", f"missing attribute {name!r}"))
    if "encoder_config" in target.attrs:
        try:
            json.loads(_as_str(target.attrs["encoder_config"]))
        except ValueError:
            problems.append(Problem("/target", "attribute 'encoder_config' is not valid JSON"))
    if "encoder" not in target or _is_dataset(target["encoder"]):
        problems.append(Problem("/target/encoder", "missing group of encoder variables"))
    arrays = {}
    for name, ndim in (("input_weights", 2), ("recurrent_weights", 3), ("bias", 1)):
        path = f"/target/network/{name}"
        if path not in f or not _is_dataset(f[path]):
            problems.append(Problem(path, "missing dataset"))
        elif f[path].ndim != ndim or f[path].dtype.kind != "f":
            problems.append(
                Problem(
                    path,
                    f"expected a float array of {ndim} dimensions, got "
                    f"{f[path].dtype} {list(f[path].shape)}",
                )
            )
        else:
            arrays[name] = f[path].shape
    if problems or len(arrays) != 3:
        return problems
    num_visible = int(target.attrs["num_visible"])
    num_hidden = int(target.attrs["num_hidden"])
    num_delays = int(target.attrs["num_delays"])
    n = num_visible + num_hidden
    counts = {s[2] for s in shapes.values()}
    if len(counts) == 1 and num_visible != next(iter(counts)):
        problems.append(
            Problem(
                "/target",
                f"num_visible {num_visible} but the spikes have {next(iter(counts))} neurons",
            )
        )
    if arrays["input_weights"][1] != n:
        problems.append(
            Problem(
                "/target/network/input_weights",
                f"expected [F, {n}], got {list(arrays['input_weights'])}",
            )
        )
    if arrays["recurrent_weights"] != (num_delays, n, n):
        problems.append(
            Problem(
                "/target/network/recurrent_weights",
                f"expected [{num_delays}, {n}, {n}], got {list(arrays['recurrent_weights'])}",
            )
        )
    if arrays["bias"] != (n,):
        problems.append(
            Problem("/target/network/bias", f"expected [{n}], got {list(arrays['bias'])}")
        )
    return problems


def _validate_open(f: h5py.File, batch_size: int | None, clip_counts: bool) -> list[Problem]:
    problems = _check_root(f)
    movie_problems, shapes = _check_movies(f, clip_counts)
    problems += movie_problems
    if any(p.path in ("/stimuli", "/spikes") for p in movie_problems):
        # Without both movie groups the movies' shapes are unknown: checking the neuron ids,
        # splits and target against them would only report consequences of this problem.
        return problems
    problems += _check_neuron_ids(f, shapes)
    problems += _check_splits(f, shapes, batch_size)
    problems += _check_target(f, shapes)
    return problems


def validate_recording(
    path: str | os.PathLike, *, batch_size: int | None = None, clip_counts: bool = False
) -> list[Problem]:
    """Lists every problem of a recording file; an empty list means it is valid.

    Checks: the file opens as HDF5; root attributes (format, version, bin width); for every
    movie the stimulus (rank 3, floating dtype, non-empty, finite) and spikes (rank 3, integer
    dtype, non-negative, binary unless ``clip_counts``, attribute ``repeated``, one trial if
    unrepeated), matching frame and bin counts, one frame size and one neuron count for all
    movies; ``/neuron_ids`` (1-D, integer, one per neuron, unique); the splits (``train``
    present, known names, known movies, 1-D integer indices in range, no duplicates, no
    trial in two splits, no empty split, and, with ``batch_size``, at least that many
    training trials of every repeated movie); the optional ``/target`` group (attributes and
    network array shapes).

    Args:
      path: the HDF5 file.
      batch_size: trials per batch the training will draw from one repeated movie.
      clip_counts: accept spike counts > 1 (``load_recording`` then clips them to 1).

    Returns:
      list of ``Problem(path, message)``, in file order.
    """
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as error:
        return [Problem("/", f"cannot open {os.fspath(path)!r} as HDF5: {error}")]
    with f:
        return _validate_open(f, batch_size, clip_counts)


# ----------------------------------------------------------------------------- read / write


def _as_str(value) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _as_str(value[()])
    return str(value)


def _attr_value(value):
    """An HDF5 attribute as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSU":
            return [_attr_value(v) for v in value.tolist()]
        return value
    return value


def load_recording(path: str | os.PathLike, *, clip_counts: bool = False) -> Recording:
    """Validates, then reads a recording file.

    Args:
      path: the HDF5 file.
      clip_counts: clip spike counts > 1 to 1; the number of clipped bins is stored in
        ``attrs['num_clipped_on_load']`` (total) and per movie in
        ``attrs['num_clipped_on_load/<movie>']``.

    Returns:
      Recording (stimuli float32, spikes uint8, splits int64). ``target`` is left None: use
      ``rsnn_jax.ground_truth.load_target`` for the ground truth of a synthetic file (it
      needs JAX and Flax).

    Raises:
      DataError: listing every problem found, each with its HDF5 path.
    """
    problems = validate_recording(path, clip_counts=clip_counts)
    if problems:
        raise DataError(problems, os.fspath(path))
    with h5py.File(path, "r") as f:
        attrs = {k: _attr_value(v) for k, v in f.attrs.items() if k not in _RESERVED_ATTRS}
        stimuli, spikes, repeated = {}, {}, {}
        clipped_total = 0
        for name in f["spikes"]:
            stimuli[name] = np.asarray(f["stimuli"][name][()], np.float32)
            counts = f["spikes"][name][()]
            clipped = int((counts > 1).sum())
            if clip_counts and clipped:
                attrs[f"num_clipped_on_load/{name}"] = clipped
            clipped_total += clipped
            spikes[name] = np.minimum(counts, 1).astype(np.uint8)
            repeated[name] = bool(f["spikes"][name].attrs["repeated"])
        if clip_counts:
            attrs["num_clipped_on_load"] = clipped_total
        splits = {
            split: {m: np.asarray(ds[()], np.int64) for m, ds in f["splits"][split].items()}
            for split in f["splits"]
        }
        return Recording(
            stimuli=stimuli,
            spikes=spikes,
            bin_width_s=float(f.attrs["bin_width_s"]),
            repeated=repeated,
            splits=splits,
            neuron_ids=np.asarray(f["neuron_ids"][()], np.int64),
            attrs=attrs,
        )


def _write_attr(attrs, key: str, value) -> None:
    if value is None:
        return
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        attrs[key] = np.array(value, dtype=h5py.string_dtype())
    elif isinstance(value, Mapping):
        attrs[key] = json.dumps(value, sort_keys=True, default=str)
    else:
        attrs[key] = value


def save_recording(path: str | os.PathLike, recording: Recording) -> None:
    """Writes a recording atomically: to a temporary file, validated, then ``os.replace``.

    Args:
      path: destination HDF5 file (replaced if it exists).
      recording: the recording; spikes must be binary.

    Raises:
      TypeError: if ``recording.target`` is neither None nor an object with ``write(group)``.
      DataError: if the written file does not validate (nothing is left at ``path`` then).
    """
    target = recording.target
    if target is not None and not callable(getattr(target, "write", None)):
        raise TypeError(
            "save_recording: recording.target must be None or an rsnn_jax.ground_truth.Target, "
            f"got {type(target).__name__}"
        )
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(suffix=".h5.tmp", dir=directory)
    os.close(handle)
    try:
        with h5py.File(temporary, "w", track_order=True) as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["bin_width_s"] = float(recording.bin_width_s)
            for key, value in recording.attrs.items():
                if key not in _RESERVED_ATTRS:
                    _write_attr(f.attrs, key, value)
            stimuli = f.create_group("stimuli", track_order=True)
            spikes = f.create_group("spikes", track_order=True)
            for name in recording.spikes:
                counts = np.asarray(recording.spikes[name])
                stimuli.create_dataset(
                    name,
                    data=np.asarray(recording.stimuli[name], np.float32),
                    compression="gzip",
                    compression_opts=4,
                )
                ds = spikes.create_dataset(
                    name,
                    data=counts.astype(np.uint8) if counts.dtype.kind in "biu" else counts,
                    compression="gzip",
                    compression_opts=4,
                )
                ds.attrs["repeated"] = bool(recording.repeated[name])
            f.create_dataset("neuron_ids", data=np.asarray(recording.neuron_ids, np.int64))
            splits = f.create_group("splits", track_order=True)
            for split, movies in recording.splits.items():
                group = splits.create_group(split, track_order=True)
                for movie, trials in movies.items():
                    group.create_dataset(movie, data=np.asarray(trials, np.int64))
            if target is not None:
                target.write(f.create_group("target"))
        problems = validate_recording(temporary)
        if problems:
            raise DataError(problems, f"save_recording({path!r})")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600 files
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
