"""End-to-end runs of the experiment modules with tiny flags (subprocesses: absl flags are
process-global), and their command-line errors."""

import json
import os
import subprocess
import sys

import pytest

from rsnn_jax import experiment
from rsnn_jax.data import recording, synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    v1 = synthetic.make_v1_like(
        0,
        num_visible=6,
        num_hidden=4,
        num_trials=12,
        num_frames=40,
        image_size=9,
        split=(8, 2, 2),
        num_calibration_trials=4,
        num_calibration_iterations=1,
    )
    retina = synthetic.make_retina_like(
        0,
        num_cells=5,
        image_size=4,
        unrepeated_s=0.3,
        repeated_s=0.1,
        num_repeats=3,
        num_validation_repeats=1,
        temporal_kernel=10,
        num_delays=4,
        burn_in_bins=10,
        num_calibration_iterations=1,
    )
    paths = {"v1": str(folder / "v1.h5"), "retina": str(folder / "retina.h5")}
    recording.save_recording(paths["v1"], v1)
    recording.save_recording(paths["retina"], retina)
    return paths


def _run(module, *flags):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


COMMON = (
    "--steps=3",
    "--eval_every=2",
    "--log_every=1",
    "--conv_features=3,3",
    "--warm_start_iterations=3",
)
CASES = {
    "v1": ("v1", "--loss=mle_psth_nc_mse", "--batch_size=4"),
    "synthetic": ("v1", "--loss=mle_sm_h_psth_nc", "--hidden=2", "--batch_size=4"),
    "retina": (
        "retina",
        "--loss=mle_single_trial_nc",
        "--temporal_kernel=10",
        "--num_delays=4",
        "--clip_bins=12",
        "--clamp_until=8",
        "--num_starts=2",
        "--num_movies=2",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(CASES))
def test_experiment_module_writes_config_metrics_report_and_figures(module, data_files, tmp_path):
    data_key, *flags = CASES[module]
    workdir = tmp_path / "run"
    result = _run(module, f"--data={data_files[data_key]}", f"--workdir={workdir}", *COMMON, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((workdir / "config.json").read_text())
    assert config["kind"] == module and config["num_steps"] == 3
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 3]
    report = json.loads((workdir / "report.json").read_text())
    assert report["steps_run"] == 3
    convergence = report["convergence"]
    assert convergence["steps_run"] == 3 and convergence["best_step"] == report["best_step"]
    assert convergence["plateaued"] is False and "NOT CONVERGED" in convergence["warning"]
    assert "NOT CONVERGED" in result.stdout + result.stderr
    assert set(report["start_test"]) == set(report["test"])  # after the data-informed start
    for values in report["test"].values():
        for name in ("psth_correlation", "nc_r2", "nc_r2_offset_invariant", "bits_per_spike"):
            assert name in values
        # −(mean/std)² of the data's noise correlations: never above 0.
        assert values["nc_r2_no_correlation"] <= 0
    figures = report["figures"]
    assert any("training" in f for f in figures) and any("raster" in f for f in figures)
    assert any("psth" in f for f in figures) and any("noise_correlation" in f for f in figures)
    for figure in figures:
        assert (workdir / figure).stat().st_size > 1000
    if module == "synthetic":  # the synthetic data carry their target: connectivity R²
        assert "connectivity_r2" in report and "figures/connectivity.png" in figures


@pytest.mark.parametrize(
    "module, flag, message",
    [
        ("retina", "--loss=nope", "--loss=nope: unknown preset"),
        ("v1", "--steps=0", "--steps=0: must be >= 1"),
        ("v1", "--weight_single_trial=2", "has no term ['single_trial']"),
        ("retina", "--clamp_until=90", "--clamp_until"),
        ("v1", "--conv_features=a,b", "--conv_features"),
    ],
)
def test_bad_flags_fail_with_a_message_naming_the_flag(module, flag, message):
    result = _run(module, flag, "--workdir=/nonexistent/never/written")
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_file_is_a_clear_error(tmp_path):
    result = _run("v1", f"--data={tmp_path}/missing.h5", f"--workdir={tmp_path}/w", "--steps=1")
    assert result.returncode != 0
    assert "--data" in result.stderr and "missing.h5" in result.stderr


def test_the_built_in_data_set_follows_data_seed_not_the_fit_seed():
    base = dict(kind="v1", workdir="unused", cache_dir="/cache")
    path = experiment.builtin_data_path
    assert path(experiment.ExperimentConfig(**base, seed=3)) == path(
        experiment.ExperimentConfig(**base, seed=0)
    )
    assert path(experiment.ExperimentConfig(**base, data_seed=3)) != path(
        experiment.ExperimentConfig(**base)
    )


def test_sta_temporal_filters_are_refused_without_a_retina_encoder():
    with pytest.raises(ValueError, match="retina encoder only"):
        experiment.ExperimentConfig(kind="v1", workdir="unused", init_temporal_filters=True)
