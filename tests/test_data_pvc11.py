"""pvc-11 importer on hand-built MATLAB v5 and v7.3 files with known spike times."""

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import scipy.io as scipy_io

from rsnn_jax.data import pvc11
from rsnn_jax.data.recording import DataError, load_recording

DT = 0.04
NUM_FRAMES = 10  # 0.4 s at 25 Hz → bins 0..9; keep the last 0.32 s = bins 2..9
KEEP_SECONDS = 0.32
FIRST_KEPT = 2

# units × trials spike times (seconds). Comments: bin, kept index.
EVENTS = [
    [  # unit 0
        [0.05, 0.10, 0.11, 0.39, 0.41],  # bin1 (dropped: before window), bin2 ×2, bin9, outside
        [0.12],  # exactly on the edge of bins 2|3: belongs to bin 3 (0.12/0.04 = 2.99999…)
        [],
        [0.21, 0.22, 0.23],  # bin5 ×3 → two spikes clipped
    ],
    [  # unit 1
        [],
        [0.3, 0.31],  # bin7 ×2 → one clipped
        [0.0, 0.079],  # bin0 (dropped), bin1 (dropped)
        [0.399],  # bin9
    ],
    [  # unit 2
        [0.15, 0.25, 0.35],  # bins 3, 6, 8
        [],
        [-0.01, 0.17],  # before onset (outside), bin4
        [0.08],  # edge 1|2 → bin2
    ],
]
# (trial, kept bin, unit) of every 1 in the expected binary array
EXPECTED_ONES = [
    (0, 0, 0), (0, 7, 0), (1, 1, 0), (3, 3, 0),
    (1, 5, 1), (3, 7, 1),
    (0, 1, 2), (0, 4, 2), (0, 6, 2), (2, 2, 2), (3, 0, 2),
]  # fmt: skip
EXPECTED_CLIPPED = 1 + 2 + 1  # spikes removed by clipping within the kept window
EXPECTED_MULTI_BINS = 3
EXPECTED_OUTSIDE = 2  # 0.41 and -0.01


def _expected_spikes():
    spikes = np.zeros((4, NUM_FRAMES - FIRST_KEPT, 3), np.uint8)
    for trial, b, unit in EXPECTED_ONES:
        spikes[trial, b, unit] = 1
    return spikes


def _movie():
    return np.random.default_rng(0).integers(0, 256, size=(6, 6, NUM_FRAMES), dtype=np.uint8)


def _cell(events):
    cell = np.empty((len(events), len(events[0])), dtype=object)
    for u, row in enumerate(events):
        for k, times in enumerate(row):
            cell[u, k] = np.array(times, float).reshape(-1, 1) if times else np.zeros((0, 0))
    return cell


def write_v5(directory, events=EVENTS, snr=None):
    data = {"EVENTS": _cell(events)}
    if snr is not None:
        data["SNR"] = np.asarray(snr, float).reshape(1, -1)
    events_path, movie_path = directory / "events_v5.mat", directory / "movie_v5.mat"
    scipy_io.savemat(events_path, {"data": data})
    scipy_io.savemat(movie_path, {"M": _movie()})
    return events_path, movie_path


def _v73_file(path):
    return h5py.File(path, "w", userblock_size=512)


def _stamp(path):
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, written by a test"
    with open(path, "r+b") as f:
        f.write(header.ljust(128, b" "))


def write_v73(directory, events=EVENTS):
    """MATLAB v7.3 as MATLAB writes it: HDF5 with a 512-byte header, column-major arrays
    (stored transposed), cells as object references into ``#refs#``."""
    events_path, movie_path = directory / "events_v73.mat", directory / "movie_v73.mat"
    num_units, num_trials = len(events), len(events[0])
    with _v73_file(events_path) as f:
        refs = f.create_group("#refs#")
        data = f.create_group("data")
        data.attrs["MATLAB_class"] = np.bytes_("struct")
        references = np.empty((num_trials, num_units), dtype=h5py.ref_dtype)
        for u in range(num_units):
            for k in range(num_trials):
                times = np.array(events[u][k], float)
                if len(times):
                    ds = refs.create_dataset(f"c{u}_{k}", data=times.reshape(1, -1))
                    ds.attrs["MATLAB_class"] = np.bytes_("double")
                else:
                    ds = refs.create_dataset(f"c{u}_{k}", data=np.array([0, 0], np.uint64))
                    ds.attrs["MATLAB_class"] = np.bytes_("double")
                    ds.attrs["MATLAB_empty"] = np.uint8(1)
                references[k, u] = ds.ref
        cell = data.create_dataset("EVENTS", data=references)
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
    _stamp(events_path)
    with _v73_file(movie_path) as f:
        f.create_dataset("M", data=np.transpose(_movie(), (2, 1, 0)))
        f["M"].attrs["MATLAB_class"] = np.bytes_("uint8")
    _stamp(movie_path)
    return events_path, movie_path


