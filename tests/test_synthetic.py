"""Synthetic ground truth: determinism, documented rates, target structure and round trip."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from rsnn_jax import ground_truth, model, network, synthetic
from rsnn_jax.data import batching, recording

V1_TINY = dict(num_visible=12, num_trials=40, num_frames=150, image_size=9, split=(30, 6, 4))
RETINA_TINY = dict(
    num_cells=9,
    image_size=4,
    temporal_kernel=40,
    num_delays=6,
    unrepeated_s=2.0,
    repeated_s=0.3,
    num_repeats=10,
)


@pytest.fixture(scope="module")
def v1():
    return synthetic.make_v1_like(1, **V1_TINY)


@pytest.fixture(scope="module")
def retina():
    return synthetic.make_retina_like(1, **RETINA_TINY)


def _assert_same(a, b):
    for name in a.spikes:
        np.testing.assert_array_equal(a.spikes[name], b.spikes[name])
        np.testing.assert_array_equal(a.stimuli[name], b.stimuli[name])
    for x, y in zip(
        jax.tree_util.tree_leaves(a.target.params), jax.tree_util.tree_leaves(b.target.params)
    ):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_v1_like_is_deterministic_for_a_seed(v1):
    _assert_same(v1, synthetic.make_v1_like(1, **V1_TINY))
    other = synthetic.make_v1_like(2, **V1_TINY)
    assert not np.array_equal(other.spikes["natural"], v1.spikes["natural"])


def test_retina_like_is_deterministic_for_a_seed(retina):
    _assert_same(retina, synthetic.make_retina_like(1, **RETINA_TINY))


def test_v1_like_layout_rates_and_correlations(v1):
    spikes = v1.spikes["natural"]
    assert spikes.shape == (40, 150, 12) and spikes.dtype == np.uint8
    assert v1.stimuli["natural"].shape == (150, 9, 9)
    assert 0.0 <= v1.stimuli["natural"].min() and v1.stimuli["natural"].max() <= 1.0
    np.testing.assert_array_equal(v1.splits["train"]["natural"], np.arange(30))
    np.testing.assert_array_equal(v1.splits["test"]["natural"], np.arange(30, 36))
    np.testing.assert_array_equal(v1.splits["validation"]["natural"], np.arange(36, 40))
    stats = synthetic.summarize(v1)["natural"]
    # Documented: calibrated to a log-normal with median 0.1 per bin, in [0.03, 0.35].
    rates = spikes.mean(axis=(0, 1))
    assert 0.06 < np.median(rates) < 0.16
    assert rates.min() > 0.015 and rates.max() < 0.45
    assert stats["psth_std_over_mean"] > 0.4  # the stimulus clearly drives the neurons
    assert stats["nc_max"] > 0.1  # hub targets share input
    assert stats["nc_min"] < 0.0


def test_v1_like_hidden_neurons_drive_visible_ones():
    data = synthetic.make_v1_like(1, num_hidden=6, **V1_TINY)
    target_model, params = data.target
    assert target_model.network == network.NetworkConfig(12, 6, 9)
    assert data.spikes["natural"].shape[2] == 12
    hubs = data.attrs["hubs"]
    assert hubs and all(h >= 12 for h in hubs)
    weights = np.asarray(params.network.recurrent_weights)  # [d − 1, pre, post]
    logit = target_model.network.temperature / target_model.network.threshold
    strong = np.abs(weights[0, hubs, :12]) * logit > 1.5  # ≥ 0.7 × 3 logit at delay 1
    assert strong.sum(axis=1).min() >= 3  # every hidden hub drives 3–6 visible neurons
    assert 0.03 < data.attrs["hidden_mean_rate"] < 0.35


def test_v1_like_target_round_trip_and_alignment(v1, tmp_path):
    """The stored frames and history are the target's own inputs: its clamped
    cross-entropy on the data is lowest at the stored alignment."""
    path = tmp_path / "v1.h5"
    recording.save_recording(path, v1)
    target_model, params = ground_truth.load_target(path)
    assert target_model == v1.target.model
    loaded = recording.load_recording(path)
    r, d = target_model.receptive_field, target_model.network.num_delays
    batch = batching.make_trial_batch(
        loaded, "natural", np.arange(40), receptive_field=r, num_delays=d
    )

    def cross_entropy(stimulus):
        out = model.run_passes(
            params,
            target_model,
            stimulus,
            batch.spikes,
            passes=model.Passes(clamped=1),
            key=jax.random.key(0),
            initial_history=batch.history,
        )
        logits = np.asarray(out.clamped.logits, np.float64)
        return np.mean(np.logaddexp(0, logits) - batch.spikes * logits), logits

    aligned, logits = cross_entropy(batch.stimulus)
    for shift in (1, -1):
        assert aligned < cross_entropy(np.roll(batch.stimulus, shift, axis=0))[0] - 1e-3
    # E[z − p] = 0 under the true model: per-neuron means agree within sampling error.
    probability = 1 / (1 + np.exp(-logits))
    assert np.abs((batch.spikes - probability).mean(axis=(0, 1))).max() < 0.02


def test_v1_like_free_runs_are_stable(v1):
    """No runaway: looping the movie 4 times, late rates stay close to early ones."""
    target_model, params = v1.target
    stimulus = np.concatenate([v1.stimuli["natural"]] * 4)
    features = model.encode(params, target_model, stimulus)
    out = network.simulate_batch(
        params.network, features, config=target_model.network, key=jax.random.key(3), num_trials=20
    )
    spikes = np.asarray(out.spikes)
    quarter = spikes.shape[1] // 4
    early, late = spikes[:, :quarter].mean(), spikes[:, -quarter:].mean()
    assert 0.7 < late / early < 1.4
    assert spikes.mean(axis=(0, 1)).max() < 0.5


def test_retina_like_layout_split_and_rates(retina):
    names = [
        f"{c}_{s}"
        for c in ("checkerboard", "moving_bars")
        for s in ("unrepeated", "repeated_1", "repeated_2")
    ]
    assert list(retina.movies) == names
    assert retina.bin_width_s == pytest.approx(1 / 600)
    for name in names:
        trials = 1 if name.endswith("unrepeated") else 10
        bins = 1200 if name.endswith("unrepeated") else 180
        assert retina.spikes[name].shape == (trials, bins, 9)
        assert retina.stimuli[name].shape == (bins, 4, 4)
        assert retina.repeated[name] == (trials > 1)
    assert set(retina.splits) == {"train", "test"}
    assert sorted(retina.splits["train"]) == sorted(n for n in names if not n.endswith("_2"))
    assert sorted(retina.splits["test"]) == sorted(n for n in names if n.endswith("_2"))
    checkerboard = retina.stimuli["checkerboard_unrepeated"]
    assert set(np.unique(checkerboard)) <= {0.0, 1.0}
    changes = np.flatnonzero(np.any(np.diff(checkerboard, axis=0) != 0, axis=(1, 2)))
    assert np.all(np.diff(changes) % 20 == 0)  # a new frame every 20 bins (33 ms)
    bars = retina.stimuli["moving_bars_unrepeated"]
    assert bars.min() >= 0.0 and bars.max() <= 1.0 and np.isclose(np.median(bars), 0.5)
    # Documented: median 0.03 per bin, in [0.01, 0.08] (calibrated on the unrepeated movies).
    for name, stats in synthetic.summarize(retina).items():
        assert 0.01 < stats["rate_mean"] < 0.09, (name, stats)
        if retina.repeated[name]:
            assert stats["psth_std_over_mean"] > 0.5
    target_model, params = retina.target
    assert target_model.receptive_field == 40 and target_model.network.num_delays == 6
    kernel = np.asarray(params.encoder["params"]["temporal"]["kernel"])
    np.testing.assert_allclose(np.linalg.norm(kernel[:, 0, :], axis=0), 1.0, rtol=1e-5)


def test_retina_like_spatial_cnn_is_a_subunit_model(retina):
    cnn = retina.target.params.encoder["params"]["SpatialCNN_0"]
    subunits, pools = np.asarray(cnn["Conv_0"]["kernel"]), np.asarray(cnn["Conv_1"]["kernel"])
    # Subunit type c reads temporal channel c alone, with a centre-positive, radially
    # symmetric difference of Gaussians of unit norm.
    channels = subunits.shape[2]
    for c in range(channels):
        others = np.delete(subunits[:, :, :, c], c, axis=2)
        assert np.all(others == 0)
        dog = subunits[:, :, c, c]
        np.testing.assert_allclose(np.linalg.norm(dog), 1.0, rtol=1e-5)
        np.testing.assert_allclose(dog, dog.T, atol=1e-7)
        np.testing.assert_allclose(dog, dog[::-1, ::-1], atol=1e-7)
        assert dog[3, 3] == dog.max() > 0
    # Each pool sums 3 subunit types with the same non-negative spatial weight.
    for j in range(pools.shape[-1]):
        used = np.flatnonzero(np.abs(pools[:, :, :, j]).sum((0, 1)))
        assert len(used) == 3 and np.all(pools[:, :, :, j] >= 0)
        same = np.broadcast_to(pools[:, :, used[:1], j], (*pools.shape[:2], 3))
        np.testing.assert_allclose(pools[:, :, used, j], same, rtol=1e-6)
    assert not np.any(np.asarray(cnn["Conv_0"]["bias"])) and not np.any(
        np.asarray(cnn["Conv_1"]["bias"])
    )


def test_stimuli_generators():
    rng = np.random.default_rng(0)
    movie = synthetic.natural_movie(rng, 64, 16)
    assert movie.shape == (64, 16, 16) and movie.dtype == np.float32
    assert 0.45 < movie.mean() < 0.55 and movie.min() >= 0 and movie.max() <= 1
    # 1/f: neighbouring frames and pixels are far more similar than distant ones.
    centred = movie - movie.mean()
    lag1 = np.mean(centred[1:] * centred[:-1]) / centred.var()
    lag_half = np.mean(centred[32:] * centred[:32]) / centred.var()
    assert lag1 > 0.5 and lag1 > lag_half + 0.3
    board = synthetic.checkerboard_movie(rng, 50, 4, frame_bins=20)
    assert board.shape == (50, 4, 4)
    np.testing.assert_array_equal(board[0], board[19])
    bars = synthetic.moving_bars_movie(rng, 400, 8)
    assert bars.shape == (400, 8, 8) and (bars != 0.5).any()


def test_retina_like_validation_movie_is_new_stimulus():
    data = synthetic.make_retina_like(1, validation_s=0.8, **RETINA_TINY)
    for condition in data.attrs["conditions"]:
        name = f"{condition}_validation"
        assert data.spikes[name].shape[0] == 1
        assert list(data.splits["validation"][name]) == [0]
        assert name not in data.splits["train"] and name not in data.splits["test"]
        # Its stimulus is none of the training movies'.
        for train_movie in data.splits["train"]:
            other = data.stimuli[train_movie]
            n = min(len(other), len(data.stimuli[name]))
            assert not np.array_equal(other[:n], data.stimuli[name][:n])


def _make_synthetic(*flags):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(
        [sys.executable, "-m", "experiments.make_synthetic", *flags],
        cwd=root,
        capture_output=True,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        timeout=300,
    )


def test_command_line_writes_the_data_set_with_its_target(tmp_path):
    out = tmp_path / "v1.h5"
    tiny = ("--num_trials=6", "--num_frames=40", "--image_size=9", "--split=3,2,1")
    result = _make_synthetic(f"--out={out}", "--num_hidden=2", *tiny)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {out}" in result.stdout
    direct = synthetic.make_v1_like(
        0, num_hidden=2, num_trials=6, num_frames=40, image_size=9, split=(3, 2, 1)
    )
    np.testing.assert_array_equal(
        recording.load_recording(out).spikes["natural"], direct.spikes["natural"]
    )
    assert ground_truth.load_target(out).model == direct.target.model
    bad = _make_synthetic(f"--out={tmp_path / 'bad.h5'}", "--split=a,b,c", *tiny[:3])
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "error: --split takes integers, e.g. 80,30,10; got ['a', 'b', 'c']"
