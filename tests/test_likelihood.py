"""SMC log-likelihood of the visible spikes (rsnn_jax.likelihood) against exact
marginalisation over every hidden spike pattern of a tiny network, and against the clamped
pass without hidden neurons."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from rsnn_jax import likelihood, metrics, network


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def _exact_log_likelihoods(params, config, features, recorded, initial_history):
    """Enumerates all 2^(N_H·T) hidden spike trains z^H (NumPy, float64, from the model's
    equations: u_t = W_in f_t + Σ_d W_d z_{t−d} + b, logit = β (u − v_thr) / v_thr; history
    before bin 0 chronological, hidden silent).

    Returns:
      (log P(z^V) = log Σ_{z^H} P(z^V, z^H), and the mean over z^H drawn as a clamped pass
      draws them of log Π_t P(z^V_t | z_{<t}): what one clamped pass estimates).
    """
    w_in, w_rec, bias = (np.asarray(x, np.float64) for x in params)
    num_bins, num_visible = recorded.shape
    num_delays, num_hidden = config.num_delays, config.num_hidden
    start = np.concatenate([initial_history, np.zeros((num_delays, num_hidden))], axis=1)
    joint, hidden_prior, visible_given_hidden = [], [], []
    for pattern in itertools.product((0.0, 1.0), repeat=num_hidden * num_bins):
        hidden = np.reshape(pattern, (num_bins, num_hidden))
        spikes = np.concatenate([start, np.concatenate([recorded, hidden], axis=1)])
        log_terms = np.zeros(config.num_neurons)
        for t in range(num_bins):
            u = features[t] @ w_in + bias
            for d in range(1, num_delays + 1):
                u = u + spikes[num_delays + t - d] @ w_rec[d - 1]
            logit = config.temperature * (u - config.threshold) / config.threshold
            z = spikes[num_delays + t]
            log_terms += z * _log_sigmoid(logit) + (1 - z) * _log_sigmoid(-logit)
        visible, hidden_term = log_terms[:num_visible].sum(), log_terms[num_visible:].sum()
        joint.append(visible + hidden_term)
        hidden_prior.append(np.exp(hidden_term))
        visible_given_hidden.append(visible)
    return float(np.logaddexp.reduce(joint)), float(np.dot(hidden_prior, visible_given_hidden))


def _tiny_network(key, num_hidden, scale=0.5):
    config = network.NetworkConfig(num_visible=2, num_hidden=num_hidden, num_delays=2)
    params = network.init_params(key, config, num_features=1)
    # Weights of std `scale` (logit changes of ±1.25 per spike at 0.5): the hidden spikes
    # change the visible likelihood clearly. Much stronger ones put the posterior on hidden
    # patterns the prior rarely samples, and a bootstrap filter then needs far more particles.
    return config, params._replace(
        recurrent_weights=scale * params.recurrent_weights * np.sqrt(2 * config.num_neurons),
        bias=jnp.linspace(-0.2, 0.3, config.num_neurons),
    )


def test_smc_matches_exact_marginalisation_over_hidden_spikes(key):
    config, params = _tiny_network(key, num_hidden=2)
    rng = np.random.default_rng(0)
    num_trials, num_bins = 3, 4
    features = rng.normal(size=(num_bins, 1)).astype(np.float32)
    recorded = rng.integers(0, 2, (num_trials, num_bins, 2)).astype(np.float32)
    history = rng.integers(0, 2, (num_trials, 2, 2)).astype(np.float32)
    exact, clamped_pass = np.array(
        [
            _exact_log_likelihoods(params, config, features, recorded[k], history[k])
            for k in range(num_trials)
        ]
    ).T
    # Threshold 0.5 (the default: resample when the ESS halves) and 1 (resample at every
    # bin): both are unbiased; the threshold is traced, the second call does not recompile.
    for threshold in (0.5, 1.0):
        outputs = likelihood.smc_log_likelihood(
            params,
            features,
            recorded,
            config=config,
            key=jax.random.key(1),
            num_particles=512,
            num_repeats=8,
            initial_history=history,
            resample_threshold=threshold,
        )
        estimates = np.asarray(outputs.log_likelihood, np.float64)
        assert estimates.shape == (num_trials, 8)
        mean = estimates.mean(axis=1)
        standard_error = estimates.std(axis=1, ddof=1) / np.sqrt(8)
        # Within 5 standard errors (plus float32 round-off); the Jensen bias of log Ẑ is
        # about var/2, far below that at this particle count.
        np.testing.assert_array_less(np.abs(mean - exact), 5 * standard_error + 1e-4)
        assert np.all(standard_error < 0.1)
    # Sampling the hidden spikes freely (a clamped pass: one ELBO sample) misses the
    # likelihood by 0.9-2.7 nats here, far beyond the tolerance above: an estimator that ignored
    # the weights would fail.
    assert np.all(clamped_pass < exact - 0.5)
    np.testing.assert_allclose(float(outputs.total), np.sum(mean), rtol=1e-6)
    np.testing.assert_allclose(
        float(outputs.standard_error), np.sqrt(np.sum(standard_error**2)), rtol=1e-4
    )
    ess = np.asarray(outputs.effective_sample_size)
    assert ess.shape == (num_trials, 8, num_bins)
    assert np.all((ess >= 1.0 - 1e-3) & (ess <= 512 * (1 + 1e-5)))


def test_without_hidden_neurons_smc_is_the_exact_clamped_likelihood(key):
    config, params = _tiny_network(key, num_hidden=0)
    rng = np.random.default_rng(1)
    features = rng.normal(size=(3, 20, 1)).astype(np.float32)  # per-trial features
    recorded = rng.integers(0, 2, (3, 20, 2)).astype(np.float32)
    history = rng.integers(0, 2, (2, 2)).astype(np.float32)  # shared
    outputs = likelihood.smc_log_likelihood(
        params,
        features,
        recorded,
        config=config,
        key=jax.random.key(3),
        num_particles=4,
        num_repeats=2,
        initial_history=history,
    )
    logits = network.simulate_batch(
        params, features, config=config, key=key, recorded=recorded, initial_history=history
    ).logits
    exact = jnp.sum(
        recorded * jax.nn.log_sigmoid(logits) + (1 - recorded) * jax.nn.log_sigmoid(-logits),
        axis=(1, 2),
    )
    estimates = np.asarray(outputs.log_likelihood)
    np.testing.assert_allclose(estimates, np.repeat(np.asarray(exact)[:, None], 2, 1), rtol=1e-5)
    assert float(outputs.standard_error) < 1e-3
    # Bits per spike from a given log-likelihood = the clamped-pass metric.
    np.testing.assert_allclose(
        metrics.bits_per_spike_from_log_likelihood(recorded, outputs.total),
        metrics.bits_per_spike(recorded, logits, per_neuron=False),
        rtol=1e-4,
    )
    rates = jnp.array([0.3, 0.6])
    np.testing.assert_allclose(
        metrics.mcfadden_r2_from_log_likelihood(recorded, outputs.total, rates),
        metrics.mcfadden_r2(recorded, logits, rates, per_neuron=False),
        rtol=1e-4,
    )
