"""Learning curves of several experiment runs side by side (docs/convergence.md).

    python -m benchmarks.learning_curves --out=docs/figures/learning_curves_v1.png \
        --runs="old defaults=/tmp/v1_old,new defaults=/tmp/v1_new"

Each run is a workdir of ``python -m experiments.<kind>``: its ``metrics.jsonl`` gives the
validation loss against step and against training wall time (the ``seconds`` field), its
``report.json`` the held-out metrics of the selected model. Prints a Markdown table of those.

With ``--heldout``, the runs must have been trained with ``--keep_checkpoints``: every kept
checkpoint is evaluated on the test trials (bits/spike, smoothed PSTH correlation, NC R², as in
report.json) and the figure shows those against step, with the ground-truth target's values
dashed; the values go to ``<workdir>/heldout_curve.json``.
"""

from __future__ import annotations

import glob
import json
import os
import sys

import jax
import matplotlib
from absl import app, flags

from benchmarks import workdirs
from rsnn_jax import experiment

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

flags.DEFINE_string("runs", None, "Comma-separated label=workdir pairs.", required=True)
flags.DEFINE_string("out", None, "PNG file of the figure.", required=True)
flags.DEFINE_bool("heldout", False, "Evaluate each kept checkpoint on the test trials.")
FLAGS = flags.FLAGS

_METRICS = ("bits_per_spike", "psth_correlation_smoothed", "nc_r2")


def _parse_runs(text: str) -> list[tuple[str, str]]:
    runs = []
    for item in text.split(","):
        label, sep, workdir = item.partition("=")
        if not sep or not os.path.isfile(os.path.join(workdir, "metrics.jsonl")):
            raise ValueError(f"--runs: {item!r} is not label=workdir with a metrics.jsonl")
        runs.append((label, workdir))
    return runs


def _load(workdir: str) -> tuple[list[dict], dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        history = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(workdir, "report.json")) as f:
        return history, json.load(f)


def table(runs: list[tuple[str, str]]) -> str:
    """Markdown rows: held-out metrics of each run's selected model and its convergence."""
    lines = [
        "| run | bits/spike | PSTH corr. (smoothed) | NC R² | best step / run | plateaued |",
        "|---|---|---|---|---|---|",
    ]
    for label, workdir in runs:
        _, report = _load(workdir)
        test = next(iter(report["test"].values()))
        conv = report.get("convergence", {})
        values = " | ".join(f"{test[m]:.3f}" for m in _METRICS)
        lines.append(
            f"| {label} | {values} | {report['best_step']} / {report['steps_run']} | "
            f"{conv.get('plateaued', 'n/a')} |"
        )
    target = next(iter(_load(runs[0][1])[1].get("target_test", {}).values()), None)
    if target:
        values = " | ".join(f"{target[m]:.3f}" for m in _METRICS)
        lines.append(f"| ground-truth target | {values} | | |")
    return "\n".join(lines)


def figure(runs: list[tuple[str, str]], path: str) -> str:
    """Validation loss against step and against training seconds, one line per run."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), constrained_layout=True)
    for label, workdir in runs:
        history, _ = _load(workdir)
        loss = [h["validation"]["total"] for h in history]
        axes[0].plot([h["step"] for h in history], loss, marker=".", label=label)
        if all("seconds" in h for h in history):
            axes[1].plot([h["seconds"] for h in history], loss, marker=".", label=label)
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("training wall time (s)")
    for ax in axes:
        ax.set_ylabel("validation loss")
        ax.legend(fontsize=8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def heldout_curve(workdir: str) -> list[dict]:
    """Held-out metrics of every ``checkpoints/step_<n>.msgpack`` of a run: a row per step."""
    paths = sorted(glob.glob(os.path.join(workdir, "checkpoints", "step_*.msgpack")))
    if not paths:
        raise ValueError(
            f"{workdir}: no checkpoints/step_*.msgpack (train with --keep_checkpoints)"
        )
    config = workdirs.load_config(workdir)
    data = experiment.select_condition(experiment.load_data(config), config.data.condition)
    model = experiment.build_model(config, data.num_neurons)
    test = experiment.heldout_batches(data, model, "test")
    movie, batch = next(iter(test.items()))
    smoothing = max(1, round(config.evaluation.psth_smoothing_ms / (1e3 * data.bin_width_s)))
    # The report's evaluation key, so the last row equals report.json for the same model.
    eval_key = jax.random.split(jax.random.key(config.train.seed))[1]
    rows = []
    for path in paths:
        params = workdirs.load_params(path, model, batch)
        values = experiment.evaluate(
            params, model, batch, eval_key, config.evaluation.num_trials, smoothing
        )
        step = int(os.path.basename(path)[len("step_") : -len(".msgpack")])
        rows.append({"step": step, **{m: float(getattr(values, m)) for m in _METRICS}})
        print(
            f"{workdir} step {rows[-1]['step']}: "
            + ", ".join(f"{m} {rows[-1][m]:.3f}" for m in _METRICS),
            flush=True,
        )
    with open(os.path.join(workdir, "heldout_curve.json"), "w") as f:
        json.dump({"movie": movie, "rows": rows}, f, indent=2)
    return rows


def heldout_figure(runs: list[tuple[str, str]], path: str) -> str:
    """Held-out bits/spike, smoothed PSTH correlation and NC R² against step, per run; the
    ground-truth target's values dashed."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), constrained_layout=True)
    labels = ("bits/spike", "PSTH correlation (smoothed)", "NC R²")
    for label, workdir in runs:
        rows = heldout_curve(workdir)
        _, report = _load(workdir)
        target = next(iter(report.get("target_test", {}).values()), None)
        for ax, metric in zip(axes, _METRICS):
            steps = [r["step"] for r in rows]
            line = ax.plot(steps, [r[metric] for r in rows], marker="o", label=label)[0]
            if target:
                ax.axhline(target[metric], ls="--", color=line.get_color())
                ax.plot([], [], ls="--", color=line.get_color(), label=f"{label}: target")
    for ax, name in zip(axes, labels):
        ax.set_xlabel("training step")
        ax.set_ylabel(f"held-out {name}")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", fontsize=8, ncols=2)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv):
    del argv
    try:
        runs = _parse_runs(FLAGS.runs)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if FLAGS.heldout:
        try:
            print(f"figure: {heldout_figure(runs, FLAGS.out)}")
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
    else:
        print(f"figure: {figure(runs, FLAGS.out)}")
    print(table(runs))


if __name__ == "__main__":
    app.run(main)
