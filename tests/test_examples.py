"""examples/custom_statistic.py: its statistics against NumPy oracles, and the whole walk-through
at the small size (estimators, gradients, and a fit that moves the statistic toward the data)."""

import importlib.util
import itertools
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_example():
    path = os.path.join(ROOT, "examples", "custom_statistic.py")
    spec = importlib.util.spec_from_file_location("custom_statistic", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


example = _load_example()


def test_coactivity_distribution_on_spikes_and_probabilities():
    rng = np.random.default_rng(0)
    spikes = (rng.uniform(size=(3, 7, 4)) < 0.3).astype(np.float32)
    counts = spikes.sum(-1).ravel()
    histogram = [np.mean(counts == 0), np.mean(counts == 1), np.mean(counts >= 2)]
    statistic = example.CoactivityDistribution()
    np.testing.assert_allclose(statistic(spikes), histogram, atol=1e-6)
    # On probabilities: P(count = 0), P(count = 1) of independent Bernoullis, by enumeration.
    p = rng.uniform(size=(2, 3, 4)).astype(np.float32)
    p[0, 0, 1] = 1.0  # a certain spike: the product formula must not divide by 1 − p
    exact = np.zeros(3)
    for k, t in itertools.product(range(2), range(3)):
        for bits in itertools.product([0, 1], repeat=4):
            weight = np.prod(np.where(bits, p[k, t], 1 - p[k, t]))
            exact[min(sum(bits), 2)] += weight / 6
    np.testing.assert_allclose(statistic(p), exact, atol=1e-6)


def test_cross_correlogram_and_mixed_estimator_against_loops():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(2, 6, 3)).astype(np.float32)
    z = (rng.uniform(size=(2, 6, 3)) < 0.5).astype(np.float32)
    expected = np.zeros((2, 3, 3))
    mixed = np.zeros((2, 3, 3))
    for d in (1, 2):
        for i, j in itertools.product(range(3), range(3)):
            pairs = [(k, t) for k in range(2) for t in range(d, 6)]
            expected[d - 1, i, j] = np.mean([x[k, t, i] * x[k, t - d, j] for k, t in pairs])
            mixed[d - 1, i, j] = np.mean([x[k, t, i] * z[k, t - d, j] for k, t in pairs])
    np.testing.assert_allclose(example.CrossCorrelogram(2)(x), expected, rtol=1e-5)
    np.testing.assert_allclose(example.mixed_cross_correlogram(x, z, 2), mixed, rtol=1e-5)


# One worker, one run of the example (30 s): session scope, because xdist may interleave
# other modules' tests and a module-scoped fixture would be recomputed.
@pytest.fixture(scope="session")
def numbers():
    return example.main(small=True, seed=0)


@pytest.mark.xdist_group("custom_statistics_example")
def test_estimators_behave_as_documented(numbers):
    check = numbers["estimator_check"]
    # Seeds 0–5 at this size: 0.31–0.41 (biased), 0.04–0.08 (mixed, Monte-Carlo noise only),
    # coactivity on p 0.003–0.022, surrogate non-zero on 6–14 % of entries.
    assert check["ccg_rel_error_probabilities"] > 0.2
    assert check["ccg_rel_error_mixed"] < 0.15
    assert check["coactivity_rel_error_probabilities"] < 0.05
    assert check["surrogate_nonzero_fraction"] < 0.5


@pytest.mark.xdist_group("custom_statistics_example")
def test_gradients_of_the_generic_objective_are_finite_and_reach_every_parameter(numbers):
    assert numbers["gradient_check"]
    for path, (finite, largest) in numbers["gradient_check"].items():
        assert finite and largest > 0, path


@pytest.mark.xdist_group("custom_statistics_example")
def test_the_fit_moves_the_statistics_toward_the_data(numbers):
    # Measured after/before over seeds 0–5 at this size: correlogram 0.13–0.28 (seed 0:
    # 0.127), coactivity distribution 0.008–0.093 (seed 0: 0.008).
    ccg = numbers["ccg_dissimilarity_after"] / numbers["ccg_dissimilarity_before"]
    coactivity = (
        numbers["coactivity_dissimilarity_after"] / numbers["coactivity_dissimilarity_before"]
    )
    assert ccg < 0.5, numbers
    assert coactivity < 0.3, numbers
    assert numbers["fitted_ccg_chain_lag2"] > 1.2 * numbers["data_rate"] ** 2  # chain learned
    assert numbers["fitted_chain_weight"] > numbers["initial_chain_weight"]
    assert abs(numbers["fitted_rate"] / numbers["data_rate"] - 1) < 0.2
