"""Retina importer on hand-built movies: frames onto bins, appendix A split, clipping."""

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from rsnn_jax.data import retina
from rsnn_jax.data.recording import DataError, load_recording


def _movies():
    unrepeated_frames = np.array([[[0, 255]], [[51, 102]], [[255, 0]]], np.uint8)  # 3 × 1 × 2
    unrepeated_spikes = np.zeros((1, 6, 2), np.uint8)
    unrepeated_spikes[0, [0, 3, 5], [0, 1, 0]] = 1
    repeated_frames = np.arange(2 * 1 * 2, dtype=np.float32).reshape(2, 1, 2)
    repeated_spikes = np.zeros((4, 5, 2), np.uint8)
    repeated_spikes[:, 2, 1] = 1
    return {
        "unrepeated": retina.RetinaMovie(unrepeated_frames, unrepeated_spikes, frame_bins=2),
        "repeated_1": retina.RetinaMovie(
            repeated_frames, repeated_spikes, frame_index=np.array([0, 0, 1, 1, 0])
        ),
        "repeated_2": retina.RetinaMovie(repeated_frames, repeated_spikes[:3], frame_bins=3),
    }


def _split(movies, num_validation_repeats=0):
    return retina.appendix_a_split(
        "unrepeated",
        "repeated_1",
        "repeated_2",
        {name: m.spikes.shape[0] for name, m in movies.items()},
        num_validation_repeats,
    )


def test_frames_are_repeated_onto_the_bin_grid():
    movies = _movies()
    recording = retina.import_retina(movies, _split(movies))
    # frame_bins = 2: bins 0,1 → frame 0; 2,3 → 1; 4,5 → 2; uint8 scaled to [0, 1].
    expected = np.array([[[0, 1]], [[0, 1]], [[0.2, 0.4]], [[0.2, 0.4]], [[1, 0]], [[1, 0]]])
    np.testing.assert_allclose(recording.stimuli["unrepeated"], expected, rtol=1e-6)
    frames = movies["repeated_1"].stimulus
    np.testing.assert_array_equal(recording.stimuli["repeated_1"], frames[[0, 0, 1, 1, 0]])
    np.testing.assert_array_equal(recording.stimuli["repeated_2"], frames[[0, 0, 0, 1, 1]])
    np.testing.assert_array_equal(recording.spikes["unrepeated"], movies["unrepeated"].spikes)
    assert recording.repeated == {"unrepeated": False, "repeated_1": True, "repeated_2": True}
    assert recording.bin_width_s == pytest.approx(1 / 600)


def test_appendix_a_split_and_validation_repeats():
    movies = _movies()
    recording = retina.import_retina(movies, _split(movies))
    assert set(recording.splits) == {"train", "test"}
    np.testing.assert_array_equal(recording.splits["train"]["unrepeated"], [0])
    np.testing.assert_array_equal(recording.splits["train"]["repeated_1"], [0, 1, 2, 3])
    np.testing.assert_array_equal(recording.splits["test"]["repeated_2"], [0, 1, 2])
    assert "repeated_2" not in recording.splits["train"]
    held_out = retina.import_retina(movies, _split(movies, num_validation_repeats=1))
    np.testing.assert_array_equal(held_out.splits["train"]["repeated_1"], [0, 1, 2])
    np.testing.assert_array_equal(held_out.splits["validation"]["repeated_1"], [3])


def test_counts_are_an_error_unless_clipped_and_then_reported():
    movies = _movies()
    counts = movies["repeated_1"].spikes.copy()
    counts[0, 2, 1] = 3
    counts[1, 2, 1] = 2
    movies["repeated_1"] = movies["repeated_1"]._replace(spikes=counts)
    with pytest.raises(DataError, match="repeated_1/spikes: 2 bins hold counts > 1"):
        retina.import_retina(movies, _split(movies))
    recording = retina.import_retina(movies, _split(movies), clip_counts=True)
    assert recording.attrs["num_clipped_spikes"] == 3
    assert recording.attrs["num_multi_spike_bins"] == 2
    assert recording.spikes["repeated_1"].max() == 1


def test_too_few_frames_names_the_movie():
    movies = _movies()
    movies["unrepeated"] = movies["unrepeated"]._replace(frame_bins=1)
    with pytest.raises(DataError, match="unrepeated/stimulus: 3 frames, but the bins need frame 5"):
        retina.import_retina(movies, _split(movies))


def _write_h5(path, movies):
    with h5py.File(path, "w") as f:
        for name, movie in movies.items():
            group = f.create_group(name)
            group["stimulus"] = movie.stimulus
            group["spikes"] = movie.spikes
            if movie.frame_bins is not None:
                group.attrs["frame_bins"] = movie.frame_bins
            else:
                group["frame_index"] = movie.frame_index


def _write_npz(path, movies):
    arrays = {}
    for name, movie in movies.items():
        arrays[f"{name}/stimulus"] = movie.stimulus
        arrays[f"{name}/spikes"] = movie.spikes
        if movie.frame_bins is not None:
            arrays[f"{name}/frame_bins"] = np.array(movie.frame_bins)
        else:
            arrays[f"{name}/frame_index"] = movie.frame_index
    np.savez(path, **arrays)


@pytest.mark.parametrize("writer, suffix", [(_write_h5, ".h5"), (_write_npz, ".npz")])
def test_input_files_give_the_same_recording(tmp_path, writer, suffix):
    movies = _movies()
    path = tmp_path / f"input{suffix}"
    writer(path, movies)
    read = retina.read_retina_file(path)
    from_file = retina.import_retina(read, _split(read))
    direct = retina.import_retina(movies, _split(movies))
    for name in movies:
        np.testing.assert_array_equal(from_file.stimuli[name], direct.stimuli[name])
        np.testing.assert_array_equal(from_file.spikes[name], direct.spikes[name])


def _importer(*flags):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(
        [sys.executable, "-m", "experiments.import_retina", *flags],
        cwd=root,
        capture_output=True,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        timeout=120,
    )


def test_command_line(tmp_path):
    movies = _movies()
    _write_h5(tmp_path / "in.h5", movies)
    out = tmp_path / "retina.h5"
    result = _importer(
        f"--input={tmp_path / 'in.h5'}", f"--out={out}", "--num_validation_repeats=1"
    )
    assert result.returncode == 0, result.stderr
    loaded = load_recording(out)
    np.testing.assert_array_equal(loaded.splits["validation"]["repeated_1"], [3])
    np.testing.assert_array_equal(loaded.spikes["repeated_2"], movies["repeated_2"].spikes)
    assert loaded.attrs["input_file"] == "in.h5"


def test_command_line_mistakes_end_in_one_line(tmp_path):
    _write_h5(tmp_path / "in.h5", _movies())
    cases = [
        ((f"--input={tmp_path / 'missing.h5'}",), "--input: no such file"),
        ((f"--input={tmp_path / 'in.h5'}", "--test_repeated=nope"), "nope"),
    ]
    for flags, message in cases:
        result = _importer(*flags, f"--out={tmp_path / 'out.h5'}")
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and message in line, line
