"""Time per training step of one multi-process job against one process (see README.md).

    python -m benchmarks.multiprocess          # V1 mle_psth_nc_mse: 1 and 2 processes
    python -m benchmarks.multiprocess --processes=1,2,4 --timed_steps=5

For each process count P it starts P local processes of one JAX job (gloo collectives on
CPU; P = 1 is the plain single-process step without a mesh). Each process holds K / P of
the case's trials; parameters are replicated. Process 0 prints the median step time. On one
machine the processes share its cores, so this measures the cost of the collectives and of
splitting the work, not the speed-up of P hosts.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time

import jax
from absl import app, flags

from benchmarks import run  # its cases (importing it computes nothing)
from rsnn_jax import parallel, train

flags.DEFINE_string("case", "v1_mle_psth_nc_mse", "A training case of benchmarks.run.")
flags.DEFINE_list("processes", ["1", "2"], "Process counts to time.")
flags.DEFINE_integer("timed_steps", 5, "Timed steps (after one untimed warm-up step).")
flags.DEFINE_string("job_process", None, "Internal: 'RANK,COUNT,PORT' of one process of a job.")
FLAGS = flags.FLAGS
_MARKER = "MULTIPROCESS-RESULT "


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _worker(rank: int, count: int, port: int) -> None:
    if count > 1:
        parallel.initialize(f"localhost:{port}", count, rank)
    case = next(c for c in run.select_cases(["all"], False) if c.name == FLAGS.case)
    model, objective, batch, params = run.build(case)
    mesh = parallel.make_mesh(0) if count > 1 else None
    optimizer = train.make_optimizer(train.TrainConfig())
    step = train.make_train_step(model, optimizer, case.remat, mesh)
    state = train.init_train_state(params, optimizer)
    if mesh is not None:
        state = parallel.replicate(state, mesh)
        batch = parallel.shard_batch(jax.device_get(batch), mesh)
    times = []
    for i in range(FLAGS.timed_steps + 1):
        start = time.perf_counter()
        state, terms, finite = step(state, objective, batch, train.step_key(0, i))
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    if parallel.is_main_process():
        result = dict(processes=count, step_seconds=times[1:], finite=bool(finite))
        print(_MARKER + json.dumps(result), flush=True)


def _job(count: int) -> dict:
    port = _free_port()
    argv = [sys.executable, "-m", "benchmarks.multiprocess", f"--case={FLAGS.case}"]
    argv.append(f"--timed_steps={FLAGS.timed_steps}")
    processes = [
        subprocess.Popen(
            argv + [f"--job_process={r},{count},{port}"], stdout=subprocess.PIPE, text=True
        )
        for r in range(count)
    ]
    outputs = [p.communicate()[0] for p in processes]
    if any(p.returncode for p in processes):
        raise RuntimeError(
            f"the {count}-process job failed (exit codes {[p.returncode for p in processes]})"
        )
    line = next(x for x in outputs[0].splitlines() if x.startswith(_MARKER))
    return json.loads(line[len(_MARKER) :])


def main(argv):
    del argv
    if FLAGS.job_process:
        _worker(*(int(x) for x in FLAGS.job_process.split(",")))
        return
    results = [_job(int(count)) for count in FLAGS.processes]
    base = statistics.median(results[0]["step_seconds"])
    print(f"| processes | step (ms, median of {FLAGS.timed_steps}) | × the first row |")
    print("|---|---|---|")
    for result in results:
        median = statistics.median(result["step_seconds"])
        print(f"| {result['processes']} | {1e3 * median:.0f} | {median / base:.2f} |")


if __name__ == "__main__":
    app.run(main)
