"""NWB importer: small NWB files written with pynwb, expected arrays computed independently."""

import datetime
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")

from pynwb import NWBHDF5IO, NWBFile  # noqa: E402
from pynwb.epoch import TimeIntervals  # noqa: E402
from pynwb.image import ImageSeries  # noqa: E402

from rsnn_jax.data import nwb, recording  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DT = 0.01
UNIT_IDS = (10, 11, 12)
# movie → (trial start times, bins per trial, bins per frame, its frames' indices in FRAMES)
MOVIES = {
    "a": ((1.0, 2.0, 3.0), 20, 4, (0, 1, 2, 3, 4)),
    "b": ((5.0, 6.0), 15, 5, (5, 6, 7)),
}
FRAMES = np.random.default_rng(0).integers(0, 256, size=(8, 3, 4)).astype(np.uint8)


def _spike_plan():
    """{(unit, movie, trial): sorted spike bins}, drawn once; one bin of unit 0 has 2 spikes."""
    rng = np.random.default_rng(1)
    plan = {}
    for unit in range(len(UNIT_IDS)):
        for movie, (starts, num_bins, _, _) in MOVIES.items():
            for k in range(len(starts)):
                plan[unit, movie, k] = np.sort(rng.choice(num_bins, size=4, replace=False))
    plan[0, "a", 1] = np.sort(np.append(plan[0, "a", 1], plan[0, "a", 1][0]))  # a doublet
    return plan


PLAN = _spike_plan()


