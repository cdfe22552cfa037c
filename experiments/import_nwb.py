"""Import an NWB 2 session (``rsnn_jax.data.nwb``; needs the optional extra ``nwb``).

    python -m experiments.import_nwb --nwb=session.nwb --out=session.h5 [--bin_width_s=0.04] \\
        [--stimulus=NAME | --presentations=NAME --template=NAME] [--movie_column=movie] \\
        [--image_size=27] [--num_bins=650] [--units=0,3,5] [--split=80,30,10]

A bad input ends in one line on stderr naming the NWB path or flag (exit code 1).
"""

from absl import app, flags

from rsnn_jax.data import nwb, recording

flags.DEFINE_string("nwb", None, "Input NWB file (units table, trials table, stimulus).")
flags.DEFINE_string("out", None, "Output HDF5 recording.")
flags.DEFINE_float("bin_width_s", 0.04, "Bin width in seconds.")
flags.DEFINE_string("stimulus", None, "Stimulus ImageSeries name (default: the only one).")
flags.DEFINE_string("presentations", None, "Presentation table in /intervals (frames).")
flags.DEFINE_string("template", None, "ImageSeries the presentation table indexes.")
flags.DEFINE_string("frame_column", "frame", "Frame-index column of --presentations.")
flags.DEFINE_string("movie_column", None, "Trials column naming each trial's movie.")
flags.DEFINE_string("split_column", None, "Trials column with train/test/validation.")
flags.DEFINE_list("split", None, "Trials per movie for train, test, validation.")
flags.DEFINE_list("units", None, "Unit ids to keep (default: all).")
flags.DEFINE_integer("num_bins", None, "Keep the first num_bins bins of every trial.")
flags.DEFINE_integer("image_size", None, "Resize frames to image_size × image_size.")
flags.mark_flags_as_required(["nwb", "out"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    try:
        data = nwb.import_nwb(
            FLAGS.nwb,
            bin_width_s=FLAGS.bin_width_s,
            stimulus=FLAGS.stimulus,
            presentations=FLAGS.presentations,
            template=FLAGS.template,
            frame_column=FLAGS.frame_column,
            movie_column=FLAGS.movie_column,
            split_column=FLAGS.split_column,
            split=[int(s) for s in FLAGS.split] if FLAGS.split else None,
            units=[int(u) for u in FLAGS.units] if FLAGS.units else None,
            num_bins=FLAGS.num_bins,
            image_size=FLAGS.image_size,
        )
        recording.save_recording(FLAGS.out, data)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    print(nwb.summary(data))
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
