"""Every example runs offline on CPU in its smoke mode, as a user would start it (a subprocess, from examples/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

# What each smoke run must print: proof that it did its job, not just that it exited 0 (the quickstart has its own
# test, below).
EXPECTED_OUTPUT = {
    "train_dsdr_math.py": "step   2  loss=",
    "custom_scorer.py": "D_eq=",  # the custom extractor's formula diversity of the demo group
    "evaluate_checkpoints.py": "checkpoint-2 |",  # the report table lists the second checkpoint
}


def run_smoke(name: str, directory: Path) -> subprocess.CompletedProcess:
    """`python examples/<name> --smoke`, started from `directory`: nothing may depend on the working directory, nor
    write into the repository. The timeout only stops a hung run (a busy 2-core machine takes about a minute)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--smoke"], cwd=directory, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_every_example_is_covered():
    assert {path.name for path in EXAMPLES.glob("*.py")} == {*EXPECTED_OUTPUT, "quickstart.py"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT))
def test_example_smoke_mode(name, minilm_path, tmp_path):
    result = run_smoke(name, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert EXPECTED_OUTPUT[name] in result.stdout, result.stdout[-2000:]


@pytest.mark.slow
def test_quickstart_shows_every_dsdr_quantity_and_no_upstream_noise(minilm_path, tmp_path):
    result = run_smoke("quickstart.py", tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    steps = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    logged = dict(item.split("=") for line in steps for item in line.split()[2:])  # the last value of each
    assert {"correct", "D_emb", "D_eq", "d", "bonus", "H(w)", "H_local"} <= set(logged), steps
    assert float(logged["D_eq"]) > 0 and 0 < float(logged["correct"]) < 1  # formulas; correct and wrong completions
    # The whole output is the step lines: no deprecation warnings of other libraries, no progress bars.
    assert result.stdout.splitlines() == steps and result.stderr == "", result.stderr[-2000:]
