"""Summary statistics T(z) of spike trains, for losses and metrics (docs/losses_and_metrics.md).

Every function takes a batch ``signal`` float32 [K, T, N] (trials, bins, neurons) that is
either recorded/sampled spikes z ∈ {0, 1} or model spike probabilities p = σ(βũ) in [0, 1],
and returns the statistic as a JAX array. They are pure, differentiable and jit-friendly.

Which statistics are unbiased when p replaces z (the sample-and-measure Monte-Carlo estimate,
appendix D "Noise correlation"): spikes of one bin are independent given the past, so for an
average over bins of a function that is *multilinear in the spikes of a single bin* (each
z_{t,i} enters at most linearly, no products across bins), E[T(z)] = E[T(p)]. That covers
``psth``, ``mean_rate``, the off-diagonal of ``coincidences`` (i ≠ j), ``shuffled_coincidences``
and ``population_count_distribution``. It does not cover the diagonal of ``coincidences``
(E[z_i²] = E[p_i] ≠ E[p_i²]; see ``estimate_coincidences``), nor lagged products
(p_{t,i} depends on the realised z_{t−d,j}, so E[z_{t,i} z_{t−d,j}] ≠ E[p_{t,i} p_{t−d,j}]),
nor anything centred by a trial mean.

References:
  Bellec, Wang et al. (NeurIPS 2021): appendix C eqs. 7–10 (PSTH, total and noise
  covariance), appendix D eq. 12 (coincidences) and the official ``NoiseCorr_loss_MSE``
  (lagged covariances).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def as_signal(signal, name: str = "signal", rank: int = 3) -> jax.Array:
    """Converts to a float array (keeps float64 under x64; bool/int become float32).

    Raises:
      ValueError: if the rank is not ``rank`` ([K, T, N] by default).
    """
    signal = jnp.asarray(signal)
    if not jnp.issubdtype(signal.dtype, jnp.floating):
        signal = signal.astype(jnp.float32)
    if signal.ndim != rank:
        layout = {3: "[K, T, N]", 2: "[T, N]", 1: "[N]"}.get(rank, f"rank {rank}")
        raise ValueError(f"{name} must have shape {layout}, got {list(signal.shape)}")
    return signal


def centre(x: jax.Array, axis: int) -> jax.Array:
    """x − mean(x) along ``axis``, computed after subtracting the first entry.

    Mathematically the plain difference; numerically, a signal that is constant along
    ``axis`` gives exactly 0 (a float32 mean of n copies of 0.1 is not exactly 0.1), so that
    zero variances are detected exactly by the metrics.
    """
    shifted = x - jax.lax.index_in_dim(x, 0, axis, keepdims=True)
    return shifted - jnp.mean(shifted, axis=axis, keepdims=True)


def psth(signal: jax.Array) -> jax.Array:
    """Peristimulus time histogram z̄_{t,i} = (1/K) Σ_k z^k_{t,i} (appendix C).

    Args:
      signal: float32 [K, T, N] spikes or probabilities.

    Returns:
      float32 [T, N].
    """
    return jnp.mean(as_signal(signal), axis=0)


def mean_rate(signal: jax.Array) -> jax.Array:
    """Mean firing probability per bin z̄_i = (1/(KT)) Σ_{k,t} z^k_{t,i} (appendix C).

    Args:
      signal: float32 [K, T, N].

    Returns:
      float32 [N] (spikes per bin, not per second).
    """
    return jnp.mean(as_signal(signal), axis=(0, 1))


def coincidences(signal: jax.Array) -> jax.Array:
    """Frequency of coincident spikes T(z)_ij = (1/(KT)) Σ_{k,t} z^k_{t,i} z^k_{t,j} (eq. 12).

    On data spikes this is π^D of eq. 12. On probabilities it is the Monte-Carlo estimate
    π^φ_ij = mean σ(u_i) σ(u_j), unbiased for i ≠ j only (see ``estimate_coincidences``).

    Args:
      signal: float32 [K, T, N].

    Returns:
      float32 [N, N], symmetric.
    """
    signal = as_signal(signal)
    flat = signal.reshape(-1, signal.shape[-1])
    return jnp.matmul(flat.T, flat, precision=jax.lax.Precision.HIGHEST) / flat.shape[0]


def estimate_coincidences(probabilities: jax.Array) -> jax.Array:
    """Unbiased model-side estimate of E[coincidences(z)], diagonal included.

    Off the diagonal, mean p_i p_j (conditional independence of one bin's spikes, appendix D);
    on the diagonal, mean p_i because z_i² = z_i.

    Args:
      probabilities: float32 [K, T, N] spike probabilities of a simulation.

    Returns:
      float32 [N, N].
    """
    probabilities = as_signal(probabilities, "probabilities")
    products = coincidences(probabilities)
    diagonal = jnp.eye(products.shape[0], dtype=bool)
    return jnp.where(diagonal, mean_rate(probabilities)[None, :], products)


def shuffled_coincidences(signal: jax.Array, shift: int = 1) -> jax.Array:
    """Coincidences with neuron i's trials shuffled and neuron j's not (``nc_shuffled``).

    ``(1/(KT)) Σ_{k,t} z^{(k + shift) mod K}_{t,i} z^k_{t,j}``: a cyclic shift of the trial
    index is a fixed derangement when ``shift mod K ≠ 0``, so every pair comes from two
    different trials and only stimulus-locked (PSTH) co-fluctuations survive (appendix D).
    The matrix is not symmetric.

    Args:
      signal: float32 [K, T, N] with K ≥ 2.
      shift: trial offset of neuron i.

    Returns:
      float32 [N, N] indexed [i, j].
    """
    signal = as_signal(signal)
    shuffled = jnp.roll(signal, -shift, axis=0)  # shuffled[k] = signal[k + shift]
    n = signal.shape[-1]
    a, b = shuffled.reshape(-1, n), signal.reshape(-1, n)
    return jnp.matmul(a.T, b, precision=jax.lax.Precision.HIGHEST) / a.shape[0]


def trial_mean_subtracted(signal: jax.Array) -> jax.Array:
    """δ^k_{t,i} = z^k_{t,i} − z̄_{t,i}: the signal minus its PSTH (the "noise").

    Args:
      signal: float32 [K, T, N].

    Returns:
      float32 [K, T, N].
    """
    signal = as_signal(signal)
    return centre(signal, axis=0)


def lagged_covariance(
    signal: jax.Array,
    num_delays: int,
    *,
    wrap: bool = False,
    subtract_trial_mean: bool = True,
) -> jax.Array:
    """Delayed covariances C_d[i, j] = mean_{k,t} δ^k_{t,i} δ^k_{t−d,j}, d = 0..D−1.

    δ is the trial-mean-subtracted signal (``trial_mean_subtracted``), as in the official
    ``NoiseCorr_loss_MSE``; j is the earlier neuron. ``C[0]`` equals ``noise_covariance``.

    Args:
      signal: float32 [K, T, N].
      num_delays: D, the number of delays 0..D−1 (the official code uses the network's d_max).
      wrap: if True, time wraps around, t − d taken mod T, and every delay is normalised by
        K·T: the official definition (``tf.roll``). If False, only the K·(T − d) pairs with
        t − d ≥ 0 enter, and the mean is over those pairs.
      subtract_trial_mean: if False, use the raw signal instead of δ.

    Returns:
      float32 [D, N, N] indexed [d, i, j].
    """
    signal = as_signal(signal)
    num_bins = signal.shape[1]
    if not 1 <= num_delays <= num_bins:
        raise ValueError(f"lagged_covariance: need 1 <= num_delays <= T = {num_bins}")
    delta = trial_mean_subtracted(signal) if subtract_trial_mean else signal
    covariances = []
    for d in range(num_delays):
        if wrap:
            later, earlier = delta, jnp.roll(delta, d, axis=1)  # roll(x, d)[t] = x[t − d]
        else:
            later, earlier = delta[:, d:], delta[:, : num_bins - d]
        n = later.shape[-1]
        later, earlier = later.reshape(-1, n), earlier.reshape(-1, n)
        covariances.append(
            jnp.matmul(later.T, earlier, precision=jax.lax.Precision.HIGHEST) / later.shape[0]
        )
    return jnp.stack(covariances)


def total_covariance(signal: jax.Array) -> jax.Array:
    """M^total_ij = (1/(TK)) Σ_{t,k} (z^k_{t,i} − z̄_i)(z^k_{t,j} − z̄_j) (eq. 8).

    Args:
      signal: float32 [K, T, N].

    Returns:
      float32 [N, N].
    """
    signal = as_signal(signal)
    flat = centre(signal.reshape(-1, signal.shape[-1]), axis=0)
    return jnp.matmul(flat.T, flat, precision=jax.lax.Precision.HIGHEST) / flat.shape[0]


def noise_covariance(signal: jax.Array) -> jax.Array:
    """M^noise_ij = (1/(TK)) Σ_{t,k} (z^k_{t,i} − z̄_{t,i})(z^k_{t,j} − z̄_{t,j}) (eq. 9).

    Args:
      signal: float32 [K, T, N].

    Returns:
      float32 [N, N].
    """
    signal = as_signal(signal)
    flat = trial_mean_subtracted(signal).reshape(-1, signal.shape[-1])
    return jnp.matmul(flat.T, flat, precision=jax.lax.Precision.HIGHEST) / flat.shape[0]


def population_count_distribution(signal: jax.Array) -> jax.Array:
    """Distribution of the population spike count per bin, P(Σ_i z_{t,i} = n), n = 0..N.

    Computed as the mean over (k, t) of the Poisson-binomial distribution of the bin's N
    Bernoulli variables. On binary spikes that distribution is the one-hot of the count, so
    the result is the empirical histogram; on probabilities it is P(count = n | past) of each
    bin (one bin's spikes are independent given the past), so the Monte-Carlo estimate is
    unbiased and differentiable. An example of a user statistic for ``sample_and_measure``.

    Args:
      signal: float32 [K, T, N].

    Returns:
      float32 [N + 1], sums to 1.
    """
    signal = as_signal(signal)
    flat = signal.reshape(-1, signal.shape[-1])
    distribution = jnp.zeros((flat.shape[0], flat.shape[1] + 1), flat.dtype).at[:, 0].set(1.0)

    def add_neuron(distribution, p):
        # Convolve with Bernoulli(p): P'(n) = P(n)(1 − p) + P(n − 1) p.
        shifted = jnp.pad(distribution[:, :-1], ((0, 0), (1, 0)))
        return distribution * (1.0 - p[:, None]) + shifted * p[:, None], None

    distribution, _ = jax.lax.scan(add_neuron, distribution, flat.T)
    return jnp.mean(distribution, axis=0)


def smooth(signal: jax.Array, window: int, axis: int = -2) -> jax.Array:
    """Boxcar moving average over ``window`` bins along ``axis`` ("valid" mode).

    Only complete windows are kept, so the output has ``T − window + 1`` bins and no edge bias
    (Fig. S4 smooths PSTHs with a 280 ms window, i.e. 7 bins of 40 ms).

    Args:
      signal: float32 [..., T, ...].
      window: number of bins ≥ 1 (1 returns the input).
      axis: the time axis (default −2, i.e. [..., T, N]).

    Returns:
      float32 with ``T − window + 1`` bins along ``axis``.
    """
    signal = jnp.asarray(signal)
    num_bins = signal.shape[axis]
    if not 1 <= window <= num_bins:
        raise ValueError(f"smooth: need 1 <= window <= T = {num_bins}, got {window}")
    num_windows = num_bins - window + 1
    # A sum of shifted slices, not a cumulative sum: exact in float32 for long recordings.
    total = sum(
        jax.lax.slice_in_dim(signal, offset, offset + num_windows, axis=axis)
        for offset in range(window)
    )
    return total / window
