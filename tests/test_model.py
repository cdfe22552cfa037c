import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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
