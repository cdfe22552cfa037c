"""Data-parallel training on 4 (fake) CPU devices equals training on one device.

The check runs in a subprocess because the device count is fixed when JAX starts
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``).
"""

import os
import subprocess
import sys
import textwrap

import pytest

from rsnn_jax import experiment, parallel

_SCRIPT = textwrap.dedent(
    """
    import jax
    import numpy as np
    import pytest

    from rsnn_jax import experiment, model, parallel, train
    from tests.test_train import NH, T, _batch, _model, _objective

    assert jax.device_count() == 4, jax.devices()
    mesh = parallel.make_mesh(0)
    assert mesh.devices.size == 4 and mesh.axis_names == ("trials",)

    m, objective = _model(), _objective("mle_psth_nc")
    params = model.init_model(jax.random.key(0), m, (T + 1, 3, 3))
    optimizer = train.make_optimizer(train.TrainConfig(learning_rate=1e-2))
    batches = [_batch(i) for i in range(2)]  # K = 4 trials each: one per device
    keys = [train.step_key(5, i) for i in range(2)]

    single_step = train.make_train_step(m, optimizer)
    single = train.init_train_state(jax.tree.map(np.array, params), optimizer)
    for batch, key in zip(batches, keys):
        single, single_terms, _ = single_step(single, objective, batch, key)

    sharded_step = train.make_train_step(m, optimizer, mesh=mesh)
    # A copy: replicate may reuse a buffer of its input, which the step then donates.
    state = train.init_train_state(jax.tree.map(np.array, params), optimizer)
    state = parallel.replicate(state, mesh)
    for batch, key in zip(batches, keys):
        batch = parallel.shard_batch(batch, mesh)
        spikes = batch.spikes.sharding
        assert len(spikes.device_set) == 4 and not spikes.is_fully_replicated
        assert {s.data.shape[0] for s in batch.spikes.addressable_shards} == {1}
        compiled = sharded_step.lower(state, objective, batch, key).compile()
        batch_shardings = compiled.input_shardings[0][2]
        assert batch_shardings.spikes.spec == jax.sharding.PartitionSpec("trials")
        state, terms, finite = sharded_step(state, objective, batch, key)
        assert bool(finite)

    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(state.params)):
        assert b.sharding.is_fully_replicated
        # Same noise (partitionable threefry) and same spikes: only the order of the sums
        # over trials differs (per-device partial sums + all-reduce), a few float32 ulps of
        # parameters of size ~0.1-1 after two Adam steps that move each by ~2e-2.
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    for name in single_terms:
        np.testing.assert_allclose(single_terms[name], terms[name], rtol=1e-5)

    # train.fit with the mesh (what --devices uses) follows the single-device fit; its
    # validation batch of 6 trials cannot be split over 4 devices and is replicated.
    validation = _batch(9)._replace(
        spikes=np.concatenate([_batch(9).spikes, _batch(8).spikes[:2]]),
        history=np.concatenate([_batch(9).history, _batch(8).history[:2]]),
    )
    fits = [
        train.fit(
            model=m,
            params=params,
            objective=objective,
            batches=lambda position: iter(batches * 2),
            config=train.TrainConfig(num_steps=2, eval_every=2, learning_rate=1e-2, seed=5),
            validation=validation,
            log=lambda line: None,
            mesh=fit_mesh,
        )
        for fit_mesh in (None, mesh)
    ]
    for a, b in zip(jax.tree.leaves(fits[0].state.params), jax.tree.leaves(fits[1].state.params)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fits[0].best_validation, fits[1].best_validation, rtol=1e-5)

    with pytest.raises(ValueError, match="6 trials cannot be split evenly over 4 devices"):
        parallel.shard_batch(_batch()._replace(spikes=np.zeros((6, T, 4), np.float32)), mesh)
    config = experiment.ExperimentConfig.build("v1", "unused", batch_size=10, num_devices=4)
    with pytest.raises(ValueError, match="--batch_size = 10 .* over 4 devices"):
        experiment.training_mesh(config)
    print("PARALLEL-OK")
    """
)


def test_sharded_step_equals_single_device_step():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=root, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0 and "PARALLEL-OK" in result.stdout, result.stderr[-4000:]


def test_make_mesh_refuses_missing_devices():
    with pytest.raises(ValueError, match="--devices=1000"):
        parallel.make_mesh(1000)


def test_one_device_means_no_mesh():
    config = experiment.ExperimentConfig.build(kind="v1", workdir="unused", batch_size=7)
    assert experiment.training_mesh(config) is None
    with pytest.raises(ValueError, match="--devices=-1: must be >= 0"):
        experiment.ExperimentConfig.build(kind="v1", workdir="unused", num_devices=-1)
