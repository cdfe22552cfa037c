"""Loss terms: which simulation pass a loss reads, and how.

A term is a hashable frozen dataclass with ``passes`` (the simulation passes it needs,
``model.Passes``) and ``__call__(outputs, recorded) → float32 scalar``, where ``outputs`` is
``model.PassOutputs`` and ``recorded`` float32 [K, T, N_V]. Terms are static aux data of an
``Objective``, so two objectives with equal terms share a compiled step. Visible neurons are
the first ``recorded.shape[-1]`` columns of the model outputs, hidden neurons the rest.

* ``MLETerm``: the likelihood on a clamped pass (main text eq. 3; eq. 19 with hidden neurons).
* ``VisibleTerm``: a loss function of one pass's visible neurons. The built-in terms that
  differ only in data (the function, the pass, the output they read, their options) are
  instances of it, built by ``ELBOSMTerm``, ``PSTHTerm``, ``NCTerm``, ``NCShuffledTerm``,
  ``NCMSETerm`` and ``SingleTrialTerm``.
* ``SMHTerm``: the firing-rate prior of the hidden neurons (SM-h), with ``draw_partners``.
* ``SampleAndMeasureTerm``, built by ``sample_and_measure``: a user statistic (eqs. 4, 13).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rsnn_jax import statistics
from rsnn_jax.losses import functions
from rsnn_jax.losses.dissimilarities import dissimilarity as _dissimilarity
from rsnn_jax.model import Passes, PassOutputs
from rsnn_jax.network import SimulationOutputs

_SOURCES = ("clamped", "free", "clamped_until")
_VALUES = ("logits", "probabilities", "spikes")


def _check_choice(owner: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {list(choices)}, got {value!r}")


def _simulation(outputs: PassOutputs, source: str, term: Term) -> SimulationOutputs:
    simulation = getattr(outputs, source)
    if simulation is None:
        raise ValueError(
            f"{term!r} reads the {source!r} pass, which was not run: call "
            "model.run_passes(..., passes=objective.passes)"
        )
    return simulation


def _visible(x: jax.Array, recorded: jax.Array) -> jax.Array:
    """The first N_V = ``recorded.shape[-1]`` neurons of x [..., N]."""
    num_visible = recorded.shape[-1]
    if x.shape[-1] < num_visible:
        raise ValueError(
            f"model outputs have {x.shape[-1]} neurons, fewer than the {num_visible} recorded"
        )
    return x[..., :num_visible]


def _trials(x: jax.Array) -> jax.Array:
    """[K, S, T, N] → [K·S, T, N] (every sample is a simulated trial); [K, T, N] unchanged."""
    return x.reshape((-1,) + x.shape[-2:]) if x.ndim == 4 else x


def _passes(source: str, clamp_until: int | None, num_samples: int = 1) -> Passes:
    """The pass ``source`` ("clamped" with S samples, "free", "clamped_until" T_gt)."""
    if source == "clamped":
        return Passes(clamped=num_samples)
    if source == "free":
        return Passes(free=True)
    return Passes(clamp_until=clamp_until)


@dataclasses.dataclass(frozen=True)
class Term:
    """A loss term: reads some simulation passes and returns a float32 scalar.

    Subclasses are frozen (hashable) dataclasses: they live in an ``Objective``'s static aux
    data, so two objectives with equal terms share a compiled step.
    """

    @property
    def passes(self) -> Passes:
        """The simulation passes this term needs."""
        raise NotImplementedError

    def __call__(self, outputs: PassOutputs, recorded: jax.Array) -> jax.Array:
        """Args: outputs of ``model.run_passes``; recorded float32 [K, T, N_V]. → scalar."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class MLETerm(Term):
    """MLE (no hidden neurons) or ELBO (eq. 19, hidden neurons sampled) on a clamped pass.

    Attributes:
      num_samples: S simulations per clamping condition; eq. 19 is averaged over them.
      clamp_until: if set (T_gt), read the pass clamped until T_gt and use only the bins
        t < T_gt (retina ``mle_single_trial_nc``); their logits equal those of a fully
        clamped pass, so no separate clamped pass is run.
    """

    num_samples: int = 1
    clamp_until: int | None = None

    @property
    def passes(self) -> Passes:
        if self.clamp_until is not None:
            return Passes(clamp_until=self.clamp_until)
        return Passes(clamped=self.num_samples)

    def __call__(self, outputs, recorded):
        recorded = statistics.as_signal(recorded, "recorded")
        if self.clamp_until is None:
            logits = _simulation(outputs, "clamped", self).logits
            return functions.mle_loss(recorded, _visible(logits, recorded))
        if self.clamp_until < 1:
            raise ValueError("MLETerm: clamp_until must be >= 1 (no clamped bin otherwise)")
        logits = _simulation(outputs, "clamped_until", self).logits
        until = self.clamp_until
        return functions.mle_loss(recorded[:, :until], _visible(logits, recorded)[..., :until, :])