def _import(events_path, movie_path, **kwargs):
    options = dict(image_size=3, keep_seconds=KEEP_SECONDS, split=(2, 1, 1))
    options.update(kwargs)
    return pvc11.import_pvc11(events_path, movie_path, **options)


@pytest.fixture(params=["v5", "v73"])
def files(request, tmp_path):
    return (write_v5 if request.param == "v5" else write_v73)(tmp_path)


def test_spike_times_are_binned_clipped_and_reported(files):
    recording = _import(*files)
    np.testing.assert_array_equal(recording.spikes["natural"], _expected_spikes())
    assert recording.attrs["num_clipped_spikes"] == EXPECTED_CLIPPED
    assert recording.attrs["num_multi_spike_bins"] == EXPECTED_MULTI_BINS
    assert recording.attrs["fraction_multi_spike_bins"] == pytest.approx(
        EXPECTED_MULTI_BINS / _expected_spikes().size
    )
    assert recording.attrs["num_spikes_outside_movie"] == EXPECTED_OUTSIDE
    assert recording.attrs["first_kept_bin"] == FIRST_KEPT
    assert recording.bin_width_s == DT


def test_movie_is_resized_by_block_means_and_aligned_to_bins(files):
    recording = _import(*files)
    frames = _movie().astype(float).transpose(2, 0, 1)[FIRST_KEPT:]  # bin b ↔ frame b
    expected = frames.reshape(len(frames), 3, 2, 3, 2).mean(axis=(2, 4)) / 255
    np.testing.assert_allclose(recording.stimuli["natural"], expected, rtol=1e-6)
    assert recording.stimuli["natural"].dtype == np.float32


def test_resize_to_27_from_320_keeps_the_mean_and_shape():
    frames = np.random.default_rng(1).uniform(size=(2, 320, 320))
    small = pvc11.resize_frames(frames, 27)
    assert small.shape == (2, 27, 27)
    np.testing.assert_allclose(small.mean(axis=(1, 2)), frames.mean(axis=(1, 2)), rtol=1e-5)
    constant = pvc11.resize_frames(np.full((1, 320, 320), 7.0), 27)
    np.testing.assert_allclose(constant, 7.0, rtol=1e-6)


def test_split_indices(files):
    recording = _import(*files)
    np.testing.assert_array_equal(recording.splits["train"]["natural"], [0, 1])
    np.testing.assert_array_equal(recording.splits["test"]["natural"], [2])
    np.testing.assert_array_equal(recording.splits["validation"]["natural"], [3])
    assert recording.repeated == {"natural": True}


def test_official_split_of_120_trials(tmp_path):
    events = [[[0.1 + 0.001 * k] for k in range(120)]]
    recording = pvc11.import_pvc11(
        *write_v5(tmp_path, events), image_size=3, keep_seconds=KEEP_SECONDS
    )
    np.testing.assert_array_equal(recording.splits["train"]["natural"], np.arange(80))
    np.testing.assert_array_equal(recording.splits["test"]["natural"], np.arange(80, 110))
    np.testing.assert_array_equal(recording.splits["validation"]["natural"], np.arange(110, 120))
    with pytest.raises(ValueError, match="must sum to the 120 trials"):
        pvc11.import_pvc11(
            *write_v5(tmp_path, events), keep_seconds=KEEP_SECONDS, split=(80, 30, 5)
        )


