"""rsnn_jax.estimators and rsnn_jax.audit_cases: exact enumeration against a hand-written
oracle and against Monte Carlo, the score-function estimator against the exact gradient, the
audit's known bias (the mixed estimator's wrong sign), and the audited cases against the
built-in losses and the example's statistics."""

import functools
import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from rsnn_jax import audit_cases, estimators, losses, model, network, statistics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny(num_bins=3, num_hidden=0, self_coupling=0.0, bias=-0.2, seed=0):
    """2 visible neurons (+ hidden), D = 1, F = 2, float32."""
    config = network.NetworkConfig(2, num_hidden, num_delays=1)
    n = config.num_neurons
    keys = jax.random.split(jax.random.key(seed), 3)
    params = network.NetworkParams(
        input_weights=0.3 * jax.random.normal(keys[0], (2, n)),
        recurrent_weights=0.5 * jax.random.normal(keys[1], (1, n, n)) + self_coupling * jnp.eye(n),
        bias=jnp.full((n,), bias),
    )
    return config, params, jax.random.normal(keys[2], (num_bins, 2))


def _lag_one(x):
    """A statistic that multiplies spikes of two bins: mean x_{t,i} x_{t−1,j}, [N, N]."""
    return audit_cases.CrossCorrelogram(1)(x)[0]


def _statistic(x):
    return {"psth": statistics.psth(x), "lag": _lag_one(x)}


def test_exact_expectation_against_a_hand_written_oracle():
    # One neuron, two bins, no input: P(z1, z2) = B(z1; σ(x1)) B(z2; σ(x1 + w z1)).
    config = network.NetworkConfig(1, 0, num_delays=1, threshold=1.0)
    b, w = -0.3, 1.2
    design = estimators.Design(config, num_trials=1)

    def oracle(b, w):  # E[z1 z2] and E[z2] by hand (logit = u − 1 with v_thr = 1)
        s = lambda x: 1 / (1 + np.exp(-x))
        p1, p2_given = s(b - 1), (s(b - 1), s(b + w - 1))
        return np.array([p1 * p2_given[1], (1 - p1) * p2_given[0] + p1 * p2_given[1]])

    with jax.enable_x64(True):
        conditions = estimators.Conditions(jnp.zeros((2, 1), jnp.float64))

        def exact(bias):
            params = network.NetworkParams(
                jnp.zeros((1, 1)), jnp.full((1, 1, 1), w, jnp.float64), bias
            )
            fn = lambda x: jnp.stack([x[0, 0, 0] * x[0, 1, 0], x[0, 1, 0]])
            return estimators.exact_expectation(fn, params, conditions, design)

        bias = jnp.array([b], jnp.float64)
        value, jacobian = jax.jit(lambda b: (exact(b), jax.jacrev(exact)(b)[:, 0]))(bias)
    np.testing.assert_allclose(value, oracle(b, w), rtol=1e-12)
    h = 1e-6  # central finite differences of the oracle
    np.testing.assert_allclose(jacobian, (oracle(b + h, w) - oracle(b - h, w)) / (2 * h), rtol=1e-6)


def test_exact_expectation_equals_the_monte_carlo_average():
    """A hidden neuron sampled, the visible ones clamped (entering as probabilities):
    |MC − exact| < 4 MC standard errors. The enumeration's teacher-forced logits are the
    simulation's."""
    num_samples = 20000
    config, params, features = _tiny(num_bins=3, num_hidden=1)
    design = estimators.Design(config, num_trials=1)
    recorded = jnp.array([[[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]])
    history = jnp.array([[1.0, 0.0, 1.0]])  # [D, N], the bin before t = 0
    conditions = estimators.Conditions(features, recorded, history)
    with jax.enable_x64(True):
        as64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)
        exact = jax.jit(estimators.exact_expectation, static_argnums=(0, 3))(
            _statistic, as64(params), as64(conditions), design
        )
        exact = jax.tree.map(np.asarray, exact)
    sampled = estimators.sampled_entries(design, 3, clamped=True)

    @jax.jit
    def monte_carlo(key):
        run = network.simulate_batch(
            params,
            features,
            config=config,
            key=key,
            recorded=jnp.tile(recorded, (num_samples, 1, 1)),
            initial_history=history,
        )
        logits = estimators.teacher_forced_logits(params, config, features, run.spikes, history)
        signal = jnp.where(sampled, run.spikes[:, None], run.probabilities[:, None])
        return logits - run.logits, jax.vmap(_statistic)(signal)

    logit_errors, values = monte_carlo(jax.random.key(2))
    assert np.max(np.abs(logit_errors)) < 1e-5
    for name, v in values.items():
        mean, sem = np.mean(v, axis=0), np.std(v, axis=0) / np.sqrt(num_samples)
        assert np.all(np.abs(mean - exact[name]) < 4 * sem + 1e-7), name


