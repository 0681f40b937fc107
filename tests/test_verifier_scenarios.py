"""Scripts as users write them, with no DSDR setting: "correct" must be what the script's verifier says.

Modelled on real scripts: TRL's `trl.rewards` in TRL's example order (`[think_format_reward, accuracy_reward]`, as in
`examples/scripts/grpo_vlm.py` and `rloo.py`), open-r1's `[accuracy, format, tag_count]`, a dict of two environments,
and a tool-calling run. The policy's `generate` is scripted (its forward pass, and so the loss, is the real model's),
so every completion, and every reward, is the same on any CPU: each test checks that `dsdr/frac_correct` equals the
true verifier's mean at every step, and that the wrong choice would have given another value.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import pytest
import torch
from datasets import Dataset

from dsdr_trl import DSDRConfig, DSDRTrainer
from dsdr_trl.rewards import boxed_format_reward, completion_text, math_accuracy_reward
from tests.test_trainer import PROMPTS, tiny_args
from tests.tiny import build_tiny_model_and_tokenizer

pytestmark = pytest.mark.slow


def script_generation(model, tokenizer, script: Callable[[str, int], str]) -> None:
    """Makes `model.generate` answer row k of the run (counted over the whole run) with `script(prompt_text, k)`."""
    rows_so_far = itertools.count()

    def generate(input_ids, attention_mask=None, **kwargs):
        continuations = []
        for ids in input_ids:
            text = script(tokenizer.decode(ids), next(rows_so_far))
            continuations.append(tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id])
        width = max(map(len, continuations))
        padded = [row + [tokenizer.pad_token_id] * (width - len(row)) for row in continuations]
        return torch.cat([input_ids, torch.tensor(padded, device=input_ids.device)], dim=1)

    model.generate = generate


def train_scripted(tmp_path, reward_funcs, script, *, dataset, tokenizer=None, trainer_kwargs=None, **config):
    """Trains 2 steps of one generation batch each; returns the trainer and each step's gathered reward columns."""
    model, own_tokenizer = build_tiny_model_and_tokenizer()
    tokenizer = tokenizer or own_tokenizer
    script_generation(model, tokenizer, script)
    args = tiny_args(DSDRConfig, tmp_path, max_completion_length=160, **config)
    trainer = DSDRTrainer(
        model=model, reward_funcs=reward_funcs, args=args, train_dataset=dataset, processing_class=tokenizer,
        **(trainer_kwargs or {}),
    )
    recorded = []
    calculate_rewards = trainer._calculate_rewards

    def record(*args, **kwargs):
        rewards = calculate_rewards(*args, **kwargs)
        recorded.append(dict(zip(trainer.reward_func_names, rewards.clone().unbind(dim=1))))
        return rewards

    trainer._calculate_rewards = record
    trainer.train()
    return trainer, recorded


def frac_correct_per_step(trainer) -> list[float]:
    return [record["dsdr/frac_correct"] for record in trainer.state.log_history if "dsdr/frac_correct" in record]


def assert_correct_is(trainer, recorded, truth: Callable[[dict], torch.Tensor], wrong: Callable[[dict], torch.Tensor]):
    """`dsdr/frac_correct` is the true verifier's mean at every step, and the wrong verifier would differ somewhere."""
    logged = frac_correct_per_step(trainer)
    expected = [truth(columns).float().mean().item() for columns in recorded]
    mistaken = [wrong(columns).float().mean().item() for columns in recorded]
    print(f"\n{trainer.reward_func_names}: dsdr/frac_correct {logged}, true verifier's mean {expected}, wrong: {mistaken}")
    assert len(logged) == len(recorded) == trainer.args.max_steps
    assert logged == pytest.approx(expected)
    assert expected != pytest.approx(mistaken)


def conversational_dataset(**columns) -> Dataset:
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS] * 2
    return Dataset.from_dict({"prompt": prompts, **{k: v * 2 for k, v in columns.items()}})


def verifier_log_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dsdr_trl.trainer"]


# -- TRL's own reward functions, in TRL's example order ------------------------------------------------------------


def think_and_answer(prompt: str, row: int) -> str:
    """Cycles through (format, answer) = (yes, right), (yes, wrong), (no, right), (no, wrong), (yes, wrong)."""
    return [
        "<think>2 + 2 is 4</think> The answer is $\\boxed{4}$.",
        "<think>2 + 2 is 5</think> The answer is $\\boxed{5}$.",
        "2 + 2 is 4, so the answer is $\\boxed{4}$.",
        "The answer is $\\boxed{7}$.",
        "<think>guess</think> The answer is $\\boxed{3}$.",
    ][row % 5]


