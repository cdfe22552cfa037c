"""Encoder + network for a batch of trials (docs/model.md; appendix B).

One training step encodes the stimulus once and runs each simulation pass it needs once,
reusing the features ("process the CNN once and simulate the RSNN twice"). Which passes are
needed is described by ``Passes`` (an objective derives it from its terms).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from rsnn_jax import network
from rsnn_jax.encoders import receptive_field_of


@dataclasses.dataclass(frozen=True)
class Model:
    """A stimulus encoder and a network configuration (static, hashable).

    Attributes:
      encoder: a Flax module mapping one clip [T + R − 1, H, W] to features [T, F]
        (see ``rsnn_jax.encoders``).
      network: the RSNN's sizes and constants.
    """

    encoder: nn.Module
    network: network.NetworkConfig

    @property
    def receptive_field(self) -> int:
        """R: a clip for T bins has T + R − 1 frames."""
        return receptive_field_of(self.encoder)


class ModelParams(NamedTuple):
    """Trainable parameters: ``encoder`` (a Flax variable dict) and ``network``."""

    encoder: Any
    network: network.NetworkParams


@dataclasses.dataclass(frozen=True)
class Passes:
    """Which simulation passes a step runs (static).

    Attributes:
      clamped: number of samples S per clamping condition of the fully clamped pass
        (0: no clamped pass; 1 for MLE/ELBO; S > 1 for ELBO-SM, eq. 20).
      free: run a free pass (PSTH, NC, SM-h terms).
      clamp_until: if not None, run a pass clamped for bins t < clamp_until and free after
        (single-trial loss, eq. 14). It may differ per call without recompiling only if
        given as an array to ``run_passes``; here it is a static default.
      free_from_zeros: start the free pass from a silent history, as the official code does,
        instead of the recorded history given to ``run_passes`` (the default here: a free
        pass started from the data's state avoids an initial transient).
    """

    clamped: int = 0
    free: bool = False
    clamp_until: int | None = None
    free_from_zeros: bool = False

    def __post_init__(self):
        if self.clamped < 0:
            raise ValueError(f"Passes.clamped must be >= 0, got {self.clamped}")
        if self.clamp_until is not None and self.clamp_until < 0:
            raise ValueError(f"Passes.clamp_until must be >= 0, got {self.clamp_until}")

    def merge(self, other: Passes) -> Passes:
        """The passes that satisfy both ``self`` and ``other``."""
        if (
            self.clamp_until is not None
            and other.clamp_until is not None
            and self.clamp_until != other.clamp_until
        ):
            raise ValueError(
                f"Passes.merge: two different clamp_until values {self.clamp_until} and "
                f"{other.clamp_until}"
            )
        return Passes(
            clamped=max(self.clamped, other.clamped),
            free=self.free or other.free,
            clamp_until=self.clamp_until if self.clamp_until is not None else other.clamp_until,
            free_from_zeros=self.free_from_zeros or other.free_from_zeros,
        )


class PassOutputs(NamedTuple):
    """Outputs of ``run_passes``; a pass that was not run is None.

    Attributes:
      clamped: SimulationOutputs [K, T, N] (S = 1) or [K, S, T, N] (S > 1). Its visible
        ``spikes`` are the recorded ones (they are what entered the history).
      free: SimulationOutputs [K, T, N].
      clamped_until: SimulationOutputs [K, T, N], clamped for t < clamp_until.
      clamped_samples: float32 [K, T, N_V] or [K, S, T, N_V], the visible neurons' own
        samples in the clamped pass, ``1[noise < p]`` with the pass's uniform draws and
        probabilities (what they would have emitted; the history used the recorded spikes
        instead). Only with ``run_passes(clamped_samples=True)``, else None. No gradient.
    """

    clamped: network.SimulationOutputs | None
    free: network.SimulationOutputs | None
    clamped_until: network.SimulationOutputs | None
    clamped_samples: jax.Array | None = None


class PassNoise(NamedTuple):
    """Uniform draws in [0, 1) for the passes of ``run_passes``: spike = noise < p. A pass
    whose entry is None draws its own from ``run_passes``'s key.

    Attributes:
      clamped: float32 [K, T, N], or [K, S, T, N] with ``Passes.clamped = S > 1``.
      free: float32 [K, T, N].
      clamped_until: float32 [K, T, N].
    """

    clamped: jax.Array | None = None
    free: jax.Array | None = None
    clamped_until: jax.Array | None = None


def _pass_noise(noise) -> PassNoise:
    """``run_passes``'s ``noise=`` (None, a PassNoise, another NamedTuple or a dict with
    some of its fields) as a PassNoise."""
    if noise is None:
        return PassNoise()
    if hasattr(noise, "_asdict"):
        noise = noise._asdict()
    if not isinstance(noise, Mapping):
        raise TypeError(f"run_passes: noise must be a PassNoise or a dict, got {type(noise)}")
    unknown = sorted(set(noise) - set(PassNoise._fields))
    if unknown:
        raise ValueError(f"run_passes: noise for unknown passes {unknown}; {PassNoise._fields}")
    return PassNoise(**noise)


def init_model(key: jax.Array, model: Model, stimulus_shape: tuple[int, ...]) -> ModelParams:
    """Initialises encoder and network parameters.

    Args:
      key: PRNG key.
      model: the model.
      stimulus_shape: the shape of one clip, (T + R − 1, H, W).

    Returns:
      ModelParams.
    """
    encoder_key, network_key = jax.random.split(key)
    dummy = jnp.zeros(stimulus_shape, jnp.float32)
    encoder_params = model.encoder.init(encoder_key, dummy)
    num_features = jax.eval_shape(model.encoder.apply, encoder_params, dummy).shape[-1]
    return ModelParams(
        encoder=encoder_params,
        network=network.init_params(network_key, model.network, num_features),
    )


def encode(
    params: ModelParams, model: Model, stimulus: jax.Array, per_trial: bool = False
) -> jax.Array:
    """Features of a shared clip [T + R − 1, H, W] → [T, F], or per-trial clips → [K, T, F]."""
    apply = lambda clip: model.encoder.apply(params.encoder, clip)  # noqa: E731
    return jax.vmap(apply)(stimulus) if per_trial else apply(stimulus)


def run_passes(
    params: ModelParams,
    model: Model,
    stimulus: jax.Array,
    recorded: jax.Array,
    *,
    passes: Passes,
    key: jax.Array,
    initial_history: jax.Array | None = None,
    per_trial_stimulus: bool = False,
    clamp_until: int | jax.Array | None = None,
    remat: bool = False,
    noise: PassNoise | Mapping | None = None,
    clamped_samples: bool = False,
) -> PassOutputs:
    """Encodes the stimulus once and runs each requested pass once.

    Args:
      params: model parameters.
      model: the model (static).
      stimulus: float32 [T + R − 1, H, W] shared by the K trials, or [K, T + R − 1, H, W]
        with ``per_trial_stimulus``.
      recorded: float32 [K, T, N_V] recorded visible spikes of the batch.
      passes: which passes to run (static).
      key: PRNG key; each pass gets its own split.
      initial_history: float32 [K, D, N_V] (or [K, D, N]) recorded history before bin 0,
        chronological; None = zeros.
      per_trial_stimulus: see ``stimulus``.
      clamp_until: overrides ``passes.clamp_until`` with a possibly traced value.
      remat: rematerialise the scans (long recordings).
      noise: uniform draws for some passes (``PassNoise`` or a dict with its field names),
        each given to ``network.simulate_batch(noise=...)`` of its pass in place of draws
        from the key: feeds another implementation's random numbers to every pass. A pass
        without an entry draws from its split of ``key`` as usual.
      clamped_samples: also return the visible neurons' own samples of the clamped pass
        (``PassOutputs.clamped_samples``). Their draws are the ones the pass uses (given or
        drawn from its key), so the other outputs do not change.

    Returns:
      PassOutputs.

    Raises:
      ValueError: noise for a pass that is not run, or for an unknown pass.
    """
    noise = _pass_noise(noise)
    until = passes.clamp_until if clamp_until is None else clamp_until
    run = {"clamped": bool(passes.clamped), "free": passes.free, "clamped_until": until is not None}
    extra = [name for name, given in noise._asdict().items() if given is not None and not run[name]]
    if extra:
        raise ValueError(f"run_passes: noise given for passes {extra} that are not run")
    features = encode(params, model, stimulus, per_trial_stimulus)
    clamped_key, free_key, until_key = jax.random.split(key, 3)
    common = dict(config=model.network, initial_history=initial_history, remat=remat)
    clamped = free = until_outputs = samples = None

    def draws(pass_noise, pass_key):  # simulate_batch's arguments for this pass's draws
        return dict(key=pass_key) if pass_noise is None else dict(noise=pass_noise)

    if passes.clamped:
        num_samples = None if passes.clamped == 1 else passes.clamped
        clamped_noise = noise.clamped
        if clamped_samples and clamped_noise is None:
            # The draws simulate_batch would make from this key (same call, same shape).
            shape = (recorded.shape[0],) + (() if num_samples is None else (num_samples,))
            num_bins, n = recorded.shape[1], model.network.num_neurons
            clamped_noise = jax.random.uniform(clamped_key, shape + (num_bins, n))
        clamped = network.simulate_batch(
            params.network,
            features,
            **draws(clamped_noise, clamped_key),
            recorded=recorded,
            num_samples=num_samples,
            **common,
        )
        if clamped_samples:
            visible = model.network.num_visible
            probabilities = jax.lax.stop_gradient(clamped.probabilities[..., :visible])
            samples = (jnp.asarray(clamped_noise)[..., :visible] < probabilities).astype(
                jnp.float32
            )
    if passes.free:
        free_common = dict(common, initial_history=None) if passes.free_from_zeros else common
        free = network.simulate_batch(
            params.network,
            features,
            **draws(noise.free, free_key),
            num_trials=recorded.shape[0],
            **free_common,
        )
    if until is not None:
        until_outputs = network.simulate_batch(
            params.network,
            features,
            **draws(noise.clamped_until, until_key),
            recorded=recorded,
            clamp_until=until,
            **common,
        )
    return PassOutputs(
        clamped=clamped, free=free, clamped_until=until_outputs, clamped_samples=samples
    )
