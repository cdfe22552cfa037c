"""End-to-end runs of the experiment modules with tiny flags (subprocesses: absl flags are
process-global), and their command-line errors."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import common
from rsnn_jax import experiment, kinds, losses, synthetic, warm_start
from rsnn_jax import model as model_lib
from rsnn_jax.data import recording

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")  # computed once per worker however xdist orders the tests
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
        repeated_s=0.2,  # 120 bins: every cell of the test movie spikes (noise correlations)
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
        "--encoder_steps=2",
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
    assert config["kind"] == module and config["train"]["num_steps"] == 3
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
        # With hidden neurons the likelihood marginalises them (SMC); without, it is exact.
        hidden = module == "synthetic"
        assert values["likelihood_estimator"] == ("smc" if hidden else "exact")
        assert (values["smc_particles"] > 0) == hidden and values["bits_per_spike_se"] >= 0
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
        (
            "v1",
            "--weight_single_trial=2",
            "error: --weight_single_trial=2: --loss=mle_psth_nc has no single_trial term; "
            "its terms are mle, psth, nc\n",
        ),
        ("retina", "--clamp_until=90", "--clamp_until"),
        ("v1", "--conv_features=a,b", "--conv_features"),
        ("v1", "--weight_decay_scales=encoder", "--weight_decay_scales: 'encoder' is not PATH"),
        ("v1", "--average_steps=-1", "--average_steps=-1: must be >= 0"),
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
    assert path(experiment.ExperimentConfig.build(**base, seed=3)) == path(
        experiment.ExperimentConfig.build(**base, seed=0)
    )
    assert path(experiment.ExperimentConfig.build(**base, data_seed=3)) != path(
        experiment.ExperimentConfig.build(**base)
    )


def test_nc_mse_estimator_reaches_the_objective():
    config = experiment.ExperimentConfig.build(
        kind="v1", workdir="unused", loss="mle_psth_nc_mse", nc_mse_estimator="spikes"
    )
    objective = losses.make_objective(
        config.objective.loss, num_visible=2, num_hidden=0, **experiment.objective_options(config)
    )
    assert objective.terms["nc_mse"].value == "spikes"
    with pytest.raises(ValueError, match="--nc_mse_estimator"):
        experiment.ExperimentConfig.build(kind="v1", workdir="unused", nc_mse_estimator="mixed")


@pytest.mark.parametrize("preset", losses.PRESETS)
def test_every_weight_flag_works_with_the_presets_that_have_its_term(preset):
    """--weight_<term> is offered for every term some preset has (``common.TERMS``); with a
    preset that has the term it sets its weight, otherwise it is a one-line error."""
    assert set(common.TERMS) == {t for p in losses.PRESETS for t in losses.preset_terms(p)}
    retina = preset == "mle_single_trial_nc"
    terms = losses.preset_terms(preset)
    for term in common.TERMS:
        config = dict(
            kind="retina" if retina else "v1",
            workdir="unused",
            loss=preset,
            weights=((term, 0.25),),
            num_hidden=2,
            clamp_until=40 if retina else None,
        )
        if term not in terms:
            with pytest.raises(ValueError) as error:
                experiment.ExperimentConfig.build(**config)
            assert str(error.value) == (
                f"--weight_{term}=0.25: --loss={preset} has no {term} term; "
                f"its terms are {', '.join(terms)}"
            )
            continue
        config = experiment.ExperimentConfig.build(**config)
        objective = losses.make_objective(
            config.objective.loss,
            num_visible=2,
            num_hidden=config.model.num_hidden,
            weights=dict(config.objective.weights),
            clamp_until=config.batches.clamp_until,
            **experiment.objective_options(config),
        )
        assert list(objective.terms) == list(terms)
        assert float(objective.weights[term]) == 0.25


def test_sta_temporal_filters_are_refused_without_a_retina_encoder():
    with pytest.raises(ValueError, match="retina encoder only"):
        experiment.ExperimentConfig.build(kind="v1", workdir="unused", init_temporal_filters=True)


def test_the_encoder_phase_is_the_clamped_likelihood_on_single_bin_clips():
    config = experiment.ExperimentConfig.build(
        "retina", "unused", loss="mle_single_trial_nc", clamp_until=75, encoder_steps=7
    )
    phase = kinds.of(config).encoder_phase(config)
    assert phase.objective.loss == "mle" and phase.train.num_steps == 7
    assert (phase.batches.clip_bins, phase.batches.num_starts, phase.batches.num_movies) == (
        1,
        kinds.ENCODER_PHASE_CLIPS,
        1,
    )
    assert phase.train.learning_rate == config.train.learning_rate and phase.train.patience is None
    with pytest.raises(ValueError, match="--encoder_steps applies to retina clips only"):
        experiment.ExperimentConfig.build("v1", "unused", encoder_steps=5)


def test_the_encoder_phase_lowers_the_clamped_likelihood_of_its_clips(data_files, monkeypatch):
    """A few encoder-phase steps lower the clamped NLL of training clips the phase draws,
    and they change the encoder, not only the readout."""
    monkeypatch.setattr(kinds, "ENCODER_PHASE_CLIPS", 64)
    config = experiment.ExperimentConfig.build(
        "retina",
        "unused",
        data=data_files["retina"],
        loss="mle_single_trial_nc",
        temporal_kernel=10,
        num_delays=4,
        clip_bins=12,
        clamp_until=8,
        conv_features=(3, 3),
        encoder_steps=20,
        learning_rate=1e-2,
        warmup_steps=0,
    )
    data = experiment.load_data(config, log=lambda line: None)
    model = experiment.build_model(config, data.num_neurons)
    phase = kinds.of(config).encoder_phase(config)
    clips = next(experiment.training_batches(phase, data, model)(0))
    stimulus_shape = clips.stimulus.shape[-3:]
    params = model_lib.init_model(jax.random.key(0), model, stimulus_shape)

    def clamped_nll(p):
        features = model_lib.encode(p, model, clips.stimulus, per_trial=True)
        return float(
            warm_start.clamped_nll(p.network, model, features, clips.spikes, clips.history)
        )

    trained = experiment._encoder_phase(config, data, model, params, log=lambda line: None)
    assert clamped_nll(trained) < clamped_nll(params)
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), trained.encoder, params.encoder)
    assert moved["params"]["temporal"]["kernel"] > 0
    assert moved["params"]["SpatialCNN_0"]["Conv_0"]["kernel"] > 0
    # A recording without validation movies: the phase keeps its last parameters.
    unvalidated = dataclasses.replace(
        data, splits={k: v for k, v in data.splits.items() if k != "validation"}
    )
    lines = []
    experiment._encoder_phase(config, unvalidated, model, params, log=lines.append)
    assert lines[-1].startswith("encoder phase: 20 steps") and "validation" not in lines[-1]


def _holding_a_run(folder, **config):
    """A workdir as a finished run leaves it (config.json, report.json, a checkpoint)."""
    folder.mkdir()
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "latest.msgpack").write_bytes(b"checkpoint")
    (folder / "report.json").write_text("{}")
    finished = experiment.ExperimentConfig.build(kind="v1", workdir=str(folder), **config)
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(finished)))
    return finished


def test_a_workdir_holding_a_run_is_refused_and_left_as_it_was(tmp_path):
    finished = _holding_a_run(tmp_path / "run")
    with pytest.raises(experiment.WorkdirInUse, match="holds a run .*--resume.*--overwrite"):
        experiment.run_experiment(finished)
    assert (tmp_path / "run" / "report.json").read_text() == "{}"
    assert (tmp_path / "run" / "checkpoints" / "latest.msgpack").exists()


def test_resume_needs_a_checkpoint_and_the_same_settings(tmp_path):
    empty = experiment.ExperimentConfig.build(
        kind="v1", workdir=str(tmp_path / "none"), resume=True
    )
    with pytest.raises(experiment.WorkdirInUse, match="no checkpoint"):
        experiment.run_experiment(empty)
    finished = _holding_a_run(tmp_path / "run", loss="mle")
    other = finished.replace(loss="mle_psth_nc", resume=True, num_steps=5000)
    with pytest.raises(experiment.WorkdirInUse, match=r"other settings: loss \('mle' -> "):
        experiment.run_experiment(other)
    # A longer budget alone is a valid resume: the claim passes (the fake checkpoint is only
    # read later, by train.fit).
    experiment._claim_workdir(finished.replace(resume=True, num_steps=5000))
    # A run started before a setting existed resumes when the setting keeps its default.
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    del saved["train"]["learning_rate_scales"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    experiment._claim_workdir(finished.replace(resume=True))
    with pytest.raises(experiment.WorkdirInUse, match=r"learning_rate_scales \(\[\] -> "):
        experiment._claim_workdir(
            finished.replace(resume=True, learning_rate_scales=(("encoder", 0.5),))
        )


def test_overwrite_removes_the_old_run_first(tmp_path):
    finished = _holding_a_run(tmp_path / "run")
    experiment._claim_workdir(finished.replace(overwrite=True))
    assert sorted(os.listdir(tmp_path / "run")) == ["config.json"]


def test_the_command_line_refuses_a_used_workdir_in_one_line(tmp_path):
    _holding_a_run(tmp_path / "run")
    result = _run("v1", f"--workdir={tmp_path / 'run'}", "--steps=1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: --workdir={tmp_path}")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("module", ["v1", "retina"])
def test_help_lists_the_modules_flags_with_their_defaults(module):
    result = _run(module, "--help")
    assert "Traceback" not in result.stderr  # (absl's --help exits with code 1)
    assert "--loss: Objective preset" in result.stdout
    steps = {"v1": "500", "retina": "800"}[module]
    assert f"--steps: Training steps.\n    (default: '{steps}')" in result.stdout
    assert "--data_seed" in result.stdout and "--overwrite" in result.stdout
    # Flags that do not apply to the module are not offered (retina batches are clips).
    assert ("--batch_size" in result.stdout) == (module == "v1")
    assert "--target_hidden" not in result.stdout


@pytest.mark.parametrize(
    "module, flag, message",
    [
        ("retina", "--condition=checkerbord", "--condition=checkerbord: no training movie"),
        ("v1", "--batch_size=1000", "--batch_size=1000: larger than the 8 training trials"),
    ],
)
def test_settings_that_do_not_fit_the_data_fail_in_one_line(
    module, flag, message, data_files, tmp_path
):
    result = _run(module, f"--data={data_files[module]}", f"--workdir={tmp_path / 'w'}", flag)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
    assert not (tmp_path / "w" / "config.json").exists()  # nothing written
