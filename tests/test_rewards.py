"""TRL reward functions: standard and conversational completions, gold answers that do not parse, threads."""

from __future__ import annotations

import functools
import threading

import pytest

from dsdr_trl import grading, rewards
from dsdr_trl.rewards import (
    boxed_format_reward,
    completion_text,
    math_accuracy_reward,
    reasoning_math_accuracy_reward,
)


def test_standard_completions_as_trl_calls_them() -> None:
    rewards = math_accuracy_reward(
        prompts=["p1", "p2", "p3"],
        completions=[r"so \boxed{\frac12}", r"\boxed{3}", "no idea"],
        completion_ids=[[1], [2], [3]],
        solution=["0.5", "4", "1"],
        trainer_state=None,
        log_extra=None,
        log_metric=None,
    )
    assert rewards == [1.0, 0.0, 0.0]


def test_conversational_completions_use_assistant_content() -> None:
    completions = [
        [{"role": "assistant", "content": r"The answer is \boxed{7}."}],
        [
            {"role": "assistant", "content": None, "tool_calls": [{"name": "calc"}]},
            {"role": "tool", "content": r"\boxed{9}"},
            {"role": "assistant", "content": [{"type": "text", "text": r"So \boxed{8}"}]},
        ],
    ]
    assert math_accuracy_reward(completions, solution=["7", "8"]) == [1.0, 1.0]
    assert completion_text(completions[1]) == r"So \boxed{8}"  # the tool's \boxed{9} is not the model's


def test_unparsable_gold_gives_none() -> None:
    assert math_accuracy_reward([r"\boxed{1}", r"\boxed{1}"], solution=["", "1"]) == [None, 1.0]


def test_boxed_format_reward() -> None:
    completions = [r"\boxed{1}", r"\boxed{}", r"\boxed{unclosed", "Answer: 1", [{"role": "assistant", "content": r"\fbox{2}"}]]
    assert boxed_format_reward(completions) == [1.0, 0.0, 0.0, 0.0, 1.0]


def test_names_read_well_in_trl_logs() -> None:
    assert math_accuracy_reward.__name__ == "math_accuracy_reward"
    assert boxed_format_reward.__name__ == "boxed_format_reward"


def test_reward_from_a_worker_thread() -> None:
    results: list[list[float | None]] = []
    worker = threading.Thread(target=lambda: results.append(math_accuracy_reward([r"\boxed{2}"], solution=["2"])))
    worker.start()
    worker.join(timeout=30)
    assert results == [[1.0]]


def test_reasoning_reward_grades_after_the_thinking_as_trl_does() -> None:
    completions = [
        [{"role": "assistant", "content": r"<think> Reasoning content </think> \boxed{\frac{63}{400}}"}],
        [{"role": "assistant", "content": r"<think> My answer is \boxed{42} </think> Some other text."}],
        [{"role": "assistant", "content": r"<think> Incomplete reasoning \boxed{42}"}],
        r"Reasoning content </think> The answer is 42.",  # standard format; the opener was in the prompt
        # The chat template's parser split the reasoning off: the content is what follows the thinking.
        [{"role": "assistant", "reasoning_content": "Reasoning", "content": r"\boxed{42}"}],
        [{"role": "assistant", "content": r"<think> Reasoning </think> \boxed{42}"}],
    ]
    solutions = [r"\frac{63}{400}", "42", "42", "42", "42", ""]
    assert reasoning_math_accuracy_reward(completions, solution=solutions) == [1.0, 0.0, 0.0, 1.0, 1.0, None]
    assert math_accuracy_reward(completions[1:3], solution=["42", "42"]) == [1.0, 1.0]  # the whole completion
    assert reasoning_math_accuracy_reward.__name__ == "reasoning_math_accuracy_reward"


def test_rewards_log_the_comparisons_that_ran_out_of_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rewards, "grade_batch", functools.partial(grading.grade_batch, timeout_s=0.5))
    pathological = r"\boxed{" + "(" * 60 + "x" + ")" * 60 + "}"
    logged: list[tuple[str, float]] = []
    values = math_accuracy_reward(
        [pathological, r"\boxed{1}", r"\boxed{2}"],
        solution=["x", "1", "1"],
        log_metric=lambda name, value: logged.append((name, value)),
    )
    assert values == [None, 1.0, 0.0]  # unscorable, not wrong
    assert logged == [("grading/timeouts", 1.0)]
    assert math_accuracy_reward([r"\boxed{1}"], solution=["1"]) == [1.0]  # no log_metric outside a trainer


def test_decimals_setting() -> None:
    assert math_accuracy_reward([r"\boxed{0.3333}"] * 2, solution=[r"\frac{1}{3}"] * 2) == [0.0, 0.0]
    assert math_accuracy_reward([r"\boxed{0.3333}"], solution=[r"\frac{1}{3}"], decimals=4) == [1.0]


@pytest.mark.slow  # about 10 s: one training step of a tiny random policy
def test_grading_timeouts_reach_the_trainer_logs(tmp_path) -> None:
    from datasets import Dataset

    from dsdr_trl import DSDRConfig, DSDRTrainer
    from tests.tiny import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    dataset = Dataset.from_dict({"prompt": ["What is $2 + 2$?"] * 8, "solution": ["4"] * 8})
    args = DSDRConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
        max_steps=1,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        diversity_coef=0.0,
        local_entropy_coef=0.0,
    )
    trainer = DSDRTrainer(
        model=model, processing_class=tokenizer, reward_funcs=math_accuracy_reward, args=args, train_dataset=dataset
    )
    trainer.train()
    # TRL passes its log_metric to the reward; a random policy's short completions never run out of time.
    assert [record["grading/timeouts"] for record in trainer.state.log_history if "grading/timeouts" in record] == [0.0]
