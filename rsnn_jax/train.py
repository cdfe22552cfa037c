"""Training: optimiser, jitted step, evaluation, checkpoints and the fit loop.

One training step encodes the stimulus once, runs the simulation passes the objective needs
(``Objective.passes``), and applies one Adam update with gradient clipping. Randomness is
``fold_in(key(seed), step)``, and batches are a function of the step (the batcher's
position), so a run resumed from a checkpoint draws exactly the numbers an uninterrupted
run would.

Checkpoints are Flax msgpack files (``flax.serialization``) written atomically (temporary
file, then ``os.replace``): ``checkpoints/latest.msgpack`` every ``checkpoint_every`` steps
and ``checkpoints/best.msgpack`` whenever the validation loss improves.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rsnn_jax import model as model_lib
from rsnn_jax import parallel

CLIP_MODES = ("per_variable", "global")
SCHEDULES = ("warmup_cosine", "constant")
ADAM_EPSILONS = ("optax", "keras")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Attributes:
      num_steps: total number of training steps.
      learning_rate: Adam's peak step size (the paper's constant rate in Tables S2, S3, S5 is
        1e-3 to 1.5e-3; Adam moves a weight by about this much per step).
      schedule: "warmup_cosine" (linear warm-up over ``warmup_steps`` from 0 to
        ``learning_rate``, then a cosine decay to ``final_lr_fraction`` × it at
        ``num_steps``) or "constant" (the paper's setting).
      warmup_steps: length of the warm-up (warmup_cosine only).
      final_lr_fraction: learning rate at the last step over the peak (warmup_cosine only).
      weight_decay: L2 penalty λ on every weight array (not biases or encoder biases): the
        gradient of (λ/2)·‖w‖² is added before clipping and Adam. 0 disables it.
      weight_decay_scales: ((path, scale), ...): the penalty of every weight array whose path
        contains ``path`` is ``scale`` × λ (0 exempts it), e.g.
        (("network/recurrent_weights", 0),) regularises the stimulus pathway only.
      clip_norm: gradient clipping threshold (1.0 as the official code).
      clip_mode: "per_variable" clips each parameter array's gradient to ``clip_norm`` (what
        the official code's Keras ``Adam(clipnorm=...)`` does in TF 2.3); "global" clips the
        norm of all gradients together (``optax.clip_by_global_norm``).
      eval_every: steps between validation evaluations (and best-model selection).
      checkpoint_every: steps between ``latest`` checkpoints.
      keep_checkpoints: also keep each of them as ``checkpoints/step_<n>.msgpack`` (held-out
        learning curves: ``benchmarks.learning_curves --heldout``).
      patience: stop after this many evaluations without validation improvement (None: never).
      log_every: steps between progress lines.
      seed: PRNG seed of the training noise.
      remat: rematerialise the simulation scans in the backward pass (long recordings).
      learning_rate_scales: ((path, scale), ...): the step of every parameter whose path
        (``"encoder/params/temporal/kernel"``, ``"network/bias"``, ...) contains ``path`` is
        multiplied by ``scale`` (0 freezes it). Adam moves each weight by about the learning
        rate per step whatever its size, so small, smooth weights such as the retina's
        300-tap temporal filters are turned into noise at the rate the readout needs.
      average_steps: evaluate, select and return an exponential moving average of the
        parameters over about this many steps (decay 1 − 1/average_steps, debiased as Adam's
        moments) instead of the latest ones; 0 turns it off. Averaging the iterates
        (Polyak–Ruppert) cancels most of the noise that stochastic spikes and batches put into
        each step, which the learning rate alone only trades against speed.
      adam_epsilon: where Adam's ε = 1e-7 enters. "optax" (``optax.adam``): after the bias
        correction, ``m̂ / (sqrt(v̂) + ε)``. "keras": as TF 2.3 Keras ``Adam``, which the
        official code uses, ε is added to the square root of the *uncorrected* v and the
        correction goes into the step size (``scale_by_keras_adam``). The two differ most in
        the first steps, where sqrt(v) is small.
    """

    num_steps: int = 1000
    learning_rate: float = 1e-3
    schedule: str = "constant"
    warmup_steps: int = 0
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.0
    weight_decay_scales: tuple = ()
    clip_norm: float = 1.0
    clip_mode: str = "per_variable"
    eval_every: int = 50
    checkpoint_every: int = 50
    keep_checkpoints: bool = False
    patience: int | None = None
    log_every: int = 10
    seed: int = 0
    remat: bool = False
    learning_rate_scales: tuple = ()
    average_steps: int = 0
    adam_epsilon: str = "optax"

    def __post_init__(self):
        # Messages name the experiments' flags (--steps sets num_steps; others as named).
        for name, options in (
            ("clip_mode", CLIP_MODES),
            ("schedule", SCHEDULES),
            ("adam_epsilon", ADAM_EPSILONS),
        ):
            if getattr(self, name) not in options:
                raise ValueError(
                    f"--{name}={getattr(self, name)}: choose one of {', '.join(options)}"
                )
        for name in ("num_steps", "eval_every", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                flag = "steps" if name == "num_steps" else name
                raise ValueError(f"--{flag}={getattr(self, name)}: must be >= 1")
        for name in ("warmup_steps", "weight_decay", "average_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name}={getattr(self, name)}: must be >= 0")
        if not 0 <= self.final_lr_fraction <= 1:
            raise ValueError(f"--final_lr_fraction={self.final_lr_fraction}: must be in [0, 1]")
        for name in ("learning_rate", "clip_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name}={getattr(self, name)}: must be > 0")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"--patience={self.patience}: must be >= 1 (None: never stop)")
        for name in ("learning_rate_scales", "weight_decay_scales"):
            for path, scale in getattr(self, name):
                if not scale >= 0:
                    raise ValueError(f"--{name}: {path!r} has scale {scale} < 0")


