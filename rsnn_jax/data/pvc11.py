"""CRCNS pvc-11 importer (monkey V1, natural movie; docs/data.md, paper appendix A).

Inputs, as distributed by CRCNS (pvc-11, Smith & Kohn):

* the spike file (e.g. ``data_monkey1_natural_movie.mat``): struct ``data`` with field
  ``EVENTS``, a cell array units × trials of spike times in seconds from movie onset;
  MATLAB v5 (read with ``scipy.io.loadmat``) or v7.3/HDF5 (read with ``h5py``; the cell is a
  dataset of object references stored transposed, trials × units);
* the movie file (e.g. ``natural_movie.mat``): ``M``, uint8 H × W × 750 frames at 25 Hz
  (v5 or v7.3, where it is stored transposed as 750 × W × H).

Processing, as in the paper and the official notebook ``convert_data_to_npy.ipynb``:

1. spike times → bins of ``bin_width_s`` (40 ms) on [0, movie duration): bin
   ``floor(t / dt)`` (half-open bins; times are rounded to 1e-9 bins first so that a time
   on a bin edge lands in the later bin despite floating-point error); times outside the
   movie are dropped and counted;
2. frames → the bin grid (one frame per bin; 25 Hz frames and 40 ms bins coincide) and
   resized to ``image_size`` × ``image_size`` by area averaging (exact block means for
   integer factors; the official code uses ``skimage.transform.resize``, bilinear with
   Gaussian anti-aliasing — close but not bit-identical), scaled to [0, 1];
3. keep the last ``keep_seconds`` (26 s → 650 bins, frames 100..749);
4. at most one spike per bin: counts > 1 are clipped to 1, and the number of clipped spikes
   and of bins that held more than one spike are reported (about 5 % of bins in the paper);
5. unit selection: all units, an explicit list, or a criterion on the firing rate (Hz, over
   the kept window) and an SNR array read from the spike file (``snr_variable``);
6. the official split: trials 0–79 train, 80–109 test, 110–119 validation.

Command line (``experiments/import_pvc11.py``)::

    python -m experiments.import_pvc11 --events=data_monkey1_natural_movie.mat \\
        --movie=natural_movie.mat --out=v1.h5
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import h5py
import numpy as np

from rsnn_jax.data.recording import DataError, Problem, Recording

MOVIE = "natural"
OFFICIAL_SPLIT = (80, 30, 10)  # train, test, validation trials, in that order


def _is_v73(path) -> bool:
    return h5py.is_hdf5(os.fspath(path))


def _v5_variable(path, variable: str):
    import scipy.io

    parts = variable.split(".")
    try:
        mat = scipy.io.loadmat(os.fspath(path), squeeze_me=False, struct_as_record=True)
    except Exception as err:  # scipy's errors on a damaged file name neither file nor cause
        raise DataError(
            [Problem(variable, f"not a readable MATLAB file ({type(err).__name__}: {err})")],
            os.fspath(path),
        ) from err
    if parts[0] not in mat:
        raise DataError([Problem(variable, f"no variable {parts[0]!r} in {os.fspath(path)}")])
    node = mat[parts[0]]
    for depth, part in enumerate(parts[1:], start=1):
        here = ".".join(parts[:depth])
        names = getattr(node.dtype, "names", None) or ()
        if part not in names:
            problem = Problem(here, f"no field {part!r} (fields: {list(names)})")
            raise DataError([problem], os.fspath(path))
        if node.size != 1:
            problem = Problem(here, f"expected a 1×1 struct, got shape {node.shape}")
            raise DataError([problem], os.fspath(path))
        node = node[part].reshape(-1)[0]
    return node


def _read_v5_cell(path, variable: str) -> list[list[np.ndarray]]:
    cell = _v5_variable(path, variable)
    if not isinstance(cell, np.ndarray) or cell.dtype != object or cell.ndim != 2:
        raise DataError(
            [
                Problem(
                    variable,
                    f"expected a 2-D cell array units × trials, got "
                    f"{getattr(cell, 'dtype', type(cell))} {np.shape(cell)}",
                )
            ]
        )
    return [[np.asarray(cell[u, k]) for k in range(cell.shape[1])] for u in range(cell.shape[0])]


def _h5_variable(f: h5py.File, variable: str):
    path = "/" + variable.replace(".", "/")
    if path not in f:
        raise DataError([Problem(variable, f"no {path} in the HDF5 (v7.3) file")], f.filename)
    return f[path]


def _read_v73_cell(path, variable: str) -> list[list[np.ndarray]]:
    with h5py.File(path, "r") as f:
        dataset = _h5_variable(f, variable)
        if not isinstance(dataset, h5py.Dataset) or dataset.ndim != 2:
            raise DataError(
                [Problem(variable, "expected a 2-D cell array (object references)")], f.filename
            )
        if dataset.dtype != h5py.ref_dtype:
            raise DataError(
                [Problem(variable, f"expected a cell array (references), got {dataset.dtype}")],
                f.filename,
            )
        references = dataset[()]  # MATLAB column-major: stored [trials, units]
        num_trials, num_units = references.shape
        cell = []
        for u in range(num_units):
            row = []
            for k in range(num_trials):
                node = f[references[k, u]]
                if node.attrs.get("MATLAB_empty", 0):
                    row.append(np.zeros((0,)))
                else:
                    row.append(np.asarray(node[()]))
            cell.append(row)
    return cell


def read_events(path: str | os.PathLike, variable: str = "data.EVENTS") -> list[list[np.ndarray]]:
    """Reads the spike-time cell array of a pvc-11 file (MATLAB v5 or v7.3).

    Args:
      path: the .mat file.
      variable: dotted path of the cell array (struct fields separated by dots).

    Returns:
      units × trials nested lists of float64 [n] spike times (seconds from movie onset).

    Raises:
      DataError: naming the cell ``variable{unit,trial}`` that is not a numeric vector of
        finite times.
    """
    reader = _read_v73_cell if _is_v73(path) else _read_v5_cell
    cell = reader(path, variable)
    problems, events = [], []
    for u, row in enumerate(cell):
        out = []
        for k, times in enumerate(row):
            if times.dtype.kind not in "fiu":
                problems.append(Problem(f"{variable}{{{u},{k}}}", f"not numeric ({times.dtype})"))
                out.append(np.zeros((0,)))
                continue
            times = np.asarray(times, np.float64).reshape(-1)
            if not np.all(np.isfinite(times)):
                problems.append(Problem(f"{variable}{{{u},{k}}}", "non-finite spike times"))
            out.append(times)
        events.append(out)
    if problems:
        raise DataError(problems, os.fspath(path))
    if not events or not events[0] or len({len(row) for row in events}) != 1:
        raise DataError([Problem(variable, "empty or ragged cell array")], os.fspath(path))
    return events


def read_movie(path: str | os.PathLike, variable: str = "M") -> np.ndarray:
    """Reads the movie ``M`` (MATLAB H × W × frames) as [frames, H, W] in its own dtype."""
    if _is_v73(path):
        with h5py.File(path, "r") as f:
            dataset = _h5_variable(f, variable)
            if not isinstance(dataset, h5py.Dataset) or dataset.ndim != 3:
                raise DataError(
                    [Problem(variable, "expected a 3-D array H × W × frames")], f.filename
                )
            return np.transpose(dataset[()], (0, 2, 1))  # stored [frames, W, H]
    movie = _v5_variable(path, variable)
    if not isinstance(movie, np.ndarray) or movie.ndim != 3 or movie.dtype.kind not in "fiu":
        raise DataError(
            [
                Problem(
                    variable,
                    f"expected a numeric 3-D array H × W × frames, got "
                    f"{getattr(movie, 'dtype', type(movie))} {np.shape(movie)}",
                )
            ],
            os.fspath(path),
        )
    return np.transpose(movie, (2, 0, 1))


def bin_spike_times(
    events: Sequence[Sequence[np.ndarray]], bin_width_s: float, num_bins: int
) -> tuple[np.ndarray, int]:
    """Counts spikes per bin: bin b is [b·dt, (b + 1)·dt).

    Args:
      events: units × trials spike times (seconds).
      bin_width_s: dt.
      num_bins: bins from time 0.

    Returns:
      (int32 counts [trials, num_bins, units], number of spikes outside [0, num_bins·dt)).
    """
    num_units, num_trials = len(events), len(events[0])
    counts = np.zeros((num_trials, num_bins, num_units), np.int32)
    outside = 0
    for u in range(num_units):
        for k in range(num_trials):
            # Rounding first: 0.12 / 0.04 = 2.9999999999999996 must be bin 3.
            bins = np.floor(np.round(np.asarray(events[u][k]) / bin_width_s, 9)).astype(np.int64)
            inside = (bins >= 0) & (bins < num_bins)
            outside += int((~inside).sum())
            counts[k, :, u] = np.bincount(bins[inside], minlength=num_bins)
    return counts, outside


def _area_weights(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in]: output pixel i averages input [i·s, (i + 1)·s), s = in/out."""
    scale = size_in / size_out
    edges_out = np.arange(size_out + 1) * scale
    lower = np.maximum(edges_out[:-1, None], np.arange(size_in)[None, :])
    upper = np.minimum(edges_out[1:, None], np.arange(size_in)[None, :] + 1)
    return np.clip(upper - lower, 0.0, None) / scale


