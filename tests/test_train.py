import os
import re
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rsnn_jax import losses, model, network, train
from rsnn_jax.data.batching import Batch

K, T, NV, NH, D = 4, 12, 4, 2, 3


class TinyEncoder(nn.Module):
    receptive_field = 2

    @nn.compact
    def __call__(self, stimulus):
        flat = stimulus.reshape(stimulus.shape[0], -1)
        return nn.relu(nn.Dense(6)(jnp.concatenate([flat[:-1], flat[1:]], axis=1)))


def _model(num_hidden=NH):
    return model.Model(TinyEncoder(), network.NetworkConfig(NV, num_hidden, D))


def _batch(seed=0, per_trial=False):
    rng = np.random.default_rng(seed)
    shape = (K, T + 1, 3, 3) if per_trial else (T + 1, 3, 3)
    return Batch(
        stimulus=rng.normal(size=shape).astype(np.float32),
        spikes=(rng.uniform(size=(K, T, NV)) < 0.3).astype(np.float32),
        history=(rng.uniform(size=(K, D, NV)) < 0.3).astype(np.float32),
    )


def _objective(preset, num_hidden=NH):
    clamp = 6 if preset == "mle_single_trial_nc" else None
    return losses.make_objective(
        preset, num_visible=NV, num_hidden=num_hidden, clamp_until=clamp, num_delays=D
    )


@pytest.mark.parametrize("preset", losses.PRESETS)
def test_one_step_changes_every_parameter_for_every_preset(preset):
    m = _model()
    params = model.init_model(jax.random.key(0), m, (T + 1, 3, 3))
    optimizer = train.make_optimizer(train.TrainConfig(learning_rate=1e-2))
    step = train.make_train_step(m, optimizer)
    state = train.init_train_state(params, optimizer)
    before = jax.tree.map(np.array, state.params)
    new_state, terms, finite = step(state, _objective(preset), _batch(), jax.random.key(1))
    assert bool(finite)
    assert set(terms) == set(_objective(preset).terms) | {"total"}
    for name, value in terms.items():
        assert np.isfinite(value), name
    changed = jax.tree.map(lambda a, b: bool(np.any(a != np.asarray(b))), before, new_state.params)
    flat = jax.tree_util.tree_flatten_with_path(changed)[0]
    unchanged = [jax.tree_util.keystr(path) for path, c in flat if not c]
    assert not unchanged, f"{preset}: parameters not updated: {unchanged}"
    assert int(new_state.step) == 1


def test_per_trial_stimulus_batches_train():
    m = _model(0)
    params = model.init_model(jax.random.key(0), m, (T + 1, 3, 3))
    optimizer = train.make_optimizer(train.TrainConfig())
    step = train.make_train_step(m, optimizer)
    state = train.init_train_state(params, optimizer)
    _, terms, finite = step(state, _objective("mle", 0), _batch(per_trial=True), jax.random.key(1))
    assert bool(finite) and np.isfinite(terms["total"])


def test_changing_weights_does_not_retrace():
    m = _model(0)
    params = model.init_model(jax.random.key(0), m, (T + 1, 3, 3))
    optimizer = train.make_optimizer(train.TrainConfig())
    traces = []

    def loss(p, objective):
        traces.append(1)
        return train.objective_loss(p, m, objective, _batch(), jax.random.key(0))[0]

    jitted = jax.jit(loss)
    objective = _objective("mle_psth_nc", 0)
    a = jitted(params, objective)
    b = jitted(params, objective.with_weights(mle=3.0, nc=0.0))
    assert len(traces) == 1 and a != b
    del optimizer


def test_per_variable_clipping_matches_numpy():
    grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.3, 0.4]), "c": jnp.array([[6.0, 8.0]])}
    clip = train._clip_each(1.0)
    clipped, _ = clip.update(grads, clip.init(grads))
    np.testing.assert_allclose(clipped["a"], [0.6, 0.8], rtol=1e-6)  # norm 5 -> 1
    np.testing.assert_allclose(clipped["b"], [0.3, 0.4], rtol=1e-6)  # norm 0.5 kept
    np.testing.assert_allclose(clipped["c"], [[0.6, 0.8]], rtol=1e-6)
    glob = optax.clip_by_global_norm(1.0)
    g, _ = glob.update(grads, glob.init(grads))
    total = np.sqrt(25 + 0.25 + 100)
    np.testing.assert_allclose(g["a"], np.array([3.0, 4.0]) / total, rtol=1e-6)