class TrainState(NamedTuple):
    """Everything that changes during training: params, optimiser state, step (int32 [])."""

    params: model_lib.ModelParams
    opt_state: Any
    step: jax.Array


class Interrupted(RuntimeError):
    """SIGINT/SIGTERM during ``fit``: the last finished step was checkpointed."""


class _StopSignals:
    """While active, SIGINT/SIGTERM ask the fit loop to stop after the current step (a
    step interrupted halfway would leave its donated state unusable). A second signal
    interrupts at once. Only the main thread can install handlers; elsewhere it is inert."""

    def __enter__(self):
        self.requested, self._previous = None, {}
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(number).name

    def __exit__(self, *exc_info):
        for number, handler in self._previous.items():
            signal.signal(number, handler)


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN/inf; the last good checkpoint is left as it was."""


def _clip_each(max_norm: float) -> optax.GradientTransformation:
    def clip(g):
        norm = jnp.sqrt(jnp.sum(jnp.square(g)))
        return g * jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-30))

    return optax.stateless(lambda updates, params=None: jax.tree.map(clip, updates))


def make_schedule(config: TrainConfig) -> optax.Schedule:
    """The learning rate as a function of the step (see ``TrainConfig.schedule``)."""
    if config.schedule == "constant":
        return optax.constant_schedule(config.learning_rate)
    warmup = min(config.warmup_steps, config.num_steps - 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=warmup,
        decay_steps=config.num_steps,
        end_value=config.learning_rate * config.final_lr_fraction,
    )


def _path_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _path_scale(scales: tuple, name: str) -> float:
    """The scale of the first ``(path, scale)`` whose path is in ``name`` (1 when none is)."""
    return next((s for p, s in scales if p in name), 1.0)


def weight_decay_scale(config: TrainConfig, name: str) -> float:
    """The factor of ``config.weight_decay`` on the parameter at path ``name``."""
    return _path_scale(tuple(config.weight_decay_scales), name)


def _add_weight_decay(rate: float, scales: tuple) -> optax.GradientTransformation:
    """Adds the gradient ``rate · scale · w`` of the L2 penalty to every weight array
    (matrices, kernels; biases, 1-D, are not penalised)."""

    def add(path, update, param):
        if jnp.ndim(param) < 2:
            return update
        return update + rate * _path_scale(scales, _path_name(path)) * param

    return optax.stateless(
        lambda updates, params: jax.tree_util.tree_map_with_path(add, updates, params)
    )


def _scale_by_path(scales: tuple) -> optax.GradientTransformation:
    """Multiplies each update by the scale of the first ``(path, scale)`` whose path is in
    the parameter's path (1 when none is)."""

    def scale(path, update):
        return update * _path_scale(scales, _path_name(path))

    return optax.stateless(
        lambda updates, params=None: jax.tree_util.tree_map_with_path(scale, updates)
    )


