"""NWB importer: units, stimulus frames and trials of an NWB 2 file → the recording layout.

Reads (with ``pynwb``, the optional extra ``pip install 'rsnn_jax[nwb]'``):

* ``/units``: the units table; ``spike_times`` of every unit (seconds, session time) and its
  ``id`` (→ ``neuron_ids``);
* ``/intervals/trials``: the trials table; every trial is aligned on its ``start_time`` and
  has ``round((stop_time − start_time) / bin_width_s)`` bins (all trials of a movie must
  have the same number, or pass ``num_bins`` to keep the first ``num_bins`` of each). An
  optional ``movie_column`` (e.g. ``"movie"``) groups the trials into movies; without it
  all trials show one movie. An optional ``split_column`` holds "train" / "test" /
  "validation" per trial;
* the stimulus, one of:

  - an ``ImageSeries`` in ``/stimulus/presentation``, ``/acquisition`` or
    ``/stimulus/templates`` (``stimulus="<name>"``, or the only one in the file): ``data``
    [frames, x, y] (or [frames, x, y, 3] RGB, averaged to grey) with ``timestamps`` or
    ``starting_time`` + ``rate``; frame f is shown from its onset until the next onset;
  - a stimulus presentation table: a ``TimeIntervals`` in ``/intervals/<name>`` (e.g. the
    Allen Brain Observatory's ``natural_movie_one_presentations``) whose rows say which
    frame (``frame_column``, default ``"frame"``) of a template ``ImageSeries``
    (``template="<name>"``, or the only ``ImageSeries`` in the file) is shown from
    ``start_time`` to ``stop_time``.

Processing: bin b of trial k is ``[s_k + b·dt, s_k + (b + 1)·dt)`` with s_k its start time
(times are rounded to 1e-9 bins before the floor, so a spike on a bin edge lands in the
later bin, as the pvc-11 importer); its frame is the frame shown at ``s_k + b·dt``.
Spikes outside every trial are ignored. At most one spike per bin: counts > 1 are clipped
to 1 and reported in ``attrs`` (``num_clipped_spikes``, ``num_multi_spike_bins``,
``fraction_multi_spike_bins``). The trials of one movie must show the same frames (a
repeated movie: its stimulus is stored once); a movie with one trial is unrepeated.
uint8 frames are scaled to [0, 1]; ``image_size`` resizes by area averaging
(``pvc11.resize_frames``). Every bad input raises ``DataError`` (a ``ValueError``) naming
the NWB path it concerns, e.g. ``/intervals/trials: missing (the file has no trials
table)``.

Command line (``experiments/import_nwb.py``)::

    python -m experiments.import_nwb --nwb=session.nwb --out=session.h5 [--bin_width_s=0.04] \\
        [--stimulus=NAME | --presentations=NAME --template=NAME] [--movie_column=movie] \\
        [--image_size=27] [--num_bins=650] [--units=0,3,5] [--split=80,30,10]
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np

from rsnn_jax.data.recording import SPLITS, DataError, Problem, Recording

DEFAULT_MOVIE = "movie"


def _fail(source, path: str, message: str):
    raise DataError([Problem(path, message)], os.fspath(source))


def _image_series_paths(nwbfile) -> dict[str, tuple[str, object]]:
    """name → (NWB path, ImageSeries) of every ImageSeries where a stimulus may live."""
    from pynwb.image import ImageSeries

    found = {}
    for group, container in (
        ("/stimulus/presentation", nwbfile.stimulus),
        ("/acquisition", nwbfile.acquisition),
        ("/stimulus/templates", nwbfile.stimulus_template),
    ):
        for name, series in container.items():
            if isinstance(series, ImageSeries):
                found.setdefault(name, (f"{group}/{name}", series))
    return found


def _choose_series(source, nwbfile, name: str | None, role: str) -> tuple[str, object]:
    series = _image_series_paths(nwbfile)
    where = "/stimulus/presentation, /acquisition or /stimulus/templates"
    if name is not None:
        if name not in series:
            _fail(
                source,
                f"/stimulus/presentation/{name}",
                f"no ImageSeries named {name!r} in {where} (ImageSeries in the file: "
                f"{sorted(series)})",
            )
        return series[name]
    if len(series) != 1:
        what = "no ImageSeries" if not series else f"several ImageSeries {sorted(series)}"
        hint = "" if not series else f": choose the {role} with --{role}=NAME"
        _fail(source, "/stimulus", f"{what} in {where}{hint}")
    return next(iter(series.values()))


def _frames(source, path: str, series) -> np.ndarray:
    """float32 [F, x, y] grey frames of an ImageSeries (uint8 scaled to [0, 1])."""
    data = series.data
    if data is None or np.shape(data)[0] == 0:
        _fail(source, f"{path}/data", "empty (external_file movies are not supported)")
    frames = np.asarray(data[()])
    if frames.ndim == 4 and frames.shape[-1] in (3, 4):
        frames = frames[..., :3].astype(np.float64).mean(axis=-1)
    if frames.ndim != 3 or frames.dtype.kind not in "fiub":
        _fail(
            source,
            f"{path}/data",
            f"expected numeric frames [frames, x, y] (or [..., 3] RGB), got {frames.dtype} "
            f"{list(frames.shape)}",
        )
    if frames.dtype == np.uint8:
        return (frames / np.float32(255)).astype(np.float32)
    frames = frames.astype(np.float32)
    if not np.all(np.isfinite(frames)):
        _fail(source, f"{path}/data", "frames hold NaN or infinite values")
    return frames


def _onsets(source, path: str, series, num_frames: int) -> np.ndarray:
    """float64 [F] onset time of every frame (timestamps, or starting_time + f / rate)."""
    if series.timestamps is not None:
        onsets = np.asarray(series.timestamps[()], np.float64).reshape(-1)
        if onsets.shape[0] != num_frames:
            _fail(
                source,
                f"{path}/timestamps",
                f"{onsets.shape[0]} timestamps for {num_frames} frames",
            )
        if np.any(np.diff(onsets) <= 0):
            _fail(source, f"{path}/timestamps", "timestamps must increase strictly")
        return onsets
    rate = series.rate
    if rate is None or not rate > 0:
        _fail(source, path, f"needs timestamps or a positive rate, got rate={rate!r}")
    return float(series.starting_time or 0.0) + np.arange(num_frames) / float(rate)


def _frame_at(onsets: np.ndarray, times: np.ndarray) -> np.ndarray:
    """int64 [...] index of the frame shown at each time (−1 before the first onset)."""
    # Rounded like the spike bins: a bin starting exactly at a frame onset shows that frame.
    return np.searchsorted(np.round(onsets, 9), np.round(times, 9), side="right") - 1


def _table_column(source, path: str, table, column: str) -> np.ndarray:
    if column not in table.colnames and column not in ("start_time", "stop_time"):
        _fail(
            source,
            path,
            f"no column {column!r} (columns: {['start_time', 'stop_time', *table.colnames]})",
        )
    return np.asarray(table[column][:])


def _bin_spikes(spike_times, starts: np.ndarray, bin_width_s: float, num_bins: int) -> np.ndarray:
    """int32 counts [trials, num_bins, units]: bin b of trial k = [s_k + b·dt, s_k + (b+1)·dt)."""
    counts = np.zeros((len(starts), num_bins, len(spike_times)), np.int32)
    for u, times in enumerate(spike_times):
        for k, start in enumerate(starts):
            bins = np.floor(np.round((times - start) / bin_width_s, 9)).astype(np.int64)
            inside = bins[(bins >= 0) & (bins < num_bins)]
            counts[k, :, u] = np.bincount(inside, minlength=num_bins)
    return counts


def _split_trials(
    source,
    movie_trials: dict[str, np.ndarray],
    split_labels: np.ndarray | None,
    split: Sequence[int] | None,
) -> dict[str, dict[str, np.ndarray]]:
    """{split: {movie: trial indices within the movie}} from labels, counts or the default."""
    splits: dict[str, dict[str, np.ndarray]] = {name: {} for name in SPLITS}
    for movie, rows in movie_trials.items():
        n = len(rows)
        if split_labels is not None:
            labels = split_labels[rows]
            for name in SPLITS:
                splits[name][movie] = np.flatnonzero(labels == name)
            continue
        if split is not None:
            num_train, num_test, num_validation = (int(s) for s in split)
            if min(num_train, num_test, num_validation) < 0 or sum(split) != n:
                _fail(
                    source,
                    "/intervals/trials",
                    f"split {tuple(split)} (train, test, validation) must sum to the {n} "
                    f"trials of movie {movie!r}",
                )
        elif n < 3:
            num_train, num_test, num_validation = n, 0, 0
        else:  # the pvc-11 proportions: 2/3 train, then 1/4 test, the rest validation
            num_train, num_test = 2 * n // 3, n // 4
            num_validation = n - num_train - num_test
        order = np.arange(n)
        splits["train"][movie] = order[:num_train]
        splits["test"][movie] = order[num_train : num_train + num_test]
        splits["validation"][movie] = order[num_train + num_test :]
    return {
        name: {m: t.astype(np.int64) for m, t in movies.items() if len(t)}
        for name, movies in splits.items()
        if any(len(t) for t in movies.values())
    }


def import_nwb(
    path: str | os.PathLike,
    *,
    bin_width_s: float = 0.04,
    stimulus: str | None = None,
    presentations: str | None = None,
    template: str | None = None,
    frame_column: str = "frame",
    movie_column: str | None = None,
    split_column: str | None = None,
    split: Sequence[int] | None = None,
    units: Sequence[int] | None = None,
    num_bins: int | None = None,
    image_size: int | None = None,
) -> Recording:
    """Imports an NWB file into a ``Recording`` (see the module docstring for the rules).

    Args:
      path: the NWB (HDF5) file.
      bin_width_s: dt in seconds.
      stimulus: name of the stimulus ``ImageSeries`` (default: the only one in the file).
      presentations: name of a ``TimeIntervals`` table in ``/intervals`` that gives the frame
        shown in each interval; its frames come from ``template``.
      template: the ``ImageSeries`` whose frames ``presentations`` indexes (default: the only
        one in the file).
      frame_column: the frame-index column of ``presentations``.
      movie_column: trials-table column naming each trial's movie (None: one movie,
        ``"movie"``).
      split_column: trials-table column with "train" / "test" / "validation" per trial.
      split: (train, test, validation) trial counts per movie, in trial order, when there is
        no ``split_column``. Default: 2/3 train, 1/4 test, the rest validation (all train for
        movies with fewer than 3 trials).
      units: ids (the units table's ``id``) of the units to keep; None keeps all.
      num_bins: keep the first ``num_bins`` bins of every trial (trials must be at least that
        long); None: every trial of a movie must have the same number of bins.
      image_size: resize frames to image_size × image_size (area averaging); None keeps them.

    Returns:
      Recording (one movie per value of ``movie_column``) whose ``attrs`` report the source,
      options and clipping counts.

    Raises:
      DataError: a ``ValueError`` naming the NWB path of the problem: a missing or empty units
        or trials table, no (or an ambiguous) stimulus, a missing column, trials of unequal
        length, a bin without a frame, trials of one movie that show different frames,
        unknown unit ids or split labels, a bad split.
      ImportError: if pynwb is not installed.
    """
    try:
        from pynwb import NWBHDF5IO
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "rsnn_jax.data.nwb needs pynwb: pip install 'rsnn_jax[nwb]' (or pip install pynwb)"
        ) from error
    if not bin_width_s > 0:
        raise ValueError(f"import_nwb: bin_width_s must be > 0, got {bin_width_s!r}")
    if stimulus is not None and presentations is not None:
        raise ValueError("import_nwb: pass stimulus= (an ImageSeries) or presentations=, not both")
    source = os.fspath(path)
    if not os.path.exists(source):
        raise FileNotFoundError(f"import_nwb: no such file {source!r}")
    io = None
    try:
        io = NWBHDF5IO(source, mode="r", load_namespaces=True)
        nwbfile = io.read()
    except Exception as error:  # h5py/hdmf raise many types for a file that is not NWB
        if io is not None:
            io.close()
        _fail(source, "/", f"cannot read as NWB: {type(error).__name__}: {error}")
    with io:
        return _import(
            source,
            nwbfile,
            bin_width_s=float(bin_width_s),
            stimulus=stimulus,
            presentations=presentations,
            template=template,
            frame_column=frame_column,
            movie_column=movie_column,
            split_column=split_column,
            split=split,
            units=units,
            num_bins=num_bins,
            image_size=image_size,
        )


def _read_units(source, nwbfile, units):
    table = nwbfile.units
    if table is None:
        _fail(source, "/units", "missing (the file has no units table)")
    ids = np.asarray(table.id[:], np.int64)
    if len(ids) == 0:
        _fail(source, "/units", "the units table is empty")
    if "spike_times" not in table.colnames:
        _fail(source, "/units/spike_times", "missing column (spike times of every unit)")
    keep = np.arange(len(ids))
    if units is not None:
        wanted = np.asarray(units, np.int64)
        unknown = sorted(set(wanted.tolist()) - set(ids.tolist()))
        if unknown or len(wanted) == 0:
            _fail(source, "/units/id", f"unknown unit ids {unknown or '(none given)'}")
        keep = np.array([int(np.flatnonzero(ids == u)[0]) for u in wanted])
    spike_times = []
    for row in keep:
        times = np.asarray(table["spike_times"][int(row)], np.float64).reshape(-1)
        if not np.all(np.isfinite(times)):
            _fail(source, "/units/spike_times", f"unit {ids[row]} has non-finite spike times")
        spike_times.append(times)
    return ids[keep], spike_times


def _read_trials(source, nwbfile, movie_column, split_column):
    table = nwbfile.trials
    if table is None:
        _fail(source, "/intervals/trials", "missing (the file has no trials table)")
    starts = np.asarray(table["start_time"][:], np.float64)
    stops = np.asarray(table["stop_time"][:], np.float64)
    if len(starts) == 0:
        _fail(source, "/intervals/trials", "the trials table is empty")
    if not (np.all(np.isfinite(starts)) and np.all(np.isfinite(stops)) and np.all(stops > starts)):
        _fail(source, "/intervals/trials", "every trial needs finite start_time < stop_time")
    if movie_column is None:
        movies = np.full(len(starts), DEFAULT_MOVIE, dtype=object)
    else:
        values = _table_column(source, "/intervals/trials", table, movie_column)
        movies = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], object)
    labels = None
    if split_column is not None:
        values = _table_column(source, "/intervals/trials", table, split_column)
        labels = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values])
        bad = sorted(set(labels.tolist()) - set(SPLITS))
        if bad:
            _fail(
                source,
                f"/intervals/trials/{split_column}",
                f"unknown split labels {bad} (expected {list(SPLITS)})",
            )
    return starts, stops, movies, labels


def _frame_source(source, nwbfile, stimulus, presentations, template, frame_column):
    """(frames [F, x, y], index_of(times) → frame indices (−1: none), description)."""
    if presentations is None:
        path, series = _choose_series(source, nwbfile, stimulus, "stimulus")
        frames = _frames(source, path, series)
        onsets = _onsets(source, path, series, frames.shape[0])
        return frames, lambda times: _frame_at(onsets, times), path
    if presentations not in nwbfile.intervals or presentations == "trials":
        tables = sorted(k for k in nwbfile.intervals if k != "trials")
        _fail(source, f"/intervals/{presentations}", f"no presentation table (tables: {tables})")
    table_path = f"/intervals/{presentations}"
    table = nwbfile.intervals[presentations]
    starts = np.asarray(table["start_time"][:], np.float64)
    stops = np.asarray(table["stop_time"][:], np.float64)
    index = _table_column(source, table_path, table, frame_column)
    path, series = _choose_series(source, nwbfile, template, "template")
    frames = _frames(source, path, series)
    integral = index.dtype.kind in "iu" or (
        index.dtype.kind == "f" and np.all(np.isfinite(index)) and np.all(index % 1 == 0)
    )
    if not integral:
        _fail(source, f"{table_path}/{frame_column}", "frame indices must be integers")
    index = index.astype(np.int64)
    if len(index) and (index.min() < 0 or index.max() >= frames.shape[0]):
        _fail(
            source,
            f"{table_path}/{frame_column}",
            f"frame indices must be in [0, {frames.shape[0]}) (the frames of {path}), got "
            f"[{index.min()}, {index.max()}]",
        )
    order = np.argsort(starts, kind="stable")
    starts, stops, index = starts[order], stops[order], index[order]

    def index_of(times):
        row = _frame_at(starts, times)
        valid = row >= 0
        inside = valid & (np.round(times, 9) < np.round(stops[np.maximum(row, 0)], 9))
        return np.where(inside, index[np.maximum(row, 0)], -1)

    return frames, index_of, f"{table_path} (frames of {path})"


def _movie_bins(source, movie, rows, lengths, num_bins, bin_width_s) -> int:
    """Bins per trial of ``movie``: its trials' common length, or ``num_bins`` (then every
    trial must be at least that long)."""
    if num_bins is None:
        if len(set(lengths[rows].tolist())) != 1:
            _fail(
                source,
                "/intervals/trials",
                f"trials of movie {movie!r} have unequal lengths {sorted(set(lengths[rows]))} "
                f"bins of {bin_width_s} s (trials {rows.tolist()}); pass num_bins to keep "
                "the first bins of each",
            )
        bins = int(lengths[rows[0]])
    else:
        bins = int(num_bins)
        short = rows[lengths[rows] < bins]
        if bins < 1 or len(short):
            _fail(
                source,
                "/intervals/trials",
                f"num_bins={bins}, but trials {short.tolist()} of movie {movie!r} are "
                f"shorter ({lengths[short].tolist()} bins)",
            )
    if bins < 1:
        _fail(source, "/intervals/trials", f"trials of movie {movie!r} are shorter than a bin")
    return bins


def _movie_frames(source, stimulus_path, frames, shown, times, rows, movie, movie_column):
    """The frames [bins, H, W] that ``movie``'s trials show (``shown``: frame index per trial
    and bin, −1 where none); every trial must show the same ones."""
    missing = np.argwhere(shown < 0)
    if len(missing):
        k, b = missing[0]
        _fail(
            source,
            stimulus_path,
            f"no frame is shown at t = {times[k, b]:.6g} s (trial {rows[k]}, bin {b}): "
            f"{len(missing)} bins of movie {movie!r} have no stimulus",
        )
    movie_frames = frames[shown[0]]
    for k in range(1, len(rows)):
        if not np.array_equal(shown[k], shown[0]) and not np.array_equal(
            frames[shown[k]], movie_frames
        ):
            where = "" if movie_column is None else f" (grouped by {movie_column!r})"
            _fail(
                source,
                "/intervals/trials",
                f"trials {rows[0]} and {rows[k]} of movie {movie!r}{where} show different "
                "frames; a movie's trials must repeat one stimulus (give a movie_column "
                "that separates them)",
            )
    return movie_frames


def _import(
    source,
    nwbfile,
    *,
    bin_width_s,
    stimulus,
    presentations,
    template,
    frame_column,
    movie_column,
    split_column,
    split,
    units,
    num_bins,
    image_size,
) -> Recording:
    neuron_ids, spike_times = _read_units(source, nwbfile, units)
    starts, stops, movies, labels = _read_trials(source, nwbfile, movie_column, split_column)
    frames, index_of, stimulus_path = _frame_source(
        source, nwbfile, stimulus, presentations, template, frame_column
    )
    if image_size is not None:
        from rsnn_jax.data.pvc11 import resize_frames

        frames = resize_frames(frames, image_size)
    lengths = np.floor(np.round((stops - starts) / bin_width_s, 6)).astype(np.int64)
    stimuli, spikes, repeated, movie_rows = {}, {}, {}, {}
    clipped = multi = total_bins = 0
    for movie in dict.fromkeys(movies.tolist()):
        rows = np.flatnonzero(movies == movie)
        movie_rows[movie] = rows
        bins = _movie_bins(source, movie, rows, lengths, num_bins, bin_width_s)
        times = starts[rows, None] + np.arange(bins)[None] * bin_width_s  # [k, bins]
        movie_frames = _movie_frames(
            source, stimulus_path, frames, index_of(times), times, rows, movie, movie_column
        )
        counts = _bin_spikes(spike_times, starts[rows], bin_width_s, bins)
        clipped += int(np.maximum(counts - 1, 0).sum())
        multi += int((counts > 1).sum())
        total_bins += counts.size
        stimuli[movie] = movie_frames.astype(np.float32)
        spikes[movie] = np.minimum(counts, 1).astype(np.uint8)
        repeated[movie] = len(rows) > 1
    splits = _split_trials(source, movie_rows, labels, split)
    if "train" not in splits:
        _fail(
            source,
            "/intervals/trials",
            "no training trial: every trial is labelled test or validation",
        )
    attrs = _attrs(source, nwbfile, stimulus_path, movie_column, clipped, multi, total_bins)
    if image_size is not None:
        attrs["image_size"] = int(image_size)
    return Recording(
        stimuli=stimuli,
        spikes=spikes,
        bin_width_s=bin_width_s,
        repeated=repeated,
        splits=splits,
        neuron_ids=neuron_ids,
        attrs=attrs,
    )


def _attrs(source, nwbfile, stimulus_path, movie_column, clipped, multi, total_bins) -> dict:
    """The recording's provenance and binning attributes."""
    return {
        "source": "NWB",
        "importer": "rsnn_jax.data.nwb",
        "nwb_file": os.path.basename(source),
        "nwb_identifier": str(nwbfile.identifier),
        "session_description": str(nwbfile.session_description),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "stimulus_source": stimulus_path,
        "trial_alignment": "/intervals/trials start_time",
        "movie_column": movie_column or "",
        "num_clipped_spikes": clipped,
        "num_multi_spike_bins": multi,
        "fraction_multi_spike_bins": multi / max(total_bins, 1),
        "num_units_in_file": int(len(nwbfile.units.id[:])),
    }


def summary(recording: Recording) -> str:
    """Human-readable summary: movies, sizes, rates, clipping, split."""
    lines = []
    for movie, spikes in recording.spikes.items():
        rates = spikes.mean(axis=(0, 1))
        lines.append(
            f"{movie}: {spikes.shape[0]} trials × {spikes.shape[1]} bins × {spikes.shape[2]} "
            f"units ({recording.bin_width_s * 1e3:g} ms bins), frames "
            f"{recording.frame_shape}; spike probability per bin mean {rates.mean():.3f}"
        )
    a = recording.attrs
    lines.append(
        f"clipped {a.get('num_clipped_spikes', 0)} spikes; "
        f"{100 * a.get('fraction_multi_spike_bins', 0.0):.2f} % of bins held > 1 spike"
    )
    lines.append(
        "split: "
        + ", ".join(f"{s} {sum(len(t) for t in m.values())}" for s, m in recording.splits.items())
    )
    return "\n".join(lines)
