import jax
import jax.numpy as jnp
import numpy as np

from rsnn_jax.spikes import pseudo_derivative, straight_through_bernoulli
from tests.helpers import sigmoid


def test_forward_is_noise_below_probability():
    scaled = jnp.linspace(-3.0, 3.0, 13)
    noise = jnp.linspace(0.01, 0.99, 13)
    spikes = straight_through_bernoulli(scaled, noise, 1.5, 0.3)
    expected = (np.asarray(noise) < sigmoid(1.5 * np.asarray(scaled))).astype(np.float32)
    np.testing.assert_array_equal(spikes, expected)


def test_gradient_is_pseudo_derivative_times_weights():
    scaled = jnp.array([-2.0, -0.9, -0.3, 0.0, 0.4, 1.0, 1.7])
    weights = jnp.array([0.5, -1.0, 2.0, 3.0, -0.7, 1.1, 4.0])
    noise = jax.random.uniform(jax.random.key(1), scaled.shape)

    def weighted(s):
        return jnp.sum(weights * straight_through_bernoulli(s, noise, 1.0, 0.3))

    grad = jax.grad(weighted)(scaled)
    expected = 0.3 * np.maximum(0.0, 1.0 - np.abs(np.asarray(scaled))) * np.asarray(weights)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(pseudo_derivative(scaled, 0.3), expected / np.asarray(weights))


def test_no_gradient_to_noise_and_temperature_is_static():
    scaled = jnp.array([0.2, -0.1])
    noise = jnp.array([0.3, 0.6])
    grad_noise = jax.grad(lambda u: straight_through_bernoulli(scaled, u, 2.0, 0.3).sum())(noise)
    np.testing.assert_array_equal(grad_noise, np.zeros(2))


def test_sample_mean_converges_to_sigmoid():
    # 200k draws per unit: the standard error of a mean of Bernoulli(p) is <= 0.5/sqrt(2e5)
    # = 1.1e-3, so 5e-3 is > 4 standard errors.
    scaled = jnp.array([-3.0, -1.0, -0.2, 0.0, 0.5, 2.0])
    temperature = 1.3
    noise = jax.random.uniform(jax.random.key(2), (200_000, scaled.shape[0]))
    spikes = straight_through_bernoulli(scaled[None], noise, temperature, 0.3)
    np.testing.assert_allclose(spikes.mean(0), sigmoid(temperature * np.asarray(scaled)), atol=5e-3)
