"""The statistics the estimator audit covers, on tiny networks (docs/estimators.md).

Every built-in sample-and-measure loss (psth, nc, nc_mse, nc_shuffled, single_trial, sm_h,
elbo_sm), the two statistics of examples/custom_statistic.py (coactivity distribution,
cross-correlogram) and centred, normalised statistics (lag-1 autocorrelation coefficient,
pairwise correlation coefficient), each as a ``Case``: a statistic, a dissimilarity, a
tiny network small enough to enumerate (``estimators.exact_expectation``), the data's
statistic and the estimators that apply. ``run`` audits them all; ``format_table`` writes
the markdown table of docs/estimators.md.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rsnn_jax import estimators, losses, network, statistics

# ----------------------------------------------------------------------------------------------
# Statistics: float [B, T, N] (all neurons) → pytree. Frozen dataclasses: hashable.


def _off_diagonal(matrix: jax.Array) -> jax.Array:
    """[N, N] → [N(N − 1)], the entries i ≠ j."""
    n = matrix.shape[0]
    return matrix[~np.eye(n, dtype=bool)]


@dataclasses.dataclass(frozen=True)
class Neurons:
    """``statistic`` applied to neurons [start, stop) (visible or hidden ones)."""

    statistic: Callable[[jax.Array], Any]
    start: int = 0
    stop: int | None = None

    def __call__(self, x):
        return self.statistic(x[..., self.start : self.stop])

    def mixed(self, probabilities, spikes):
        part = slice(self.start, self.stop)
        return self.statistic.mixed(probabilities[..., part], spikes[..., part])


def coincidences(x):
    """``statistics.coincidences`` off the diagonal (the pairs of ``nc``): [N(N − 1)]."""
    return _off_diagonal(statistics.coincidences(x))


def shuffled_coincidences(x):
    """``statistics.shuffled_coincidences`` (shift 1) off the diagonal: [N(N − 1)]."""
    return _off_diagonal(statistics.shuffled_coincidences(x, 1))


@dataclasses.dataclass(frozen=True)
class LaggedCovariance:
    """``statistics.lagged_covariance`` (no wrap-around), the statistic of ``nc_mse``."""

    num_delays: int

    def __call__(self, x):
        return statistics.lagged_covariance(x, self.num_delays)


@dataclasses.dataclass(frozen=True)
class FreeBins:
    """Bins t ≥ T_gt of every trial, [B, T − T_gt, N]: the statistic of ``single_trial``."""

    clamp_until: int

    def __call__(self, x):
        return x[:, self.clamp_until :]


@dataclasses.dataclass(frozen=True)
class SampleMean:
    """Mean over the S samples of each clamping condition, [K, T, N] from [K·S, T, N]
    (condition-major rows): the statistic of ``elbo_sm``."""

    num_samples: int

    def __call__(self, x):
        return jnp.mean(x.reshape((-1, self.num_samples) + x.shape[1:]), axis=1)


@dataclasses.dataclass(frozen=True)
class CoactivityDistribution:
    """P(0), P(1), P(≥ 2) neurons active in a bin (examples/custom_statistic.py): [3]."""

    def __call__(self, x):
        q = 1.0 - x
        ones = jnp.ones_like(q[..., :1])
        before = jnp.cumprod(jnp.concatenate([ones, q[..., :-1]], axis=-1), axis=-1)
        after = jnp.cumprod(jnp.concatenate([ones, q[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
        p0 = jnp.mean(jnp.prod(q, axis=-1))
        p1 = jnp.mean(jnp.sum(x * before * after, axis=-1))
        return jnp.stack([p0, p1, 1.0 - p0 - p1])


def _lagged_products(later, earlier, lag):
    """mean_{k,t} later_{t,i} earlier_{t−lag,j}: [N, N]."""
    n = later.shape[-1]
    a = later[:, lag:].reshape(-1, n)
    b = earlier[:, : later.shape[1] - lag].reshape(-1, n)
    return a.T @ b / a.shape[0]


@dataclasses.dataclass(frozen=True)
class CrossCorrelogram:
    """C_d[i, j] = mean x_{t,i} x_{t−d,j}, d = 1..L (examples/custom_statistic.py); mixed:
    p_{t,i} z_{t−d,j}. [L, N, N]."""

    max_lag: int = 2

    def __call__(self, x):
        return self.mixed(x, x)

    def mixed(self, probabilities, spikes):
        lags = range(1, self.max_lag + 1)
        return jnp.stack([_lagged_products(probabilities, spikes, d) for d in lags])


@dataclasses.dataclass(frozen=True)
class Autocorrelation:
    """Each neuron's lag-1 autocorrelation coefficient, [N]:

        ρ_i = (mean_{k,t} x_{t,i} x_{t−1,i} − r_i²) / (r_i (1 − r_i) + ε),  r_i = mean x_i.

    ε keeps ρ finite on a batch where a neuron never fires. Mixed: p_{t,i} z_{t−1,i} in the
    product and r from p (products of probabilities and spikes).
    """

    epsilon: float = 0.01

    def __call__(self, x):
        return self.mixed(x, x)

    def mixed(self, probabilities, spikes):
        products = jnp.diagonal(_lagged_products(probabilities, spikes, 1))
        rate = jnp.mean(probabilities, axis=(0, 1))
        return (products - rate**2) / (rate * (1.0 - rate) + self.epsilon)


@dataclasses.dataclass(frozen=True)
class CorrelationCoefficient:
    """Pearson correlation of neurons i ≠ j over trials and bins, [N(N − 1)]:

        c_ij = (mean x_i x_j − r_i r_j) / sqrt(r_i (1 − r_i) r_j (1 − r_j) + ε),

    with the variance of a binary spike r(1 − r) (so that it is the same formula on p).
    """

    epsilon: float = 0.01

    def __call__(self, x):
        rate = jnp.mean(x, axis=(0, 1))
        variance = rate * (1.0 - rate)
        covariance = statistics.coincidences(x) - rate[:, None] * rate[None, :]
        return _off_diagonal(covariance / jnp.sqrt(variance[:, None] * variance + self.epsilon))


# ----------------------------------------------------------------------------------------------
# Cases.


class Case(NamedTuple):
    """One audited statistic on its tiny network.

    Attributes:
      name: the table's row name.
      statistic: T, float [B, T, N] → pytree (hashable).
      dissimilarity: "mse" or "ce".
      target: T^D, the data's statistic.
      params: the model's network parameters θ (float32).
      conditions: features, clamped data rows, history.
      design: sizes, groups and clamping.
      estimators: the estimators that apply, the default first.
      builtin: for a built-in loss, (recorded [B, T, N_V], logits [B, T, N]) → its value as
        ``rsnn_jax.losses`` computes it, to check that the case is that loss; else None.
      data_statistic: recorded [B, T, N_V] → T^D of one group of data trials.
    """

    name: str
    statistic: Callable[[jax.Array], Any]
    dissimilarity: str
    target: Any
    params: network.NetworkParams
    conditions: estimators.Conditions
    design: estimators.Design
    estimators: tuple[str, ...]
    builtin: Callable | None
    data_statistic: Callable


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How a case is built: its statistic, dissimilarity, estimators and network sizes."""

    statistic: Callable
    dissimilarity: str
    estimators: tuple[str, ...]
    num_visible: int = 2
    num_hidden: int = 0
    num_bins: int = 4
    num_trials: int = 2
    clamp_until: int | None = None
    clamped: bool = False
    num_samples: int = 1
    self_coupling: float = 0.0
    shared_input: bool = False


