import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rsnn_jax import encoders, model, network


class FlatEncoder(nn.Module):
    """A custom encoder: one dense layer on each frame, receptive field 2."""

    receptive_field = 2

    @nn.compact
    def __call__(self, stimulus):
        flat = stimulus.reshape(stimulus.shape[0], -1)
        return nn.Dense(5)(jnp.concatenate([flat[:-1], flat[1:]], axis=1))


def _setup(encoder=None):
    m = model.Model(encoder or FlatEncoder(), network.NetworkConfig(4, 2, 3))
    stimulus = np.random.default_rng(0).normal(size=(11, 3, 3)).astype(np.float32)
    params = model.init_model(jax.random.key(0), m, stimulus.shape)
    recorded = (np.random.default_rng(1).uniform(size=(3, 10, 4)) < 0.3).astype(np.float32)
    return m, params, stimulus, recorded


def test_run_passes_matches_simulate_batch_on_encoded_features():
    m, params, stimulus, recorded = _setup()
    passes = model.Passes(clamped=2, free=True, clamp_until=4)
    key = jax.random.key(7)
    out = model.run_passes(params, m, stimulus, recorded, passes=passes, key=key)
    features = m.encoder.apply(params.encoder, stimulus)
    clamped_key, free_key, until_key = jax.random.split(key, 3)
    cfg = m.network
    expected = {
        "clamped": network.simulate_batch(
            params.network,
            features,
            config=cfg,
            key=clamped_key,
            recorded=recorded,
            num_samples=2,
        ),
        "free": network.simulate_batch(
            params.network, features, config=cfg, key=free_key, num_trials=3
        ),
        "clamped_until": network.simulate_batch(
            params.network,
            features,
            config=cfg,
            key=until_key,
            recorded=recorded,
            clamp_until=4,
        ),
    }
    for name, want in expected.items():
        got = getattr(out, name)
        np.testing.assert_array_equal(got.spikes, want.spikes)
        np.testing.assert_allclose(got.logits, want.logits, rtol=1e-6)
    assert out.clamped.spikes.shape == (3, 2, 10, 6)


def test_run_passes_feeds_given_noise_to_each_pass_and_returns_visible_samples():
    m, params, stimulus, recorded = _setup()
    cfg, features = m.network, m.encoder.apply(params.encoder, stimulus)
    rng = np.random.default_rng(5)
    noise = {
        "clamped": rng.uniform(size=(3, 2, 10, 6)).astype(np.float32),
        "free": rng.uniform(size=(3, 10, 6)).astype(np.float32),
        "clamped_until": rng.uniform(size=(3, 10, 6)).astype(np.float32),
    }
    passes = model.Passes(clamped=2, free=True, clamp_until=4)
    out = model.run_passes(
        params,
        m,
        stimulus,
        recorded,
        passes=passes,
        key=jax.random.key(9),
        noise=noise,
        clamped_samples=True,
    )
    clamped = dict(recorded=recorded, num_samples=2)
    options = {
        "clamped": clamped,
        "free": {},
        "clamped_until": dict(recorded=recorded, clamp_until=4),
    }
    for name, extra in options.items():
        want = network.simulate_batch(
            params.network, features, config=cfg, noise=noise[name], **extra
        )
        np.testing.assert_array_equal(getattr(out, name).spikes, want.spikes)
        np.testing.assert_allclose(getattr(out, name).logits, want.logits, rtol=1e-6)
    # The visible neurons' own samples: 1[u < σ(logit)] by hand; the spikes are the data.
    logits = np.asarray(out.clamped.logits[..., :4], np.float64)
    by_hand = noise["clamped"][..., :4] < 1 / (1 + np.exp(-logits))
    np.testing.assert_array_equal(out.clamped_samples, by_hand.astype(np.float32))
    np.testing.assert_array_equal(out.clamped.spikes[..., :4], np.repeat(recorded[:, None], 2, 1))
    # Without noise, asking for the samples leaves the key's draws (and outputs) unchanged.
    plain, sampled = (
        model.run_passes(
            params,
            m,
            stimulus,
            recorded,
            passes=model.Passes(clamped=1),
            key=jax.random.key(2),
            clamped_samples=flag,
        )
        for flag in (False, True)
    )
    np.testing.assert_array_equal(plain.clamped.spikes, sampled.clamped.spikes)
    assert plain.clamped_samples is None and sampled.clamped_samples.shape == (3, 10, 4)
    with pytest.raises(ValueError, match="not run"):
        model.run_passes(
            params,
            m,
            stimulus,
            recorded,
            passes=model.Passes(clamped=1),
            key=jax.random.key(2),
            noise=model.PassNoise(free=noise["free"]),
        )


def test_stimulus_is_encoded_once_per_step():
    calls = []

    class Counting(FlatEncoder):
        @nn.compact
        def __call__(self, stimulus):
            calls.append(1)  # runs at trace time once per apply
            return super().__call__(stimulus)

    m, params, stimulus, recorded = _setup(Counting())
    calls.clear()
    jax.jit(
        lambda p: model.run_passes(
            p,
            m,
            stimulus,
            recorded,
            passes=model.Passes(clamped=1, free=True, clamp_until=3),
            key=jax.random.key(0),
        )
    )(params)
    assert len(calls) == 1


def test_passes_merge():
    merged = model.Passes(clamped=1).merge(model.Passes(free=True, clamp_until=5))
    assert merged == model.Passes(clamped=1, free=True, clamp_until=5)


def test_v1_model_end_to_end_shapes():
    m = model.Model(encoders.V1Encoder(), network.NetworkConfig(69, 0, 9))
    params = model.init_model(jax.random.key(0), m, (12 + 9, 27, 27))
    assert params.network.input_weights.shape == (1568, 69)
    out = model.run_passes(
        params,
        m,
        jnp.zeros((21, 27, 27)),
        jnp.zeros((2, 12, 69)),
        passes=model.Passes(clamped=1, free=True),
        key=jax.random.key(0),
    )
    assert out.clamped.logits.shape == (2, 12, 69) and out.clamped_until is None
