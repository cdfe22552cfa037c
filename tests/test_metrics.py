"""Metrics: known answers on constructed data and NumPy oracles of eqs. 7-11."""

import itertools
import math

import jax
import numpy as np
import pytest

from rsnn_jax import metrics, network


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _spikes(shape, rate=0.3, seed=0):
    return (np.random.default_rng(seed).uniform(size=shape) < rate).astype(np.float32)


def _numpy_noise_correlation(z):
    """Eqs. 8-10 with explicit sums."""
    z = np.asarray(z, np.float64)
    k, t, n = z.shape
    rate, psth = z.mean(axis=(0, 1)), z.mean(axis=0)
    total, noise = np.zeros((n, n)), np.zeros((n, n))
    for kk, tt, i, j in itertools.product(range(k), range(t), range(n), range(n)):
        total[i, j] += (z[kk, tt, i] - rate[i]) * (z[kk, tt, j] - rate[j]) / (t * k)
        noise[i, j] += (z[kk, tt, i] - psth[tt, i]) * (z[kk, tt, j] - psth[tt, j]) / (t * k)
    return np.array(
        [[noise[i, j] / np.sqrt(total[i, i] * total[j, j]) for j in range(n)] for i in range(n)]
    )


# ----------------------------------------------------------------------------------------------
# PSTH correlation (eq. 7).


def test_psth_correlation_identical_psth_is_one_and_matches_numpy():
    data = _spikes((5, 20, 3), seed=0)
    # Same PSTH from a different set of trials: permute the trials.
    np.testing.assert_allclose(metrics.psth_correlation(data, data[::-1]), 1.0, rtol=1e-6)
    model = np.random.default_rng(1).uniform(size=(7, 20, 3)).astype(np.float32)
    expected = [np.corrcoef(data.mean(0)[:, i], model.mean(0)[:, i])[0, 1] for i in range(3)]
    np.testing.assert_allclose(metrics.psth_correlation(data, model), expected, rtol=1e-5)


def test_psth_correlation_smoothing_and_undefined_neurons():
    data = _spikes((4, 30, 3), seed=2)
    model = _spikes((6, 30, 3), seed=3)
    data[:, :, 2] = 0.0  # a silent neuron: its PSTH is constant, the correlation undefined
    got = np.asarray(metrics.psth_correlation(data, model, smoothing_bins=5))
    box = np.ones(5) / 5
    for i in range(2):
        a = np.convolve(data.mean(0)[:, i], box, mode="valid")
        b = np.convolve(model.mean(0)[:, i], box, mode="valid")
        np.testing.assert_allclose(got[i], np.corrcoef(a, b)[0, 1], rtol=1e-5)
    assert np.isnan(got[2])
    summary = metrics.nan_summary(got)
    assert summary["num_defined"] == 2 and summary["num_undefined"] == 1
    np.testing.assert_allclose(summary["mean"], np.mean(got[:2]), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Noise correlations (eqs. 8-10) and NC R^2 (eq. 11, Table S6).


def test_noise_correlation_matches_eqs_8_to_10():
    rng = np.random.default_rng(4)
    shared = rng.uniform(size=(6, 8, 1)) < 0.3  # a common input correlates the neurons
    z = ((rng.uniform(size=(6, 8, 3)) < 0.2) | shared).astype(np.float32)
    np.testing.assert_allclose(
        metrics.noise_correlation(z), _numpy_noise_correlation(z), rtol=1e-4, atol=1e-6
    )


def test_independent_trials_have_noise_correlations_near_zero():
    # Neurons share a stimulus-locked PSTH but are independent given the stimulus.
    rng = np.random.default_rng(5)
    psth = rng.uniform(0.05, 0.6, size=(1, 50, 1))
    z = (rng.uniform(size=(400, 50, 4)) < psth).astype(np.float32)
    nc = np.asarray(metrics.noise_correlation(z))
    off_diagonal = nc[~np.eye(4, dtype=bool)]
    # Each estimate averages 20,000 bins: standard error ~ 1/sqrt(20000) = 0.007.
    assert np.all(np.abs(off_diagonal) < 0.03), off_diagonal
    # ... while their total correlation is large (the shared PSTH).
    assert np.all(np.corrcoef(z.reshape(-1, 4).T)[~np.eye(4, dtype=bool)] > 0.1)


def test_noise_correlation_of_a_silent_neuron_is_nan_only_in_its_row_and_column():
    z = _spikes((5, 10, 3), seed=6)
    z[:, :, 1] = 0.0
    nc = np.asarray(metrics.noise_correlation(z))
    assert np.all(np.isnan(nc[1])) and np.all(np.isnan(nc[:, 1]))
    keep = np.ix_([0, 2], [0, 2])
    assert np.all(np.isfinite(nc[keep]))


def test_nc_r2_known_answers_and_numpy_oracle():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(5, 5))
    data = (a + a.T) / 2
    assert float(metrics.nc_r2(data, data)) == pytest.approx(1.0)
    shifted = data + 0.3
    assert float(metrics.nc_r2(data, shifted, offset_invariant=True)) == pytest.approx(1.0)
    assert float(metrics.nc_r2(data, shifted)) < 0.9
    model = data + rng.normal(0, 0.3, size=(5, 5))
    pairs = ~np.eye(5, dtype=bool)
    d, m = data[pairs], model[pairs]
    r2 = 1 - np.sum((d - m) ** 2) / np.sum((d - d.mean()) ** 2)
    r2_invariant = 1 - np.sum(((d - d.mean()) - (m - m.mean())) ** 2) / np.sum((d - d.mean()) ** 2)
    np.testing.assert_allclose(metrics.nc_r2(data, model), r2, rtol=1e-5)
    np.testing.assert_allclose(
        metrics.nc_r2(data, model, offset_invariant=True), r2_invariant, rtol=1e-5
    )
    # The diagonal does not matter; NaN pairs (a silent neuron) are left out.
    np.testing.assert_allclose(metrics.nc_r2(data, model + np.diag(np.full(5, 9.0))), r2, rtol=1e-5)
    holes = model.copy()
    holes[0, :] = holes[:, 0] = np.nan
    sub = ~np.eye(4, dtype=bool)
    d, m = data[1:, 1:][sub], model[1:, 1:][sub]
    np.testing.assert_allclose(
        metrics.nc_r2(data, holes),
        1 - np.sum((d - m) ** 2) / np.sum((d - d.mean()) ** 2),
        rtol=1e-5,
    )


