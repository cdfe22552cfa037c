"""Speed and memory of training steps and sampling at the paper's sizes (see README.md).

    python -m benchmarks.run                         # the default cases (all but `large`)
    python -m benchmarks.run --cases=large           # N = 2000, T = 10,000, K = 16 (remat)
    python -m benchmarks.run --cases=v1 --profile    # + time of each part of the V1 step
    python -m benchmarks.run --smoke                 # tiny versions of every case, < 60 s

Prints a Markdown table and writes JSON (``--out``). Each case runs in its own subprocess
(unless ``--smoke`` or ``--noisolate``) so that the process peak RSS is that case's own.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from rsnn_jax import encoders, losses, network, train
from rsnn_jax import model as model_lib
from rsnn_jax.data.batching import Batch

MB = 2**20
_RESULT_MARKER = "BENCHMARK-RESULT "


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark setting.

    Attributes:
      name: identifier (``--cases``).
      groups: names that select it in ``--cases`` besides its own.
      task: "train" (one jitted training step) or "sample" (a free run, forward only).
      encoder: "v1" (10 stacked frames, shared stimulus) or "retina" (causal temporal conv,
        one clip per trial).
      num_visible, num_hidden, num_delays: N_V, N_H, D.
      num_bins: T.
      num_trials: K (retina: K_m × K_t clips).
      preset: the objective (``losses.PRESETS``), for "train".
      image_size: frames are image_size × image_size.
      conv_features: filters of the spatial CNN layers.
      temporal_kernel: the retina encoder's temporal receptive field.
      clamp_until: T_gt of ``mle_single_trial_nc``.
      remat: rematerialise the scans (``train.TrainConfig.remat``).
      timed_steps: timed repetitions after compilation (the median is reported).
      warmup_steps: untimed repetitions after compilation.
      description: one line for the table.
    """

    name: str
    groups: tuple[str, ...]
    task: str
    encoder: str
    num_visible: int
    num_hidden: int
    num_delays: int
    num_bins: int
    num_trials: int
    preset: str = "mle"
    image_size: int = 27
    conv_features: tuple[int, ...] = (16, 32)
    temporal_kernel: int = 300
    clamp_until: int | None = None
    remat: bool = False
    timed_steps: int = 10
    warmup_steps: int = 1
    description: str = ""

    @property
    def num_neurons(self) -> int:
        return self.num_visible + self.num_hidden


def _v1(name, preset, num_hidden=0, **kwargs):
    return Case(name, ("v1",), "train", "v1", 69, num_hidden, 9, 641, 20, preset, **kwargs)


def _scaling(num_neurons, num_bins, timed_steps, large=False):
    groups = ("scaling", "large") if large else ("scaling",)
    return Case(
        f"scale_n{num_neurons}_t{num_bins}",
        groups,
        "train",
        "v1",
        69,
        num_neurons - 69,
        9,
        num_bins,
        16,
        "psth",
        remat=True,
        timed_steps=timed_steps,
        warmup_steps=0 if large else 1,
        description=f"V1 CNN, N = {num_neurons}, T = {num_bins}, K = 16, psth, remat",
    )


CASES: tuple[Case, ...] = (
    _v1("v1_mle", "mle", description="V1 (Table S2): N = 69, T = 641, K = 20, D = 9, mle"),
    _v1(
        "v1_mle_psth_nc_mse",
        "mle_psth_nc_mse",
        description="V1: N = 69, T = 641, K = 20, mle_psth_nc_mse",
    ),
    _v1(
        "v1_hidden_500",
        "mle_psth_nc_mse",
        num_hidden=431,
        description="V1: 69 visible + 431 hidden, T = 641, K = 20, mle_psth_nc_mse",
    ),
    Case(
        "retina",
        ("retina",),
        "train",
        "retina",
        25,
        0,
        24,
        80,
        30,
        "mle_single_trial_nc",
        image_size=8,
        clamp_until=75,
        description="retina (Table S5): N = 25, D = 24, 300-bin filter, 30×1 clips of T = 80",
    ),
    Case(
        "sampling",
        ("sampling",),
        "sample",
        "v1",
        69,
        0,
        9,
        641,
        1000,
        description="free run: 1000 trials × 641 bins, N = 69",
    ),
    Case(
        "sampling_n500",
        ("sampling",),
        "sample",
        "v1",
        69,
        431,
        9,
        641,
        1000,
        timed_steps=3,
        description="free run: 1000 trials × 641 bins, N = 500",
    ),
    _scaling(69, 641, 10),
    _scaling(500, 641, 10),
    _scaling(2000, 641, 3),
    _scaling(69, 10_000, 5),
    _scaling(500, 10_000, 3),
    _scaling(2000, 10_000, 1, large=True),
)


