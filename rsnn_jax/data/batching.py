"""Batches of trials and clips, deterministic for a seed and resumable from a position.

Time alignment (one stimulus frame per bin, see ``recording``): an encoder with receptive
field R needs frames t − R + 1 .. t for bin t, and the network needs the D recorded bins
before its first bin as spike history. A batch whose first bin is s therefore reads frames
``s − R + 1 .. s + T − 1`` (``T + R − 1`` frames) and history bins ``s − D .. s − 1``; the
first usable bin of a movie is ``first_usable_bin(R, D) = max(R − 1, D)``. For V1 (650
bins, R = 10, D = 9) a full-length batch covers bins 9..649 (T = 641), its clip is frames
0..649 and its history bins 0..8.

Two sampling schemes:

* ``TrialBatcher`` — the paper's V1 scheme (official ``DataLoader``): the training trials of a
  repeated movie are permuted once per epoch and cut into batches without replacement; a new
  permutation starts the next epoch. Every batch uses the whole movie.
* ``ClipBatcher`` — the retina scheme of Table S5: a batch of K = K_m × K_t clips of T bins,
  K_t movie presentations (movie, trial) × K_m start times each.

Both are pure functions of ``(seed, position)`` — ``batch(position)`` — wrapped in an
iterator whose ``position`` counts the batches drawn: a new batcher built with the same
arguments and ``position`` continues identically (checkpoint the position to resume).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np


def first_usable_bin(receptive_field: int, num_delays: int) -> int:
    """The first bin that has R − 1 frames of stimulus context and D bins of history."""
    return max(int(receptive_field) - 1, int(num_delays))


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *map(int, keys)])


class TrialBatcher:
    """Trial batches without replacement, re-permuted each epoch (the paper's V1 scheme).

    Epoch e uses the permutation drawn from ``(seed, e)``; its batches are consecutive slices.
    With ``drop_remainder`` (default, as the official code) the ``len(trials) % batch_size``
    trials left at the end of an epoch's permutation are skipped that epoch (every batch has
    the same shape, so a jitted step does not recompile); otherwise the epoch ends with one
    smaller batch and covers every trial exactly once.

    Args:
      trials: int [n] trial indices to draw from (e.g. ``recording.trials('train', movie)``).
      batch_size: trials per batch, 1 ≤ batch_size ≤ n.
      seed: non-negative int.
      position: number of batches already drawn (to resume).
      drop_remainder: see above.

    Iterating yields int64 [batch_size] arrays and advances ``position``.
    """

    def __init__(
        self,
        trials: np.ndarray,
        batch_size: int,
        seed: int,
        position: int = 0,
        *,
        drop_remainder: bool = True,
    ):
        self.trials = np.asarray(trials, np.int64).reshape(-1)
        if not 1 <= batch_size <= len(self.trials):
            raise ValueError(
                f"TrialBatcher: batch_size must be in [1, {len(self.trials)}] (the number of "
                f"trials), got {batch_size}"
            )
        if position < 0:
            raise ValueError(f"TrialBatcher: position must be >= 0, got {position}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.position = int(position)
        self.drop_remainder = drop_remainder

    @property
    def batches_per_epoch(self) -> int:
        n, b = len(self.trials), self.batch_size
        return n // b if self.drop_remainder else -(-n // b)

    @property
    def epoch(self) -> int:
        """The epoch the next batch belongs to."""
        return self.position // self.batches_per_epoch

    def permutation(self, epoch: int) -> np.ndarray:
        """int64 [n], the order of the trials in ``epoch``."""
        return _rng(self.seed, epoch).permutation(self.trials)

    def batch(self, position: int) -> np.ndarray:
        """int64 [≤ batch_size], the batch drawn at ``position`` (pure)."""
        epoch, index = divmod(int(position), self.batches_per_epoch)
        start = index * self.batch_size
        return self.permutation(epoch)[start : start + self.batch_size]

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        batch = self.batch(self.position)
        self.position += 1
        return batch


class Clips(NamedTuple):
    """K clips: clip k is bins ``starts[k] .. starts[k] + T − 1`` of trial ``trials[k]`` of
    movie ``movies[k]``. Ordered presentation-major: k = i_t · K_m + i_m.

    Attributes:
      movies: tuple of K movie names.
      trials: int64 [K].
      starts: int64 [K], first bin of each clip (≥ the batcher's ``context``).
    """

    movies: tuple[str, ...]
    trials: np.ndarray
    starts: np.ndarray


class ClipBatcher:
    """K_m start times × K_t movie presentations per batch (the retina scheme, Table S5).

    A presentation is one trial of one movie (the single trial of an unrepeated movie, or
    one repeat of a repeated movie). Each batch draws K_t distinct presentations (with
    replacement only if there are fewer than K_t), each with probability proportional to its
    number of usable start bins — so the batch is uniform over the data's time, whatever the
    mix of long unrepeated and short repeated movies — and for each of them K_m start times
    uniformly in ``[context, num_bins − clip_bins]`` (distinct when possible). A clip never
    reads before bin 0 (``start − context ≥ 0``) nor past the end of its movie
    (``start + clip_bins ≤ num_bins``). Movies too short for one clip are skipped.

    Args:
      movies: movie name → (trials, num_bins), trials being a count (trials 0..n − 1) or an
        int array of trial indices (e.g. a split's).
      clip_bins: T, bins per clip.
      context: bins needed before the first bin: ``first_usable_bin(R, D)``.
      num_starts: K_m.
      num_movies: K_t.
      seed: non-negative int.
      position: number of batches already drawn (to resume).

    Iterating yields ``Clips`` with K = K_m × K_t entries and advances ``position``.
    """

    def __init__(
        self,
        movies: Mapping[str, tuple],
        clip_bins: int,
        context: int,
        num_starts: int,
        num_movies: int,
        seed: int,
        position: int = 0,
    ):
        if clip_bins < 1 or context < 0 or num_starts < 1 or num_movies < 1:
            raise ValueError(
                "ClipBatcher: need clip_bins >= 1, context >= 0, num_starts >= 1, "
                f"num_movies >= 1; got {clip_bins}, {context}, {num_starts}, {num_movies}"
            )
        if position < 0:
            raise ValueError(f"ClipBatcher: position must be >= 0, got {position}")
        self.clip_bins, self.context = int(clip_bins), int(context)
        self.num_starts, self.num_movies = int(num_starts), int(num_movies)
        self.seed, self.position = int(seed), int(position)
        names, trials, lengths = [], [], []
        for name, (movie_trials, num_bins) in movies.items():
            movie_trials = (
                np.arange(movie_trials)
                if np.ndim(movie_trials) == 0
                else np.asarray(movie_trials, np.int64).reshape(-1)
            )
            if int(num_bins) - self.clip_bins - self.context + 1 < 1:
                continue
            for trial in movie_trials:
                names.append(name)
                trials.append(int(trial))
                lengths.append(int(num_bins))
        if not names:
            raise ValueError(
                f"ClipBatcher: no movie has the {self.context} + {self.clip_bins} bins a clip "
                "needs (context + clip_bins)"
            )
        self.presentations = tuple(zip(names, trials))
        self._lengths = np.asarray(lengths, np.int64)
        usable = self._lengths - self.clip_bins - self.context + 1
        self._probabilities = usable / usable.sum()

    @classmethod
    def from_recording(
        cls,
        recording,
        split: str,
        clip_bins: int,
        context: int,
        num_starts: int,
        num_movies: int,
        seed: int,
        position: int = 0,
    ) -> ClipBatcher:
        """A batcher over the trials that ``split`` assigns to each movie of ``recording``."""
        movies = {
            name: (trials, recording.spikes[name].shape[1])
            for name, trials in recording.splits[split].items()
            if len(trials)
        }
        return cls(movies, clip_bins, context, num_starts, num_movies, seed, position)

    def batch(self, position: int) -> Clips:
        """The clips drawn at ``position`` (pure)."""
        rng = _rng(self.seed, position)
        count = len(self.presentations)
        chosen = rng.choice(
            count,
            size=self.num_movies,
            replace=self.num_movies > count,
            p=self._probabilities,
        )
        movies, trials, starts = [], [], []
        for index in chosen:
            name, trial = self.presentations[index]
            num_usable = int(self._lengths[index]) - self.clip_bins - self.context + 1
            offsets = rng.choice(
                num_usable, size=self.num_starts, replace=self.num_starts > num_usable
            )
            movies += [name] * self.num_starts
            trials += [trial] * self.num_starts
            starts.append(self.context + np.sort(offsets))
        return Clips(
            movies=tuple(movies),
            trials=np.asarray(trials, np.int64),
            starts=np.concatenate(starts).astype(np.int64),
        )

    def __iter__(self):
        return self

    def __next__(self) -> Clips:
        clips = self.batch(self.position)
        self.position += 1
        return clips


class Batch(NamedTuple):
    """One training batch, ready for ``model.run_passes``.

    Attributes:
      stimulus: float32 [T + R − 1, H, W], shared by all trials (trial batches of one
        movie), or [K, T + R − 1, H, W], one clip per trial (clip batches): pass
        ``per_trial_stimulus=batch.per_trial_stimulus``.
      spikes: float32 [K, T, N] in {0, 1}, the recorded spikes of the batch's bins.
      history: float32 [K, D, N], the D recorded bins before the first bin, chronological
        (row D − 1 is the bin just before it): ``initial_history`` of ``run_passes``.
    """

    stimulus: np.ndarray
    spikes: np.ndarray
    history: np.ndarray

    @property
    def per_trial_stimulus(self) -> bool:
        """Whether ``stimulus`` has a leading trial axis."""
        return self.stimulus.ndim == 4


def _window(num_frames: int, start: int, num_bins: int, receptive_field: int, num_delays: int):
    first = first_usable_bin(receptive_field, num_delays)
    if start < first or start + num_bins > num_frames or num_bins < 1:
        raise ValueError(
            f"bins {start}..{start + num_bins - 1} need frames from {start - receptive_field + 1}"
            f" and history from {start - num_delays}, within a movie of {num_frames} bins "
            f"(first usable bin {first})"
        )


def make_trial_batch(
    recording,
    movie: str,
    trials: np.ndarray,
    *,
    receptive_field: int,
    num_delays: int,
    first_bin: int | None = None,
    num_bins: int | None = None,
) -> Batch:
    """A batch of whole trials of one movie with a shared stimulus (the V1 scheme).

    Args:
      recording: a ``Recording``.
      movie: movie name.
      trials: int [K] trial indices.
      receptive_field: R of the encoder.
      num_delays: D of the network.
      first_bin: first bin; default ``first_usable_bin(R, D)``.
      num_bins: T; default up to the end of the movie.

    Returns:
      Batch(stimulus [T + R − 1, H, W], spikes [K, T, N], history [K, D, N]).
    """
    spikes = recording.spikes[movie]
    num_frames = spikes.shape[1]
    start = first_usable_bin(receptive_field, num_delays) if first_bin is None else first_bin
    length = num_frames - start if num_bins is None else num_bins
    _window(num_frames, start, length, receptive_field, num_delays)
    trials = np.asarray(trials, np.int64)
    selected = spikes[trials]
    return Batch(
        stimulus=np.asarray(
            recording.stimuli[movie][start - receptive_field + 1 : start + length], np.float32
        ),
        spikes=selected[:, start : start + length].astype(np.float32),
        history=selected[:, start - num_delays : start].astype(np.float32),
    )


def make_clip_batch(
    recording, clips: Clips, *, clip_bins: int, receptive_field: int, num_delays: int
) -> Batch:
    """A batch of clips with one stimulus clip per trial (the retina scheme).

    Args:
      recording: a ``Recording``.
      clips: from ``ClipBatcher`` (built with ``context >= first_usable_bin(R, D)``).
      clip_bins: T.
      receptive_field: R of the encoder.
      num_delays: D of the network.

    Returns:
      Batch(stimulus [K, T + R − 1, H, W], spikes [K, T, N], history [K, D, N]).
    """
    stimuli, spikes, histories = [], [], []
    for movie, trial, start in zip(clips.movies, clips.trials.tolist(), clips.starts.tolist()):
        movie_spikes = recording.spikes[movie]
        _window(movie_spikes.shape[1], start, clip_bins, receptive_field, num_delays)
        stimuli.append(recording.stimuli[movie][start - receptive_field + 1 : start + clip_bins])
        spikes.append(movie_spikes[trial, start : start + clip_bins])
        histories.append(movie_spikes[trial, start - num_delays : start])
    return Batch(
        stimulus=np.stack(stimuli).astype(np.float32),
        spikes=np.stack(spikes).astype(np.float32),
        history=np.stack(histories).astype(np.float32),
    )


def make_batch(
    recording,
    *,
    receptive_field: int,
    num_delays: int,
    movie: str | None = None,
    trials: np.ndarray | None = None,
    clips: Clips | None = None,
    clip_bins: int | None = None,
    first_bin: int | None = None,
    num_bins: int | None = None,
) -> Batch:
    """``make_trial_batch`` (``movie`` and ``trials``) or ``make_clip_batch`` (``clips`` and
    ``clip_bins``); ``Batch.per_trial_stimulus`` tells which layout the stimulus has."""
    if clips is not None:
        if movie is not None or trials is not None or clip_bins is None:
            raise ValueError("make_batch: pass clips= with clip_bins=, or movie= with trials=")
        return make_clip_batch(
            recording,
            clips,
            clip_bins=clip_bins,
            receptive_field=receptive_field,
            num_delays=num_delays,
        )
    if movie is None or trials is None:
        raise ValueError("make_batch: pass clips= with clip_bins=, or movie= with trials=")
    return make_trial_batch(
        recording,
        movie,
        trials,
        receptive_field=receptive_field,
        num_delays=num_delays,
        first_bin=first_bin,
        num_bins=num_bins,
    )
