"""Import the CRCNS pvc-11 monkey V1 recording (``rsnn_jax.data.pvc11``, docs/data.md).

    python -m experiments.import_pvc11 --events=data_monkey1_natural_movie.mat \\
        --movie=natural_movie.mat --out=v1.h5

A user mistake (a missing file, a malformed input, a bad flag value) ends in one line on
stderr naming the file or flag, exit code 2, no traceback.
"""

import os
import sys

from absl import app, flags

from rsnn_jax.data import pvc11, recording

flags.DEFINE_string("events", None, "Spike file with data.EVENTS (MATLAB v5 or v7.3).")
flags.DEFINE_string("movie", None, "Movie file with M (uint8 H×W×frames).")
flags.DEFINE_string("out", "v1.h5", "Output HDF5 recording.")
flags.DEFINE_integer("image_size", 27, "Frames are resized to image_size × image_size.")
flags.DEFINE_float("bin_width_s", 0.04, "Bin width in seconds.")
flags.DEFINE_float("keep_seconds", 26.0, "Keep the last this many seconds.")
flags.DEFINE_list("units", None, "Unit indices to keep (default: all).")
flags.DEFINE_float("min_rate_hz", None, "Keep units with at least this mean rate.")
flags.DEFINE_float("min_snr", None, "Keep units with at least this SNR (snr_variable).")
flags.DEFINE_string("snr_variable", None, "Dotted name of the SNR array in --events.")
flags.DEFINE_list("split", ["80", "30", "10"], "Trials for train, test, validation.")
flags.mark_flags_as_required(["events", "movie"])
FLAGS = flags.FLAGS


def _fail(message: str) -> None:
    """A user mistake: one line on stderr, exit code 2, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    del argv
    for name in ("events", "movie"):
        if not os.path.isfile(FLAGS[name].value):
            _fail(f"--{name}: no such file {FLAGS[name].value!r}")
    try:
        units = [int(u) for u in FLAGS.units] if FLAGS.units else None
        split = [int(s) for s in FLAGS.split]
    except ValueError:
        _fail("--units and --split take integers, e.g. --split=80,30,10")
    try:
        data = pvc11.import_pvc11(
            FLAGS.events,
            FLAGS.movie,
            image_size=FLAGS.image_size,
            bin_width_s=FLAGS.bin_width_s,
            keep_seconds=FLAGS.keep_seconds,
            units=units,
            min_rate_hz=FLAGS.min_rate_hz,
            min_snr=FLAGS.min_snr,
            snr_variable=FLAGS.snr_variable,
            split=split,
        )
    except ValueError as err:  # DataError included: what is wrong, in which file
        _fail(" ".join(str(err).split()))
    recording.save_recording(FLAGS.out, data)
    print(pvc11.summary(data))
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
