"""Research use: fit a statistic you wrote yourself with the generic sample-and-measure loss.

    python examples/custom_statistic.py            # the walk-through, numbers as JSON
    python examples/custom_statistic.py --small    # the same at the size the test runs
    python examples/custom_statistic.py --compare  # also: the fit with each estimator

Walk-through (docs/custom_statistics.md explains every step and the numbers):

1. A *target* network with a known lagged structure (a chain of neurons, each exciting the
   next one two bins later, and refractory) plays the recording: its free simulations are
   the data.
2. Two user statistics, written as small frozen dataclasses (hashable: they become static
   data of the objective):
   * ``CoactivityDistribution``: P(no neuron fires), P(exactly one), P(two or more) in a bin.
     Multilinear in each bin's spikes, so evaluating it on the model's probabilities p is an
     unbiased Monte-Carlo estimate (``estimator="probabilities"``).
   * ``CrossCorrelogram``: C_d[i, j] = mean_{k,t} z_{t,i} z_{t−d,j} for lags d = 1..L. A
     product *across bins*: p_{t,i} depends on the sampled z_{t−d,j}, so T(p) is biased; the
     generic term must use straight-through spikes (``estimator="spikes"``), or a custom term
     may use the mixed estimator p_{t,i} z_{t−d,j} (``MixedCrossCorrelogramTerm``).
3. ``estimator_check`` measures those claims: the mean of T over many sampled trials (the
   truth) against T on probabilities, and against the mixed estimator; and how often the
   straight-through pseudo-derivative is non-zero.
4. ``jax.grad`` of the composed objective, written with ``losses.sample_and_measure``, with
   respect to all parameters (encoder and network): finite and non-zero for every leaf.
5. A short ``train.fit`` moves the model's correlogram (and coactivity distribution) toward
   the data's; the dissimilarities are measured before and after on fresh free simulations
   with a fixed key (sampled spikes: no estimator question there).

``main()`` returns every number it prints; ``tests/test_examples.py`` runs ``main(small=True)``
and checks them.
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
    replaced by their probabilities. The value is unbiased, the gradient is not: it is exact
    through p_{t,i} only, and how θ changes the probability of z_{t−d,j} is left to the
    pseudo-derivative (docs/estimators.md; never build a centred or normalised statistic
    on it).

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
        (``MixedCrossCorrelogramTerm``: unbiased value, gradient exact only through p_{t,i},
        docs/estimators.md).
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
      coactivity distribution over ``num_trials`` free trials, and the fraction of
      (trial, bin, neuron) entries where the pseudo-derivative γ max(0, 1 − |ũ|) is non-zero
      (the only entries through which a straight-through spike passes a gradient).
    """
    run = free_run(params, model, stimulus, key, num_trials)
    spikes, probabilities = run.spikes, run.probabilities
    truth = statistic(spikes)

    def rel(estimate, reference):
        return float(jnp.linalg.norm(estimate - reference) / jnp.linalg.norm(reference))

    coactivity = CoactivityDistribution()
    scaled_voltage = run.logits / model.network.temperature
    return {
        "ccg_rel_error_probabilities": rel(statistic(probabilities), truth),
        "ccg_rel_error_mixed": rel(
            mixed_cross_correlogram(probabilities, spikes, statistic.max_lag), truth
        ),
        "coactivity_rel_error_probabilities": rel(coactivity(probabilities), coactivity(spikes)),
        "surrogate_nonzero_fraction": float(jnp.mean(jnp.abs(scaled_voltage) < 1.0)),
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


@dataclasses.dataclass(frozen=True)
class ExampleConfig:
    """Sizes and settings of the walk-through.

    Attributes:
      num_neurons: N (all visible).
      num_bins: T bins per trial (one repeated white-noise movie).
      num_trials: K recorded trials of the target.
      batch_size: trials per training batch.
      image_size: frames are image_size × image_size.
      max_lag: L, lags 1..L of the correlogram.
      chain_weight: the target's chain synapse i → i + 1 at delay 2 (units of u; ×β/v_thr =
        2.5 logits per 1.0).
      num_steps, learning_rate: the fit (Adam, ``train.fit``).
      check_trials: free trials simulated for the estimator check and the dissimilarities.
      ccg_estimator: the correlogram term of the fit: "mixed" (default: unbiased value,
        gradient exact only through p_{t,i}), "spikes" (generic ``sample_and_measure`` on
        straight-through samples) or "probabilities" (generic, biased for this statistic).
      coactivity_weight: weight of the coactivity term (``sample_and_measure``, p).
      seed: everything is a pure function of it.
    """

    num_neurons: int = 8
    num_bins: int = 60
    num_trials: int = 32
    batch_size: int = 16
    image_size: int = 6
    max_lag: int = 3
    chain_weight: float = 0.8
    num_steps: int = 60
    learning_rate: float = 0.02
    check_trials: int = 512
    ccg_estimator: str = "mixed"
    coactivity_weight: float = 0.03
    seed: int = 0


# What tests/test_examples.py runs (about 5 s after compilation on 2 CPU cores).
SMALL = {"num_bins": 40, "check_trials": 256}


def main(small: bool = False, **overrides) -> dict:
    """Runs the walk-through and returns its numbers (see the module docstring).

    Args:
      small: the test size (``SMALL``: fewer bins and check trials).
      **overrides: any field of ``ExampleConfig``.

    Returns:
      dict with the estimator check (relative errors, surrogate fraction), the gradient check
      (per leaf: finite, max |g|) of the generic terms, the correlogram and coactivity
      dissimilarities before/after the fit (and of the target itself: the noise floor), the
      firing rates, the chain strength and the wall time.
    """
    config = dataclasses.replace(ExampleConfig(), **{**(SMALL if small else {}), **overrides})
    started = time.perf_counter()
    key = jax.random.key(config.seed)
    target_key, data_key, init_key, check_key, grad_key, eval_key = jax.random.split(key, 6)
    n = config.num_neurons
    model = make_model(n)
    receptive_field, num_delays = model.receptive_field, model.network.num_delays
    rng = np.random.default_rng(config.seed)
    # One repeated movie of white-noise frames: a clip for T bins has T + R − 1 frames.
    size = config.image_size
    stimulus = rng.uniform(size=(config.num_bins + receptive_field - 1, size, size))
    stimulus = jnp.asarray(stimulus, jnp.float32)
    target = make_target(target_key, model, stimulus.shape, config.chain_weight)
    data = free_run(target, model, stimulus, data_key, config.num_trials).spikes  # [K, T, N]

    ccg, coactivity = CrossCorrelogram(config.max_lag), CoactivityDistribution()
    coactivity_term = losses.sample_and_measure(coactivity, "mse")  # unbiased on p

    def objective_with(ccg_estimator):
        return losses.compose(
            {
                "ccg": (1.0, correlogram_term(config.max_lag, ccg_estimator)),
                "coactivity": (config.coactivity_weight, coactivity_term),
            }
        )

    # The estimator question, measured on the target (which has the strongest lag structure).
    estimators = estimator_check(target, model, stimulus, check_key, ccg, config.check_trials)

    # jax.grad of the generic objective (both terms through losses.sample_and_measure) with
    # respect to every parameter, at the initialisation.
    params = rate_matched_init(init_key, model, stimulus, data)
    zero_history = np.zeros((config.batch_size, num_delays, n), np.float32)

    def make_batch(trials):
        return batching.Batch(stimulus=stimulus, spikes=data[trials], history=zero_history)

    def loss(p, objective, batch, key):
        return train.objective_loss(p, model, objective, batch, key)

    (total, terms), grads = jax.value_and_grad(loss, has_aux=True)(
        params, objective_with("spikes"), make_batch(np.arange(config.batch_size)), grad_key
    )
    gradient_check = _leaf_report(grads)

    # A short fit: train.fit with trial batches drawn from the K data trials.
    def batches(position):
        batcher = batching.TrialBatcher(
            np.arange(config.num_trials), config.batch_size, config.seed, position
        )
        for trials in batcher:
            yield make_batch(trials)

    result = train.fit(
        model=model,
        params=params,
        objective=objective_with(config.ccg_estimator),
        batches=batches,
        config=train.TrainConfig(
            num_steps=config.num_steps,
            learning_rate=config.learning_rate,
            log_every=config.num_steps,
            seed=config.seed,
        ),
        log=lambda line: None,
    )
    fitted = result.state.params

    def dissimilarity(p, statistic):
        return measured_dissimilarity(
            p, model, stimulus, eval_key, statistic, statistic(data), config.check_trials
        )

    fitted_spikes = free_run(fitted, model, stimulus, eval_key, config.check_trials).spikes
    data_ccg, fitted_ccg = ccg(data), ccg(fitted_spikes)
    chain = [((i + 1) % n, i) for i in range(n)]  # C_2[i + 1, i]: i fired 2 bins earlier
    return {
        "config": dataclasses.asdict(config),
        "initial_loss": float(total),
        "initial_terms": {name: float(v) for name, v in terms.items()},
        "estimator_check": estimators,
        "gradient_check": gradient_check,
        "ccg_dissimilarity_before": dissimilarity(params, ccg),
        "ccg_dissimilarity_after": dissimilarity(fitted, ccg),
        "ccg_dissimilarity_target": dissimilarity(target, ccg),
        "coactivity_dissimilarity_before": dissimilarity(params, coactivity),
        "coactivity_dissimilarity_after": dissimilarity(fitted, coactivity),
        "coactivity_dissimilarity_target": dissimilarity(target, coactivity),
        "data_rate": float(data.mean()),
        "fitted_rate": float(fitted_spikes.mean()),
        "data_ccg_chain_lag2": float(np.mean([data_ccg[1, i, j] for i, j in chain])),
        "fitted_ccg_chain_lag2": float(np.mean([fitted_ccg[1, i, j] for i, j in chain])),
        "target_chain_weight": float(config.chain_weight),
        "initial_chain_weight": _chain_weight(params),
        "fitted_chain_weight": _chain_weight(fitted),
        "seconds": time.perf_counter() - started,
    }


def compare_estimators(estimators=("mixed", "spikes", "probabilities"), seeds=(0, 1, 2), **kw):
    """The fit with each correlogram estimator: {estimator: [after / before, one per seed]}."""
    table = {}
    for estimator in estimators:
        for seed in seeds:
            numbers = main(ccg_estimator=estimator, seed=seed, **kw)
            ratio = numbers["ccg_dissimilarity_after"] / numbers["ccg_dissimilarity_before"]
            table.setdefault(estimator, []).append(ratio)
    return table


if __name__ == "__main__":
    import sys

    small = "--small" in sys.argv[1:]
    print(json.dumps(main(small=small), indent=2))
    if "--compare" in sys.argv[1:]:
        print(json.dumps(compare_estimators(**(SMALL if small else {})), indent=2))
