"""Cross-entropies against model probabilities, computed in log space from the logits.

Every built-in loss compares data with p = σ(β ũ). Written with ``log_sigmoid`` and
``logsumexp`` of the logits instead of ``log(p)``, their values and gradients stay finite
where σ saturates in float32 (logits of ±50, tested), and where a probability is a product
or a mean of several p (coincidences, a PSTH) the log of it is still exact.

CE(y, p) = −y log p − (1 − y) log(1 − p), as the official code: the data entropy is not
subtracted, so a perfect fit has a non-zero loss.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def binary_cross_entropy(targets: jax.Array, logits: jax.Array) -> jax.Array:
    """Elementwise CE(y, σ(x)) = −y log σ(x) − (1 − y) log σ(−x), exact for any finite x.

    Args:
      targets: float32 [...] in [0, 1] (spikes or empirical probabilities).
      logits: float32 [...] broadcastable to ``targets``.

    Returns:
      float32 [...], the broadcast shape.
    """
    return -(targets * jax.nn.log_sigmoid(logits) + (1.0 - targets) * jax.nn.log_sigmoid(-logits))


def _log_mean_exp(x: jax.Array, axis) -> jax.Array:
    """log mean exp(x) along ``axis``, stable (``logsumexp`` − log n)."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    count = math.prod(x.shape[a] for a in axes)
    return jax.nn.logsumexp(x, axis=axis) - math.log(count)


def _log_mean_outer_exp(a: jax.Array, b: jax.Array) -> jax.Array:
    """log (1/S) Σ_s exp(a_{s,i} + b_{s,j}) for a [S, N], b [S, M] → [N, M].

    One matmul instead of an [S, N, M] logsumexp: each column is shifted by its maximum (the
    result does not depend on the shift, hence ``stop_gradient``). The sum can only
    underflow when the two columns' maxima sit at samples far apart (a gap of more than ~87
    nats); it is then floored at float32 ``tiny`` so the value and gradient stay finite.
    """
    shift_a = jax.lax.stop_gradient(jnp.max(a, axis=0))
    shift_b = jax.lax.stop_gradient(jnp.max(b, axis=0))
    mean = jnp.matmul(jnp.exp(a - shift_a).T, jnp.exp(b - shift_b), precision=_HIGHEST)
    mean = mean / a.shape[0]
    return (
        shift_a[:, None] + shift_b[None, :] + jnp.log(jnp.maximum(mean, jnp.finfo(mean.dtype).tiny))
    )


def _log_coincidence(logits_i: jax.Array, logits_j: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(log π, log(1 − π)) for π_ij = mean_s σ(x_{s,i}) σ(x_{s,j}); logits [S, N] → [N, N].

    1 − p_i p_j is written q_i + p_i q_j (q = 1 − p) so that log(1 − π) stays exact where
    p_i p_j rounds to 1 in float32.
    """
    log_p_i, log_q_i = jax.nn.log_sigmoid(logits_i), jax.nn.log_sigmoid(-logits_i)
    log_p_j, log_q_j = jax.nn.log_sigmoid(logits_j), jax.nn.log_sigmoid(-logits_j)
    log_pi = _log_mean_outer_exp(log_p_i, log_p_j)
    log_one_minus_pi = jnp.logaddexp(
        _log_mean_exp(log_q_i, 0)[:, None], _log_mean_outer_exp(log_p_i, log_q_j)
    )
    return log_pi, log_one_minus_pi


def _cross_entropy_from_logs(targets, log_p, log_q) -> jax.Array:
    """Elementwise −y log p − (1 − y) log q with log p and log q = log(1 − p) given."""
    return -(targets * log_p + (1.0 - targets) * log_q)


def _cross_entropy_of_mean(targets: jax.Array, logits: jax.Array, axis: int) -> jax.Array:
    """mean CE(y, p̄) with p̄ = mean of σ(x) along ``axis``: a PSTH, a rate, eq. 20's mean.

    log p̄ and log(1 − p̄) are means of exp(log σ(±x)) in log space, so a p̄ that rounds to
    0 or 1 in float32 still has a finite CE and gradient.

    Args:
      targets: float32, broadcastable to ``logits`` without ``axis``.
      logits: float32 [...].
      axis: the axis averaged (trials, samples).

    Returns:
      float32 scalar, the mean over the remaining entries.
    """
    log_p = _log_mean_exp(jax.nn.log_sigmoid(logits), axis)
    log_q = _log_mean_exp(jax.nn.log_sigmoid(-logits), axis)
    return jnp.mean(_cross_entropy_from_logs(targets, log_p, log_q))


def _off_diagonal_mean(matrix: jax.Array) -> jax.Array:
    """Mean over the N(N − 1) entries i ≠ j of [N, N]."""
    n = matrix.shape[0]
    return jnp.sum(jnp.where(jnp.eye(n, dtype=bool), 0.0, matrix)) / (n * (n - 1))
