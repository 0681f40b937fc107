"""Every example runs offline on CPU in its smoke mode, as a user would start it (a subprocess, from examples/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

# What each smoke run must print: proof that it did its job, not just that it exited 0.
EXPECTED_OUTPUT = {
    "quickstart.py": "step   2  loss=",  # PrintDSDRMetrics' line for the last step
    "train_dsdr_math.py": "step   2  loss=",
    "custom_scorer.py": "D_eq=",  # the custom extractor's formula diversity of the demo group
    "evaluate_checkpoints.py": "checkpoint-2 |",  # the report table lists the second checkpoint
}


def test_every_example_is_covered():
    assert {path.name for path in EXAMPLES.glob("*.py")} == set(EXPECTED_OUTPUT)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT))
def test_example_smoke_mode(name, minilm_path, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--smoke"],
        cwd=tmp_path,  # nothing may depend on the working directory, nor write into the repository
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert EXPECTED_OUTPUT[name] in result.stdout, result.stdout[-2000:]
