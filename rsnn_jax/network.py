"""Recurrent spiking network: parameters, initialisation, one step and ``simulate`` (docs/model.md).

One time bin (docs/model.md; paper eq. 1 and appendix B)::

    u_t = W_in · f_t + Σ_{d=1..D} W_d · z_{t-d} + b
    ũ_t = (u_t − v_thr) / v_thr
    p_t = σ(β ũ_t),   z_t ~ Bernoulli(p_t)

Layouts used throughout the package:

* ``NetworkParams.recurrent_weights``: float32 [D, N, N] indexed ``[d − 1, pre, post]``:
  ``recurrent_weights[d - 1]`` is W_d, the weight of a spike emitted ``d`` bins ago, so the
  delay sum is a single ``[D·N] @ [D·N, N]`` matmul. Diagonals ``[:, i, i]`` are neuron i's
  spike-history filter. ``from_official``/``to_official`` convert to the official
  TensorFlow layout ``recurrent_weights[post, pre, slot]`` whose slot ``D − 1`` is delay 1.
* Spike history ``[D, N]`` as a user passes it (``initial_history``) is *chronological*:
  row ``D − 1`` is the bin just before the first simulated bin, row 0 the bin D bins before
  it, i.e. exactly ``recorded_spikes[t0 - D:t0]``.
* Neurons are ordered visible first (``num_visible``), then hidden.

The core is written for one trial, time-major ``[T, ...]``; ``simulate_batch`` vmaps over
trials ``[K, ...]`` and, optionally, over several samples per clamping condition.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rsnn_jax.spikes import pseudo_derivative, straight_through_bernoulli


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Static hyper-parameters of the network (hashable: usable as a jit static argument).

    Attributes:
      num_visible: N_V, recorded neurons (first in every neuron axis).
      num_hidden: N_H, unrecorded neurons (after the visible ones).
      num_delays: D = d_max, number of spike-history bins (9 for V1 at 40 ms, 24 retina).
      threshold: v_thr (0.4).
      temperature: β (1.0).
      dampening: γ of the pseudo-derivative (0.3).
    """

    num_visible: int
    num_hidden: int = 0
    num_delays: int = 9
    threshold: float = 0.4
    temperature: float = 1.0
    dampening: float = 0.3

    def __post_init__(self):
        for name in ("num_visible", "num_delays"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"NetworkConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.num_hidden, (int, np.integer)) or self.num_hidden < 0:
            raise ValueError(
                f"NetworkConfig.num_hidden must be a non-negative int, got {self.num_hidden!r}"
            )
        if not self.threshold > 0:
            raise ValueError(f"NetworkConfig.threshold must be > 0, got {self.threshold!r}")

    @property
    def num_neurons(self) -> int:
        """N = N_V + N_H."""
        return self.num_visible + self.num_hidden


class NetworkParams(NamedTuple):
    """Trainable parameters of the RSNN (a pytree).

    Attributes:
      input_weights: float32 [F, N], W_in.
      recurrent_weights: float32 [D, N, N], ``[d − 1, pre, post]`` = W_d (see module doc).
      bias: float32 [N], b.
    """

    input_weights: jax.Array
    recurrent_weights: jax.Array
    bias: jax.Array


class SimulationOutputs(NamedTuple):
    """What ``simulate`` returns for every bin.

    Attributes:
      spikes: float32 [..., T, N] in {0, 1}: the spikes that entered the history, i.e. the
        recorded spikes for clamped visible neurons and the model's samples otherwise.
        Sampled entries carry the straight-through gradient.
      logits: float32 [..., T, N], β ũ_t. Losses use these (log-sigmoid) for exact gradients.
    """

    spikes: jax.Array
    logits: jax.Array

    @property
    def probabilities(self) -> jax.Array:
        """float32 [..., T, N], p_t = σ(β ũ_t)."""
        return jax.nn.sigmoid(self.logits)


def init_params(key: jax.Array, config: NetworkConfig, num_features: int) -> NetworkParams:
    """Initialises the network as in appendix B / docs/model.md.

    W_in ~ truncated normal with std 1/sqrt(F); recurrent weights ~ truncated normal with std
    1/sqrt(D·N); b = 0. "Truncated normal with std s" follows the official Keras initialiser:
    a normal of std s truncated at ±2 s.

    Args:
      key: PRNG key.
      config: network sizes.
      num_features: F, the encoder's feature count.

    Returns:
      NetworkParams with float32 leaves of shapes [F, N], [D, N, N], [N].
    """
    if num_features < 1:
        raise ValueError(f"init_params: num_features must be >= 1, got {num_features}")
    n, d = config.num_neurons, config.num_delays
    input_key, recurrent_key = jax.random.split(key)
    input_weights = jax.random.truncated_normal(input_key, -2.0, 2.0, (num_features, n))
    recurrent_weights = jax.random.truncated_normal(recurrent_key, -2.0, 2.0, (d, n, n))
    return NetworkParams(
        input_weights=input_weights / np.sqrt(num_features),
        recurrent_weights=recurrent_weights / np.sqrt(d * n),
        bias=jnp.zeros((n,), jnp.float32),
    )


def from_official(
    input_weights: jax.Array, recurrent_weights: jax.Array, bias: jax.Array
) -> NetworkParams:
    """Converts the official TensorFlow variables to ``NetworkParams``.

    Args:
      input_weights: [F, N] (same layout in both codes).
      recurrent_weights: [N_post, N_pre, D] with slot D − 1 = delay 1 and slot 0 = delay D
        (the official buffer shifts left and appends the newest spike last).
      bias: [N].

    Returns:
      NetworkParams with ``recurrent_weights[d − 1, pre, post] = official[post, pre, D − d]``.
    """
    recurrent_weights = jnp.asarray(recurrent_weights)
    if recurrent_weights.ndim != 3 or recurrent_weights.shape[0] != recurrent_weights.shape[1]:
        raise ValueError(
            "from_official: recurrent_weights must be [N_post, N_pre, D] with N_post == N_pre, "
            f"got shape {recurrent_weights.shape}"
        )
    n = recurrent_weights.shape[0]
    input_weights, bias = jnp.asarray(input_weights), jnp.asarray(bias)
    if input_weights.ndim != 2 or input_weights.shape[1] != n:
        raise ValueError(
            f"from_official: input_weights must be [F, {n}], got shape {input_weights.shape}"
        )
    if bias.shape != (n,):
        raise ValueError(f"from_official: bias must be [{n}], got shape {bias.shape}")
    return NetworkParams(
        input_weights=input_weights,
        recurrent_weights=jnp.transpose(recurrent_weights[:, :, ::-1], (2, 1, 0)),
        bias=bias,
    )


def to_official(params: NetworkParams) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Inverse of ``from_official``.

    Returns:
      (input_weights [F, N], recurrent_weights [N_post, N_pre, D] official layout, bias [N]).
    """
    official = jnp.transpose(params.recurrent_weights, (2, 1, 0))[:, :, ::-1]
    return params.input_weights, official, params.bias


def input_drive(params: NetworkParams, features: jax.Array) -> jax.Array:
    """``W_in · f_t + b`` for every bin at once: float32 [..., T, N] from features [..., T, F]."""
    return features @ params.input_weights + params.bias


def _advance(config, weights, history, drive, noise, recorded, clamp):
    """One bin of any number of trials: the update shared by ``step`` and the scan.

    Args:
      config: NetworkConfig.
      weights: float32 [D·N, N], the recurrent weights flattened ``[(d − 1)·N + pre, post]``.
      history: float32 [..., D, N] in delay order (row d − 1 = the spikes of d bins ago).
      drive: float32 [..., N] (or broadcastable), ``W_in · f_t + b``.
      noise: float32 [..., N] uniform draws.
      recorded: float32 [..., N_V] or None.
      clamp: bool scalar; when true the visible spikes entering the history are ``recorded``.

    Returns:
      (new history [..., D, N], spikes [..., N], scaled voltage ũ [..., N]).
    """
    num_visible = config.num_visible
    # [..., D·N] @ [D·N, N]: the delay sum of all trials in one matmul.
    recurrent = history.reshape(history.shape[:-2] + (-1,)) @ weights
    scaled_voltage = (drive + recurrent - config.threshold) / config.threshold
    spikes = straight_through_bernoulli(scaled_voltage, noise, config.temperature, config.dampening)
    if recorded is not None:
        visible = jnp.where(clamp, recorded, spikes[..., :num_visible])
        spikes = jnp.concatenate([visible, spikes[..., num_visible:]], axis=-1)
    history = jnp.concatenate([spikes[..., None, :], history[..., :-1, :]], axis=-2)
    return history, spikes, scaled_voltage


def step(
    params: NetworkParams,
    config: NetworkConfig,
    history: jax.Array,
    features: jax.Array,
    noise: jax.Array,
    recorded: jax.Array | None = None,
    clamp: jax.Array | bool = False,
) -> tuple[jax.Array, SimulationOutputs]:
    """Advances one trial by one bin (docs/model.md).

    Args:
      params: network parameters.
      config: network sizes and constants.
      history: float32 [D, N], *delay order*: row d − 1 holds the spikes of d bins ago.
      features: float32 [F], f_t.
      noise: float32 [N] uniform draws in [0, 1).
      recorded: float32 [N_V] recorded visible spikes of this bin, or None.
      clamp: bool scalar; when true the visible spikes entering the history are ``recorded``.

    Returns:
      (new history [D, N] in delay order, SimulationOutputs of this bin with [N] leaves).
    """
    weights = jnp.asarray(params.recurrent_weights).reshape(-1, config.num_neurons)
    drive = input_drive(params, features)
    new_history, spikes, scaled_voltage = _advance(
        config, weights, history, drive, noise, recorded, clamp
    )
    return new_history, SimulationOutputs(spikes, config.temperature * scaled_voltage)


def _check(name: str, array, shape: tuple, function: str) -> None:
    """Raises a ValueError naming ``name`` unless ``array.shape`` matches (None = any)."""
    actual = tuple(np.shape(array))
    if len(actual) != len(shape) or any(s is not None and s != a for s, a in zip(shape, actual)):
        expected = "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{function}: {name} must have shape {expected}, got {list(actual)}")


def _initial_history(initial_history, config, function: str) -> jax.Array:
    """Chronological [D, N_V] or [D, N] → delay-order [D, N] (hidden padded with zeros)."""
    d, n = config.num_delays, config.num_neurons
    if initial_history is None:
        return jnp.zeros((d, n), jnp.float32)
    initial_history = jnp.asarray(initial_history, jnp.float32)
    if initial_history.shape == (d, config.num_visible) and config.num_hidden:
        initial_history = jnp.pad(initial_history, ((0, 0), (0, config.num_hidden)))
    _check("initial_history", initial_history, (d, n), function)
    return initial_history[::-1]


def _forward_scan(config, weights, drive, noise, recorded, clamp, history):
    """The sequential simulation of B trials, time-major (one ``lax.scan`` over bins).

    Args:
      config: NetworkConfig.
      weights: float32 [D·N, N], the recurrent weights flattened ``[(d − 1)·N + pre, post]``.
      drive: float32 [T, N] shared by the B trials, or [T, B, N]: ``W_in · f_t + b``.
      noise: float32 [T, B, N] uniform draws.
      recorded: float32 [T, B, N_V] or None.
      clamp: bool [T], bins whose visible spikes are the recorded ones.
      history: float32 [B, D, N] in delay order.

    Returns:
      (spikes [T, B, N], scaled voltages ũ [T, B, N]).
    """

    def body(history, xs):
        history, spikes, scaled_voltage = _advance(config, weights, history, *xs)
        return history, (spikes, scaled_voltage)

    _, (spikes, scaled_voltage) = jax.lax.scan(body, history, (drive, noise, recorded, clamp))
    return spikes, scaled_voltage


def _extended_spikes(history, spikes):
    """Chronological spikes including the initial history: [D + T, B, N] from delay-order
    history [B, D, N] and spikes [T, B, N]; row D + t is bin t, row D − d is bin −d."""
    return jnp.concatenate([jnp.transpose(history[:, ::-1], (1, 0, 2)), spikes], axis=0)


def _lagged(extended, delay, num_bins):
    """z_{t−d} for every bin: [T, B, N] rows ``D − d .. D − d + T`` of ``extended``."""
    num_delays = extended.shape[0] - num_bins
    return jax.lax.dynamic_slice_in_dim(extended, num_delays - delay, num_bins, axis=0)


def _recurrent_input(weights, extended, num_bins):
    """Σ_d z_{t−d} · W_d for all bins at once: [T, B, N] from chronological ``extended``
    [D + T, B, N] and weights [D·N, N]. One matmul per delay over contiguous time slices
    (time-major), so no [T, D·N] lagged copy is built; a loop over the delays (not D
    independent products) keeps a single [T, B, N] accumulator alive: unrolled, XLA
    schedules all D products before their sum, D times the memory at long T."""
    num_delays = extended.shape[0] - num_bins
    n = extended.shape[-1]
    per_delay = jnp.asarray(weights).reshape(num_delays, n, n)

    def add_delay(index, total):
        return total + _lagged(extended, index + 1, num_bins) @ per_delay[index]

    initial = jnp.zeros((num_bins,) + extended.shape[1:-1] + (n,), weights.dtype)
    return jax.lax.fori_loop(0, num_delays, add_delay, initial)


def _weight_gradient(extended, grad, num_delays):
    """∂L/∂W = Σ_{t,b} h_{t,b}ᵀ g_{t,b} as D matmuls contracting time and trials together:
    [D·N, N] from chronological ``extended`` [D + T, B, N] and g = ∂L/∂u [T, B, N]. One
    delay at a time (``lax.map``), so that only one delay's operands are laid out at once."""
    num_bins, n = grad.shape[0], grad.shape[-1]

    def block(delay):
        return jnp.einsum("tbi,tbj->ij", _lagged(extended, delay, num_bins), grad)

    return jax.lax.map(block, jnp.arange(1, num_delays + 1)).reshape(num_delays * n, n)


class _ScanOptions(NamedTuple):
    """Static options of ``_recurrent_scan`` (hashable)."""

    config: NetworkConfig
    remat: bool
    shared_drive: bool
    has_recorded: bool


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _recurrent_scan(options, weights, drive, noise, recorded, clamp, history):
    """``_forward_scan`` with a hand-written backward pass (see ``_recurrent_scan_bwd``)."""
    return _forward_scan(options.config, weights, drive, noise, recorded, clamp, history)


def _recurrent_scan_fwd(options, weights, drive, noise, recorded, clamp, history):
    spikes, scaled_voltage = _forward_scan(
        options.config, weights, drive, noise, recorded, clamp, history
    )
    # The backward pass needs the spikes (an output anyway) and ũ; with ``remat`` ũ is not
    # stored but recomputed in parallel from the spikes. Never the per-bin [D, N] history.
    if options.remat:
        residuals = (weights, drive, clamp, history, spikes, None)
    else:
        residuals = (weights, None, clamp, history, spikes, scaled_voltage)
    return (spikes, scaled_voltage), residuals


def _recurrent_scan_bwd(options, residuals, cotangents):
    """Reverse-time recursion of the straight-through gradient (docs/model.md).

    With λ_t = ∂L/∂h_t (history entering bin t, [B, D, N]) and g_t = ∂L/∂u_t:

        ∂L/∂z_t = ∂L/∂spikes_t + λ_{t+1}[:, 0]        (z_t is row 0 of h_{t+1})
        g_t = (∂L/∂z_t · γ max(0, 1 − |ũ_t|) + ∂L/∂ũ_t) / v_thr
              (∂L/∂z_t is zeroed for clamped visible entries: they are data, not samples)
        λ_t = shift(λ_{t+1}) + reshape(W_flat · g_t)

    The reverse scan carries only λ ([B, D, N]); ∂L/∂W = Σ_t h_tᵀ g_t is computed after it
    as D large matmuls over all bins and trials (``_weight_gradient``) instead of an
    [D·N, N] update per bin, which for large N would stream the whole weight array through
    memory every bin. ∂L/∂drive_t = g_t (summed over trials when the drive is shared).
    """
    config = options.config
    weights, drive, clamp, history, spikes, scaled_voltage = residuals
    grad_spikes, grad_scaled = cotangents
    num_bins, batch, n = spikes.shape
    num_delays, num_visible = config.num_delays, config.num_visible
    extended = _extended_spikes(history, spikes)
    if scaled_voltage is None:  # remat: ũ from the known spikes, all bins in parallel
        recurrent = _recurrent_input(weights, extended, num_bins)
        drive = drive[:, None] if options.shared_drive else drive
        scaled_voltage = (drive + recurrent - config.threshold) / config.threshold
    surrogate = pseudo_derivative(scaled_voltage, config.dampening)
    visible = jnp.arange(n) < num_visible

    def body(adjoint, xs):
        grad_spikes_t, grad_scaled_t, surrogate_t, clamp_t = xs
        grad_z = grad_spikes_t + adjoint[:, 0]
        grad_recorded = None
        if options.has_recorded:
            grad_recorded = jnp.where(clamp_t, grad_z[:, :num_visible], 0.0)
            grad_z = jnp.where(clamp_t & visible, 0.0, grad_z)
        grad_voltage = (grad_z * surrogate_t + grad_scaled_t) / config.threshold
        # g_t · W_flatᵀ without materialising the transpose: [B, N] x [D·N, N] → [B, D·N].
        through_weights = jax.lax.dot_general(grad_voltage, weights, (((1,), (1,)), ((), ())))
        shifted = jnp.concatenate([adjoint[:, 1:], jnp.zeros_like(adjoint[:, :1])], axis=1)
        adjoint = shifted + through_weights.reshape(batch, num_delays, n)
        return adjoint, (grad_voltage, grad_recorded)

    xs = (grad_spikes, grad_scaled, surrogate, clamp)
    adjoint, (grad_voltage, grad_recorded) = jax.lax.scan(
        body, jnp.zeros_like(history), xs, reverse=True
    )
    grad_weights = _weight_gradient(extended, grad_voltage, num_delays)
    grad_drive = grad_voltage.sum(axis=1) if options.shared_drive else grad_voltage
    return grad_weights, grad_drive, None, grad_recorded, None, adjoint


_recurrent_scan.defvjp(_recurrent_scan_fwd, _recurrent_scan_bwd)


def _clamped_parallel(config, weights, drive, recorded, history):
    """Fully clamped pass without hidden neurons: no bin depends on a sample, so all bins'
    voltages come from the recorded spikes at once (one matmul per delay over every bin and
    trial) instead of a sequential scan. Same values as the scan up to float rounding; the
    spikes are the recorded ones. Shapes as ``_forward_scan`` (N = N_V)."""
    extended = _extended_spikes(history, recorded)
    recurrent = _recurrent_input(weights, extended, recorded.shape[0])
    drive = drive[:, None] if drive.ndim == 2 else drive
    return recorded, (drive + recurrent - config.threshold) / config.threshold


def _simulate_core(params, config, drive, noise, recorded, clamp, history, *, parallel, remat):
    """B trials, time-major: drive [T, N] (shared) or [T, B, N], noise [T, B, N], recorded
    [T, B, N_V] or None, clamp bool [T], history [B, D, N] in delay order → (spikes, logits),
    each [T, B, N]."""
    # jnp: NumPy parameters (e.g. a loaded target) must be indexable by traced delays.
    weights = jnp.asarray(params.recurrent_weights).reshape(-1, config.num_neurons)
    if parallel:
        spikes, scaled_voltage = _clamped_parallel(config, weights, drive, recorded, history)
    else:
        options = _ScanOptions(config, bool(remat), drive.ndim == 2, recorded is not None)
        spikes, scaled_voltage = _recurrent_scan(
            options, weights, drive, noise, recorded, clamp, history
        )
    return spikes, config.temperature * scaled_voltage


def _check_params(params, config, num_features, function):
    n = config.num_neurons
    _check("params.input_weights", params.input_weights, (num_features, n), function)
    shape = (config.num_delays, n, n)
    _check("params.recurrent_weights", params.recurrent_weights, shape, function)
    _check("params.bias", params.bias, (n,), function)


def simulate(
    params: NetworkParams,
    features: jax.Array,
    *,
    config: NetworkConfig,
    key: jax.Array | None = None,
    noise: jax.Array | None = None,
    recorded: jax.Array | None = None,
    clamp_until: int | jax.Array | None = None,
    initial_history: jax.Array | None = None,
    remat: bool = False,
) -> SimulationOutputs:
    """Simulates one trial with one ``jax.lax.scan`` over time (docs/model.md).

    Modes:
      * free: ``recorded=None``; every neuron runs on its own samples.
      * clamped: ``recorded`` given, ``clamp_until=None``; the visible neurons' history is the
        recorded data, hidden neurons sample. Without hidden neurons no bin depends on a
        sample, and all bins are computed at once (matmuls over time) instead of a scan.
      * clamped until T_gt, then free: ``recorded`` and ``clamp_until=T_gt`` (may be a traced
        int: changing it does not recompile). Bins ``t < T_gt`` are clamped.

    Gradients (reverse mode only: the scan has a hand-written VJP, see
    ``_recurrent_scan_bwd``) store the spikes and scaled voltages of every bin, never the
    per-bin spike history, and form the recurrent-weight gradient after the reverse scan.

    Args:
      params: network parameters.
      features: float32 [T, F] stimulus features.
      config: network sizes and constants (static).
      key: PRNG key for the uniform draws; exactly one of ``key`` and ``noise``.
      noise: float32 [T, N] uniform draws in [0, 1): spike = noise < p. Reproduces another
        implementation's run, or compares parameters under common random numbers.
      recorded: float32 [T, N_V] recorded visible spikes, or None (free).
      clamp_until: bins before it are clamped; default T when ``recorded`` is given.
      initial_history: float32 [D, N] or [D, N_V] (hidden then start silent), chronological
        (row D − 1 is the bin before t = 0): ``data[t0 - D:t0]``. Default zeros.
      remat: memory for long recordings: the backward pass then keeps only the spikes and
        recomputes the scaled voltages from them (one parallel matmul per delay).

    Returns:
      SimulationOutputs with [T, N] leaves.
    """
    if np.ndim(features) != 2:
        raise ValueError(
            f"simulate: features must have shape [T, F], got {list(np.shape(features))}"
        )
    # One trial of ``simulate_batch`` (which checks the arguments): its draws from ``key``
    # are the same numbers, [1, T, N] and [T, N] holding the same count in the same order.
    outputs = simulate_batch(
        params,
        features,
        config=config,
        key=key,
        noise=None if noise is None else jnp.asarray(noise)[None],
        recorded=None if recorded is None else jnp.asarray(recorded)[None],
        clamp_until=clamp_until,
        initial_history=initial_history,
        num_trials=1,
        remat=remat,
    )
    return SimulationOutputs(spikes=outputs.spikes[0], logits=outputs.logits[0])


def _clamp_mask(num_bins, recorded, clamp_until, function):
    """bool [T]: the bins whose visible spikes are clamped to ``recorded``."""
    if recorded is None:
        if clamp_until is not None:
            raise ValueError(f"{function}: clamp_until needs recorded= (the spikes to clamp to)")
        return jnp.zeros((num_bins,), bool)
    return jnp.arange(num_bins) < (num_bins if clamp_until is None else clamp_until)


def _is_parallel(config, recorded, clamp_until) -> bool:
    return recorded is not None and clamp_until is None and config.num_hidden == 0


def simulate_batch(
    params: NetworkParams,
    features: jax.Array,
    *,
    config: NetworkConfig,
    key: jax.Array | None = None,
    noise: jax.Array | None = None,
    recorded: jax.Array | None = None,
    clamp_until: int | jax.Array | None = None,
    initial_history: jax.Array | None = None,
    num_trials: int | None = None,
    num_samples: int | None = None,
    remat: bool = False,
) -> SimulationOutputs:
    """``simulate`` for K trials (and optionally S samples per clamping condition) at once.

    All trials (and samples) advance together in one scan whose per-bin delay sum is one
    ``[K·S, D·N] @ [D·N, N]`` matmul; equal, trial by trial, to ``simulate``.

    Args:
      params: network parameters (shared by all trials).
      features: float32 [T, F] shared by all trials (one stimulus, e.g. a repeated movie:
        ``W_in · f`` is then computed once, not per trial) or [K, T, F] per trial.
      config: network sizes and constants (static).
      key: PRNG key; exactly one of ``key`` and ``noise``.
      noise: float32 [K, T, N], or [K, S, T, N] with ``num_samples``.
      recorded: float32 [K, T, N_V] or None (free).
      clamp_until: scalar shared by all trials (see ``simulate``).
      initial_history: [D, N(_V)] shared or [K, D, N(_V)] per trial, chronological.
      num_trials: K when nothing else tells it (free runs with shared features and a key).
      num_samples: S samples per clamping condition (ELBO-SM, eq. 20); adds an axis after K.
      remat: see ``simulate``.

    Returns:
      SimulationOutputs with [K, T, N] leaves, or [K, S, T, N] with ``num_samples``.
    """
    features = jnp.asarray(features)
    if features.ndim not in (2, 3):
        raise ValueError(
            f"simulate_batch: features must be [T, F] or [K, T, F], got {list(features.shape)}"
        )
    candidates = {
        "num_trials": num_trials,
        "features": features.shape[0] if features.ndim == 3 else None,
        "recorded": None if recorded is None else np.shape(recorded)[0],
        "noise": None if noise is None else np.shape(noise)[0],
        "initial_history": (
            np.shape(initial_history)[0]
            if initial_history is not None and np.ndim(initial_history) == 3
            else None
        ),
    }
    known = {name: k for name, k in candidates.items() if k is not None}
    if not known:
        raise ValueError("simulate_batch: cannot tell the number of trials; pass num_trials=")
    if len(set(known.values())) > 1:
        raise ValueError(f"simulate_batch: inconsistent numbers of trials (leading axes): {known}")
    k = next(iter(known.values()))
    if (key is None) == (noise is None):
        raise ValueError("simulate_batch: pass exactly one of key= and noise=")
    num_bins, n = features.shape[-2], config.num_neurons
    _check_params(params, config, features.shape[-1], "simulate_batch")
    shape = (k,) if num_samples is None else (k, num_samples)
    if noise is None:
        noise = jax.random.uniform(key, shape + (num_bins, n))
    _check("noise", noise, shape + (num_bins, n), "simulate_batch")
    batch = math.prod(shape)

    def trials_first(x, per_trial_shape):
        """[K, ...] per trial → [B, ...], repeated over the S samples."""
        if num_samples is not None:
            x = jnp.broadcast_to(x[:, None], (k, num_samples) + per_trial_shape)
        return x.reshape((batch,) + per_trial_shape)

    def time_major(x):
        return jnp.swapaxes(x, 0, 1)

    drive = input_drive(params, features)  # [T, N] once for a shared stimulus, or [K, T, N]
    if drive.ndim == 3:
        drive = time_major(trials_first(drive, (num_bins, n)))
    clamp = _clamp_mask(num_bins, recorded, clamp_until, "simulate_batch")
    if recorded is not None:
        _check("recorded", recorded, (k, num_bins, config.num_visible), "simulate_batch")
        recorded = jnp.asarray(recorded, jnp.float32)
        recorded = time_major(trials_first(recorded, (num_bins, config.num_visible)))
    if initial_history is not None and np.ndim(initial_history) == 3:
        history = jax.vmap(lambda h: _initial_history(h, config, "simulate_batch"))(
            jnp.asarray(initial_history, jnp.float32)
        )
        history = trials_first(history, (config.num_delays, n))
    else:
        history = _initial_history(initial_history, config, "simulate_batch")
        history = jnp.broadcast_to(history, (batch,) + history.shape)
    noise = time_major(jnp.asarray(noise, jnp.float32).reshape((batch, num_bins, n)))
    spikes, logits = _simulate_core(
        params,
        config,
        drive,
        noise,
        recorded,
        clamp,
        history,
        parallel=_is_parallel(config, recorded, clamp_until),
        remat=remat,
    )

    def unflatten(x):
        return time_major(x).reshape(shape + (num_bins, n))

    return SimulationOutputs(spikes=unflatten(spikes), logits=unflatten(logits))
