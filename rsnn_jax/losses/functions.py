"""Loss functions: pure functions of the recorded spikes and the model's outputs.

Each takes the recorded spikes first (float32 [K, T, N_V]) and the model's logits β ũ (or
probabilities, or spikes) of the visible neurons of one simulation pass, and returns a float32
scalar. All are means, not sums (appendix D, "Normalization"); cross-entropies against model
probabilities are computed in log space (``numerics``).

References:
  Bellec, Wang et al. (NeurIPS 2021): main text eqs. 3–5 (MLE, sample-and-measure, PSTH);
  appendix D eqs. 12 (NC), 14 (single trial), 19 (ELBO), 20 (ELBO-SM), "Regularization of
  the firing rate of hidden neurons" (SM-h); the official ``psth_loss``,
  ``NoiseCorr_loss_MSE`` and ``HiddenNeuron_FRloss_MSE``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from rsnn_jax import statistics
from rsnn_jax.losses.dissimilarities import dissimilarity as _dissimilarity
from rsnn_jax.losses.numerics import (
    _cross_entropy_from_logs,
    _cross_entropy_of_mean,
    _log_coincidence,
    _off_diagonal_mean,
    binary_cross_entropy,
)

# ----------------------------------------------------------------------------------------------
# Shape checks (trace time).


def _check_model(
    function: str, recorded: jax.Array, model: jax.Array, same_trials: bool, samples: bool = True
) -> None:
    """Checks ``model`` [K', T, N_V] (or [K, S, T, N_V]) against ``recorded`` [K, T, N_V]."""
    k, t, n = recorded.shape
    shape = tuple(model.shape)
    ok = model.ndim == 3 or (samples and model.ndim == 4)
    ok = ok and shape[-2:] == (t, n) and (not same_trials or shape[0] == k)
    if not ok:
        want = f"[{k if same_trials else 'K′'}, {t}, {n}]"
        if samples:
            want += f" or [{k if same_trials else 'K′'}, S, {t}, {n}]"
        raise ValueError(f"{function}: model array must have shape {want}, got {list(shape)}")


def _check_pairs(function: str, num_neurons: int) -> None:
    if num_neurons < 2:
        raise ValueError(f"{function}: needs at least 2 visible neurons (pairs i != j)")


# ----------------------------------------------------------------------------------------------
# Loss functions.


def mle_loss(recorded: jax.Array, logits: jax.Array) -> jax.Array:
    """Mean binary cross-entropy of the recorded spikes against the clamped model's p.

    L_MLE = mean_{k,t,i∈V} CE(z^D_{k,t,i}, σ(β ũ_{k,t,i})), the negative log-likelihood per
    bin and neuron. With hidden neurons, which run on their own samples while the visible
    ones are clamped (q(z^H_t) = P_φ(z^H_t | z_{1:t−1})), the same mean is the negative ELBO
    (eq. 19); with several samples per clamping condition ([K, S, T, N_V]) E_q is averaged
    over them.

    Args:
      recorded: float32 [K, T, N_V] recorded spikes z^D.
      logits: float32 [K, T, N_V] or [K, S, T, N_V] logits β ũ of the visible neurons of a
        pass clamped to ``recorded``.

    Returns:
      float32 scalar.

    References:
      Main text eq. 3 (MLE); appendix D eqs. 15–19 (ELBO) and "Normalization" (means,
      not sums).
    """
    recorded = statistics.as_signal(recorded, "recorded")
    logits = jnp.asarray(logits)
    _check_model("mle_loss", recorded, logits, same_trials=True)
    targets = recorded[:, None] if logits.ndim == 4 else recorded
    return jnp.mean(binary_cross_entropy(targets, logits))


def elbo_sm_loss(recorded: jax.Array, logits: jax.Array) -> jax.Array:
    """ELBO-SM (eq. 20): CE of the data against the mean of p over S samples.

    L = mean_{k,t,i} CE(z^D_{k,t,i}, (1/S) Σ_s σ(x_{k,s,t,i})), with log of the sample mean
    computed as ``logsumexp(log σ(x)) − log S``. With S = 1 it equals ``mle_loss``.

    Gradient (docs/estimators.md): exact through p given the sampled hidden history, but it
    leaves out how θ changes the probability of that history. Against exact gradients of
    CE(z^D, E_q[p]) on tiny networks (medians over 10): cosine 1.00, relative error
    0.06–0.08; the score function over the hidden samples removes it (measured by the
    audit; ``estimators.ScoreFunctionTerm`` reads free passes only).

    Args:
      recorded: float32 [K, T, N_V].
      logits: float32 [K, S, T, N_V] (or [K, T, N_V] for S = 1), visible logits of S clamped
        simulations per trial.

    Returns:
      float32 scalar.

    References:
      Appendix D eq. 20.
    """
    recorded = statistics.as_signal(recorded, "recorded")
    logits = jnp.asarray(logits)
    _check_model("elbo_sm_loss", recorded, logits, same_trials=True)
    if logits.ndim == 3:
        logits = logits[:, None]
    return _cross_entropy_of_mean(recorded, logits, 1)


def psth_loss(recorded: jax.Array, logits: jax.Array, dissimilarity: str = "ce") -> jax.Array:
    """PSTH loss: CE (or MSE) between the data PSTH z̄^D_{t,i} and the model PSTH p̄_{t,i}.

    z̄^D is the mean of the recorded spikes over trials, p̄ the mean of σ(x) over simulated
    trials (the unbiased Monte-Carlo estimate of the model PSTH), then mean over t, i.

    Gradient (docs/estimators.md): exact through p given the sampled history, but it leaves
    out how θ changes the probability of that history. Against exact gradients on tiny
    networks (medians over 10): cosine 0.99 to ∇E[p̄], relative error
    0.13–0.17; loss-gradient cosine 0.98–1.00. Unbiased, slower
    alternative: ``estimators.score_function_term(statistics.psth, "ce",
    value="probabilities")`` (error at the Monte-Carlo noise).

    Args:
      recorded: float32 [K, T, N_V].
      logits: float32 [K′, T, N_V] visible logits of a free pass (K′ may differ from K).
      dissimilarity: "ce" (paper, official ``psth_loss``) or "mse" (official
        ``psth_loss_MSE``).

    Returns:
      float32 scalar.

    References:
      Main text eq. 5; official ``psth_loss``/``psth_loss_MSE``.
    """
    recorded = statistics.as_signal(recorded, "recorded")
    logits = statistics.as_signal(logits, "logits")
    _check_model("psth_loss", recorded, logits, same_trials=False, samples=False)
    target = statistics.psth(recorded)
    if dissimilarity == "ce":
        return _cross_entropy_of_mean(target, logits, 0)
    if dissimilarity == "mse":
        return jnp.mean(jnp.square(target - statistics.psth(jax.nn.sigmoid(logits))))
    raise ValueError(f"psth_loss: dissimilarity must be 'ce' or 'mse', got {dissimilarity!r}")


def nc_loss(recorded: jax.Array, logits: jax.Array) -> jax.Array:
    """Noise-correlation loss (eq. 12): CE between data and model coincidence frequencies.

    π^D_ij = mean_{k,t} z_i z_j (recorded), π^φ_ij = mean_{k,t} σ(x_i) σ(x_j) (model), and
    L_NC = mean over pairs i ≠ j of CE(π^D_ij, π^φ_ij). π^φ is an unbiased estimate of the
    model's E[π] for i ≠ j because z_i and z_j are independent given the past (appendix D);
    the diagonal (where it would be biased) is excluded. Eq. 12 writes a sum over i, j; we
    take the mean over pairs (appendix D, "Normalization").

    Gradient (docs/estimators.md): exact through p given the sampled history, but it leaves
    out how θ changes the probability of that history. Against exact gradients on tiny
    networks (medians over 10): cosine 1.00 to ∇E[π], relative error
    0.08–0.14; loss-gradient cosine 1.00. Unbiased, slower
    alternative: the score-function term on the coincidences,
    ``value="probabilities"`` (error at the Monte-Carlo noise).

    Args:
      recorded: float32 [K, T, N_V], N_V ≥ 2.
      logits: float32 [K′, T, N_V] visible logits of a free pass.

    Returns:
      float32 scalar.

    References:
      Appendix D eq. 12.
    """
    recorded = statistics.as_signal(recorded, "recorded")
    logits = statistics.as_signal(logits, "logits")
    _check_model("nc_loss", recorded, logits, same_trials=False, samples=False)
    _check_pairs("nc_loss", recorded.shape[-1])
    target = statistics.coincidences(recorded)
    flat = logits.reshape(-1, logits.shape[-1])
    log_pi, log_one_minus_pi = _log_coincidence(flat, flat)
    return _off_diagonal_mean(_cross_entropy_from_logs(target, log_pi, log_one_minus_pi))


def nc_shuffled_loss(recorded: jax.Array, logits: jax.Array, shift: int = 1) -> jax.Array:
    """``nc_loss`` with the trial identities of neuron i shuffled and not those of neuron j.

    π^D_ij = mean_{k,t} z^{k+s}_{t,i} z^k_{t,j} and π^φ_ij = mean_{k,t} σ(x^{k+s}_{t,i})
    σ(x^k_{t,j}) with the fixed cyclic shuffle k → (k + s) mod K (a derangement, so that the
    loss is deterministic and jit-friendly); CE, mean over i ≠ j. Two different trials are
    independent simulations, so π^φ is unbiased for every pair. This measures the
    stimulus-locked (PSTH) part of the coincidences that the paper tried as a correction term.

    Gradient (docs/estimators.md): exact through p given the sampled history, but it leaves
    out how θ changes the probability of that history. Against exact gradients on tiny
    networks (medians over 10): cosine 1.00, relative error 0.08–0.09;
    loss-gradient cosine 1.00. Unbiased, slower
    alternative: the score-function term,
    ``value="probabilities"`` (error at the Monte-Carlo noise).

    Args:
      recorded: float32 [K, T, N_V] with K ≥ 2 and N_V ≥ 2.
      logits: float32 [K′, T, N_V], K′ ≥ 2, visible logits of a free pass.
      shift: the trial offset s (not a multiple of K or K′).

    Returns:
      float32 scalar.

    References:
      Appendix D, "Noise correlation" (L_NC-shuffled).
    """
    recorded = statistics.as_signal(recorded, "recorded")
    logits = statistics.as_signal(logits, "logits")
    _check_model("nc_shuffled_loss", recorded, logits, same_trials=False, samples=False)
    _check_pairs("nc_shuffled_loss", recorded.shape[-1])
    for name, k in (("recorded", recorded.shape[0]), ("logits", logits.shape[0])):
        if shift % k == 0:
            raise ValueError(
                f"nc_shuffled_loss: shift={shift} leaves the trials of {name} (K={k}) unshuffled"
            )
    target = statistics.shuffled_coincidences(recorded, shift)
    n = logits.shape[-1]
    shuffled = jnp.roll(logits, -shift, axis=0).reshape(-1, n)
    log_pi, log_one_minus_pi = _log_coincidence(shuffled, logits.reshape(-1, n))
    return _off_diagonal_mean(_cross_entropy_from_logs(target, log_pi, log_one_minus_pi))


def nc_mse_loss(
    recorded: jax.Array,
    model: jax.Array,
    *,
    num_delays: int,
    wrap: bool = False,
) -> jax.Array:
    """Official ``NoiseCorr_loss_MSE``: MSE between delayed noise covariances.

    C_d[i, j] = mean_{k,t} δ_{k,t,i} δ_{k,t−d,j} with δ the signal minus its trial mean
    (``statistics.lagged_covariance``), for d = 0..D−1, on the data (z^D) and on the model
    (p, as the official code, or straight-through spikes); the loss is the mean over
    (d, i, j) of the squared differences, diagonal included.

    Bias of the model-side estimate with probabilities (contrary to what appendix D suggests
    for this loss, the argument there holds only for d = 0, i ≠ j): on the diagonal at d = 0,
    E[z_i²] = E[p_i] but the estimate uses p_i²; for d ≥ 1, p_{t,i} depends on the *sampled*
    z_{t−d,j}, so E[z_{t,i} z_{t−d,j}] ≠ E[p_{t,i} p_{t−d,j}]. Pass spikes to remove the bias
    (at the price of surrogate gradients and more variance).

    Gradient (docs/estimators.md): with probabilities the gradient is biased in *direction*.
    Against exact gradients on tiny networks its loss-gradient cosine is 0.10 at p ≈ 0.18 and
    −0.21 at p ≈ 0.5 (medians over 10; negative on 4 and 7 of them), −0.54 on larger networks
    (negative on 5 of 5): a step can raise the dissimilarity. Spikes are less biased (0.39,
    0.54, 0.73) but not unbiased; the score-function term on ``statistics.lagged_covariance``
    (``estimators.score_function_term``) is unbiased (0.99–1.00).

    Args:
      recorded: float32 [K, T, N_V].
      model: float32 [K′, T, N_V], the model's visible probabilities (official) or sampled
        spikes from a free pass.
      num_delays: D (the official code uses the network's d_max: delays 0..d_max−1).
      wrap: True reproduces the official ``tf.roll`` (time wraps around, normalised by K·T);
        False (default) uses only pairs with t − d ≥ 0, which avoids pairing the end of a
        clip with its start (up to D/T of the pairs: 30% for the retina's T = 80, D = 24).

    Returns:
      float32 scalar.

    References:
      Official ``NoiseCorr_loss_MSE``/``get_delayed_covariance`` (nc_mse).
    """
    recorded = statistics.as_signal(recorded, "recorded")
    model = statistics.as_signal(model, "model")
    _check_model("nc_mse_loss", recorded, model, same_trials=False, samples=False)
    data_covariance = statistics.lagged_covariance(recorded, num_delays, wrap=wrap)
    model_covariance = statistics.lagged_covariance(model, num_delays, wrap=wrap)
    return jnp.mean(jnp.square(data_covariance - model_covariance))


def single_trial_loss(recorded: jax.Array, logits: jax.Array, clamp_until: int) -> jax.Array:
    """Single-trial loss (eq. 14): CE(z^D, σ(u^V)) on the bins after clamping stops.

    The pass is clamped to the data for bins t < T_gt and free after; the loss is the mean CE
    over trials, bins t ≥ T_gt and visible neurons (T = identity, σ(u) the Monte-Carlo
    estimate, one sample per clamping condition as in the paper).

    Gradient (docs/estimators.md): exact through p given the sampled history, but it leaves
    out how θ changes the probability of that history. Against exact gradients on tiny
    networks (medians over 10): cosine 0.99, relative error 0.14;
    loss-gradient cosine 0.99. Unbiased, slower
    alternative: the score function over the sampled bins (error at the Monte-Carlo noise in
    the audit; ``estimators.ScoreFunctionTerm`` reads free passes only).

    Args:
      recorded: float32 [K, T, N_V].
      logits: float32 [K, T, N_V] (or [K, S, T, N_V]) visible logits of the pass clamped
        until ``clamp_until``.
      clamp_until: T_gt, a static int with 0 ≤ T_gt < T.

    Returns:
      float32 scalar.

    References:
      Appendix D eqs. 13–14; appendix B (retina).
    """
    recorded = statistics.as_signal(recorded, "recorded")
    num_bins = recorded.shape[1]
    if not 0 <= clamp_until < num_bins:
        raise ValueError(f"single_trial_loss: need 0 <= clamp_until < T = {num_bins}")
    logits = jnp.asarray(logits)
    _check_model("single_trial_loss", recorded, logits, same_trials=True)
    return mle_loss(recorded[:, clamp_until:], logits[..., clamp_until:, :])


def sm_h_loss(target_rates: jax.Array, logits: jax.Array, dissimilarity: str = "ce") -> jax.Array:
    """SM-h (paper): firing-rate prior of the hidden neurons, PSTH-like on the mean rate.

    The statistic is neuron i's mean firing probability per bin; the model estimate is
    r̄_i = mean_{k,t} σ(x_{k,t,i}) (unbiased), the target r_i is the data rate of a visible
    neuron drawn for hidden neuron i (see ``SMHTerm``); loss = mean_i CE(r_i, r̄_i) (or MSE).

    Gradient (docs/estimators.md): exact through p given the sampled history, but it leaves
    out how θ changes the probability of that history. Against exact gradients on tiny
    networks (medians over 10): cosine 1.00, relative error 0.11;
    loss-gradient cosine 1.00. Straight-through spikes (official variant): relative error
    0.48–0.77. Unbiased, slower
    alternative: the score-function term,
    ``value="probabilities"`` (error at the Monte-Carlo noise).

    Args:
      target_rates: float32 [N_H] (or a scalar) target rates per bin.
      logits: float32 [..., N_H] hidden logits of any pass; all leading axes are averaged.
      dissimilarity: "ce" (paper: "similar to L_PSTH") or "mse".

    Returns:
      float32 scalar.

    References:
      Appendix D, "Regularization of the firing rate of hidden neurons".
    """
    logits = jnp.asarray(logits)
    flat = logits.reshape(-1, logits.shape[-1])
    target_rates = jnp.broadcast_to(jnp.asarray(target_rates, flat.dtype), flat.shape[-1:])
    if dissimilarity == "ce":
        return _cross_entropy_of_mean(target_rates, flat, 0)
    if dissimilarity == "mse":
        return jnp.mean(jnp.square(target_rates - jnp.mean(jax.nn.sigmoid(flat), axis=0)))
    raise ValueError(f"sm_h_loss: dissimilarity must be 'ce' or 'mse', got {dissimilarity!r}")


def sm_h_official_loss(hidden: jax.Array, target_rate: float = 0.17) -> jax.Array:
    """SM-h (official ``HiddenNeuron_FRloss_MSE``): mean_i (mean_{k,t} z_i − target)².

    Args:
      hidden: float32 [..., N_H] hidden straight-through spikes (official) or probabilities;
        all leading axes are averaged.
      target_rate: the fixed target rate per bin (0.17 in the official code).

    Returns:
      float32 scalar.

    References:
      Official ``HiddenNeuron_FRloss_MSE`` (``target_fr = 0.17``).
    """
    hidden = jnp.asarray(hidden)
    rates = jnp.mean(hidden.reshape(-1, hidden.shape[-1]), axis=0)
    return jnp.mean(jnp.square(rates - target_rate))


def sample_and_measure_loss(
    statistic: Callable[[jax.Array], Any],
    recorded: jax.Array,
    model: jax.Array,
    dissimilarity: str | Callable[[Any, Any], jax.Array] = "mse",
) -> jax.Array:
    """Generic sample-and-measure loss (eq. 4): d(T(z^D), T̂_φ).

    Args:
      statistic: T, any function from float32 [K, T, N_V] to a pytree of arrays.
      recorded: float32 [K, T, N_V] data spikes.
      model: float32 [K′, T, N_V] the model's Monte-Carlo sample of the same variables
        (probabilities, or straight-through spikes when T is not multilinear per bin).
      dissimilarity: "mse", "ce", or a function (data_stats, model_stats) → scalar.

    Returns:
      float32 scalar.

    References:
      Main text eq. 4; appendix D eq. 13.
    """
    recorded = statistics.as_signal(recorded, "recorded")
    return _dissimilarity(dissimilarity)(statistic(recorded), statistic(model))
