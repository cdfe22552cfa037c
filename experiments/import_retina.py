"""Import a retina recording (``rsnn_jax.data.retina``; input layout in that module).

    python -m experiments.import_retina --input=checkerboard.h5 --unrepeated=unrepeated \\
        --train_repeated=repeated_1 --test_repeated=repeated_2 --out=retina.h5

A bad input ends in one line on stderr naming the file and what is wrong (exit code 1).
"""

import os

from absl import app, flags

from rsnn_jax.data import recording, retina

flags.DEFINE_string("input", None, "Input file (HDF5 or .npz, see rsnn_jax.data.retina).")
flags.DEFINE_list("unrepeated", ["unrepeated"], "Unrepeated movie(s): training.")
flags.DEFINE_list("train_repeated", ["repeated_1"], "Repeated movie(s) for training.")
flags.DEFINE_list("test_repeated", ["repeated_2"], "Repeated movie(s) for testing.")
flags.DEFINE_integer("num_validation_repeats", 0, "Repeats held out for validation.")
flags.DEFINE_float("bin_width_s", retina.BIN_WIDTH_S, "Bin width in seconds.")
flags.DEFINE_bool("clip_counts", False, "Clip counts > 1 to 1 (reported).")
flags.DEFINE_string("out", "retina.h5", "Output HDF5 recording.")
flags.mark_flags_as_required(["input"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not os.path.isfile(FLAGS.input):
        raise SystemExit(f"error: --input: no such file {FLAGS.input!r}")
    try:
        movies = retina.read_retina_file(FLAGS.input)
        splits = retina.appendix_a_split(
            FLAGS.unrepeated,
            FLAGS.train_repeated,
            FLAGS.test_repeated,
            {name: movie.spikes.shape[0] for name, movie in movies.items()},
            FLAGS.num_validation_repeats,
        )
        data = retina.import_retina(
            movies,
            splits,
            bin_width_s=FLAGS.bin_width_s,
            clip_counts=FLAGS.clip_counts,
            attrs={"input_file": os.path.basename(FLAGS.input)},
        )
        recording.save_recording(FLAGS.out, data)
    except (ValueError, OSError) as error:  # DataError included; OSError: unreadable file
        raise SystemExit("error: " + " ".join(str(error).split())) from None
    for name, spikes in data.spikes.items():
        print(
            f"{name}: {spikes.shape[0]} trials × {spikes.shape[1]} bins × {spikes.shape[2]} "
            f"cells, spike probability per bin {spikes.mean():.4f}"
        )
    print(f"clipped {data.attrs['num_clipped_spikes']} spikes; wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
