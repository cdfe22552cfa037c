"""Fit the V1 experiment (Figure 3, Table S2).

    python -m experiments.v1 --loss=mle_psth_nc
    python -m experiments.v1 --loss=mle_psth_nc_mse --data=v1.h5   # from rsnn_jax.data.pvc11

Without --data, the built-in V1-like synthetic data set (69 neurons, 27×27 movie of 650
frames at 40 ms, 120 trials, no hidden neurons in the target) is generated once and cached.
Defaults from Table S2: batch 20 trials, learning rate 1e-3, d_max = 9.
"""

from absl import app

from experiments import common

common.define_flags(
    loss="mle_psth_nc",
    steps=500,
    batch_size=20,
    learning_rate=1e-3,
    num_delays=9,
    workdir="workdir/v1",
)


def main(argv):
    del argv
    common.run(common.make_config("v1"))


if __name__ == "__main__":
    app.run(main)
