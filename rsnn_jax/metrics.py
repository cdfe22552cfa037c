"""Evaluation metrics (docs/losses_and_metrics.md; appendix C, tables S4 and S6, Fig. S3).

All metrics are JAX functions (jit-friendly, run on the accelerator) that return JAX arrays;
call ``float()`` or ``np.asarray`` on the result for reports. A metric is NaN exactly where it
is mathematically undefined: a Pearson correlation with a constant PSTH, a noise correlation
of a neuron with zero total variance (silent, or firing in every bin), bits per spike of a
neuron without spikes, an R² whose target has zero variance. ``nan_summary`` summarises such
arrays over the defined entries and counts the undefined ones.

References:
  Bellec, Wang et al. (NeurIPS 2021): appendix C eqs. 7–11; Table S4 (connectivity R²);
  Table S6 (offset-invariant NC R²); appendix D "Single-trial statistics" and Fig. S3
  (multi-step log-likelihood).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rsnn_jax import network, statistics

_LN2 = math.log(2.0)


def _safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """numerator / denominator, NaN where the denominator is 0 (no division by zero)."""
    defined = denominator != 0
    return jnp.where(defined, numerator / jnp.where(defined, denominator, 1.0), jnp.nan)


def psth_correlation(
    data_spikes: jax.Array, model: jax.Array, smoothing_bins: int | None = None
) -> jax.Array:
    """Pearson correlation between the data PSTH and the model PSTH, per neuron (eq. 7).

    ρ_i = Σ_t (z̄_{t,i} − z̄_i)(z̄^D_{t,i} − z̄^D_i) / sqrt(Σ_t (z̄_{t,i} − z̄_i)² Σ_t (z̄^D_{t,i} −
    z̄^D_i)²). Pass sampled spikes for eq. 7 as written, or probabilities σ(u) for the less
    noisy estimator of appendix C.

    Args:
      data_spikes: float32 [K, T, N] recorded spikes.
      model: float32 [K′, T, N] simulated spikes or spike probabilities (K′ may differ).
      smoothing_bins: if set, both PSTHs are smoothed with a boxcar of this many bins first
        ("valid" mode, ``statistics.smooth``; Fig. S4: 280 ms = 7 bins of 40 ms).

    Returns:
      float32 [N]; NaN for a neuron whose data or model PSTH is constant (undefined).

    References:
      Appendix C eq. 7; Fig. S4.
    """
    data_psth = statistics.psth(statistics.as_signal(data_spikes, "data_spikes"))
    model_psth = statistics.psth(statistics.as_signal(model, "model"))
    if data_psth.shape != model_psth.shape:
        raise ValueError(
            f"psth_correlation: data [K, T, N] and model [K', T, N] differ in T or N: "
            f"{data_psth.shape} vs {model_psth.shape}"
        )
    if smoothing_bins is not None:
        data_psth = statistics.smooth(data_psth, smoothing_bins, axis=0)
        model_psth = statistics.smooth(model_psth, smoothing_bins, axis=0)
    data_centred = statistics.centre(data_psth, axis=0)
    model_centred = statistics.centre(model_psth, axis=0)
    numerator = jnp.sum(data_centred * model_centred, axis=0)
    denominator = jnp.sqrt(
        jnp.sum(jnp.square(data_centred), axis=0) * jnp.sum(jnp.square(model_centred), axis=0)
    )
    return _safe_divide(numerator, denominator)


def noise_correlation(spikes: jax.Array) -> jax.Array:
    """Normalised noise-correlation matrix 𝓜^noise_ij = M^noise_ij / sqrt(M^tot_ii M^tot_jj).

    M^noise (eq. 9) and M^total (eq. 8) are computed over all trials and bins. Compute it on
    *sampled* spikes for a model: probabilities lack the within-bin Bernoulli variance. The
    diagonal is M^noise_ii / M^tot_ii (the noise fraction of neuron i's variance); eq. 10 is
    reported for i ≠ j.

    Args:
      spikes: float32 [K, T, N] spikes.

    Returns:
      float32 [N, N]; rows and columns of neurons with zero total variance are NaN.

    References:
      Appendix C eqs. 8–10.
    """
    spikes = statistics.as_signal(spikes, "spikes")
    total_variance = jnp.diagonal(statistics.total_covariance(spikes))
    scale = jnp.sqrt(total_variance[:, None] * total_variance[None, :])
    return _safe_divide(statistics.noise_covariance(spikes), scale)


def nc_r2(data_nc: jax.Array, model_nc: jax.Array, offset_invariant: bool = False) -> jax.Array:
    """Coefficient of determination of the NC matrix over pairs i ≠ j (eq. 11).

    R² = 1 − Σ_{i≠j} (𝓜^D_ij − 𝓜^φ_ij)² / Σ_{i≠j} (𝓜^D_ij − 𝓜̄^D)², with 𝓜̄^D the mean over
    the same pairs (eq. 11 writes the mean over all i, j; we restrict to i ≠ j, where
    eq. 10 is defined). Pairs with a NaN entry in either matrix (neurons without variance)
    are left out.

    With ``offset_invariant`` (Table S6, the 2-step method's definition that "does not
    penalise a constant offset"), the best constant offset is removed first:
    R² = 1 − Σ ((𝓜^D_ij − 𝓜̄^D) − (𝓜^φ_ij − 𝓜̄^φ))² / Σ (𝓜^D_ij − 𝓜̄^D)².

    Args:
      data_nc: float32 [N, N] noise correlations of the data (``noise_correlation``).
      model_nc: float32 [N, N] of the model.
      offset_invariant: see above.

    Returns:
      float32 scalar; NaN if fewer than one valid pair or the data NCs are all equal.

    References:
      Appendix C eq. 11; Table S6.
    """
    data_nc, model_nc = jnp.asarray(data_nc), jnp.asarray(model_nc)
    if data_nc.ndim != 2 or data_nc.shape != model_nc.shape or data_nc.shape[0] != data_nc.shape[1]:
        raise ValueError(
            f"nc_r2: need two [N, N] matrices, got {data_nc.shape} and {model_nc.shape}"
        )
    n = data_nc.shape[0]
    mask = ~jnp.eye(n, dtype=bool) & jnp.isfinite(data_nc) & jnp.isfinite(model_nc)
    return _r2(data_nc, model_nc, mask, offset_invariant)


def _r2(target, prediction, mask, offset_invariant=False) -> jax.Array:
    """1 − SS_res / SS_tot over the entries where ``mask`` is true; NaN if SS_tot = 0."""
    count = jnp.sum(mask)
    target = jnp.where(mask, target, 0.0)
    prediction = jnp.where(mask, prediction, 0.0)
    target_mean = jnp.sum(target) / jnp.maximum(count, 1)
    residual = target - prediction
    if offset_invariant:
        residual = residual - jnp.sum(residual) / jnp.maximum(count, 1)
    residual_ss = jnp.sum(jnp.where(mask, jnp.square(residual), 0.0))
    total_ss = jnp.sum(jnp.where(mask, jnp.square(target - target_mean), 0.0))
    return 1.0 - _safe_divide(residual_ss, total_ss)


def connectivity_r2(
    fitted_recurrent: jax.Array,
    target_recurrent: jax.Array,
    num_visible: int,
    *,
    delays: str = "sum",
    include_self: bool = False,
) -> jax.Array:
    """R² between the visible-to-visible recurrent weights of a fitted and a target network.

    Summary (Table S4 does not define one): the effective coupling W̄_ij = Σ_d W_d[i, j] of
    the visible block (pre i → post j, delays summed), compared over pairs i ≠ j;
    R² = 1 − Σ (W̄^target − W̄^fitted)² / Σ (W̄^target − mean W̄^target)². Summing over delays
    makes networks with different d_max comparable and measures the net influence of i on j;
    self-weights (the spike-history filter) are excluded by default because they are large,
    always negative-then-refractory, and would dominate the variance. The networks' hidden
    neurons (after ``num_visible``) are ignored: they are not identifiable.

    Args:
      fitted_recurrent: float32 [D, N, N], ``recurrent_weights[d − 1, pre, post]``.
      target_recurrent: float32 [D′, N′, N′], same layout; both have ≥ ``num_visible``
        neurons, visible first.
      num_visible: N_V.
      delays: "sum" (default, see above) or "all" (every delay's block compared entry by
        entry; needs D = D′).
      include_self: include the diagonal i = j.

    Returns:
      float32 scalar (can be negative; NaN if the target block is constant).

    References:
      Table S4, Fig. 4 (connectivity matrices, synthetic data).
    """
    fitted = jnp.asarray(fitted_recurrent)[:, :num_visible, :num_visible]
    target = jnp.asarray(target_recurrent)[:, :num_visible, :num_visible]
    for name, w in (("fitted_recurrent", fitted), ("target_recurrent", target)):
        if w.ndim != 3 or w.shape[1:] != (num_visible, num_visible):
            raise ValueError(f"connectivity_r2: {name} needs [D, >= {num_visible}, >= N_V]")
    if delays == "sum":
        fitted, target = jnp.sum(fitted, axis=0), jnp.sum(target, axis=0)
        off_diagonal = ~jnp.eye(num_visible, dtype=bool)
    elif delays == "all":
        if fitted.shape[0] != target.shape[0]:
            raise ValueError(
                f"connectivity_r2: delays='all' needs equal D, got {fitted.shape[0]} and "
                f"{target.shape[0]}"
            )
        off_diagonal = jnp.broadcast_to(~jnp.eye(num_visible, dtype=bool), fitted.shape)
    else:
        raise ValueError(f"connectivity_r2: delays must be 'sum' or 'all', got {delays!r}")
    mask = jnp.ones_like(off_diagonal) if include_self else off_diagonal
    return _r2(target, fitted, mask)


def _log_likelihoods(data_spikes, logits, rates):
    """Per-neuron (model, constant-rate) log-likelihoods in nats and spike counts."""
    data_spikes = statistics.as_signal(data_spikes, "data_spikes")
    logits = statistics.as_signal(logits, "logits")
    if data_spikes.shape != logits.shape:
        raise ValueError(
            f"data_spikes and logits must have the same shape, got {data_spikes.shape} and "
            f"{logits.shape}"
        )
    model = jnp.sum(
        data_spikes * jax.nn.log_sigmoid(logits)
        + (1.0 - data_spikes) * jax.nn.log_sigmoid(-logits),
        axis=(0, 1),
    )
    null, spikes = _constant_rate_log_likelihood(data_spikes, rates)
    return model, null, spikes


def _constant_rate_log_likelihood(data_spikes, rates):
    """Per-neuron log-likelihood [N] of the constant-rate Bernoulli model, and spike counts
    [N], of ``data_spikes`` [K, T, N] (``rates`` [N] or None: the data's own rates)."""
    num_bins = data_spikes.shape[0] * data_spikes.shape[1]
    spikes = jnp.sum(data_spikes, axis=(0, 1))
    if rates is None:
        rates = spikes / num_bins
    else:
        # A held-out rate of exactly 0 or 1 would make the null likelihood −inf.
        eps = jnp.finfo(data_spikes.dtype).eps
        rates = jnp.clip(
            jnp.broadcast_to(jnp.asarray(rates, data_spikes.dtype), spikes.shape), eps, 1 - eps
        )
    # xlogy: 0·log 0 = 0 for a neuron that never (or always) fires under its own rate.
    null = jax.scipy.special.xlogy(spikes, rates) + jax.scipy.special.xlogy(
        num_bins - spikes, 1.0 - rates
    )
    return null, spikes


def bits_per_spike(
    data_spikes: jax.Array,
    logits: jax.Array,
    rates: jax.Array | None = None,
    *,
    per_neuron: bool = True,
) -> jax.Array:
    """Log-likelihood gain over a constant-rate Bernoulli model, in bits per spike.

    (log L_model − log L_const) / (n_spikes · ln 2), with log L_model = Σ_{k,t} log
    P(z^D_{k,t,i} | σ(x_{k,t,i})) (a clamped pass's logits) and L_const a Bernoulli model with
    one rate per neuron: ``rates`` (e.g. the training set's) or, by default, the rate of
    ``data_spikes`` itself. 0 = no better than the constant rate.

    Args:
      data_spikes: float32 [K, T, N] recorded spikes.
      logits: float32 [K, T, N] logits of the model clamped to these spikes.
      rates: float32 [N] constant rates per bin (clipped to [eps, 1 − eps]), or None.
      per_neuron: return [N] per neuron; else one population value (gains summed over
        neurons, divided by all spikes).

    Returns:
      float32 [N] (NaN for a neuron without spikes) or a scalar.

    References:
      docs/losses_and_metrics.md (field conventions); Pillow et al. (2008) for the unit.
    """
    model, null, spikes = _log_likelihoods(data_spikes, logits, rates)
    if per_neuron:
        return _safe_divide(model - null, spikes * _LN2)
    return _safe_divide(jnp.sum(model - null), jnp.sum(spikes) * _LN2)


def mcfadden_r2(
    data_spikes: jax.Array,
    logits: jax.Array,
    rates: jax.Array | None = None,
    *,
    per_neuron: bool = True,
) -> jax.Array:
    """McFadden pseudo-R² = 1 − log L_model / log L_const (constant-rate Bernoulli null).

    Args:
      data_spikes: float32 [K, T, N].
      logits: float32 [K, T, N] logits of the model clamped to these spikes.
      rates: float32 [N] or None, as in ``bits_per_spike``.
      per_neuron: [N] per neuron, or one population value (log-likelihoods summed).

    Returns:
      float32 [N] (NaN where log L_const = 0: a neuron that never or always fires) or scalar.

    References:
      McFadden (1974); docs/losses_and_metrics.md.
    """
    model, null, _ = _log_likelihoods(data_spikes, logits, rates)
    if per_neuron:
        return 1.0 - _safe_divide(model, null)
    return 1.0 - _safe_divide(jnp.sum(model), jnp.sum(null))


def bits_per_spike_from_log_likelihood(
    data_spikes: jax.Array, log_likelihood: jax.Array, rates: jax.Array | None = None
) -> jax.Array:
    """Population bits per spike of a model given its log-likelihood of ``data_spikes``.

    ``bits_per_spike(..., per_neuron=False)`` for a model whose log-likelihood is not a sum
    of per-bin terms of one clamped pass, e.g. a network with hidden neurons whose hidden
    spikes are marginalised (``likelihood.smc_log_likelihood``): (log L − log L_const) /
    (n_spikes · ln 2), with the same constant-rate null model. A standard error of log L
    divides by the same n_spikes · ln 2.

    Args:
      data_spikes: float32 [K, T, N] recorded spikes.
      log_likelihood: float32 scalar, log L of all of ``data_spikes`` in nats.
      rates: float32 [N] constant rates per bin, or None (the data's own), as in
        ``bits_per_spike``.

    Returns:
      float32 scalar; NaN if there is no spike.

    References:
      docs/losses_and_metrics.md; Pillow et al. (2008) for the unit.
    """
    data_spikes = statistics.as_signal(data_spikes, "data_spikes")
    null, spikes = _constant_rate_log_likelihood(data_spikes, rates)
    return _safe_divide(log_likelihood - jnp.sum(null), jnp.sum(spikes) * _LN2)


def mcfadden_r2_from_log_likelihood(
    data_spikes: jax.Array, log_likelihood: jax.Array, rates: jax.Array | None = None
) -> jax.Array:
    """Population McFadden pseudo-R² 1 − log L / log L_const given log L of ``data_spikes``.

    ``mcfadden_r2(..., per_neuron=False)`` for a given log-likelihood (see
    ``bits_per_spike_from_log_likelihood``); a standard error of log L divides by |log L_const|.

    Args:
      data_spikes: float32 [K, T, N].
      log_likelihood: float32 scalar, log L in nats.
      rates: float32 [N] or None, as in ``bits_per_spike``.

    Returns:
      float32 scalar; NaN where log L_const = 0.

    References:
      McFadden (1974); docs/losses_and_metrics.md.
    """
    data_spikes = statistics.as_signal(data_spikes, "data_spikes")
    null, _ = _constant_rate_log_likelihood(data_spikes, rates)
    return 1.0 - _safe_divide(log_likelihood, jnp.sum(null))


class MultistepOutputs(NamedTuple):
    """Multi-step log-likelihoods, nats per bin for the N_V-dimensional visible vector.

    Attributes:
      model: float32 [num_steps], entry Δt − 1 = mean over trials and clamp times of the
        Monte-Carlo estimate of log P_φ(z^D_{t+Δt} | z^D_{≤t}).
      baseline: float32 [num_steps], the PSTH-only model log Π_i Bernoulli(z^D_{t+Δt,i};
        psth_{t+Δt,i}) averaged the same way.
    """

    model: jax.Array
    baseline: jax.Array


def multistep_log_likelihood(
    params: network.NetworkParams,
    features: jax.Array,
    recorded: jax.Array,
    *,
    config: network.NetworkConfig,
    key: jax.Array,
    clamp_until: int | jax.Array,
    num_steps: int,
    num_samples: int = 32,
    initial_history: jax.Array | None = None,
    baseline_psth: jax.Array | None = None,
) -> MultistepOutputs:
    """Multi-step log-likelihood log P_φ(z^D_{t+Δt} | z^D_0 … z^D_t), Δt = 1..num_steps.

    For each clamp time c (bins 0..c−1 clamped to the data, ``network.simulate_batch`` with
    ``clamp_until=c``; t = c − 1 above) the network runs freely after c with S samples per
    trial. The probability of the recorded visible vector at bin c + Δt − 1 given the clamped
    past is E over the free samples in between of Π_i P(z^D_i | p_i); its Monte-Carlo average
    is unbiased, and its log (taken with ``logsumexp``) is consistent, biased low by Jensen's
    inequality for Δt ≥ 2 (Δt = 1 is exact: nothing is sampled in between). Hidden neurons are
    always sampled. Values are nats for the whole visible vector; divide by N_V for per-neuron
    values and by ln 2 for bits.

    The baseline is the "ideal model which would always fire a spike with the true PSTH
    probability" (Fig. S3): ``baseline_psth`` (default: the PSTH of ``recorded``, which
    includes the trial itself).

    Indexing: Δt = 1 is the first bin after clamping stops (one-step prediction, where MLE
    is trained); Fig. S3 appears to label that bin Δt = 0.

    Jit-friendly: ``config``, ``num_steps`` and ``num_samples`` are static; ``clamp_until``
    may be a traced int array (one compiled function for all clamp times).

    Args:
      params: network parameters.
      features: float32 [T, F] shared, or [K, T, F] per trial (``model.encode``).
      recorded: float32 [K, T, N_V].
      config: network sizes (static).
      key: PRNG key.
      clamp_until: int or int array [C] of clamp times c with 1 ≤ c and c + num_steps ≤ T
        (checked when concrete).
      num_steps: the largest Δt.
      num_samples: S free samples per trial and clamp time.
      initial_history: chronological history before bin 0, as for ``simulate_batch``.
      baseline_psth: float32 [T, N_V] spike probabilities of the PSTH-only model, or None.

    Returns:
      MultistepOutputs with [num_steps] leaves, averaged over trials and clamp times.

    References:
      Appendix D "Single-trial statistics"; Fig. S3.
    """
    recorded = statistics.as_signal(recorded, "recorded")
    num_trials, num_bins, num_visible = recorded.shape
    clamp_until = jnp.atleast_1d(jnp.asarray(clamp_until, jnp.int32))
    if clamp_until.ndim != 1:
        raise ValueError("multistep_log_likelihood: clamp_until must be an int or a 1-D array")
    try:
        concrete = np.asarray(clamp_until)
    except jax.errors.TracerArrayConversionError:
        concrete = None
    if concrete is not None and (concrete.min() < 1 or concrete.max() + num_steps > num_bins):
        raise ValueError(
            f"multistep_log_likelihood: need 1 <= clamp_until and clamp_until + num_steps <= "
            f"T = {num_bins}, got clamp_until {concrete.tolist()} and num_steps {num_steps}"
        )
    psth = statistics.psth(recorded) if baseline_psth is None else jnp.asarray(baseline_psth)

    def one(until, key):
        simulation = network.simulate_batch(
            params,
            features,
            config=config,
            key=key,
            recorded=recorded,
            clamp_until=until,
            initial_history=initial_history,
            num_samples=num_samples,
        )
        logits = jax.lax.dynamic_slice_in_dim(simulation.logits, until, num_steps, axis=2)
        targets = jax.lax.dynamic_slice_in_dim(recorded, until, num_steps, axis=1)
        log_likelihood = jnp.sum(
            targets[:, None] * jax.nn.log_sigmoid(logits[..., :num_visible])
            + (1.0 - targets[:, None]) * jax.nn.log_sigmoid(-logits[..., :num_visible]),
            axis=-1,
        )  # [K, S, num_steps]
        model = jax.nn.logsumexp(log_likelihood, axis=1) - math.log(num_samples)
        probability = jax.lax.dynamic_slice_in_dim(psth, until, num_steps, axis=0)
        # Spikes are binary: pick the log of the probability of the observed outcome, so a
        # PSTH of exactly 0 or 1 (never contradicted by its own data) gives 0, not 0·(−inf).
        baseline = jnp.sum(
            jnp.where(targets > 0.5, jnp.log(probability), jnp.log1p(-probability)), axis=-1
        )  # [K, num_steps]
        return jnp.mean(model, axis=0), jnp.mean(baseline, axis=0)

    keys = jax.random.split(key, clamp_until.shape[0])
    model, baseline = jax.vmap(one)(clamp_until, keys)
    return MultistepOutputs(model=jnp.mean(model, axis=0), baseline=jnp.mean(baseline, axis=0))


def nan_summary(values) -> dict[str, float]:
    """Summary of a metric array over its defined (finite) entries.

    Args:
      values: array of any shape (e.g. ``psth_correlation``'s [N]).

    Returns:
      {"mean", "median", "std", "sem", "min", "max"} over finite entries (NaN if none),
      and "num_defined", "num_undefined" (NaN or ±inf entries).
    """
    values = np.asarray(values, np.float64).ravel()
    finite = values[np.isfinite(values)]
    n = finite.size
    if n == 0:
        stats = dict.fromkeys(("mean", "median", "std", "sem", "min", "max"), float("nan"))
    else:
        std = float(np.std(finite, ddof=1)) if n > 1 else float("nan")
        stats = {
            "mean": float(np.mean(finite)),
            "median": float(np.median(finite)),
            "std": std,
            "sem": std / math.sqrt(n) if n > 1 else float("nan"),
            "min": float(np.min(finite)),
            "max": float(np.max(finite)),
        }
    return {**stats, "num_defined": int(n), "num_undefined": int(values.size - n)}
