"""The L-BFGS readout solve reaches the clamped-MLE optimum of a NumPy Newton solve."""

import jax
import numpy as np
import pytest

from rsnn_jax import model, network, warm_start
from rsnn_jax.data.batching import Batch
from tests.helpers import sigmoid
from tests.test_train import TinyEncoder

K, T, NV, D = 4, 60, 3, 2


def _problem():
    m = model.Model(TinyEncoder(), network.NetworkConfig(NV, 0, D))
    rng = np.random.default_rng(0)
    batch = Batch(
        stimulus=rng.normal(size=(T + 1, 3, 3)).astype(np.float32),
        spikes=(rng.uniform(size=(K, T, NV)) < 0.25).astype(np.float32),
        history=(rng.uniform(size=(K, D, NV)) < 0.25).astype(np.float32),
    )
    params = model.init_model(jax.random.key(0), m, (T + 1, 3, 3))
    return m, batch, params


def _newton_optimum(features, spikes, history):
    """Minimal mean NLL of a logistic regression of each neuron on (f_t, z_{t-1..t-D}, 1)."""
    full = np.concatenate([history, spikes], axis=1)  # [K, D + T, N]
    lagged = [full[:, D - d : D - d + T] for d in range(1, D + 1)]  # z_{t-d}, [K, T, N]
    f = np.broadcast_to(features, (K,) + features.shape)
    x = np.concatenate([f] + lagged + [np.ones((K, T, 1))], axis=-1).reshape(K * T, -1)
    total = 0.0
    for n in range(NV):
        y, w = spikes[..., n].reshape(-1), np.zeros(x.shape[1])
        for _ in range(50):
            p = sigmoid(x @ w)
            hessian = x.T @ (x * (p * (1 - p))[:, None]) + 1e-10 * np.eye(x.shape[1])
            w -= np.linalg.solve(hessian, x.T @ (p - y))
        logits = x @ w
        total += np.sum(np.logaddexp(0, logits) - y * logits)
    return total / spikes.size


def test_lbfgs_reaches_the_newton_optimum():
    m, batch, params = _problem()
    features = np.asarray(model.encode(params, m, batch.stimulus), np.float64)
    reference = _newton_optimum(features, batch.spikes.astype(float), batch.history.astype(float))
    solved, values = warm_start.solve_readout(params, m, batch, num_iterations=200)
    start = float(warm_start.clamped_nll(params.network, m, features, batch.spikes, batch.history))
    assert start > reference + 0.05  # the start is far from the optimum
    assert values[-1] == pytest.approx(reference, abs=2e-4)
    assert all(b <= a + 1e-6 for a, b in zip(values, values[1:]))  # line search: monotone
    # The encoder is untouched.
    for x, y in zip(jax.tree.leaves(solved.encoder), jax.tree.leaves(params.encoder)):
        np.testing.assert_array_equal(x, y)


def test_hidden_neurons_are_refused():
    m = model.Model(TinyEncoder(), network.NetworkConfig(NV, 2, D))
    _, batch, _ = _problem()
    params = model.init_model(jax.random.key(0), m, (T + 1, 3, 3))
    with pytest.raises(ValueError, match="hidden neurons"):
        warm_start.solve_readout(params, m, batch)


def test_coupling_penalty_spares_the_self_history():
    m, batch, params = _problem()
    features = model.encode(params, m, batch.stimulus)
    weights = np.asarray(jax.random.normal(jax.random.key(2), (D, NV, NV)))
    net = params.network._replace(recurrent_weights=weights)

    def nll(c, w=weights):
        n = net._replace(recurrent_weights=w)
        return float(
            warm_start.clamped_nll(n, m, features, batch.spikes, batch.history, coupling_l2=c)
        )

    between = sum(
        weights[d, i, j] ** 2 for d in range(D) for i in range(NV) for j in range(NV) if i != j
    )
    assert nll(0.3) - nll(0.0) == pytest.approx(0.5 * 0.3 * between, rel=1e-4)
    diagonal_only = np.zeros_like(weights)
    diagonal_only[:, np.arange(NV), np.arange(NV)] = 5.0
    assert nll(0.3, diagonal_only) == pytest.approx(nll(0.0, diagonal_only), rel=1e-6)


def test_input_and_recurrent_penalties_are_half_l2_times_their_squared_norms():
    m, batch, params = _problem()
    features = model.encode(params, m, batch.stimulus)
    net = params.network._replace(
        input_weights=np.asarray(
            jax.random.normal(jax.random.key(3), params.network.input_weights.shape)
        ),
        recurrent_weights=np.asarray(jax.random.normal(jax.random.key(4), (D, NV, NV))),
    )

    def nll(**l2):
        return float(warm_start.clamped_nll(net, m, features, batch.spikes, batch.history, **l2))

    w_in = float(np.sum(np.asarray(net.input_weights, np.float64) ** 2))
    w_rec = float(np.sum(np.asarray(net.recurrent_weights, np.float64) ** 2))
    assert nll(input_l2=0.2) - nll() == pytest.approx(0.5 * 0.2 * w_in, rel=1e-4)
    assert nll(recurrent_l2=0.3) - nll() == pytest.approx(0.5 * 0.3 * w_rec, rel=1e-4)
