"""What differs between the experiments' kinds of data: one object per kind.

* ``RepeatedTrials`` ("v1", "synthetic"): whole trials of one repeated training movie in
  batches of K (``--batch_size``), the V1 encoder (a spatial CNN on stacked frames), the
  validation trials of one movie, and the built-in V1-like data set ("synthetic": the same
  with the loss weights of Table S3, a target that may have hidden neurons, and
  connectivity R² in the report).
* ``RetinaClips`` ("retina"): batches of K_m × K_t clips of T bins cut from the training
  movies, the retina encoder (causal temporal convolution, then a spatial CNN), validation
  clips of stimulus the fit never trains on, and the built-in retina-like data set.

``experiment.run_experiment`` asks the kind of its config (``of(config)``) for each of
these and never tests the kind's name itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from rsnn_jax import encoders, synthetic
from rsnn_jax.data import batching, recording

# Built-in retina-like data: seconds of unrepeated training and validation stimulus per
# condition (the paper trained on 1080 s unrepeated + 600 s repeated).
RETINA_UNREPEATED_S = 300.0
RETINA_VALIDATION_S = 20.0
# Retina model selection uses this many batches of clips (one batch of 30 clips is a noisy
# estimate of the validation loss), the warm start this many training batches.
_RETINA_VALIDATION_BATCHES = 4
_RETINA_WARM_START_BATCHES = 20
# The retina encoder phase's batch: single-bin clips, each a different stimulus window (a
# batch of 30 clips of 80 bins holds about 120 distinct checkerboard frames).
ENCODER_PHASE_CLIPS = 2400


class RunError(ValueError):
    """A setting that does not fit the data or the workdir (the command line prints it as
    one line, exit code 2)."""


def heldout_batches(data: recording.Recording, model, split: str) -> dict[str, batching.Batch]:
    """Whole-movie batches (shared stimulus) of every movie with trials in ``split``."""
    out = {}
    for movie, trials in data.splits.get(split, {}).items():
        if len(trials):
            out[movie] = batching.make_trial_batch(
                data,
                movie,
                trials,
                receptive_field=model.receptive_field,
                num_delays=model.network.num_delays,
            )
    return out


def concatenate(batches: Iterator[batching.Batch], num_trials: int) -> batching.Batch:
    """The first batches of ``batches`` joined on the trial axis, at least ``num_trials``."""
    chosen = []
    while sum(len(b.spikes) for b in chosen) < num_trials:
        chosen.append(next(batches))
    return batching.Batch(*(np.concatenate(parts) for parts in zip(*chosen)))


def _single_movie(data: recording.Recording, split: str) -> str:
    movies = [name for name, trials in data.splits.get(split, {}).items() if len(trials)]
    if len(movies) != 1:
        raise RunError(
            f"split {split!r} must use exactly one movie for trial batches, got {movies}"
        )
    return movies[0]


@dataclasses.dataclass(frozen=True)
class RepeatedTrials:
    """Trial batches of one repeated movie ("v1", "synthetic")."""

    name: str
    temporal_filters = False  # the V1 encoder has no temporal filters to initialise

    @property
    def objective_dataset(self) -> str:
        """``losses.make_objective``'s ``dataset``: the default weights of the presets."""
        return "synthetic" if self.name == "synthetic" else "v1"

    def encoder(self, config):
        return encoders.V1Encoder(features=tuple(config.model.conv_features))

    def batch_trials(self, config) -> tuple[int, str]:
        """Trials per training batch, and the flag that sets it."""
        return config.batches.batch_size, "--batch_size"

    def check(self, config, data: recording.Recording) -> None:
        """Raises ``RunError`` when the settings do not fit the data."""
        movie = _single_movie(data, "train")
        available = len(data.trials("train", movie))
        if config.batches.batch_size > available:
            raise RunError(
                f"--batch_size={config.batches.batch_size}: larger than the {available} training "
                f"trials of movie {movie!r}"
            )

    def training_batches(self, config, data, model, position: int) -> Iterator[batching.Batch]:
        """Training batches from batch number ``position`` on (the same after a resume)."""
        movie = _single_movie(data, "train")
        trials = batching.TrialBatcher(
            data.trials("train", movie), config.batches.batch_size, config.train.seed, position
        )
        for chosen in trials:
            yield batching.make_trial_batch(
                data,
                movie,
                chosen,
                receptive_field=model.receptive_field,
                num_delays=config.model.num_delays,
            )

    def validation_batch(self, config, data, model) -> batching.Batch | None:
        """The validation trials of one movie (None without validation trials)."""
        return next(iter(heldout_batches(data, model, "validation").values()), None)

    def warm_start_batch(self, config, data, model) -> batching.Batch:
        """Every training trial, as one batch."""
        return next(iter(heldout_batches(data, model, "train").values()))

    def builtin_name(self, config) -> str:
        trials = "" if config.data.trials is None else f"_k{config.data.trials}"
        # Bump the version when the generator's defaults change: old caches are not reused.
        return f"v1_like_h{config.data.target_hidden}{trials}_seed{config.data.seed}_v3.h5"

    def generate(self, config) -> recording.Recording:
        """The built-in V1-like data set of ``config`` (its target has ``target_hidden``
        hidden neurons)."""
        kwargs = {}
        if config.data.trials is not None:
            # The pvc-11 proportions: 2/3 train, 1/4 test, the rest validation.
            n = config.data.trials
            kwargs = dict(num_trials=n, split=(2 * n // 3, n // 4, n - 2 * n // 3 - n // 4))
        return synthetic.make_v1_like(
            config.data.seed, num_hidden=config.data.target_hidden, **kwargs
        )


@dataclasses.dataclass(frozen=True)
class RetinaClips:
    """Clip batches of the retina's movies ("retina")."""

    name: str = "retina"
    objective_dataset: str = "v1"
    temporal_filters = True  # ``--init_temporal_filters`` applies

    def encoder(self, config):
        return encoders.RetinaEncoder(
            temporal_kernel=config.model.temporal_kernel, features=tuple(config.model.conv_features)
        )

    def batch_trials(self, config) -> tuple[int, str]:
        return config.batches.num_starts * config.batches.num_movies, "--num_starts × --num_movies"

    def check(self, config, data: recording.Recording) -> None:
        """Clip counts are checked when the clips are cut (``batching.ClipBatcher``)."""

    def _clips(self, config, data, model, split: str, seed: int, position: int):
        context = batching.first_usable_bin(model.receptive_field, config.model.num_delays)
        clips = batching.ClipBatcher.from_recording(
            data,
            split,
            config.batches.clip_bins,
            context,
            config.batches.num_starts,
            config.batches.num_movies,
            seed,
            position,
        )
        for chosen in clips:
            yield batching.make_clip_batch(
                data,
                chosen,
                clip_bins=config.batches.clip_bins,
                receptive_field=model.receptive_field,
                num_delays=config.model.num_delays,
            )

    def training_batches(self, config, data, model, position: int) -> Iterator[batching.Batch]:
        """Training batches of clips from batch number ``position`` on."""
        return self._clips(config, data, model, "train", config.train.seed, position)

    def validation_batch(
        self, config, data, model, num_batches: int = _RETINA_VALIDATION_BATCHES
    ) -> batching.Batch | None:
        """Fixed clips of the validation stimulus, ``num_batches`` training batches' worth
        (None without validation trials)."""
        if not any(len(t) for t in data.splits.get("validation", {}).values()):
            return None
        clips = self._clips(config, data, model, "validation", config.train.seed + 1, 0)
        return concatenate(clips, num_batches * self.batch_trials(config)[0])

    def encoder_phase(self, config):
        """The config of the encoder phase (``--encoder_steps``): the clamped likelihood
        alone on ``ENCODER_PHASE_CLIPS`` single-bin clips per step, each from its own
        position in the training movies, with the run's optimiser settings."""
        return config.replace(
            loss="mle",
            weights=(),
            clip_bins=1,
            clamp_until=None,
            num_starts=ENCODER_PHASE_CLIPS,
            num_movies=1,
            num_steps=config.start.encoder_steps,
            patience=None,
        )

    def warm_start_batch(self, config, data, model) -> batching.Batch:
        """The clips of the first training batches (600 clips at K_m = 30, K_t = 1)."""
        clips = self.training_batches(config, data, model, 0)
        return concatenate(clips, _RETINA_WARM_START_BATCHES * self.batch_trials(config)[0])

    def builtin_name(self, config) -> str:
        trials = "" if config.data.trials is None else f"_k{config.data.trials}"
        return f"retina_like_h0{trials}_seed{config.data.seed}_v4.h5"

    def generate(self, config) -> recording.Recording:
        """The built-in retina-like data set: minutes of unrepeated stimulus, so that the
        stimulus filter can be learned, and a stretch of new stimulus for model selection."""
        kwargs = {} if config.data.trials is None else {"num_repeats": config.data.trials}
        return synthetic.make_retina_like(
            config.data.seed,
            unrepeated_s=RETINA_UNREPEATED_S,
            validation_s=RETINA_VALIDATION_S,
            **kwargs,
        )


KINDS = {
    "v1": RepeatedTrials("v1"),
    "synthetic": RepeatedTrials("synthetic"),
    "retina": RetinaClips(),
}


def of(config):
    """The kind object of ``config.kind``."""
    return KINDS[config.kind]
