"""Saving and resuming a DSDR run (real encoder, both terms on, sampled generation) reproduces the uninterrupted run
exactly: same final parameters, same dsdr/ metrics for the steps after the checkpoint."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import TrainerCallback

from dsdr_trl import DSDRConfig, DSDRTrainer
from tests.test_trainer import alternating_reward, parameters, prompt_dataset, tiny_args
from tests.tiny import build_tiny_model_and_tokenizer

pytestmark = pytest.mark.slow

TOTAL_STEPS, CHECKPOINT_STEP = 4, 2
# Wall-clock timings differ between runs by nature; every other dsdr/ metric must be identical.
TIMINGS = {"dsdr/scoring_time_s"}


class StopAt(TrainerCallback):
    """Interrupts training after `step` (a crash after the checkpoint, with the schedule of the full run)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def dsdr_trainer(output_dir, minilm_path, **overrides) -> DSDRTrainer:
    model, tokenizer = build_tiny_model_and_tokenizer()
    args = tiny_args(
        DSDRConfig, output_dir, max_steps=TOTAL_STEPS, semantic_model=minilm_path, diversity_coef=0.1,
        local_entropy_coef=0.01, **overrides,
    )
    # Every other completion correct: the bonus, the coupling and the local term are at work at every step on any CPU
    # (with a sampled verifier, a step without a correct completion would leave the local term out of the comparison).
    return DSDRTrainer(
        model=model, reward_funcs=alternating_reward, args=args, train_dataset=prompt_dataset(),
        processing_class=tokenizer,
    )


def dsdr_metrics(trainer: DSDRTrainer) -> dict[int, dict[str, float]]:
    return {
        record["step"]: {k: v for k, v in record.items() if (k.startswith("dsdr/") and k not in TIMINGS) or k == "loss"}
        for record in trainer.state.log_history
        if "loss" in record
    }


def test_resume_from_checkpoint_reproduces_the_uninterrupted_run(tmp_path, minilm_path):
    straight = dsdr_trainer(tmp_path / "straight", minilm_path)
    straight.train()

    interrupted = dsdr_trainer(tmp_path / "resumed", minilm_path, save_strategy="steps", save_steps=CHECKPOINT_STEP)
    interrupted.add_callback(StopAt(CHECKPOINT_STEP))
    interrupted.train()
    checkpoint = tmp_path / "resumed" / f"checkpoint-{CHECKPOINT_STEP}"
    assert interrupted.state.global_step == CHECKPOINT_STEP and checkpoint.is_dir()

    resumed = dsdr_trainer(tmp_path / "resumed", minilm_path, save_strategy="steps", save_steps=CHECKPOINT_STEP)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == TOTAL_STEPS

    initial = parameters(build_tiny_model_and_tokenizer()[0])
    expected, actual = parameters(straight.model), parameters(resumed.model)
    assert any(not torch.equal(initial[k], expected[k]) for k in initial), "the run did not train"
    for name, value in expected.items():
        assert torch.equal(actual[name], value), name

    metrics_straight, metrics_resumed = dsdr_metrics(straight), dsdr_metrics(resumed)
    after = range(CHECKPOINT_STEP + 1, TOTAL_STEPS + 1)
    for step in after:
        assert "dsdr/diversity/mean" in metrics_straight[step] and "dsdr/local_entropy/correct_mean" in metrics_straight[step]
        assert metrics_resumed[step] == metrics_straight[step], step
    # The steps before the checkpoint come back from the saved trainer state.
    for step in range(1, CHECKPOINT_STEP + 1):
        assert metrics_resumed[step] == metrics_straight[step], step
    # Sampling mattered: the resumed steps are not a replay of the first ones.
    assert metrics_straight[TOTAL_STEPS] != metrics_straight[1]

    # The comparison has teeth: without the saved RNG state, the resumed run samples other completions.
    amnesic = tmp_path / "amnesic" / checkpoint.name
    shutil.copytree(checkpoint, amnesic)
    (amnesic / "rng_state.pth").unlink()
    torch.manual_seed(12345)
    without_rng = dsdr_trainer(tmp_path / "amnesic", minilm_path)
    without_rng.train(resume_from_checkpoint=str(amnesic))
    assert any(not torch.equal(parameters(without_rng.model)[k], expected[k]) for k in expected)
