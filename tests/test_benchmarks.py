"""Smoke tests of the benchmarks: `benchmarks/run.py --smoke` and `benchmarks/device_check.py --smoke` run every
measurement at tiny sizes on the CPU.

The figures of a smoke run mean nothing (tiny sizes, a busy test machine); these check that the entry points run,
print their JSON as their last line and write it where they are told, and that the GPU ones refuse a machine
without CUDA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tiny import SHARED_DATA_DIR

REPO = Path(__file__).resolve().parent.parent
DATA = SHARED_DATA_DIR / "solutions" / "math500_solutions.jsonl"
NO_DATA = (
    f"the benchmarks' text, MATH500's solutions, was not found at {DATA}: put a copy of the project's shared data at "
    "../shared/data beside the repository"
)
HEADLINE_KEYS = {
    "scorer_vs_encode_ratio",
    "formula_completions_per_s",
    "local_term_time_ratio",
    "local_term_peak_mem_ratio",
    "policy_forwards_per_microbatch",
    "scorer_scaling_4096_vs_256",
    "step_time_ratio_cpu",
}


def run_benchmark(script: str, *arguments: str, timeout: float, cwd: Path | None = None):
    """`python benchmarks/<script> <arguments>`, offline, its output captured."""
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *arguments],
        cwd=cwd,
        env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_run_smoke_prints_headline_and_writes_results(tmp_path):
    if not DATA.is_file():
        pytest.skip(NO_DATA)
    output = tmp_path / "results.json"
    repo_results = REPO / "benchmarks" / "results.json"
    before = repo_results.stat().st_mtime_ns if repo_results.exists() else None
    completed = run_benchmark(
        "run.py", "--smoke", "--device", "cpu", "--output", str(output), timeout=600, cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    headline = json.loads(completed.stdout.strip().splitlines()[-1])
    assert set(headline) == HEADLINE_KEYS
    assert headline["policy_forwards_per_microbatch"] == 1  # a count, not a timing: exact even in a smoke run
    assert all(isinstance(value, (int, float)) for value in headline.values())
    record = json.loads(output.read_text())
    assert record["mode"] == "smoke" and record["headline"] == headline
    assert (repo_results.stat().st_mtime_ns if repo_results.exists() else None) == before  # the repo's is untouched


DEVICE_CHECK_KEYS = {
    "step_time_ratio_gpu",
    "step_scorer_share",
    "local_term_time_ratio_bf16",
    "local_term_peak_mem_ratio_bf16",
    "scorer_s_per_generation_batch",
    "scorer_share_of_step_at_most",
    "cuda_tests_failed",
}


@pytest.mark.slow
def test_device_check_smoke_runs_every_part_and_prints_its_json(tmp_path):
    if not DATA.is_file():
        pytest.skip(NO_DATA)
    completed = run_benchmark("device_check.py", "--smoke", "--output-dir", str(tmp_path), timeout=1200, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    record = json.loads(completed.stdout.strip().splitlines()[-1])
    assert record == json.loads((tmp_path / "device_check.json").read_text())
    assert record["mode"] == "smoke" and set(record["headline"]) == DEVICE_CHECK_KEYS
    failed = {name: part["error"] for name, part in record["parts"].items() if "error" in part}
    assert not failed, {name: (tmp_path / f"{name}.log").read_text()[-3000:] for name in failed}
    assert all(isinstance(value, (int, float)) for value in record["headline"].values()), record["headline"]
    assert record["parts"]["local_term"]["policy_forwards"] == {"grpo": 1, "dsdr": 1}  # counts: exact even here
    assert record["parts"]["local_term"]["autocast"] == "bfloat16"
    tests = record["parts"]["cuda_tests"]
    expected = {"passed"} if torch.cuda.is_available() else {"skipped"}
    assert len(tests["tests"]) >= 4 and set(tests["tests"].values()) == expected, tests
    assert record["machine"]["packages"]["trl"] and record["carried_wheels"]["wheels"] == []


@pytest.mark.parametrize(
    "script, advice",
    [("gpu_step.py", "--device cpu --tiny"), ("device_check.py", "--smoke")],
)
def test_gpu_benchmarks_refuse_a_machine_without_cuda(script, advice):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the clean refusal is for machines without one")
    completed = run_benchmark(script, timeout=300)
    assert completed.returncode != 0
    assert "CUDA" in completed.stderr and advice in completed.stderr
    assert "Traceback" not in completed.stderr
