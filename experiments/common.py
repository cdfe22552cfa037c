"""Flags shared by the experiment modules, and their translation into an ExperimentConfig.

Each module calls ``define_flags(**defaults)`` at import time with its paper defaults, then
``run(kind)`` from its ``main``. Bad flags exit with a one-line message naming the flag.
"""

from __future__ import annotations

import sys

from absl import flags, logging

from rsnn_jax import experiment, losses, parallel, train
from rsnn_jax.data import recording

TERMS = losses.TERM_NAMES  # --weight_<term> for every term some preset has
FLAGS = flags.FLAGS


def define_flags(**defaults) -> None:
    """Defines the common flags with ``defaults`` overriding the generic ones."""
    d = dict(
        loss="mle",
        hidden=0,
        steps=1000,
        batch_size=20,
        learning_rate=1e-3,
        num_delays=9,
        eval_every=50,
        patience=8,
        target_hidden=0,
        data_trials=None,
        schedule="warmup_cosine",
        warmup_steps=50,
        weight_decay=0.0,
        average_steps=0,
        init_biases=True,
        warm_start_iterations=100,
        warm_start_coupling_l2=0.0,
    )
    d.update(defaults)
    flags.DEFINE_string("data", None, "HDF5 recording (docs/data.md); default: built-in synthetic.")
    flags.DEFINE_string(
        "workdir",
        d.get("workdir", "workdir"),
        "Output folder of the run (default: this value + '_<loss>', one folder per objective). "
        "A folder holding a run is refused unless --resume or --overwrite.",
    )
    flags.DEFINE_bool("overwrite", False, "Replace the run already in --workdir.")
    flags.DEFINE_string(
        "cache_dir", None, "Cache of built-in data sets (default ~/.cache/rsnn_jax)."
    )
    flags.DEFINE_string("loss", d["loss"], f"Objective preset: {', '.join(losses.PRESETS)}.")
    for term in TERMS:
        flags.DEFINE_float(f"weight_{term}", None, f"Override the weight μ of the {term} term.")
    flags.DEFINE_integer("hidden", d["hidden"], "Hidden neurons of the fitted network.")
    flags.DEFINE_integer("steps", d["steps"], "Training steps.")
    if "batch_size" in defaults:  # trial batches (V1, synthetic), not retina clips
        flags.DEFINE_integer("batch_size", d["batch_size"], "Trials per batch.")
    flags.DEFINE_float("learning_rate", d["learning_rate"], "Adam's peak learning rate.")
    flags.DEFINE_enum(
        "schedule",
        d["schedule"],
        list(train.SCHEDULES),
        "Learning rate: linear warm-up then cosine decay to --final_lr_fraction, or constant "
        "(the paper's).",
    )
    flags.DEFINE_list(
        "learning_rate_scales",
        [],
        "Per-parameter learning rates: PATH:SCALE pairs, e.g. encoder/params/temporal:0 "
        "(every parameter whose path contains PATH steps SCALE × the learning rate; 0 "
        "freezes it).",
    )
    flags.DEFINE_enum(
        "nc_mse_estimator",
        "probabilities",
        ["probabilities", "spikes"],
        "The nc_mse term's model side: probabilities (official) or straight-through spikes "
        "(less biased in gradient direction, docs/estimators.md).",
    )
    flags.DEFINE_integer("warmup_steps", d["warmup_steps"], "Warm-up steps (warmup_cosine).")
    flags.DEFINE_float(
        "final_lr_fraction", 0.1, "Last step's learning rate over the peak (warmup_cosine)."
    )
    flags.DEFINE_float(
        "weight_decay", d["weight_decay"], "L2 penalty on every weight array (0: none)."
    )
    flags.DEFINE_list(
        "weight_decay_scales",
        d.get("weight_decay_scales", []),
        "Per-parameter L2 penalties: PATH:SCALE pairs, e.g. network/recurrent_weights:0 "
        "(every weight array whose path contains PATH gets SCALE × --weight_decay; 0 "
        "exempts it). Also applied in the warm start's readout solve.",
    )
    flags.DEFINE_integer(
        "average_steps",
        d["average_steps"],
        "Validate, select and report a moving average of the parameters over about this many "
        "steps instead of the latest ones (0: the latest).",
    )
    flags.DEFINE_integer(
        "warm_start_iterations",
        d["warm_start_iterations"],
        "L-BFGS iterations of the clamped-MLE readout solve before training (0: none; "
        "skipped with hidden neurons).",
    )
    flags.DEFINE_float(
        "warm_start_coupling_l2",
        d["warm_start_coupling_l2"],
        "L2 penalty on the couplings between neurons (not self-history) in the warm start.",
    )
    flags.DEFINE_bool(
        "init_biases",
        d["init_biases"],
        "Start each neuron at its training-data firing rate (--noinit_biases: zero biases, "
        "as the paper's code).",
    )
    flags.DEFINE_bool(
        "free_from_zeros",
        d.get("free_from_zeros", False),
        "Start the free pass from a silent history, as the official code does (default: "
        "from the batch's recorded history).",
    )
    flags.DEFINE_enum(
        "adam_epsilon",
        d.get("adam_epsilon", "optax"),
        list(train.ADAM_EPSILONS),
        "Where Adam's epsilon enters: after the bias correction (optax) or on the square root "
        "of the uncorrected second moment, as TF 2.3 Keras in the official code (keras).",
    )
    flags.DEFINE_integer("seed", 0, "Seed of the fit: initialisation, batches and noise.")
    flags.DEFINE_integer(
        "data_seed", 0, "Seed of the built-in synthetic data set (ignored with --data)."
    )
    flags.DEFINE_bool("resume", False, "Continue from <workdir>/checkpoints/latest.msgpack.")
    flags.DEFINE_integer("eval_every", d["eval_every"], "Steps between validation evaluations.")
    flags.DEFINE_integer(
        "checkpoint_every", d["eval_every"], "Steps between checkpoints (default: --eval_every)."
    )
    flags.DEFINE_bool(
        "keep_checkpoints",
        False,
        "Keep every checkpoint as checkpoints/step_<n>.msgpack (held-out learning curves).",
    )
    flags.DEFINE_integer("log_every", 10, "Steps between progress lines.")
    flags.DEFINE_integer(
        "patience",
        d["patience"],
        "Early stop after this many evaluations without validation improvement (0: never).",
    )
    flags.DEFINE_float("clip_norm", 1.0, "Gradient clipping threshold (1.0 as the official code).")
    flags.DEFINE_bool(
        "remat",
        False,
        "Recompute the simulation scans in the backward pass instead of storing them (long "
        "recordings, large networks: less memory, about one more forward pass of time).",
    )
    flags.DEFINE_enum(
        "clip_mode",
        "per_variable",
        ["per_variable", "global"],
        "Gradient clipping at --clip_norm per parameter array (official) or globally.",
    )
    flags.DEFINE_integer("num_delays", d["num_delays"], "D = d_max, spike-history bins.")
    if "target_hidden" in defaults:  # the synthetic experiment's built-in target
        flags.DEFINE_integer(
            "target_hidden",
            d["target_hidden"],
            "Built-in data: hidden neurons of the target network.",
        )
    flags.DEFINE_integer(
        "data_trials",
        d["data_trials"],
        "Built-in data: trials per repeated movie (default: generator's).",
    )
    flags.DEFINE_integer("eval_trials", None, "Simulated trials per held-out movie.")
    flags.DEFINE_integer(
        "devices",
        1,
        "Data-parallel training: split each batch's trials over this many local devices "
        "(1 = no sharding, 0 = all); the batch size must be a multiple of it.",
    )
    define_job_flags()
    flags.DEFINE_list("conv_features", ["16", "32"], "CNN filters per spatial layer.")
    flags.DEFINE_string(
        "condition", d.get("condition"), "Keep only movies whose name starts with this."
    )
    for name in ("clip_bins", "clamp_until", "num_starts", "num_movies", "temporal_kernel"):
        if name in d:
            flags.DEFINE_integer(name, d[name], _CLIP_HELP[name])


