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
