"""Audit of the gradient estimators of sample-and-measure losses (docs/estimators.md).

    python -m experiments.estimators                                    # every case, exact
    python -m experiments.estimators --cases=autocorrelation --seeds=0 --repeats=512
    python -m experiments.estimators --cases=psth,correlogram --bins_factor=4 \\
        --trials_factor=2 --reference=score                             # larger networks

Prints one markdown table (docs/estimators.md explains the columns) and the wall time; with
--output also writes it there, beside a JSON file of every number per seed.
"""

import json
import time

from absl import app, flags

from rsnn_jax import audit_cases

_CASES = flags.DEFINE_list("cases", list(audit_cases.CASES), "Statistics to audit.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the tiny networks and data.")
_REPEATS = flags.DEFINE_integer(
    "repeats", 1024, "Estimates per estimator (rounded up to a multiple of 256)."
)
_GROUPS = flags.DEFINE_integer("groups", 8, "Groups of B trials per estimate (G).")
_RATE_LOGIT = flags.DEFINE_float("rate_logit", -1.5, "Baseline logit of every neuron.")
_BINS = flags.DEFINE_integer("bins_factor", 1, "Multiplies each case's number of bins.")
_TRIALS = flags.DEFINE_integer("trials_factor", 1, "Multiplies each case's trials per group.")
_REFERENCE = flags.DEFINE_enum(
    "reference", "exact", ["exact", "score"], "Exact enumeration or score-function Monte Carlo."
)
_REFERENCE_REPEATS = flags.DEFINE_integer(
    "reference_repeats", 20000, "Score-function estimates averaged by --reference=score."
)
_OUTPUT = flags.DEFINE_string("output", None, "Path prefix for <prefix>.md and <prefix>.json.")
flags.register_validator(
    "cases",
    lambda cases: set(cases) <= set(audit_cases.CASES),
    message=f"--cases must be among {', '.join(audit_cases.CASES)}",
)


def main(argv):
    del argv
    started = time.perf_counter()
    records = audit_cases.run(
        tuple(_CASES.value),
        tuple(int(seed) for seed in _SEEDS.value),
        num_repeats=_REPEATS.value,
        num_groups=_GROUPS.value,
        rate_logit=_RATE_LOGIT.value,
        bins_factor=_BINS.value,
        trials_factor=_TRIALS.value,
        reference=_REFERENCE.value,
        reference_repeats=_REFERENCE_REPEATS.value,
    )
    table = audit_cases.format_table(records)
    print(table)
    print(f"wall time: {time.perf_counter() - started:.0f} s")
    if _OUTPUT.value:
        with open(_OUTPUT.value + ".md", "w", encoding="utf-8") as f:
            f.write(table + "\n")
        numbers = [
            {"case": r.case, "seed": r.seed, "estimator": r.estimator}
            | {k: v for k, v in r.row._asdict().items() if isinstance(v, float)}
            for r in records
        ]
        with open(_OUTPUT.value + ".json", "w", encoding="utf-8") as f:
            json.dump(numbers, f, indent=1)


if __name__ == "__main__":
    app.run(main)