def define_job_flags() -> None:
    """The flags of a multi-process job (docs/distributed.md); ``join_job`` reads them."""
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "Multi-process job: host:port of process 0 (with --num_processes, --process_id); "
        "trials are split over the devices of all processes.",
    )
    flags.DEFINE_integer("num_processes", None, "Multi-process job: number of processes.")
    flags.DEFINE_integer("process_id", None, "Multi-process job: this process's rank.")
    flags.DEFINE_bool(
        "distributed",
        False,
        "Multi-process job described by the cluster's environment (SLURM, Open MPI, TPU pod "
        "slice): jax.distributed.initialize() reads it.",
    )


_CLIP_HELP = {
    "clip_bins": "T, bins per training clip (default from Table S5 for the chosen loss).",
    "clamp_until": "T_gt, bins clamped to the data before free-running (single-trial loss).",
    "num_starts": "K_m, start times per movie in a batch.",
    "num_movies": "K_t, movies (presentations) per batch.",
    "temporal_kernel": "Receptive field of the causal temporal convolution, in bins.",
}


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _value(name: str, default):
    """A flag's value, or ``default`` where the module does not offer the flag."""
    return FLAGS[name].value if name in FLAGS else default


def join_job() -> None:
    """Joins the multi-process job the flags describe (before any JAX computation)."""
    explicit = {
        "coordinator_address": FLAGS.coordinator_address,
        "num_processes": FLAGS.num_processes,
        "process_id": FLAGS.process_id,
    }
    given = [name for name, value in explicit.items() if value is not None]
    if not given and not FLAGS.distributed:
        return
    if given and len(given) < 3:
        missing = ", ".join(f"--{n}" for n in explicit if n not in given)
        _fail(f"--{given[0]}: a multi-process job also needs {missing}")
    if given and not 0 <= FLAGS.process_id < FLAGS.num_processes:
        _fail(f"--process_id={FLAGS.process_id}: must be in [0, --num_processes)")
    try:
        parallel.initialize(*explicit.values())
    except (RuntimeError, ValueError) as err:
        _fail(f"joining the multi-process job: {str(err).splitlines()[0]}")


