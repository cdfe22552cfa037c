"""Dissimilarities between pytrees of statistics: what a sample-and-measure loss compares.

d(T(z^D), T̂_φ) of main text eq. 4 for a user statistic T: mean squared error, or a
cross-entropy for statistics that are probabilities. Each is a mean over every element of
every leaf, so a pytree statistic weighs its entries, not its leaves, equally.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from rsnn_jax.losses.numerics import _cross_entropy_from_logs


def mean_squared_error(data: Any, model: Any) -> jax.Array:
    """MSE between two pytrees of statistics: mean over all their elements.

    Args:
      data: pytree of arrays (the statistic of the data).
      model: pytree of the same structure and shapes.

    Returns:
      float32 scalar.
    """
    squares = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.square(a - b).ravel(), data, model))
    return jnp.mean(jnp.concatenate(squares))


def cross_entropy(data: Any, model: Any, eps: float = 1e-6) -> jax.Array:
    """CE between two pytrees of probabilities: mean over all elements of CE(π^D, π^φ).

    A user statistic arrives as probabilities, not logits, so π^φ is clipped to
    [eps, 1 − eps] to keep the logarithms finite (no gradient flows through clipped
    entries). The built-in losses work in log space instead.

    Args:
      data: pytree of arrays in [0, 1].
      model: pytree of the same structure and shapes, in [0, 1].
      eps: clipping of the model probabilities.

    Returns:
      float32 scalar.
    """

    def one(target, p):
        p = jnp.clip(p, eps, 1.0 - eps)
        return _cross_entropy_from_logs(target, jnp.log(p), jnp.log1p(-p)).ravel()

    return jnp.mean(jnp.concatenate(jax.tree.leaves(jax.tree.map(one, data, model))))


_DISSIMILARITIES = {"mse": mean_squared_error, "ce": cross_entropy}


def dissimilarity(name_or_function) -> Callable[[Any, Any], jax.Array]:
    """The dissimilarity a term or estimator was given: "mse", "ce" or its own function.

    Args:
      name_or_function: "mse" (``mean_squared_error``), "ce" (``cross_entropy``) or a
        function (data_stats, model_stats) → float32 scalar, returned as is.

    Raises:
      ValueError: for any other name (checked when a term is built, not at trace time).
    """
    if callable(name_or_function):
        return name_or_function
    if name_or_function not in _DISSIMILARITIES:
        raise ValueError(
            f"dissimilarity must be one of {sorted(_DISSIMILARITIES)} or a callable, "
            f"got {name_or_function!r}"
        )
    return _DISSIMILARITIES[name_or_function]
