"""How much of the ground truth's stimulus response a fit has learned (docs/convergence.md).

    python -m benchmarks.stimulus_drive --workdirs=WORKDIR[,WORKDIR...]
    python -m benchmarks.stimulus_drive --linear --cache_dir=~/.cache/rsnn_jax

For each run (a workdir of ``python -m experiments.<kind>`` on built-in synthetic data) and
each of its kept checkpoints (``--keep_checkpoints``) plus ``best.msgpack``: the median over
neurons of the correlation, on the test movie, between the fitted model's stimulus drive
``W_in · encoder(stimulus)`` and the ground-truth target's, and both drives' standard
deviation over time. Unlike the PSTH correlation it does not depend on the recurrent
dynamics or on spike noise: it measures the encoder and readout alone.

``--linear`` measures how learnable the built-in retina-like target's drive is in
principle: a ridge regression of its drive (no spike noise) on the temporally filtered
pixels (the target's own temporal filters, 64 pixels × 16 filters) over the first 60 000
bins of the unrepeated training movie, and its median correlation with the drive on the test
movie.
"""

from __future__ import annotations

import glob
import os

import jax.numpy as jnp
import numpy as np
from absl import app, flags
from numpy.lib.stride_tricks import sliding_window_view

from benchmarks import workdirs
from rsnn_jax import experiment
from rsnn_jax import model as model_lib

flags.DEFINE_list("workdirs", [], "Workdirs of runs on built-in synthetic data.")
flags.DEFINE_bool("linear", False, "Linear predictability of the retina-like target's drive.")
flags.DEFINE_string("cache_dir", None, "Cache of built-in data sets (--linear).")
FLAGS = flags.FLAGS


def drive(params: model_lib.ModelParams, model: model_lib.Model, stimulus) -> np.ndarray:
    """Stimulus drive [T, N_V] of the visible neurons: features @ W_in (no bias, no history)."""
    features = model_lib.encode(params, model, jnp.asarray(stimulus))
    weights = params.network.input_weights[:, : model.network.num_visible]
    return np.asarray(features @ weights)


def median_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Median over columns of the Pearson correlation of ``a`` [T, N] and ``b`` [T, N]."""
    a, b = a - a.mean(0), b - b.mean(0)
    denominator = np.sqrt((a**2).sum(0) * (b**2).sum(0))
    return float(np.median((a * b).sum(0) / np.maximum(denominator, 1e-30)))


def run_rows(workdir: str) -> list[str]:
    """One line per checkpoint: drive correlation with the target and the drives' std."""
    config = workdirs.load_config(workdir)
    data = experiment.select_condition(experiment.load_data(config), config.data.condition)
    if data.target is None:
        raise ValueError(f"{workdir}: its data have no ground-truth target")
    model = experiment.build_model(config, data.num_neurons)
    movie, batch = next(iter(experiment.heldout_batches(data, model, "test").items()))
    truth = drive(data.target.params, data.target.model, batch.stimulus)
    paths = sorted(glob.glob(os.path.join(workdir, "checkpoints", "step_*.msgpack")))
    paths.append(os.path.join(workdir, "checkpoints", "best.msgpack"))
    rows = []
    for path in paths:
        fitted = drive(workdirs.load_params(path, model, batch), model, batch.stimulus)
        rows.append(
            f"{workdir} {os.path.basename(path)} [{movie}]: drive correlation "
            f"{median_correlation(fitted, truth):.3f}, drive std fitted "
            f"{fitted.std(0).mean():.3f} / target {truth.std(0).mean():.3f}"
        )
    return rows


def linear_predictability(cache_dir: str | None, bins: int = 60_000, ridge: float = 1.0) -> str:
    """Test-movie correlation of a ridge regression of the retina-like target's drive on the
    temporally filtered pixels (see the module docstring)."""
    kwargs = {} if cache_dir is None else {"cache_dir": os.path.expanduser(cache_dir)}
    config = experiment.ExperimentConfig.build("retina", "unused", **kwargs)
    data = experiment.select_condition(experiment.load_data(config), "checkerboard")
    target = data.target
    taps = np.asarray(target.params.encoder["params"]["temporal"]["kernel"])[:, 0, :]

    def filtered(stimulus):  # [T, pixels · filters]: the target's temporal stage
        pixels = np.asarray(stimulus, np.float32).reshape(len(stimulus), -1)
        windows = sliding_window_view(pixels, len(taps), axis=0)  # [T, P, taps]
        return np.einsum("tpk,kf->tpf", windows, taps).reshape(len(windows), -1)

    train = data.stimuli["checkerboard_unrepeated"][: bins + len(taps) - 1]
    model = target.model
    test = experiment.heldout_batches(data, model, "test")["checkerboard_repeated_2"].stimulus
    x_train, x_test = filtered(train), filtered(test)
    mean = x_train.mean(0)
    y_train = drive(target.params, model, train)
    gram = (x_train - mean).T @ (x_train - mean) + ridge * np.eye(x_train.shape[1])
    weights = np.linalg.solve(gram, (x_train - mean).T @ (y_train - y_train.mean(0)))
    predicted = (x_test - mean) @ weights
    truth = drive(target.params, model, test)
    return (
        f"linear model of the temporally filtered pixels ({bins} training bins, ridge {ridge}): "
        f"median test-movie correlation with the target's drive "
        f"{median_correlation(predicted, truth):.3f}"
    )


def main(argv):
    del argv
    for workdir in FLAGS.workdirs:
        for row in run_rows(workdir):
            print(row, flush=True)
    if FLAGS.linear:
        print(linear_predictability(FLAGS.cache_dir), flush=True)


if __name__ == "__main__":
    app.run(main)