def test_score_function_estimator_is_unbiased_and_the_mixed_one_has_the_wrong_sign():
    """A self-exciting neuron at p ≈ 0.2 and its lag-1 autocorrelation coefficient ρ (centred
    and normalised). The score-function estimator's mean is the exact gradient within its
    Monte-Carlo noise; the mixed estimator (p_t z_{t−1}, r from p) says that raising the
    bias lowers ρ, which it raises."""
    config = network.NetworkConfig(1, 0, num_delays=1)
    params = network.NetworkParams(
        jnp.zeros((1, 1)), jnp.full((1, 1, 1), 0.5), jnp.array([0.4 * (1 - 1.5)])
    )
    conditions = estimators.Conditions(jnp.zeros((8, 1)))
    design = estimators.Design(config, num_trials=1, num_groups=4)
    reference, rows = estimators.audit(
        audit_cases.Autocorrelation(),
        "mse",
        jnp.full((1,), 0.3),
        params,
        conditions,
        design,
        key=jax.random.key(5),
        estimators=("mixed", "score"),
        num_repeats=1024,
    )
    score, mixed = rows["score"], rows["mixed"]
    # Unbiased: each error is within 2.5 times its Monte-Carlo noise (the expected error).
    assert score.jacobian_error < 2.5 * score.jacobian_noise and score.jacobian_noise < 0.1
    assert score.gradient_error < 2.5 * score.gradient_noise and score.gradient_noise < 0.1
    assert score.value_bias < 2.5 * score.value_sd / np.sqrt(1024)
    exact = reference.jacobian[0, -1]  # ∂ρ/∂b
    assert exact > 0.05
    assert mixed.jacobian[0, -1] < -0.1 and mixed.bias_cosine == -1.0
    assert mixed.gradient_cosine < 0  # the mixed gradient step increases the dissimilarity


def test_score_function_term_is_the_audited_estimator():
    """On the same draws, the term's loss and gradient equal the audit's score estimator's
    (cross-fitted) loss; the term needs a model with dampening 0."""
    config = network.NetworkConfig(2, 0, num_delays=1, dampening=0.0)
    _, params, features = _tiny(num_bins=3, self_coupling=0.5)
    design = estimators.Design(config, num_trials=1, num_groups=4)
    noise = jax.random.uniform(jax.random.key(4), (4, 1, 3, 2))
    recorded = jnp.array(np.random.default_rng(0).uniform(size=(4, 3, 2)) < 0.3, jnp.float32)
    term = estimators.score_function_term(_lag_one, "mse", num_groups=4)

    def term_loss(params):
        free = network.simulate_batch(params, features, config=config, noise=noise[:, 0])
        return term(model.PassOutputs(None, free, None), recorded)

    def audited_loss(params):
        conditions = estimators.Conditions(features)
        groups = estimators.group_estimates("score", _lag_one, params, conditions, design, noise)
        return estimators.estimator_loss("score", "mse", _lag_one(recorded), groups)

    ours = jax.jit(jax.value_and_grad(term_loss))(params)
    theirs = jax.jit(jax.value_and_grad(audited_loss))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), ours, theirs)
    assert term.passes == model.Passes(free=True)


@functools.partial(jax.jit, static_argnums=0)
def _case_and_builtin(name, recorded, logits):
    """(d(T^D, T(σ(logits))) as the case computes it, the rsnn_jax.losses value)."""
    layout = audit_cases.LAYOUTS[name]
    dissimilarity = {"mse": losses.mean_squared_error, "ce": losses.cross_entropy}
    data_statistic = audit_cases.data_statistic(name)(recorded)
    model_statistic = layout.statistic(jax.nn.sigmoid(logits))
    mine = dissimilarity[layout.dissimilarity](data_statistic, model_statistic)
    return mine, audit_cases.builtin_loss(name)(recorded, logits)


def test_each_builtin_case_is_its_loss():
    rng = np.random.default_rng(0)
    for name in audit_cases.BUILTINS:
        layout = audit_cases.LAYOUTS[name]
        b, t, n = layout.num_trials, layout.num_bins, layout.num_visible + layout.num_hidden
        recorded = rng.uniform(size=(b // layout.num_samples, t, layout.num_visible)) < 0.3
        recorded = np.repeat(recorded.astype(np.float32), layout.num_samples, axis=0)
        logits = rng.normal(size=(b, t, n)).astype(np.float32)
        mine, builtin = _case_and_builtin(name, recorded, logits)
        np.testing.assert_allclose(mine, builtin, rtol=1e-5, err_msg=name)


def _load_example():
    path = os.path.join(ROOT, "examples", "custom_statistic.py")
    spec = importlib.util.spec_from_file_location("custom_statistic", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_example_statistics_are_the_examples():
    example = _load_example()
    rng = np.random.default_rng(1)
    p = rng.uniform(size=(2, 6, 3)).astype(np.float32)
    z = (rng.uniform(size=(2, 6, 3)) < 0.4).astype(np.float32)
    np.testing.assert_allclose(
        audit_cases.CoactivityDistribution()(p), example.CoactivityDistribution()(p), rtol=1e-6
    )
    ours = audit_cases.CrossCorrelogram(2)
    np.testing.assert_allclose(ours(p), example.CrossCorrelogram(2)(p), rtol=1e-6)
    np.testing.assert_allclose(
        ours.mixed(p, z), example.mixed_cross_correlogram(p, z, 2), rtol=1e-6
    )


def test_the_table_lists_every_case_and_estimator():
    row = estimators.AuditRow(*([0.5] * 9), np.zeros((1, 1)), np.zeros(1))
    records = [
        audit_cases.AuditRecord("psth", seed, e, row)
        for seed in (0, 1)
        for e in ("spikes", "score")
    ]
    table = audit_cases.format_table(records).splitlines()
    assert len(table) == 4 and table[2].startswith(
        "| psth | spikes | 0.50 | 0.50 | 0.50 | 0.50 (0.50)"
    )
