"""Data-informed initialisation: start every neuron at its recorded firing rate.

With zero biases an untrained network fires with probability σ(mean drive) ≈ 0.3 per bin,
against 0.01–0.05 in recordings, so the first hundreds of Adam steps (each moving a weight by
about the learning rate) only lower the rates. As GLM toolkits do, we set each bias so that the
initial model's mean firing probability on the training data equals the neuron's recorded
rate, given the mean drive of the initial encoder and couplings. Hidden neurons have no
recording: they start at the mean rate of the visible ones.

The mean of σ over bins is not σ of the mean logit, so the bias is corrected a few times by
the logit difference ``logit(r_data) − logit(r_model)``; each correction is exact for a neuron
whose logit is constant over bins and shrinks the error geometrically otherwise (on the
test suite's small random network the largest relative rate error is 10 % after 3
corrections, 0.4 % after 6 and 0.005 % after 10).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rsnn_jax import model as model_lib

# Rates are clipped into this range before the logit, so a silent or saturated recorded
# neuron gets a finite bias (a rate of 1e-4 is 0.06 Hz at 1.667 ms bins).
_RATE_RANGE = (1e-4, 0.5)


def _logit(p):
    return jnp.log(p) - jnp.log1p(-p)


def data_rates(spikes, num_hidden: int = 0) -> np.ndarray:
    """Target firing probability per bin of each neuron: float32 [N_V + N_H].

    Args:
      spikes: recorded spikes [..., T, N_V] (any leading trial axes).
      num_hidden: hidden neurons appended, each at the mean visible rate.
    """
    rates = np.asarray(spikes, np.float64).reshape(-1, np.shape(spikes)[-1]).mean(0)
    rates = np.concatenate([rates, np.full(num_hidden, rates.mean())])
    return np.clip(rates, *_RATE_RANGE).astype(np.float32)


def model_rates(params: model_lib.ModelParams, model: model_lib.Model, batch, key) -> jax.Array:
    """Mean firing probability per neuron of the model clamped to ``batch``: float32 [N].

    Visible neurons are clamped to the recorded spikes (their rate given the recorded history,
    as the likelihood sees it); hidden neurons are sampled.
    """
    stimulus = jnp.asarray(batch.stimulus)
    outputs = model_lib.run_passes(
        params,
        model,
        stimulus,
        jnp.asarray(batch.spikes),
        passes=model_lib.Passes(clamped=1),
        key=key,
        initial_history=batch.history,
        per_trial_stimulus=stimulus.ndim == 4,
    )
    logits = outputs.clamped.logits
    return jax.nn.sigmoid(logits).reshape(-1, logits.shape[-1]).mean(0)


def biases_from_rates(
    params: model_lib.ModelParams,
    model: model_lib.Model,
    batch,
    key: jax.Array,
    rates=None,
    iterations: int = 8,
) -> model_lib.ModelParams:
    """Returns ``params`` with biases set so that the model's rates on ``batch`` equal ``rates``.

    Args:
      params: initial parameters (only ``network.bias`` [N] changes).
      model: the model.
      batch: a training batch (``stimulus``, ``spikes`` [K, T, N_V], ``history``).
      key: PRNG key of the hidden neurons' samples.
      rates: target rates [N]; default ``data_rates(batch.spikes, N_H)``.
      iterations: logit corrections (see the module docstring).
    """
    if rates is None:
        rates = data_rates(batch.spikes, model.network.num_hidden)
    target_logit = _logit(jnp.asarray(rates, jnp.float32))
    measure = jax.jit(lambda p: model_rates(p, model, batch, key))
    for _ in range(iterations):
        current = jnp.clip(measure(params), 1e-7, 1 - 1e-7)
        # The logit is β (I − v_thr) / v_thr with I the total input (network.step), so a
        # bias step δ moves the logit by β δ / v_thr.
        scale = model.network.threshold / model.network.temperature
        bias = params.network.bias + (target_logit - _logit(current)) * scale
        params = params._replace(network=params.network._replace(bias=bias))
    return params


def spike_triggered_averages(movies, num_taps: int) -> np.ndarray:
    """STA_n,τ,p = Σ_t z_t,n s_t−τ,p / Σ_t z_t,n on the mean-subtracted stimulus: float64
    [N, num_taps, P], τ = 0 .. ``num_taps`` − 1 bins (τ = 0: the bin's own frame).

    Args:
      movies: iterable of (stimulus [T, H, W], spikes [K, T, N]) with frame t shown in bin t;
        the K trials of a movie share its stimulus.
    """
    correlation, counts = 0.0, 0.0
    for stimulus, spikes in movies:
        if np.shape(stimulus)[0] != np.shape(spikes)[1]:
            raise ValueError(
                f"spike-triggered average: the stimulus has {np.shape(stimulus)[0]} frames but "
                f"the spikes {np.shape(spikes)[1]} bins"
            )
        frames = np.asarray(stimulus, np.float32).reshape(np.shape(stimulus)[0], -1)
        frames = frames - frames.mean(0)
        summed = np.asarray(spikes, np.float32).sum(0)  # [T, N]
        # One [N, T − τ] × [T − τ, P] product per lag: memory stays at the movie's size.
        lagged = [summed[tau:].T @ frames[: len(frames) - tau] for tau in range(num_taps)]
        correlation = correlation + np.stack(lagged, axis=1).astype(np.float64)
        counts = counts + summed.sum(0, dtype=np.float64)
    return correlation / np.maximum(counts, 1.0)[:, None, None]


def temporal_filters_from_sta(movies, num_taps: int, num_filters: int) -> np.ndarray:
    """A temporal filter bank from the data: the leading temporal components of the
    spike-triggered averages (``spike_triggered_averages``), the classic start of
    linear-nonlinear models of retinal cells (Chichilnisky, Network 2001).

    The filters are the top right-singular vectors of the [N·P, taps] matrix of all STAs,
    filter k scaled by σ_k / σ_1 (the first has unit L2 norm, the norm of
    ``encoders.raised_cosine_temporal_init``'s filters), sign chosen so that the largest tap is
    positive. The scaling matters: the encoder's first spatial layer mixes all filters at
    random, and unscaled trailing components (mostly noise) would weigh as much as the
    leading ones (measured on the built-in retina-like data: unscaled components start the
    fit worse than the raised-cosine basis; docs/convergence.md).

    Args:
      movies: as ``spike_triggered_averages``.
      num_taps: R, the temporal filter's length.
      num_filters: filters to return (those beyond min(N·P, ``num_taps``) are zero).

    Returns:
      float64 [num_taps, num_filters], row τ = lag τ (reverse the rows for a Flax kernel,
      whose tap k has lag R − 1 − k).
    """
    sta = spike_triggered_averages(movies, num_taps)
    matrix = sta.transpose(0, 2, 1).reshape(-1, num_taps)  # rows: (neuron, pixel)
    _, singular, right = np.linalg.svd(matrix, full_matrices=False)
    filters = right[:num_filters].T * (singular[:num_filters] / singular[0])
    peak = filters[np.abs(filters).argmax(0), np.arange(filters.shape[1])]
    filters = filters * np.where(peak < 0, -1.0, 1.0)
    # Beyond the rank of the STA matrix (min(N·P, taps)) the filters start at zero.
    return np.pad(filters, ((0, 0), (0, num_filters - filters.shape[1])))
