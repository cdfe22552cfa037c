"""One experiment end to end: data → model → objective → fit → held-out report and figures.

The experiment modules (``experiments/v1.py``, ``retina.py``, ``synthetic.py``) only parse
flags into an ``ExperimentConfig`` and call ``run_experiment``.

Every run writes into ``config.workdir``:

* ``config.json``: the configuration;
* ``metrics.jsonl``: one JSON line per validation evaluation (training and validation terms);
* ``checkpoints/latest.msgpack`` and ``checkpoints/best.msgpack``;
* ``report.json``: held-out metrics of the best model and of the untrained model;
* ``figures/*.png``: training curves, rasters, PSTHs, noise correlations, connectivity.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import flax
import h5py
import jax
import jax.numpy as jnp
import numpy as np

from rsnn_jax import (
    ground_truth,
    initialise,
    kinds,
    likelihood,
    losses,
    metrics,
    network,
    parallel,
    plots,
    train,
    warm_start,
)
from rsnn_jax import model as model_lib
from rsnn_jax.configs import ExperimentConfig
from rsnn_jax.data import batching, recording
from rsnn_jax.kinds import RunError, heldout_batches


def objective_options(config: ExperimentConfig) -> dict:
    """Options of ``losses.make_objective`` implied by the experiment (Table S3 weights for
    synthetic data, nc_mse delays = the network's D)."""
    return {
        "dataset": kinds.of(config).objective_dataset,
        "num_delays": config.model.num_delays,
        "nc_mse_estimator": config.objective.nc_mse_estimator,
    }


def training_mesh(config: ExperimentConfig) -> jax.sharding.Mesh | None:
    """The device mesh of data-parallel training (None for ``num_devices == 1`` in a
    single-process run; a multi-process job always spans all devices of all processes).

    Raises:
      ValueError: if the devices do not exist or the training batch (K, or K_m × K_t clips)
        cannot be split evenly over them.
    """
    num_devices = config.num_devices
    if jax.process_count() > 1 and num_devices == 1:
        num_devices = 0  # a multi-process job splits the trials over all its devices
    if num_devices == 1:
        return None
    mesh = parallel.make_mesh(num_devices)
    num_devices = mesh.devices.size
    trials, flag = kinds.of(config).batch_trials(config)
    if trials % num_devices:
        raise ValueError(
            f"--devices: {flag} = {trials} trials per batch cannot be split evenly over "
            f"{num_devices} devices; use a multiple of {num_devices}"
        )
    return mesh


# --------------------------------------------------------------------------- data


def builtin_data_path(config: ExperimentConfig) -> str:
    """Where the built-in synthetic data set of ``config`` is cached."""
    return os.path.join(config.data.cache_dir, kinds.of(config).builtin_name(config))


def read_recording(path: str) -> recording.Recording:
    """Loads (and validates) a recording, with its ground truth when the file has one."""
    data = recording.load_recording(path)
    with h5py.File(path, "r") as f:
        has_target = "target" in f
    return dataclasses.replace(data, target=ground_truth.load_target(path)) if has_target else data


def load_data(config: ExperimentConfig, log=print) -> recording.Recording:
    """The recording at ``config.data.path``, or the built-in one (generated if needed)."""
    if config.data.path is not None:
        if not os.path.exists(config.data.path):
            raise FileNotFoundError(f"--data: no such file {config.data.path!r}")
        return read_recording(config.data.path)
    path = builtin_data_path(config)
    if not os.path.exists(path):
        log(f"generating the built-in {config.kind} data set into {path} (once)")
        data = kinds.of(config).generate(config)
        if not parallel.is_main_process():
            return data  # the same data in every process; process 0 writes the cache
        os.makedirs(config.data.cache_dir, exist_ok=True)
        recording.save_recording(path, data)
    return read_recording(path)


def select_condition(data: recording.Recording, condition: str | None) -> recording.Recording:
    """The recording with its splits restricted to movies whose name starts with
    ``condition`` (None: unchanged)."""
    if condition is None:
        return data
    splits = {
        split: {movie: trials for movie, trials in movies.items() if movie.startswith(condition)}
        for split, movies in data.splits.items()
    }
    if not any(len(t) for t in splits.get("train", {}).values()):
        raise RunError(
            f"--condition={condition}: no training movie starts with it; movies are "
            f"{list(data.movies)}"
        )
    return dataclasses.replace(data, splits=splits)


def build_model(config: ExperimentConfig, num_visible: int) -> model_lib.Model:
    """The encoder of ``config.kind`` and a network with ``num_visible`` recorded neurons."""
    net = network.NetworkConfig(
        num_visible=num_visible,
        num_hidden=config.model.num_hidden,
        num_delays=config.model.num_delays,
    )
    return model_lib.Model(encoder=kinds.of(config).encoder(config), network=net)


def training_batches(config: ExperimentConfig, data, model) -> Callable[[int], Iterator]:
    """``batches(position)``: the kind's training batches from batch ``position`` on."""
    return functools.partial(kinds.of(config).training_batches, config, data, model)


# --------------------------------------------------------------------------- evaluation

# Evaluation fields for the figures only, left out of report.json.
_FIGURE_FIELDS = ("data_nc", "model_nc", "data_psth", "model_psth", "data_raster", "model_raster")


class Evaluation(NamedTuple):
    """Held-out metrics of one movie's trials (``evaluate``); ``report()`` is report.json's.

    Attributes:
      num_recorded_trials, num_simulated_trials: K recorded, K′ simulated trials.
      psth_correlation: median over neurons of eq. 7 (model side σ̄);
        ``psth_correlation_per_neuron`` [N_V] its values; ``psth_correlation_smoothed`` the
        median after a boxcar of ``psth_smoothing_bins`` bins (Fig. S4).
      nc_r2, nc_r2_offset_invariant: eq. 11 and Table S6's offset-invariant R²;
        ``nc_r2_no_correlation`` what a model without noise correlation scores.
      likelihood_estimator: "exact" (no hidden neurons) or "smc"; ``smc_particles``,
        ``smc_repeats`` (0 when exact) and ``smc_effective_sample_fraction`` (mean ESS / P,
        None when exact).
      bits_per_spike, mcfadden_r2: population values with Monte-Carlo standard errors
        ``bits_per_spike_se``, ``mcfadden_r2_se`` (0 when exact).
      data_rate, model_rate: mean spikes per bin and neuron.
      data_nc, model_nc: [N_V, N_V] noise correlations (eq. 10); data_psth, model_psth
        [T, N_V]; data_raster, model_raster [T, N_V] of the first trial (NumPy, figures only).
    """

    num_recorded_trials: int
    num_simulated_trials: int
    psth_correlation: float
    psth_correlation_per_neuron: list[float]
    psth_correlation_smoothed: float
    psth_smoothing_bins: int
    nc_r2: float
    nc_r2_offset_invariant: float
    nc_r2_no_correlation: float
    likelihood_estimator: str
    smc_particles: int
    smc_repeats: int
    smc_effective_sample_fraction: float | None
    bits_per_spike: float
    bits_per_spike_se: float
    mcfadden_r2: float
    mcfadden_r2_se: float
    data_rate: float
    model_rate: float
    data_nc: np.ndarray
    model_nc: np.ndarray
    data_psth: np.ndarray
    model_psth: np.ndarray
    data_raster: np.ndarray
    model_raster: np.ndarray

    def report(self) -> dict:
        """The JSON-ready metrics (every field but the figures' arrays), in field order."""
        return {k: v for k, v in self._asdict().items() if k not in _FIGURE_FIELDS}


@functools.partial(jax.jit, static_argnames=("model", "num_trials", "smc_particles", "smc_repeats"))
def _simulate(params, batch, key, *, model, num_trials, smc_particles, smc_repeats) -> dict:
    """``evaluate``'s simulations, one program per (model, settings, shapes) taking
    ``params`` as an argument: the models of a run (best, untrained, start, checkpoints) and
    its movies of equal shapes reuse it.

    Returns:
      {"free": visible ``SimulationOutputs`` [num_trials, T, N_V] of the free pass}, and
      "clamped_logits" [K, T, N_V] without hidden neurons, or "smc"
      (``likelihood.SMCOutputs``) with them.
    """
    k, num_visible = batch.spikes.shape[0], model.network.num_visible
    free_key, likelihood_key = jax.random.split(key)
    free = model_lib.run_passes(
        params,
        model,
        batch.stimulus,
        jnp.zeros((num_trials,) + batch.spikes.shape[1:], jnp.float32),
        passes=model_lib.Passes(free=True),
        key=free_key,
        initial_history=batch.history[np.arange(num_trials) % k],
    ).free
    free = jax.tree.map(lambda x: x[..., :num_visible], free)
    if model.network.num_hidden:
        # One clamped pass samples the hidden spikes freely: one sample of the ELBO, not the
        # likelihood of the visible spikes. Marginalise them by SMC instead.
        smc = likelihood.smc_log_likelihood(
            params.network,
            model_lib.encode(params, model, batch.stimulus),
            batch.spikes,
            config=model.network,
            key=likelihood_key,
            num_particles=smc_particles,
            num_repeats=smc_repeats,
            initial_history=batch.history,
        )
        return {"free": free, "smc": smc}
    clamped = model_lib.run_passes(
        params,
        model,
        batch.stimulus,
        batch.spikes,
        passes=model_lib.Passes(clamped=1),
        key=likelihood_key,
        initial_history=batch.history,
    ).clamped
    return {"free": free, "clamped_logits": clamped.logits[..., :num_visible]}


def _likelihood_fields(simulated: dict, data_spikes: np.ndarray, smc_particles, smc_repeats):
    """``Evaluation``'s likelihood fields: bits/spike and McFadden R² of the recorded trials,
    exact from the clamped logits, or from the SMC estimate with its standard error."""
    if "smc" not in simulated:
        logits = simulated["clamped_logits"]
        return dict(
            likelihood_estimator="exact",
            smc_particles=0,
            smc_repeats=0,
            smc_effective_sample_fraction=None,
            bits_per_spike=float(metrics.bits_per_spike(data_spikes, logits, per_neuron=False)),
            bits_per_spike_se=0.0,
            mcfadden_r2=float(metrics.mcfadden_r2(data_spikes, logits, per_neuron=False)),
            mcfadden_r2_se=0.0,
        )
    smc = simulated["smc"]
    total, error = smc.total, smc.standard_error
    bits = metrics.bits_per_spike_from_log_likelihood(data_spikes, total)
    mcfadden = metrics.mcfadden_r2_from_log_likelihood(data_spikes, total)
    # Both metrics are affine in log L: log L ± its standard error moves them by theirs.
    bits_error = metrics.bits_per_spike_from_log_likelihood(data_spikes, total + error) - bits
    mcfadden_error = metrics.mcfadden_r2_from_log_likelihood(data_spikes, total + error) - mcfadden
    return dict(
        likelihood_estimator="smc",
        smc_particles=int(smc_particles),
        smc_repeats=int(smc_repeats),
        smc_effective_sample_fraction=float(jnp.mean(smc.effective_sample_size) / smc_particles),
        bits_per_spike=float(bits),
        bits_per_spike_se=float(bits_error),
        mcfadden_r2=float(mcfadden),
        mcfadden_r2_se=float(jnp.abs(mcfadden_error)),
    )


def evaluate(
    params: model_lib.ModelParams,
    model: model_lib.Model,
    batch: batching.Batch,
    key: jax.Array,
    num_trials: int | None = None,
    smoothing_bins: int | None = None,
    smc_particles: int = 32,
    smc_repeats: int = 2,
) -> Evaluation:
    """Held-out metrics of docs/losses_and_metrics.md on one movie's trials (shared stimulus).

    The model is simulated freely from each recorded trial's history (``num_trials`` trials,
    default max(K, 100), cycling through the recorded histories) for the PSTH and
    noise correlations. The likelihood of the recorded trials is exact without hidden
    neurons (one clamped pass). With hidden neurons their spikes must be marginalised: it
    is estimated by sequential Monte Carlo (``likelihood.smc_log_likelihood``,
    ``smc_particles`` particles, ``smc_repeats`` independent filters for the standard
    error); the estimate is biased low (more so with fewer particles), never high.

    The simulations (free pass, clamped pass or SMC) are one jitted program per model,
    settings and shapes, taking ``params`` as an argument: evaluating other parameters
    (checkpoints, the untrained model) or other movies of the same shapes does not retrace.

    Args:
      params, model: the model to evaluate.
      batch: the movie's stimulus and recorded trials, spikes float32 [K, T, N_V].
      key: the noise of the free pass and of the SMC filters.
      num_trials, smoothing_bins, smc_particles, smc_repeats: see above (static).

    Returns:
      ``Evaluation`` (``.report()``: the metrics of report.json).
    """
    k = batch.spikes.shape[0]
    # More simulated than recorded trials: the model-side estimate of the noise
    # correlations and PSTH is then less noisy, and what remains is the data's own noise.
    num_trials = num_trials or max(k, 100)
    simulated = jax.device_get(
        _simulate(
            params,
            batch,
            key,
            model=model,
            num_trials=num_trials,
            smc_particles=smc_particles,
            smc_repeats=smc_repeats,
        )
    )
    data_spikes = np.asarray(batch.spikes)
    model_spikes = simulated["free"].spikes
    model_probs = np.asarray(simulated["free"].probabilities)
    # The metrics run eagerly on the simulations (op by op, each op compiled once per shape).
    per_neuron = np.asarray(metrics.psth_correlation(data_spikes, model_probs))
    smoothed = per_neuron
    if smoothing_bins and smoothing_bins > 1:
        smoothed = np.asarray(metrics.psth_correlation(data_spikes, model_probs, smoothing_bins))
    data_nc = np.asarray(metrics.noise_correlation(data_spikes))
    model_nc = np.asarray(metrics.noise_correlation(model_spikes))
    return Evaluation(
        num_recorded_trials=int(k),
        num_simulated_trials=int(num_trials),
        psth_correlation=float(np.nanmedian(per_neuron)),
        psth_correlation_per_neuron=[float(x) for x in per_neuron],
        psth_correlation_smoothed=float(np.nanmedian(smoothed)),
        psth_smoothing_bins=int(smoothing_bins or 1),
        nc_r2=float(metrics.nc_r2(data_nc, model_nc)),
        nc_r2_offset_invariant=float(metrics.nc_r2(data_nc, model_nc, offset_invariant=True)),
        # What a model without any noise correlation scores on these trials: −(mean/std)² of
        # the data's NC. An NC R² below it has learned no noise correlation at all.
        nc_r2_no_correlation=float(metrics.nc_r2(data_nc, np.zeros_like(data_nc))),
        **_likelihood_fields(simulated, data_spikes, smc_particles, smc_repeats),
        data_rate=float(data_spikes.mean()),
        model_rate=float(model_spikes.mean()),
        data_nc=data_nc,
        model_nc=model_nc,
        data_psth=data_spikes.mean(0),
        model_psth=model_probs.mean(0),
        data_raster=data_spikes[0],
        model_raster=model_spikes[0],
    )


def _bits_per_spike_text(values: dict) -> str:
    """``evaluate``'s bits/spike for a log line, with how it was estimated when not exact."""
    text = f"{values['bits_per_spike']:.3f}"
    if values.get("likelihood_estimator") == "smc":
        text += (
            f" ± {values['bits_per_spike_se']:.3f} (SMC over the hidden spikes, "
            f"{values['smc_particles']} particles: biased low)"
        )
    return text


def _figures(config, data, model, result, best_eval, figdir) -> list[str]:
    os.makedirs(figdir, exist_ok=True)
    bin_ms = 1e3 * data.bin_width_s
    paths = []
    if result.history:
        paths.append(plots.training_curves(result.history, os.path.join(figdir, "training.png")))
    for movie, values in best_eval.items():
        tag = movie.replace("/", "_")
        paths.append(
            plots.raster(
                values.data_raster,
                values.model_raster,
                os.path.join(figdir, f"raster_{tag}.png"),
                bin_ms,
            )
        )
        rates = values.data_psth.mean(0)
        neurons = [int(i) for i in np.argsort(rates)[::-1][:4]]
        paths.append(
            plots.psth_overlay(
                values.data_psth,
                values.model_psth,
                neurons,
                os.path.join(figdir, f"psth_{tag}.png"),
                bin_ms,
                np.asarray(values.psth_correlation_per_neuron),
                values.psth_smoothing_bins,
            )
        )
        paths.append(
            plots.matrix_comparison(
                values.data_nc,
                values.model_nc,
                os.path.join(figdir, f"noise_correlation_{tag}.png"),
                "noise correlation",
                values.nc_r2,
            )
        )
    return paths


def _init_biases(config, data, model, params, batches, key, log) -> model_lib.ModelParams:
    """Biases from the rates of every training trial (one batch of 20 trials is a noisy
    estimate for a rare neuron), matched on the model's rates clamped to the first batch."""
    spikes = np.concatenate(
        [
            np.asarray(data.spikes[m][t]).reshape(-1, data.num_neurons)
            for m, t in data.splits["train"].items()
            if len(t)
        ]
    )
    rates = initialise.data_rates(spikes, config.model.num_hidden)
    first = next(batches(0))
    params = initialise.biases_from_rates(params, model, first, key, rates)
    measured = np.asarray(initialise.model_rates(params, model, first, key))
    log(
        f"initial biases from the training rates: mean rate {measured.mean():.4f} per bin "
        f"(data {rates[: data.num_neurons].mean():.4f})"
    )
    return params


def _init_temporal_filters(data, model, params, log) -> model_lib.ModelParams:
    """The retina encoder's temporal filters from the training data's spike-triggered
    averages (``initialise.temporal_filters_from_sta``)."""
    started = time.perf_counter()
    movies = [
        (data.stimuli[m], np.asarray(data.spikes[m])[t])
        for m, t in data.splits["train"].items()
        if len(t)
    ]
    encoder = model.encoder
    filters = initialise.temporal_filters_from_sta(
        movies, encoder.temporal_kernel, encoder.temporal_filters
    )
    variables = flax.core.unfreeze(params.encoder)
    # Flax's VALID convolution is a cross-correlation: tap k has lag R − 1 − k.
    variables["params"]["temporal"]["kernel"] = jnp.asarray(filters[::-1, None, :], jnp.float32)
    log(
        f"temporal filters from the spike-triggered averages of {len(movies)} training "
        f"movies ({time.perf_counter() - started:.1f} s)"
    )
    return params._replace(encoder=variables)


def _warm_start(config, data, model, params, log) -> model_lib.ModelParams:
    started = time.perf_counter()
    batch = kinds.of(config).warm_start_batch(config, data, model)
    before = float(
        warm_start.clamped_nll(
            params.network,
            model,
            model_lib.encode(params, model, batch.stimulus, np.ndim(batch.stimulus) == 4),
            batch.spikes,
            batch.history,
        )
    )

    def l2(path):  # the training run's L2 penalty on that weight array
        return config.train.weight_decay * train.weight_decay_scale(config.train, path)

    params, values = warm_start.solve_readout(
        params,
        model,
        batch,
        config.start.warm_start_iterations,
        l2("network/input_weights"),
        l2("network/recurrent_weights"),
        config.start.warm_start_coupling_l2,
    )
    log(
        f"warm start: clamped NLL per bin {before:.5f} -> {values[-1]:.5f} after "
        f"{config.start.warm_start_iterations} L-BFGS iterations on {len(batch.spikes)} trials "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return params


def _encoder_phase(config, data, model, params, log) -> model_lib.ModelParams:
    """Trains the encoder (with the readout) on the clamped likelihood of scattered
    single-bin clips: many more distinct stimulus windows per step than the objective's
    clips, for the part of the fit that learns slowest (docs/convergence.md)."""
    started = time.perf_counter()
    phase = kinds.of(config).encoder_phase(config)
    # One batch of validation clips: 2 400 single-bin clips carry 300 frames each.
    validation = kinds.of(config).validation_batch(phase, data, model, num_batches=1)
    result = train.fit(
        model=model,
        params=params,
        objective=_objective(phase, model),
        batches=training_batches(phase, data, model),
        config=phase.train,
        validation=validation,
        # Its convergence warning names this phase's budget flag.
        log=lambda line: log(f"encoder phase: {line.replace('--steps', '--encoder_steps')}"),
        mesh=training_mesh(phase),
    )
    curve = ""  # a recording without validation movies has no validation curve
    if result.history:
        first = result.history[0]
        curve = (
            f", validation NLL per bin {first['validation']['total']:.5f} at step "
            f"{first['step']} -> {result.best_validation:.5f}"
        )
    log(
        f"encoder phase: {phase.train.num_steps} steps of the clamped likelihood on "
        f"{phase.batches.num_starts} single-bin clips each{curve} "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return jax.device_get(result.best_params)


def _connectivity(params, model, target) -> dict:
    """Connectivity R² of the fitted visible block against the target (metrics docs)."""
    fitted = np.asarray(params.network.recurrent_weights)
    truth = np.asarray(target.params.network.recurrent_weights)
    r2 = float(metrics.connectivity_r2(fitted, truth, model.network.num_visible))
    return {"connectivity_r2": r2, "_fitted": fitted, "_target": truth}


class WorkdirInUse(RunError):
    """The workdir holds a run that this one would destroy, or ``resume`` cannot continue."""


# Fields a resumed run may change: the step budget and what is only printed, written or
# evaluated.
_RESUMABLE_CHANGES = {
    "num_steps",
    "resume",
    "overwrite",
    "log_every",
    "eval_trials",
    "checkpoint_every",
    "keep_checkpoints",
}


def _check_resumable(config: ExperimentConfig, path: str) -> None:
    """Raises ``WorkdirInUse`` when ``config`` differs from the run's ``config.json`` in a
    setting outside ``_RESUMABLE_CHANGES`` (a setting added since the run started counts as
    its default)."""
    with open(path) as f:
        before = ExperimentConfig.from_dict(json.load(f)).flat()
    before, now = (json.loads(json.dumps(c)) for c in (before, config.flat()))
    changed = sorted(k for k in now if k not in _RESUMABLE_CHANGES and before[k] != now[k])
    if changed:
        raise WorkdirInUse(
            f"--resume: the run in {config.workdir} was started with other settings: "
            + ", ".join(f"{k} ({before[k]!r} -> {now[k]!r})" for k in changed)
        )


def _claim_workdir(config: ExperimentConfig) -> None:
    """Refuses to destroy a finished or running run; checks that ``resume`` can continue.

    A workdir holds a run when it has a ``report.json``, ``metrics.jsonl`` or checkpoints.
    With ``overwrite`` they are removed first; with ``resume`` the checkpoint must exist and
    ``config.json`` may differ only in ``_RESUMABLE_CHANGES``.
    """
    workdir = config.workdir
    held = [
        name
        for name in ("report.json", "metrics.jsonl", "checkpoints")
        if os.path.exists(os.path.join(workdir, name))
    ]
    if config.resume:
        latest = os.path.join(workdir, "checkpoints", "latest.msgpack")
        if not os.path.exists(latest):
            raise WorkdirInUse(f"--resume: no checkpoint {latest} to resume from")
        path = os.path.join(workdir, "config.json")
        if os.path.exists(path):
            _check_resumable(config, path)
    elif held and not config.overwrite:
        raise WorkdirInUse(
            f"--workdir={workdir} holds a run ({', '.join(held)}): pass --resume to continue "
            "it, --overwrite to replace it, or another --workdir"
        )
    elif held and parallel.is_main_process():
        for name in ("report.json", "metrics.jsonl", "checkpoints", "figures"):
            path = os.path.join(workdir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)


def _write_json(workdir: str, name: str, values: dict) -> None:
    """Writes ``workdir/name`` (process 0 of a multi-process job only)."""
    if parallel.is_main_process():
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, name), "w") as f:
            json.dump(values, f, indent=2)


def _objective(config: ExperimentConfig, model: model_lib.Model) -> losses.Objective:
    return losses.make_objective(
        config.objective.loss,
        num_visible=model.network.num_visible,
        num_hidden=model.network.num_hidden,
        weights=dict(config.objective.weights) or None,
        clamp_until=config.batches.clamp_until,
        seed=config.train.seed,
        free_from_zeros=config.objective.free_from_zeros,
        **objective_options(config),
    )


def _start(config, data, model, batches, key, log) -> tuple:
    """(untrained, started) parameters: the random initialisation, then the data-informed
    start (temporal filters, biases from rates, warm start of the readout, then the encoder
    phase and the readout solved again)."""
    stimulus_shape = next(batches(0)).stimulus.shape[-3:]
    untrained = model_lib.init_model(key, model, stimulus_shape)
    params = untrained
    if config.start.init_temporal_filters:
        params = _init_temporal_filters(data, model, params, log)
    if config.start.init_biases:
        params = _init_biases(config, data, model, params, batches, key, log)
    solve = config.start.warm_start_iterations and not config.model.num_hidden
    if solve:
        params = _warm_start(config, data, model, params, log)
    if config.start.encoder_steps:
        params = _encoder_phase(config, data, model, params, log)
        if solve:  # the readout of the new encoder features
            params = _warm_start(config, data, model, params, log)
    return untrained, params


def _rounded(weights) -> dict:
    return {k: round(float(v), 6) for k, v in weights.items()}


def run_experiment(config: ExperimentConfig, log=print) -> dict:
    """Runs one experiment and returns its report (also written to ``report.json``).

    Raises:
      WorkdirInUse: see ``_claim_workdir``; nothing in the workdir is changed then.
    """
    started = time.perf_counter()
    _claim_workdir(config)
    parallel.barrier("workdir claimed")  # before process 0 writes into it
    data = select_condition(load_data(config, log), config.data.condition)
    model = build_model(config, data.num_neurons)
    objective = _objective(config, model)
    kinds.of(config).check(config, data)
    batches = training_batches(config, data, model)
    init_key, eval_key = jax.random.split(jax.random.key(config.train.seed))
    untrained, params = _start(config, data, model, batches, init_key, log)
    mesh = training_mesh(config)
    # Written once training starts: a run that fails before (bad data) leaves no trace.
    _write_json(config.workdir, "config.json", dataclasses.asdict(config))
    log(
        f"{config.kind}: {data.num_neurons} visible + {config.model.num_hidden} hidden neurons, "
        f"loss {config.objective.loss} {_rounded(objective.weights)}, "
        f"passes {objective.passes}, {config.train.num_steps} steps"
        + ("" if mesh is None else f", trials split over {mesh.devices.size} devices")
        + (f" of {jax.process_count()} processes" if jax.process_count() > 1 else "")
    )
    result = train.fit(
        model=model,
        params=params,
        objective=objective,
        batches=batches,
        config=config.train,
        workdir=config.workdir,
        validation=kinds.of(config).validation_batch(config, data, model),
        resume=config.resume,
        log=log,
        mesh=mesh,
    )
    if mesh is not None:  # replicated device arrays to host arrays: evaluated locally
        result = dataclasses.replace(result, best_params=jax.device_get(result.best_params))
    models = {"best": result.best_params, "untrained": untrained, "start": params}
    report = {
        "kind": config.kind,
        "loss": config.objective.loss,
        "weights": _rounded(objective.weights),
        "steps_run": int(result.state.step),
        "best_step": result.best_step,
        "best_validation": result.best_validation,
        "stopped_early": result.stopped_early,
        "convergence": result.convergence,
        "train_seconds": result.seconds,
        **_heldout_report(config, data, model, result, models, eval_key, log),
    }
    report["wall_seconds"] = time.perf_counter() - started
    _write_json(config.workdir, "report.json", report)
    _log_report(report, log)
    log(f"report: {os.path.join(config.workdir, 'report.json')}")
    return report


def _heldout_report(config, data, model, result, models, key, log) -> dict:
    """The held-out part of the report (test metrics of the best, untrained and started
    models and of the target, connectivity R²) and its figures (written by process 0)."""
    test = heldout_batches(data, model, "test")
    if not test:
        raise ValueError("the recording has no test trials: its 'test' split is empty")
    smoothing = max(1, int(round(config.evaluation.psth_smoothing_ms / (1e3 * data.bin_width_s))))

    def evaluate_all(eval_params, eval_model):
        batches = test if eval_model is model else heldout_batches(data, eval_model, "test")
        return {
            movie: evaluate(
                eval_params, eval_model, batch, key, config.evaluation.num_trials, smoothing
            )
            for movie, batch in batches.items()
        }

    log(
        f"held-out evaluation on the test trials of {', '.join(test)}: the model of step "
        f"{result.best_step}, the untrained and started models"
        + (" and the ground-truth target" if data.target is not None else "")
    )
    best_eval = evaluate_all(models["best"], model)
    untrained_eval = evaluate_all(models["untrained"], model)
    started = models["start"] is not models["untrained"]
    start_eval = evaluate_all(models["start"], model) if started else untrained_eval
    report = {
        "test": {movie: values.report() for movie, values in best_eval.items()},
        "untrained_test": {movie: values.report() for movie, values in untrained_eval.items()},
        # After the data-informed start (biases, warm start), before the stochastic phase.
        "start_test": {movie: values.report() for movie, values in start_eval.items()},
        "device": jax.devices()[0].device_kind,
    }
    figdir = os.path.join(config.workdir, "figures")
    # Every process evaluated (the same numbers); process 0 writes the figures and report.
    main = parallel.is_main_process()
    figures = _figures(config, data, model, result, best_eval, figdir) if main else []
    if data.target is not None:
        # The ground truth on the same held-out trials: the ceiling of every metric, given
        # the finite number of recorded trials. With hidden neurons its likelihood is an SMC
        # estimate, biased low: a lower estimate of the ceiling (``evaluate``).
        target_eval = evaluate_all(data.target.params, data.target.model)
        report["target_test"] = {m: v.report() for m, v in target_eval.items()}
        conn = _connectivity(models["best"], model, data.target)
        report["connectivity_r2"] = conn["connectivity_r2"]
        untrained_conn = _connectivity(models["untrained"], model, data.target)
        report["untrained_connectivity_r2"] = untrained_conn["connectivity_r2"]
        if main:
            figures.append(_connectivity_figure(conn, model.network.num_visible, figdir))
    report["figures"] = [os.path.relpath(p, config.workdir) for p in figures]
    return report


def _connectivity_figure(conn: dict, num_visible: int, figdir: str) -> str:
    nv = num_visible
    return plots.matrix_comparison(
        conn["_target"].sum(0)[:nv, :nv],
        conn["_fitted"].sum(0)[:nv, :nv],
        os.path.join(figdir, "connectivity.png"),
        "recurrent weights (sum over delays)",
        conn["connectivity_r2"],
        reference="target",
    )


def _log_report(report: dict, log) -> None:
    """The report's held-out numbers as lines, each beside its references."""
    for movie, values in report["test"].items():
        before, start = report["untrained_test"][movie], report["start_test"][movie]
        log(
            f"test[{movie}] after the data-informed start: PSTH corr "
            f"{start['psth_correlation']:.3f}, NC R² {start['nc_r2']:.3f}, bits/spike "
            f"{_bits_per_spike_text(start)}"
        )
        log(
            f"test[{movie}]: PSTH corr {values['psth_correlation']:.3f} "
            f"(untrained {before['psth_correlation']:.3f}; smoothed "
            f"{values['psth_correlation_smoothed']:.3f} vs "
            f"{before['psth_correlation_smoothed']:.3f}), NC R² {values['nc_r2']:.3f} "
            f"({before['nc_r2']:.3f}; no-correlation model {values['nc_r2_no_correlation']:.3f}),"
            f" bits/spike {_bits_per_spike_text(values)} "
            f"({_bits_per_spike_text(before)})"
        )
        if "target_test" in report:
            _log_target(report["target_test"][movie], values, log)
    if "connectivity_r2" in report:
        log(
            f"connectivity R² {report['connectivity_r2']:.3f} "
            f"(untrained {report['untrained_connectivity_r2']:.3f})"
        )


def _log_target(truth: dict, values: dict, log) -> None:
    log(
        f"  ground-truth target on the same trials: PSTH corr "
        f"{truth['psth_correlation']:.3f} (smoothed "
        f"{truth['psth_correlation_smoothed']:.3f}), NC R² {truth['nc_r2']:.3f}, "
        f"bits/spike {_bits_per_spike_text(truth)}"
    )
    if (
        truth.get("likelihood_estimator") == "smc"
        and truth["bits_per_spike"] < values["bits_per_spike"]
    ):
        log(
            "  the target's bits/spike is below the fit's: its SMC estimate is biased "
            "low (too few particles for its hidden neurons), so it is no ceiling here"
        )
