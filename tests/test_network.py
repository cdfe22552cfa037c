import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rsnn_jax import network
from tests.helpers import numpy_simulate

NUM_FEATURES, NUM_BINS = 4, 12


def _setup(num_visible, num_hidden, num_delays=3, seed=0, scale=1.5):
    config = network.NetworkConfig(num_visible, num_hidden, num_delays)
    params = network.init_params(jax.random.key(seed), config, NUM_FEATURES)
    # Stronger recurrence than the default init so that history visibly matters.
    params = params._replace(
        recurrent_weights=params.recurrent_weights * scale * np.sqrt(num_delays),
        bias=jnp.linspace(-0.2, 0.3, config.num_neurons),
    )
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(NUM_BINS, NUM_FEATURES)).astype(np.float32)
    noise = rng.uniform(size=(NUM_BINS, config.num_neurons)).astype(np.float32)
    recorded = (rng.uniform(size=(NUM_BINS, num_visible)) < 0.4).astype(np.float32)
    history = (rng.uniform(size=(num_delays, config.num_neurons)) < 0.5).astype(np.float32)
    return config, params, features, noise, recorded, history


def _oracle(config, params, features, noise, **kwargs):
    w_in, w_official, b = (np.asarray(a, np.float64) for a in network.to_official(params))
    return numpy_simulate(
        w_in, w_official, b, features, noise, num_visible=config.num_visible, **kwargs
    )


MODES = {
    "free": {},
    "clamped": {"recorded": True},
    "clamped_until": {"recorded": True, "clamp_until": 5},
}


@pytest.mark.parametrize("num_hidden", [0, 3])
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("with_history", [False, True])
def test_simulate_equals_numpy_loop(num_hidden, mode, with_history):
    config, params, features, noise, recorded, history = _setup(4, num_hidden)
    kwargs = dict(MODES[mode])
    if kwargs.pop("recorded", False):
        kwargs["recorded"] = recorded
    if with_history:
        kwargs["initial_history"] = history
    out = network.simulate(params, features, config=config, noise=noise, **kwargs)
    spikes, logits = _oracle(config, params, features, noise, **kwargs)
    np.testing.assert_array_equal(out.spikes, spikes)
    np.testing.assert_allclose(out.logits, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.probabilities, 1 / (1 + np.exp(-logits)), atol=1e-6)
    assert out.spikes.sum() > 0  # a run with no spike would not test the recurrence


def test_visible_only_history_pads_hidden_with_zeros():
    config, params, features, noise, recorded, history = _setup(4, 3)
    out = network.simulate(
        params, features, config=config, noise=noise, initial_history=history[:, :4]
    )
    padded = history.copy()
    padded[:, 4:] = 0
    spikes, _ = _oracle(config, params, features, noise, initial_history=padded)
    np.testing.assert_array_equal(out.spikes, spikes)


def test_step_loop_equals_simulate():
    config, params, features, noise, recorded, history = _setup(4, 2)
    out = network.simulate(
        params,
        features,
        config=config,
        noise=noise,
        recorded=recorded,
        clamp_until=6,
        initial_history=history,
    )
    state = jnp.asarray(history[::-1])  # step takes the delay-order buffer
    for t in range(NUM_BINS):
        state, bin_out = network.step(
            params, config, state, features[t], noise[t], recorded[t], t < 6
        )
        np.testing.assert_array_equal(bin_out.spikes, out.spikes[t])
        np.testing.assert_allclose(bin_out.logits, out.logits[t], rtol=1e-5, atol=1e-6)


