"""Fit a synthetic ground-truth network (Figure 4, Tables S3/S4).

    python -m experiments.synthetic --loss=mle_psth_nc --hidden=0
    python -m experiments.synthetic --loss=mle_sm_h_psth_nc --hidden=200

Without --data, a V1-like target network with --target_hidden hidden neurons (431 in the
paper: 500 neurons, 69 visible) generates the recordings; its connectivity is known, so the
report includes the connectivity R² of the visible block. Defaults from Table S3: batch 20,
learning rate 1.5e-3, early stopping on the validation trials.
"""

from absl import app
from absl import flags as absl_flags

from experiments import common

common.define_flags(
    loss="mle_psth_nc",
    steps=500,
    batch_size=20,
    learning_rate=1.5e-3,
    num_delays=9,
    target_hidden=431,
    patience=5,
    workdir="workdir/synthetic",
)
# --help lists the shared flags with this module's own (not only under --helpfull).
absl_flags.adopt_module_key_flags(common)


def main(argv):
    del argv
    common.run(common.make_config("synthetic"))


if __name__ == "__main__":
    app.run(main)