_P, _S, _M, _SF, _SP = "probabilities", "spikes", "mixed", "score", "score_probabilities"
_MULTILINEAR = (_P, _S, _SF, _SP)
LAYOUTS: dict[str, _Layout] = {
    "psth": _Layout(Neurons(statistics.psth, 0, 2), "ce", _MULTILINEAR),
    "nc": _Layout(Neurons(coincidences, 0, 2), "ce", _MULTILINEAR),
    "nc_mse": _Layout(Neurons(LaggedCovariance(2), 0, 2), "mse", (_P, _S, _SF)),
    "nc_shuffled": _Layout(Neurons(shuffled_coincidences, 0, 2), "ce", _MULTILINEAR),
    "single_trial": _Layout(
        Neurons(FreeBins(1), 0, 2), "ce", _MULTILINEAR, clamp_until=1, clamped=True
    ),
    "sm_h": _Layout(
        Neurons(statistics.mean_rate, 1), "ce", _MULTILINEAR, num_visible=1, num_hidden=1
    ),
    "elbo_sm": _Layout(
        Neurons(SampleMean(2), 0, 1),
        "ce",
        (_P, _SF),
        num_visible=1,
        num_hidden=1,
        num_trials=4,
        clamped=True,
        num_samples=2,
    ),
    "coactivity": _Layout(Neurons(CoactivityDistribution(), 0, 2), "mse", _MULTILINEAR),
    "correlogram": _Layout(Neurons(CrossCorrelogram(2), 0, 2), "mse", (_P, _S, _M, _SF)),
    "autocorrelation": _Layout(
        Neurons(Autocorrelation(), 0, 2),
        "mse",
        (_P, _S, _M, _SF),
        num_bins=8,
        num_trials=1,
        self_coupling=0.4,
    ),
    "correlation": _Layout(
        Neurons(CorrelationCoefficient(), 0, 2),
        "mse",
        (_P, _S, _SF),
        num_bins=8,
        num_trials=1,
        shared_input=True,
    ),
}
CASES: tuple[str, ...] = tuple(LAYOUTS)
BUILTINS: tuple[str, ...] = (
    "psth",
    "nc",
    "nc_mse",
    "nc_shuffled",
    "single_trial",
    "sm_h",
    "elbo_sm",
)