def test_v5_and_v73_give_identical_output(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    v5 = _import(*write_v5(tmp_path / "a"))
    v73 = _import(*write_v73(tmp_path / "b"))
    assert v5.attrs["events_format"] == "MATLAB v5"
    assert v73.attrs["events_format"] == "MATLAB v7.3 (HDF5)"
    for field in ("stimuli", "spikes", "splits"):
        a, b = getattr(v5, field), getattr(v73, field)
        assert a.keys() == b.keys()
        for name in a:
            if field == "splits":
                for movie in a[name]:
                    np.testing.assert_array_equal(a[name][movie], b[name][movie])
            else:
                np.testing.assert_array_equal(a[name], b[name])
    np.testing.assert_array_equal(v5.neuron_ids, v73.neuron_ids)
    for key in ("num_clipped_spikes", "num_multi_spike_bins", "num_spikes_outside_movie"):
        assert v5.attrs[key] == v73.attrs[key]


def test_unit_selection_by_list_rate_and_snr(tmp_path):
    paths = write_v5(tmp_path, snr=[3.0, 1.0, 5.0])
    chosen = _import(*paths, units=[2, 0])
    np.testing.assert_array_equal(chosen.neuron_ids, [2, 0])
    np.testing.assert_array_equal(chosen.spikes["natural"], _expected_spikes()[:, :, [2, 0]])
    # Rates over the kept 0.32 s × 4 trials, before clipping: unit 0: 7 spikes, unit 1: 3,
    # unit 2: 5 → 5.47, 2.34, 3.91 Hz.
    by_rate = _import(*paths, min_rate_hz=3.0)
    np.testing.assert_array_equal(by_rate.neuron_ids, [0, 2])
    by_snr = _import(*paths, min_snr=2.0, snr_variable="data.SNR")
    np.testing.assert_array_equal(by_snr.neuron_ids, [0, 2])
    with pytest.raises(ValueError, match="snr_variable"):
        _import(*paths, min_snr=2.0)


def test_malformed_inputs_name_the_variable(tmp_path):
    events_path = tmp_path / "bad.mat"
    scipy_io.savemat(events_path, {"data": {"SPIKES": np.zeros(3)}})
    with pytest.raises(DataError, match="data: no field 'EVENTS'"):
        pvc11.read_events(events_path)
    cell = _cell(EVENTS)
    cell[1, 2] = np.array([[0.1], [np.nan]])
    scipy_io.savemat(events_path, {"data": {"EVENTS": cell}})
    with pytest.raises(DataError, match=r"data.EVENTS\{1,2\}: non-finite spike times"):
        pvc11.read_events(events_path)


def test_command_line_writes_the_same_recording(tmp_path):
    events_path, movie_path = write_v73(tmp_path)
    out = tmp_path / "v1.h5"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.import_pvc11",
            f"--events={events_path}",
            f"--movie={movie_path}",
            f"--out={out}",
            "--image_size=3",
            f"--keep_seconds={KEEP_SECONDS}",
            "--split=2,1,1",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"clipped {EXPECTED_CLIPPED} spikes" in result.stdout
    loaded = load_recording(out)
    np.testing.assert_array_equal(loaded.spikes["natural"], _expected_spikes())
    assert loaded.attrs["num_clipped_spikes"] == EXPECTED_CLIPPED
    assert loaded.attrs["events_file"] == "events_v73.mat"


def _importer(*flags):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(
        [sys.executable, "-m", "experiments.import_pvc11", *flags],
        cwd=root,
        capture_output=True,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        timeout=120,
    )


def test_command_line_mistakes_end_in_one_line_naming_the_file(tmp_path):
    events_path, movie_path = write_v73(tmp_path)
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 4)
    no_events = tmp_path / "no_events.mat"
    scipy_io.savemat(no_events, {"data": {"SPIKES": np.zeros(3)}})
    cases = [
        ((f"--events={tmp_path}/missing.mat", f"--movie={movie_path}"), "--events: no such file"),
        ((f"--events={garbage}", f"--movie={movie_path}"), f"{garbage}: 1 problem(s): data.EVENTS"),
        ((f"--events={no_events}", f"--movie={movie_path}"), f"{no_events}: 1 problem(s)"),
        ((f"--events={events_path}", f"--movie={events_path}"), "M: no /M in the HDF5"),
        (
            (f"--events={events_path}", f"--movie={movie_path}", "--keep_seconds=1000"),
            f"keep_seconds=1000 must be in (0, 0.4]: the movie {movie_path} has 10 frames",
        ),
    ]
    for flags, message in cases:
        result = _importer(*flags, f"--out={tmp_path / 'out.h5'}", "--image_size=3")
        assert result.returncode == 2, (flags, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        assert "Traceback" not in result.stderr and lines[-1].startswith("error: "), lines
        assert message in lines[-1], (message, lines[-1])
        if "no_events" in flags[0]:
            assert "no field 'EVENTS'" in lines[-1]
    assert not (tmp_path / "out.h5").exists()