def resize_frames(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Area-averaging resize of [F, H, W] frames to [F, h, w] (float32, same value scale)."""
    height, width = (size, size) if np.ndim(size) == 0 else size
    rows = _area_weights(frames.shape[1], height)
    cols = _area_weights(frames.shape[2], width)
    out = np.einsum("oh,fhw->fow", rows, np.asarray(frames, np.float64))
    return np.einsum("fow,pw->fop", out, cols).astype(np.float32)


def import_pvc11(
    events_path: str | os.PathLike,
    movie_path: str | os.PathLike,
    *,
    image_size: int = 27,
    bin_width_s: float = 0.04,
    frame_rate_hz: float = 25.0,
    keep_seconds: float = 26.0,
    units: Sequence[int] | None = None,
    min_rate_hz: float | None = None,
    min_snr: float | None = None,
    snr_variable: str | None = None,
    events_variable: str = "data.EVENTS",
    movie_variable: str = "M",
    split: Sequence[int] = OFFICIAL_SPLIT,
) -> Recording:
    """Imports a pvc-11 session into a ``Recording`` (one repeated movie, ``"natural"``).

    Args:
      events_path: spike file (v5 or v7.3).
      movie_path: movie file (v5 or v7.3).
      image_size: frames are resized to image_size × image_size (27).
      bin_width_s: bin width (0.04 s).
      frame_rate_hz: movie frame rate (25 Hz); frame ``floor(b·dt·rate)`` is shown in bin b.
      keep_seconds: keep the last this many seconds (26 → 650 bins).
      units: unit indices to keep (in EVENTS order); None = all (then the criteria apply).
      min_rate_hz: keep units whose mean rate over the kept window (before clipping) is at
        least this.
      min_snr: keep units whose SNR (``snr_variable`` in the spike file, one per unit) is at
        least this.
      snr_variable: dotted path of the SNR array, needed with ``min_snr``.
      events_variable, movie_variable: names of the cell array and the movie.
      split: trials (train, test, validation), taken in that order: (80, 30, 10) = the
        official trials 0–79 train, 80–109 test, 110–119 validation. Must sum to the number
        of trials.

    Returns:
      Recording with ``attrs`` reporting the processing: ``num_clipped_spikes`` (spikes
      removed by clipping), ``num_multi_spike_bins`` and ``fraction_multi_spike_bins`` (bins
      that held more than one spike, over all kept bins), ``num_spikes_outside_movie``,
      ``num_units_in_file``, the options and the source files.
    """
    events = read_events(events_path, events_variable)
    frames = read_movie(movie_path, movie_variable)
    num_units, num_trials = len(events), len(events[0])
    duration = frames.shape[0] / frame_rate_hz
    total_bins = int(np.floor(np.round(duration / bin_width_s, 9)))
    keep = int(np.round(keep_seconds / bin_width_s))
    if not 0 < keep <= total_bins:
        raise ValueError(
            f"keep_seconds={keep_seconds:g} must be in (0, {duration:g}]: the movie "
            f"{movie_path} has {frames.shape[0]} frames = {duration:g} s at {frame_rate_hz:g} Hz"
        )
    counts, outside = bin_spike_times(events, bin_width_s, total_bins)
    counts = counts[:, total_bins - keep :]
    frame_index = np.floor(
        np.round((np.arange(total_bins - keep, total_bins) * bin_width_s) * frame_rate_hz, 9)
    ).astype(np.int64)
    stimulus = resize_frames(frames[frame_index], image_size)
    if frames.dtype == np.uint8:
        stimulus = stimulus / np.float32(255)

    selected = np.arange(num_units) if units is None else np.asarray(units, np.int64)
    if len(selected) == 0 or selected.min() < 0 or selected.max() >= num_units:
        raise ValueError(f"import_pvc11: units must be indices in [0, {num_units}), got {units}")
    if min_rate_hz is not None:
        rates = counts.sum(axis=(0, 1)) / (num_trials * keep * bin_width_s)
        selected = selected[rates[selected] >= min_rate_hz]
    if min_snr is not None:
        if snr_variable is None:
            raise ValueError("import_pvc11: min_snr needs snr_variable (the SNR array's name)")
        snr = _read_vector(events_path, snr_variable)
        if snr.shape != (num_units,):
            raise DataError(
                [Problem(snr_variable, f"expected {num_units} values, got shape {snr.shape}")]
            )
        selected = selected[snr[selected] >= min_snr]
    if len(selected) == 0:
        raise ValueError("import_pvc11: the unit selection keeps no unit")
    counts = counts[:, :, selected]

    num_train, num_test, num_validation = (int(s) for s in split)
    if num_train + num_test + num_validation != num_trials or min(split) < 0:
        raise ValueError(
            f"import_pvc11: split {tuple(split)} (train, test, validation) must sum to the "
            f"{num_trials} trials of the file"
        )
    trials = np.arange(num_trials)
    splits = {"train": {MOVIE: trials[:num_train]}}
    if num_test:
        splits["test"] = {MOVIE: trials[num_train : num_train + num_test]}
    if num_validation:
        splits["validation"] = {MOVIE: trials[num_train + num_test :]}

    attrs = {
        "source": "CRCNS pvc-11",
        "importer": "rsnn_jax.data.pvc11",
        "events_file": os.path.basename(os.fspath(events_path)),
        "movie_file": os.path.basename(os.fspath(movie_path)),
        "events_format": "MATLAB v7.3 (HDF5)" if _is_v73(events_path) else "MATLAB v5",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "image_size": int(image_size),
        "frame_rate_hz": float(frame_rate_hz),
        "keep_seconds": float(keep_seconds),
        "first_kept_bin": int(total_bins - keep),
        "num_units_in_file": int(num_units),
        "num_clipped_spikes": int(np.maximum(counts - 1, 0).sum()),
        "num_multi_spike_bins": int((counts > 1).sum()),
        "fraction_multi_spike_bins": float((counts > 1).mean()),
        "num_spikes_outside_movie": int(outside),
        "split_rule": "trials in order: train, test, validation = " + str(tuple(split)),
    }
    for name, value in (("min_rate_hz", min_rate_hz), ("min_snr", min_snr)):
        if value is not None:
            attrs[name] = float(value)
    return Recording(
        stimuli={MOVIE: stimulus.astype(np.float32)},
        spikes={MOVIE: np.minimum(counts, 1).astype(np.uint8)},
        bin_width_s=float(bin_width_s),
        repeated={MOVIE: True},
        splits=splits,
        neuron_ids=selected.astype(np.int64),
        attrs=attrs,
    )


def _read_vector(path, variable: str) -> np.ndarray:
    if _is_v73(path):
        with h5py.File(path, "r") as f:
            return np.asarray(_h5_variable(f, variable)[()], np.float64).reshape(-1)
    return np.asarray(_v5_variable(path, variable), np.float64).reshape(-1)


def summary(recording: Recording) -> str:
    """Human-readable summary: sizes, rates, clipping."""
    spikes = next(iter(recording.spikes.values()))
    rates = spikes.mean(axis=(0, 1))
    a = recording.attrs
    lines = [
        f"{spikes.shape[0]} trials × {spikes.shape[1]} bins × {spikes.shape[2]} units "
        f"({recording.bin_width_s * 1e3:g} ms bins), frames {recording.frame_shape}",
        f"spike probability per bin: mean {rates.mean():.3f}, "
        f"range [{rates.min():.3f}, {rates.max():.3f}]",
        f"clipped {a.get('num_clipped_spikes', 0)} spikes; "
        f"{100 * a.get('fraction_multi_spike_bins', 0.0):.2f} % of bins held > 1 spike; "
        f"{a.get('num_spikes_outside_movie', 0)} spikes outside the movie dropped",
        "split: "
        + ", ".join(f"{s} {sum(len(t) for t in m.values())}" for s, m in recording.splits.items()),
    ]
    return "\n".join(lines)