def smoke_version(case: Case) -> Case:
    """A tiny case of the same structure (encoder, passes, objective, remat) as ``case``."""
    scale = {69: 6, 500: 12, 2000: 24}
    tiny = dict(
        num_visible=4,
        num_hidden=case.num_hidden and 4,
        num_delays=3,
        num_bins=16,
        num_trials=4,
        image_size=9,
        conv_features=(4, 8),
        temporal_kernel=6,
        timed_steps=3,
        warmup_steps=1,
    )
    if case.name.startswith("scale_"):
        tiny.update(
            num_hidden=scale[case.num_neurons] - 4, num_bins=16 if case.num_bins < 1000 else 48
        )
    if case.clamp_until is not None:
        tiny["clamp_until"] = 12
    if case.task == "sample":
        tiny["num_trials"] = 32
    return dataclasses.replace(case, **tiny)


def select_cases(names: list[str], smoke: bool) -> list[Case]:
    """Cases by name or group; "default" = all but the ``large`` group ("all" with ``smoke``),
    "all" = every case."""
    chosen = []
    for name in names:
        if name == "all" or (name == "default" and smoke):
            matched = list(CASES)
        elif name == "default":
            matched = [c for c in CASES if "large" not in c.groups]
        else:
            matched = [c for c in CASES if name == c.name or name in c.groups]
        if not matched:
            groups = sorted({g for c in CASES for g in c.groups})
            raise ValueError(
                f"--cases: unknown case or group {name!r}; cases: "
                f"{', '.join(c.name for c in CASES)}; groups: {', '.join(groups)}, default, all"
            )
        chosen += [c for c in matched if c not in chosen]
    return [smoke_version(c) for c in chosen] if smoke else chosen


# ------------------------------------------------------------------------------ FLOP counts


def _spatial_cnn_flops(height, width, channels, features, kernel=7):
    """(forward FLOPs of each conv layer for one image, output features) of
    ``encoders.SpatialCNN``: conv "SAME" on (h, w), then max-pool stride 2 "SAME" → ⌈h/2⌉."""
    layers = []
    for num_filters in features:
        layers.append(2 * height * width * kernel * kernel * channels * num_filters)
        height, width, channels = math.ceil(height / 2), math.ceil(width / 2), num_filters
    return layers, height * width * channels