@dataclasses.dataclass(frozen=True)
class VisibleTerm(Term):
    """``loss(recorded, x, **options)`` on the visible neurons x of one simulation pass.

    Attributes:
      loss: a loss function (recorded float32 [K, T, N_V], x, **options) → float32 scalar;
        hashable (a module-level function such as ``functions.psth_loss``).
      source: the pass read, "free", "clamped" or "clamped_until".
      value: the output of the visible neurons passed as x: "logits" β ũ, "probabilities"
        σ(β ũ) or straight-through "spikes"; [K, T, N_V], or [K, S, T, N_V] from a clamped
        pass with S > 1 samples per condition.
      options: the loss's keyword arguments, ((name, value), ...) so that the term hashes.
      num_samples: S simulations per clamping condition (``source="clamped"``).
      clamp_until: T_gt (``source="clamped_until"``).
    """

    loss: Callable[..., jax.Array]
    source: str = "free"
    value: str = "logits"
    options: tuple[tuple[str, Any], ...] = ()
    num_samples: int = 1
    clamp_until: int | None = None

    def __post_init__(self):
        _check_choice("VisibleTerm", "source", self.source, _SOURCES)
        _check_choice("VisibleTerm", "value", self.value, _VALUES)
        if self.source == "clamped_until" and self.clamp_until is None:
            raise ValueError("VisibleTerm: source='clamped_until' needs clamp_until=")

    def __repr__(self) -> str:
        options = "".join(f", {name}={value!r}" for name, value in self.options)
        return f"VisibleTerm({self.loss.__name__}, {self.source}, {self.value}{options})"

    @property
    def passes(self) -> Passes:
        return _passes(self.source, self.clamp_until, self.num_samples)

    def __call__(self, outputs, recorded):
        x = getattr(_simulation(outputs, self.source, self), self.value)
        return self.loss(recorded, _visible(x, recorded), **dict(self.options))


# The built-in terms: one function each, named as the term kinds of the paper.


def ELBOSMTerm(num_samples: int = 2) -> VisibleTerm:
    """ELBO-SM (appendix D eq. 20, ``functions.elbo_sm_loss``) on S ≥ 1 clamped samples per
    condition."""
    return VisibleTerm(functions.elbo_sm_loss, "clamped", num_samples=num_samples)


def PSTHTerm(dissimilarity: str = "ce") -> VisibleTerm:
    """PSTH loss (main text eq. 5, ``functions.psth_loss``) on the free pass; "mse" is the official
    ``psth_loss_MSE``."""
    _check_choice("PSTHTerm", "dissimilarity", dissimilarity, ("ce", "mse"))
    return VisibleTerm(functions.psth_loss, options=(("dissimilarity", dissimilarity),))


def NCTerm() -> VisibleTerm:
    """Noise-correlation loss (appendix D eq. 12, ``functions.nc_loss``) on the free pass."""
    return VisibleTerm(functions.nc_loss)


def NCShuffledTerm(shift: int = 1) -> VisibleTerm:
    """``functions.nc_shuffled_loss`` (appendix D, NC-shuffled) with trial offset ``shift``,
    free pass."""
    return VisibleTerm(functions.nc_shuffled_loss, options=(("shift", shift),))