class ScaleByKerasAdamState(NamedTuple):
    """State of ``scale_by_keras_adam``: steps taken (int32 []), first and second moments."""

    count: jax.Array
    mu: Any
    nu: Any


def scale_by_keras_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7
) -> optax.GradientTransformation:
    """Adam's direction as TF 2.3 Keras computes it (``tf.keras.optimizers.Adam``).

    At step t = 1, 2, ... with gradient g::

        m ← b1 m + (1 − b1) g,   v ← b2 v + (1 − b2) g²
        update = sqrt(1 − b2^t) / (1 − b1^t) · m / (sqrt(v) + ε)

    Chained with ``optax.scale_by_learning_rate(lr)`` this is Keras's
    ``var −= lr_t · m / (sqrt(v) + ε)`` with ``lr_t = lr · sqrt(1 − b2^t) / (1 − b1^t)``:
    ε is added to the square root of the uncorrected v. ``optax.scale_by_adam`` adds it
    after the bias correction, ``m̂ / (sqrt(v̂) + ε)``, which moves a parameter with a small
    gradient differently in the first steps. The moments are updated in the form of TF's
    ``ApplyAdam`` kernel, ``m += (g − m)(1 − b1)``.
    """

    def init(params):
        zeros = lambda p: jnp.zeros_like(p)  # noqa: E731
        return ScaleByKerasAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=jax.tree.map(zeros, params),
            nu=jax.tree.map(zeros, params),
        )

    def update(updates, state, params=None):
        del params
        # As TF: β1, β2, 1 − β and the powers β^t in float32 (1 − β2^t magnifies their
        # rounding ~1000×, so computing them in float64 would not reproduce it).
        beta1, beta2 = jnp.float32(b1), jnp.float32(b2)
        mu = jax.tree.map(lambda m, g: m + (g - m) * (1 - beta1), state.mu, updates)
        nu = jax.tree.map(lambda v, g: v + (jnp.square(g) - v) * (1 - beta2), state.nu, updates)
        count = optax.safe_int32_increment(state.count)
        t = count.astype(jnp.float32)
        correction = jnp.sqrt(1 - beta2**t) / (1 - beta1**t)
        updates = jax.tree.map(
            lambda m, v: (m * correction / (jnp.sqrt(v) + eps)).astype(m.dtype), mu, nu
        )
        return updates, ScaleByKerasAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


class ParameterAverageState(NamedTuple):
    """State of ``average_parameters``: steps averaged (int32 []) and the undebiased average."""

    count: jax.Array
    average: Any


def average_parameters(decay: float) -> optax.GradientTransformation:
    """Keeps an exponential moving average of the parameters *after* each update; passes the
    updates through unchanged. Put it last in a chain, so that it sees the final updates.

    ``average ← decay · average + (1 − decay) · (params + updates)`` from zeros;
    ``averaged_params`` divides by ``1 − decay^count`` (Adam's debiasing), which makes it the
    exactly normalised weighted mean of the iterates since the first step.
    """

    def init(params):
        return ParameterAverageState(
            count=jnp.zeros([], jnp.int32), average=jax.tree.map(jnp.zeros_like, params)
        )

    def update(updates, state, params=None):
        new = optax.apply_updates(params, updates)
        average = jax.tree.map(lambda a, p: decay * a + (1 - decay) * p, state.average, new)
        return updates, ParameterAverageState(optax.safe_int32_increment(state.count), average)

    return optax.GradientTransformation(init, update)


