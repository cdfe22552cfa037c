"""The recording layout: round trip, atomic writes, and one test per kind of malformed file."""

import os

import h5py
import numpy as np
import pytest

from rsnn_jax.data import recording as rec


def _recording(**overrides):
    rng = np.random.default_rng(0)
    fields = dict(
        stimuli={
            "natural": rng.uniform(size=(12, 4, 4)).astype(np.float32),
            "once": rng.uniform(size=(7, 4, 4)).astype(np.float32),
        },
        spikes={
            "natural": (rng.uniform(size=(6, 12, 3)) < 0.3).astype(np.uint8),
            "once": (rng.uniform(size=(1, 7, 3)) < 0.3).astype(np.uint8),
        },
        bin_width_s=0.04,
        repeated={"natural": True, "once": False},
        splits={
            "train": {"natural": np.arange(4), "once": np.array([0])},
            "test": {"natural": np.array([4])},
            "validation": {"natural": np.array([5])},
        },
        neuron_ids=np.array([10, 11, 13]),
        attrs={"source": "test", "num_clipped_spikes": 0, "options": ["a", "b"]},
    )
    fields.update(overrides)
    return rec.Recording(**fields)


@pytest.fixture
def valid_file(tmp_path):
    path = tmp_path / "valid.h5"
    rec.save_recording(path, _recording())
    return path


def test_round_trip_preserves_everything(tmp_path):
    original = _recording()
    path = tmp_path / "r.h5"
    rec.save_recording(path, original)
    assert rec.validate_recording(path) == []
    loaded = rec.load_recording(path)
    assert loaded.movies == ("natural", "once")  # insertion order survives
    for name in original.movies:
        np.testing.assert_array_equal(loaded.stimuli[name], original.stimuli[name])
        np.testing.assert_array_equal(loaded.spikes[name], original.spikes[name])
        assert loaded.spikes[name].dtype == np.uint8
        assert loaded.stimuli[name].dtype == np.float32
    assert loaded.repeated == original.repeated
    assert loaded.bin_width_s == 0.04
    np.testing.assert_array_equal(loaded.neuron_ids, [10, 11, 13])
    assert set(loaded.splits) == {"train", "test", "validation"}
    np.testing.assert_array_equal(loaded.trials("train", "natural"), np.arange(4))
    np.testing.assert_array_equal(loaded.trials("test", "once"), [])
    assert loaded.attrs["source"] == "test"
    assert loaded.attrs["options"] == ["a", "b"]
    assert "format" not in loaded.attrs


def test_save_is_atomic_and_refuses_invalid_recordings(tmp_path):
    path = tmp_path / "r.h5"
    rec.save_recording(path, _recording())
    before = path.read_bytes()
    bad = _recording(repeated={"natural": True, "once": True})
    bad.spikes["once"] = np.zeros((2, 7, 3), np.uint8)  # two trials ...
    bad.repeated["once"] = False  # ... of an unrepeated movie
    with pytest.raises(rec.DataError, match="/spikes/once: an unrepeated movie has one trial"):
        rec.save_recording(path, bad)
    assert path.read_bytes() == before  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["r.h5"]  # no temporary file left


def test_saved_file_is_readable_by_others(tmp_path):
    path = tmp_path / "r.h5"
    rec.save_recording(path, _recording())
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def _replace(f, path, data, **attrs):
    del f[path]
    f[path] = data
    for key, value in attrs.items():
        f[path].attrs[key] = value


def _spikes_2d(f):
    _replace(f, "/spikes/natural", np.zeros((6, 12), np.uint8), repeated=True)


def _stimulus_2d(f):
    _replace(f, "/stimuli/natural", np.zeros((12, 16), np.float32))


def _float_spikes(f):
    _replace(f, "/spikes/natural", np.zeros((6, 12, 3), np.float32), repeated=True)


def _uint8_stimulus(f):
    _replace(f, "/stimuli/natural", np.zeros((12, 4, 4), np.uint8))