def NCMSETerm(
    num_delays: int = 9, wrap: bool = False, estimator: str = "probabilities"
) -> VisibleTerm:
    """Official ``NoiseCorr_loss_MSE`` (``functions.nc_mse_loss``) on the free pass.

    Args:
      num_delays: D, delays 0..D−1 (the network's d_max in the official code).
      wrap: time wrap-around as the official ``tf.roll`` (default False, see
        ``functions.nc_mse_loss``).
      estimator: the model side, "probabilities" (official) or straight-through "spikes".
    """
    _check_choice("NCMSETerm", "estimator", estimator, ("probabilities", "spikes"))
    options = (("num_delays", int(num_delays)), ("wrap", bool(wrap)))
    return VisibleTerm(functions.nc_mse_loss, value=estimator, options=options)


def SingleTrialTerm(clamp_until: int) -> VisibleTerm:
    """Single-trial loss (appendix D eq. 14, ``functions.single_trial_loss``) on the pass
    clamped until T_gt = ``clamp_until``. It must equal the T_gt of the pass: do not override
    ``run_passes(clamp_until=...)`` with another value."""
    options = (("clamp_until", clamp_until),)
    return VisibleTerm(
        functions.single_trial_loss, "clamped_until", options=options, clamp_until=clamp_until
    )


@dataclasses.dataclass(frozen=True)
class SMHTerm(Term):
    """Firing-rate prior of the hidden neurons (SM-h), paper or official variant.

    Paper variant (``partners`` set): hidden neuron i's target is the mean rate, over the
    batch's recorded trials and bins, of visible neuron ``partners[i]`` (drawn once at random,
    see ``draw_partners``); CE against the model rate (``functions.sm_h_loss``). Official variant
    (``target_rate`` set): MSE to a fixed rate, on spikes (``sm_h_official_loss``).

    Attributes:
      partners: tuple of N_H visible indices, or None.
      target_rate: fixed target rate per bin (official 0.17), or None.
      dissimilarity: "ce" or "mse".
      estimator: "probabilities" (unbiased for a mean rate, gradient exact given the sampled
        history, docs/estimators.md) or "spikes"
        (straight-through samples, as the official code).
      source: the pass to read, "free", "clamped" or "clamped_until" (the official code
        uses the free pass when one is run and the clamped one otherwise).
      clamp_until: T_gt when ``source == "clamped_until"``.
    """

    partners: tuple[int, ...] | None = None
    target_rate: float | None = None
    dissimilarity: str = "ce"
    estimator: str = "probabilities"
    source: str = "free"
    clamp_until: int | None = None

    def __post_init__(self):
        if (self.partners is None) == (self.target_rate is None):
            raise ValueError("SMHTerm: pass exactly one of partners= and target_rate=")
        _check_choice("SMHTerm", "dissimilarity", self.dissimilarity, ("ce", "mse"))
        _check_choice("SMHTerm", "estimator", self.estimator, ("probabilities", "spikes"))
        _check_choice("SMHTerm", "source", self.source, _SOURCES)

    @property
    def passes(self) -> Passes:
        return _passes(self.source, self.clamp_until)

    def __call__(self, outputs, recorded):
        recorded = statistics.as_signal(recorded, "recorded")
        simulation = _simulation(outputs, self.source, self)
        num_visible = recorded.shape[-1]
        logits = simulation.logits[..., num_visible:]
        num_hidden = logits.shape[-1]
        if self.partners is not None:
            if len(self.partners) != num_hidden:
                raise ValueError(
                    f"SMHTerm: {len(self.partners)} partners for {num_hidden} hidden neurons"
                )
            targets = statistics.mean_rate(recorded)[np.asarray(self.partners)]
        else:
            targets = jnp.full((num_hidden,), self.target_rate, logits.dtype)
        if self.estimator == "probabilities" and self.dissimilarity == "ce":
            return functions.sm_h_loss(targets, logits, "ce")
        model = (
            jax.nn.sigmoid(logits)
            if self.estimator == "probabilities"
            else simulation.spikes[..., num_visible:]
        )
        rates = jnp.mean(model.reshape(-1, num_hidden), axis=0)
        return _dissimilarity(self.dissimilarity)(targets, rates)