def averaged_params(state: TrainState, config: TrainConfig) -> model_lib.ModelParams:
    """The parameters a run evaluates: the debiased moving average of ``average_parameters``
    when ``config.average_steps`` is on and a step was taken, else ``state.params``."""
    if not config.average_steps:
        return state.params
    average_state = state.opt_state[-1]  # ``make_optimizer`` puts the average last
    count = average_state.count.astype(jnp.float32)
    correction = 1 - (1 - 1 / config.average_steps) ** count
    return jax.tree.map(
        lambda a, p: jnp.where(count > 0, a / jnp.maximum(correction, 1e-30), p),
        average_state.average,
        state.params,
    )


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam (ε = 1e-7 as Keras, placed as ``TrainConfig.adam_epsilon`` says) after the L2
    gradient and gradient clipping (see ``TrainConfig.clip_mode``), with the step size of
    ``make_schedule`` times ``TrainConfig.learning_rate_scales``, then the parameter average
    of ``TrainConfig.average_steps``."""
    clip = (
        _clip_each(config.clip_norm)
        if config.clip_mode == "per_variable"
        else optax.clip_by_global_norm(config.clip_norm)
    )
    parts = []
    if config.weight_decay:
        # Added to the gradient (an L2 penalty on the loss), not decoupled as in AdamW.
        parts.append(_add_weight_decay(config.weight_decay, tuple(config.weight_decay_scales)))
    if config.adam_epsilon == "keras":
        adam = optax.chain(
            scale_by_keras_adam(eps=1e-7), optax.scale_by_learning_rate(make_schedule(config))
        )
    else:
        adam = optax.adam(make_schedule(config), eps=1e-7)
    parts += [clip, adam]
    if config.learning_rate_scales:
        parts.append(_scale_by_path(tuple(config.learning_rate_scales)))
    if config.average_steps:
        parts.append(average_parameters(1 - 1 / config.average_steps))
    return optax.chain(*parts)


def init_train_state(
    params: model_lib.ModelParams, optimizer: optax.GradientTransformation
) -> TrainState:
    return TrainState(params=params, opt_state=optimizer.init(params), step=jnp.int32(0))


def step_key(seed: int, step) -> jax.Array:
    """The PRNG key of a training step: ``fold_in(key(seed), step)``."""
    return jax.random.fold_in(jax.random.key(seed), step)


def objective_loss(
    params: model_lib.ModelParams,
    model: model_lib.Model,
    objective,
    batch,
    key: jax.Array,
    remat: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Runs the passes the objective needs on a batch and returns (total, term values).

    ``batch`` is a ``rsnn_jax.data.batching.Batch`` (or any object with ``stimulus``
    [T + R − 1, H, W] shared or [K, T + R − 1, H, W] per trial, ``spikes`` [K, T, N_V] and
    ``history`` [K, D, N_V] or None).
    """
    stimulus = jnp.asarray(batch.stimulus)
    outputs = model_lib.run_passes(
        params,
        model,
        stimulus,
        batch.spikes,
        passes=objective.passes,
        key=key,
        initial_history=batch.history,
        per_trial_stimulus=stimulus.ndim == 4,
        remat=remat,
    )
    return objective(outputs, batch.spikes)


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves))


def train_step_function(
    model: model_lib.Model, optimizer: optax.GradientTransformation, remat: bool = False
) -> Callable:
    """The pure (unjitted) step ``(state, objective, batch, key) -> (state, terms, finite)``.

    ``make_train_step`` jits it; ``ensemble.make_ensemble_step`` vmaps it over models. If the
    loss or any gradient is not finite, the returned state is the input state (the update is
    not applied) and ``finite`` is False.
    """

    def train_step(state: TrainState, objective, batch, key: jax.Array):
        def loss(params):
            return objective_loss(params, model, objective, batch, key, remat)

        (total, terms), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(total) & _all_finite(grads)
        new_state = TrainState(params, opt_state, state.step + 1)
        new_state = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_state, state)
        return new_state, dict(terms, total=total), finite

    return train_step


def make_train_step(
    model: model_lib.Model,
    optimizer: optax.GradientTransformation,
    remat: bool = False,
    mesh: jax.sharding.Mesh | None = None,
) -> Callable:
    """Builds the jitted step ``(state, objective, batch, key) -> (state, terms, finite)``.

    ``objective`` is an argument (a pytree whose weights are array leaves), so changing loss
    weights does not recompile. The input state is donated. See ``train_step_function``.

    With a ``mesh`` (``parallel.make_mesh``) the step is data-parallel: pass a batch placed by
    ``parallel.shard_batch`` and a state placed by ``parallel.replicate``; the returned state
    and terms are replicated on every device of the mesh.
    """
    step = train_step_function(model, optimizer, remat)
    if mesh is None:
        return jax.jit(step, donate_argnums=(0,))
    return jax.jit(step, donate_argnums=(0,), out_shardings=parallel.replicated(mesh))


