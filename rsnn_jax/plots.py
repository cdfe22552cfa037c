"""Figures for a run's report (PNG files; no display needed).

Every function takes NumPy arrays and a path, writes one PNG and returns the path. Figures
are ``matplotlib.figure.Figure`` objects, not pyplot ones: importing this module does not
change matplotlib's backend, so ``plt.show()`` in a notebook keeps working.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def _subplots(*grid, **options):
    """``plt.subplots`` without pyplot: (figure, axes)."""
    figsize = options.pop("figsize", None)
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **options)


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def training_curves(history: list[dict], path: str) -> str:
    """Training and validation loss terms against the step (one panel per term).

    Args:
      history: records ``{"step", "train": {term: value}, "validation": {term: value}}``.
    """
    names = sorted({name for record in history for name in record.get("train", {})})
    fig, axes = _subplots(1, max(len(names), 1), figsize=(3.2 * max(len(names), 1), 2.8))
    axes = np.atleast_1d(axes)
    steps = [record["step"] for record in history]
    # Markers: a run with one evaluation still shows its points.
    splits = (("train", ".-", "training (one batch)"), ("validation", "o--", "validation"))
    for ax, name in zip(axes, names):
        for split, style, label in splits:
            values = [record.get(split, {}).get(name, np.nan) for record in history]
            ax.plot(steps, values, style, ms=4, label=label)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("loss term")
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def raster(data_spikes: np.ndarray, model_spikes: np.ndarray, path: str, bin_ms: float) -> str:
    """Recorded vs simulated spikes of one trial: [T, N] each, time on x, neuron on y."""
    fig, axes = _subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for ax, spikes, title in ((axes[0], data_spikes, "recorded"), (axes[1], model_spikes, "model")):
        t, n = np.nonzero(np.asarray(spikes) > 0)
        ax.scatter(t * bin_ms / 1e3, n, s=1.5, c="k", marker="|")
        ax.set_title(f"{title} (one trial)")
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("neuron")
    return _save(fig, path)


def psth_overlay(
    data_psth: np.ndarray,
    model_psth: np.ndarray,
    neurons: list[int],
    path: str,
    bin_ms: float,
    correlations: np.ndarray | None = None,
    smoothing_bins: int = 1,
) -> str:
    """PSTHs [T, N] of data and model for a few neurons, in spikes per second, after a
    boxcar of ``smoothing_bins`` bins (short bins, e.g. the retina's 1.667 ms, are
    unreadable raw)."""
    fig, axes = _subplots(len(neurons), 1, figsize=(8, 1.6 * len(neurons)), sharex=True)
    axes = np.atleast_1d(axes)
    time_s = np.arange(data_psth.shape[0]) * bin_ms / 1e3
    if smoothing_bins > 1:
        box = np.ones(smoothing_bins) / smoothing_bins
        smooth = lambda x: np.apply_along_axis(np.convolve, 0, x, box, "same")  # noqa: E731
        data_psth, model_psth = smooth(np.asarray(data_psth)), smooth(np.asarray(model_psth))
        fig.suptitle(f"PSTH smoothed over {smoothing_bins * bin_ms:.0f} ms", fontsize=9)
    for ax, i in zip(axes, neurons):
        ax.plot(time_s, data_psth[:, i] * 1e3 / bin_ms, "k", lw=1, label="data")
        ax.plot(time_s, model_psth[:, i] * 1e3 / bin_ms, "C3", lw=1, label="model")
        label = f"neuron {i}"
        if correlations is not None:
            label += f"  ρ = {correlations[i]:.2f}"
        ax.set_ylabel("Hz")
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("time (s)")
    return _save(fig, path)


def matrix_comparison(
    target: np.ndarray,
    fitted: np.ndarray,
    path: str,
    title: str,
    r2: float | None = None,
    reference: str = "data",
) -> str:
    """Two [N, N] matrices side by side and their off-diagonal scatter (NC or connectivity).

    Args:
      reference: what ``target`` is, for the labels: "data" (recorded noise correlations)
        or "target" (the ground-truth network's weights).
    """
    target, fitted = np.asarray(target, float), np.asarray(fitted, float)
    off = ~np.eye(target.shape[0], dtype=bool)
    lim = np.nanmax(np.abs(np.concatenate([target[off], fitted[off]]))) or 1.0
    fig, axes = _subplots(1, 3, figsize=(11, 3.4))
    for ax, matrix, name in ((axes[0], target, reference), (axes[1], fitted, "model")):
        shown = np.where(off, matrix, np.nan)
        image = ax.imshow(shown, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{title}: {name}", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    axes[2].scatter(target[off], fitted[off], s=3, alpha=0.5)
    axes[2].plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
    axes[2].set_xlabel(reference)
    axes[2].set_ylabel("model")
    axes[2].set_title("pairs i ≠ j" + ("" if r2 is None else f", R² = {r2:.2f}"), fontsize=9)
    return _save(fig, path)


def objective_comparison(
    rows: dict[str, dict[str, list[float]]],
    metrics_to_plot: list[tuple[str, str]],
    path: str,
    ceiling: dict[str, float] | None = None,
) -> str:
    """One panel per metric: mean ± standard deviation over seeds for each objective.

    Args:
      rows: ``{objective: {metric: [value per seed]}}``.
      metrics_to_plot: ``(metric key, panel title)`` pairs.
      ceiling: optional ``{metric: value}`` drawn as a dashed line (the target's own score).
    """
    names = list(rows)
    fig, axes = _subplots(1, len(metrics_to_plot), figsize=(3.4 * len(metrics_to_plot), 3.0))
    axes = np.atleast_1d(axes)
    x = np.arange(len(names))
    for ax, (key, title) in zip(axes, metrics_to_plot):
        values = [np.asarray(rows[n][key], float) for n in names]
        ax.errorbar(
            x, [v.mean() for v in values], yerr=[v.std() for v in values], fmt="o", capsize=3
        )
        for i, v in enumerate(values):
            ax.plot(np.full(v.shape, i), v, ".", color="0.6", ms=4)
        if ceiling and key in ceiling:
            ax.axhline(ceiling[key], ls="--", c="k", lw=0.8, label="target")
            ax.legend(fontsize=7)
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
        ax.set_title(title)
    return _save(fig, path)


def hidden_sweep(rows: list[dict], path: str) -> str:
    """NC R² and connectivity R² against the number of fitted hidden neurons, one line per
    objective (Table S4's two columns). ``rows``: ``{"hidden", "loss", "nc_r2": [...],
    "connectivity_r2": [...]}`` with one value per seed."""
    fig, axes = _subplots(1, 2, figsize=(7.5, 3.0))
    groups = {
        "mle": [r for r in rows if r["loss"] == "mle"],
        "hidden-neuron method": [r for r in rows if r["loss"] != "mle"],
    }
    for ax, key, title in zip(axes, ("nc_r2", "connectivity_r2"), ("NC R²", "connectivity R²")):
        for name, group in groups.items():
            values = [np.asarray(r[key], float) for r in group]
            if values:
                ax.errorbar(
                    [r["hidden"] for r in group],
                    [v.mean() for v in values],
                    yerr=[v.std() for v in values],
                    marker="o",
                    capsize=3,
                    label=name,
                )
        ax.set_xlabel("hidden neurons in the fitted model")
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def multistep_curves(curves: dict[str, list[float]], baseline: list[float], path: str) -> str:
    """Multi-step log-likelihood against Δt (Fig. S3): one line per objective, and the
    PSTH-only baseline dashed. Values in bits per bin per neuron, Δt = 1, 2, …"""
    fig, ax = _subplots(figsize=(4.5, 3.0))
    steps = np.arange(1, len(baseline) + 1)
    for name, values in curves.items():
        ax.plot(steps, values, label=name)
    ax.plot(steps, baseline, "k--", label="PSTH baseline")
    ax.set_xlabel("Δt (bins after clamping stops)")
    ax.set_ylabel("log-likelihood (bits / bin / neuron)")
    ax.legend(fontsize=7)
    return _save(fig, path)
