"""The settings of an experiment run, grouped by what they configure.

``ExperimentConfig`` holds the kind of data, the workdir and how the run treats it, and one
sub-config per layer: ``data`` (where the recording comes from), ``model`` (network and
encoder sizes), ``batches`` (how training batches are cut), ``objective`` (the loss),
``start`` (the data-informed initialisation), ``train`` (``train.TrainConfig``: optimiser,
schedule, evaluation cadence, checkpoints) and ``evaluation`` (the held-out report).

Every field is validated once, in its own config, and the message names the command-line
flag that sets it. ``ExperimentConfig.build(kind, workdir, **flat)`` takes the flat names of
``FLAT_NAMES`` (the flags' names), ``replace(**flat)`` changes some, and ``from_dict`` reads a
``config.json`` back (nested, or flat as runs before the nesting wrote it).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from rsnn_jax import kinds, losses, train

ESTIMATORS = ("probabilities", "spikes")


def _at_least(flag: str, value, minimum) -> None:
    if value < minimum:
        raise ValueError(f"--{flag}={value}: must be >= {minimum}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the recording comes from.

    Attributes:
      path: an HDF5 recording of the documented layout (``--data``); None → the built-in
        synthetic data set of the run's kind, generated once and cached in ``cache_dir``.
      cache_dir: where built-in data sets are cached.
      seed: seed of the built-in data set, target and recording (``--data_seed``); the
        fit's own seed is ``train.seed``, so fits with several seeds are replicates on the
        same data.
      target_hidden: built-in V1-like data: hidden neurons of the target network.
      trials: built-in data: trials per repeated movie (``--data_trials``; None: the
        generator's default).
      condition: keep only the movies whose name starts with it (e.g. "checkerboard" or
        "moving_bars" in a retina recording: the paper fits each stimulus separately);
        None keeps all.
    """

    path: str | None = None
    cache_dir: str = os.path.join(os.path.expanduser("~"), ".cache", "rsnn_jax")
    seed: int = 0
    target_hidden: int = 0
    trials: int | None = None
    condition: str | None = None

    def __post_init__(self):
        _at_least("target_hidden", self.target_hidden, 0)
        if self.trials is not None:
            _at_least("data_trials", self.trials, 1)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The fitted network and its encoder.

    Attributes:
      num_hidden: hidden neurons of the fitted network (``--hidden``).
      num_delays: D = d_max, spike-history bins (9 for 40 ms bins, 24 for the retina).
      conv_features: the CNN's filters per spatial layer ((16, 32) in the paper).
      temporal_kernel: the retina encoder's temporal receptive field (300 bins).
    """

    num_hidden: int = 0
    num_delays: int = 9
    conv_features: tuple = (16, 32)
    temporal_kernel: int = 300

    def __post_init__(self):
        _at_least("hidden", self.num_hidden, 0)
        _at_least("num_delays", self.num_delays, 1)
        _at_least("temporal_kernel", self.temporal_kernel, 1)
        if not self.conv_features or min(self.conv_features) < 1:
            raise ValueError(f"--conv_features={self.conv_features}: positive integers, e.g. 16,32")


@dataclasses.dataclass(frozen=True)
class BatchConfig:
    """How training batches are cut: K whole trials (V1) or K_m × K_t clips (retina).

    Attributes:
      batch_size: K, trials per batch (trial batches).
      clip_bins, clamp_until, num_starts, num_movies: retina clips T, T_gt, K_m, K_t
        (Table S5); T_gt is also where ``mle_single_trial_nc`` stops clamping.
    """

    batch_size: int = 20
    clip_bins: int = 80
    clamp_until: int | None = None
    num_starts: int = 30
    num_movies: int = 1

    def __post_init__(self):
        for name in ("batch_size", "clip_bins", "num_starts", "num_movies"):
            _at_least(name, getattr(self, name), 1)
        if self.clamp_until is not None and not 0 < self.clamp_until < self.clip_bins:
            raise ValueError(
                f"--clamp_until={self.clamp_until}: T_gt must be in (0, --clip_bins = "
                f"{self.clip_bins}) so that some bins are free-running"
            )


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """The training objective.

    Attributes:
      loss: a preset of ``losses.PRESETS``.
      weights: per-term weight overrides, ((term, weight), ...), terms of the preset
        (``losses.preset_terms``).
      free_from_zeros: the free pass starts from a silent history, as the official code.
      nc_mse_estimator: the nc_mse term's model side, "probabilities" (official) or
        "spikes" (less biased in gradient direction: docs/estimators.md).
    """

    loss: str = "mle"
    weights: tuple = ()
    free_from_zeros: bool = False
    nc_mse_estimator: str = "probabilities"

    def __post_init__(self):
        if self.loss not in losses.PRESETS:
            raise ValueError(
                f"--loss={self.loss}: unknown preset; choose one of {', '.join(losses.PRESETS)}"
            )
        terms = losses.preset_terms(self.loss)
        for term, weight in self.weights:
            if term not in terms:
                raise ValueError(
                    f"--weight_{term}={weight:g}: --loss={self.loss} has no {term} term; "
                    f"its terms are {', '.join(terms)}"
                )
        if self.nc_mse_estimator not in ESTIMATORS:
            raise ValueError(
                f"--nc_mse_estimator={self.nc_mse_estimator}: choose one of {', '.join(ESTIMATORS)}"
            )


@dataclasses.dataclass(frozen=True)
class StartConfig:
    """The data-informed start before the stochastic phase (docs/convergence.md).

    Attributes:
      init_biases: start each neuron at its training-data rate
        (``initialise.biases_from_rates``); False keeps the zero biases of the paper's code.
      init_temporal_filters: retina: the encoder's temporal filters start as the leading
        temporal components of the training data's spike-triggered averages.
      warm_start_iterations: L-BFGS iterations of the clamped-MLE readout solve
        (``rsnn_jax.warm_start``); 0 skips it (always skipped with hidden neurons).
      warm_start_coupling_l2: L2 penalty on the couplings between neurons in that solve.
      encoder_steps: retina: Adam steps on the clamped likelihood of single-bin clips
        scattered over the training movies (``kinds.RetinaClips.encoder_phase``), after
        the readout solve, which is then solved again; 0 skips this encoder phase.
    """

    init_biases: bool = False
    init_temporal_filters: bool = False
    warm_start_iterations: int = 0
    warm_start_coupling_l2: float = 0.0
    encoder_steps: int = 0

    def __post_init__(self):
        _at_least("warm_start_iterations", self.warm_start_iterations, 0)
        _at_least("encoder_steps", self.encoder_steps, 0)
        _at_least("warm_start_coupling_l2", self.warm_start_coupling_l2, 0)


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """The held-out report.

    Attributes:
      num_trials: simulated trials per held-out movie (``--eval_trials``; None:
        max(recorded trials, 100)).
      psth_smoothing_ms: boxcar window of the smoothed PSTH correlation (at least one bin).
    """

    num_trials: int | None = None
    psth_smoothing_ms: float = 20.0

    def __post_init__(self):
        if self.num_trials is not None:
            _at_least("eval_trials", self.num_trials, 1)


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "batches": BatchConfig,
    "objective": ObjectiveConfig,
    "start": StartConfig,
    "train": train.TrainConfig,
    "evaluation": EvaluationConfig,
}
# Flat names whose field is named otherwise in its section.
_RENAMED = {
    "data": ("data", "path"),
    "data_seed": ("data", "seed"),
    "data_trials": ("data", "trials"),
    "eval_trials": ("evaluation", "num_trials"),
}
# Every flat name (``build``, ``replace``, the flags) → (section, field).
FLAT_NAMES = {
    **{
        field.name: (section, field.name)
        for section, cls in _SECTIONS.items()
        for field in dataclasses.fields(cls)
        if (section, field.name) not in _RENAMED.values()
    },
    **_RENAMED,
}
# Settings that JSON stores as lists and the configs hold as tuples.
_TUPLES = {"weights", "conv_features", "learning_rate_scales", "weight_decay_scales"}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything an experiment run needs (plain values: saved as config.json).

    Its defaults are the paper's optimisation (zero biases, constant learning rate, no warm
    start); the experiment commands set the measured defaults (docs/convergence.md).

    Attributes:
      kind: "v1" (trial batches of a repeated movie, V1 CNN), "synthetic" (the same on a
        V1-like target with hidden neurons, reporting connectivity R²), or "retina" (clip
        batches K_m × K_t, causal temporal CNN); see ``rsnn_jax.kinds``.
      workdir: output folder.
      resume: continue from ``workdir/checkpoints/latest.msgpack``.
      overwrite: replace a run already in ``workdir`` (otherwise refused unless ``resume``).
      num_devices: data-parallel training over this many local devices (``--devices``;
        ``rsnn_jax.parallel``); 1 = no sharding, 0 = all local devices.
      data, model, batches, objective, start, train, evaluation: the sub-configs.
    """

    kind: str
    workdir: str
    resume: bool = False
    overwrite: bool = False
    num_devices: int = 1
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    batches: BatchConfig = BatchConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    start: StartConfig = StartConfig()
    train: train.TrainConfig = train.TrainConfig()
    evaluation: EvaluationConfig = EvaluationConfig()

    def __post_init__(self):
        if self.kind not in kinds.KINDS:
            raise ValueError(f"kind must be one of {tuple(kinds.KINDS)}, got {self.kind!r}")
        _at_least("devices", self.num_devices, 0)
        if self.start.init_temporal_filters and not kinds.of(self).temporal_filters:
            raise ValueError("--init_temporal_filters applies to the retina encoder only")
        if self.start.encoder_steps and not kinds.of(self).temporal_filters:
            raise ValueError("--encoder_steps applies to retina clips only")

    @classmethod
    def build(cls, kind: str, workdir: str, **flat) -> ExperimentConfig:
        """A config from flat names (``FLAT_NAMES``, the flags' names) plus ``resume``,
        ``overwrite`` and ``num_devices``.
        ``ExperimentConfig.build("v1", "runs/a", loss="mle_psth_nc", num_steps=500)``"""
        return cls(kind, workdir).replace(**flat)

    def replace(self, **flat) -> ExperimentConfig:
        """A copy with some fields changed, by flat name (``FLAT_NAMES``) or top-level name.

        Raises:
          TypeError: for a name that is no field.
        """
        top = {
            k: flat.pop(k)
            for k in list(flat)
            if k in ("kind", "workdir", "resume", "overwrite", "num_devices")
        }
        changes: dict[str, dict] = {}
        for name, value in flat.items():
            if name not in FLAT_NAMES:
                raise TypeError(f"ExperimentConfig has no setting {name!r}")
            section, field = FLAT_NAMES[name]
            changes.setdefault(section, {})[field] = value
        sections = {s: dataclasses.replace(getattr(self, s), **c) for s, c in changes.items()}
        return dataclasses.replace(self, **top, **sections)

    @classmethod
    def from_dict(cls, values: dict) -> ExperimentConfig:
        """The config of a ``config.json``: nested, or flat (written before the nesting;
        names it no longer has are ignored). Settings it lacks keep their defaults."""
        flat = {}
        for key, value in values.items():
            if key in _SECTIONS and isinstance(value, dict):
                names = {f: n for n, (s, f) in FLAT_NAMES.items() if s == key}
                flat.update({names[f]: v for f, v in value.items() if f in names})
            elif key in FLAT_NAMES or key in ("resume", "overwrite", "num_devices"):
                flat[key] = value
        for key in _TUPLES & set(flat):
            flat[key] = tuple(tuple(x) if isinstance(x, list) else x for x in flat[key])
        return cls.build(values["kind"], values["workdir"], **flat)

    def flat(self) -> dict[str, Any]:
        """Every setting by flat name (with kind, workdir, resume, overwrite, num_devices)."""
        out = {k: getattr(self, k) for k in ("kind", "workdir", "resume", "overwrite")}
        out["num_devices"] = self.num_devices
        for name, (section, field) in FLAT_NAMES.items():
            out[name] = getattr(getattr(self, section), field)
        return out