def test_trl_rewards_in_trls_example_order(tmp_path, minilm_path, caplog):
    pytest.importorskip("math_verify")
    from trl.rewards import accuracy_reward, think_format_reward

    with caplog.at_level("WARNING", logger="dsdr_trl.trainer"):
        trainer, recorded = train_scripted(
            tmp_path, [think_format_reward, accuracy_reward], think_and_answer,
            dataset=conversational_dataset(solution=["$4$"] * 4), semantic_model=minilm_path,
        )
    assert trainer.correctness_reward_indices == (1,)
    assert_correct_is(
        trainer, recorded, truth=lambda r: r["accuracy_reward"] == 1, wrong=lambda r: r["think_format_reward"] == 1
    )
    lines = verifier_log_lines(caplog)
    print("\n".join(lines))
    assert lines == [
        "DSDR: the verifier that decides which completions are correct (Eq. 10, 11, 15) is 'accuracy_reward' (named "
        "as a verifier), among the rewards ['think_format_reward', 'accuracy_reward']. Set "
        "DSDRConfig.correctness_reward to choose others."
    ]
    assert all(r["dsdr/verifier_nonbinary"] == 0 and r["dsdr/frac_unverified"] == 0 for r in trainer.state.log_history[:-1])


def test_a_penalty_reward_first_and_no_verifier_is_reported_loudly(tmp_path, caplog):
    """DAPO's soft overlong punishment (0 or negative) first, a format reward second: nothing checks the answer.
    DSDR warns at construction (a guessed verifier) and at the first step (never >= 1), and logs it every step."""
    from trl.rewards import get_soft_overlong_punishment

    overlong = get_soft_overlong_punishment(max_completion_len=16, soft_punish_cache=8)
    with caplog.at_level("WARNING", logger="dsdr_trl.trainer"):
        trainer, recorded = train_scripted(
            tmp_path, [overlong, boxed_format_reward], think_and_answer, dataset=conversational_dataset(),
            diversity_coef=0.0,
        )
    lines = verifier_log_lines(caplog)
    print("\n".join(lines))
    assert len(lines) == 2
    assert "so the first, 'soft_overlong_punishment_reward', decides which completions are correct" in lines[0]
    assert lines[1].startswith(
        "DSDR: the verifier does not give pass/fail rewards at correctness_threshold=1.0 on the batch of step 0: "
        "'soft_overlong_punishment_reward': not 0/1, values seen ["
    )
    assert "rows >= 1.0 (never met)" in lines[1] and "Set DSDRConfig.correctness_reward" in lines[1]
    records = trainer.state.log_history[:-1]
    assert [r["dsdr/verifier_threshold_never_met"] for r in records] == [1.0, 1.0]
    assert all(r["dsdr/verifier_nonbinary"] > 0 and r["dsdr/frac_correct"] == 0 for r in records)
    assert all((columns["soft_overlong_punishment_reward"] < 0).any() for columns in recorded)


def test_with_both_terms_off_a_non_pass_fail_verifier_is_only_in_the_metrics(tmp_path, caplog):
    """DSDRTrainer as GRPOTrainer (both coefficients 0): which rows are correct changes nothing, so no step warning;
    the metrics still show the verifier's values."""
    from trl.rewards import get_soft_overlong_punishment

    overlong = get_soft_overlong_punishment(max_completion_len=16, soft_punish_cache=8)
    with caplog.at_level("WARNING", logger="dsdr_trl.trainer"):
        trainer, _ = train_scripted(
            tmp_path, [overlong, boxed_format_reward], think_and_answer, dataset=conversational_dataset(),
            diversity_coef=0.0, local_entropy_coef=0.0,
        )
    assert not [line for line in verifier_log_lines(caplog) if "does not give pass/fail rewards" in line]
    records = trainer.state.log_history[:-1]
    assert [r["dsdr/verifier_threshold_never_met"] for r in records] == [1.0, 1.0]


# -- open-r1's [accuracy, format, tag_count] -------------------------------------------------------------------------


def test_open_r1_reward_list(tmp_path, minilm_path):
    # Stand-ins with open-r1's names and kinds of value: a 0/1 verifier, a 0/1 format check, quarters for the tags.
    def accuracy_reward(completions, solution, **kwargs):
        return [float(f"\\boxed{{{answer}}}" in completion_text(c)) for c, answer in zip(completions, solution)]

    def format_reward(completions, **kwargs):
        return [float(completion_text(c).startswith("<think>")) for c in completions]

    def tag_count_reward(completions, **kwargs):
        return [sum(0.25 for tag in ("<think>", "</think>") if tag in completion_text(c)) for c in completions]

    trainer, recorded = train_scripted(
        tmp_path, [accuracy_reward, format_reward, tag_count_reward], think_and_answer,
        dataset=conversational_dataset(solution=["4"] * 4), semantic_model=minilm_path,
        reward_weights=[1.0, 1.0, 1.0],
    )
    assert trainer.correctness_reward_indices == (0,)
    assert_correct_is(trainer, recorded, truth=lambda r: r["accuracy_reward"] == 1, wrong=lambda r: r["format_reward"] == 1)


# -- a dict of two environments --------------------------------------------------------------------------------------