def make_eval_step(model: model_lib.Model, remat: bool = False) -> Callable:
    """Jitted ``(params, objective, batch, key) -> terms`` (with ``total``) without update."""

    def eval_step(params, objective, batch, key):
        total, terms = objective_loss(params, model, objective, batch, key, remat)
        return dict(terms, total=total)

    return jax.jit(eval_step)


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_payload(state: TrainState, data_position: int, seed: int, best: float) -> dict:
    return {
        "params": state.params,
        "opt_state": state.opt_state,
        "step": state.step,
        "data_position": np.int64(data_position),
        "seed": np.int64(seed),
        "best_validation": np.float64(best),
    }


def save_checkpoint(
    path: str, state: TrainState, *, data_position: int, seed: int, best_validation: float
) -> None:
    """Writes a checkpoint atomically (temporary file in the same folder, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    payload = _checkpoint_payload(state, data_position, seed, best_validation)
    data = flax.serialization.to_bytes(jax.device_get(payload))
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str, template: TrainState) -> tuple[TrainState, dict]:
    """Restores a checkpoint into the structure of ``template``.

    Returns:
      (state, info) with info = {"data_position", "seed", "best_validation"}.
    """
    with open(path, "rb") as f:
        data = f.read()
    target = _checkpoint_payload(template, 0, 0, 0.0)
    try:
        restored = flax.serialization.from_bytes(target, data)
    except Exception as err:  # msgpack or structure mismatch: say which file
        raise ValueError(f"{path}: not a checkpoint of this model/optimiser ({err})") from err
    state = TrainState(
        params=jax.tree.map(jnp.asarray, restored["params"]),
        opt_state=jax.tree.map(jnp.asarray, restored["opt_state"]),
        step=jnp.asarray(restored["step"], jnp.int32),
    )
    info = {
        "data_position": int(restored["data_position"]),
        "seed": int(restored["seed"]),
        "best_validation": float(restored["best_validation"]),
    }
    return state, info


# --------------------------------------------------------------------------- fit loop


@dataclasses.dataclass
class FitResult:
    """What ``fit`` returns.

    Attributes:
      state: the final train state (latest parameters).
      best_params: parameters with the lowest validation loss (the latest ones when no
        validation batch was given); with ``average_steps`` the parameter average of that
        step (``averaged_params``), which is also what validation scored.
      best_validation: that loss (inf if never evaluated).
      best_step: the step of ``best_params``.
      history: one dict per evaluation (also written to ``metrics.jsonl``).
      stopped_early: whether patience ran out.
      seconds: wall time of the loop, compilation included.
      convergence: ``convergence_report`` of the run.
    """

    state: TrainState
    best_params: model_lib.ModelParams
    best_validation: float
    best_step: int
    history: list[dict]
    stopped_early: bool
    seconds: float
    convergence: dict = dataclasses.field(default_factory=dict)


def convergence_report(
    history: list[dict],
    *,
    best_step: int,
    steps_run: int,
    num_steps: int,
    stopped_early: bool,
    window: int = 5,
    tolerance: float = 1e-3,
) -> dict:
    """Did the fit converge? Judged on the validation loss of the last ``window`` evaluations.

    The trend is the least-squares slope of the validation loss over those evaluations, per
    100 steps and relative to its mean magnitude (negative: still falling). The fit counts as
    plateaued when patience stopped it, when none of its last ``window`` evaluations improved
    on the best one before them, or when the trend is flatter than −``tolerance`` (0.1 % per
    100 steps by default).

    Returns:
      dict with steps_run, num_steps, best_step, stopped_early, evaluations,
      evaluations_since_best, plateaued (bool, None without validation), trend_per_100_steps
      and ``warning`` (a sentence, or None when the fit plateaued).
    """
    steps = np.array([h["step"] for h in history], float)
    losses = np.array([h["validation"]["total"] for h in history], float)
    since_best = int(np.sum(steps > best_step))
    report = {
        "steps_run": int(steps_run),
        "num_steps": int(num_steps),
        "best_step": int(best_step),
        "stopped_early": bool(stopped_early),
        "evaluations": len(history),
        "evaluations_since_best": since_best,
        "plateaued": None,
        "trend_per_100_steps": None,
        "warning": None,
    }
    if not len(history):
        report["warning"] = "no validation data: convergence cannot be judged"
        return report
    tail_steps, tail = steps[-window:], losses[-window:]
    if len(tail) >= 2:
        slope = np.polyfit(tail_steps, tail, 1)[0]
        report["trend_per_100_steps"] = float(100 * slope / max(np.mean(np.abs(tail)), 1e-12))
    trend = report["trend_per_100_steps"]
    flat = len(tail) >= max(window, 2) and trend is not None and trend > -tolerance
    plateaued = stopped_early or (len(history) > window and since_best >= window) or flat
    report["plateaued"] = bool(plateaued)
    if not plateaued:
        shown = (
            "" if trend is None else f"; validation loss trend {100 * trend:+.2f} % per 100 steps"
        )
        report["warning"] = (
            f"NOT CONVERGED: the step budget ({num_steps}) ended while the validation loss was "
            f"still improving (best at step {best_step} of {steps_run}{shown}); "
            "raise --steps"
        )
    return report


def _clock(seconds: float) -> str:
    """``seconds`` as h:mm:ss."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _floats(terms: dict) -> dict:
    return {k: float(v) for k, v in jax.device_get(terms).items()}


