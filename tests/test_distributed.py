"""Multi-process training on CPU: two local processes (gloo collectives) behave as one.

Each process is a subprocess running ``tests/distributed_worker.py``; the reference is the
same worker alone, on one device without a mesh.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import flax.serialization
import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "distributed_worker.py")
STEPS = 40
pytestmark = pytest.mark.xdist_group("distributed")  # one job at a time on the 2 cores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(out, mode, num_processes, *extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    port = _free_port()
    return [
        subprocess.Popen(
            [sys.executable, WORKER, str(out), str(rank), str(num_processes), str(port), mode]
            + [str(STEPS), *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(num_processes)
    ]


def _finish(processes, timeout=300):
    outputs = [p.communicate(timeout=timeout)[0] for p in processes]
    for rank, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0 and f"WORKER-DONE {rank}" in output, output[-3000:]
    return outputs


def _params(path):
    with open(path, "rb") as f:
        restored = flax.serialization.msgpack_restore(f.read())
    return int(restored["step"]), jax.tree.leaves(restored["params"])


def _assert_close(a, b):
    # Only the order of the sums over trials differs (each process sums its own trials,
    # then gloo all-reduces): a few float32 ulps of parameters of size ~0.1-1, while the
    # run moves them by ~1e-2 per step.
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The single-process runs: fit and ensemble."""
    out = tmp_path_factory.mktemp("one")
    _finish(_start(out, "fit,ensemble", 1))
    return out


@pytest.mark.slow
def test_two_processes_train_as_one(reference, tmp_path):
    outputs = _finish(_start(tmp_path, "fit,ensemble", 2))
    step, params = _params(tmp_path / "checkpoints" / "latest.msgpack")
    assert step == STEPS
    _assert_close(params, _params(reference / "checkpoints" / "latest.msgpack")[1])
    # Both processes ran every step and validation.
    assert all(f"step {STEPS}/{STEPS}" in output for output in outputs)
    # Ensemble: each process advances one of the two members, in one compiled program.
    assert "advances members [0]" in outputs[0] and "advances members [1]" in outputs[1]
    together = np.load(tmp_path / "ensemble.npz")
    alone = np.load(reference / "ensemble.npz")
    assert len(together.files) == len(alone.files) > 0
    _assert_close(
        [together[k] for k in sorted(alone.files)], [alone[k] for k in sorted(alone.files)]
    )


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_to_the_same_parameters(reference, tmp_path):
    latest = tmp_path / "checkpoints" / "latest.msgpack"
    processes = _start(tmp_path, "fit", 2)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # kill both once a few steps are checkpointed
        if latest.exists() and _params(latest)[0] >= 3:
            break
        assert all(p.poll() is None for p in processes), processes[0].stdout.read()[-3000:]
        time.sleep(0.02)
    for process in processes:
        process.send_signal(signal.SIGKILL)
    for process in processes:
        process.communicate(timeout=60)
    assert [p.returncode for p in processes] == [-signal.SIGKILL] * 2
    killed_at = _params(latest)[0]
    assert 3 <= killed_at < STEPS
    outputs = _finish(_start(tmp_path, "fit", 2, "--resume"))
    assert f"at step {killed_at}" in outputs[0]  # "resumed from ... at step n"
    step, params = _params(latest)
    assert step == STEPS
    _assert_close(params, _params(reference / "checkpoints" / "latest.msgpack")[1])


@pytest.mark.slow
def test_an_experiment_module_runs_as_a_two_process_job(tmp_path):
    from rsnn_jax import synthetic
    from rsnn_jax.data import recording

    data = synthetic.make_v1_like(
        0,
        num_visible=4,
        num_hidden=0,
        num_trials=8,
        num_frames=20,
        image_size=9,
        split=(4, 2, 2),
        num_calibration_trials=2,
        num_calibration_iterations=1,
    )
    recording.save_recording(str(tmp_path / "v1.h5"), data)
    workdir, port = tmp_path / "run", _free_port()
    flags = [
        f"--data={tmp_path / 'v1.h5'}",
        f"--workdir={workdir}",
        "--loss=mle",
        "--steps=2",
        "--eval_every=1",
        "--batch_size=4",
        "--conv_features=2,2",
        "--warm_start_iterations=0",
        f"--coordinator_address=localhost:{port}",
        "--num_processes=2",
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "experiments.v1", *flags, f"--process_id={rank}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    # Process 0 speaks and writes for the job; process 1 trains silently.
    assert "trials split over 2 devices of 2 processes" in outputs[0][0]
    assert "step 2/2" in outputs[0][0] and "step" not in outputs[1][0]
    report = (workdir / "report.json").read_text()
    assert '"steps_run": 2' in report
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == [
        "best.msgpack",
        "latest.msgpack",
    ]


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--coordinator_address=localhost:1"],
            "--coordinator_address: a multi-process job also needs --num_processes, --process_id",
        ),
        (
            ["--coordinator_address=localhost:1", "--num_processes=2", "--process_id=2"],
            "--process_id=2: must be in [0, --num_processes)",
        ),
    ],
)
def test_incomplete_job_flags_fail_in_one_line(flags, message, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.v1", f"--workdir={tmp_path}", *flags],
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {message}"]
