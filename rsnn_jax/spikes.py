"""Straight-through Bernoulli spike sampling (docs/model.md).

Forward pass: a true Bernoulli sample ``z = 1[U < σ(β ũ)]`` with ``U ~ Uniform[0, 1)``.
Backward pass: the pseudo-derivative of the official code,
``∂z/∂ũ := γ · max(0, 1 − |ũ|)``, with no gradient to ``U``, ``β`` or ``γ``.

References:
  Bellec, Wang et al. (NeurIPS 2021), section 2 and appendix B; the official TensorFlow
  ``SpikeFunction``/``pseudo_derivative`` pair.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def pseudo_derivative(scaled_voltage: jax.Array, dampening: float = 0.3) -> jax.Array:
    """The surrogate ``γ · max(0, 1 − |ũ|)`` used in place of ``∂z/∂ũ``.

    Args:
      scaled_voltage: float32 [...] scaled voltage ũ = (u − v_thr) / v_thr.
      dampening: γ, the dampening factor (0.3 in the paper).

    Returns:
      float32 [...] with the same shape as ``scaled_voltage``.
    """
    return dampening * jnp.maximum(0.0, 1.0 - jnp.abs(scaled_voltage))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def straight_through_bernoulli(
    scaled_voltage: jax.Array,
    noise: jax.Array,
    temperature: float = 1.0,
    dampening: float = 0.3,
) -> jax.Array:
    """Samples spikes ``1[noise < σ(β ũ)]`` with the straight-through pseudo-derivative.

    The event is ``noise < σ(β ũ)`` computed exactly as the official code does, so that a
    run with the same uniform draws reproduces its spikes bit for bit.

    Args:
      scaled_voltage: float32 [...] ũ.
      noise: float32 [...] uniform draws in [0, 1), same shape as ``scaled_voltage``.
        Supplying the draws explicitly reproduces another implementation spike for spike.
      temperature: β (static).
      dampening: γ (static).

    Returns:
      float32 [...] spikes in {0, 1}. Its JVP w.r.t. ``scaled_voltage`` is
      ``pseudo_derivative(scaled_voltage, dampening)``; w.r.t. ``noise`` it is zero.
    """
    probability = jax.nn.sigmoid(temperature * scaled_voltage)
    return (noise < probability).astype(scaled_voltage.dtype)


@straight_through_bernoulli.defjvp
def _straight_through_bernoulli_jvp(temperature, dampening, primals, tangents):
    scaled_voltage, noise = primals
    scaled_voltage_dot, _ = tangents
    spikes = straight_through_bernoulli(scaled_voltage, noise, temperature, dampening)
    return spikes, pseudo_derivative(scaled_voltage, dampening) * scaled_voltage_dot
