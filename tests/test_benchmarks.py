"""Smoke test of the benchmarks: `benchmarks/run.py --smoke` runs every measurement at tiny sizes.

The figures of a smoke run mean nothing (tiny sizes, a busy test machine); this checks that the entry point runs,
prints its headline JSON as its last line and writes results.json where it is told.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEADLINE_KEYS = {
    "scorer_vs_encode_ratio",
    "formula_completions_per_s",
    "local_term_time_ratio",
    "local_term_peak_mem_ratio",
    "policy_forwards_per_microbatch",
    "scorer_scaling_4096_vs_256",
    "step_time_ratio_cpu",
}


@pytest.mark.slow
def test_run_smoke_prints_headline_and_writes_results(tmp_path):
    if not (REPO.parent / "shared" / "data" / "solutions" / "math500_solutions.jsonl").is_file():
        pytest.skip("benchmark data not found at <repo>/../shared/data/solutions/")
    output = tmp_path / "results.json"
    repo_results = REPO / "benchmarks" / "results.json"
    before = repo_results.stat().st_mtime_ns if repo_results.exists() else None
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--smoke", "--device", "cpu", "--output", str(output)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    headline = json.loads(completed.stdout.strip().splitlines()[-1])
    assert set(headline) == HEADLINE_KEYS
    assert headline["policy_forwards_per_microbatch"] == 1  # a count, not a timing: exact even in a smoke run
    assert all(isinstance(value, (int, float)) for value in headline.values())
    record = json.loads(output.read_text())
    assert record["mode"] == "smoke" and record["headline"] == headline
    assert (repo_results.stat().st_mtime_ns if repo_results.exists() else None) == before  # the repo's is untouched


def test_gpu_step_fails_cleanly_without_cuda():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the clean refusal is for machines without one")
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_step.py")], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode != 0
    assert "CUDA" in completed.stderr and "--device cpu --tiny" in completed.stderr
    assert "Traceback" not in completed.stderr