def test_nc_r2_model_equal_to_data_spikes():
    z = _spikes((6, 12, 4), seed=8)
    nc = metrics.noise_correlation(z)
    assert float(metrics.nc_r2(nc, nc)) == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# Connectivity R^2 (Table S4).


def test_connectivity_r2():
    rng = np.random.default_rng(9)
    target = rng.normal(size=(3, 6, 6)).astype(np.float32)  # D = 3, 4 visible + 2 hidden
    fitted = rng.normal(size=(2, 5, 5)).astype(np.float32)  # D = 2, 4 visible + 1 hidden
    assert float(metrics.connectivity_r2(target, target, 4)) == pytest.approx(1.0)
    pairs = ~np.eye(4, dtype=bool)
    t = target[:, :4, :4].sum(0)[pairs]
    f = fitted[:, :4, :4].sum(0)[pairs]
    expected = 1 - np.sum((t - f) ** 2) / np.sum((t - t.mean()) ** 2)
    np.testing.assert_allclose(metrics.connectivity_r2(fitted, target, 4), expected, rtol=1e-5)
    # Hidden neurons and self-weights are ignored.
    other = target.copy()
    other[:, 4:, :] = 0.0
    other[:, :, 4:] = 0.0
    other[:, np.arange(4), np.arange(4)] += 5.0
    assert float(metrics.connectivity_r2(other, target, 4)) == pytest.approx(1.0)
    assert float(metrics.connectivity_r2(other, target, 4, include_self=True)) < 0.5
    with pytest.raises(ValueError, match="equal D"):
        metrics.connectivity_r2(fitted, target, 4, delays="all")


# ----------------------------------------------------------------------------------------------
# Bits per spike and McFadden R^2.


def test_bits_per_spike_and_mcfadden_against_numpy():
    z = _spikes((4, 10, 3), seed=10)
    z[:, :, 2] = 0.0  # no spikes: bits per spike and McFadden R^2 undefined
    logits = np.random.default_rng(11).normal(-1, 1, size=z.shape).astype(np.float32)
    p = _sigmoid(logits)
    model = np.sum(z * np.log(p) + (1 - z) * np.log(1 - p), axis=(0, 1))
    spikes = z.sum((0, 1))
    rate = spikes / 40
    with np.errstate(divide="ignore", invalid="ignore"):
        null = np.where(spikes > 0, spikes * np.log(rate), 0.0) + (40 - spikes) * np.log(1 - rate)
    bits = np.asarray(metrics.bits_per_spike(z, logits))
    np.testing.assert_allclose(bits[:2], (model - null)[:2] / (spikes[:2] * math.log(2)), rtol=1e-4)
    assert np.isnan(bits[2])
    np.testing.assert_allclose(
        metrics.bits_per_spike(z, logits, per_neuron=False),
        np.sum(model - null) / (np.sum(spikes) * math.log(2)),
        rtol=1e-4,
    )
    mcfadden = np.asarray(metrics.mcfadden_r2(z, logits))
    np.testing.assert_allclose(mcfadden[:2], 1 - model[:2] / null[:2], rtol=1e-4)
    assert np.isnan(mcfadden[2])