def make_config(kind: str, **extra) -> experiment.ExperimentConfig:
    """Builds the config from the parsed flags; exits with a message on a bad flag."""
    if not FLAGS["verbosity"].present:
        # JAX's INFO lines (e.g. "Unable to initialize backend 'tpu'" on every machine
        # without one) read like errors; --verbosity=0 shows them again.
        logging.set_verbosity(logging.WARNING)
    join_job()
    weights = tuple(
        (term, FLAGS[f"weight_{term}"].value)
        for term in TERMS
        if FLAGS[f"weight_{term}"].value is not None
    )
    try:
        features = tuple(int(x) for x in FLAGS.conv_features)
    except ValueError:
        _fail(f"--conv_features={','.join(FLAGS.conv_features)}: expected integers like 16,32")
    workdir = FLAGS.workdir if FLAGS["workdir"].present else f"{FLAGS.workdir}_{FLAGS.loss}"
    settings = dict(
        overwrite=FLAGS.overwrite,
        resume=FLAGS.resume,
        num_devices=FLAGS.devices,
        data=FLAGS.data,
        data_seed=FLAGS.data_seed,
        target_hidden=_value("target_hidden", 0),
        data_trials=FLAGS.data_trials,
        condition=FLAGS.condition or None,
        num_hidden=FLAGS.hidden,
        num_delays=FLAGS.num_delays,
        conv_features=features,
        batch_size=_value("batch_size", 20),
        loss=FLAGS.loss,
        weights=weights,
        free_from_zeros=FLAGS.free_from_zeros,
        nc_mse_estimator=FLAGS.nc_mse_estimator,
        init_biases=FLAGS.init_biases,
        warm_start_iterations=FLAGS.warm_start_iterations,
        warm_start_coupling_l2=FLAGS.warm_start_coupling_l2,
        eval_trials=FLAGS.eval_trials,
        patience=FLAGS.patience or None,
        checkpoint_every=(
            FLAGS.checkpoint_every if FLAGS["checkpoint_every"].present else FLAGS.eval_every
        ),
        num_steps=FLAGS.steps,
        learning_rate_scales=_path_scales("learning_rate_scales"),
        weight_decay_scales=_path_scales("weight_decay_scales"),
        **{name: FLAGS[name].value for name in _TRAIN_FLAGS},
    )
    if FLAGS.cache_dir:
        settings["cache_dir"] = FLAGS.cache_dir
    settings.update(extra)
    try:
        # Every setting is validated once, by its config, in the flag's words.
        config = experiment.ExperimentConfig.build(kind, workdir, **settings)
        experiment.training_mesh(config)
    except ValueError as err:
        _fail(str(err).splitlines()[0])
    return config


# Flags named as their train.TrainConfig field.
_TRAIN_FLAGS = (
    "learning_rate",
    "schedule",
    "warmup_steps",
    "final_lr_fraction",
    "weight_decay",
    "average_steps",
    "clip_mode",
    "clip_norm",
    "eval_every",
    "keep_checkpoints",
    "log_every",
    "seed",
    "remat",
    "adam_epsilon",
)


def _path_scales(name: str) -> tuple:
    """A PATH:SCALE list flag (``--learning_rate_scales``, ``--weight_decay_scales``) as
    ((path, scale), ...)."""
    scales = []
    for item in FLAGS[name].value:
        path, _, scale = item.rpartition(":")
        try:
            scales.append((path, float(scale)))
        except ValueError:
            _fail(f"--{name}: {item!r} is not PATH:SCALE (e.g. encoder:0.5)")
        if not path or not scales[-1][1] >= 0:
            _fail(f"--{name}: {item!r} needs a path and a scale >= 0")
    return tuple(scales)


def _quiet(line: str) -> None:
    del line


def run(config: experiment.ExperimentConfig) -> dict:
    """Runs the experiment; user-facing failures (missing or malformed data, divergence)
    exit with their message instead of a traceback."""
    try:
        # Flushed: with output to a file (nohup, cluster jobs) progress shows as it happens.
        # Process 0 speaks for a multi-process job; the others run silently.
        log = (lambda line: print(line, flush=True)) if parallel.is_main_process() else _quiet
        return experiment.run_experiment(config, log=log)
    except experiment.RunError as err:  # the workdir, --condition, --batch_size
        _fail(str(err))
    except train.Interrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        sys.exit(130)  # the shell's code for a SIGINT
    except (FileNotFoundError, recording.DataError, train.TrainingDiverged) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