def flop_counts(case: Case, passes: model_lib.Passes, objective: losses.Objective) -> dict:
    """Analytic FLOPs of one step (multiply-add = 2), by part; see README.md.

    Returns:
      {"encoder_fwd", "encoder_bwd", "network_fwd", "network_bwd", "loss_fwd", "loss_bwd",
       "total"} (forward only for a sampling case).
    """
    k, t, d, n = case.num_trials, case.num_bins, case.num_delays, case.num_neurons
    nv, size = case.num_visible, case.image_size
    if case.encoder == "v1":
        # One CNN pass per bin on the shared stimulus (10 stacked frames = input channels);
        # the first layer needs no input gradient.
        layers, num_features = _spatial_cnn_flops(size, size, 10, case.conv_features)
        encoder_fwd = t * sum(layers)
        encoder_bwd = t * (layers[0] + 2 * sum(layers[1:]))
        drive_copies = 1
    else:
        # Per clip: the temporal conv (16 filters) on every pixel (weight gradient only),
        # then the CNN on 16 channels.
        temporal = 2 * size * size * t * case.temporal_kernel * 16
        layers, num_features = _spatial_cnn_flops(size, size, 16, case.conv_features)
        encoder_fwd = k * (temporal + t * sum(layers))
        encoder_bwd = k * (temporal + 2 * t * sum(layers))
        drive_copies = k
    projection = 2 * drive_copies * t * num_features * n
    if case.task == "sample":
        network_fwd = projection + 2 * k * t * d * n * n
        total = encoder_fwd + network_fwd
        return dict(encoder_fwd=encoder_fwd, network_fwd=network_fwd, total=total)
    network_fwd = network_bwd = 0
    recurrent = 2 * k * t * d * n * n  # one pass of K trials
    scans = []  # number of trials of each sequential (scan) pass
    if passes.clamped:
        if case.num_hidden == 0:  # parallel matmuls over time; only ∂W in the backward
            network_fwd += projection + recurrent
            network_bwd += 2 * projection + recurrent
        else:
            scans.append(passes.clamped)
    if passes.free:
        scans.append(1)
    if passes.clamp_until is not None:
        scans.append(1)
    for samples in scans:
        network_fwd += projection + samples * recurrent
        # Reverse scan g·Wᵀ and ∂W = Σ hᵀg: 2× forward; remat recomputes the voltages: +1×.
        network_bwd += 2 * projection + samples * recurrent * (3 if case.remat else 2)
    pair = 2 * k * t * nv * nv  # one [N_V, K·T] @ [K·T, N_V] matmul
    loss_fwd = loss_bwd = 0
    for term in objective.terms.values():
        loss = getattr(term, "loss", None)  # the function of a losses.VisibleTerm
        if loss in (losses.nc_loss, losses.nc_shuffled_loss):
            loss_fwd += 3 * pair  # data coincidences + 2 model log-space products
            loss_bwd += 4 * pair
        elif loss is losses.nc_mse_loss:
            num_delays = dict(term.options)["num_delays"]
            loss_fwd += 2 * num_delays * pair  # data and model lagged covariances
            loss_bwd += 2 * num_delays * pair
    parts = dict(
        encoder_fwd=encoder_fwd,
        encoder_bwd=encoder_bwd,
        network_fwd=network_fwd,
        network_bwd=network_bwd,
        loss_fwd=loss_fwd,
        loss_bwd=loss_bwd,
    )
    return dict(parts, total=sum(parts.values()))


# ------------------------------------------------------------------------------ setup


def build(case: Case):
    """(model, objective or None, batch, params) of a case, with synthetic data."""
    if case.encoder == "v1":
        encoder = encoders.V1Encoder(features=case.conv_features)
    else:
        encoder = encoders.RetinaEncoder(
            temporal_kernel=case.temporal_kernel, features=case.conv_features
        )
    config = network.NetworkConfig(case.num_visible, case.num_hidden, case.num_delays)
    model = model_lib.Model(encoder, config)
    frames = case.num_bins + model.receptive_field - 1
    rng = np.random.default_rng(0)
    clip = (frames, case.image_size, case.image_size)
    stimulus_shape = clip if case.encoder == "v1" else (case.num_trials,) + clip
    k, t, nv, d = case.num_trials, case.num_bins, case.num_visible, case.num_delays
    batch = Batch(
        stimulus=rng.normal(size=stimulus_shape).astype(np.float32),
        spikes=(rng.uniform(size=(k, t, nv)) < 0.1).astype(np.float32),
        history=(rng.uniform(size=(k, d, nv)) < 0.1).astype(np.float32),
    )
    params = model_lib.init_model(jax.random.key(0), model, clip)
    objective = None
    if case.task == "train":
        objective = losses.make_objective(
            case.preset,
            num_visible=nv,
            num_hidden=case.num_hidden,
            clamp_until=case.clamp_until,
            num_delays=d,
        )
    return model, objective, jax.device_put(batch), params