def test_clamped_logits_do_not_depend_on_key():
    config, params, features, _, recorded, history = _setup(5, 0)
    runs = [
        network.simulate(
            params,
            features,
            config=config,
            key=jax.random.key(k),
            recorded=recorded,
            initial_history=history,
        )
        for k in range(3)
    ]
    for run in runs[1:]:
        np.testing.assert_array_equal(run.logits, runs[0].logits)
    # And they are the closed-form logits computed from the recorded history alone.
    w_in, w_official, b = (np.asarray(a, np.float64) for a in network.to_official(params))
    padded = np.concatenate([history, recorded])  # [D + T, N]
    d = config.num_delays
    for t in range(NUM_BINS):
        past = padded[t : t + d]  # chronological, last row = bin t − 1
        u = features[t] @ w_in + b + np.einsum("jis,si->j", w_official, past)
        np.testing.assert_allclose(runs[0].logits[t], (u - 0.4) / 0.4, rtol=1e-5, atol=1e-5)


def test_one_delay_weight_moves_exactly_its_bin():
    # Official layout: slot D-1 is delay 1. Put a single weight on delay 2 (slot D-2) from
    # neuron 0 to neuron 1; a single recorded spike of neuron 0 at bin 3 must raise neuron 1's
    # voltage at bin 5 and nowhere else.
    d, n = 4, 2
    official = np.zeros((n, n, d), np.float32)
    official[1, 0, d - 2] = 0.8
    params = network.from_official(np.zeros((1, n), np.float32), official, np.zeros(n))
    config = network.NetworkConfig(num_visible=n, num_delays=d)
    recorded = np.zeros((10, n), np.float32)
    recorded[3, 0] = 1.0
    out = network.simulate(
        params, np.zeros((10, 1)), config=config, key=jax.random.key(0), recorded=recorded
    )
    voltage = np.asarray(out.logits) * 0.4 + 0.4  # β = 1: u = 0.4 ũ + 0.4
    expected = np.zeros((10, n))
    expected[5, 1] = 0.8
    np.testing.assert_allclose(voltage, expected, atol=1e-6)
    assert params.recurrent_weights[1, 0, 1] == official[1, 0, d - 2]  # [d-1, pre, post]


def test_official_round_trip():
    official = np.random.default_rng(0).normal(size=(5, 5, 7)).astype(np.float32)
    w_in = np.ones((3, 5), np.float32)
    params = network.from_official(w_in, official, np.zeros(5, np.float32))
    _, back, _ = network.to_official(params)
    np.testing.assert_array_equal(back, official)
    for d in range(1, 8):
        np.testing.assert_array_equal(params.recurrent_weights[d - 1], official[:, :, 7 - d].T)


def test_batch_equals_loop_over_trials_and_samples():
    config, params, features, _, recorded, history = _setup(4, 2)
    k, s = 3, 2
    rng = np.random.default_rng(5)
    recorded_batch = (rng.uniform(size=(k, NUM_BINS, 4)) < 0.3).astype(np.float32)
    history_batch = (rng.uniform(size=(k, 3, 6)) < 0.3).astype(np.float32)
    noise = rng.uniform(size=(k, s, NUM_BINS, 6)).astype(np.float32)
    out = network.simulate_batch(
        params,
        features,
        config=config,
        noise=noise,
        recorded=recorded_batch,
        initial_history=history_batch,
        num_samples=s,
        clamp_until=7,
    )
    assert out.spikes.shape == (k, s, NUM_BINS, 6)
    for trial in range(k):
        for sample in range(s):
            one = network.simulate(
                params,
                features,
                config=config,
                noise=noise[trial, sample],
                recorded=recorded_batch[trial],
                initial_history=history_batch[trial],
                clamp_until=7,
            )
            np.testing.assert_array_equal(out.spikes[trial, sample], one.spikes)
            # float32 matmuls batched differently round differently (~1 ulp of |logit| ~ 10)
            np.testing.assert_allclose(out.logits[trial, sample], one.logits, rtol=1e-5, atol=1e-6)


def test_batch_with_per_trial_features_and_key():
    config, params, *_ = _setup(3, 0)
    features = np.random.default_rng(1).normal(size=(2, NUM_BINS, NUM_FEATURES))
    out = network.simulate_batch(params, features, config=config, key=jax.random.key(0))
    noise = jax.random.uniform(jax.random.key(0), (2, NUM_BINS, 3))
    for trial in range(2):
        one = network.simulate(params, features[trial], config=config, noise=noise[trial])
        np.testing.assert_array_equal(out.spikes[trial], one.spikes)


