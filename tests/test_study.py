"""The fast version of the validation study (issue 8): the direction of the main text's effect
on a tiny synthetic ground truth, plus the study's report formatting.

Margins measured before choosing the assertions (this exact configuration: the experiment
commands' optimisation — biases from rates, L-BFGS warm start, warm-up + cosine to 3e-3 —
100 steps, fit seeds 0–4; held-out PSTH correlation / NC R², mle → mle_psth_nc):

    seed   PSTH corr mle → mle_psth_nc   NC R² mle → mle_psth_nc
    0      0.552 → 0.545                 −0.091 → −0.052
    1      0.538 → 0.544                 −0.147 → −0.076
    2      0.537 → 0.545                 −0.145 → −0.076
    3      0.528 → 0.536                 −0.157 → −0.089
    4      0.535 → 0.535                 −0.170 → −0.082

The NC R² gain of the PSTH and NC terms was positive for every seed (+0.039 to +0.088); the
PSTH correlation moved by −0.007 to +0.008 (the warm start alone reaches 0.53–0.55), so it
is asserted not to drop by more than 0.02. Both models are far above the untrained network
(PSTH corr −0.13 to 0.11), which is asserted as well. Because the NC gain was positive for
each seed on its own, CI fits one seed (0, the smallest gain) to keep the suite within its
time budget; `SEEDS` takes more. (With the paper's constant 1e-3 from zero biases this test
needed 400 steps, 175 s.)
"""

import json

import numpy as np
import pytest

from rsnn_jax import experiment, study, synthetic
from rsnn_jax.data import recording

SEEDS = (0,)
# With pytest-xdist (`--dist loadgroup`), the tests sharing the fitted study run in one worker.
pytestmark = pytest.mark.xdist_group("tiny_study")
STEPS = 100


# Session scope: xdist may run other modules' tests between this group's tests in the same
# worker, and a module-scoped fixture would then be fitted again (measured: twice, 110 s each).
@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_study")
    path = str(root / "data.h5")
    # A target whose 24 hidden neurons drive the 12 recorded ones (shared, unobserved input).
    data = synthetic.make_v1_like(
        7,
        num_visible=12,
        num_hidden=24,
        num_trials=60,
        num_frames=120,
        image_size=27,
        split=(40, 15, 5),
    )
    recording.save_recording(path, data)
    reports = {}
    for loss in ("mle", "mle_psth_nc"):
        for seed in SEEDS:
            config = experiment.ExperimentConfig.build(
                kind="synthetic",
                workdir=str(root / f"{loss}_{seed}"),
                data=path,
                loss=loss,
                seed=seed,
                num_steps=STEPS,
                eval_every=STEPS,
                checkpoint_every=STEPS,
                log_every=1000,
                learning_rate=3e-3,
                schedule="warmup_cosine",
                warmup_steps=25,
                init_biases=True,
                warm_start_iterations=100,
                conv_features=(4, 8),
                eval_trials=100,
            )
            reports[loss, seed] = experiment.run_experiment(config, log=lambda line: None)
    return reports


def _test(report, name):
    return report["test"]["natural"][name]


def _mean(reports, loss, name):
    return np.mean([_test(reports[loss, s], name) for s in SEEDS])


@pytest.mark.slow
def test_psth_and_nc_terms_raise_held_out_nc_r2_without_losing_the_psth(tiny_study):
    mle, both = (_mean(tiny_study, loss, "nc_r2") for loss in ("mle", "mle_psth_nc"))
    assert both > mle, (both, mle)
    mle, both = (_mean(tiny_study, loss, "psth_correlation") for loss in ("mle", "mle_psth_nc"))
    assert both > mle - 0.02, (both, mle)


@pytest.mark.slow
def test_every_fit_learned_the_stimulus_response(tiny_study):
    for report in tiny_study.values():
        trained = _test(report, "psth_correlation")
        untrained = report["untrained_test"]["natural"]["psth_correlation"]
        assert trained > untrained + 0.3, (trained, untrained)
        assert _test(report, "bits_per_spike") > 0.0
        assert np.isfinite(_test(report, "nc_r2"))


# The study config fields the report quotes (tiny values).
_CONFIG = {
    "scale": "small",
    "seeds": [0, 1],
    "num_visible": 4,
    "num_frames": 10,
    "num_trials": 12,
    "conv_features": [4, 8],
    "steps": 3,
    "target_hidden": 8,
    "retina_steps": 3,
    "retina_unrepeated_s": 1.0,
    "retina_repeated_s": 0.5,
    "retina_repeats": 6,
    "multistep_steps": 2,
}