def _timed(function, repeats: int) -> list[float]:
    """Wall times of ``repeats`` calls of ``function()`` (each waits for its result)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function())
        times.append(time.perf_counter() - start)
    return times


def _xla_memory(compiled) -> dict:
    """XLA's buffer assignment of a compiled program, in MiB (None where unavailable)."""
    try:
        stats = compiled.memory_analysis()
    except (NotImplementedError, RuntimeError):
        stats = None
    if stats is None:
        return dict(xla_argument_mb=None, xla_output_mb=None, xla_temp_mb=None, xla_total_mb=None)
    arg, out = stats.argument_size_in_bytes, stats.output_size_in_bytes
    temp, alias = stats.temp_size_in_bytes, stats.alias_size_in_bytes
    return dict(
        xla_argument_mb=arg / MB,
        xla_output_mb=out / MB,
        xla_temp_mb=temp / MB,
        xla_total_mb=(arg + out + temp - alias) / MB,
    )


def _xla_flops(compiled) -> float | None:
    try:
        cost = compiled.cost_analysis()
    except (NotImplementedError, RuntimeError):
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return None if not cost or "flops" not in cost else float(cost["flops"])


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss: KiB on Linux, B on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (MB if sys.platform == "darwin" else 1024)


def device_peak_mb() -> float | None:
    """The accelerator allocator's peak (GPU/TPU); None where the backend has no stats (CPU)."""
    stats = jax.local_devices()[0].memory_stats()
    return (
        None if not stats or "peak_bytes_in_use" not in stats else stats["peak_bytes_in_use"] / MB
    )


def matmul_reference(size: int, repeats: int = 10) -> dict:
    """Dense float32 ``jnp.dot`` of two [size, size] matrices: the machine's matmul FLOP/s."""
    keys = jax.random.split(jax.random.key(1))
    a, b = (jax.random.normal(key, (size, size), jnp.float32) for key in keys)
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, b))
    seconds = statistics.median(_timed(lambda: dot(a, b), repeats))
    return dict(size=size, seconds=seconds, flops_per_s=2 * size**3 / seconds)


# ------------------------------------------------------------------------------ one case


def run_train_case(case: Case, profile: bool, trace_dir: str | None) -> dict:
    model, objective, batch, params = build(case)
    optimizer = train.make_optimizer(train.TrainConfig())
    step = train.make_train_step(model, optimizer, case.remat)
    state = train.init_train_state(params, optimizer)
    keys = [train.step_key(0, i) for i in range(case.warmup_steps + case.timed_steps)]
    start = time.perf_counter()
    compiled = step.lower(state, objective, batch, keys[0]).compile()
    compile_seconds = time.perf_counter() - start
    for key in keys[: case.warmup_steps]:
        state, terms, finite = compiled(state, objective, batch, key)
    times = []

    def run_timed():
        nonlocal state
        for key in keys[case.warmup_steps :]:
            start = time.perf_counter()
            state, terms, finite = compiled(state, objective, batch, key)
            jax.block_until_ready(state)
            times.append(time.perf_counter() - start)
        return terms, finite

    if trace_dir:
        with jax.profiler.trace(os.path.join(trace_dir, case.name)):
            terms, finite = run_timed()
    else:
        terms, finite = run_timed()
    if not bool(finite):
        raise RuntimeError(f"{case.name}: the training step produced a NaN/inf loss or gradient")
    flops = flop_counts(case, objective.passes, objective)
    result = _summary(case, times, compile_seconds, compiled, flops)
    result["loss"] = float(terms["total"])
    # The large case's parts would each take minutes more; its step time is the figure.
    if profile and "large" not in case.groups:
        result["profile"] = profile_parts(case, model, objective, batch, state.params, optimizer)
    return result