def _counts(f):
    data = f["/spikes/natural"][()]
    data[0, 0, 0] = 3
    data[1, 2, 0] = 2
    _replace(f, "/spikes/natural", data, repeated=True)


def _negative(f):
    data = f["/spikes/natural"][()].astype(np.int16)
    data[0, 0, 0] = -1
    _replace(f, "/spikes/natural", data, repeated=True)


def _nan(f):
    data = f["/stimuli/natural"][()]
    data[3, 1, 1] = np.nan
    _replace(f, "/stimuli/natural", data)


def _inf(f):
    data = f["/stimuli/natural"][()]
    data[3, 1, 1] = np.inf
    _replace(f, "/stimuli/natural", data)


def _length_mismatch(f):
    _replace(f, "/stimuli/natural", np.zeros((11, 4, 4), np.float32))


def _frame_size_mismatch(f):
    _replace(f, "/stimuli/once", np.zeros((7, 5, 4), np.float32))


def _neuron_count_mismatch(f):
    _replace(f, "/spikes/once", np.zeros((1, 7, 2), np.uint8), repeated=False)


def _missing_stimulus(f):
    del f["/stimuli/natural"]


def _missing_spikes_group(f):
    del f["/spikes"]


def _missing_repeated(f):
    del f["/spikes/natural"].attrs["repeated"]


def _unrepeated_with_trials(f):
    f["/spikes/natural"].attrs["repeated"] = False


def _missing_neuron_ids(f):
    del f["/neuron_ids"]


def _neuron_ids_length(f):
    _replace(f, "/neuron_ids", np.arange(4))


def _duplicate_neuron_ids(f):
    _replace(f, "/neuron_ids", np.array([1, 1, 2]))


def _missing_train(f):
    del f["/splits/train"]


def _empty_split(f):
    _replace(f, "/splits/test/natural", np.zeros((0,), np.int64))


def _out_of_range(f):
    _replace(f, "/splits/test/natural", np.array([6]))


def _duplicate_trials(f):
    _replace(f, "/splits/train/natural", np.array([0, 1, 1]))


def _trial_in_two_splits(f):
    _replace(f, "/splits/test/natural", np.array([3]))


def _unknown_movie(f):
    f["/splits/test/nosuchmovie"] = np.array([0])


def _unknown_split(f):
    f["/splits/holdout/natural"] = np.array([5])
    del f["/splits/validation"]


def _wrong_format(f):
    f.attrs["format"] = "something else"


def _bad_bin_width(f):
    f.attrs["bin_width_s"] = -0.04


def _missing_version(f):
    del f.attrs["format_version"]