def test_format_results_quotes_every_number():
    results = {
        "config": _CONFIG,
        "wall_seconds": 60.0,
        "parts": {
            "v1": {
                "mle": {
                    "psth_correlation": [0.5, 0.7],
                    "nc_r2": [0.1, 0.3],
                    "nc_r2_offset_invariant": [0.2, 0.2],
                    "bits_per_spike": [0.4, 0.4],
                    "ceiling": {"psth_correlation": 0.9, "nc_r2": 0.8, "bits_per_spike": 1.5},
                }
            }
        },
    }
    text = study.format_results(results)
    assert "| mle | 0.600 ± 0.100 | 0.200 ± 0.100 | 0.200 ± 0.000 | 0.400 ± 0.000 |" in text
    assert "target (ceiling) | 0.900 | 0.800" in text
    assert "1.0 min" in text


def _fake_results(retina_psth: float) -> dict:
    """A study.json with all three parts; mle_psth_nc beats mle on PSTH correlation by far
    more than the seed spread, and loses on NC R² by less than it."""
    v1_row = lambda psth, nc: {  # noqa: E731
        "psth_correlation": psth,
        "nc_r2": nc,
        "nc_r2_offset_invariant": [0.0, 0.0],
        "bits_per_spike": [0.3, 0.3],
        "ceiling": {"psth_correlation": 0.9, "nc_r2": 0.8, "bits_per_spike": 1.0},
    }
    retina_row = {
        "psth_correlation": [retina_psth, retina_psth],
        "psth_correlation_smoothed": [retina_psth, retina_psth],
        "nc_r2": [0.1, 0.1],
        "nc_r2_offset_invariant": [0.1, 0.1],
        "bits_per_spike": [0.2, 0.2],
        "multistep_model_bits": [-0.3, -0.2],
        "multistep_baseline_bits": [-0.25, -0.25],
        "ceiling": {"psth_correlation": 0.6, "psth_correlation_smoothed": 0.9, "nc_r2": 0.6},
    }
    hidden = {
        f"{h}/{loss}": {
            "hidden": h,
            "loss": loss,
            "nc_r2": [0.2, 0.2],
            "connectivity_r2": [c, c],
            "psth_correlation": [0.5, 0.5],
        }
        for h, loss, c in ((0, "mle", -1.0), (0, "m", -1.0), (4, "mle", -0.8), (4, "m", 0.1))
    }
    return {
        "config": _CONFIG,
        "wall_seconds": 60.0,
        "parts": {
            "v1": {
                "mle": v1_row([0.50, 0.52], [0.10, 0.30]),
                "mle_psth_nc": v1_row([0.60, 0.62], [0.05, 0.25]),
            },
            "hidden": hidden,
            "retina": {"mle": retina_row, "mle_single_trial_nc": retina_row},
        },
    }


def test_write_report_writes_figures_and_json_it_regenerates_from(tmp_path):
    results = _fake_results(retina_psth=0.05)
    path = study.write_report(results, str(tmp_path / "results.md"))
    text = open(path).read()
    for name in ("v1_objectives.png", "hidden_sweep.png", "retina_multistep.png"):
        assert (tmp_path / "results" / name).stat().st_size > 1000
        assert f"](results/{name})" in text
    with open(tmp_path / "results" / "study.json") as f:
        assert study.format_results(json.load(f)) == study.format_results(results)
    # Verdicts follow the numbers: +0.10 PSTH gain against a spread of 0.02 is reproduced;
    # −0.05 NC R² against a spread of 0.2 is inconclusive; connectivity −1.0 → 0.1 rises.
    assert "mle_psth_nc − mle = +0.100 → reproduced" in text
    assert "mle_psth_nc − mle = -0.050 → within the seed spread" in text
    assert "-1.000 → 0.100 (+1.100) → reproduced" in text
    # Multi-step: above the baseline for 1 of 2 Δt, not all of the first bins.
    assert "above for 1 of 2 Δt → **not reproduced**" in text
    assert "has not learned the stimulus" in text


def test_hypotheses_are_stated_only_when_the_numbers_show_them():
    text = study.format_results(_fake_results(retina_psth=0.8))
    assert "has not learned the stimulus" not in text
    assert "Every fitted model's NC R² is below half" in text
