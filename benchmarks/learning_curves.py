"""Learning curves of several experiment runs side by side (docs/convergence.md).

    python -m benchmarks.learning_curves --out=docs/figures/learning_curves_v1.png \
        --runs="old defaults=/tmp/v1_old,new defaults=/tmp/v1_new"

Each run is a workdir of ``python -m experiments.<kind>``: its ``metrics.jsonl`` gives the
validation loss against step and against training wall time (the ``seconds`` field), its
``report.json`` the held-out metrics of the selected model. Prints a Markdown table of those.
"""

from __future__ import annotations

import json
import os
import sys

import matplotlib
from absl import app, flags

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

flags.DEFINE_string("runs", None, "Comma-separated label=workdir pairs.", required=True)
flags.DEFINE_string("out", None, "PNG file of the figure.", required=True)
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


def main(argv):
    del argv
    try:
        runs = _parse_runs(FLAGS.runs)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"figure: {figure(runs, FLAGS.out)}")
    print(table(runs))


if __name__ == "__main__":
    app.run(main)