MALFORMED = [
    # (id, mutation, expected path, message fragment, validator kwargs)
    ("spikes-rank", _spikes_2d, "/spikes/natural", "expected 3 dimensions [trials, bins", {}),
    ("stimulus-rank", _stimulus_2d, "/stimuli/natural", "expected 3 dimensions [frames", {}),
    ("spikes-dtype", _float_spikes, "/spikes/natural", "integer dtype", {}),
    ("stimulus-dtype", _uint8_stimulus, "/stimuli/natural", "floating-point dtype", {}),
    ("non-binary", _counts, "/spikes/natural", "2 bins hold counts > 1 (max 3)", {}),
    ("negative-counts", _negative, "/spikes/natural", "1 negative spike counts", {}),
    ("nan-stimulus", _nan, "/stimuli/natural", "1 NaN and 0 infinite", {}),
    ("inf-stimulus", _inf, "/stimuli/natural", "0 NaN and 1 infinite", {}),
    ("length-mismatch", _length_mismatch, "/spikes/natural", "12 bins but", {}),
    ("frame-size", _frame_size_mismatch, "/stimuli/once", "all movies share one frame size", {}),
    ("neuron-count", _neuron_count_mismatch, "/spikes/once", "2 neurons, but", {}),
    ("missing-stimulus", _missing_stimulus, "/stimuli/natural", "missing dataset", {}),
    ("missing-spikes", _missing_spikes_group, "/spikes", "missing group", {}),
    ("missing-repeated", _missing_repeated, "/spikes/natural", "missing attribute 'repeated'", {}),
    ("unrepeated-trials", _unrepeated_with_trials, "/spikes/natural", "has one trial", {}),
    ("missing-ids", _missing_neuron_ids, "/neuron_ids", "missing dataset", {}),
    ("ids-length", _neuron_ids_length, "/neuron_ids", "4 ids for 3 neurons", {}),
    ("ids-unique", _duplicate_neuron_ids, "/neuron_ids", "not unique", {}),
    ("missing-train", _missing_train, "/splits/train", "needs a train split", {}),
    ("empty-split", _empty_split, "/splits/test", "empty split", {}),
    ("out-of-range", _out_of_range, "/splits/test/natural", "out of range [0, 6): [6]", {}),
    ("duplicate-trials", _duplicate_trials, "/splits/train/natural", "repeated trial", {}),
    ("two-splits", _trial_in_two_splits, "/splits/test/natural", "also in split 'train'", {}),
    ("unknown-movie", _unknown_movie, "/splits/test/nosuchmovie", "absent from /spikes", {}),
    ("unknown-split", _unknown_split, "/splits/holdout", "unknown split", {}),
    ("format", _wrong_format, "/", "attribute 'format'", {}),
    ("bin-width", _bad_bin_width, "/", "bin_width_s must be a positive number", {}),
    ("version", _missing_version, "/", "missing attribute 'format_version'", {}),
    (
        "batch-size",
        lambda f: None,
        "/splits/train/natural",
        "4 training trials, fewer than the batch size 5",
        {"batch_size": 5},
    ),
]


@pytest.mark.parametrize(
    "mutate, path, fragment, kwargs",
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_validator_names_the_problem_and_its_path(valid_file, mutate, path, fragment, kwargs):
    with h5py.File(valid_file, "r+") as f:
        mutate(f)
    problems = rec.validate_recording(valid_file, **kwargs)
    assert any(p.path == path and fragment in p.message for p in problems), problems
    with pytest.raises(rec.DataError) as error:
        if kwargs:
            raise rec.DataError(problems)
        rec.load_recording(valid_file)
    assert f"{path}: " in str(error.value)


def test_validator_reports_every_problem_at_once(valid_file):
    with h5py.File(valid_file, "r+") as f:
        _nan(f)
        _missing_neuron_ids(f)
        _empty_split(f)
    problems = rec.validate_recording(valid_file)
    assert {p.path for p in problems} == {"/stimuli/natural", "/neuron_ids", "/splits/test"}
    assert len(str(rec.DataError(problems)).splitlines()) == 4  # header + one line each


@pytest.mark.parametrize("group", ["stimuli", "spikes"])
def test_a_missing_movie_group_is_reported_alone(valid_file, group):
    # Not followed by its consequences (splits "absent from /spikes", neuron-id counts).
    with h5py.File(valid_file, "r+") as f:
        del f[f"/{group}"]
    problems = rec.validate_recording(valid_file)
    assert [(p.path, p.message) for p in problems] == [(f"/{group}", "missing group")]


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"not hdf5 at all")
    [problem] = rec.validate_recording(path)
    assert problem.path == "/" and "cannot open" in problem.message


def test_counts_are_clipped_only_on_request_and_reported(valid_file):
    with h5py.File(valid_file, "r+") as f:
        _counts(f)
    with pytest.raises(rec.DataError, match="clip_counts=True"):
        rec.load_recording(valid_file)
    assert rec.validate_recording(valid_file, clip_counts=True) == []
    loaded = rec.load_recording(valid_file, clip_counts=True)
    assert loaded.attrs["num_clipped_on_load"] == 2
    assert loaded.attrs["num_clipped_on_load/natural"] == 2
    assert loaded.spikes["natural"][0, 0, 0] == 1 and loaded.spikes["natural"].max() == 1