class CountingEnvironment:
    """Owns its reward (`get_reward`): a fixed pattern over its rollouts, `solved_every`-th one solved."""

    solved_every = 1

    def __init_subclass__(cls):
        cls._rollouts = itertools.count()

    def reset(self, **kwargs) -> None:
        self._solved = next(self._rollouts) % self.solved_every == 0

    def get_reward(self) -> float:
        return float(self._solved)


class ArithmeticEnvironment(CountingEnvironment):
    solved_every = 2


class PuzzleEnvironment(CountingEnvironment):
    solved_every = 3


@pytest.fixture
def tool_calling_tokenizer():
    # Environments and tools need a chat template that renders tool calls: Qwen3's, which TRL ships.
    from trl.chat_template_utils import qwen3_chat_template

    tokenizer = build_tiny_model_and_tokenizer()[1]
    tokenizer.chat_template = qwen3_chat_template
    return tokenizer


def test_a_dict_of_two_environments(tmp_path, minilm_path, tool_calling_tokenizer, monkeypatch, caplog):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    environments = {"arithmetic": ArithmeticEnvironment, "puzzle": PuzzleEnvironment}
    with caplog.at_level("WARNING", logger="dsdr_trl.trainer"):
        trainer, recorded = train_scripted(
            tmp_path, None, think_and_answer, tokenizer=tool_calling_tokenizer, semantic_model=minilm_path,
            dataset=conversational_dataset(environment=["arithmetic", "puzzle", "arithmetic", "puzzle"]),
            trainer_kwargs={"environment_factory": environments},
        )
    lines = verifier_log_lines(caplog)
    print("\n".join(lines))
    assert len(lines) == 1 and "is 'ArithmeticEnvironment' (an environment's get_reward) and 'PuzzleEnvironment'" in lines[0]
    assert trainer.reward_func_names == ["ArithmeticEnvironment", "PuzzleEnvironment"]
    assert trainer.correctness_reward_indices == (0, 1)

    def either(r):  # each row is scored by its own environment only (NaN in the other column)
        return (r["ArithmeticEnvironment"] == 1) | (r["PuzzleEnvironment"] == 1)

    assert all(torch.isnan(r["ArithmeticEnvironment"]).sum() == 4 for r in recorded)
    assert_correct_is(trainer, recorded, truth=either, wrong=lambda r: r["ArithmeticEnvironment"] == 1)
    assert all(r["dsdr/frac_unverified"] == 0 for r in trainer.state.log_history[:-1])


# -- a tool-calling run with the local term on -----------------------------------------------------------------------


def multiply(a: int, b: int) -> int:
    """
    Multiplies two integers.

    Args:
        a: The first factor.
        b: The second factor.

    Returns:
        The product.
    """
    return a * b


def calls_the_tool(prompt: str, row: int) -> str:
    """Before the tool has answered: a direct guess, a call with the right factors, a call with the wrong ones.
    After: the tool's result, boxed."""
    result = re.findall(r"<tool_response>\s*(\S+?)\s*</tool_response>", prompt)
    if result:
        return f"So the product is $\\boxed{{{result[-1]}}}$."
    factors = [None, (3, 4), (3, 5)][row % 3]
    if factors is None:
        return "I think it is $\\boxed{7}$."
    call = f'{{"name": "multiply", "arguments": {{"a": {factors[0]}, "b": {factors[1]}}}}}'
    return f"<tool_call>\n{call}\n</tool_call>"


def test_a_tool_calling_run_with_the_local_term(tmp_path, minilm_path, tool_calling_tokenizer, monkeypatch):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    seen_tool_masks = []
    original = DSDRTrainer._compute_loss

    def compute_loss(self, model, inputs):
        seen_tool_masks.append(inputs.get("tool_mask"))
        return original(self, model, inputs)

    monkeypatch.setattr(DSDRTrainer, "_compute_loss", compute_loss)
    trainer, recorded = train_scripted(
        tmp_path, [boxed_format_reward, math_accuracy_reward], calls_the_tool, tokenizer=tool_calling_tokenizer,
        dataset=conversational_dataset(solution=["12"] * 4), semantic_model=minilm_path, local_entropy_coef=0.01,
        trainer_kwargs={"tools": [multiply]},
    )
    assert trainer.correctness_reward_indices == (1,)
    assert_correct_is(
        trainer, recorded, truth=lambda r: r["math_accuracy_reward"] == 1, wrong=lambda r: r["boxed_format_reward"] == 1
    )
    # The tools ran: tool output tokens are masked out of the policy loss and of the local term.
    assert seen_tool_masks and all(mask is not None and (mask == 0).any() for mask in seen_tool_masks)
    logged = trainer.state.log_history[:-1]
    assert all(r["tools/call_frequency"] > 0 for r in logged)
    assert all("dsdr/local_entropy/correct_mean" in r and "dsdr/coupling_entropy" in r for r in logged)
