"""Statistics T(z) against NumPy loops written from the formulas, and Monte-Carlo unbiasedness."""

import itertools

import jax
import numpy as np
import pytest

from rsnn_jax import network, statistics


def _spikes(shape, rate=0.3, seed=0):
    return (np.random.default_rng(seed).uniform(size=shape) < rate).astype(np.float32)


def _probabilities(shape, seed=1):
    return np.random.default_rng(seed).uniform(0.05, 0.95, size=shape).astype(np.float32)


@pytest.mark.parametrize("make", [_spikes, _probabilities])
def test_psth_rate_coincidences_match_loops(make):
    x = make((3, 5, 4)).astype(np.float64)
    k, t, n = x.shape
    psth = np.zeros((t, n))
    pairs = np.zeros((n, n))
    shuffled = np.zeros((n, n))
    for kk, tt in itertools.product(range(k), range(t)):
        psth[tt] += x[kk, tt] / k
        for i, j in itertools.product(range(n), range(n)):
            pairs[i, j] += x[kk, tt, i] * x[kk, tt, j] / (k * t)
            # neuron i from trial k + 1 (cyclic), neuron j from trial k
            shuffled[i, j] += x[(kk + 1) % k, tt, i] * x[kk, tt, j] / (k * t)
    np.testing.assert_allclose(statistics.psth(x), psth, rtol=1e-6)
    np.testing.assert_allclose(statistics.mean_rate(x), psth.mean(0), rtol=1e-6)
    np.testing.assert_allclose(statistics.coincidences(x), pairs, rtol=1e-6)
    np.testing.assert_allclose(statistics.shuffled_coincidences(x), shuffled, rtol=1e-6)


def test_total_and_noise_covariance_match_eqs_8_9():
    x = _spikes((4, 6, 3)).astype(np.float64)
    k, t, n = x.shape
    rate = x.mean(axis=(0, 1))
    psth = x.mean(axis=0)
    total, noise = np.zeros((n, n)), np.zeros((n, n))
    for kk, tt, i, j in itertools.product(range(k), range(t), range(n), range(n)):
        total[i, j] += (x[kk, tt, i] - rate[i]) * (x[kk, tt, j] - rate[j]) / (t * k)
        noise[i, j] += (x[kk, tt, i] - psth[tt, i]) * (x[kk, tt, j] - psth[tt, j]) / (t * k)
    np.testing.assert_allclose(statistics.total_covariance(x), total, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(statistics.noise_covariance(x), noise, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("wrap", [True, False])
def test_lagged_covariance_matches_loops(wrap):
    x = _probabilities((3, 7, 2)).astype(np.float64)
    k, t, n = x.shape
    delta = x - x.mean(axis=0, keepdims=True)
    num_delays = 3
    expected = np.zeros((num_delays, n, n))
    for d in range(num_delays):
        count = 0
        for kk, tt in itertools.product(range(k), range(t)):
            if tt - d < 0 and not wrap:
                continue
            count += 1
            for i, j in itertools.product(range(n), range(n)):
                expected[d, i, j] += delta[kk, tt, i] * delta[kk, (tt - d) % t, j]
        expected[d] /= count
    got = statistics.lagged_covariance(x, num_delays, wrap=wrap)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[0], statistics.noise_covariance(x), rtol=1e-5, atol=1e-7)


def test_population_count_distribution_is_histogram_on_spikes_and_exact_on_probabilities():
    spikes = _spikes((3, 8, 4), rate=0.5)
    counts = spikes.sum(-1).astype(int).ravel()
    histogram = np.bincount(counts, minlength=5) / counts.size
    np.testing.assert_allclose(
        statistics.population_count_distribution(spikes), histogram, atol=1e-6
    )
    # On probabilities: brute-force enumeration of the 2^N outcomes of every bin.
    p = _probabilities((2, 3, 3)).astype(np.float64)
    expected = np.zeros(4)
    for kk, tt in itertools.product(range(2), range(3)):
        for z in itertools.product([0, 1], repeat=3):
            z = np.array(z)
            expected[z.sum()] += np.prod(np.where(z, p[kk, tt], 1 - p[kk, tt])) / 6
    np.testing.assert_allclose(statistics.population_count_distribution(p), expected, rtol=1e-5)


def test_smooth_is_a_valid_boxcar():
    x = _probabilities((9, 2))
    expected = np.stack([np.convolve(x[:, i], np.ones(3) / 3, mode="valid") for i in range(2)], 1)
    np.testing.assert_allclose(statistics.smooth(x, 3, axis=0), expected, rtol=1e-6)
    np.testing.assert_array_equal(statistics.smooth(x, 1, axis=0), x)
    with pytest.raises(ValueError, match="window"):
        statistics.smooth(x, 10, axis=0)


def test_constant_signal_has_exactly_zero_variance():
    # 0.1 is not representable: a naive float32 mean would leave residuals of ~1e-9.
    x = np.full((3, 7, 2), 0.1, np.float32)
    assert np.all(np.asarray(statistics.total_covariance(x)) == 0.0)
    assert np.all(np.asarray(statistics.noise_covariance(x)) == 0.0)


def test_bad_rank_is_rejected():
    with pytest.raises(ValueError, match=r"\[K, T, N\]"):
        statistics.psth(np.zeros((3, 4)))


def test_model_side_estimates_are_unbiased_on_a_simulated_network():
    """Appendix D: E[z_i z_j] = E[p_i p_j] (i != j), E[z_i] = E[p_i], count distribution."""
    config = network.NetworkConfig(num_visible=3, num_delays=2)
    rng = np.random.default_rng(0)
    params = network.NetworkParams(
        input_weights=rng.normal(0, 0.5, (2, 3)).astype(np.float32),
        recurrent_weights=rng.normal(0, 0.6, (2, 3, 3)).astype(np.float32),
        bias=np.full(3, 0.2, np.float32),
    )
    features = rng.normal(size=(12, 2)).astype(np.float32)
    out = network.simulate_batch(
        params, features, config=config, key=jax.random.key(3), num_trials=600
    )
    z, p = np.asarray(out.spikes, np.float64), np.asarray(out.probabilities, np.float64)

    def per_trial(statistic, signal):  # [K, ...]: trials are independent samples
        return np.asarray(jax.vmap(lambda trial: statistic(trial[None]))(signal), np.float64)

    off_diagonal, everywhere = ~np.eye(3, dtype=bool), np.ones((3, 3), bool)
    checks = [  # (statistic of z, its model-side estimate from p, entries claimed unbiased)
        (statistics.coincidences, statistics.coincidences, off_diagonal),
        (statistics.coincidences, statistics.estimate_coincidences, everywhere),
        (statistics.mean_rate, statistics.mean_rate, np.ones(3, bool)),
        (statistics.population_count_distribution,) * 2 + (np.ones(4, bool),),
    ]
    for data_statistic, model_statistic, where in checks:
        difference = per_trial(data_statistic, z) - per_trial(model_statistic, p)
        mean = difference.mean(0)
        standard_error = difference.std(0, ddof=1) / np.sqrt(len(difference))
        # Statistical tolerance: 4.5 standard errors (fixed key, so deterministic).
        assert np.all(np.abs(mean[where]) < 4.5 * standard_error[where]), (mean, standard_error)
    # The plug-in p_i^2 on the diagonal is biased (E[z_i^2] = E[p_i] > E[p_i^2]).
    diagonal_bias = np.diag(statistics.coincidences(z)) - np.diag(statistics.coincidences(p))
    assert np.all(diagonal_bias > 0.1)
