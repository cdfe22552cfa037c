"""Simulates a freshly initialised V1-sized network and times a jitted free simulation.

    python -m experiments.demo --num_trials=20 --num_bins=641

Features are random here (no encoder): the point is the simulator and its speed.
"""

import time

import jax
import numpy as np
from absl import app, flags

from rsnn_jax import network

_TRIALS = flags.DEFINE_integer("num_trials", 20, "K, trials simulated in parallel.")
_BINS = flags.DEFINE_integer("num_bins", 641, "T, time bins (641 = V1 setting).")
_NEURONS = flags.DEFINE_integer("num_neurons", 69, "N, neurons (69 = V1 data set).")
_DELAYS = flags.DEFINE_integer("num_delays", 9, "D, spike-history bins.")
_FEATURES = flags.DEFINE_integer("num_features", 1568, "F, stimulus features.")
_REPEATS = flags.DEFINE_integer("repeats", 20, "Timed runs after compilation.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")


def main(argv):
    del argv
    config = network.NetworkConfig(num_visible=_NEURONS.value, num_delays=_DELAYS.value)
    key = jax.random.key(_SEED.value)
    params_key, feature_key, run_key = jax.random.split(key, 3)
    params = network.init_params(params_key, config, _FEATURES.value)
    features = jax.random.normal(feature_key, (_BINS.value, _FEATURES.value))

    @jax.jit
    def run(params, key):
        return network.simulate_batch(
            params, features, config=config, key=key, num_trials=_TRIALS.value
        ).spikes

    start = time.perf_counter()
    spikes = run(params, run_key).block_until_ready()
    compile_s = time.perf_counter() - start
    times = []
    for i in range(_REPEATS.value):
        start = time.perf_counter()
        run(params, jax.random.fold_in(run_key, i)).block_until_ready()
        times.append(time.perf_counter() - start)
    spikes = np.asarray(spikes)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    print(
        f"free simulation of K={_TRIALS.value} trials x T={_BINS.value} bins x "
        f"N={_NEURONS.value} neurons x D={_DELAYS.value} delays"
    )
    print(f"first call (compile + run): {compile_s:.2f} s")
    print(
        f"jitted run: median {1e3 * np.median(times):.1f} ms, "
        f"min {1e3 * np.min(times):.1f} ms over {_REPEATS.value} runs"
    )
    print(
        f"spike probability per bin: mean {spikes.mean():.3f}, "
        f"per-neuron range [{spikes.mean((0, 1)).min():.3f}, {spikes.mean((0, 1)).max():.3f}]"
    )


if __name__ == "__main__":
    app.run(main)