def builtin_loss(name: str) -> Callable | None:
    """The ``rsnn_jax.losses`` function case ``name`` reproduces, as (recorded [B, T, N_V],
    logits [B, T, N]) → loss, or None for a statistic that is no built-in loss."""
    layout = LAYOUTS[name]
    nv = layout.num_visible
    functions = {
        "psth": lambda r, x: losses.psth_loss(r, x[..., :nv]),
        "nc": lambda r, x: losses.nc_loss(r, x[..., :nv]),
        "nc_mse": lambda r, x: losses.nc_mse_loss(r, jax.nn.sigmoid(x[..., :nv]), num_delays=2),
        "nc_shuffled": lambda r, x: losses.nc_shuffled_loss(r, x[..., :nv]),
        "single_trial": lambda r, x: losses.single_trial_loss(r, x[..., :nv], 1),
        "sm_h": lambda r, x: losses.sm_h_loss(statistics.mean_rate(r)[:1], x[..., nv:]),
        "elbo_sm": lambda r, x: losses.elbo_sm_loss(
            r[:: layout.num_samples],
            x[..., :nv].reshape((-1, layout.num_samples) + x.shape[1:2] + (nv,)),
        ),
    }
    return functions.get(name)


def data_statistic(name: str) -> Callable:
    """Case ``name``'s T^D as a function of one group of recorded trials [B, T, N_V]."""
    layout = LAYOUTS[name]
    if name == "sm_h":  # the hidden neuron's target: its visible partner's (neuron 0) rate
        return lambda r: statistics.mean_rate(r)[:1]
    if name == "elbo_sm":  # the data themselves, one row per condition
        return lambda r: r[:: layout.num_samples]
    return lambda r: layout.statistic(r)


def tiny_params(
    key: jax.Array,
    config: network.NetworkConfig,
    num_features: int,
    rate_logit: float,
    self_coupling: float = 0.0,
    shared_input: bool = False,
) -> network.NetworkParams:
    """A tiny network's parameters.

    Input weights ~ N(0, 0.3²) and recurrent weights ~ N(0, 0.4²) (units of u: 0.4 is one
    logit), a bias such that a neuron without input has the logit ``rate_logit`` (−1.5:
    p ≈ 0.18, where the pseudo-derivative γ max(0, 1 − |ũ|) is zero), plus
    ``self_coupling`` on the delay-1 diagonal; ``shared_input`` gives every neuron the
    first neuron's input weights (stimulus-driven correlations).
    """
    input_key, recurrent_key = jax.random.split(key)
    n, d = config.num_neurons, config.num_delays
    input_weights = 0.3 * jax.random.normal(input_key, (num_features, n))
    if shared_input:
        input_weights = jnp.broadcast_to(input_weights[:, :1], (num_features, n))
    recurrent = 0.4 * jax.random.normal(recurrent_key, (d, n, n))
    bias = config.threshold * (1.0 + rate_logit / config.temperature)
    return network.NetworkParams(
        input_weights=input_weights,
        recurrent_weights=recurrent.at[0].add(self_coupling * jnp.eye(n)),
        bias=jnp.full((n,), bias, jnp.float32),
    )


