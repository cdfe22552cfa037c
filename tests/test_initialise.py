"""Data-informed initialisation: the untrained model fires at the data's rates."""

import jax
import jax.numpy as jnp
import numpy as np

from rsnn_jax import initialise, model, network
from rsnn_jax.data.batching import Batch
from tests.test_train import TinyEncoder

K, T, NV, D = 6, 40, 5, 3


def _batch(rates, seed=0):
    rng = np.random.default_rng(seed)
    return Batch(
        stimulus=rng.normal(size=(T + 1, 3, 3)).astype(np.float32),
        spikes=(rng.uniform(size=(K, T, NV)) < rates).astype(np.float32),
        history=(rng.uniform(size=(K, D, NV)) < rates).astype(np.float32),
    )


def test_initial_rate_equals_data_rate():
    m = model.Model(TinyEncoder(), network.NetworkConfig(NV, 2, D))
    params = model.init_model(jax.random.key(0), m, (T + 1, 3, 3))
    batch = _batch(np.array([0.02, 0.05, 0.1, 0.2, 0.04]))
    wanted = initialise.data_rates(batch.spikes, num_hidden=2)
    np.testing.assert_allclose(wanted[:NV], batch.spikes.reshape(-1, NV).mean(0), rtol=1e-6)
    np.testing.assert_allclose(wanted[NV:], wanted[:NV].mean(), rtol=1e-6)
    before = np.asarray(initialise.model_rates(params, m, batch, jax.random.key(1)))
    fitted = initialise.biases_from_rates(params, m, batch, jax.random.key(1))
    after = np.asarray(initialise.model_rates(fitted, m, batch, jax.random.key(1)))
    assert np.max(np.abs(before - wanted) / wanted) > 0.5  # far off before
    np.testing.assert_allclose(after, wanted, rtol=0.02)
    # Only the biases changed.
    np.testing.assert_array_equal(fitted.network.input_weights, params.network.input_weights)


def test_bias_is_exact_for_a_network_without_drive():
    # No input or coupling: p = σ(β (b − v_thr) / v_thr), so b = v_thr (1 + logit(r) / β).
    config = network.NetworkConfig(NV, 0, D)
    m = model.Model(TinyEncoder(), config)
    params = model.init_model(jax.random.key(0), m, (T + 1, 3, 3))
    net = params.network._replace(
        input_weights=jnp.zeros_like(params.network.input_weights),
        recurrent_weights=jnp.zeros_like(params.network.recurrent_weights),
    )
    params = params._replace(network=net)
    rates = np.array([0.01, 0.03, 0.1, 0.3, 0.05], np.float32)
    fitted = initialise.biases_from_rates(
        params, m, _batch(0.1), jax.random.key(0), rates, iterations=1
    )
    logit = np.log(rates) - np.log1p(-rates)
    expected = config.threshold * (1 + logit / config.temperature)
    np.testing.assert_allclose(fitted.network.bias, expected, rtol=1e-5, atol=1e-6)


def test_silent_neuron_gets_a_finite_bias():
    spikes = np.zeros((2, 10, 3), np.float32)
    spikes[:, :, 0] = 1.0  # always firing
    rates = initialise.data_rates(spikes)
    assert np.all(np.isfinite(np.log(rates) - np.log1p(-rates)))
    assert rates[1] > 0 and rates[0] < 1


def test_spike_triggered_averages_equal_the_defining_sum():
    rng = np.random.default_rng(0)
    stimulus = rng.normal(size=(300, 2, 2))
    spikes = (rng.uniform(size=(3, 300, 4)) < 0.2).astype(float)
    taps = 7
    frames = stimulus.reshape(300, -1) - stimulus.reshape(300, -1).mean(0)
    summed = spikes.sum(0)
    expected = np.zeros((4, taps, 4))
    for n in range(4):
        for tau in range(taps):
            for t in range(tau, 300):
                expected[n, tau] += summed[t, n] * frames[t - tau]
        expected[n] /= summed[:, n].sum()
    got = initialise.spike_triggered_averages([(stimulus, spikes)], taps)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_sta_filters_recover_the_temporal_filter_of_a_linear_nonlinear_cell():
    # Cells with one biphasic temporal filter h (lag order) and random spatial weights.
    rng = np.random.default_rng(1)
    taps, bins, pixels, cells = 30, 40_000, 9, 6
    lag = np.arange(taps)
    h = np.exp(-lag / 4.0) * np.sin(lag / 3.0)
    h /= np.linalg.norm(h)
    stimulus = rng.choice([-1.0, 1.0], size=(bins, 3, 3))
    flat = stimulus.reshape(bins, pixels)
    filtered = np.stack(
        [np.convolve(flat[:, p], h)[:bins] for p in range(pixels)], axis=1
    )  # Σ_τ h(τ) s(t − τ)
    drive = filtered @ rng.normal(size=(pixels, cells)) * 0.5
    spikes = (rng.uniform(size=(1, bins, cells)) < 1 / (1 + np.exp(-(drive - 2.5)))).astype(float)
    filters = initialise.temporal_filters_from_sta([(stimulus, spikes)], taps, 4)
    assert filters.shape == (taps, 4)
    assert abs(filters[:, 0] @ h) > 0.98  # unit norm, parallel to h
    norms = np.linalg.norm(filters, axis=0)
    assert abs(norms[0] - 1) < 1e-12
    assert np.all(np.diff(norms) <= 1e-12)  # scaled by σ_k / σ_1
    assert norms[1] < 0.5  # the other components are noise, scaled down (measured 0.081)


def test_sta_rejects_a_stimulus_of_another_length():
    with np.testing.assert_raises_regex(ValueError, "100 frames but the spikes 90 bins"):
        initialise.spike_triggered_averages([(np.zeros((100, 2, 2)), np.zeros((1, 90, 3)))], 5)


def test_sta_filters_beyond_the_rank_of_the_sta_matrix_are_zero():
    rng = np.random.default_rng(2)
    stimulus = rng.normal(size=(200, 1, 1))  # one pixel, one cell: rank 1
    spikes = (rng.uniform(size=(1, 200, 1)) < 0.3).astype(float)
    filters = initialise.temporal_filters_from_sta([(stimulus, spikes)], 5, 3)
    assert filters.shape == (5, 3)
    assert abs(np.linalg.norm(filters[:, 0]) - 1) < 1e-12
    np.testing.assert_array_equal(filters[:, 1:], 0.0)