class Checkpointer:
    """The checkpoint files of a run, in ``workdir/checkpoints``.

    ``latest.msgpack`` is the state to continue from, ``best.msgpack`` the state with the
    lowest validation loss, and with ``keep`` every regular save is also kept as
    ``step_<n>.msgpack``. In a multi-process job only process 0 writes; every process reads
    (the workdir is on a file system they share). ``workdir=None``: nothing is written.
    """

    def __init__(self, workdir: str | None, seed: int, keep: bool = False):
        self.folder = os.path.join(workdir, "checkpoints") if workdir else None
        self.seed, self.keep = seed, keep

    def path(self, name: str) -> str | None:
        return os.path.join(self.folder, f"{name}.msgpack") if self.folder else None

    def save(self, name: str, state: TrainState, done: int, best: float, keep=False) -> None:
        """Saves ``state`` after step ``done`` as ``name`` (and as ``step_<done>`` with
        ``keep`` when the run keeps its checkpoints)."""
        if not self.folder or not parallel.is_main_process():
            return
        path = self.path(name)
        save_checkpoint(path, state, data_position=done, seed=self.seed, best_validation=best)
        if keep and self.keep:
            shutil.copyfile(path, os.path.join(self.folder, f"step_{done:06d}.msgpack"))

    def restore(self, name: str, template: TrainState) -> tuple[TrainState, dict] | None:
        """``load_checkpoint`` of ``name``, None when there is none.

        Raises:
          ValueError: if it was trained with another seed.
        """
        path = self.path(name)
        if not path or not os.path.exists(path):
            return None
        state, info = load_checkpoint(path, template)
        if info["seed"] != self.seed:
            raise ValueError(
                f"--resume: checkpoint {path} was trained with seed {info['seed']}, not {self.seed}"
            )
        return state, info


@dataclasses.dataclass
class _Best:
    """The model with the lowest validation loss so far, and the patience count."""

    validation: float = math.inf
    step: int = 0
    params: Any = None
    stale: int = 0  # evaluations since the last improvement

    def update(self, loss: float, step: int, params) -> bool:
        if loss >= self.validation:
            self.stale += 1
            return False
        self.validation, self.step, self.stale = loss, step, 0
        self.params = jax.tree.map(jnp.copy, params)  # survives the next step's donation
        return True


class _MetricsLog:
    """``workdir/metrics.jsonl``, one JSON record per evaluation, written by process 0."""

    def __init__(self, workdir: str | None, resume: bool):
        self.path = os.path.join(workdir, "metrics.jsonl") if workdir else None
        self.main = parallel.is_main_process()
        if self.path and self.main:
            os.makedirs(workdir, exist_ok=True)
            if not resume and os.path.exists(self.path):
                os.remove(self.path)  # a fresh run does not append to an old run's log

    def append(self, record: dict) -> None:
        if self.path and self.main:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


