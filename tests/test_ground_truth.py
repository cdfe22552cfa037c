"""The ground-truth model's /target group: round trip, malformed targets, what the writer
accepts (the file layout itself is tests/test_data_recording.py's)."""

import h5py
import jax
import numpy as np
import pytest

from rsnn_jax import encoders, ground_truth, model, network
from rsnn_jax.data import recording as rec
from tests.test_data_recording import _recording, _replace


@pytest.fixture
def valid_file(tmp_path):
    path = tmp_path / "valid.h5"
    rec.save_recording(path, _recording())
    return path


def _tiny_target(num_hidden=2):
    m = model.Model(
        encoders.V1Encoder(num_frames=3, features=(4, 8), kernel_size=3),
        network.NetworkConfig(num_visible=3, num_hidden=num_hidden, num_delays=2),
    )
    params = model.init_model(jax.random.key(1), m, (5, 4, 4))
    return ground_truth.Target(m, params)


def test_target_round_trip(tmp_path):
    target = _tiny_target()
    path = tmp_path / "t.h5"
    rec.save_recording(path, _recording(target=target))
    loaded_model, loaded_params = ground_truth.load_target(path)
    assert loaded_model == target.model
    for want, got in zip(
        jax.tree_util.tree_leaves(target.params), jax.tree_util.tree_leaves(loaded_params)
    ):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert jax.tree_util.tree_structure(loaded_params.encoder) == jax.tree_util.tree_structure(
        jax.device_get(target.params.encoder)
    )
    with h5py.File(path) as f:
        assert f["/target"].attrs["num_hidden"] == 2
        assert f["/target/network/recurrent_weights"].shape == (2, 5, 5)


def test_target_with_wrong_shapes_is_rejected(tmp_path):
    path = tmp_path / "t.h5"
    rec.save_recording(path, _recording(target=_tiny_target()))
    with h5py.File(path, "r+") as f:
        _replace(f, "/target/network/bias", np.zeros((4,), np.float32))
    assert any(p.path == "/target/network/bias" for p in rec.validate_recording(path))
    rec.save_recording(path, _recording(target=_tiny_target()))
    with h5py.File(path, "r+") as f:
        kernel = "/target/encoder/params/SpatialCNN_0/Conv_0/kernel"
        _replace(f, kernel, np.zeros((3, 3, 2, 4), np.float32))
    with pytest.raises(rec.DataError, match="Conv_0/kernel: expected shape"):
        ground_truth.load_target(path)


def test_load_target_without_target(valid_file):
    with pytest.raises(rec.DataError, match="/target: missing group"):
        ground_truth.load_target(valid_file)


def test_save_refuses_a_target_that_cannot_write_itself(tmp_path):
    path = tmp_path / "t.h5"
    with pytest.raises(TypeError, match="recording.target must be None or an rsnn_jax"):
        rec.save_recording(path, _recording(target=("model", "params")))
    assert not path.exists()