def test_same_key_same_spikes_and_remat_same_gradient():
    config, params, features, _, recorded, _ = _setup(4, 2)

    def loss(p, remat):
        out = network.simulate(
            p,
            features,
            config=config,
            key=jax.random.key(3),
            recorded=recorded,
            clamp_until=4,
            remat=remat,
        )
        return jnp.sum(out.spikes * jnp.arange(6.0)) + jnp.sum(jax.nn.log_sigmoid(out.logits))

    plain = jax.grad(loss)(params, False)
    remat = jax.grad(loss)(params, True)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(remat)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert np.all(np.isfinite(a)) and np.any(a != 0)


def test_jit_does_not_retrace_when_parameter_values_change():
    config, params, features, *_ = _setup(4, 0)
    traces = []

    @jax.jit
    def run(p, key):
        traces.append(1)
        return network.simulate(p, features, config=config, key=key).spikes

    run(params, jax.random.key(0))
    scaled = jax.tree.map(lambda x: x * 1.1, params)
    run(scaled, jax.random.key(1))
    assert len(traces) == 1


def test_clamp_until_is_traceable_without_retrace():
    config, params, features, _, recorded, _ = _setup(4, 0)
    traces = []

    @jax.jit
    def run(until):
        traces.append(1)
        return network.simulate(
            params,
            features,
            config=config,
            key=jax.random.key(0),
            recorded=recorded,
            clamp_until=until,
        ).spikes

    a, b = run(jnp.asarray(3)), run(jnp.asarray(8))
    assert len(traces) == 1
    np.testing.assert_array_equal(a[:3, :4], recorded[:3])
    np.testing.assert_array_equal(b[:8, :4], recorded[:8])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(noise=np.zeros((3, 4))), "noise must have shape"),
        (dict(key=jax.random.key(0), recorded=np.zeros((12, 5))), "recorded must have shape"),
        (dict(key=jax.random.key(0), clamp_until=3), "clamp_until needs recorded"),
        (dict(), "exactly one of key= and noise="),
        (dict(key=jax.random.key(0), initial_history=np.zeros((2, 4))), "initial_history"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, message):
    config, params, features, *_ = _setup(4, 0)
    with pytest.raises(ValueError, match=message):
        network.simulate(params, features, config=config, **kwargs)


def test_init_statistics():
    config = network.NetworkConfig(num_visible=60, num_hidden=40, num_delays=9)
    params = network.init_params(jax.random.key(0), config, 1568)
    assert params.input_weights.shape == (1568, 100)
    assert params.recurrent_weights.shape == (9, 100, 100)
    np.testing.assert_array_equal(params.bias, np.zeros(100))
    # A unit normal truncated at ±2 has std 0.8796 (closed form); scaled by 1/sqrt(fan).
    truncated_std = 0.8796
    np.testing.assert_allclose(
        np.std(params.input_weights), truncated_std / np.sqrt(1568), rtol=0.02
    )
    np.testing.assert_allclose(
        np.std(params.recurrent_weights), truncated_std / np.sqrt(900), rtol=0.02
    )
    assert np.abs(params.recurrent_weights).max() <= 2 / np.sqrt(900) + 1e-7


def test_parallel_clamped_path_equals_scan_with_gradients():
    # Fully clamped without hidden neurons takes a parallel matmul path; clamp_until=T forces
    # the sequential scan. Values and gradients must agree.
    config, params, features, noise, recorded, history = _setup(5, 0)

    def run(p, clamp_until):
        out = network.simulate(
            p,
            features,
            config=config,
            noise=noise,
            recorded=recorded,
            initial_history=history,
            clamp_until=clamp_until,
        )
        return jnp.sum(jax.nn.log_sigmoid(out.logits) * (1 + jnp.arange(5.0))), out

    (value_par, out_par), grad_par = jax.value_and_grad(run, has_aux=True)(params, None)
    (value_seq, out_seq), grad_seq = jax.value_and_grad(run, has_aux=True)(params, NUM_BINS)
    np.testing.assert_array_equal(out_par.spikes, out_seq.spikes)
    np.testing.assert_allclose(out_par.logits, out_seq.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value_par, value_seq, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grad_par), jax.tree.leaves(grad_seq)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("num_hidden", [0, 3])