def draw_partners(num_visible: int, num_hidden: int, seed: int) -> tuple[int, ...]:
    """The visible partner of each hidden neuron for SM-h, drawn uniformly with replacement.

    Reproducible: the same (num_visible, num_hidden, seed) gives the same partners.

    Returns:
      tuple of ``num_hidden`` ints in [0, num_visible).
    """
    rng = np.random.default_rng(seed)
    return tuple(int(j) for j in rng.integers(0, num_visible, size=num_hidden))


@dataclasses.dataclass(frozen=True)
class SampleAndMeasureTerm(Term):
    """Generic sample-and-measure term (eqs. 4, 13) with a user statistic; see
    ``sample_and_measure``."""

    statistic: Callable[[jax.Array], Any]
    dissimilarity: str | Callable[[Any, Any], jax.Array] = "mse"
    estimator: str = "probabilities"
    source: str = "free"
    clamp_until: int | None = None

    def __post_init__(self):
        _dissimilarity(self.dissimilarity)
        _check_choice(
            "sample_and_measure", "estimator", self.estimator, ("probabilities", "spikes")
        )
        _check_choice("sample_and_measure", "source", self.source, _SOURCES)
        if self.source == "clamped_until" and self.clamp_until is None:
            raise ValueError("sample_and_measure: source='clamped_until' needs clamp_until=")

    @property
    def passes(self) -> Passes:
        return _passes(self.source, self.clamp_until)

    def __call__(self, outputs, recorded):
        model = getattr(_simulation(outputs, self.source, self), self.estimator)
        model = _trials(_visible(model, recorded))
        return functions.sample_and_measure_loss(
            self.statistic, recorded, model, self.dissimilarity
        )


def sample_and_measure(
    statistic: Callable[[jax.Array], Any],
    dissimilarity: str | Callable[[Any, Any], jax.Array] = "mse",
    *,
    estimator: str = "probabilities",
    source: str = "free",
    clamp_until: int | None = None,
) -> SampleAndMeasureTerm:
    """A loss term d(T(z^D), T̂_φ) for any user statistic T (eq. 4; eq. 13 with clamping).

    ``statistic`` is applied to the recorded spikes [K, T, N_V] and to the model's visible
    neurons of the chosen pass; ``jax.grad`` of an objective flows through it.

    Which Monte-Carlo estimate to use: with ``estimator="probabilities"`` the model side is
    T(p). It is unbiased (E[T(z)] = E[T(p)]) when T is an average over bins of functions
    multilinear in one bin's spikes (PSTH, rates, coincidences i ≠ j,
    ``statistics.population_count_distribution``); its gradient is exact through p given the
    sampled history only, which on the audited networks (docs/estimators.md) keeps it within
    cosine 0.99 of the exact gradient with a 6–17 % relative error. Otherwise use
    ``estimator="spikes"``: T(z) on straight-through samples, unbiased for any T, with
    surrogate gradients (relative error 0.5–0.9 in the audit; zero where p < 0.27). For
    trial-mean-centred statistics T(p) can point the gradient uphill (``functions.nc_mse_loss``).
    ``estimators.score_function_term`` is the unbiased (slow) alternative with the same
    arguments.

    Args:
      statistic: T, a function from float32 [K, T, N_V] to a pytree of arrays. It must be
        hashable (a plain function is); it becomes static data of the objective.
      dissimilarity: "mse", "ce" (clipped, on statistics in [0, 1]) or a function
        (data_stats, model_stats) → scalar.
      estimator: "probabilities" or "spikes".
      source: pass to read: "free", "clamped" (visible neurons then equal the data, so only
        hidden-dependent statistics are informative) or "clamped_until".
      clamp_until: T_gt with ``source="clamped_until"``.

    Returns:
      A ``SampleAndMeasureTerm`` to put in an objective (``compose``).

    References:
      Main text eq. 4; appendix D eq. 13.
    """
    return SampleAndMeasureTerm(statistic, dissimilarity, estimator, source, clamp_until)
