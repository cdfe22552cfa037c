"""Batchers: coverage per epoch, bounds, determinism, resumption; batches' time alignment."""

import itertools

import jax
import numpy as np
import pytest

from rsnn_jax import encoders, model, network
from rsnn_jax.data import batching
from rsnn_jax.data.recording import Recording


def test_trial_batches_cover_every_trial_once_per_epoch():
    trials = np.arange(100, 112)
    batcher = batching.TrialBatcher(trials, batch_size=4, seed=3)
    assert batcher.batches_per_epoch == 3
    epochs = []
    for _ in range(4):
        epoch = [next(batcher) for _ in range(3)]
        assert all(len(b) == 4 for b in epoch)
        flat = np.concatenate(epoch)
        np.testing.assert_array_equal(np.sort(flat), trials)  # each trial exactly once
        epochs.append(flat)
    assert batcher.position == 12 and batcher.epoch == 4
    assert not all(np.array_equal(epochs[0], e) for e in epochs[1:])  # re-permuted


def test_trial_batcher_remainder():
    dropped = batching.TrialBatcher(np.arange(10), batch_size=4, seed=0)
    assert dropped.batches_per_epoch == 2
    epoch = np.concatenate([next(dropped) for _ in range(2)])
    assert len(np.unique(epoch)) == 8  # without replacement; 2 trials skipped this epoch
    kept = batching.TrialBatcher(np.arange(10), batch_size=4, seed=0, drop_remainder=False)
    epoch = [next(kept) for _ in range(kept.batches_per_epoch)]
    assert [len(b) for b in epoch] == [4, 4, 2]
    np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(10))
    with pytest.raises(ValueError, match="batch_size"):
        batching.TrialBatcher(np.arange(3), batch_size=4, seed=0)


def test_trial_batcher_is_deterministic_and_resumable():
    drawn = list(itertools.islice(batching.TrialBatcher(np.arange(20), 5, seed=7), 11))
    again = list(itertools.islice(batching.TrialBatcher(np.arange(20), 5, seed=7), 11))
    np.testing.assert_array_equal(np.stack(again), np.stack(drawn))
    resumed = batching.TrialBatcher(np.arange(20), 5, seed=7, position=6)
    for expected in drawn[6:]:
        np.testing.assert_array_equal(next(resumed), expected)
    other = batching.TrialBatcher(np.arange(20), 5, seed=8)
    assert not np.array_equal(next(other), drawn[0])


MOVIES = {"long": (1, 200), "repeated": (np.array([0, 2, 5]), 60), "short": (4, 30)}


def _clip_batcher(position=0, seed=0):
    return batching.ClipBatcher(
        MOVIES,
        clip_bins=20,
        context=15,
        num_starts=5,
        num_movies=3,
        seed=seed,
        position=position,
    )


def test_clips_never_read_outside_their_movie():
    batcher = _clip_batcher()
    lengths = {"long": 200, "repeated": 60}
    seen = set()
    for clips in itertools.islice(batcher, 300):
        assert len(clips.movies) == len(clips.trials) == len(clips.starts) == 15
        for movie, trial, start in zip(clips.movies, clips.trials, clips.starts):
            assert movie != "short"  # 30 bins < context 15 + clip 20
            assert start - 15 >= 0 and start + 20 <= lengths[movie]
            if movie == "repeated":
                assert trial in (0, 2, 5)
            else:
                assert trial == 0
            seen.add((movie, int(trial), int(start)))
        # K_t presentations × K_m starts, presentation-major
        for i in range(3):
            block = slice(5 * i, 5 * i + 5)
            assert len(set(clips.movies[block])) == 1 and len(set(clips.trials[block])) == 1
        assert len({(m, t) for m, t in zip(clips.movies, clips.trials)}) == 3  # distinct
    starts = {s for m, _, s in seen if m == "long"}
    assert min(starts) == 15 and max(starts) == 180  # the whole usable range is reachable


def test_clip_sampling_is_uniform_over_time():
    # 'long' has 166 usable starts, each 'repeated' trial 26: P(long) = 166 / (166 + 78).
    batcher = batching.ClipBatcher(MOVIES, 20, 15, num_starts=1, num_movies=1, seed=1)
    draws = [next(batcher).movies[0] for _ in range(2000)]
    assert np.mean([m == "long" for m in draws]) == pytest.approx(166 / 244, abs=0.04)


def test_clip_batcher_is_deterministic_and_resumable():
    drawn = list(itertools.islice(_clip_batcher(), 8))
    resumed = list(itertools.islice(_clip_batcher(position=5), 3))
    for want, got in zip(drawn[5:], resumed):
        assert want.movies == got.movies
        np.testing.assert_array_equal(want.trials, got.trials)
        np.testing.assert_array_equal(want.starts, got.starts)
    assert drawn[0].starts.tolist() != next(_clip_batcher(seed=1)).starts.tolist()
    with pytest.raises(ValueError, match="no movie has"):
        batching.ClipBatcher({"short": (1, 30)}, 20, 15, 1, 1, seed=0)