def test_constant_rate_model_scores_zero():
    z = _spikes((5, 8, 2), seed=12)
    rate = z.mean(axis=(0, 1))
    logits = np.broadcast_to(np.log(rate / (1 - rate)), z.shape).astype(np.float32)
    np.testing.assert_allclose(metrics.bits_per_spike(z, logits), 0.0, atol=1e-4)
    np.testing.assert_allclose(metrics.mcfadden_r2(z, logits), 0.0, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Multi-step log-likelihood (Fig. S3).


def _tiny_network():
    config = network.NetworkConfig(num_visible=2, num_delays=2)
    params = network.NetworkParams(
        input_weights=np.array([[0.3, -0.2]], np.float32),
        recurrent_weights=np.array(
            [[[1.2, -0.9], [0.8, 0.5]], [[-0.4, 0.6], [0.3, -0.7]]], np.float32
        ),  # [delay - 1, pre, post]
        bias=np.array([0.3, 0.2], np.float32),
    )
    features = np.linspace(-1, 1, 7, dtype=np.float32)[:, None]
    recorded = np.array(
        [
            [[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 1], [1, 1]],
            [[0, 1], [1, 1], [0, 0], [1, 0], [0, 1], [1, 0], [0, 0]],
        ],
        np.float32,
    )
    return config, params, features, recorded


def _numpy_probability(params, features, history, t):
    """p_t from the chronological spikes ``history`` (rows t-1, t-2 are used)."""
    w_in, w_rec, b = (np.asarray(a, np.float64) for a in params)
    u = features[t] @ w_in + b
    for d in (1, 2):
        if t - d >= 0:
            u += history[t - d] @ w_rec[d - 1]
    return _sigmoid((u - 0.4) / 0.4)


def _bernoulli_log(z, p):
    with np.errstate(divide="ignore"):  # a PSTH of 0 or 1: the other branch is unused
        return float(np.sum(np.where(z > 0.5, np.log(p), np.log(1 - p))))


def test_multistep_log_likelihood_matches_brute_force():
    config, params, features, recorded = _tiny_network()
    c = 3  # bins 0..2 clamped
    expected = np.zeros((2, 2))
    for k in range(2):
        z = recorded[k].astype(np.float64)
        # dt = 1: bin c given the recorded past (exact).
        expected[k, 0] = _bernoulli_log(z[c], _numpy_probability(params, features, z, c))
        # dt = 2: marginalise the model's own spikes at bin c (2^N_V outcomes).
        total = 0.0
        for bits in itertools.product([0.0, 1.0], repeat=2):
            history = z.copy()
            history[c] = bits
            p_c = _numpy_probability(params, features, z, c)
            p_next = _numpy_probability(params, features, history, c + 1)
            total += math.exp(
                _bernoulli_log(np.array(bits), p_c) + _bernoulli_log(z[c + 1], p_next)
            )
        expected[k, 1] = math.log(total)
    psth = recorded.mean(0)
    baseline = np.mean(
        [[_bernoulli_log(recorded[k, c + s], psth[c + s]) for s in range(2)] for k in range(2)],
        axis=0,
    )
    run = jax.jit(
        metrics.multistep_log_likelihood, static_argnames=("config", "num_steps", "num_samples")
    )
    out = run(
        params,
        features,
        recorded,
        config=config,
        key=jax.random.key(0),
        clamp_until=c,
        num_steps=2,
        num_samples=4000,
    )
    np.testing.assert_allclose(out.model[0], expected[:, 0].mean(), rtol=1e-5)
    # Monte-Carlo over 4000 samples of 4 outcomes: relative error of P ~ 1/sqrt(4000) ~ 0.016,
    # so the log is within ~0.05 (3 standard errors).
    np.testing.assert_allclose(out.model[1], expected[:, 1].mean(), atol=0.05)
    np.testing.assert_allclose(out.baseline, baseline, rtol=1e-5)
    # Several clamp times in one call (traced): the mean over clamp times.
    both = run(
        params,
        features,
        recorded,
        config=config,
        key=jax.random.key(0),
        clamp_until=np.array([2, 3]),
        num_steps=1,
        num_samples=2,
    )
    one_step = np.mean(
        [
            _bernoulli_log(recorded[k, t], _numpy_probability(params, features, recorded[k], t))
            for k in range(2)
            for t in (2, 3)
        ]
    )
    np.testing.assert_allclose(both.model[0], one_step, rtol=1e-5)


def test_multistep_checks_clamp_times():
    config, params, features, recorded = _tiny_network()
    with pytest.raises(ValueError, match="clamp_until"):
        metrics.multistep_log_likelihood(
            params,
            features,
            recorded,
            config=config,
            key=jax.random.key(0),
            clamp_until=6,
            num_steps=2,
        )


def test_nan_summary():
    summary = metrics.nan_summary([1.0, np.nan, 3.0, np.inf])
    assert summary["num_defined"] == 2 and summary["num_undefined"] == 2
    assert summary["mean"] == 2.0 and summary["median"] == 2.0
    np.testing.assert_allclose(summary["sem"], np.std([1.0, 3.0], ddof=1) / np.sqrt(2))
    assert np.isnan(metrics.nan_summary([np.nan])["mean"])
