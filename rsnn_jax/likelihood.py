"""Log-likelihood of the recorded (visible) spikes of a network with hidden neurons.

With hidden neurons the model's likelihood of the recorded spikes z^V marginalises the
hidden spikes z^H (docs/model.md, one bin: z_t ~ Bernoulli(σ(logits(z_{t−D..t−1}))))::

    P(z^V) = Σ_{z^H} Π_t P(z^V_t | z_{<t}) P(z^H_t | z_{<t})

One clamped pass (hidden neurons sampled freely, visible ones clamped) gives one sample of
the ELBO (eqs. 15–19), a lower bound whose gap can be large: it is not the likelihood. This
module estimates the sum by sequential Monte Carlo (a bootstrap particle filter) over the
hidden spikes. Each of P particles carries its own spike history (the visible rows are the
recorded spikes, the hidden rows its own samples). At every bin each particle is weighted by
P(z^V_t | its history), the log of the mean weight is added to the estimate, the hidden
spikes of the bin are drawn from their Bernoulli given the history (``network.step`` with
the visible neurons clamped), and the particles are resampled (systematic resampling) when
the effective sample size falls below ``resample_threshold · P``.

The estimate Ẑ of P(z^V) is unbiased; log Ẑ is therefore biased low (Jensen), by about
Var(log Ẑ)/2 when log Ẑ is roughly normal. Both the bias and the spread shrink as P grows.
``num_repeats`` independent filters per trial give a Monte-Carlo standard error (the spread,
not the bias). The bootstrap filter draws the hidden spikes without looking ahead: when
hidden neurons drive visible ones strongly, the weights degenerate and many particles are
needed (docs/losses_and_metrics.md measures this on the built-in synthetic target).

Conventions: as for the clamped pass, the history before bin 0 is the recorded one for the
visible neurons and silent for the hidden ones (unless a full ``[D, N]`` history is given),
so the estimate is P(z^V_{0..T−1} | that history, stimulus). Without hidden neurons all
particles are the same and the estimate is the exact clamped log-likelihood.

The core is written for one trial, time-major (one ``lax.scan`` over bins);
``smc_log_likelihood`` vmaps it over repeats and trials and is jitted.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rsnn_jax import network


class SMCOutputs(NamedTuple):
    """Sequential Monte Carlo estimates of the visible neurons' log-likelihood.

    Attributes:
      log_likelihood: float32 [K, R], log Ẑ in nats for each trial's whole visible spike
        train (summed over bins and visible neurons), one value per independent filter.
      effective_sample_size: float32 [K, R, T], the effective sample size
        1 / Σ_p w_p² of the normalised weights at each bin, before resampling (in [1, P]).
    """

    log_likelihood: jax.Array
    effective_sample_size: jax.Array

    @property
    def total(self) -> jax.Array:
        """float32 scalar, Σ_k mean_r log Ẑ_{k,r}: the log-likelihood of all trials."""
        return jnp.sum(jnp.mean(self.log_likelihood, axis=1))

    @property
    def standard_error(self) -> jax.Array:
        """float32 scalar, the Monte-Carlo standard error of ``total``,
        sqrt(Σ_k var_r(log Ẑ_{k,r}) / R); NaN with a single repeat."""
        num_repeats = self.log_likelihood.shape[1]
        if num_repeats < 2:
            return jnp.array(jnp.nan, jnp.float32)
        variance = jnp.var(self.log_likelihood, axis=1, ddof=1)
        return jnp.sqrt(jnp.sum(variance) / num_repeats)


def _systematic_resample(key: jax.Array, log_weights: jax.Array) -> jax.Array:
    """Ancestor indices int32 [P] from normalised log-weights [P] (systematic resampling:
    one uniform draw, P evenly spaced positions; particle p is copied ≈ P·w_p times)."""
    num_particles = log_weights.shape[0]
    cumulative = jnp.cumsum(jnp.exp(log_weights))
    # Normalise by the last entry: float32 round-off must not leave positions beyond it.
    cumulative = cumulative / cumulative[-1]
    positions = (jax.random.uniform(key) + jnp.arange(num_particles)) / num_particles
    indices = jnp.searchsorted(cumulative, positions, side="right")
    return jnp.minimum(indices, num_particles - 1)


def _filter_trial(
    params, config, features, recorded, history, key, num_particles, resample_threshold
):
    """One bootstrap particle filter over one trial.

    Args:
      params: NetworkParams.
      config: NetworkConfig (static).
      features: float32 [T, F].
      recorded: float32 [T, N_V].
      history: float32 [D, N] in delay order (row d − 1 = d bins ago).
      key: PRNG key.
      num_particles: P (static).
      resample_threshold: resample when ESS < resample_threshold · P.

    Returns:
      (log Ẑ float32 scalar, ESS float32 [T]).
    """
    num_visible = config.num_visible
    log_uniform = -math.log(num_particles)
    step = jax.vmap(network.step, in_axes=(None, None, 0, None, 0, None, None))

    def body(carry, xs):
        histories, log_weights, log_z = carry
        features_t, recorded_t, key_t = xs
        noise_key, resample_key = jax.random.split(key_t)
        noise = jax.random.uniform(noise_key, (num_particles, config.num_neurons))
        # Hidden spikes of this bin are drawn given the history only: they are independent
        # of the visible spikes of the same bin, so sampling them before weighting is exact.
        new_histories, outputs = step(
            params, config, histories, features_t, noise, recorded_t, True
        )
        visible_logits = outputs.logits[:, :num_visible]
        log_emission = jnp.sum(
            recorded_t * jax.nn.log_sigmoid(visible_logits)
            + (1.0 - recorded_t) * jax.nn.log_sigmoid(-visible_logits),
            axis=-1,
        )
        # The weights enter normalised (they sum to 1), so the log of the weighted mean of
        # this bin's emission probabilities is one logsumexp.
        log_weights = log_weights + log_emission
        increment = jax.nn.logsumexp(log_weights)
        log_weights = log_weights - increment
        ess = jnp.exp(-jax.nn.logsumexp(2.0 * log_weights))
        resample = ess < resample_threshold * num_particles
        ancestors = _systematic_resample(resample_key, log_weights)
        histories = jnp.where(resample, new_histories[ancestors], new_histories)
        log_weights = jnp.where(resample, log_uniform, log_weights)
        return (histories, log_weights, log_z + increment), ess

    histories = jnp.broadcast_to(history, (num_particles,) + history.shape)
    log_weights = jnp.full((num_particles,), log_uniform, jnp.float32)
    keys = jax.random.split(key, recorded.shape[0])
    init = (histories, log_weights, jnp.zeros((), jnp.float32))
    (_, _, log_z), ess = jax.lax.scan(body, init, (features, recorded, keys))
    return log_z, ess


@functools.partial(jax.jit, static_argnames=("config", "num_particles", "num_repeats"))
def smc_log_likelihood(
    params: network.NetworkParams,
    features: jax.Array,
    recorded: jax.Array,
    *,
    config: network.NetworkConfig,
    key: jax.Array,
    num_particles: int = 256,
    num_repeats: int = 2,
    initial_history: jax.Array | None = None,
    resample_threshold: float | jax.Array = 0.5,
) -> SMCOutputs:
    """Log-likelihood of the recorded visible spikes, hidden spikes marginalised by SMC.

    A bootstrap particle filter with ``num_particles`` particles per trial and
    ``num_repeats`` independent filters (see the module docstring). ``exp`` of each value is
    an unbiased estimate of P(z^V | stimulus, initial history); the log is biased low by
    about half its variance. Without hidden neurons it is the exact log-likelihood of a
    clamped pass, Σ_{t,i} log P(z^D_{t,i} | σ(logits)).

    Jitted: ``config``, ``num_particles`` and ``num_repeats`` are static. Cost: one
    [K·R·P, D·N] @ [D·N, N] matmul per bin.

    Args:
      params: network parameters.
      features: float32 [T, F] shared by the trials, or [K, T, F] per trial.
      recorded: float32 [K, T, N_V] recorded visible spikes.
      config: network sizes and constants (static).
      key: PRNG key.
      num_particles: P particles per filter.
      num_repeats: R independent filters per trial (R ≥ 2 for a standard error).
      initial_history: chronological history before bin 0, float32 [D, N_V] or [D, N]
        shared, or [K, D, N_V] / [K, D, N] per trial (hidden rows silent when only the
        visible ones are given); default zeros.
      resample_threshold: resample when the effective sample size is below this fraction
        of P (1 resamples at every bin unless all weights are equal, 0 never).

    Returns:
      SMCOutputs with ``log_likelihood`` [K, R] (nats) and ``effective_sample_size``
      [K, R, T]; ``.total`` and ``.standard_error`` summarise them over trials.

    References:
      Doucet & Johansen (2011), "A tutorial on particle filtering and smoothing" (bootstrap
      filter, unbiased likelihood estimate); appendix D eqs. 15–19 for the ELBO it replaces.
    """
    recorded = jnp.asarray(recorded, jnp.float32)
    features = jnp.asarray(features, jnp.float32)
    if recorded.ndim != 3 or recorded.shape[2] != config.num_visible:
        raise ValueError(
            f"smc_log_likelihood: recorded must be [K, T, {config.num_visible}], got "
            f"{list(recorded.shape)}"
        )
    num_trials, num_bins = recorded.shape[:2]
    if features.ndim not in (2, 3) or features.shape[-2] != num_bins:
        raise ValueError(
            f"smc_log_likelihood: features must be [{num_bins}, F] or [K, {num_bins}, F], got "
            f"{list(features.shape)}"
        )
    if features.ndim == 3 and features.shape[0] != num_trials:
        raise ValueError(
            f"smc_log_likelihood: features have {features.shape[0]} trials, recorded {num_trials}"
        )
    if num_particles < 1 or num_repeats < 1:
        raise ValueError(
            f"smc_log_likelihood: num_particles and num_repeats must be >= 1, got "
            f"{num_particles} and {num_repeats}"
        )
    network._check_params(params, config, features.shape[-1], "smc_log_likelihood")

    def initial(h):
        return network._initial_history(h, config, "smc_log_likelihood")

    if initial_history is not None and np.ndim(initial_history) == 3:
        history = jax.vmap(initial)(jnp.asarray(initial_history, jnp.float32))
        history_axis = 0
    else:
        history, history_axis = initial(initial_history), None
    if history_axis == 0 and history.shape[0] != num_trials:
        raise ValueError(
            f"smc_log_likelihood: initial_history has {history.shape[0]} trials, recorded "
            f"{num_trials}"
        )

    def one(features, recorded, history, key):
        return _filter_trial(
            params, config, features, recorded, history, key, num_particles, resample_threshold
        )

    repeats = jax.vmap(one, in_axes=(None, None, None, 0))
    trials = jax.vmap(repeats, in_axes=(0 if features.ndim == 3 else None, 0, history_axis, 0))
    keys = jax.random.split(key, (num_trials, num_repeats))
    log_likelihood, ess = trials(features, recorded, history, keys)
    return SMCOutputs(log_likelihood=log_likelihood, effective_sample_size=ess)