def run_sample_case(case: Case) -> dict:
    model, _, batch, params = build(case)

    def sample(params, stimulus, key):
        features = model_lib.encode(params, model, stimulus)
        return network.simulate_batch(
            params.network,
            features,
            config=model.network,
            key=key,
            num_trials=case.num_trials,
        ).spikes

    start = time.perf_counter()
    compiled = jax.jit(sample).lower(params, batch.stimulus, jax.random.key(0)).compile()
    compile_seconds = time.perf_counter() - start
    keys = iter(jax.random.split(jax.random.key(1), case.warmup_steps + case.timed_steps))
    for _ in range(case.warmup_steps):
        jax.block_until_ready(compiled(params, batch.stimulus, next(keys)))
    times = _timed(lambda: compiled(params, batch.stimulus, next(keys)), case.timed_steps)
    flops = flop_counts(case, model_lib.Passes(free=True), None)
    result = _summary(case, times, compile_seconds, compiled, flops)
    seconds = result["step_seconds_median"]
    result["trials_per_s"] = case.num_trials / seconds
    result["neuron_bins_per_s"] = case.num_trials * case.num_bins * case.num_neurons / seconds
    return result


def _summary(case, times, compile_seconds, compiled, flops) -> dict:
    median = statistics.median(times)
    return dict(
        case=dataclasses.asdict(case),
        timed_steps=len(times),
        step_seconds=times,
        step_seconds_median=median,
        compile_seconds=compile_seconds,
        peak_rss_mb=peak_rss_mb(),
        device_peak_mb=device_peak_mb(),
        **_xla_memory(compiled),
        flops_per_step=float(flops["total"]),
        flops=dict((k, float(v)) for k, v in flops.items()),
        flops_per_s=flops["total"] / median,
        xla_flops=_xla_flops(compiled),
    )


class _Features(nn.Module):
    """An encoder that returns its input: the network and losses alone, for ``--profile``."""

    @nn.compact
    def __call__(self, features):
        return features


def profile_parts(case, model, objective, batch, params, optimizer, repeats=None) -> dict:
    """Median times of the parts of a training step, each jitted alone.

    Parts: the encoder forward and forward+backward (a VJP with a fixed cotangent); the
    simulation passes (every pass the objective needs, from precomputed features) forward
    and forward+backward; the loss (the objective on precomputed pass outputs) forward and
    forward+backward; the optimiser update. FLOPs from ``flop_counts``.
    """
    repeats = repeats or max(3, case.timed_steps)
    per_trial = batch.stimulus.ndim == 4
    passes = objective.passes
    flops = flop_counts(case, passes, objective)
    key = jax.random.key(2)

    def encoder_forward(encoder_params):
        return model_lib.encode(
            params._replace(encoder=encoder_params), model, batch.stimulus, per_trial
        )

    features = jax.jit(encoder_forward)(params.encoder)
    network_model = model_lib.Model(_Features(), model.network)

    def simulate(network_params, features):
        return model_lib.run_passes(
            model_lib.ModelParams(encoder={}, network=network_params),
            network_model,
            features,
            batch.spikes,
            passes=passes,
            key=key,
            initial_history=batch.history,
            per_trial_stimulus=per_trial,
            remat=case.remat,
        )

    outputs = jax.jit(simulate)(params.network, features)
    cotangent = jax.tree.map(jnp.ones_like, outputs)

    def vjp(function, cotangent, *args):
        out, pullback = jax.vjp(function, *args)
        return out, pullback(cotangent)

    def loss(outputs):
        return objective(outputs, batch.spikes)[0]

    grads = jax.tree.map(jnp.ones_like, params)
    opt_state = optimizer.init(params)

    def update(grads, opt_state, params):
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return jax.tree.map(jnp.add, params, updates), opt_state

    parts = {
        "encoder forward": (encoder_forward, (params.encoder,), flops["encoder_fwd"]),
        "encoder forward+backward": (
            lambda p: vjp(encoder_forward, jnp.ones_like(features), p),
            (params.encoder,),
            flops["encoder_fwd"] + flops["encoder_bwd"],
        ),
        "simulation forward": (simulate, (params.network, features), flops["network_fwd"]),
        "simulation forward+backward": (
            lambda p, f: vjp(simulate, cotangent, p, f),
            (params.network, features),
            flops["network_fwd"] + flops["network_bwd"],
        ),
        "loss forward": (loss, (outputs,), flops["loss_fwd"]),
        "loss forward+backward": (
            jax.value_and_grad(loss),
            (outputs,),
            flops["loss_fwd"] + flops["loss_bwd"],
        ),
        "optimizer update": (update, (grads, opt_state, params), 0),
    }
    result = {}
    for name, (function, args, part_flops) in parts.items():
        compiled = jax.jit(function).lower(*args).compile()
        jax.block_until_ready(compiled(*args))
        seconds = statistics.median(_timed(lambda c=compiled, a=args: c(*a), repeats))
        result[name] = dict(
            seconds=seconds, flops=float(part_flops), flops_per_s=part_flops / seconds
        )
    return result


