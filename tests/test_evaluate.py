"""experiment.evaluate: one compiled simulation per model, a typed result, report.json's
fields."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rsnn_jax import experiment, network
from rsnn_jax import model as model_lib
from rsnn_jax.data import batching

# Sizes no other test evaluates with, so that the jit cache starts empty for these models.
K, T, NV, D = 3, 17, 5, 3


class _Encoder(nn.Module):
    """Two frames per bin through one dense layer (receptive field 2)."""

    receptive_field = 2

    @nn.compact
    def __call__(self, stimulus):
        flat = stimulus.reshape(stimulus.shape[0], -1)
        return nn.Dense(4)(jnp.concatenate([flat[:-1], flat[1:]], axis=1))


def _movie(seed):
    rng = np.random.default_rng(seed)
    return batching.Batch(
        stimulus=rng.normal(size=(T + 1, 2, 2)).astype(np.float32),
        spikes=(rng.uniform(size=(K, T, NV)) < 0.3).astype(np.float32),
        history=(rng.uniform(size=(K, D, NV)) < 0.3).astype(np.float32),
    )


@pytest.mark.parametrize("num_hidden", [0, 2])
def test_evaluate_compiles_once_per_model_and_reports_the_documented_fields(
    num_hidden, monkeypatch
):
    m = model_lib.Model(_Encoder(), network.NetworkConfig(NV, num_hidden, D))
    traces = []
    run_passes = model_lib.run_passes

    def counted(*args, **kwargs):  # runs only while _simulate is traced
        traces.append(kwargs["passes"])
        return run_passes(*args, **kwargs)

    monkeypatch.setattr(model_lib, "run_passes", counted)
    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    movies = [_movie(0), _movie(1)]
    shape = movies[0].stimulus.shape
    models = [model_lib.init_model(jax.random.key(i), m, shape) for i in range(2)]
    key = jax.random.key(2)
    evaluate = lambda params, movie: experiment.evaluate(  # noqa: E731
        params, m, movie, key, num_trials=6, smoothing_bins=3, smc_particles=4
    )
    first = evaluate(models[0], movies[0])
    # One trace: the free pass and the clamped pass (the SMC filter with hidden neurons).
    assert len(traces) == (1 if num_hidden else 2)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        # Other parameters (checkpoints) and other movies of the same shapes: no retrace,
        # nothing compiled.
        evaluate(models[1], movies[0])
        other_movie = evaluate(models[0], movies[1])
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert len(traces) == (1 if num_hidden else 2) and compiles == []
    assert other_movie.report() != first.report()
    # Deterministic for a given key, and the typed result holds report.json's fields.
    assert evaluate(models[0], movies[0]).report() == first.report()
    report = first.report()
    assert isinstance(first, experiment.Evaluation)
    assert list(report) == [f for f in first._fields if f not in experiment._FIGURE_FIELDS]
    assert report["likelihood_estimator"] == ("smc" if num_hidden else "exact")
    assert report["num_simulated_trials"] == 6 and report["psth_smoothing_bins"] == 3
    assert len(report["psth_correlation_per_neuron"]) == NV
    assert first.model_nc.shape == (NV, NV) and first.model_raster.shape == (T, NV)
