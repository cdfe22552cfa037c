"""Synthetic ground-truth recordings from target networks of the fitted model class (appendix A).

The paper's synthetic targets were networks fitted to the V1 data; that data cannot be
downloaded here, so the targets are *designed* instead, with the structure a fitted network
has, and the recording is sampled from them exactly as an experiment would record it:

* the target is an ``rsnn_jax.model.Model`` of the same class as the one an experiment fits
  (V1: ``V1Encoder`` + ``NetworkConfig(num_visible=69, num_hidden, num_delays=9)``; retina:
  ``RetinaEncoder(temporal_kernel=300)`` + ``NetworkConfig(num_visible=25,
  num_delays=24)``), returned as ``Recording.target`` (an ``rsnn_jax.ground_truth.Target``)
  and stored with the data under ``/target`` (``ground_truth.load_target`` reads it back);
* encoder: the Flax initialisation (V1) or that plus hand-set biphasic temporal filters
  (retina: latencies 35–120 ms, ON and OFF);
* stimulus drive: each neuron reads the encoder's features through a spatially localised
  random readout (a receptive field on the feature map), scaled so that its drive has a set
  standard deviation on the data's own stimulus (``stimulus_gain``, in logit units): the
  PSTHs have clear structure whatever the random encoder does;
* recurrent weights ``[delay − 1, pre, post]`` (V1): a refractory self-history filter;
  weak random background; *hubs* that each drive 3–6 visible neurons with strong fast
  weights (±3 logit at delay 1; the targets of a hub share its spikes: lag-0 noise
  correlations, positive or negative), hidden neurons when the target has any (unobserved
  common inputs: hidden neurons matter for the visible statistics); two *broad hubs* with
  a weak input to every visible neuron (a small positive noise correlation for most pairs);
  *assemblies* of 3–5 visible neurons with mutual excitation of loop gain 0.3. Feed-forward
  hubs carry the correlations because loops strong enough to do so are bistable (tried:
  assemblies of loop gain ≥ 0.8 run away). Retina: an absolute refractory period and
  neighbour coupling on the mosaic;
* biases: calibrated (a few damped fixed-point iterations on free simulations) so that each
  neuron's mean firing probability per bin matches a target drawn from a log-normal (V1 at
  40 ms: median 0.1, in [0.03, 0.35]; retina at 1.667 ms: median 0.03, in [0.01, 0.08]);
* sampling: free runs (docs/model.md) from a silent history; the first ``R − 1`` frames feed
  the encoder's context and a further burn-in of ``burn_in_bins`` bins is simulated and
  dropped, so the stored bins are a stationary sample and bins ≥ max(R − 1, D) of the
  stored movie are exactly what the target produces given the stored frames and history.

Everything is a pure function of ``seed``. ``summarize`` measures the rates, the fraction
of bins with spikes and the noise-correlation range (appendix C, eqs. 8–10).

This is model-layer code (it builds and simulates networks), kept out of the NumPy/h5py
data layer ``rsnn_jax.data``. Command line (``experiments/make_synthetic.py``)::

    python -m experiments.make_synthetic --kind=v1 --out=synthetic_v1.h5 [--num_hidden=431]
    python -m experiments.make_synthetic --kind=retina --out=synthetic_retina.h5
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rsnn_jax import encoders, metrics, network
from rsnn_jax import model as model_lib
from rsnn_jax.data.recording import Recording
from rsnn_jax.data.retina import appendix_a_split
from rsnn_jax.ground_truth import Target

V1_BIN_WIDTH_S = 0.04
RETINA_BIN_WIDTH_S = 1.0 / 600.0


# ----------------------------------------------------------------------------- stimuli


def natural_movie(
    rng: np.random.Generator,
    num_frames: int,
    size: int,
    *,
    spatial_exponent: float = 1.0,
    temporal_exponent: float = 1.0,
    contrast: float = 0.2,
) -> np.ndarray:
    """1/f spatiotemporal noise, a stand-in for a natural movie.

    Amplitude spectrum ``|k|^-spatial_exponent · |ω|^-temporal_exponent`` (frequencies in
    cycles per frame and per pixel, floored at one cycle per movie / image), random phases;
    standardised, then ``0.5 + contrast · z`` clipped to [0, 1] (gray levels).

    Returns:
      float32 [num_frames, size, size].
    """
    ft = np.abs(np.fft.fftfreq(num_frames))[:, None, None]
    fy = np.fft.fftfreq(size)[None, :, None]
    fx = np.fft.fftfreq(size)[None, None, :]
    spatial = np.maximum(np.sqrt(fy**2 + fx**2), 1.0 / size)
    temporal = np.maximum(ft, 1.0 / num_frames)
    amplitude = spatial**-spatial_exponent * temporal**-temporal_exponent
    amplitude[0, 0, 0] = 0.0
    phases = np.exp(2j * np.pi * rng.uniform(size=amplitude.shape))
    movie = np.real(np.fft.ifftn(amplitude * phases))
    movie = (movie - movie.mean()) / movie.std()
    return np.clip(0.5 + contrast * movie, 0.0, 1.0).astype(np.float32)


def checkerboard_movie(
    rng: np.random.Generator, num_bins: int, size: int, frame_bins: int = 20
) -> np.ndarray:
    """Binary random checkerboard (one check per pixel), a new frame every ``frame_bins`` bins.

    Returns:
      float32 [num_bins, size, size] in {0, 1}.
    """
    num_frames = -(-num_bins // frame_bins)
    frames = (rng.uniform(size=(num_frames, size, size)) < 0.5).astype(np.float32)
    return np.repeat(frames, frame_bins, axis=0)[:num_bins]


def moving_bars_movie(
    rng: np.random.Generator,
    num_bins: int,
    size: int,
    *,
    frame_bins: int = 4,
    bar_width: float = 2.0,
    speed_range: tuple[float, float] = (0.02, 0.06),
) -> np.ndarray:
    """Sweeps of a dark or bright bar on gray, in one of 8 directions, at a random speed.

    Each sweep crosses the whole image (speed in pixels per bin); the frame is updated every
    ``frame_bins`` bins and drawn with anti-aliased edges.

    Returns:
      float32 [num_bins, size, size] in [0, 1] (gray 0.5).
    """
    coords = np.arange(size) - (size - 1) / 2
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    half_diagonal = np.sqrt(2) * size / 2 + bar_width
    frames = np.empty((num_bins, size, size), np.float32)
    t = 0
    while t < num_bins:
        angle = rng.integers(8) * np.pi / 4
        polarity = rng.choice([-1.0, 1.0])
        speed = rng.uniform(*speed_range)
        length = int(np.ceil(2 * half_diagonal / speed))
        projection = np.cos(angle) * xx + np.sin(angle) * yy
        for step in range(0, min(length, num_bins - t), frame_bins):
            center = -half_diagonal + speed * step
            coverage = np.clip(bar_width / 2 + 0.5 - np.abs(projection - center), 0.0, 1.0)
            frames[t + step : t + step + frame_bins] = 0.5 + 0.5 * polarity * coverage
        t += length
    return frames


# ----------------------------------------------------------------------------- target design


def _delay_kernel(num_delays: int, tau: float, first: int = 1) -> np.ndarray:
    """[D]: exp(−(d − first)/tau) for d ≥ first, 0 before."""
    d = np.arange(1, num_delays + 1)
    return np.where(d >= first, np.exp(-(d - first) / tau), 0.0)


def _feature_map_shape(height: int, width: int, channels: int) -> tuple[int, int, int]:
    """[h, w, C] of ``SpatialCNN``'s output: two stride-2 "same" pools, ceil(·/2) each."""
    for _ in range(2):
        height, width = -(-height // 2), -(-width // 2)
    return height, width, channels


def _localised_readout(
    rng: np.random.Generator, feature_shape: tuple[int, int, int], num_neurons: int, width: float
) -> np.ndarray:
    """[F, N] random readout of a [h, w, C] feature map with a Gaussian spatial envelope."""
    height, width_px, channels = feature_shape
    yy, xx = np.meshgrid(np.arange(height), np.arange(width_px), indexing="ij")
    centers = rng.uniform(0, 1, size=(num_neurons, 2)) * [height - 1, width_px - 1]
    distance2 = (yy[None] - centers[:, 0, None, None]) ** 2 + (
        xx[None] - centers[:, 1, None, None]
    ) ** 2
    envelope = np.exp(-distance2 / (2 * width**2))  # [N, h, w]
    weights = rng.normal(size=(num_neurons, height, width_px, channels)) * envelope[..., None]
    return weights.reshape(num_neurons, -1).T


def _scale_readout(readout: np.ndarray, features: np.ndarray, drive_std: np.ndarray):
    """Scales columns of ``readout`` so that ``features @ readout`` has std ``drive_std``.

    Returns:
      (scaled readout [F, N], mean drive [N]).
    """
    drive = features @ readout
    std = drive.std(axis=0)
    scale = drive_std / np.maximum(std, 1e-8)
    return readout * scale, drive.mean(axis=0) * scale


def _input_weights(
    rng: np.random.Generator,
    map_shape: tuple[int, int, int],
    features: np.ndarray,
    num_neurons: int,
    width_divisor: float,
    spread: tuple[float, float],
    gain: float,
    scale: float,
) -> np.ndarray:
    """W_in [F, N]: each neuron reads a localised patch of the [h, w, C] feature map (width
    h / ``width_divisor``), scaled so that its drive on ``features`` [T, F] has a standard
    deviation of ``gain`` × U(``spread``) logit units (``scale``: logit per unit of u)."""
    readout = _localised_readout(
        rng, map_shape, num_neurons, width=max(map_shape[0] / width_divisor, 0.8)
    )
    drive_std = gain * rng.uniform(*spread, size=num_neurons) / scale
    input_weights, _ = _scale_readout(readout, features, drive_std)
    return input_weights


def _design_recurrent(
    rng: np.random.Generator,
    rates: np.ndarray,
    *,
    num_visible: int,
    num_delays: int,
    scale: float,
    num_hubs: int | None,
    hub_strength: float,
    assembly_fraction: float,
    assembly_gain: float,
    refractory_strength: float,
    num_broad_hubs: int = 2,
    broad_strength: float = 1.0,
    hub_tau: float = 1.0,
    assembly_tau: float = 3.0,
    hub_targets: tuple[int, int] = (3, 7),
    inhibitory_fraction: float = 0.2,
    background: float = 0.3,
) -> tuple[np.ndarray, dict]:
    """Recurrent weights [D, N, N] (``[d − 1, pre, post]``, units of u) with realistic motifs.

    * self-history: refractory, ``−refractory_strength`` logit at delay 1, decaying (τ 1.5);
    * background: N(0, (background / sqrt(D·N))²), a third of the initialisation scale;
    * hubs: ``num_hubs`` neurons (hidden ones if the network has any, else visible ones;
      see below) each drive 3–6 visible non-hub neurons with a fast (τ = hub_tau)
      strong weight of ``hub_strength`` logit at delay 1, 20 % of them inhibitory (default
      N_V // 7 hubs, or N_V // 3 hidden hubs). Targets of
      one hub share its spikes: this is the main source of lag-0 noise correlations (an
      unobserved hub is a hidden common input), and a feed-forward motif cannot run away;
    * assemblies: ``assembly_fraction`` of the visible neurons in groups of 3–5 with mutual
      excitation (τ = assembly_tau) whose linearised loop gain, (m − 1)·Σ_d w_d·p(1 − p),
      is ``assembly_gain`` < 1: they amplify shared slow fluctuations but have no
      self-sustained up state.

    Returns:
      (weights float64 [D, N, N], dict(hubs=[...], assemblies=[[...], ...])).
    """
    n, d = len(rates), num_delays
    recurrent = rng.normal(size=(d, n, n)) * (background / np.sqrt(d * n))
    refractory = refractory_strength * rng.uniform(0.7, 1.3, size=n) / scale
    recurrent[:, np.arange(n), np.arange(n)] = -refractory[None] * _delay_kernel(d, 1.5)[:, None]

    if num_hubs is None:
        num_hubs = max(1, num_visible // 7 if n == num_visible else num_visible // 3)
    pool = np.arange(num_visible, n) if n > num_visible else np.arange(num_visible)
    hubs = np.sort(rng.choice(pool, size=min(num_hubs, len(pool)), replace=False))
    non_hubs = np.setdiff1d(np.arange(num_visible), hubs)
    fast = _delay_kernel(d, hub_tau)
    for hub in hubs:
        count = min(int(rng.integers(*hub_targets)), len(non_hubs))
        targets = rng.choice(non_hubs, size=count, replace=False)
        signs = np.where(rng.uniform(size=count) < inhibitory_fraction, -1.0, 1.0)
        strengths = signs * hub_strength * rng.uniform(0.7, 1.3, size=count) / scale
        recurrent[:, hub, targets] += fast[:, None] * strengths[None]

    # Broad hubs: a weak common input to every visible neuron (a small positive noise
    # correlation for most pairs, as in V1 recordings).
    others = np.setdiff1d(pool, hubs)
    broad = np.sort(rng.choice(others, size=min(num_broad_hubs, len(others)), replace=False))
    for hub in broad:
        targets = np.setdiff1d(np.arange(num_visible), broad)
        strengths = broad_strength * rng.uniform(0.7, 1.3, size=len(targets)) / scale
        recurrent[:, hub, targets] += fast[:, None] * strengths[None]

    slow = _delay_kernel(d, assembly_tau)
    members = rng.permutation(non_hubs)[: int(round(assembly_fraction * num_visible))]
    assemblies, cursor = [], 0
    while cursor < len(members):
        group = members[cursor : cursor + int(rng.integers(3, 6))]
        cursor += len(group)
        if len(group) < 2:
            continue
        assemblies.append(group)
        slope = np.mean(rates[group] * (1 - rates[group]))
        peak = assembly_gain / ((len(group) - 1) * slope * slow.sum()) / scale
        for pre in group:
            for post in group:
                if pre != post:
                    recurrent[:, pre, post] += peak * rng.uniform(0.8, 1.2) * slow
    structure = {
        "hubs": hubs.tolist(),
        "broad_hubs": broad.tolist(),
        "assemblies": [sorted(g.tolist()) for g in assemblies],
    }
    return recurrent, structure


def _log_normal_rates(rng, num, median, sigma, low, high) -> np.ndarray:
    return np.clip(median * np.exp(sigma * rng.normal(size=num)), low, high)


def _logit(p):
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p) - np.log1p(-p)


@functools.partial(jax.jit, static_argnums=0)
def _encode(encoder, variables, stimulus):
    """Features [T, F] of a clip (jitted once per encoder and clip shape)."""
    return encoder.apply(variables, stimulus)


@functools.lru_cache(maxsize=16)
def _simulate_fn(config: network.NetworkConfig, num_trials: int):
    """A jitted free run of ``num_trials`` trials (cached: repeated calls do not recompile)."""

    @jax.jit
    def run(params, features, key):
        out = network.simulate_batch(
            params, features, config=config, key=key, num_trials=num_trials
        )
        return out.spikes.astype(jnp.uint8)

    return run


def _calibrate_bias(
    params: network.NetworkParams,
    config: network.NetworkConfig,
    features: Sequence[np.ndarray],
    target_rates: np.ndarray,
    key: jax.Array,
    *,
    num_trials: int,
    num_iterations: int,
    skip_bins: int,
    damping: float = 0.4,
) -> network.NetworkParams:
    """Adjusts biases so that free-run rates match ``target_rates`` (logit fixed point)."""
    run = _simulate_fn(config, num_trials)
    scale = config.temperature / config.threshold  # logit units per unit of u
    for iteration in range(num_iterations):
        counts = np.zeros(config.num_neurons)
        total = 0
        for index, movie_features in enumerate(features):
            key_i = jax.random.fold_in(jax.random.fold_in(key, iteration), index)
            spikes = np.asarray(run(params, movie_features, key_i))[:, skip_bins:]
            counts += spikes.sum(axis=(0, 1))
            total += spikes.shape[0] * spikes.shape[1]
        rates = (counts + 0.5) / (total + 1.0)
        step = damping * (_logit(target_rates) - _logit(rates)) / scale
        params = params._replace(bias=jnp.asarray(params.bias + step, jnp.float32))
    return params


def _feedforward_bias(drive: np.ndarray, target_rates: np.ndarray, config) -> np.ndarray:
    """Per-neuron bias b with mean_t σ(β(drive + b − v)/v) = rate (bisection; no recurrence)."""
    scale = config.temperature / config.threshold
    low = np.full(drive.shape[1], -20.0)
    high = np.full(drive.shape[1], 20.0)
    for _ in range(50):
        mid = (low + high) / 2
        rate = (1 / (1 + np.exp(-scale * (drive + mid - config.threshold)))).mean(axis=0)
        low = np.where(rate < target_rates, mid, low)
        high = np.where(rate >= target_rates, mid, high)
    return (low + high) / 2


def _calibrated_params(
    input_weights: np.ndarray,
    recurrent: np.ndarray,
    drive: np.ndarray,
    features: Sequence[np.ndarray],
    rates: np.ndarray,
    config: network.NetworkConfig,
    key: jax.Array,
    **calibration,
) -> network.NetworkParams:
    """Network params whose biases give ``rates``: first without recurrence on the stimulus
    ``drive`` [T, N] (``_feedforward_bias``), then on free runs over ``features``
    (``_calibrate_bias``, keyword arguments ``calibration``)."""
    params = network.NetworkParams(
        input_weights=jnp.asarray(input_weights, jnp.float32),
        recurrent_weights=jnp.asarray(recurrent, jnp.float32),
        bias=jnp.asarray(_feedforward_bias(drive, rates, config), jnp.float32),
    )
    return _calibrate_bias(params, config, features, rates, key, **calibration)


def _sample(run, params, features, key, num_trials, chunk, drop_bins) -> np.ndarray:
    """uint8 [num_trials, bins − drop_bins, N] free-run samples, ``chunk`` trials per call."""
    parts = []
    for start in range(0, num_trials, chunk):
        spikes = np.asarray(run(params, features, jax.random.fold_in(key, start)))
        parts.append(spikes[:, drop_bins:])
    return np.concatenate(parts)[:num_trials]


# ----------------------------------------------------------------------------- V1-like


def _ordered_split(num_trials: int, split: Sequence[int]) -> dict[str, dict[str, np.ndarray]]:
    """Trials in order: (train, test, validation) counts → split → {"natural": indices}."""
    num_train, num_test, num_validation = (int(s) for s in split)
    trials = np.arange(num_trials)
    splits = {"train": {"natural": trials[:num_train]}}
    if num_test:
        splits["test"] = {"natural": trials[num_train : num_train + num_test]}
    if num_validation:
        splits["validation"] = {"natural": trials[num_train + num_test :]}
    return splits


def make_v1_like(
    seed: int = 0,
    *,
    num_visible: int = 69,
    num_hidden: int = 0,
    num_trials: int = 120,
    num_frames: int = 650,
    image_size: int = 27,
    split: Sequence[int] = (80, 30, 10),
    burn_in_bins: int = 50,
    stimulus_gain: float = 1.0,
    median_rate: float = 0.1,
    num_hubs: int | None = None,
    hub_strength: float = 3.0,
    num_broad_hubs: int = 2,
    broad_strength: float = 1.0,
    assembly_fraction: float = 0.5,
    assembly_gain: float = 0.3,
    refractory_strength: float = 1.0,
    num_calibration_trials: int = 16,
    num_calibration_iterations: int = 8,
) -> Recording:
    """A V1-like synthetic recording (appendix A "Synthetic dataset").

    One repeated movie ``"natural"`` (1/f noise, ``num_frames`` frames = bins of 40 ms,
    ``image_size``²), ``num_trials`` trials of ``num_visible`` recorded neurons, sampled from
    a target with ``num_hidden`` more unrecorded neurons (431 for the paper's 500-neuron
    target). The target is ``V1Encoder()`` + ``NetworkConfig(num_visible, num_hidden, 9)``.

    Args:
      seed: everything is a pure function of it.
      num_visible, num_hidden, num_trials, num_frames, image_size: sizes.
      split: trials (train, test, validation) in that order, like pvc-11 (0–79 train,
        80–109 test, 110–119 validation for 120 trials); must sum to ``num_trials``.
      burn_in_bins: bins simulated and dropped before the stored bin 0.
      stimulus_gain: std over time of each neuron's stimulus drive, in logit units.
      median_rate: median target firing probability per bin (log-normal, σ = 0.5 in log,
        clipped to [0.03, 0.35]).
      num_hubs: neurons that each drive 3–6 visible neurons strongly (hidden ones when
        ``num_hidden > 0``); default N_V // 7, or N_V // 3 with hidden neurons.
      hub_strength: peak hub → target weight at delay 1, logit units (±; 20 % inhibitory).
      num_broad_hubs, broad_strength: neurons with a weak excitatory input (logit units) to
        every visible neuron (a small positive noise correlation for most pairs).
      assembly_fraction: fraction of visible neurons in mutually exciting assemblies.
      assembly_gain: linearised loop gain of each assembly (< 1: no up state).
      refractory_strength: self-inhibition at delay 1, logit units.
      num_calibration_trials, num_calibration_iterations: bias calibration effort.

    See ``_design_recurrent`` for the recurrent motifs; ``attrs`` records the hubs, broad
    hubs and number of assemblies.

    Returns:
      Recording with ``target`` set (bin width 0.04 s).
    """
    start_time = time.perf_counter()
    if sum(split) != num_trials:
        raise ValueError(f"make_v1_like: split {tuple(split)} must sum to {num_trials}")
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    encoder = encoders.V1Encoder()
    config = network.NetworkConfig(num_visible=num_visible, num_hidden=num_hidden, num_delays=9)
    target_model = model_lib.Model(encoder, config)
    context = target_model.receptive_field - 1
    total_frames = context + burn_in_bins + num_frames
    movie = natural_movie(rng, total_frames, image_size)

    init_key, calibration_key, sample_key = jax.random.split(key, 3)
    encoder_params = encoder.init(init_key, jnp.zeros((context + 1, image_size, image_size)))
    features = np.asarray(_encode(encoder, encoder_params, movie))  # [bins, F]
    n = config.num_neurons
    scale = config.temperature / config.threshold  # logit per unit of u

    map_shape = _feature_map_shape(image_size, image_size, encoder.features[-1])
    input_weights = _input_weights(rng, map_shape, features, n, 5, (0.7, 1.3), stimulus_gain, scale)

    rates = _log_normal_rates(rng, n, median_rate, 0.5, 0.03, 0.35)
    recurrent, structure = _design_recurrent(
        rng,
        rates,
        num_visible=num_visible,
        num_delays=config.num_delays,
        scale=scale,
        num_hubs=num_hubs,
        hub_strength=hub_strength,
        num_broad_hubs=num_broad_hubs,
        broad_strength=broad_strength,
        assembly_fraction=assembly_fraction,
        assembly_gain=assembly_gain,
        refractory_strength=refractory_strength,
    )
    params = _calibrated_params(
        input_weights,
        recurrent,
        features @ input_weights,
        [features],
        rates,
        config,
        calibration_key,
        num_trials=num_calibration_trials,
        num_iterations=num_calibration_iterations,
        skip_bins=burn_in_bins,
    )

    chunk = min(num_trials, 40)
    run = _simulate_fn(config, chunk)
    spikes = _sample(run, params, features, sample_key, num_trials, chunk, burn_in_bins)
    visible = spikes[:, :, :num_visible]

    hidden_rate = float(spikes[:, :, num_visible:].mean()) if num_hidden else float("nan")
    attrs = {
        "source": "synthetic",
        "generator": "rsnn_jax.synthetic.make_v1_like",
        "seed": int(seed),
        "num_hidden": int(num_hidden),
        "burn_in_bins": int(burn_in_bins),
        "stimulus_gain": float(stimulus_gain),
        "median_rate": float(median_rate),
        "assembly_fraction": float(assembly_fraction),
        "assembly_gain": float(assembly_gain),
        "hub_strength": float(hub_strength),
        "hubs": structure["hubs"],
        "broad_hubs": structure["broad_hubs"],
        "num_assemblies": len(structure["assemblies"]),
        "hidden_mean_rate": hidden_rate,
        "generation_seconds": float(time.perf_counter() - start_time),
    }
    return Recording(
        stimuli={"natural": movie[-num_frames:]},
        spikes={"natural": visible},
        bin_width_s=V1_BIN_WIDTH_S,
        repeated={"natural": True},
        splits=_ordered_split(num_trials, split),
        neuron_ids=np.arange(num_visible, dtype=np.int64),
        attrs=attrs,
        target=Target(
            target_model,
            model_lib.ModelParams(encoder=jax.device_get(encoder_params), network=params),
        ),
    )


# ----------------------------------------------------------------------------- retina-like


def _biphasic_filters(
    rng: np.random.Generator, num_filters: int, num_taps: int, bin_width_s: float
) -> np.ndarray:
    """[num_taps, num_filters] temporal filters h(τ), τ = lag in bins (0 = current frame).

    ``sign · (g(τ; t1) − a·g(τ; t2))`` with gamma-like lobes ``g(τ; t) = (τ/t)³ e^{3(1 − τ/t)}``
    peaking at t1 = 35–120 ms and t2 = 1.6–2.2 t1, a = 0.5–0.8; half OFF (sign −1), half ON;
    unit L2 norm.
    """
    lag = np.arange(num_taps)[:, None] * bin_width_s
    first = rng.uniform(0.035, 0.12, size=num_filters)
    second = first * rng.uniform(1.6, 2.2, size=num_filters)
    ratio = rng.uniform(0.5, 0.8, size=num_filters)
    lobe = lambda peak: (lag / peak) ** 3 * np.exp(3 * (1 - lag / peak))  # noqa: E731
    filters = lobe(first) - ratio * lobe(second)
    filters *= np.where(np.arange(num_filters) % 2 == 0, -1.0, 1.0)
    return filters / np.linalg.norm(filters, axis=0)


def _gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """[size, size] Gaussian centred on the middle pixel, summing to 1."""
    r = np.arange(size) - size // 2
    kernel = np.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _subunit_cnn(
    rng: np.random.Generator,
    cnn: dict,
    *,
    centre_px: float = 0.7,
    surround_px: float = 2.0,
    surround: float = 0.3,
    pool_px: float = 1.0,
    pooled_types: int = 3,
) -> dict:
    """Spatial CNN weights of a subunit model of ganglion cells (a copy of ``cnn``).

    Layer 1 (bipolar subunits): subunit type c filters temporal channel c alone with a
    difference of Gaussians (centre σ ``centre_px``, surround σ ``surround_px`` weighing
    ``surround`` of the centre), then ReLU: the rectified subunits of the retina's classic
    nonlinear-subunit model. Layer 2 (ganglion-cell pools): each of its channels sums
    ``pooled_types`` random subunit types with a Gaussian spatial weight (σ ``pool_px`` on the
    subunit map), then ReLU. Both layers have unit-norm kernels and zero biases.

    Flax-initialised random kernels instead make the drive a random deep function of the
    pixels: a ridge regression on the temporally filtered pixels (fitted on 60 000 bins of
    the drive itself, no spike noise) then predicts the test movie's drive with a median
    correlation of 0.50, against 0.675 for this subunit model (``python -m
    benchmarks.stimulus_drive --linear``), and fits learned little of it
    (docs/convergence.md).
    """
    kernel_1 = np.asarray(cnn["Conv_0"]["kernel"])
    size, _, channels, subunits = kernel_1.shape
    dog = _gaussian_kernel(size, centre_px) - surround * _gaussian_kernel(size, surround_px)
    layer_1 = np.zeros_like(kernel_1)
    for c in range(min(channels, subunits)):
        layer_1[:, :, c, c] = dog / np.linalg.norm(dog)
    kernel_2 = np.asarray(cnn["Conv_1"]["kernel"])
    pool = _gaussian_kernel(kernel_2.shape[0], pool_px)
    layer_2 = np.zeros_like(kernel_2)
    for j in range(kernel_2.shape[-1]):
        chosen = rng.choice(kernel_2.shape[2], size=pooled_types, replace=False)
        layer_2[:, :, chosen, j] = (pool / np.linalg.norm(pool))[..., None] / np.sqrt(pooled_types)
    return {
        "Conv_0": {"kernel": layer_1, "bias": np.zeros_like(cnn["Conv_0"]["bias"])},
        "Conv_1": {"kernel": layer_2, "bias": np.zeros_like(cnn["Conv_1"]["bias"])},
    }


def _retina_recurrent(
    rng: np.random.Generator,
    num_cells: int,
    num_delays: int,
    scale: float,
    *,
    coupling_strength: float,
    refractory_strength: float,
    background: float = 0.3,
) -> np.ndarray:
    """[D, N, N] weights (units of u): refractoriness and coupling between mosaic neighbours.

    Cells sit on a near-square grid (the OFF alpha mosaic); each is coupled to its 8
    neighbours with a fast positive weight (``coupling_strength`` logit at delay 1, τ = 2
    bins; half for diagonal neighbours), jittered ±30 %: neighbours fire in near synchrony
    and share common neighbours (lag-0 noise correlations). Self-history: an absolute
    refractory period (``−refractory_strength`` logit at delays 1–2) relaxing with τ = 4
    bins (about 7 ms), and a weak random background.
    """
    d = num_delays
    columns = int(np.ceil(np.sqrt(num_cells)))
    grid = np.stack(np.divmod(np.arange(num_cells), columns), axis=1).astype(float)
    grid += rng.normal(scale=0.1, size=grid.shape)
    distance = np.linalg.norm(grid[:, None] - grid[None], axis=-1)
    recurrent = rng.normal(size=(d, num_cells, num_cells)) * (background / np.sqrt(d * num_cells))
    fast = _delay_kernel(d, 2.0)
    neighbour = np.where(distance < 1.3, 1.0, np.where(distance < 1.7, 0.5, 0.0))
    np.fill_diagonal(neighbour, 0.0)
    jitter = rng.uniform(0.7, 1.3, size=neighbour.shape)
    recurrent += (coupling_strength / scale) * fast[:, None, None] * (neighbour * jitter)[None]
    lags = np.arange(1, d + 1)
    refractory = np.where(lags <= 2, 1.0, np.exp(-(lags - 2) / 4.0))
    strength = refractory_strength * rng.uniform(0.8, 1.2, size=num_cells) / scale
    recurrent[:, np.arange(num_cells), np.arange(num_cells)] = -refractory[:, None] * strength
    return recurrent


def _retina_movie(
    rng: np.random.Generator, condition: str, num_bins: int, image_size: int, frame_bins: dict
) -> np.ndarray:
    """float32 [num_bins, image_size, image_size] frames of a stimulus ``condition``
    (``frame_bins``: condition → bins per frame)."""
    if condition == "checkerboard":
        return checkerboard_movie(rng, num_bins, image_size, frame_bins[condition])
    if condition == "moving_bars":
        return moving_bars_movie(rng, num_bins, image_size, frame_bins=frame_bins[condition])
    raise ValueError(f"make_retina_like: unknown condition {condition!r}")


def _retina_movies(
    rng: np.random.Generator,
    conditions: Sequence[str],
    parts: dict[str, tuple[int, int]],
    lead: int,
    image_size: int,
    frame_bins: dict,
) -> dict[str, tuple[np.ndarray, int]]:
    """``<condition>_<suffix>`` → (frames [lead + bins, H, W], trials) for every condition
    and every ``parts`` suffix → (bins, trials), drawn in that order."""
    return {
        f"{condition}_{suffix}": (
            _retina_movie(rng, condition, lead + num_bins, image_size, frame_bins),
            trials,
        )
        for condition in conditions
        for suffix, (num_bins, trials) in parts.items()
    }


def _sample_movies(params, config, movies: dict, features: dict, key, lead: int, burn_in: int):
    """Free runs of every movie: (stimuli, spikes, repeated) dicts of the stored bins.

    ``movies``: name → (frames [lead + T, H, W], trials); ``features``: name → [lead + T, F].
    Each movie's first ``lead`` bins (encoder context and burn-in) are dropped.
    """
    stimuli, spikes, repeated = {}, {}, {}
    runs = {}
    for index, (name, (frames, trials)) in enumerate(movies.items()):
        if trials not in runs:
            runs[trials] = _simulate_fn(config, trials)
        movie_key = jax.random.fold_in(key, index)
        spikes[name] = _sample(
            runs[trials], params, features[name], movie_key, trials, trials, burn_in
        )
        stimuli[name] = frames[lead:]
        repeated[name] = trials > 1
    return stimuli, spikes, repeated


def _retina_splits(
    conditions: Sequence[str], spikes: dict, num_validation_repeats: int, with_validation: bool
) -> dict[str, dict[str, np.ndarray]]:
    """Appendix A per condition, plus the ``<condition>_validation`` movies if any."""
    splits = appendix_a_split(
        [f"{c}_unrepeated" for c in conditions],
        [f"{c}_repeated_1" for c in conditions],
        [f"{c}_repeated_2" for c in conditions],
        {name: s.shape[0] for name, s in spikes.items()},
        num_validation_repeats,
    )
    if with_validation:
        # Model selection on stimulus the fit never trained on (not repeats of a training
        # movie, which reward memorising that movie).
        splits.setdefault("validation", {}).update(
            {f"{c}_validation": np.arange(1) for c in conditions}
        )
    return splits


def _retina_encoder_variables(
    encoder: encoders.RetinaEncoder,
    key: jax.Array,
    rng: np.random.Generator,
    image_size: int,
    bin_width_s: float,
) -> dict:
    """The target encoder's variables: Flax's initialisation, then hand-set biphasic temporal
    filters and a subunit-model spatial CNN (NumPy arrays)."""
    clip = jnp.zeros((encoders.receptive_field_of(encoder), image_size, image_size))
    variables = jax.tree_util.tree_map(np.asarray, jax.device_get(encoder.init(key, clip)))
    filters = _biphasic_filters(rng, encoder.temporal_filters, encoder.temporal_kernel, bin_width_s)
    # Flax's VALID convolution is a cross-correlation: tap k multiplies frame t + k of a clip
    # whose last frame (k = R − 1) is the bin's own, so tap k has lag R − 1 − k.
    variables["params"]["temporal"]["kernel"] = filters[::-1, None, :].astype(np.float32)
    variables["params"]["SpatialCNN_0"] = _subunit_cnn(rng, variables["params"]["SpatialCNN_0"])
    return variables


def make_retina_like(
    seed: int = 0,
    *,
    num_cells: int = 25,
    image_size: int = 8,
    conditions: Sequence[str] = ("checkerboard", "moving_bars"),
    unrepeated_s: float = 20.0,
    repeated_s: float = 1.5,
    num_repeats: int = 30,
    num_validation_repeats: int = 0,
    validation_s: float = 0.0,
    bin_width_s: float = RETINA_BIN_WIDTH_S,
    checkerboard_frame_bins: int = 20,
    bars_frame_bins: int = 4,
    temporal_kernel: int = 300,
    num_delays: int = 24,
    burn_in_bins: int = 100,
    stimulus_gain: float = 1.5,
    median_rate: float = 0.03,
    coupling_strength: float = 2.5,
    refractory_strength: float = 6.0,
    num_calibration_iterations: int = 6,
) -> Recording:
    """A retina-like synthetic recording (docs/data.md; the paper's retina setting, scaled down).

    Per stimulus condition (``"checkerboard"``: binary checks, a new frame every
    ``checkerboard_frame_bins`` bins = 33 ms; ``"moving_bars"``: dark/bright bar sweeps in 8
    directions), three movies: ``<condition>_unrepeated`` (one trial of ``unrepeated_s``),
    ``<condition>_repeated_1`` and ``<condition>_repeated_2`` (``num_repeats`` trials of
    ``repeated_s`` each), and with ``validation_s`` > 0 ``<condition>_validation`` (one trial
    of that many seconds of new stimulus). Split as in appendix A: train = unrepeated +
    repeated_1 (minus its last ``num_validation_repeats`` repeats), test = repeated_2;
    validation = the ``_validation`` movies and those held-out repeats. Every movie's first
    ``max(R − 1, D)`` = 299 bins (0.5 s) only serve as encoder context and history, so a
    1.5 s repeated movie has 1 s of usable bins.

    Default sizes (CPU-friendly): 8×8 pixels, 2 conditions × (20 s + 2 × 30 × 1.5 s) =
    130 s of 25 cells at 1.667 ms; the experiments' built-in data set uses 300 s unrepeated
    and a 20 s validation movie per condition. The paper's sizes are arguments (e.g.
    ``unrepeated_s=1080, repeated_s=5, num_repeats=120``).

    The target is ``RetinaEncoder(temporal_kernel)`` (hand-set biphasic ON/OFF temporal
    filters, a spatial CNN set to a subunit model: ``_subunit_cnn``) +
    ``NetworkConfig(num_cells, 0, num_delays)``.

    Args:
      seed: everything is a pure function of it.
      stimulus_gain: std over time of each cell's stimulus drive, logit units.
      median_rate: median target firing probability per bin (0.03 = 18 Hz).
      coupling_strength: peak neighbour coupling, logit units.
      refractory_strength: self-inhibition during the absolute refractory period, logit.
      other arguments: sizes, see above.

    Returns:
      Recording with ``target`` set (bin width 1/600 s).
    """
    start_time = time.perf_counter()
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    encoder = encoders.RetinaEncoder(temporal_kernel=temporal_kernel)
    config = network.NetworkConfig(num_visible=num_cells, num_hidden=0, num_delays=num_delays)
    target_model = model_lib.Model(encoder, config)
    context = target_model.receptive_field - 1
    scale = config.temperature / config.threshold
    validation_bins = int(round(validation_s / bin_width_s))
    lead = context + burn_in_bins  # frames before a stored movie's bin 0
    parts = {  # movie suffix → (bins, trials)
        "unrepeated": (int(round(unrepeated_s / bin_width_s)), 1),
        "repeated_1": (int(round(repeated_s / bin_width_s)), num_repeats),
        "repeated_2": (int(round(repeated_s / bin_width_s)), num_repeats),
    } | ({"validation": (validation_bins, 1)} if validation_bins else {})
    frame_bins = {"checkerboard": checkerboard_frame_bins, "moving_bars": bars_frame_bins}
    movies = _retina_movies(rng, conditions, parts, lead, image_size, frame_bins)

    init_key, calibration_key, sample_key = jax.random.split(key, 3)
    variables = _retina_encoder_variables(encoder, init_key, rng, image_size, bin_width_s)
    features = {
        name: np.asarray(_encode(encoder, variables, frames))
        for name, (frames, _) in movies.items()
    }

    all_features = np.concatenate(list(features.values()))
    map_shape = _feature_map_shape(image_size, image_size, encoder.features[-1])
    input_weights = _input_weights(
        rng, map_shape, all_features, num_cells, 3, (0.8, 1.2), stimulus_gain, scale
    )
    recurrent = _retina_recurrent(
        rng,
        num_cells,
        num_delays,
        scale,
        coupling_strength=coupling_strength,
        refractory_strength=refractory_strength,
    )
    rates = _log_normal_rates(rng, num_cells, median_rate, 0.4, 0.01, 0.08)
    params = _calibrated_params(
        input_weights,
        recurrent,
        all_features @ input_weights,
        [features[f"{c}_unrepeated"] for c in conditions],
        rates,
        config,
        calibration_key,
        num_trials=2,
        num_iterations=num_calibration_iterations,
        skip_bins=burn_in_bins,
    )

    stimuli, spikes, repeated = _sample_movies(
        params, config, movies, features, sample_key, lead, burn_in_bins
    )
    attrs = {
        "source": "synthetic",
        "generator": "rsnn_jax.synthetic.make_retina_like",
        "seed": int(seed),
        "num_hidden": 0,
        "conditions": list(conditions),
        "unrepeated_s": float(unrepeated_s),
        "repeated_s": float(repeated_s),
        "num_repeats": int(num_repeats),
        "validation_s": float(validation_s),
        "burn_in_bins": int(burn_in_bins),
        "stimulus_gain": float(stimulus_gain),
        "median_rate": float(median_rate),
        "coupling_strength": float(coupling_strength),
        "refractory_strength": float(refractory_strength),
        "generation_seconds": float(time.perf_counter() - start_time),
    }
    return Recording(
        stimuli=stimuli,
        spikes=spikes,
        bin_width_s=float(bin_width_s),
        repeated=repeated,
        splits=_retina_splits(conditions, spikes, num_validation_repeats, bool(validation_bins)),
        neuron_ids=np.arange(num_cells, dtype=np.int64),
        attrs=attrs,
        target=Target(target_model, model_lib.ModelParams(encoder=variables, network=params)),
    )


# ----------------------------------------------------------------------------- summaries


def summarize(recording: Recording) -> dict:
    """Rates, fraction of bins with a spike and noise-correlation range, per movie.

    Returns:
      movie → dict(trials, bins, rate_mean, rate_min, rate_max (firing probability per bin
      per neuron), rate_hz_mean, fraction_bins_with_spike (of population bins: any neuron),
      and for repeated movies nc_min, nc_max, nc_mean, nc_abs_gt_0p1 (fraction of pairs with
      |NC| > 0.1) over pairs i ≠ j, psth_std_over_mean (temporal modulation of the PSTH)).
    """
    out = {}
    for name, spikes in recording.spikes.items():
        rates = spikes.mean(axis=(0, 1))
        stats = {
            "trials": int(spikes.shape[0]),
            "bins": int(spikes.shape[1]),
            "rate_mean": float(rates.mean()),
            "rate_min": float(rates.min()),
            "rate_max": float(rates.max()),
            "rate_hz_mean": float(rates.mean() / recording.bin_width_s),
            "fraction_bins_with_spike": float(spikes.any(axis=2).mean()),
        }
        if recording.repeated[name] and spikes.shape[0] > 1:
            nc = np.asarray(metrics.noise_correlation(spikes.astype(np.float32)), np.float64)
            pairs = nc[~np.eye(nc.shape[0], dtype=bool)]
            pairs = pairs[np.isfinite(pairs)]
            psth = spikes.mean(axis=0)
            stats.update(
                nc_min=float(pairs.min()),
                nc_max=float(pairs.max()),
                nc_mean=float(pairs.mean()),
                nc_abs_gt_0p1=float((np.abs(pairs) > 0.1).mean()),
                psth_std_over_mean=float(
                    np.mean(psth.std(axis=0) / np.maximum(psth.mean(axis=0), 1e-9))
                ),
            )
        out[name] = stats
    return out


def format_summary(recording: Recording) -> str:
    """``summarize`` as text, one line per movie."""
    lines = []
    for name, s in summarize(recording).items():
        line = (
            f"{name}: {s['trials']} trials x {s['bins']} bins; p(spike)/bin mean "
            f"{s['rate_mean']:.4f} [{s['rate_min']:.4f}, {s['rate_max']:.4f}] "
            f"({s['rate_hz_mean']:.1f} Hz); bins with a spike {s['fraction_bins_with_spike']:.3f}"
        )
        if "nc_min" in s:
            line += (
                f"; NC [{s['nc_min']:.3f}, {s['nc_max']:.3f}] mean {s['nc_mean']:.4f}, "
                f"|NC|>0.1 {100 * s['nc_abs_gt_0p1']:.1f}% of pairs; PSTH std/mean "
                f"{s['psth_std_over_mean']:.2f}"
            )
        lines.append(line)
    return "\n".join(lines)