def _recording():
    """Frames hold their own index; spikes encode (trial, bin, neuron) so slices are checkable."""
    movies = {"a": (3, 40), "b": (2, 25)}
    stimuli, spikes = {}, {}
    for offset, (name, (num_trials, num_bins)) in enumerate(movies.items()):
        stimuli[name] = np.broadcast_to(
            np.arange(num_bins, dtype=np.float32)[:, None, None] + 1000 * offset, (num_bins, 5, 5)
        ).copy()
        k, t, n = np.meshgrid(
            np.arange(num_trials), np.arange(num_bins), np.arange(2), indexing="ij"
        )
        spikes[name] = ((k + 2 * t + n) % 3 == 0).astype(np.uint8)
    return Recording(
        stimuli=stimuli,
        spikes=spikes,
        bin_width_s=0.01,
        repeated={"a": True, "b": True},
        splits={"train": {"a": np.arange(3), "b": np.arange(2)}},
        neuron_ids=np.arange(2),
    )


def test_trial_batch_alignment():
    recording = _recording()
    assert batching.first_usable_bin(10, 9) == 9 and batching.first_usable_bin(300, 24) == 299
    batch = batching.make_batch(
        recording, receptive_field=4, num_delays=6, movie="a", trials=np.array([2, 0])
    )
    assert not batch.per_trial_stimulus
    # first bin = max(R − 1, D) = 6; T = 40 − 6 = 34; clip = frames 3..39
    np.testing.assert_array_equal(batch.stimulus[:, 0, 0], np.arange(3, 40))
    spikes = recording.spikes["a"]
    np.testing.assert_array_equal(batch.spikes, spikes[[2, 0], 6:])
    np.testing.assert_array_equal(batch.history, spikes[[2, 0], 0:6])
    assert batch.spikes.dtype == batch.history.dtype == batch.stimulus.dtype == np.float32
    short = batching.make_trial_batch(
        recording, "a", [1], receptive_field=4, num_delays=2, first_bin=10, num_bins=5
    )
    np.testing.assert_array_equal(short.stimulus[:, 0, 0], np.arange(7, 15))
    np.testing.assert_array_equal(short.history, spikes[[1], 8:10])
    window = dict(receptive_field=4, num_delays=6)
    with pytest.raises(ValueError, match="first usable bin 6"):
        batching.make_trial_batch(recording, "a", [0], first_bin=5, **window)
    with pytest.raises(ValueError, match="within a movie of 40 bins"):
        batching.make_trial_batch(recording, "a", [0], first_bin=30, num_bins=11, **window)


def test_clip_batch_alignment():
    recording = _recording()
    batcher = batching.ClipBatcher.from_recording(
        recording, "train", clip_bins=7, context=5, num_starts=2, num_movies=3, seed=0
    )
    clips = next(batcher)
    batch = batching.make_batch(
        recording, receptive_field=3, num_delays=5, clips=clips, clip_bins=7
    )
    assert batch.per_trial_stimulus
    assert batch.stimulus.shape == (6, 9, 5, 5)
    for k, (movie, trial, start) in enumerate(zip(clips.movies, clips.trials, clips.starts)):
        offset = 1000 * (movie == "b")
        np.testing.assert_array_equal(
            batch.stimulus[k, :, 0, 0], np.arange(start - 2, start + 7) + offset
        )
        np.testing.assert_array_equal(
            batch.spikes[k], recording.spikes[movie][trial, start : start + 7]
        )
        np.testing.assert_array_equal(
            batch.history[k], recording.spikes[movie][trial, start - 5 : start]
        )


@pytest.mark.parametrize("per_clip", [False, True])
def test_batches_feed_run_passes(per_clip):
    recording = _recording()
    m = model.Model(
        encoders.V1Encoder(num_frames=3, features=(2, 4), kernel_size=3),
        network.NetworkConfig(num_visible=2, num_hidden=1, num_delays=4),
    )
    context = batching.first_usable_bin(m.receptive_field, m.network.num_delays)
    if per_clip:
        clips = batching.ClipBatcher.from_recording(recording, "train", 8, context, 2, 2, 0)
        batch = batching.make_batch(
            recording, receptive_field=3, num_delays=4, clips=next(clips), clip_bins=8
        )
    else:
        batch = batching.make_batch(
            recording, receptive_field=3, num_delays=4, movie="b", trials=np.arange(2)
        )
    params = model.init_model(jax.random.key(0), m, batch.stimulus.shape[-3:])
    out = model.run_passes(
        params,
        m,
        batch.stimulus,
        batch.spikes,
        passes=model.Passes(clamped=1, free=True),
        key=jax.random.key(1),
        initial_history=batch.history,
        per_trial_stimulus=batch.per_trial_stimulus,
    )
    k, t, _ = batch.spikes.shape
    assert out.clamped.logits.shape == out.free.logits.shape == (k, t, 3)
    np.testing.assert_array_equal(out.clamped.spikes[:, :, :2], batch.spikes)