class _Progress:
    """Progress lines: a bar, the step, the loss terms, the rate and the time left."""

    def __init__(self, num_steps: int, start_step: int):
        self.num_steps, self.start_step = num_steps, start_step
        self.started = self.last_time = time.perf_counter()
        self.last_step = start_step

    def line(self, done: int, terms: dict) -> str:
        now = time.perf_counter()
        rate = (done - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, done
        shown = " ".join(f"{k}={v:.4g}" for k, v in terms.items())
        bar = "#" * int(20 * done / self.num_steps)
        elapsed = now - self.started
        # The ETA assumes the mean rate of this run so far (the first steps compile).
        remaining = elapsed / (done - self.start_step) * (self.num_steps - done)
        return (
            f"[{bar:<20}] step {done}/{self.num_steps} {shown} ({rate:.2f} steps/s, "
            f"elapsed {_clock(elapsed)}, ETA {_clock(remaining)})"
        )


def _place_for_mesh(state: TrainState, validation, mesh):
    """The state replicated and the validation batch split over ``mesh`` (replicated when
    its trial count does not divide)."""
    if mesh is None:
        return state, validation
    if validation is not None:
        divisible = np.shape(validation.spikes)[0] % mesh.devices.size == 0
        place = parallel.shard_batch if divisible else parallel.replicate
        validation = place(validation, mesh)
    return parallel.replicate(state, mesh), validation


def fit(
    *,
    model: model_lib.Model,
    params: model_lib.ModelParams,
    objective,
    batches: Callable[[int], Iterator],
    config: TrainConfig,
    workdir: str | None = None,
    validation=None,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> FitResult:
    """Trains ``params`` on ``objective`` with Adam.

    Args:
      model: encoder + network (static).
      params: initial parameters (ignored when a checkpoint is resumed).
      objective: a ``losses.Objective``.
      batches: ``batches(position)`` returns an iterator of training batches that starts at
        batch number ``position`` (so that a resumed run sees the same batches).
      config: optimisation settings.
      workdir: where ``checkpoints/`` and ``metrics.jsonl`` go (None: nothing written).
      validation: a batch of validation trials for model selection / early stopping.
      resume: continue from ``workdir/checkpoints/latest.msgpack`` if it exists.
      log: progress printer (default: print to stdout).
      mesh: data-parallel training over this device mesh (``parallel.make_mesh``): each
        training batch's trials are split over the devices (K must be a multiple of their
        number), parameters and optimiser state are replicated. The validation batch is
        split too when its trial count allows it, and replicated otherwise. None: one device.
        In a multi-process job every process calls ``fit`` with the same arguments.

    Returns:
      FitResult.

    Raises:
      TrainingDiverged: when a loss or gradient becomes NaN/inf. The state of that step is not
        applied and no checkpoint is written after it.
      Interrupted: after SIGINT/SIGTERM (in any process of the job), once the last finished
        step is checkpointed.
    """
    log = log or (lambda line: print(line, flush=True))
    optimizer = make_optimizer(config)
    train_step = make_train_step(model, optimizer, config.remat, mesh)
    eval_step = make_eval_step(model, config.remat)
    # The step donates its input state: copy so that the caller's arrays stay valid.
    state = init_train_state(jax.tree.map(jnp.copy, params), optimizer)
    checkpoints = Checkpointer(workdir, config.seed, config.keep_checkpoints)
    metrics = _MetricsLog(workdir, resume)
    best = _Best()
    restored = checkpoints.restore("latest", state) if resume else None
    if restored:
        state, info = restored
        best.validation = info["best_validation"]
        log(f"resumed from {checkpoints.path('latest')} at step {int(state.step)}")
    state, validation = _place_for_mesh(state, validation, mesh)
    best.params = jax.tree.map(jnp.copy, averaged_params(state, config))
    restored = checkpoints.restore("best", state) if resume else None
    if restored:
        best.params, best.step = averaged_params(restored[0], config), int(restored[0].step)
    history: list[dict] = []
    start_step = int(state.step)
    loop = _Loop(config, objective, validation, eval_step, checkpoints, metrics, best, log)
    loop.progress = _Progress(config.num_steps, start_step)  # the clock starts now
    with _StopSignals() as signals:
        for step, batch in zip(range(start_step, config.num_steps), batches(start_step)):
            if mesh is not None:
                batch = parallel.shard_batch(batch, mesh)
            new_state, terms, finite = train_step(
                state, objective, batch, step_key(config.seed, step)
            )
            if not bool(finite):
                where = f"; the last good checkpoint {checkpoints.path('latest')} is intact"
                raise TrainingDiverged(
                    f"training diverged at step {step}: loss or gradient is NaN/inf "
                    f"(terms: {_floats(terms)}){where if checkpoints.folder else ''}"
                )
            state = new_state
            if loop.after_step(state, _floats(terms), history, signals.requested):
                break
    if validation is None:
        best.params, best.step = averaged_params(state, config), int(state.step)
    convergence = convergence_report(
        history,
        best_step=best.step,
        steps_run=int(state.step),
        num_steps=config.num_steps,
        stopped_early=loop.stopped_early,
        window=config.patience or 5,
    )
    if convergence["warning"]:
        log(f"warning: {convergence['warning']}")
    return FitResult(
        state=state,
        best_params=best.params,
        best_validation=best.validation,
        best_step=best.step,
        history=history,
        stopped_early=loop.stopped_early,
        seconds=time.perf_counter() - loop.progress.started,
        convergence=convergence,
    )


class _Loop:
    """What ``fit`` does after each applied step: progress line, validation and model
    selection, checkpoints, early stop and stop signals."""

    def __init__(self, config, objective, validation, eval_step, checkpoints, metrics, best, log):
        self.config, self.objective, self.validation = config, objective, validation
        self.eval_step, self.checkpoints, self.metrics = eval_step, checkpoints, metrics
        self.best, self.log = best, log
        self.schedule = make_schedule(config)
        self.validation_key = jax.random.key(config.seed + 1_000_003)
        self.progress: _Progress | None = None  # set by ``fit`` when its loop starts
        self.stopped_early = False

    def after_step(self, state: TrainState, terms: dict, history: list, signal_name) -> bool:
        """Returns True when the loop must stop (early stop); raises ``Interrupted``."""
        config, done = self.config, int(state.step)
        last = done == config.num_steps
        if done % config.log_every == 0 or last:
            self.log(self.progress.line(done, terms))
        if self.validation is not None and (done % config.eval_every == 0 or last):
            history.append(self.validate(state, terms, done))
        if done % config.checkpoint_every == 0 or last:
            self.checkpoints.save("latest", state, done, self.best.validation, keep=True)
        patience = config.patience
        self.stopped_early = patience is not None and self.best.stale >= patience
        # Every process must stop at the same step, whichever one got the signal.
        interrupted = parallel.any_process(signal_name is not None)
        if self.stopped_early or interrupted:
            self.checkpoints.save("latest", state, done, self.best.validation)
        if self.stopped_early:
            self.log(
                f"early stop at step {done}: no validation improvement in {patience} evaluations"
            )
            return True
        if interrupted:
            latest = self.checkpoints.path("latest")
            where = (
                f"checkpoint {latest} holds it; continue with --resume (resume=True)"
                if latest
                else "nothing was saved (no workdir)"
            )
            raise Interrupted(
                f"{signal_name or 'a signal to another process'} after step {done}: {where}"
            )
        return False

    def validate(self, state: TrainState, terms: dict, done: int) -> dict:
        """Evaluates the validation batch, logs it and keeps the best model."""
        params = averaged_params(state, self.config)
        values = _floats(
            self.eval_step(params, self.objective, self.validation, self.validation_key)
        )
        record = {
            "step": done,
            "seconds": time.perf_counter() - self.progress.started,
            "learning_rate": float(self.schedule(done - 1)),
            "train": terms,
            "validation": values,
        }
        self.metrics.append(record)
        if not math.isfinite(values["total"]):
            raise TrainingDiverged(
                f"validation loss is NaN/inf at step {done}; the last good checkpoint "
                f"{self.checkpoints.path('latest')} is intact"
            )
        if self.best.update(values["total"], done, params):
            self.checkpoints.save("best", state, done, self.best.validation)
        self.log(
            f"  validation at step {done}: total={values['total']:.5g} "
            f"(best {self.best.validation:.5g} at step {self.best.step})"
        )
        return record
