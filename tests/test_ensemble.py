import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rsnn_jax import ensemble, losses, model, train
from tests.test_train import NH, NV, T, TinyEncoder, _batch, _model

SEEDS = (3, 7, 11)
NC_WEIGHTS = (0.5, 0.0, 2.0)
NUM_STEPS = 3


def _objective():
    return losses.make_objective("mle_psth_nc", num_visible=NV, num_hidden=NH)


def _init_keys():
    return jax.random.split(jax.random.key(0), len(SEEDS))


def test_stack_refuses_objectives_with_different_terms():
    other = losses.make_objective("mle", num_visible=NV, num_hidden=NH)
    with pytest.raises(ValueError, match="member 1 has another structure"):
        ensemble.stack([_objective(), other])


def test_ensemble_equals_independent_runs_and_compiles_once(monkeypatch):
    traces = []
    objective_loss = train.objective_loss

    def counting_loss(*args, **kwargs):
        traces.append(1)
        return objective_loss(*args, **kwargs)

    monkeypatch.setattr(train, "objective_loss", counting_loss)
    m = _model()
    optimizer = train.make_optimizer(train.TrainConfig(learning_rate=1e-2))
    keys = _init_keys()
    objectives = [_objective().with_weights(nc=w) for w in NC_WEIGHTS]

    states = ensemble.init_ensemble(keys, m, (T + 1, 3, 3), optimizer)
    step = ensemble.make_ensemble_step(m, optimizer)
    stacked = ensemble.stack(objectives)
    for i in range(NUM_STEPS):
        states, terms, finite = step(states, stacked, _batch(i), ensemble.step_keys(SEEDS, i))
        assert np.all(finite) and terms["total"].shape == (len(SEEDS),)
    # New weights (array leaves) and new keys reuse the compiled step: one trace in all.
    copy = jax.tree.map(jnp.copy, states)  # the step donates its input
    step(copy, ensemble.stack(objectives[::-1]), _batch(9), ensemble.step_keys(SEEDS, 9))
    assert len(traces) == 1
    # Oracle: each member trained alone with the single-model step.
    single_step = train.make_train_step(m, optimizer)
    for index, (key, seed, objective) in enumerate(zip(keys, SEEDS, objectives)):
        params = model.init_model(key, m, (T + 1, 3, 3))
        state = train.init_train_state(params, optimizer)
        for i in range(NUM_STEPS):
            state, _, _ = single_step(state, objective, _batch(i), train.step_key(seed, i))
        alone = jax.tree.leaves(state.params)
        together = jax.tree.leaves(ensemble.member(states, index).params)
        for a, b in zip(alone, together):
            # Only float rounding differs (batched vs single matmuls): seen <= 2e-7, a few
            # float32 ulps of parameters of size ~0.1-1, while the 3 Adam steps move every
            # parameter by ~3e-2; another member's seed or weights would be off by far more.
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_members_differ():
    m = model.Model(TinyEncoder(), _model().network)
    optimizer = train.make_optimizer(train.TrainConfig())
    states = ensemble.init_ensemble(_init_keys(), m, (T + 1, 3, 3), optimizer)
    weights = np.asarray(states.params.network.recurrent_weights)
    assert weights.shape[0] == len(SEEDS)
    assert not np.allclose(weights[0], weights[1])
