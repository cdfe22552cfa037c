"""Research use: fit a statistic you wrote yourself with the generic sample-and-measure loss.

    python examples/custom_statistic.py          # prints the measured numbers as JSON

Walk-through (docs/custom_statistics.md explains every step):

1. A *target* network with a known lagged structure (a chain of neurons, each exciting the
   next one two bins later) plays the recording: its free simulations are the data.
2. Two user statistics, written as small frozen dataclasses (hashable: they become static
   data of the objective):
   * ``CoactivityDistribution``: P(no neuron fires), P(exactly one), P(two or more) in a bin.
     Multilinear in each bin's spikes, so evaluating it on the model's probabilities p is an
     unbiased Monte-Carlo estimate (``estimator="probabilities"``).
   * ``CrossCorrelogram``: C_d[i, j] = mean_{k,t} z_{t,i} z_{t−d,j} for lags d = 1..L. A
     product *across bins*: p_{t,i} depends on the sampled z_{t−d,j}, so T(p) is biased and
     the model side must use straight-through spikes (``estimator="spikes"``).
3. ``estimator_check`` measures those claims: the mean of T over many sampled trials (the
   truth) against T on probabilities, and against the mixed estimator p_{t,i} z_{t−d,j}.
4. ``jax.grad`` of the composed objective with respect to all parameters (encoder and
   network): finite and non-zero for every leaf.
5. A short ``train.fit`` on the correlogram term (plus the coactivity term) moves the
   model's correlogram toward the data's; the dissimilarity is measured before and after on
   fresh free simulations with a fixed key (sampled spikes: no estimator question there).

``main()`` returns every number it prints; ``tests/test_custom_statistic.py`` runs it at a
tiny size and checks them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from rsnn_jax import encoders, losses, network, statistics, train
from rsnn_jax import model as model_lib
from rsnn_jax.data import batching

# ----------------------------------------------------------------------------------------------
# 1. User statistics: functions [K, T, N] -> pytree of arrays.


@dataclasses.dataclass(frozen=True)
class CoactivityDistribution:
    """P(0), P(1) and P(≥ 2) neurons active in a bin, averaged over trials and bins.

    For one bin with spike indicators x_1..x_N, P(0) = Π_i (1 − x_i) and
    P(1) = Σ_i x_i Π_{j≠i} (1 − x_j): both are affine in every x_i separately (multilinear), so
    on binary spikes they are the indicators of "count = 0" and "count = 1", and on the
    probabilities of one bin (conditionally independent given the past) they are the exact
    conditional probabilities of those events. Hence E[T(z)] = E[T(p)]: the probability
    estimator is unbiased, and its gradient is exact given the sampled history.

    Call: x float32 [K, T, N] (spikes or probabilities) → float32 [3], sums to 1.
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        x = statistics.as_signal(x)
        q = 1.0 - x
        silent = jnp.prod(q, axis=-1)  # [K, T]
        # Π_{j≠i} q_j as (product before i) · (product after i): no division by q_i (may be 0).
        ones = jnp.ones_like(q[..., :1])
        before = jnp.cumprod(jnp.concatenate([ones, q[..., :-1]], axis=-1), axis=-1)
        after = jnp.cumprod(jnp.concatenate([ones, q[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
        others = before * after
        single = jnp.sum(x * others, axis=-1)
        p0, p1 = jnp.mean(silent), jnp.mean(single)
        return jnp.stack([p0, p1, 1.0 - p0 - p1])


@dataclasses.dataclass(frozen=True)
class CrossCorrelogram:
    """Lagged coincidence rates C_d[i, j] = mean_{k,t} x_{k,t,i} x_{k,t−d,j}, d = 1..max_lag.

    j fires d bins before i; only pairs with t − d ≥ 0 enter, each lag normalised by its
    K·(T − d) pairs. Not multilinear in one bin: z_{t,i} and z_{t−d,j} are in different bins
    and p_{t,i} depends on the sampled z_{t−d,j}, so E[C_d(z)] ≠ E[C_d(p)] in general. Use it
    with ``estimator="spikes"`` (straight-through samples).

    Call: x float32 [K, T, N] → float32 [max_lag, N, N] indexed [d − 1, i, j].
    """

    max_lag: int = 3

    def __call__(self, x: jax.Array) -> jax.Array:
        x = statistics.as_signal(x)
        num_bins, n = x.shape[1], x.shape[2]
        lags = []
        for d in range(1, self.max_lag + 1):
            later = x[:, d:].reshape(-1, n)
            earlier = x[:, : num_bins - d].reshape(-1, n)
            lags.append(later.T @ earlier / later.shape[0])
        return jnp.stack(lags)


def mixed_cross_correlogram(probabilities: jax.Array, spikes: jax.Array, max_lag: int):
    """Unbiased, lower-variance model estimate of ``CrossCorrelogram``: p_{t,i} z_{t−d,j}.

    E[z_{t,i} z_{t−d,j}] = E[E[z_{t,i} | past] z_{t−d,j}] = E[p_{t,i} z_{t−d,j}] because
    z_{t−d,j} (d ≥ 1) is part of the past of bin t: only the *latest* bin's spikes may be
    replaced by their probabilities.

    Args:
      probabilities: float32 [K, T, N] of a free simulation.
      spikes: float32 [K, T, N], the samples of the same simulation.
      max_lag: L.

    Returns:
      float32 [L, N, N].
    """
    num_bins, n = spikes.shape[1], spikes.shape[2]
    lags = []
    for d in range(1, max_lag + 1):
        later = probabilities[:, d:].reshape(-1, n)
        earlier = spikes[:, : num_bins - d].reshape(-1, n)
        lags.append(later.T @ earlier / later.shape[0])
    return jnp.stack(lags)


@dataclasses.dataclass(frozen=True)
class MixedCrossCorrelogramTerm(losses.Term):
    """A custom loss term: MSE between the data's ``CrossCorrelogram`` and the mixed estimate.

    ``sample_and_measure`` hands the statistic one array (probabilities or spikes); an
    estimator that needs both is a ``losses.Term`` of its own: a frozen dataclass that says
    which pass it reads (``passes``) and maps (``PassOutputs``, recorded [K, T, N_V]) to a
    scalar. The gradient flows exactly through p_{t,i} (given the sampled past) and by the
    straight-through pseudo-derivative through the sampled z_{t−d,j}.
    """

    max_lag: int = 3

    @property
    def passes(self) -> model_lib.Passes:
        return model_lib.Passes(free=True)

    def __call__(self, outputs: model_lib.PassOutputs, recorded: jax.Array) -> jax.Array:
        num_visible = recorded.shape[-1]
        simulation = outputs.free
        estimate = mixed_cross_correlogram(
            simulation.probabilities[..., :num_visible],
            simulation.spikes[..., :num_visible],
            self.max_lag,
        )
        return losses.mean_squared_error(CrossCorrelogram(self.max_lag)(recorded), estimate)


def correlogram_term(max_lag: int, estimator: str) -> losses.Term:
    """The correlogram loss term with the chosen model-side estimator.

    Args:
      max_lag: L.
      estimator: "spikes" (straight-through samples: unbiased, surrogate gradients),
        "probabilities" (biased for this statistic: shown for comparison) or "mixed"
        (``MixedCrossCorrelogramTerm``: unbiased, exact gradient through p_{t,i}).
    """
    if estimator == "mixed":
        return MixedCrossCorrelogramTerm(max_lag)
    return losses.sample_and_measure(CrossCorrelogram(max_lag), "mse", estimator=estimator)


# ----------------------------------------------------------------------------------------------
# 2. A target network with a lagged chain, and its recording.


def make_model(num_neurons: int, num_delays: int = 3) -> model_lib.Model:
    """A tiny V1-style model: 2 stacked frames, one 4-filter conv layer, N visible neurons."""
    encoder = encoders.V1Encoder(num_frames=2, features=(4,), kernel_size=3)
    return model_lib.Model(encoder, network.NetworkConfig(num_neurons, 0, num_delays))


def make_target(key: jax.Array, model: model_lib.Model, stimulus_shape, chain_weight: float):
    """Target parameters: Flax-initialised encoder, a chain i → i + 1 at delay 2, refractory
    self-inhibition at delay 1, and a negative bias (firing probability about 0.1)."""
    params = model_lib.init_model(key, model, stimulus_shape)
    n, d = model.network.num_neurons, model.network.num_delays
    recurrent = np.zeros((d, n, n), np.float32)  # [delay − 1, pre, post]
    for i in range(n):
        recurrent[1, i, (i + 1) % n] = chain_weight
        recurrent[0, i, i] = -1.0
    net = params.network._replace(
        input_weights=0.5 * params.network.input_weights,
        recurrent_weights=jnp.asarray(recurrent),
        bias=jnp.full((n,), -0.5, jnp.float32),
    )
    return params._replace(network=net)


def rate_matched_init(key, model, stimulus, data) -> model_lib.ModelParams:
    """``init_model``, then each bias set so that the feed-forward firing probability averaged
    over bins equals the neuron's recorded rate (the fit starts at the right rates and spends
    its steps on the structure)."""
    params = model_lib.init_model(key, model, stimulus.shape)
    config = model.network
    drive = model_lib.encode(params, model, stimulus) @ params.network.input_weights  # [T, N]
    rates = jnp.clip(jnp.mean(data, axis=(0, 1)), 1e-3, 1 - 1e-3)
    logits = jnp.log(rates) - jnp.log1p(-rates)
    # p = σ(β (u − v_thr) / v_thr) = rate  ⇔  u = v_thr (1 + logit / β).
    bias = config.threshold * (1.0 + logits / config.temperature) - jnp.mean(drive, axis=0)
    return params._replace(network=params.network._replace(bias=bias))


@functools.partial(jax.jit, static_argnames=("model", "num_trials"))
def free_run(params, model, stimulus, key, num_trials):
    """Free simulation of ``num_trials`` trials from a silent history: SimulationOutputs."""
    features = model_lib.encode(params, model, stimulus)
    return network.simulate_batch(
        params.network, features, config=model.network, key=key, num_trials=num_trials
    )


# ----------------------------------------------------------------------------------------------
# 3. Checks.


def estimator_check(params, model, stimulus, key, statistic, num_trials):
    """Mean of T on sampled spikes (truth) vs T on probabilities vs the mixed estimator.

    Returns:
      dict of relative errors ‖estimate − truth‖ / ‖truth‖ of the correlogram and of the
      coactivity distribution, over ``num_trials`` free trials.
    """
    run = free_run(params, model, stimulus, key, num_trials)
    spikes, probabilities = run.spikes, run.probabilities
    truth = statistic(spikes)

    def rel(estimate):
        return float(jnp.linalg.norm(estimate - truth) / jnp.linalg.norm(truth))

    coactivity = CoactivityDistribution()
    coactivity_truth = coactivity(spikes)
    return {
        "ccg_rel_error_probabilities": rel(statistic(probabilities)),
        "ccg_rel_error_mixed": rel(
            mixed_cross_correlogram(probabilities, spikes, statistic.max_lag)
        ),
        "coactivity_rel_error_probabilities": float(
            jnp.linalg.norm(coactivity(probabilities) - coactivity_truth)
            / jnp.linalg.norm(coactivity_truth)
        ),
    }


def measured_dissimilarity(params, model, stimulus, key, statistic, data_statistic, num_trials):
    """MSE between the data's statistic and the statistic of fresh sampled model spikes."""
    run = free_run(params, model, stimulus, key, num_trials)
    return float(losses.mean_squared_error(data_statistic, statistic(run.spikes)))


def _chain_weight(params) -> float:
    """Mean weight of the chain synapses i → i + 1 at delay 2 (the target has ``chain_weight``)."""
    w = np.asarray(params.network.recurrent_weights)
    n = w.shape[-1]
    return float(np.mean([w[1, i, (i + 1) % n] for i in range(n)]))


def _leaf_report(grads) -> dict[str, tuple[bool, float]]:
    """{path: (all finite, max |g|)} for every parameter leaf."""
    flat, _ = jax.tree_util.tree_flatten_with_path(grads)
    return {
        jax.tree_util.keystr(path): (bool(jnp.all(jnp.isfinite(g))), float(jnp.max(jnp.abs(g))))
        for path, g in flat
    }


# ----------------------------------------------------------------------------------------------
# 4. Everything together.


def main(
    *,
    num_neurons: int = 8,
    num_bins: int = 60,
    num_trials: int = 32,
    batch_size: int = 16,
    image_size: int = 6,
    max_lag: int = 3,
    chain_weight: float = 0.8,
    num_steps: int = 40,
    learning_rate: float = 0.05,
    check_trials: int = 512,
    ccg_estimator: str = "spikes",
    coactivity_weight: float = 0.03,
    seed: int = 0,
) -> dict:
    """Runs the walk-through and returns its numbers (see the module docstring).

    Returns:
      dict with the estimator check (relative errors), the gradient check (per leaf: finite,
      max |g|), the correlogram dissimilarity before/after the fit (and with the target
      itself, the noise floor), the firing rates and the wall time.
    """
    started = time.perf_counter()
    key = jax.random.key(seed)
    target_key, data_key, init_key, check_key, grad_key, eval_key = jax.random.split(key, 6)
    model = make_model(num_neurons)
    receptive_field, num_delays = model.receptive_field, model.network.num_delays
    rng = np.random.default_rng(seed)
    # One repeated movie of white-noise frames: clip for T bins has T + R − 1 frames.
    stimulus = rng.uniform(size=(num_bins + receptive_field - 1, image_size, image_size))
    stimulus = jnp.asarray(stimulus, jnp.float32)
    target = make_target(target_key, model, stimulus.shape, chain_weight)
    data = free_run(target, model, stimulus, data_key, num_trials).spikes  # [K, T, N]

    ccg = CrossCorrelogram(max_lag)
    objective = losses.compose(
        {
            "ccg": (1.0, correlogram_term(max_lag, ccg_estimator)),
            "coactivity": (
                coactivity_weight,
                losses.sample_and_measure(CoactivityDistribution(), "mse"),
            ),
        }
    )

    # The estimator question, measured on the target (which has the strongest lag structure).
    estimators = estimator_check(target, model, stimulus, check_key, ccg, check_trials)

    # jax.grad of the objective with respect to every parameter, at the initialisation.
    params = rate_matched_init(init_key, model, stimulus, data)
    zero_history = np.zeros((batch_size, num_delays, num_neurons), np.float32)

    def make_batch(trials):
        return batching.Batch(stimulus=stimulus, spikes=data[trials], history=zero_history)

    def loss(p, batch, key):
        return train.objective_loss(p, model, objective, batch, key)

    (total, terms), grads = jax.value_and_grad(loss, has_aux=True)(
        params, make_batch(np.arange(batch_size)), grad_key
    )
    gradient_check = _leaf_report(grads)

    # A short fit: train.fit with trial batches drawn from the K data trials.
    def batches(position):
        for trials in batching.TrialBatcher(np.arange(num_trials), batch_size, seed, position):
            yield make_batch(trials)

    data_ccg = ccg(data)
    before = measured_dissimilarity(params, model, stimulus, eval_key, ccg, data_ccg, check_trials)
    result = train.fit(
        model=model,
        params=params,
        objective=objective,
        batches=batches,
        config=train.TrainConfig(
            num_steps=num_steps, learning_rate=learning_rate, log_every=num_steps, seed=seed
        ),
        log=lambda line: None,
    )
    fitted = result.state.params
    after = measured_dissimilarity(fitted, model, stimulus, eval_key, ccg, data_ccg, check_trials)
    floor = measured_dissimilarity(target, model, stimulus, eval_key, ccg, data_ccg, check_trials)
    fitted_spikes = free_run(fitted, model, stimulus, eval_key, check_trials).spikes
    return {
        "initial_loss": float(total),
        "initial_terms": {name: float(v) for name, v in terms.items()},
        "estimator_check": estimators,
        "gradient_check": gradient_check,
        "ccg_dissimilarity_before": before,
        "ccg_dissimilarity_after": after,
        "ccg_dissimilarity_target": floor,
        "data_rate": float(data.mean()),
        "fitted_rate": float(fitted_spikes.mean()),
        "data_ccg_chain_lag2": float(
            np.mean([data_ccg[1, (i + 1) % num_neurons, i] for i in range(num_neurons)])
        ),
        "fitted_ccg_chain_lag2": float(
            np.mean([ccg(fitted_spikes)[1, (i + 1) % num_neurons, i] for i in range(num_neurons)])
        ),
        "target_chain_weight": float(chain_weight),
        "initial_chain_weight": _chain_weight(params),
        "fitted_chain_weight": _chain_weight(fitted),
        "seconds": time.perf_counter() - started,
    }


def compare_estimators(steps=(40, 200), estimators=("spikes", "probabilities", "mixed")):
    """The correlogram fit with each model-side estimator: {estimator: {steps: numbers}}."""
    keys = (
        "ccg_dissimilarity_before",
        "ccg_dissimilarity_after",
        "ccg_dissimilarity_target",
        "fitted_ccg_chain_lag2",
        "data_ccg_chain_lag2",
        "fitted_chain_weight",
    )
    table = {}
    for estimator in estimators:
        for num_steps in steps:
            numbers = main(num_steps=num_steps, ccg_estimator=estimator)
            table.setdefault(estimator, {})[num_steps] = {k: numbers[k] for k in keys}
    return table


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
    print(json.dumps(compare_estimators(), indent=2))