def _fit(tmp_path, num_steps, resume=False, batches=None, objective=None, log=None, **kwargs):
    m = _model()
    params = model.init_model(jax.random.key(0), m, (T + 1, 3, 3))
    config = train.TrainConfig(
        **{
            "num_steps": num_steps,
            "learning_rate": 1e-2,
            "eval_every": 2,
            "checkpoint_every": 2,
            "log_every": 1,
            "seed": 3,
            **kwargs,
        }
    )

    def default_batches(position):
        while True:
            yield _batch(position)
            position += 1

    return train.fit(
        model=m,
        params=params,
        objective=objective or _objective("mle_psth_nc"),
        batches=batches or default_batches,
        config=config,
        workdir=str(tmp_path),
        validation=_batch(99),
        resume=resume,
        log=log or (lambda line: None),
    )


def test_progress_lines_give_elapsed_time_and_eta(tmp_path):
    lines = []
    _fit(tmp_path, 4, log=lines.append)
    progress = [line for line in lines if "steps/s" in line]
    assert len(progress) == 4  # log_every=1
    assert all(re.search(r"elapsed \d+:\d\d:\d\d, ETA \d+:\d\d:\d\d\)$", p) for p in progress)
    assert progress[-1].endswith("ETA 0:00:00)")  # nothing left after the last step


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A 6-step fit that nothing interrupts (the reference of the resume tests)."""
    return _fit(tmp_path_factory.mktemp("uninterrupted"), 6)


def test_kill_and_resume_gives_the_same_parameters(tmp_path, uninterrupted):
    _fit(tmp_path / "b", 4)  # "killed" after step 4 (its last checkpoint)
    resumed = _fit(tmp_path / "b", 6, resume=True)
    assert int(resumed.state.step) == 6
    for x, y in zip(jax.tree.leaves(uninterrupted.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(
        jax.tree.leaves(uninterrupted.best_params), jax.tree.leaves(resumed.best_params)
    ):
        np.testing.assert_array_equal(x, y)
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # evaluations at steps 2, 4, 6 across both runs


def test_sigint_checkpoints_the_last_step_and_resume_matches_an_uninterrupted_fit(
    tmp_path, uninterrupted
):

    def interrupted_at_3(position):
        while True:
            if position == 3:  # Ctrl-C while step 3 (0-based) runs
                os.kill(os.getpid(), signal.SIGINT)
            yield _batch(position)
            position += 1

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(train.Interrupted, match="SIGINT after step 4: checkpoint .*--resume"):
        _fit(tmp_path / "b", 6, batches=interrupted_at_3, checkpoint_every=100)
    # The previous handler is back (Python's default, a KeyboardInterrupt, in a terminal;
    # SIG_IGN in a shell's background job).
    assert signal.getsignal(signal.SIGINT) is before
    resumed = _fit(tmp_path / "b", 6, resume=True, checkpoint_every=100)
    for x, y in zip(jax.tree.leaves(uninterrupted.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(x, y)


def test_checkpoint_round_trip(tmp_path):
    result = _fit(tmp_path, 2)
    template = result.state
    state, info = train.load_checkpoint(str(tmp_path / "checkpoints" / "latest.msgpack"), template)
    for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(result.state)):
        np.testing.assert_array_equal(x, y)
    assert info["data_position"] == 2 and info["seed"] == 3
    assert os.path.exists(tmp_path / "checkpoints" / "best.msgpack")
    assert not [p for p in os.listdir(tmp_path / "checkpoints") if ".tmp" in p]
    # Without keep_checkpoints only latest and best are written.
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["best.msgpack", "latest.msgpack"]


def test_kept_checkpoints_hold_the_parameters_of_their_step(tmp_path):
    result = _fit(tmp_path, 4, keep_checkpoints=True)
    folder = tmp_path / "checkpoints"
    assert sorted(p for p in os.listdir(folder) if p.startswith("step_")) == [
        "step_000002.msgpack",
        "step_000004.msgpack",
    ]
    early, _ = train.load_checkpoint(str(folder / "step_000002.msgpack"), result.state)
    last, _ = train.load_checkpoint(str(folder / "step_000004.msgpack"), result.state)
    assert int(early.step) == 2 and int(last.step) == 4
    for x, y in zip(jax.tree.leaves(last), jax.tree.leaves(result.state)):
        np.testing.assert_array_equal(x, y)


def test_nan_in_data_stops_with_message_and_intact_checkpoint(tmp_path):
    _fit(tmp_path, 2)
    latest = tmp_path / "checkpoints" / "latest.msgpack"
    saved = latest.read_bytes()

    def poisoned(position):
        while True:
            batch = _batch(position)
            spikes = batch.spikes.copy()
            spikes[0, 0, 0] = np.nan
            yield batch._replace(spikes=spikes)
            position += 1

    with pytest.raises(train.TrainingDiverged, match="diverged at step 2.*intact"):
        _fit(tmp_path, 6, resume=True, batches=poisoned)
    assert latest.read_bytes() == saved


def test_nan_loss_stops_with_message_and_intact_checkpoint(tmp_path):
    _fit(tmp_path, 2)
    latest = tmp_path / "checkpoints" / "latest.msgpack"
    saved = latest.read_bytes()
    # Clean data, but a loss term whose value is NaN (here through its weight).
    poisoned = _objective("mle_psth_nc").with_weights(nc=float("nan"))
    with pytest.raises(train.TrainingDiverged, match="diverged at step 2.*intact"):
        _fit(tmp_path, 6, resume=True, objective=poisoned)
    assert latest.read_bytes() == saved


def test_resume_with_another_seed_is_refused(tmp_path):
    _fit(tmp_path, 2)
    m = _model()
    params = model.init_model(jax.random.key(0), m, (T + 1, 3, 3))
    with pytest.raises(ValueError, match="seed 3, not 4"):
        train.fit(
            model=m,
            params=params,
            objective=_objective("mle_psth_nc"),
            batches=lambda p: iter([_batch()] * 10),
            config=train.TrainConfig(num_steps=4, seed=4),
            workdir=str(tmp_path),
            resume=True,
            log=lambda line: None,
        )


def test_early_stopping_keeps_best(tmp_path):
    result = _fit(tmp_path, 40, patience=1)
    assert result.stopped_early
    assert result.best_step <= int(result.state.step)
    assert result.best_validation == min(r["validation"]["total"] for r in result.history)


def test_warmup_cosine_schedule_values():
    config = train.TrainConfig(
        num_steps=100,
        learning_rate=4e-3,
        schedule="warmup_cosine",
        warmup_steps=10,
        final_lr_fraction=0.25,
    )
    schedule = train.make_schedule(config)
    peak, end = 4e-3, 1e-3
    assert float(schedule(0)) == 0.0
    np.testing.assert_allclose(float(schedule(5)), peak / 2, rtol=1e-6)  # linear warm-up
    np.testing.assert_allclose(float(schedule(10)), peak, rtol=1e-6)
    # Cosine from the peak at step 10 to `end` at step 100: half-way at step 55.
    np.testing.assert_allclose(float(schedule(55)), end + (peak - end) / 2, rtol=1e-5)
    np.testing.assert_allclose(float(schedule(100)), end, rtol=1e-6)
    constant = train.make_schedule(train.TrainConfig(learning_rate=4e-3))
    assert float(constant(0)) == float(constant(999)) == np.float32(4e-3)


def test_weight_decay_adds_l2_gradient_to_weights_only():
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    zero = jax.tree.map(jnp.zeros_like, params)
    config = train.TrainConfig(weight_decay=0.5, clip_norm=1e9)
    decay = train._add_weight_decay(0.5, ())
    updates, _ = decay.update(zero, decay.init(params), params)
    np.testing.assert_array_equal(updates["kernel"], 0.5 * np.ones((2, 2)))
    np.testing.assert_array_equal(updates["bias"], np.zeros(2))
    # Through the whole optimiser: only the weight moves when the loss gradient is zero.
    optimizer = train.make_optimizer(config)
    updates, _ = optimizer.update(zero, optimizer.init(params), params)
    assert np.all(np.asarray(updates["kernel"]) < 0) and np.all(np.asarray(updates["bias"]) == 0)


def test_weight_decay_scales_exempt_or_scale_matching_weights():
    params = {
        "network": {
            "recurrent_weights": jnp.full((2, 2, 2), 2.0),
            "input_weights": jnp.ones((3, 2)),
        },
        "encoder": {"kernel": jnp.ones((2, 2))},
    }
    zero = jax.tree.map(jnp.zeros_like, params)
    decay = train._add_weight_decay(0.5, (("recurrent", 0.0), ("encoder", 0.1)))
    updates, _ = decay.update(zero, decay.init(params), params)
    np.testing.assert_array_equal(updates["network"]["recurrent_weights"], 0.0)
    np.testing.assert_array_equal(updates["network"]["input_weights"], 0.5)
    np.testing.assert_allclose(updates["encoder"]["kernel"], 0.05, rtol=1e-6)
    config = train.TrainConfig(weight_decay=0.5, weight_decay_scales=(("recurrent", 0.0),))
    assert train.weight_decay_scale(config, "network/recurrent_weights") == 0.0
    assert train.weight_decay_scale(config, "network/input_weights") == 1.0
    with pytest.raises(ValueError, match="--weight_decay_scales: 'x' has scale -1"):
        train.TrainConfig(weight_decay_scales=(("x", -1.0),))


def test_learning_rate_scales_multiply_the_step_of_matching_parameters():
    params = {"temporal": {"kernel": jnp.ones(3)}, "readout": jnp.ones(2), "bias": jnp.ones(2)}
    grads = jax.tree.map(jnp.ones_like, params)
    step = lambda config: train.make_optimizer(config).update(  # noqa: E731
        grads, train.make_optimizer(config).init(params), params
    )[0]
    plain = step(train.TrainConfig(learning_rate=1e-2))
    scaled = step(
        train.TrainConfig(
            learning_rate=1e-2, learning_rate_scales=(("temporal", 0.0), ("out", 0.25))
        )
    )
    np.testing.assert_array_equal(scaled["temporal"]["kernel"], np.zeros(3))
    np.testing.assert_allclose(scaled["readout"], 0.25 * np.asarray(plain["readout"]), rtol=1e-6)
    np.testing.assert_array_equal(scaled["bias"], plain["bias"])
    with pytest.raises(ValueError, match="scale -1"):
        train.TrainConfig(learning_rate_scales=(("temporal", -1.0),))


def _history(losses, every=10):
    return [{"step": every * (i + 1), "validation": {"total": v}} for i, v in enumerate(losses)]


def test_convergence_report_flags_a_run_still_improving():
    losses_ = [5.0, 4.0, 3.0, 2.5, 2.0, 1.8, 1.6]
    report = train.convergence_report(
        _history(losses_), best_step=70, steps_run=70, num_steps=70, stopped_early=False
    )
    assert report["plateaued"] is False
    assert report["trend_per_100_steps"] < 0
    assert "NOT CONVERGED" in report["warning"] and "best at step 70" in report["warning"]
    for field in ("steps_run", "num_steps", "best_step", "evaluations_since_best"):
        assert field in report


def test_convergence_report_accepts_a_plateau():
    losses_ = [5.0, 3.0, 2.0, 2.1, 2.05, 2.2, 2.1, 2.3]  # best at step 30, then 5 worse
    report = train.convergence_report(
        _history(losses_), best_step=30, steps_run=80, num_steps=200, stopped_early=False
    )
    assert report["plateaued"] is True and report["warning"] is None
    assert report["evaluations_since_best"] == 5


def test_fit_reports_convergence(tmp_path):
    result = _fit(tmp_path, 6)
    report = result.convergence
    assert report["steps_run"] == 6 and report["best_step"] == result.best_step
    assert report["evaluations"] == len(result.history)
    # 3 evaluations are fewer than the judging window: never called converged.
    assert report["plateaued"] is False and report["warning"]


def test_keras_adam_epsilon_reproduces_the_tf_formula_over_two_steps():
    # Independent float64 reference of TF 2.3 Keras Adam: ε on sqrt of the uncorrected v,
    # the bias correction in the step size lr_t. TF holds β1, β2 and their powers β^t in
    # float32, and 1 − β2^t magnifies their rounding ~1000×: the reference uses those numbers.
    lr, b1, b2, eps = 1e-3, np.float32(0.9), np.float32(0.999), 1e-7
    grads = [np.array([1e-6, -3e-7, 0.5, -2e-5]), np.array([2e-6, 1e-7, -0.25, 4e-5])]
    m = v = np.zeros(4)
    expected = []
    for t, g in enumerate(grads, start=1):
        b1_t, b2_t = float(b1 ** np.float32(t)), float(b2 ** np.float32(t))
        m = float(b1) * m + (1 - float(b1)) * g
        v = float(b2) * v + (1 - float(b2)) * g**2
        lr_t = lr * np.sqrt(1 - b2_t) / (1 - b1_t)
        expected.append(-lr_t * m / (np.sqrt(v) + eps))
    params = {"w": jnp.zeros(4)}

    def two_steps(adam_epsilon):
        config = train.TrainConfig(learning_rate=lr, clip_norm=1e9, adam_epsilon=adam_epsilon)
        optimizer = train.make_optimizer(config)
        state, out = optimizer.init(params), []
        for g in grads:
            updates, state = optimizer.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
            out.append(np.asarray(updates["w"], np.float64))
        return out

    keras, plain = two_steps("keras"), two_steps("optax")
    for got, want in zip(keras, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    # optax puts ε after the bias correction: at step 1 the small gradients move differently.
    assert np.max(np.abs(plain[0] - expected[0])) > 1e-5
    with pytest.raises(ValueError, match="adam_epsilon"):
        train.TrainConfig(adam_epsilon="tf")


def test_parameter_average_is_the_normalised_weighted_mean_of_the_iterates():
    config = train.TrainConfig(learning_rate=0.1, average_steps=4)
    params = {"w": jnp.zeros((2, 3)), "b": jnp.ones(3)}
    optimizer = train.make_optimizer(config)
    state = train.init_train_state(params, optimizer)
    np.testing.assert_array_equal(train.averaged_params(state, config)["w"], 0.0)  # no step yet
    rng = np.random.default_rng(0)
    iterates = []
    for step in range(5):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        state = train.TrainState(optax.apply_updates(state.params, updates), opt_state, step + 1)
        iterates.append(jax.tree.map(np.asarray, state.params))
    decay = 1 - 1 / 4
    weights = np.array([(1 - decay) * decay ** (4 - i) for i in range(5)])
    weights /= 1 - decay**5  # every weight, not only the last few, counts
    averaged = train.averaged_params(state, config)
    for name in params:
        expected = sum(w * it[name] for w, it in zip(weights, iterates))
        np.testing.assert_allclose(averaged[name], expected, rtol=1e-5, atol=1e-6)
        assert not np.allclose(averaged[name], iterates[-1][name])


def test_fit_with_average_validates_and_returns_the_average_and_resumes_it(tmp_path):
    result = _fit(tmp_path / "a", 6, average_steps=3)
    config = train.TrainConfig(average_steps=3, learning_rate=1e-2)
    template = train.init_train_state(result.state.params, train.make_optimizer(config))
    best, _ = train.load_checkpoint(str(tmp_path / "a" / "checkpoints" / "best.msgpack"), template)
    assert int(best.step) == result.best_step
    for x, y in zip(
        jax.tree.leaves(result.best_params), jax.tree.leaves(train.averaged_params(best, config))
    ):
        np.testing.assert_array_equal(x, y)
    assert not all(
        np.array_equal(x, y)
        for x, y in zip(jax.tree.leaves(result.best_params), jax.tree.leaves(best.params))
    )
    _fit(tmp_path / "b", 4, average_steps=3)  # "killed" after step 4
    resumed = _fit(tmp_path / "b", 6, average_steps=3, resume=True)
    for x, y in zip(jax.tree.leaves(result.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(jax.tree.leaves(result.best_params), jax.tree.leaves(resumed.best_params)):
        np.testing.assert_array_equal(x, y)