def compile_only(case: Case) -> dict:
    """Lowers and compiles a training case without running it: XLA's memory estimate."""
    model, objective, batch, params = build(case)
    optimizer = train.make_optimizer(train.TrainConfig())
    step = train.make_train_step(model, optimizer, case.remat)
    state = train.init_train_state(params, optimizer)
    start = time.perf_counter()
    compiled = step.lower(state, objective, batch, train.step_key(0, 0)).compile()
    return dict(
        case=dataclasses.asdict(case),
        compile_seconds=time.perf_counter() - start,
        flops_per_step=float(flop_counts(case, objective.passes, objective)["total"]),
        peak_rss_mb=peak_rss_mb(),
        **_xla_memory(compiled),
    )


def run_case(case: Case, profile: bool = False, trace_dir: str | None = None) -> dict:
    if case.task == "sample":
        return run_sample_case(case)
    return run_train_case(case, profile, trace_dir)


# ------------------------------------------------------------------------------ report


def _fmt(value, digits=3) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-2:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def markdown(results: dict) -> str:
    meta = results["meta"]
    matmul = meta["matmul"]
    lines = [
        f"device: {meta['device']} ({meta['platform']}, {meta['num_cpus']} CPUs"
        f"{', ' + meta['cpu_model'] if meta.get('cpu_model') else ''}"
        f"{', ' + meta['date'] if meta.get('date') else ''}), "
        f"jax {meta['jax_version']}; matmul reference {matmul['size']}×{matmul['size']} "
        f"float32: {_fmt(matmul['flops_per_s'] / 1e9)} GFLOP/s"
        + (" — SMOKE sizes, not the paper's" if meta["smoke"] else ""),
        "",
        "| case | steps | step (ms, median) | compile (s) | peak RSS (MB) | XLA total (MB) | "
        "GFLOP/step | GFLOP/s | % of matmul | throughput |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["cases"].items():
        if "trials_per_s" in r:
            throughput = (
                f"{_fmt(r['trials_per_s'])} trials/s, {_fmt(r['neuron_bins_per_s'])} neuron-bins/s"
            )
        else:
            throughput = f"{_fmt(1 / r['step_seconds_median'])} steps/s"
        lines.append(
            f"| {name} | {r['timed_steps']} | {_fmt(1e3 * r['step_seconds_median'])} | "
            f"{_fmt(r['compile_seconds'])} | {_fmt(r['peak_rss_mb'])} | "
            f"{_fmt(r['xla_total_mb'])} | "
            f"{_fmt(r['flops_per_step'] / 1e9)} | {_fmt(r['flops_per_s'] / 1e9)} | "
            f"{_fmt(100 * r['matmul_fraction'])} | {throughput} |"
        )
    for name, r in results["cases"].items():
        if "profile" not in r:
            continue
        step = r["step_seconds_median"]
        lines += [
            "",
            f"profile of {name} (each part jitted alone; step {_fmt(1e3 * step)} ms):",
            "",
            "| part | ms | % of step | GFLOP | GFLOP/s | % of matmul |",
            "|---|---|---|---|---|---|",
        ]
        for part, p in r["profile"].items():
            lines.append(
                f"| {part} | {_fmt(1e3 * p['seconds'])} | {_fmt(100 * p['seconds'] / step)} | "
                f"{_fmt(p['flops'] / 1e9)} | {_fmt(p['flops_per_s'] / 1e9)} | "
                f"{_fmt(100 * p['flops_per_s'] / matmul['flops_per_s'])} |"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------ command line

flags.DEFINE_list(
    "cases", ["default"], "Cases or groups (v1, retina, sampling, scaling, large, default, all)."
)
flags.DEFINE_bool(
    "smoke", False, "Tiny versions of the cases (CI; seconds, not the paper's sizes)."
)
flags.DEFINE_string("out", "benchmarks/results.json", "Where the JSON results go.")
flags.DEFINE_integer("steps", None, "Override the timed repetitions of every case.")
flags.DEFINE_bool("profile", False, "Also time each part of the training steps alone.")
flags.DEFINE_string("trace_dir", None, "Write a jax.profiler trace of the timed steps here.")
flags.DEFINE_bool("isolate", None, "One subprocess per case (default: yes, except --smoke).")
flags.DEFINE_bool("compile_only", False, "Only compile training cases: XLA's memory estimate.")
flags.DEFINE_string("worker", None, "Internal: run this one case and print its JSON result.")
FLAGS = flags.FLAGS


def _case_by_name(name: str) -> Case:
    for case in select_cases(["all"], FLAGS.smoke):
        if case.name == name:
            return case
    raise ValueError(f"no case {name!r}")


def _prepared(case: Case) -> Case:
    return case if FLAGS.steps is None else dataclasses.replace(case, timed_steps=FLAGS.steps)


def _run_isolated(case: Case) -> dict:
    """Runs one case in a fresh Python process (its own peak RSS) and returns its result."""
    argv = [sys.executable, "-m", "benchmarks.run", f"--worker={case.name}"]
    argv += [f"--smoke={FLAGS.smoke}", f"--profile={FLAGS.profile}"]
    if FLAGS.steps is not None:
        argv.append(f"--steps={FLAGS.steps}")
    if FLAGS.trace_dir:
        argv.append(f"--trace_dir={FLAGS.trace_dir}")
    done = subprocess.run(argv, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(_RESULT_MARKER)]
    if done.returncode or not lines:
        raise RuntimeError(
            f"case {case.name} failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
        )
    return json.loads(lines[-1][len(_RESULT_MARKER) :])


def main(argv):
    del argv
    if FLAGS.smoke:
        # Tiny cases: compilation would dominate; their timings mean nothing anyway.
        jax.config.update("jax_disable_most_optimizations", True)
    if FLAGS.worker:
        result = run_case(_prepared(_case_by_name(FLAGS.worker)), FLAGS.profile, FLAGS.trace_dir)
        print(_RESULT_MARKER + json.dumps(result), flush=True)
        return
    try:
        cases = [_prepared(c) for c in select_cases(FLAGS.cases, FLAGS.smoke)]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if FLAGS.compile_only:
        for case in cases:
            if case.task == "train":
                print(json.dumps(compile_only(case)), flush=True)
        return
    isolate = (not FLAGS.smoke) if FLAGS.isolate is None else FLAGS.isolate
    matmul = matmul_reference(256 if FLAGS.smoke else 2048)
    device = jax.local_devices()[0]
    results = {
        "meta": dict(
            device=device.device_kind,
            platform=device.platform,
            num_devices=jax.local_device_count(),
            num_cpus=os.cpu_count(),
            machine=platform.machine(),
            cpu_model=_cpu_model(),
            date=time.strftime("%Y-%m-%d"),
            jax_version=jax.__version__,
            smoke=FLAGS.smoke,
            peak_rss_isolated=isolate,
            matmul=matmul,
            matmul_flops_per_s=matmul["flops_per_s"],
        ),
        "cases": {},
    }
    for case in cases:
        print(f"running {case.name} ...", file=sys.stderr, flush=True)
        result = _run_isolated(case) if isolate else run_case(case, FLAGS.profile, FLAGS.trace_dir)
        result["matmul_fraction"] = result["flops_per_s"] / matmul["flops_per_s"]
        results["cases"][case.name] = result
    if FLAGS.out:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        with open(FLAGS.out, "w") as f:
            json.dump(results, f, indent=2)
    print(markdown(results))


if __name__ == "__main__":
    app.run(main)
