"""Generate a synthetic ground-truth recording (``rsnn_jax.synthetic``, docs/data.md).

    python -m experiments.make_synthetic --kind=v1 --out=synthetic_v1.h5 [--num_hidden=431]
    python -m experiments.make_synthetic --kind=retina --out=synthetic_retina.h5

The file holds the recording and, under ``/target``, the network that generated it
(``rsnn_jax.ground_truth.load_target``). The data set is a pure function of --seed. Bad
flags exit with a one-line message (exit code 1).
"""

import time

from absl import app, flags

from rsnn_jax import synthetic
from rsnn_jax.data import recording

flags.DEFINE_enum("kind", "v1", ["v1", "retina"], "Which synthetic data set.")
flags.DEFINE_string("out", None, "Output HDF5 recording.")
flags.DEFINE_integer("seed", 0, "Seed: the data set is a pure function of it.")
flags.DEFINE_integer("num_hidden", 0, "V1: hidden neurons of the target (431: 500 total).")
flags.DEFINE_integer("num_trials", 120, "V1: trials.")
flags.DEFINE_integer("num_frames", 650, "V1: frames = bins of 40 ms.")
flags.DEFINE_list("split", ["80", "30", "10"], "V1: trials for train, test, validation.")
flags.DEFINE_integer("image_size", None, "Frame size (default: V1 27, retina 8).")
flags.DEFINE_list("conditions", ["checkerboard", "moving_bars"], "Retina: stimulus conditions.")
flags.DEFINE_float("unrepeated_s", 20.0, "Retina: unrepeated movie duration (s).")
flags.DEFINE_float("repeated_s", 1.5, "Retina: repeated movie duration (s).")
flags.DEFINE_integer("num_repeats", 30, "Retina: repeats of each repeated movie.")
flags.DEFINE_integer("num_validation_repeats", 0, "Retina: repeats held out for validation.")
flags.mark_flags_as_required(["out"])
FLAGS = flags.FLAGS


def _generate() -> recording.Recording:
    if FLAGS.kind == "v1":
        try:
            split = [int(s) for s in FLAGS.split]
        except ValueError:
            raise ValueError(f"--split takes integers, e.g. 80,30,10; got {FLAGS.split}") from None
        return synthetic.make_v1_like(
            FLAGS.seed,
            num_hidden=FLAGS.num_hidden,
            num_trials=FLAGS.num_trials,
            num_frames=FLAGS.num_frames,
            image_size=FLAGS.image_size or 27,
            split=split,
        )
    return synthetic.make_retina_like(
        FLAGS.seed,
        image_size=FLAGS.image_size or 8,
        conditions=FLAGS.conditions,
        unrepeated_s=FLAGS.unrepeated_s,
        repeated_s=FLAGS.repeated_s,
        num_repeats=FLAGS.num_repeats,
        num_validation_repeats=FLAGS.num_validation_repeats,
    )


def main(argv):
    del argv
    start = time.perf_counter()
    try:
        data = _generate()
        seconds = time.perf_counter() - start
        recording.save_recording(FLAGS.out, data)
    except ValueError as error:  # DataError included
        raise SystemExit("error: " + " ".join(str(error).split())) from None
    print(synthetic.format_summary(data))
    print(f"generated in {seconds:.1f} s; wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