@pytest.mark.parametrize("clamp_until", [None, 0, 5, NUM_BINS])
@pytest.mark.parametrize("remat", [False, True])
def test_hand_written_vjp_equals_autodiff_through_a_step_loop(num_hidden, clamp_until, remat):
    # simulate's scan has a hand-written backward pass; the oracle is plain JAX autodiff
    # through a Python loop of `step` (straight-through spikes, no custom VJP). The loss uses
    # spikes and logits with distinct weights per bin and neuron, so every path of the
    # gradient (through spikes into later bins, through the clamped data, directly through
    # the logits) is exercised. clamp_until=0 is free running, None fully clamped.
    config, params, features, noise, recorded, history = _setup(4, num_hidden)
    n = config.num_neurons
    rng = np.random.default_rng(7)
    spike_weights = rng.normal(size=(NUM_BINS, n)).astype(np.float32)
    logit_weights = rng.normal(size=(NUM_BINS, n)).astype(np.float32)

    def objective(spikes, logits):
        return jnp.sum(spike_weights * spikes) + jnp.sum(logit_weights * jax.nn.log_sigmoid(logits))

    def scan_loss(p, f, rec, hist):
        out = network.simulate(
            p,
            f,
            config=config,
            noise=noise,
            recorded=rec,
            clamp_until=clamp_until,
            initial_history=hist,
            remat=remat,
        )
        return objective(out.spikes, out.logits)

    def loop_loss(p, f, rec, hist):
        until = NUM_BINS if clamp_until is None else clamp_until
        state = hist[::-1]
        spikes, logits = [], []
        for t in range(NUM_BINS):
            state, out = network.step(p, config, state, f[t], noise[t], rec[t], t < until)
            spikes.append(out.spikes)
            logits.append(out.logits)
        return objective(jnp.stack(spikes), jnp.stack(logits))

    args = (params, jnp.asarray(features), jnp.asarray(recorded), jnp.asarray(history))
    value, grads = jax.value_and_grad(scan_loss, argnums=(0, 1, 2, 3))(*args)
    value_ref, grads_ref = jax.value_and_grad(loop_loss, argnums=(0, 1, 2, 3))(*args)
    np.testing.assert_allclose(value, value_ref, rtol=1e-5)
    leaves, leaves_ref = jax.tree.leaves(grads), jax.tree.leaves(grads_ref)
    assert len(leaves) == len(leaves_ref) == 6
    for a, b in zip(leaves, leaves_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # Not vacuous: the recurrent weights and the history receive gradient through spikes.
    assert np.any(np.asarray(grads[0].recurrent_weights) != 0)
    assert np.any(np.asarray(grads[3]) != 0)


@pytest.mark.parametrize("clamp_until", [None, 5])
def test_numpy_parameters_give_the_same_run(clamp_until):
    # A target loaded from a file holds NumPy arrays; every path (the parallel clamped one
    # loops over delays with a traced index) must accept them.
    config, params, features, noise, recorded, history = _setup(4, 0)
    as_numpy = jax.tree.map(np.asarray, params)
    kwargs = dict(config=config, noise=noise, recorded=recorded, initial_history=history)
    out = network.simulate(as_numpy, features, clamp_until=clamp_until, **kwargs)
    ref = network.simulate(params, features, clamp_until=clamp_until, **kwargs)
    np.testing.assert_array_equal(out.spikes, ref.spikes)
    np.testing.assert_array_equal(out.logits, ref.logits)
