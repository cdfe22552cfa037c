"""Report figures are written without touching matplotlib's global backend."""

import subprocess
import sys

import numpy as np

from rsnn_jax import plots


def test_importing_plots_keeps_the_users_backend():
    code = (
        "import matplotlib; matplotlib.use('svg'); import rsnn_jax.plots; "
        "print(matplotlib.get_backend())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "svg"


def test_a_figure_is_written_as_png(tmp_path):
    rng = np.random.default_rng(0)
    path = plots.matrix_comparison(
        rng.normal(size=(4, 4)), rng.normal(size=(4, 4)), str(tmp_path / "m.png"), "weights", 0.5
    )
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_smoothed_psth_and_single_evaluation_curves_are_drawn(tmp_path):
    rng = np.random.default_rng(0)
    psth = rng.uniform(0, 0.1, size=(120, 3))
    paths = [
        plots.psth_overlay(psth, psth[::-1], [0, 2], str(tmp_path / "p.png"), 1.667, None, 12),
        plots.training_curves(
            [{"step": 50, "train": {"mle": 0.2}, "validation": {"mle": 0.25}}],
            str(tmp_path / "t.png"),
        ),
    ]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
