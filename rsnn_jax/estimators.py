"""Gradient estimators of an expected statistic, exact references and an audit (docs/estimators.md).

A sample-and-measure loss d(T(z^D), T̂) needs, on the model side, an estimate T̂ of the
expected statistic S(θ) = E_θ[T(z)] of a batch z of B simulated trials, and its gradient
must estimate ∇S. The estimators compared here (``estimate``; each averages the statistic
over G independent groups of B trials, all from the same uniform draws):

* ``"probabilities"``: T(p) with p = σ(β ũ) of the simulation; the gradient flows exactly
  through p given the sampled history and by the straight-through pseudo-derivative through
  the history (``losses.sample_and_measure``'s default).
* ``"spikes"``: T(z) on straight-through samples (``estimator="spikes"``).
* ``"mixed"``: ``statistic.mixed(p, z)`` for a statistic that defines it: a product of
  spikes of several bins with the latest bin's spikes replaced by probabilities.
* ``"score"``: value T(z); gradient by the score function (likelihood ratio, REINFORCE)
  ∇S = E[(T(z) − b) ∇ log P_θ(z)] with a leave-one-out baseline b over the G groups, plus
  the exact pathwise term of entries that are probabilities (clamped visible neurons).
  Unbiased for any T: the reference.
* ``"score_probabilities"``: value T(p) with the same score-function correction: unbiased
  for ∇E[T(p)], which is ∇S when T is multilinear in each bin's spikes; less variance.

Exact references (``exact_expectation``): for a network small enough that the 2^m patterns
of its m sampled (trial, bin, neuron) entries can be listed, S(θ) = Σ_z P_θ(z) T(z) with
P_θ(z) the product of the Bernoulli probabilities of the pattern along its own recurrent
dynamics (``teacher_forced_logits``), and ∇S by ``jax`` through that sum.

``audit`` measures, with common random numbers, each estimator's bias and spread for the
value of the statistic, its Jacobian ∇S and the gradient of d(T^D, S(θ)).

References:
  Bellec, Wang et al. (NeurIPS 2021), main text eq. 4 and appendix D; Williams (1992),
  REINFORCE; Mohamed et al. (JMLR 2020), "Monte Carlo gradient estimation in machine
  learning" (score function, baselines, pathwise estimators).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from rsnn_jax import losses, network
from rsnn_jax import model as model_lib

ESTIMATORS: tuple[str, ...] = ("probabilities", "spikes", "mixed", "score", "score_probabilities")
MAX_PATTERN_BITS = 18


@dataclasses.dataclass(frozen=True)
class Design:
    """The simulated batch (static, hashable).

    Attributes:
      config: the network's sizes and constants.
      num_trials: B, the trials the statistic sees at once (one group).
      num_groups: G independent groups per estimate; every estimator averages the statistic
        over them (the score-function estimators need G ≥ 2 for their baseline).
      clamp_until: with recorded conditions, the visible neurons are clamped for bins
        t < clamp_until (None: every bin, a clamped pass). Unused in a free pass.
    """

    config: network.NetworkConfig
    num_trials: int
    num_groups: int = 8
    clamp_until: int | None = None


class Conditions(NamedTuple):
    """What the simulated trials are conditioned on.

    Attributes:
      features: float [T, F], shared by all trials.
      recorded: float [B, T, N_V] spikes the visible neurons of trial b are clamped to, or
        None for a free pass.
      initial_history: float [D, N] or [D, N_V] chronological spikes before bin 0, or None.
    """

    features: jax.Array
    recorded: jax.Array | None = None
    initial_history: jax.Array | None = None


def sampled_entries(design: Design, num_bins: int, clamped: bool) -> np.ndarray:
    """bool [B, T, N]: the entries that are Bernoulli samples (not clamped data)."""
    config = design.config
    sampled = np.ones((design.num_trials, num_bins, config.num_neurons), bool)
    if clamped:
        until = num_bins if design.clamp_until is None else design.clamp_until
        sampled[:, :until, : config.num_visible] = False
    return sampled


def teacher_forced_logits(
    params: network.NetworkParams,
    config: network.NetworkConfig,
    features: jax.Array,
    spikes: jax.Array,
    initial_history: jax.Array | None = None,
) -> jax.Array:
    """The logits β ũ of every bin of given spike patterns (each bin sees the pattern's past).

    Written from the model equations (docs/model.md), independently of ``network.simulate``.

    Args:
      params: network parameters.
      config: network sizes and constants.
      features: float [T, F].
      spikes: float [B, T, N] in {0, 1}, the whole pattern of B trials.
      initial_history: float [D, N] or [D, N_V] chronological history, or None (zeros).

    Returns:
      float [B, T, N].
    """
    num_trials, num_bins, n = spikes.shape
    d = config.num_delays
    history = jnp.zeros((d, n), spikes.dtype)
    if initial_history is not None:
        history = history.at[:, : initial_history.shape[1]].set(initial_history)
    history = jnp.broadcast_to(history, (num_trials, d, n))
    extended = jnp.concatenate([history, spikes], axis=1)  # row d + t is bin t
    recurrent = sum(
        extended[:, d - delay : d - delay + num_bins] @ params.recurrent_weights[delay - 1]
        for delay in range(1, d + 1)
    )
    voltage = features @ params.input_weights + params.bias + recurrent
    return config.temperature * (voltage - config.threshold) / config.threshold


def log_probability(logits: jax.Array, spikes: jax.Array, sampled: np.ndarray) -> jax.Array:
    """log P(spikes) of each trial: Σ over sampled (bin, neuron) of log Bernoulli(z; σ(x)).

    Args:
      logits: float [..., B, T, N].
      spikes: float [..., B, T, N] in {0, 1}.
      sampled: bool [B, T, N]; clamped entries are data and do not count.

    Returns:
      float [..., B].
    """
    terms = -losses.binary_cross_entropy(spikes, logits)
    return jnp.sum(jnp.where(sampled, terms, 0.0), axis=(-2, -1))


def _clamped_values(conditions: Conditions, config, num_trials: int, num_bins: int):
    """float [B, T, N]: the recorded spikes in the visible columns, zeros elsewhere."""
    dtype = jnp.asarray(conditions.features).dtype
    values = jnp.zeros((num_trials, num_bins, config.num_neurons), dtype)
    if conditions.recorded is None:
        return values
    return values.at[..., : config.num_visible].set(jnp.asarray(conditions.recorded, dtype))


def enumerate_patterns(sampled: np.ndarray) -> np.ndarray:
    """Every pattern of the sampled entries (zeros at the other entries).

    Args:
      sampled: bool [B, T, N] with m ≤ ``MAX_PATTERN_BITS`` true entries.

    Returns:
      float64 [2^m, B, T, N] in {0, 1}.
    """
    num_bits = int(sampled.sum())
    if num_bits > MAX_PATTERN_BITS:
        raise ValueError(
            f"enumerate_patterns: {num_bits} sampled entries, more than {MAX_PATTERN_BITS}: "
            "use a smaller network or the score-function reference"
        )
    bits = np.array(list(itertools.product([0.0, 1.0], repeat=num_bits)))
    patterns = np.zeros((len(bits),) + sampled.shape)
    patterns[:, sampled] = bits
    return patterns


def exact_expectation(
    function: Callable[[jax.Array], Any],
    params: network.NetworkParams,
    conditions: Conditions,
    design: Design,
) -> Any:
    """E_θ[function(signal)] by enumeration of every spike pattern of one group of B trials.

    ``signal`` is the pattern z at sampled entries and p = σ(β ũ) at clamped ones (a
    clamped visible spike is data; its model counterpart enters as its probability, exact
    for functions linear in each such entry). Differentiable in ``params``: the gradient is
    exact (the weights P_θ(z) and the clamped entries' p both depend on θ). Use float64.

    Args:
      function: float [B, T, N] → pytree of arrays.
      params: network parameters.
      conditions: features, clamped spikes, history.
      design: sizes (``num_groups`` is unused).

    Returns:
      The pytree of expectations.
    """
    features = jnp.asarray(conditions.features)
    num_bins = features.shape[0]
    clamped = conditions.recorded is not None
    sampled = sampled_entries(design, num_bins, clamped)
    clamped_values = _clamped_values(conditions, design.config, design.num_trials, num_bins)
    patterns = jnp.where(sampled, enumerate_patterns(sampled), clamped_values)
    patterns = patterns.astype(features.dtype)
    history = conditions.initial_history
    logits_of = lambda z: teacher_forced_logits(params, design.config, features, z, history)
    logits = jax.vmap(logits_of)(patterns)
    weights = jnp.exp(jnp.sum(log_probability(logits, patterns, sampled), axis=-1))
    signal = jnp.where(sampled, patterns, jax.nn.sigmoid(logits))
    outputs = jax.vmap(function)(signal)
    return jax.tree.map(lambda v: jnp.tensordot(weights, v, axes=1), outputs)


def simulate_groups(
    params: network.NetworkParams,
    conditions: Conditions,
    design: Design,
    noise: jax.Array,
    dampening: float | None = None,
) -> network.SimulationOutputs:
    """G groups of B trials with given uniform draws (``network.simulate_batch``).

    Args:
      params: network parameters.
      conditions: features, clamped spikes (repeated for every group), history.
      design: sizes and clamping.
      noise: float32 [G, B, T, N] uniform draws: the same draws give the same spikes for
        every estimator (common random numbers).
      dampening: overrides γ; 0 removes the straight-through path, so the logits' gradient
        is ∂x/∂θ with the sampled history held fixed (what the score function needs).

    Returns:
      SimulationOutputs with [G, B, T, N] leaves.
    """
    config = design.config
    if dampening is not None:
        config = dataclasses.replace(config, dampening=dampening)
    groups, trials, num_bins, n = noise.shape
    recorded, clamp_until = conditions.recorded, None
    if recorded is not None:
        recorded = jnp.tile(jnp.asarray(recorded), (groups, 1, 1))
        clamp_until = design.clamp_until
    run = network.simulate_batch(
        params,
        conditions.features,
        config=config,
        noise=noise.reshape(groups * trials, num_bins, n),
        recorded=recorded,
        clamp_until=clamp_until,
        initial_history=conditions.initial_history,
    )
    return jax.tree.map(lambda x: x.reshape(noise.shape), run)


def score_function_values(values: Any, log_probs: jax.Array) -> Any:
    """Each group's value with the score-function term in its gradient (leave-one-out baseline).

    Group g's output has the value v_g and the gradient ∇v_g + (v_g − b_g) ∇ log P(z_g), with
    b_g the mean of the other groups' v: independent of group g, so the mean over groups is
    unbiased for ∇E[v] (a baseline lowers the variance without adding bias).

    Args:
      values: pytree of [G, ...] arrays, v_g (their own gradient is the pathwise part).
      log_probs: float [G], log P_θ(z_g) of each group's sampled entries, differentiable
        with the samples held fixed.

    Returns:
      Pytree of [G, ...] arrays.
    """
    groups = log_probs.shape[0]
    if groups < 2:
        raise ValueError("score_function_values: needs at least 2 groups for the baseline")
    score = log_probs - jax.lax.stop_gradient(log_probs)  # value 0, gradient ∇ log P

    def one(v):
        baseline = (jnp.sum(v, axis=0, keepdims=True) - v) / (groups - 1)
        advantage = jax.lax.stop_gradient(v - baseline)
        return v + advantage * score.reshape((groups,) + (1,) * (v.ndim - 1))

    return jax.tree.map(one, values)


def cross_fitted_loss(dissimilarity, target: Any, groups: Any) -> jax.Array:
    """d(T^D, mean_g T̂_g) whose gradient is mean_g d′(T̂_{−g}) · ∇T̂_g.

    The plug-in gradient d′(T̂) · ∇T̂ multiplies two estimates from the same samples, and its
    mean is the gradient of E[d(T^D, T̂)] = d(T^D, S) + (for MSE) the variance of T̂: it
    also pushes toward a less variable statistic. Taking d′ at the other groups' mean
    T̂_{−g} removes that term: unbiased for ∇ d(T^D, S) when d′ is linear (MSE).

    Args:
      dissimilarity: "mse", "ce" or a function (data_stats, model_stats) → scalar.
      target: T^D, a pytree.
      groups: pytree of [G, ...] per-group estimates T̂_g with their gradients, G ≥ 2.

    Returns:
      float scalar: the value d(T^D, mean_g T̂_g).
    """
    d = losses.dissimilarity(dissimilarity)
    leaves = jax.tree.leaves(groups)
    num_groups = leaves[0].shape[0]
    frozen = jax.lax.stop_gradient(groups)
    others = jax.tree.map(lambda v: (v.sum(0, keepdims=True) - v) / (num_groups - 1), frozen)

    def one(g):
        at = jax.tree.map(lambda o, v, f: o[g] + v[g] - f[g], others, groups, frozen)
        return d(target, at)

    fitted = sum(one(g) for g in range(num_groups)) / num_groups
    value = d(target, jax.tree.map(lambda v: jnp.mean(v, axis=0), frozen))
    return value + fitted - jax.lax.stop_gradient(fitted)


def group_estimates(
    estimator: str,
    statistic: Callable[[jax.Array], Any],
    params: network.NetworkParams,
    conditions: Conditions,
    design: Design,
    noise: jax.Array,
) -> Any:
    """Each group's estimate T̂_g of E_θ[T(z)] by one estimator (see the module docstring).

    Args:
      estimator: one of ``ESTIMATORS``.
      statistic: T, float [B, T, N] → pytree; "mixed" needs ``statistic.mixed(p, z)``.
      params: network parameters.
      conditions: features, clamped spikes, history.
      design: sizes and clamping.
      noise: float32 [G, B, T, N] uniform draws.

    Returns:
      Pytree of [G, ...] arrays; their gradient is the estimator's.
    """
    sampled = sampled_entries(design, noise.shape[2], conditions.recorded is not None)
    if estimator in ("score", "score_probabilities"):
        run = simulate_groups(params, conditions, design, noise, dampening=0.0)
        spikes = jax.lax.stop_gradient(run.spikes)
        probabilities = run.probabilities
        signal = probabilities if estimator == "score_probabilities" else spikes
        values = jax.vmap(statistic)(jnp.where(sampled, signal, probabilities))
        log_probs = jnp.sum(log_probability(run.logits, spikes, sampled), axis=-1)
        return score_function_values(values, log_probs)
    run = simulate_groups(params, conditions, design, noise)
    probabilities = run.probabilities
    spikes = jnp.where(sampled, run.spikes, probabilities)
    if estimator == "probabilities":
        return jax.vmap(statistic)(probabilities)
    if estimator == "spikes":
        return jax.vmap(statistic)(spikes)
    if estimator == "mixed":
        if not hasattr(statistic, "mixed"):
            raise ValueError(f"group_estimates: {statistic!r} has no mixed(probabilities, spikes)")
        return jax.vmap(statistic.mixed)(probabilities, spikes)
    raise ValueError(f"group_estimates: estimator must be one of {ESTIMATORS}, got {estimator!r}")


def estimate(estimator, statistic, params, conditions, design, noise) -> Any:
    """The model-side estimate T̂ = mean_g T̂_g (arguments of ``group_estimates``)."""
    groups = group_estimates(estimator, statistic, params, conditions, design, noise)
    return jax.tree.map(lambda v: jnp.mean(v, axis=0), groups)


def estimator_loss(estimator, dissimilarity, target, groups) -> jax.Array:
    """The loss a user's term computes from per-group estimates: d(T^D, mean_g T̂_g), plug-in,
    or ``cross_fitted_loss`` for the score-function estimators (as ``ScoreFunctionTerm``)."""
    if estimator in ("score", "score_probabilities"):
        return cross_fitted_loss(dissimilarity, target, groups)
    mean = jax.tree.map(lambda v: jnp.mean(v, axis=0), groups)
    return losses.dissimilarity(dissimilarity)(target, mean)


# ----------------------------------------------------------------------------------------------
# The score-function estimator as a loss term.


@dataclasses.dataclass(frozen=True)
class ScoreFunctionTerm(losses.Term):
    """``sample_and_measure`` with the score-function gradient (unbiased, slow: a reference).

    The free pass's K trials are split into ``num_groups`` groups of K / G; the loss's value
    is d(T(z^D), T̂) with T̂ = mean_g T(z_g) (T^D on all K recorded trials, T̂ at batch size
    K / G: mind statistics that depend on the batch size), and its gradient is
    mean_g d′(T̂_{−g}) · [score-function estimate of ∇E[T] from group g]
    (``score_function_values``, ``cross_fitted_loss``): unbiased for MSE.

    The free pass must carry no straight-through gradient: build the model with
    ``NetworkConfig(dampening=0.0)`` (with the default γ the logits' gradient would also
    flow through the sampled history and the estimate would be biased).

    Attributes:
      statistic: T, float [K / G, T, N_V] → pytree (hashable).
      dissimilarity: "mse", "ce" or a function (data_stats, model_stats) → scalar.
      num_groups: G ≥ 2, dividing the number of simulated trials.
      value: "spikes" (T(z): unbiased for any T) or "probabilities" (T(p): unbiased, with
        less variance, only for T multilinear in each bin's spikes).
    """

    statistic: Callable[[jax.Array], Any]
    dissimilarity: str | Callable[[Any, Any], jax.Array] = "mse"
    num_groups: int = 4
    value: str = "spikes"

    def __post_init__(self):
        if self.num_groups < 2:
            raise ValueError("ScoreFunctionTerm: num_groups must be >= 2")
        if self.value not in ("spikes", "probabilities"):
            raise ValueError(
                f"ScoreFunctionTerm: value must be spikes or probabilities, got {self.value!r}"
            )
        losses.dissimilarity(self.dissimilarity)

    @property
    def passes(self) -> model_lib.Passes:
        return model_lib.Passes(free=True)

    def __call__(self, outputs: model_lib.PassOutputs, recorded: jax.Array) -> jax.Array:
        num_visible = recorded.shape[-1]
        run = outputs.free
        trials, num_bins = run.spikes.shape[0], run.spikes.shape[1]
        if trials % self.num_groups:
            raise ValueError(f"ScoreFunctionTerm: {trials} trials in {self.num_groups} groups")
        shape = (self.num_groups, trials // self.num_groups, num_bins, -1)
        spikes = jax.lax.stop_gradient(run.spikes).reshape(shape)
        logits = run.logits.reshape(shape)
        signal = spikes if self.value == "spikes" else jax.nn.sigmoid(logits)
        values = jax.vmap(self.statistic)(signal[..., :num_visible])
        log_probs = jnp.sum(-losses.binary_cross_entropy(spikes, logits), axis=(1, 2, 3))
        groups = score_function_values(values, log_probs)
        return cross_fitted_loss(self.dissimilarity, self.statistic(recorded), groups)


def score_function_term(
    statistic: Callable[[jax.Array], Any],
    dissimilarity: str | Callable[[Any, Any], jax.Array] = "mse",
    *,
    num_groups: int = 4,
    value: str = "spikes",
) -> ScoreFunctionTerm:
    """A score-function sample-and-measure term, the arguments of ``losses.sample_and_measure``.

    Example::

        model = model_lib.Model(encoder, network.NetworkConfig(69, dampening=0.0))
        objective = losses.compose({"rho": (1.0, estimators.score_function_term(T, "mse"))})
    """
    return ScoreFunctionTerm(statistic, dissimilarity, num_groups, value)


# ----------------------------------------------------------------------------------------------
# The audit.


class Reference(NamedTuple):
    """What the estimators are compared with (float64 NumPy).

    Attributes:
      value: [M] S(θ), the flattened expected statistic.
      jacobian: [M, P] ∇S with respect to the flattened parameters.
      gradient: [P] ∇ d(T^D, S(θ)).
      kind: "exact" (enumeration) or "score" (score-function Monte Carlo).
      noise: relative Monte-Carlo error of ``gradient`` (0 for "exact").
    """

    value: np.ndarray
    jacobian: np.ndarray
    gradient: np.ndarray
    kind: str
    noise: float


class AuditRow(NamedTuple):
    """One estimator against the reference over R repeats (relative to the reference's norm).

    Attributes:
      value_bias: ‖E[T̂] − S‖ / ‖S‖.
      value_sd: sqrt(E‖T̂ − E T̂‖²) / ‖S‖, the spread of one estimate.
      jacobian_cosine: cosine between E[∇T̂] and ∇S (flattened [M, P]).
      jacobian_error: ‖E[∇T̂] − ∇S‖ / ‖∇S‖.
      jacobian_noise: the spread of one ∇T̂ over ‖∇S‖, divided by sqrt(R): the error an
        unbiased estimator would show.
      bias_cosine: cosine between E[∂T̂/∂b] and ∂S/∂b (the bias columns of the Jacobian;
        for one scalar statistic and one neuron, the sign agreement).
      gradient_cosine: cosine between E[∇ d(T^D, T̂)] and ∇ d(T^D, S).
      gradient_error: ‖E[∇d̂] − ∇d‖ / ‖∇d‖.
      gradient_noise: the spread of one ∇d̂ over ‖∇d‖, divided by sqrt(R).
      jacobian: float64 [M, P], E[∇T̂] (flattened statistic × flattened parameters).
      gradient: float64 [P], E[∇d̂].
    """

    value_bias: float
    value_sd: float
    jacobian_cosine: float
    jacobian_error: float
    jacobian_noise: float
    bias_cosine: float
    gradient_cosine: float
    gradient_error: float
    gradient_noise: float
    jacobian: np.ndarray
    gradient: np.ndarray


def _flat_jacobian(function, params):
    """(flat value [M], Jacobian [M, P], unravel of the value) of a pytree-valued function."""
    flat, unravel = ravel_pytree(params)
    structure = {}

    def flat_function(f):
        value, structure["unravel"] = ravel_pytree(function(unravel(f)))
        return value

    value, vjp = jax.vjp(flat_function, flat)
    (jacobian,) = jax.vmap(vjp)(jnp.eye(value.shape[0], dtype=value.dtype))
    return value, jacobian, structure["unravel"]


def _samples(estimator, statistic, dissimilarity, design, target, params, conditions, keys):
    """Per repeat: flat T̂ [R, M], Jacobian [R, M, P], loss gradient [R, P]."""
    num_bins, n = conditions.features.shape[0], design.config.num_neurons
    shape = (design.num_groups, design.num_trials, num_bins, n)

    def one(key):
        noise = jax.random.uniform(key, shape)
        groups = lambda p: group_estimates(estimator, statistic, p, conditions, design, noise)
        mean = lambda p: jax.tree.map(lambda v: jnp.mean(v, axis=0), groups(p))
        value, jacobian, _ = _flat_jacobian(mean, params)
        loss = lambda p: estimator_loss(estimator, dissimilarity, target, groups(p))
        return value, jacobian, ravel_pytree(jax.grad(loss)(params))[0]

    return jax.vmap(one)(keys)


_samples_jit = jax.jit(_samples, static_argnums=(0, 1, 2, 3))
_CHUNK = 256


def _draw(estimator, statistic, dissimilarity, design, target, params, conditions, key, repeats):
    """``_samples`` over ``repeats`` keys (rounded up to a multiple of 256), in chunks of 256
    (one compilation, bounded memory), as float64 NumPy."""
    keys = jax.random.split(key, -(-repeats // _CHUNK) * _CHUNK).reshape(-1, _CHUNK)
    chunks = [
        _samples_jit(estimator, statistic, dissimilarity, design, target, params, conditions, k)
        for k in keys
    ]
    return tuple(np.concatenate([np.asarray(c[i], np.float64) for c in chunks]) for i in range(3))


def _exact(statistic, dissimilarity, design, target, params, conditions):
    expectation = lambda p: exact_expectation(statistic, p, conditions, design)
    value, jacobian, unravel = _flat_jacobian(expectation, params)
    outer = jax.grad(lambda v: losses.dissimilarity(dissimilarity)(target, unravel(v)))(value)
    return value, jacobian, outer @ jacobian


_exact_jit = jax.jit(_exact, static_argnums=(0, 1, 2))


def exact_reference(statistic, dissimilarity, target, params, conditions, design) -> Reference:
    """S(θ), ∇S and ∇ d(T^D, S) by enumeration, in float64 (``exact_expectation``)."""
    with jax.enable_x64(True):
        as64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)
        outputs = _exact_jit(
            statistic, dissimilarity, design, as64(target), as64(params), as64(conditions)
        )
        value, jacobian, gradient = (np.asarray(x, np.float64) for x in outputs)
    return Reference(value, jacobian, gradient, "exact", 0.0)


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _cosine(a, b):
    a, b = a.ravel(), b.ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _spread(samples, scale):
    centred = samples - samples.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(centred.reshape(len(samples), -1) ** 2, axis=1))) / scale)


def _summarise(values, jacobians, gradients, reference: Reference, bias: np.ndarray) -> AuditRow:
    """Samples [R, M], [R, M, P], [R, P] against the reference; ``bias``: bool [P], the bias
    entries of the flattened parameters."""
    root = math.sqrt(len(values))
    jacobian, gradient = jacobians.mean(0), gradients.mean(0)
    return AuditRow(
        value_bias=_relative(values.mean(0), reference.value),
        value_sd=_spread(values, np.linalg.norm(reference.value)),
        jacobian_cosine=_cosine(jacobian, reference.jacobian),
        jacobian_error=_relative(jacobian, reference.jacobian),
        jacobian_noise=_spread(jacobians, np.linalg.norm(reference.jacobian)) / root,
        bias_cosine=_cosine(jacobian[:, bias], reference.jacobian[:, bias]),
        gradient_cosine=_cosine(gradient, reference.gradient),
        gradient_error=_relative(gradient, reference.gradient),
        gradient_noise=_spread(gradients, np.linalg.norm(reference.gradient)) / root,
        jacobian=jacobian,
        gradient=gradient,
    )


def audit(
    statistic: Callable[[jax.Array], Any],
    dissimilarity: str | Callable[[Any, Any], jax.Array],
    target: Any,
    params: network.NetworkParams,
    conditions: Conditions,
    design: Design,
    *,
    key: jax.Array,
    estimators: tuple[str, ...] = ("probabilities", "spikes", "score"),
    num_repeats: int = 1000,
    reference: str = "exact",
    reference_repeats: int = 20000,
) -> tuple[Reference, dict[str, AuditRow]]:
    """Bias and spread of each estimator's value and gradients, common random numbers.

    Every estimator sees the same R draws of G groups of B trials. The reference is exact
    (enumeration, small networks) or the score-function estimator's mean over
    ``reference_repeats`` independent draws (any network; its own error is reported).

    Args:
      statistic: T, float [B, T, N] → pytree (all neurons; select the visible ones inside).
      dissimilarity: "mse", "ce" or a function (data_stats, model_stats) → scalar.
      target: T^D, the data's statistic (a pytree like T's output).
      params: float32 network parameters θ.
      conditions: features, clamped spikes, history.
      design: sizes, groups and clamping.
      key: PRNG key of the draws.
      estimators: names from ``ESTIMATORS``.
      num_repeats: R independent estimates per estimator (rounded up to a multiple of 256).
      reference: "exact" or "score".
      reference_repeats: R for the score-function reference.

    Returns:
      (Reference, {estimator: AuditRow}).
    """

    def draw(name, key, repeats):
        return _draw(
            name, statistic, dissimilarity, design, target, params, conditions, key, repeats
        )

    draw_key, reference_key = jax.random.split(key)
    if reference == "exact":
        ref = exact_reference(statistic, dissimilarity, target, params, conditions, design)
    elif reference == "score":
        values, jacobians, gradients = draw("score", reference_key, reference_repeats)
        gradient = gradients.mean(0)
        noise = _spread(gradients, np.linalg.norm(gradient)) / math.sqrt(len(gradients))
        ref = Reference(values.mean(0), jacobians.mean(0), gradient, "score", noise)
    else:
        raise ValueError(f"audit: reference must be 'exact' or 'score', got {reference!r}")
    zeros = jax.tree.map(jnp.zeros_like, params)
    bias = np.asarray(ravel_pytree(zeros._replace(bias=jnp.ones_like(params.bias)))[0]) > 0
    rows = {name: _summarise(*draw(name, draw_key, num_repeats), ref, bias) for name in estimators}
    return ref, rows
