"""The validation study on synthetic ground truth (issue 8; docs/results.md).

python -m experiments.study --scale=small      # a 2-core CPU
python -m experiments.study --scale=paper      # the paper's sizes (a GPU)
python -m experiments.study --from_json=docs/results/study.json   # re-render the report
"""

import json

from absl import app, flags

from experiments import common
from rsnn_jax import parallel, study

_SCALE = flags.DEFINE_enum("scale", "small", ["small", "paper"], "Study size.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/study", "Runs and data sets.")
_RESULTS = flags.DEFINE_string("results", "docs/results.md", "Markdown report to write.")
_SEEDS = flags.DEFINE_list("seeds", None, "Fit seeds (default: the scale's, 2 small / 3 paper).")
_PARTS = flags.DEFINE_list("parts", ["v1", "hidden", "retina"], "Parts to run.")
_STEPS = flags.DEFINE_integer("steps", None, "Override the training steps of every run.")
common.define_job_flags()  # one process of a multi-process job: docs/distributed.md
_FROM_JSON = flags.DEFINE_string(
    "from_json",
    None,
    "Regenerate --results (tables, figures) from a saved study.json without fitting anything.",
)


def main(argv):
    del argv
    if _FROM_JSON.value:
        try:
            with open(_FROM_JSON.value) as f:
                results = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            raise app.UsageError(f"--from_json={_FROM_JSON.value}: {error}") from None
        if not isinstance(results, dict) or not {"config", "parts", "wall_seconds"} <= set(results):
            raise app.UsageError(
                f"--from_json={_FROM_JSON.value}: not a study.json (needs config, parts, "
                "wall_seconds)"
            )
        print(study.write_report(results, _RESULTS.value))
        return
    try:
        seeds = tuple(int(s) for s in _SEEDS.value) if _SEEDS.value else None
    except ValueError:
        raise app.UsageError(f"--seeds={','.join(_SEEDS.value)}: expected integers") from None
    unknown = set(_PARTS.value) - {"v1", "hidden", "retina"}
    if unknown:
        raise app.UsageError(f"--parts: unknown {sorted(unknown)}; use v1, hidden, retina")
    overrides = dict(parts=tuple(_PARTS.value), results=_RESULTS.value or None)
    if seeds:
        overrides.update(seeds=seeds)
    if _STEPS.value:
        overrides.update(steps=_STEPS.value, retina_steps=_STEPS.value)
    make = study.StudyConfig.paper if _SCALE.value == "paper" else study.StudyConfig.small
    common.join_job()
    # Process 0 speaks for a multi-process job.
    log = print if parallel.is_main_process() else (lambda line: None)
    study.run_study(make(_WORKDIR.value, **overrides), log=log)


if __name__ == "__main__":
    app.run(main)
