"""Two gloo processes: groups straddle processes, yet diversity, gradients and failures are those of one process."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from dsdr_trl import DiversityScorer, DSDRConfig, DSDRTrainer
from tests.distributed_worker import COMPLETIONS
from tests.processes import free_port, run_process_group
from tests.test_trainer import (
    digit_reward,
    expected_local_gradient,
    prompt_dataset,
    synthetic_generation_batch,
    tiny_args,
    with_old_logps,
)
from tests.tiny import build_tiny_model_and_tokenizer

pytestmark = pytest.mark.distributed
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, minilm_path) -> dict:
    output = tmp_path_factory.mktemp("distributed") / "result.json"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        "-m", "tests.distributed_worker", str(output), minilm_path,
    ]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    completed = run_process_group(command, timeout=240, cwd=REPO, env=environment)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(output.read_text())


def test_both_processes_score_straddling_groups_like_one_process(two_process_run, minilm_path):
    single = DiversityScorer(minilm_path)(COMPLETIONS, group_size=4)
    rank0, rank1 = two_process_run["scores"]
    assert rank0 == rank1
    for name in ("semantic", "formula", "combined"):
        torch.testing.assert_close(torch.tensor(rank0[name]), getattr(single, name), atol=1e-6, rtol=1e-5)
    assert torch.tensor(rank0["formula"]).max() > 0  # the formula component took part


def test_local_term_gradient_on_two_processes_equals_one_process(two_process_run, tmp_path):
    model, tokenizer = build_tiny_model_and_tokenizer()
    with pytest.warns(UserWarning, match="above 0.01"):  # a large coefficient on purpose: a gradient well above noise
        args = tiny_args(DSDRConfig, tmp_path, diversity_coef=0.0, local_entropy_coef=0.5)
    trainer = DSDRTrainer(
        model=model, reward_funcs=digit_reward, args=args, train_dataset=prompt_dataset(), processing_class=tokenizer
    )
    trainer.model.train()
    expected = expected_local_gradient(trainer, with_old_logps(trainer, synthetic_generation_batch(tokenizer)))
    torch.testing.assert_close(torch.tensor(two_process_run["gradient"]), expected, atol=1e-6, rtol=1e-5)


def test_a_failure_on_one_process_stops_both_with_the_same_error(two_process_run):
    failures = two_process_run["failures"]
    assert failures[0] == failures[1]
    assert "failed on process 1" in failures[0] and "simulated encoder failure" in failures[0]
