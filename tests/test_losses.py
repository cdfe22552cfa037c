"""Losses against NumPy formulas, objectives as pytrees, presets, gradients and saturation."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rsnn_jax import losses, model, network, statistics

# ----------------------------------------------------------------------------------------------
# NumPy oracles, written from the formulas (float64).


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _ce(target, p):
    """CE(y, p) = -y log p - (1 - y) log(1 - p), elementwise."""
    return -(target * np.log(p) + (1 - target) * np.log(1 - p))


def _coincidences(a, b):
    """(1/(KT)) sum_{k,t} a_{k,t,i} b_{k,t,j}."""
    k, t, n = a.shape
    out = np.zeros((n, n))
    for kk, tt, i, j in itertools.product(range(k), range(t), range(n), range(n)):
        out[i, j] += a[kk, tt, i] * b[kk, tt, j] / (k * t)
    return out


def _mean_off_diagonal(m):
    n = len(m)
    return sum(m[i, j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))


def _official_nc_mse(recorded, probabilities, num_delays):
    """The official NoiseCorr_loss_MSE: roll in time, delays 0..D-1, diagonal included."""

    def delayed(x):
        delta = x - x.mean(axis=0, keepdims=True)
        b, t, _ = x.shape
        covs = [
            np.einsum("bti,btj->ij", delta, np.roll(delta, d, axis=1)).ravel() / (b * t)
            for d in range(num_delays)
        ]
        return np.stack(covs)

    return np.mean((delayed(recorded) - delayed(probabilities)) ** 2)


def _no_wrap_nc_mse(recorded, probabilities, num_delays):
    """Delayed covariances over the pairs t - d >= 0 only, explicit loops."""

    def delayed(x):
        delta = x - x.mean(axis=0, keepdims=True)
        k, t, n = x.shape
        c = np.zeros((num_delays, n, n))
        for d, i, j in itertools.product(range(num_delays), range(n), range(n)):
            c[d, i, j] = np.mean(
                [delta[kk, tt, i] * delta[kk, tt - d, j] for kk in range(k) for tt in range(d, t)]
            )
        return c

    return np.mean((delayed(recorded) - delayed(probabilities)) ** 2)


# ----------------------------------------------------------------------------------------------
# Small hand-made inputs.

K, T, NV, NH = 3, 6, 3, 2


def _recorded(seed=0, shape=(K, T, NV)):
    return (np.random.default_rng(seed).uniform(size=shape) < 0.4).astype(np.float32)


def _logits(shape, seed=1, scale=2.0):
    return np.random.default_rng(seed).normal(0, scale, size=shape).astype(np.float32)


def test_mle_matches_numpy():
    z, x = _recorded(), _logits((K, T, NV))
    expected = np.mean(_ce(z, _sigmoid(x)))
    np.testing.assert_allclose(losses.mle_loss(z, x), expected, rtol=1e-5)
    # S samples per clamping condition (the ELBO of eq. 19): averaged over the samples.
    xs = _logits((K, 4, T, NV), seed=2)
    expected = np.mean([_ce(z, _sigmoid(xs[:, s])) for s in range(4)])
    np.testing.assert_allclose(losses.mle_loss(z, xs), expected, rtol=1e-5)


def test_elbo_sm_matches_eq_20():
    z, xs = _recorded(), _logits((K, 4, T, NV))
    p_bar = _sigmoid(xs).mean(axis=1)  # E_P[sigma(u)] by the mean over S samples
    np.testing.assert_allclose(losses.elbo_sm_loss(z, xs), np.mean(_ce(z, p_bar)), rtol=1e-5)
    x = _logits((K, T, NV))
    np.testing.assert_allclose(losses.elbo_sm_loss(z, x), losses.mle_loss(z, x), rtol=1e-6)


def test_psth_ce_and_mse_match_numpy():
    z, x = _recorded(), _logits((5, T, NV))  # K' = 5 simulated trials, K = 3 recorded
    target, p_bar = z.mean(0), _sigmoid(x).mean(0)
    np.testing.assert_allclose(losses.psth_loss(z, x), np.mean(_ce(target, p_bar)), rtol=1e-5)
    np.testing.assert_allclose(
        losses.psth_loss(z, x, "mse"), np.mean((target - p_bar) ** 2), rtol=1e-5
    )


def test_nc_matches_eq_12():
    z, x = _recorded(), _logits((4, T, NV))
    pi_data = _coincidences(z, z)
    pi_model = _coincidences(_sigmoid(x), _sigmoid(x))
    expected = _mean_off_diagonal(_ce(pi_data, pi_model))
    np.testing.assert_allclose(losses.nc_loss(z, x), expected, rtol=1e-5)


def test_nc_shuffled_matches_numpy():
    z, x = _recorded(), _logits((4, T, NV))
    p = _sigmoid(x)
    # Neuron i from trial (k + 1) mod K, neuron j from trial k.
    pi_data = _coincidences(np.roll(z, -1, axis=0), z)
    pi_model = _coincidences(np.roll(p, -1, axis=0), p)
    expected = _mean_off_diagonal(_ce(pi_data, pi_model))
    np.testing.assert_allclose(losses.nc_shuffled_loss(z, x), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="unshuffled"):
        losses.nc_shuffled_loss(z, x, shift=3)


def test_nc_mse_with_wrap_equals_official_definition_and_without_wrap_the_loops():
    z, p = _recorded(), _sigmoid(_logits((K, T, NV))).astype(np.float32)
    np.testing.assert_allclose(
        losses.nc_mse_loss(z, p, num_delays=3, wrap=True),
        _official_nc_mse(z, p, 3),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        losses.nc_mse_loss(z, p, num_delays=3, wrap=False), _no_wrap_nc_mse(z, p, 3), rtol=1e-5
    )


def test_single_trial_matches_eq_14():
    z, x = _recorded(), _logits((K, T, NV))
    expected = np.mean(_ce(z[:, 4:], _sigmoid(x[:, 4:])))
    np.testing.assert_allclose(losses.single_trial_loss(z, x, 4), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="clamp_until"):
        losses.single_trial_loss(z, x, T)


def test_sm_h_paper_and_official_match_numpy():
    x = _logits((K, T, NH))
    targets = np.array([0.2, 0.05])
    rates = _sigmoid(x).mean(axis=(0, 1))
    np.testing.assert_allclose(
        losses.sm_h_loss(targets, x), np.mean(_ce(targets, rates)), rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.sm_h_loss(targets, x, "mse"), np.mean((targets - rates) ** 2), rtol=1e-5
    )
    spikes = _recorded(3, (K, T, NH))
    np.testing.assert_allclose(
        losses.sm_h_official_loss(spikes),
        np.mean((spikes.mean(axis=(0, 1)) - 0.17) ** 2),
        rtol=1e-5,
    )


def test_generic_sample_and_measure_loss():
    z, p = _recorded(), _sigmoid(_logits((K, T, NV))).astype(np.float32)

    def statistic(x):
        return {"psth": statistics.psth(x), "rate": statistics.mean_rate(x)}

    squares = np.concatenate(
        [((z.mean(0) - p.mean(0)) ** 2).ravel(), ((z.mean((0, 1)) - p.mean((0, 1))) ** 2)]
    )
    np.testing.assert_allclose(
        losses.sample_and_measure_loss(statistic, z, p), squares.mean(), rtol=1e-5
    )
    ce = np.concatenate([_ce(z.mean(0), p.mean(0)).ravel(), _ce(z.mean((0, 1)), p.mean((0, 1)))])
    np.testing.assert_allclose(
        losses.sample_and_measure_loss(statistic, z, p, "ce"), ce.mean(), rtol=1e-5
    )


# ----------------------------------------------------------------------------------------------
# Saturation: logits of +-50 (p = 1 - 2e-22 or 2e-22 in float32).


def _saturated_logits(shape):
    signs = np.where(np.random.default_rng(5).uniform(size=shape) < 0.5, -1.0, 1.0)
    return (50.0 * signs).astype(np.float32)


@pytest.mark.parametrize(
    "loss",
    [
        losses.mle_loss,
        losses.psth_loss,
        lambda z, x: losses.psth_loss(z, x, "mse"),
        losses.nc_loss,
        losses.nc_shuffled_loss,
        lambda z, x: losses.nc_mse_loss(z, jax.nn.sigmoid(x), num_delays=2),
        lambda z, x: losses.single_trial_loss(z, x, 2),
        lambda z, x: losses.sm_h_loss(z.mean((0, 1)), x),
        lambda z, x: losses.elbo_sm_loss(z, jnp.stack([x, -x], axis=1)),
    ],
)
@pytest.mark.parametrize("logits", ["mixed", "all +50", "all -50"])
def test_losses_and_gradients_stay_finite_at_saturation(loss, logits):
    z = _recorded()
    x = {
        "mixed": _saturated_logits((K, T, NV)),
        "all +50": np.full((K, T, NV), 50.0, np.float32),
        "all -50": np.full((K, T, NV), -50.0, np.float32),
    }[logits]
    value, gradient = jax.value_and_grad(loss, argnums=1)(z, x)
    assert np.isfinite(value)
    assert np.all(np.isfinite(gradient))


def test_saturated_nc_is_computed_in_log_space():
    # All logits -50: pi^phi = sigma(-50)^2 ~ 3.7e-44 underflows in float32 (denormal), but
    # log pi^phi = -100 is exact in log space, and every data pair with a coincidence pays it.
    z = np.zeros((2, 4, 2), np.float32)
    z[0, 0] = 1.0  # one coincidence of the pair in 8 bins: pi^D = 1/8
    x = np.full((2, 4, 2), -50.0, np.float32)
    log_pi = 2 * np.log(_sigmoid(-50.0))
    expected = -(1 / 8) * log_pi  # (1 - pi^D) log(1 - pi^phi) ~ 0
    np.testing.assert_allclose(losses.nc_loss(z, x), expected, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Objectives.


def _outputs(seed=0, clamped_samples=None):
    rng = np.random.default_rng(seed)
    n = NV + NH

    def sim(shape):
        logits = rng.normal(0, 1.5, shape).astype(np.float32)
        spikes = (rng.uniform(size=shape) < _sigmoid(logits)).astype(np.float32)
        return network.SimulationOutputs(spikes=jnp.asarray(spikes), logits=jnp.asarray(logits))

    clamped_shape = (K, T, n) if clamped_samples is None else (K, clamped_samples, T, n)
    return model.PassOutputs(
        clamped=sim(clamped_shape), free=sim((4, T, n)), clamped_until=sim((K, T, n))
    )


def test_presets_have_the_documented_weights_and_passes():
    expected = {
        "mle": {"mle": 1.0},
        "psth": {"psth": 1.0},
        "mle_psth": {"mle": 0.5, "psth": 0.5},
        "psth_nc": {"psth": 0.11, "nc": 0.89},
        "mle_psth_nc": {"mle": 0.4, "psth": 0.1, "nc": 0.5},
        "mle_psth_nc_mse": {"mle": 0.4, "psth": 0.1, "nc_mse": 50.0},
        "mle_sm_h": {"elbo": 1.0, "sm_h": 1e-3},
        "elbo_sm_h": {"elbo": 1.0, "sm_h": 1e-3},
        "mle_sm_h_psth_nc": {"elbo": 0.2, "psth": 0.1, "nc": 0.7, "sm_h": 1e-3},
        "elbo_sm_h_psth_nc_mse": {"elbo": 0.4, "psth": 0.1, "nc_mse": 50.0, "sm_h": 1e-3},
        "mle_single_trial_nc": {"mle": 1.0, "single_trial": 1.0, "nc": 1.0},
    }
    assert set(expected) == set(losses.PRESETS)
    for preset, weights in expected.items():
        objective = losses.make_objective(
            preset,
            num_visible=NV,
            num_hidden=NH,
            clamp_until=4 if preset == "mle_single_trial_nc" else None,
        )
        assert list(objective.terms) == list(weights), preset
        for name, weight in weights.items():
            assert objective.weights[name].dtype == jnp.float32
            np.testing.assert_allclose(objective.weights[name], weight, rtol=1e-6)
    synthetic = losses.make_objective("mle_psth_nc", num_visible=NV, dataset="synthetic")
    np.testing.assert_allclose(
        [synthetic.weights[n] for n in ("mle", "psth", "nc")], [0.2, 0.1, 0.7], rtol=1e-6
    )
    # Passes: the retina preset needs no fully clamped pass.
    retina = losses.make_objective("mle_single_trial_nc", num_visible=NV, clamp_until=4)
    assert retina.passes == model.Passes(clamped=0, free=True, clamp_until=4)
    assert losses.make_objective("mle", num_visible=NV).passes == model.Passes(clamped=1)
    elbo_sm = losses.make_objective(
        "elbo_sm_h", num_visible=NV, num_hidden=NH, num_samples=3, elbo_sm=True
    )
    assert list(elbo_sm.terms) == ["elbo_sm", "sm_h"]
    assert elbo_sm.passes == model.Passes(clamped=3)


def test_free_from_zeros_reaches_the_objectives_passes():
    objective = losses.make_objective("mle_psth_nc", num_visible=NV, free_from_zeros=True)
    assert objective.passes == model.Passes(clamped=1, free=True, free_from_zeros=True)
    # Kept through with_weights and through a jitted step (the objective is a pytree).
    assert objective.with_weights(nc=0.0).passes.free_from_zeros
    leaves, tree = jax.tree.flatten(objective)
    assert jax.tree.unflatten(tree, leaves).passes.free_from_zeros
    assert not losses.make_objective("mle_psth_nc", num_visible=NV).passes.free_from_zeros


def test_make_objective_errors():
    with pytest.raises(ValueError, match="mle_psth_nc_mse"):  # lists the valid presets
        losses.make_objective("nope", num_visible=NV)
    with pytest.raises(ValueError, match="nc_mse"):
        losses.make_objective("mle_psth_nc", num_visible=NV, weights={"nc_mse": 1.0})
    with pytest.raises(ValueError, match="clamp_until"):
        losses.make_objective("mle_single_trial_nc", num_visible=NV)
    with pytest.raises(ValueError, match="num_hidden"):
        losses.make_objective("mle_sm_h", num_visible=NV)
    with pytest.raises(ValueError, match="unknown options"):
        losses.make_objective("mle", num_visible=NV, colour="red")
    with pytest.raises(ValueError, match="no term"):
        losses.make_objective("mle", num_visible=NV).with_weights(psth=1.0)


@pytest.mark.parametrize("preset", ["mle_psth_nc_mse", "mle_sm_h_psth_nc", "mle_single_trial_nc"])
def test_composite_objective_equals_hand_weighted_sum_of_numpy_terms(preset):
    outputs, z = _outputs(), _recorded()
    weights = {"psth": 0.3} if preset != "mle_single_trial_nc" else {"single_trial": 2.5}
    objective = losses.make_objective(
        preset,
        num_visible=NV,
        num_hidden=NH,
        weights=weights,
        clamp_until=4 if preset == "mle_single_trial_nc" else None,
        num_delays=2,
        seed=7,
    )
    total, values = objective(outputs, z)
    clamped = outputs.clamped.logits[..., :NV]
    free_p = _sigmoid(outputs.free.logits[..., :NV])
    until = outputs.clamped_until.logits[..., :NV]
    partners = np.random.default_rng(7).integers(0, NV, size=NH)  # the documented draw
    oracle = {
        "mle": np.mean(_ce(z, _sigmoid(clamped))),
        "elbo": np.mean(_ce(z, _sigmoid(clamped))),
        "psth": np.mean(_ce(z.mean(0), free_p.mean(0))),
        "nc": _mean_off_diagonal(_ce(_coincidences(z, z), _coincidences(free_p, free_p))),
        "nc_mse": _no_wrap_nc_mse(z, free_p, 2),
        "sm_h": np.mean(
            _ce(z.mean((0, 1))[partners], _sigmoid(outputs.free.logits[..., NV:]).mean((0, 1)))
        ),
        "single_trial": np.mean(_ce(z[:, 4:], _sigmoid(until[:, 4:]))),
    }
    if preset == "mle_single_trial_nc":
        oracle["mle"] = np.mean(_ce(z[:, :4], _sigmoid(until[:, :4])))
    assert set(values) == set(objective.terms)
    for name, value in values.items():
        np.testing.assert_allclose(value, oracle[name], rtol=1e-5, err_msg=name)
    hand = sum(float(objective.weights[name]) * float(values[name]) for name in values)
    np.testing.assert_allclose(total, hand, rtol=1e-6)
    if preset != "mle_single_trial_nc":
        np.testing.assert_allclose(objective.weights["psth"], 0.3)


def test_official_sm_h_variant_and_sample_axis():
    outputs = _outputs(clamped_samples=2)
    z = _recorded()
    objective = losses.make_objective(
        "elbo_sm_h", num_visible=NV, num_hidden=NH, num_samples=2, sm_h_variant="official"
    )
    assert objective.passes == model.Passes(clamped=2)
    _, values = objective(outputs, z)
    hidden_spikes = np.asarray(outputs.clamped.spikes)[..., NV:]
    np.testing.assert_allclose(
        values["sm_h"], np.mean((hidden_spikes.mean(axis=(0, 1, 2)) - 0.17) ** 2), rtol=1e-5
    )
    logits = np.asarray(outputs.clamped.logits)[..., :NV]
    np.testing.assert_allclose(
        values["elbo"], np.mean(_ce(z[:, None], _sigmoid(logits))), rtol=1e-5
    )


def test_partners_are_reproducible():
    a = losses.draw_partners(5, 7, seed=3)
    assert a == losses.draw_partners(5, 7, seed=3)
    assert len(a) == 7 and all(0 <= j < 5 for j in a)
    assert a != losses.draw_partners(5, 7, seed=4)


def test_objective_is_a_pytree_of_weights_and_changing_them_does_not_retrace():
    objective = losses.make_objective("mle_psth_nc", num_visible=NV)
    leaves, treedef = jax.tree.flatten(objective)
    assert len(leaves) == 3 and all(leaf.shape == () for leaf in leaves)
    traces = []

    @jax.jit
    def loss(objective, outputs, recorded):
        traces.append(1)
        return objective(outputs, recorded)

    outputs, z = _outputs(), _recorded()
    total_1, values_1 = loss(objective, outputs, z)
    heavier = objective.with_weights(nc=5.0, mle=0.0)
    total_2, values_2 = loss(heavier, outputs, z)
    assert len(traces) == 1
    np.testing.assert_allclose(total_2, 0.1 * values_2["psth"] + 5.0 * values_2["nc"], rtol=1e-6)
    np.testing.assert_allclose(values_1["nc"], values_2["nc"], rtol=1e-6)
    assert float(objective.weights["nc"]) == pytest.approx(0.5)  # the original is unchanged


def test_compose_with_a_user_statistic():
    def count_statistic(x):
        return {"counts": statistics.population_count_distribution(x)}

    term = losses.sample_and_measure(count_statistic, "mse")
    objective = losses.compose({"mle": (0.5, losses.MLETerm()), "counts": (2.0, term)})
    assert objective.passes == model.Passes(clamped=1, free=True)
    outputs, z = _outputs(), _recorded()
    total, values = objective(outputs, z)
    free_p = _sigmoid(outputs.free.logits[..., :NV])
    # Poisson-binomial of every bin by brute force, mean over bins.
    model_counts = np.zeros(NV + 1)
    for kk, tt in itertools.product(range(4), range(T)):
        for bits in itertools.product([0, 1], repeat=NV):
            bits = np.array(bits)
            model_counts[bits.sum()] += np.prod(np.where(bits, free_p[kk, tt], 1 - free_p[kk, tt]))
    model_counts /= 4 * T
    data_counts = np.bincount(z.sum(-1).astype(int).ravel(), minlength=NV + 1) / (K * T)
    np.testing.assert_allclose(
        values["counts"], np.mean((data_counts - model_counts) ** 2), rtol=1e-5
    )
    np.testing.assert_allclose(total, 0.5 * values["mle"] + 2.0 * values["counts"], rtol=1e-6)


class _Encoder(nn.Module):
    """Two frames per bin through one dense layer (receptive field 2)."""

    receptive_field = 2

    @nn.compact
    def __call__(self, stimulus):
        flat = stimulus.reshape(stimulus.shape[0], -1)
        return nn.Dense(4)(jnp.concatenate([flat[:-1], flat[1:]], axis=1))


def test_grad_through_a_user_statistic_reaches_every_parameter():
    def population_statistic(x):
        # A statistic the user wrote: the distribution of population counts per bin, and
        # the lag-0 synchrony of the first two neurons.
        return {
            "counts": statistics.population_count_distribution(x),
            "synchrony": jnp.mean(x[..., 0] * x[..., 1]),
        }

    term = losses.sample_and_measure(population_statistic, "mse")
    objective = losses.compose({"counts": (1.0, term)})
    m = model.Model(_Encoder(), network.NetworkConfig(num_visible=NV, num_hidden=NH, num_delays=2))
    stimulus = np.random.default_rng(0).normal(size=(T + 1, 2, 2)).astype(np.float32)
    params = model.init_model(jax.random.key(0), m, stimulus.shape)
    z = _recorded()

    def loss(params):
        outputs = model.run_passes(
            params, m, stimulus, z, passes=objective.passes, key=jax.random.key(1)
        )
        return objective(outputs, z)[0]

    gradients = jax.jit(jax.grad(loss))(params)
    for path, leaf in jax.tree_util.tree_leaves_with_path(gradients):
        assert np.all(np.isfinite(leaf)), path
        assert np.any(leaf != 0), path


def test_every_preset_runs_on_run_passes_and_is_differentiable():
    m = model.Model(_Encoder(), network.NetworkConfig(num_visible=NV, num_hidden=NH, num_delays=2))
    stimulus = np.random.default_rng(0).normal(size=(T + 1, 2, 2)).astype(np.float32)
    params = model.init_model(jax.random.key(0), m, stimulus.shape)
    z = _recorded()
    objectives = [
        losses.make_objective(
            preset,
            num_visible=NV,
            num_hidden=NH,
            clamp_until=4 if preset == "mle_single_trial_nc" else None,
            num_delays=2,
        )
        for preset in losses.PRESETS
    ]
    passes = objectives[0].passes
    for objective in objectives[1:]:
        passes = passes.merge(objective.passes)

    def totals(params):
        # One simulation of every pass, then every preset on it: one compilation in all.
        outputs = model.run_passes(params, m, stimulus, z, passes=passes, key=jax.random.key(2))
        return jnp.stack([objective(outputs, z)[0] for objective in objectives])

    values, jacobian = jax.jit(lambda p: (totals(p), jax.jacrev(totals)(p)))(params)
    assert np.all(np.isfinite(values))
    for leaf in jax.tree.leaves(jacobian):
        assert np.all(np.isfinite(leaf))
    bias = np.asarray(jacobian.network.bias)  # [num_presets, N]
    assert np.all(np.any(bias != 0, axis=1)), dict(zip(losses.PRESETS, bias))


def test_missing_pass_is_reported():
    outputs = _outputs()._replace(free=None)
    objective = losses.make_objective("psth", num_visible=NV)
    with pytest.raises(ValueError, match="'free' pass"):
        objective(outputs, _recorded())
