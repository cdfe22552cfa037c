"""A fast start for the likelihood: a full-batch L-BFGS solve of the clamped MLE.

For fixed encoder features f_t and a network without hidden neurons, the clamped
log-likelihood (eq. 3) is the log-likelihood of a logistic regression of each neuron's spike
on (f_t, the recorded spikes of the last D bins, 1) with weights (W_in, W_rec, b): it is
concave, so a quasi-Newton solve on the whole training batch reaches its optimum in tens of
iterations where Adam, which moves each weight by about the learning rate per step, needs
thousands of stochastic steps. The encoder is then trained with everything else in the
stochastic phase (``rsnn_jax.train.fit``), starting from this readout.

We use ``optax.lbfgs`` (with its zoom line search) rather than hand-written code: it is the
maintained JAX implementation, jit-compatible, and its line search guarantees a decrease.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from rsnn_jax import model as model_lib
from rsnn_jax import network


def clamped_nll(
    net_params,
    model: model_lib.Model,
    features,
    spikes,
    history,
    input_l2: float = 0.0,
    recurrent_l2: float = 0.0,
    coupling_l2: float = 0.0,
):
    """Mean negative log-likelihood per bin and neuron of the clamped network (eq. 3), plus
    (input_l2/2)·‖W_in‖², (recurrent_l2/2)·‖W_rec‖² and (coupling_l2/2) times the squared
    norm of the couplings between different neurons (W_rec without its self-history
    diagonal).

    Args:
      net_params: ``network.NetworkParams``.
      features: float32 [T, F] shared by the K trials, or [K, T, F].
      spikes: float32 [K, T, N] recorded spikes.
      history: float32 [K, D, N] recorded spikes before bin 0, or None.
    """
    outputs = network.simulate_batch(
        net_params,
        features,
        config=model.network,
        noise=jnp.zeros(spikes.shape, jnp.float32),  # unused: every neuron is clamped
        recorded=spikes,
        initial_history=history,
    )
    logits = outputs.logits
    # −log p(z | logit) = softplus(logit) − z · logit, stable for any logit.
    nll = jnp.mean(jax.nn.softplus(logits) - spikes * logits)
    recurrent = net_params.recurrent_weights
    between = 1.0 - jnp.eye(recurrent.shape[-1], dtype=recurrent.dtype)
    penalty = (
        input_l2 * jnp.sum(net_params.input_weights**2)
        + recurrent_l2 * jnp.sum(recurrent**2)
        + coupling_l2 * jnp.sum((recurrent * between) ** 2)
    )
    return nll + 0.5 * penalty


def solve_readout(
    params: model_lib.ModelParams,
    model: model_lib.Model,
    batch,
    num_iterations: int = 100,
    input_l2: float = 0.0,
    recurrent_l2: float = 0.0,
    coupling_l2: float = 0.0,
) -> tuple[model_lib.ModelParams, list[float]]:
    """Maximises the clamped likelihood over (W_in, W_rec, b) with the encoder fixed.

    Args:
      params: starting parameters (the encoder's are kept as they are).
      model: a model without hidden neurons.
      batch: the training data as one batch (``stimulus``, ``spikes`` [K, T, N],
        ``history``).
      num_iterations: L-BFGS iterations.
      input_l2, recurrent_l2: L2 penalties on W_in and W_rec (those of ``clamped_nll``).
      coupling_l2: L2 penalty on the couplings between neurons only. The 24 × 25 × 25
        couplings of the retina network overfit a few tens of thousands of training bins;
        penalising the self-history as well weakens the refractoriness, and the free-running
        network then bursts (docs/convergence.md).

    Returns:
      (params with the solved network weights, the objective after each iteration).

    Raises:
      ValueError: if the model has hidden neurons (the clamped likelihood then marginalises
        them and is not a logistic regression).
    """
    if model.network.num_hidden:
        raise ValueError(
            "warm start: the fitted network has hidden neurons; the L-BFGS readout solve "
            "needs a fully observed network (use --warm_start_iterations=0)"
        )
    stimulus = jnp.asarray(batch.stimulus)
    features = jax.lax.stop_gradient(
        model_lib.encode(params, model, stimulus, per_trial=stimulus.ndim == 4)
    )
    spikes = jnp.asarray(batch.spikes, jnp.float32)
    history = None if batch.history is None else jnp.asarray(batch.history, jnp.float32)

    def objective(net):
        return clamped_nll(
            net, model, features, spikes, history, input_l2, recurrent_l2, coupling_l2
        )

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    @jax.jit
    def iteration(net, state):
        value, grad = value_and_grad(net, state=state)
        updates, state = solver.update(grad, state, net, value=value, grad=grad, value_fn=objective)
        return optax.apply_updates(net, updates), state, value

    net, state = params.network, solver.init(params.network)
    values = []
    for _ in range(num_iterations):
        net, state, value = iteration(net, state)
        values.append(float(value))
    values.append(float(objective(net)))
    return params._replace(network=net), values[1:]
