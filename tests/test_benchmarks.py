"""CI's smoke benchmark: the benchmark command runs every case at tiny sizes and writes
complete, finite results (no timing assertions: CI machines vary)."""

import json
import math
import os
import subprocess
import sys

CASE_FIELDS = (
    "timed_steps",
    "step_seconds_median",
    "compile_seconds",
    "peak_rss_mb",
    "flops_per_step",
    "flops_per_s",
    "matmul_fraction",
)


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def test_smoke_benchmark_writes_every_field(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "results.json"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", f"--out={out}"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(out.read_text())
    assert _finite(results["meta"]["matmul_flops_per_s"])

    from benchmarks import run

    assert set(results["cases"]) == {case.name for case in run.CASES}
    for name, result in results["cases"].items():
        for field in CASE_FIELDS:
            assert _finite(result[field]), (name, field, result.get(field))
        assert result["flops_per_step"] > 0 and result["timed_steps"] >= 1
        if result["case"]["task"] == "sample":
            assert _finite(result["trials_per_s"]) and _finite(result["neuron_bins_per_s"])
        else:
            assert _finite(result["loss"])
    assert "| v1_mle |" in done.stdout  # the Markdown table