def _expected():
    """Independent oracle: spikes [K, T, N] and stimulus [T, x, y] per movie, by loops."""
    spikes, stimuli = {}, {}
    for movie, (starts, num_bins, frame_bins, frame_ids) in MOVIES.items():
        z = np.zeros((len(starts), num_bins, len(UNIT_IDS)), np.uint8)
        for (unit, name, k), bins in PLAN.items():
            if name == movie:
                z[k, bins, unit] = 1
        spikes[movie] = z
        stimuli[movie] = np.stack(
            [FRAMES[frame_ids[b // frame_bins]] / np.float32(255) for b in range(num_bins)]
        ).astype(np.float32)
    return spikes, stimuli


def _session():
    return NWBFile(
        session_description="rsnn_jax NWB importer test",
        identifier="rsnn-jax-test",
        session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
    )


def _add_units(nwbfile):
    for unit, unit_id in enumerate(UNIT_IDS):
        times = [-1.0, 9.5]  # outside every trial: ignored
        for (u, movie, k), bins in PLAN.items():
            if u == unit:
                start = MOVIES[movie][0][k]
                # Mid-bin times, and one spike exactly on a bin edge (lands in that bin).
                times += [start + (b + (0.0 if i == 0 else 0.37)) * DT for i, b in enumerate(bins)]
        nwbfile.add_unit(spike_times=np.sort(times), id=unit_id)


def _add_trials(nwbfile, lengths=None, movie_column=True):
    if movie_column:
        nwbfile.add_trial_column("movie", "movie shown in the trial")
    index = 0
    for movie, (starts, num_bins, _, _) in MOVIES.items():
        for start in starts:
            bins = num_bins if lengths is None else lengths[index]
            extra = {"movie": movie} if movie_column else {}
            nwbfile.add_trial(start_time=start, stop_time=start + bins * DT, **extra)
            index += 1


def _presentations():
    """(onset times, frame ids) of every frame presentation, in time order."""
    onsets, ids = [], []
    for starts, _, frame_bins, frame_ids in MOVIES.values():
        for start in starts:
            for j, frame in enumerate(frame_ids):
                onsets.append(start + j * frame_bins * DT)
                ids.append(frame)
    return np.array(onsets), np.array(ids)


def _add_image_series(nwbfile, where="stimulus", name="movie", shift=0.0):
    onsets, ids = _presentations()
    series = ImageSeries(name=name, data=FRAMES[ids], unit="n.a.", timestamps=onsets + shift)
    {"stimulus": nwbfile.add_stimulus, "acquisition": nwbfile.add_acquisition}[where](series)


def _add_presentation_table(nwbfile, frame_offset=0):
    nwbfile.add_stimulus_template(ImageSeries(name="template", data=FRAMES, unit="n.a.", rate=1.0))
    table = TimeIntervals(name="movie_presentations", description="frame presentations")
    table.add_column("frame", "index into the template")
    for starts, _, frame_bins, frame_ids in MOVIES.values():
        for start in starts:
            for j, frame in enumerate(frame_ids):
                onset = start + j * frame_bins * DT
                table.add_interval(
                    start_time=onset, stop_time=onset + frame_bins * DT, frame=frame + frame_offset
                )
    nwbfile.add_time_intervals(table)


def _write(path, nwbfile):
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return str(path)


def _standard_file(path, stimulus="image_series"):
    nwbfile = _session()
    _add_units(nwbfile)
    _add_trials(nwbfile)
    if stimulus == "image_series":
        _add_image_series(nwbfile)
    else:
        _add_presentation_table(nwbfile)
    return _write(path, nwbfile)


def _check_against_oracle(data):
    spikes, stimuli = _expected()
    assert data.movies == ("a", "b")
    for movie in MOVIES:
        np.testing.assert_array_equal(data.spikes[movie], spikes[movie])
        np.testing.assert_allclose(data.stimuli[movie], stimuli[movie], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(data.neuron_ids, UNIT_IDS)
    assert data.repeated == {"a": True, "b": True}
    assert data.bin_width_s == DT
    assert data.attrs["num_clipped_spikes"] == 1 and data.attrs["num_multi_spike_bins"] == 1
    assert data.attrs["fraction_multi_spike_bins"] == pytest.approx(1 / (3 * 20 * 3 + 2 * 15 * 3))


@pytest.mark.parametrize("stimulus", ["image_series", "presentation_table"])
def test_import_equals_the_arrays_the_file_was_built_from(tmp_path, stimulus):
    path = _standard_file(tmp_path / "session.nwb", stimulus)
    kwargs = {"presentations": "movie_presentations"} if stimulus != "image_series" else {}
    data = nwb.import_nwb(path, bin_width_s=DT, movie_column="movie", **kwargs)
    _check_against_oracle(data)
    # Default split, per movie in trial order: 2/3 train, 1/4 test, the rest validation.
    assert {s: {m: t.tolist() for m, t in v.items()} for s, v in data.splits.items()} == {
        "train": {"a": [0, 1], "b": [0, 1]},
        "validation": {"a": [2]},
    }
    out = tmp_path / "session.h5"
    recording.save_recording(out, data)
    assert recording.validate_recording(out) == []
    loaded = recording.load_recording(out)
    for movie in MOVIES:
        np.testing.assert_array_equal(loaded.spikes[movie], data.spikes[movie])
        np.testing.assert_array_equal(loaded.stimuli[movie], data.stimuli[movie])


def test_units_split_num_bins_and_image_size(tmp_path):
    nwbfile = _session()
    _add_units(nwbfile)
    nwbfile.add_trial_column("movie", "movie")
    nwbfile.add_trial_column("fold", "split")
    folds = iter(["train", "test", "train", "train", "validation"])
    for movie, (starts, num_bins, _, _) in MOVIES.items():
        for start in starts:
            nwbfile.add_trial(
                start_time=start, stop_time=start + num_bins * DT, movie=movie, fold=next(folds)
            )
    _add_image_series(nwbfile, where="acquisition")
    path = _write(tmp_path / "s.nwb", nwbfile)
    data = nwb.import_nwb(
        path,
        bin_width_s=DT,
        movie_column="movie",
        split_column="fold",
        units=[12, 10],
        num_bins=12,
        image_size=2,
    )
    spikes, stimuli = _expected()
    for movie in MOVIES:
        np.testing.assert_array_equal(data.spikes[movie], spikes[movie][:, :12][..., [2, 0]])
        # Area averaging 3 × 4 → 2 × 2, by hand: rows {0, 0.5·1} | {0.5·1, 2}, cols {0,1} | {2,3}.
        frames = stimuli[movie][:12].astype(np.float64)
        rows = np.array([[1, 0.5, 0], [0, 0.5, 1]]) / 1.5
        cols = np.array([[1, 1, 0, 0], [0, 0, 1, 1]]) / 2.0
        expected = np.einsum("ox,fxy,py->fop", rows, frames, cols)
        np.testing.assert_allclose(data.stimuli[movie], expected, atol=1e-6)
    np.testing.assert_array_equal(data.neuron_ids, [12, 10])
    assert {s: {m: t.tolist() for m, t in v.items()} for s, v in data.splits.items()} == {
        "train": {"a": [0, 2], "b": [0]},
        "test": {"a": [1]},
        "validation": {"b": [1]},
    }


def test_without_movie_column_one_movie_and_explicit_split(tmp_path):
    nwbfile = _session()
    _add_units(nwbfile)
    starts, num_bins = MOVIES["a"][0], MOVIES["a"][1]
    for start in starts:
        nwbfile.add_trial(start_time=start, stop_time=start + num_bins * DT)
    _add_image_series(nwbfile)
    data = nwb.import_nwb(_write(tmp_path / "s.nwb", nwbfile), bin_width_s=DT, split=(1, 1, 1))
    spikes, _ = _expected()
    assert data.movies == ("movie",)
    np.testing.assert_array_equal(data.spikes["movie"], spikes["a"])
    assert {s: v["movie"].tolist() for s, v in data.splits.items()} == {
        "train": [0],
        "test": [1],
        "validation": [2],
    }


def _bad(tmp_path, case):
    """Builds the NWB file of a bad-input case; returns (path, import kwargs)."""
    nwbfile = _session()
    kwargs = {"bin_width_s": DT, "movie_column": "movie"}
    if case != "no_units":
        _add_units(nwbfile)
    if case == "unequal_trials":
        _add_trials(nwbfile, lengths=[20, 19, 20, 15, 15])
    elif case == "no_movie_column":
        _add_trials(nwbfile, movie_column=False)
    elif case != "no_trials":
        _add_trials(nwbfile)
    if case == "trial_before_stimulus":
        _add_image_series(nwbfile, shift=0.5)
    elif case == "different_frames":
        onsets, ids = _presentations()
        ids = ids.copy()
        ids[len(MOVIES["a"][3])] = 7  # trial 1 of movie "a" starts with another frame
        nwbfile.add_stimulus(
            ImageSeries(name="movie", data=FRAMES[ids], unit="n", timestamps=onsets)
        )
    elif case == "two_series":
        _add_image_series(nwbfile)
        _add_image_series(nwbfile, where="acquisition", name="eye_camera")
    elif case == "frame_out_of_range":
        _add_presentation_table(nwbfile, frame_offset=5)
        kwargs["presentations"] = "movie_presentations"
    elif case == "unknown_table":
        _add_presentation_table(nwbfile)
        kwargs["presentations"] = "gratings"
    elif case != "no_stimulus":
        _add_image_series(nwbfile)
    if case == "unknown_unit":
        kwargs["units"] = [10, 99]
    if case == "short_num_bins":
        kwargs["num_bins"] = 18
    return _write(tmp_path / f"{case}.nwb", nwbfile), kwargs


BAD_CASES = {
    "no_units": ("/units", "no units table"),
    "no_trials": ("/intervals/trials", "no trials table"),
    "no_stimulus": ("/stimulus", "no ImageSeries"),
    "two_series": ("/stimulus", "several ImageSeries"),
    "unequal_trials": ("/intervals/trials", "unequal lengths"),
    "no_movie_column": ("/intervals/trials", "no column 'movie'"),
    "trial_before_stimulus": ("/stimulus/presentation/movie", "no frame is shown"),
    "different_frames": ("/intervals/trials", "show different frames"),
    "frame_out_of_range": ("/intervals/movie_presentations/frame", "frame indices must be in"),
    "unknown_table": ("/intervals/gratings", "no presentation table"),
    "unknown_unit": ("/units/id", "unknown unit ids [99]"),
    "short_num_bins": ("/intervals/trials", "num_bins=18, but trials [3, 4]"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_inputs_raise_a_value_error_naming_the_nwb_path(tmp_path, case):
    path, kwargs = _bad(tmp_path, case)
    nwb_path, message = BAD_CASES[case]
    with pytest.raises(ValueError) as error:
        nwb.import_nwb(path, **kwargs)
    text = str(error.value)
    assert f"{nwb_path}:" in text and message in text, text
    assert path in text


def test_not_an_nwb_file_and_missing_file(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="/: cannot read as NWB"):
        nwb.import_nwb(path)
    with pytest.raises(FileNotFoundError, match="missing.nwb"):
        nwb.import_nwb(tmp_path / "missing.nwb")


def _cli(*flags):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-m", "experiments.import_nwb", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_command_line_writes_a_valid_recording_and_reports_errors(tmp_path):
    path = _standard_file(tmp_path / "session.nwb")
    out = tmp_path / "session.h5"
    result = _cli(f"--nwb={path}", f"--out={out}", f"--bin_width_s={DT}", "--movie_column=movie")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "clipped 1 spikes" in result.stdout
    _check_against_oracle(recording.load_recording(out))
    # Without --movie_column all trials are one movie, of unequal lengths (20 and 15 bins).
    bad = _cli(f"--nwb={path}", f"--out={out}", f"--bin_width_s={DT}")
    assert bad.returncode != 0
    assert "/intervals/trials: trials of movie 'movie' have unequal lengths" in bad.stderr
    assert "Traceback" not in bad.stderr