def make_case(
    name: str,
    seed: int,
    *,
    num_groups: int = 8,
    rate_logit: float = -1.5,
    num_delays: int = 2,
    bins_factor: int = 1,
    trials_factor: int = 1,
) -> Case:
    """Builds case ``name``: the model θ, a target network of the same size whose free
    simulations are the data (16 groups of B trials, or the B clamping conditions), and T^D.

    Args:
      name: one of ``CASES``.
      seed: draws θ, the target network, the features and the data.
      num_groups: G, groups of B trials per estimate.
      rate_logit: the baseline logit of both networks (see ``tiny_params``).
      num_delays: D.
      bins_factor, trials_factor: multiply T and B (beyond the enumerable size, audit with
        ``reference="score"``).

    Returns:
      Case.
    """
    if name not in LAYOUTS:
        raise ValueError(f"make_case: unknown case {name!r}; cases: {CASES}")
    layout = LAYOUTS[name]
    layout = dataclasses.replace(
        layout,
        num_bins=layout.num_bins * bins_factor,
        num_trials=layout.num_trials * trials_factor,
    )
    config = network.NetworkConfig(layout.num_visible, layout.num_hidden, num_delays)
    keys = jax.random.split(jax.random.key(seed), 4)
    features = jax.random.normal(keys[0], (layout.num_bins, 2))
    shape = dict(self_coupling=layout.self_coupling, shared_input=layout.shared_input)
    params = tiny_params(keys[1], config, 2, rate_logit, **shape)
    target_params = tiny_params(keys[2], config, 2, rate_logit, **shape)
    b = layout.num_trials
    data = network.simulate_batch(
        target_params, features, config=config, key=keys[3], num_trials=16 * b
    ).spikes[..., : layout.num_visible]
    statistic_of_data = data_statistic(name)
    if layout.clamped:  # the conditions: B // S data trials, each repeated S times
        data = jnp.repeat(data[: b // layout.num_samples], layout.num_samples, axis=0)
        target = statistic_of_data(data)
    else:
        groups = jax.vmap(statistic_of_data)(data.reshape((16, b) + data.shape[1:]))
        target = jax.tree.map(lambda v: jnp.mean(v, axis=0), groups)
    conditions = estimators.Conditions(features, data if layout.clamped else None)
    design = estimators.Design(config, b, num_groups, layout.clamp_until)
    return Case(
        name,
        layout.statistic,
        layout.dissimilarity,
        target,
        params,
        conditions,
        design,
        layout.estimators,
        builtin_loss(name),
        statistic_of_data,
    )


# ----------------------------------------------------------------------------------------------
# The audit of every case, and its table.


class AuditRecord(NamedTuple):
    """One (case, seed, estimator) result: the row plus what identifies it."""

    case: str
    seed: int
    estimator: str
    row: estimators.AuditRow


def run(
    cases: tuple[str, ...] = CASES,
    seeds: tuple[int, ...] = (0, 1, 2),
    *,
    num_repeats: int = 1000,
    num_groups: int = 8,
    rate_logit: float = -1.5,
    bins_factor: int = 1,
    trials_factor: int = 1,
    reference: str = "exact",
    reference_repeats: int = 20000,
    log: Callable[[str], None] = print,
) -> list[AuditRecord]:
    """``estimators.audit`` of every case and seed (arguments of ``make_case`` and
    ``estimators.audit``); ``log`` receives one progress line per case and seed.

    Returns:
      AuditRecords in (case, seed, estimator) order.
    """
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise ValueError(f"run: unknown cases {unknown}; cases: {CASES}")
    records = []
    for name in cases:
        for seed in seeds:
            started = time.perf_counter()
            case = make_case(
                name,
                seed,
                num_groups=num_groups,
                rate_logit=rate_logit,
                bins_factor=bins_factor,
                trials_factor=trials_factor,
            )
            ref, rows = estimators.audit(
                case.statistic,
                case.dissimilarity,
                case.target,
                case.params,
                case.conditions,
                case.design,
                key=jax.random.key(1000 + seed),
                estimators=case.estimators,
                num_repeats=num_repeats,
                reference=reference,
                reference_repeats=reference_repeats,
            )
            records += [AuditRecord(name, seed, e, row) for e, row in rows.items()]
            noise = f", reference noise {ref.noise:.3f}" if ref.kind == "score" else ""
            log(f"{name} seed {seed}: {time.perf_counter() - started:.1f} s{noise}")
    return records


_COLUMNS = (
    ("value bias", "{value_bias:.2f}"),
    ("value sd", "{value_sd:.2f}"),
    ("∇S cos", "{jacobian_cosine:.2f}"),
    ("∇S err (noise)", "{jacobian_error:.2f} ({jacobian_noise:.2f})"),
    ("∂S/∂b cos", "{bias_cosine:.2f}"),
    ("∇d cos", "{gradient_cosine:.2f}"),
    ("∇d err (noise)", "{gradient_error:.2f} ({gradient_noise:.2f})"),
)
_NUMBERS = (
    "value_bias",
    "value_sd",
    "jacobian_cosine",
    "jacobian_error",
    "jacobian_noise",
    "bias_cosine",
    "gradient_cosine",
    "gradient_error",
    "gradient_noise",
)


def format_table(records: list[AuditRecord]) -> str:
    """Markdown: one line per (case, estimator); every number is the median over seeds, and
    the last column is the range of the loss-gradient cosine over seeds."""
    titles = [title for title, _ in _COLUMNS] + ["∇d cos min – max"]
    lines = ["| statistic | estimator | " + " | ".join(titles) + " |"]
    lines.append("|---|---|" + "---|" * len(titles))
    for case, estimator in dict.fromkeys((r.case, r.estimator) for r in records):
        rows = [r.row for r in records if (r.case, r.estimator) == (case, estimator)]
        medians = {f: float(np.median([getattr(row, f) for row in rows])) for f in _NUMBERS}
        cells = [template.format(**medians) for _, template in _COLUMNS]
        cosines = [row.gradient_cosine for row in rows]
        cells.append(f"{min(cosines):.2f} – {max(cosines):.2f}")
        lines.append(f"| {case} | {estimator} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
