"""The verifier rule (which rewards decide correctness) on lists of reward names, and the checks of their values."""

from __future__ import annotations

import math

import pytest
import torch

from dsdr_trl.verifier import check_verifiers, correct_rows, names_a_verifier, resolve_verifiers, verifier_metrics

NAN = math.nan


@pytest.mark.parametrize(
    "names, expected",
    [
        # TRL's examples put the format reward first (grpo_vlm.py, rloo.py): the order must not matter.
        (["think_format_reward", "accuracy_reward"], (1,)),
        (["accuracy_reward", "think_format_reward"], (0,)),
        (["think_format_reward", "reasoning_accuracy_reward"], (1,)),
        (["boxed_format_reward", "math_accuracy_reward"], (1,)),
        # open-r1's usual list.
        (["accuracy_reward", "format_reward", "tag_count_reward"], (0,)),
        # Multi-task: every verifier, each on its own rows.
        (["format_reward", "math_accuracy_reward", "unit_tests_pass"], (1, 2)),
        (["length_reward", "isCorrect", "ExactMatch", "answer_equivalence", "verifier_score"], (1, 2, 3, 4)),
        # No verifier among several: the first (announced as a guess); alone: the only one.
        (["format_reward", "soft_overlong_punishment_reward"], (0,)),
        (["soft_overlong_punishment_reward"], (0,)),
    ],
)
def test_default_verifiers_from_the_names(names, expected):
    choice = resolve_verifiers(None, names, environment_columns=())
    assert choice.indices == expected
    assert choice.guessed == (names == ["format_reward", "soft_overlong_punishment_reward"])


@pytest.mark.parametrize(
    "name", ["incorrect_penalty", "passage_overlap", "format_reward", "tag_count_reward", "cosine_scaled_reward", "<lambda>"]
)
def test_names_that_are_not_verifiers(name):
    assert not names_a_verifier(name)


def test_environment_rewards_are_verifiers_beside_functions():
    # TRL appends the environments' get_reward columns after the reward functions.
    names = ["format_reward", "MathEnv", "CodeEnv"]
    assert resolve_verifiers(None, names, environment_columns=range(1, 3)).indices == (1, 2)
    choice = resolve_verifiers(None, ["accuracy_reward", "GameEnv"], environment_columns=[1])
    assert choice.indices == (0, 1)
    assert choice.reason == "'accuracy_reward' (named as a verifier) and 'GameEnv' (an environment's get_reward)"


def test_an_explicit_setting_wins_and_may_list_several():
    names = ["format_reward", "accuracy_reward", "MathEnv"]
    assert resolve_verifiers("format_reward", names, [2]).indices == (0,)
    assert resolve_verifiers("2,accuracy_reward", names, [2]).indices == (2, 1)
    assert resolve_verifiers("1, accuracy_reward", names, [2]).indices == (1,)
    assert resolve_verifiers("0", names, [2]).reason == "set by DSDRConfig.correctness_reward"


@pytest.mark.parametrize(
    "setting, message",
    [
        ("accuracy", "neither the name of a reward source"),
        ("3", r"index in 0..2"),
        ("-1", "neither the name"),
        ("<lambda>", r"indices \[1, 2\].*give the index"),
    ],
)
def test_a_bad_setting_names_the_rewards(setting, message):
    with pytest.raises(ValueError, match=message):
        resolve_verifiers(setting, ["accuracy_reward", "<lambda>", "<lambda>"], ())


def test_correct_rows_any_applicable_verifier_reaches_the_threshold():
    rewards = torch.tensor([[1.0, NAN], [0.0, NAN], [NAN, 1.0], [NAN, 0.0], [NAN, NAN], [0.0, 1.0]])
    assert correct_rows(rewards, 1.0).tolist() == [True, False, True, False, False, True]


def test_a_pass_fail_verifier_raises_nothing():
    rewards = torch.tensor([[1.0], [0.0], [0.0], [NAN]])
    (check,) = check_verifiers(rewards, 1.0)
    assert check.problem() is None and not check.never_met and not check.always_met
    assert verifier_metrics([check], rewards) == {
        "dsdr/frac_unverified": 0.25,
        "dsdr/verifier_nonbinary": 0.0,
        "dsdr/verifier_threshold_never_met": 0.0,
        "dsdr/verifier_threshold_always_met": 0.0,
    }
    # All wrong on one batch is a hard batch, not a broken verifier.
    assert check_verifiers(torch.zeros(4, 1), 1.0)[0].problem() is None


def test_a_penalty_verifier_never_meets_the_threshold():
    # get_soft_overlong_punishment: 0 or negative, never 1.
    rewards = torch.tensor([[0.0], [-0.5], [-1.0], [0.0]])
    (check,) = check_verifiers(rewards, 1.0)
    assert check.never_met and not check.always_met
    assert check.problem() == "not 0/1, values seen [-1.0, -0.5, 0.0]; 0 of 4 rows >= 1.0 (never met)"
    metrics = verifier_metrics([check], rewards)
    assert metrics["dsdr/verifier_nonbinary"] == 0.5 and metrics["dsdr/verifier_threshold_never_met"] == 1.0


def test_a_continuous_verifier_always_meeting_a_low_threshold():
    rewards = torch.tensor([[0.25], [0.5], [0.75], [1.0]])
    (check,) = check_verifiers(rewards, 0.2)
    assert check.always_met and "4 of 4 rows >= 0.2 (always met)" in check.problem()


def test_a_binary_verifier_with_a_threshold_above_one_is_never_met():
    (check,) = check_verifiers(torch.tensor([[1.0], [0.0]]), 1.5)
    assert check.never_met and check.problem() == "0/1, values seen [0.0, 1.0]; 0 of 2 rows >= 1.5 (never met)"


def test_many_distinct_values_are_summarised():
    (check,) = check_verifiers(torch.linspace(0.0, 0.9, 10).unsqueeze(1), 0.5)
    assert check.problem().startswith("not 0/1, values seen 10 distinct values in [0.0, 0.9]; 5 of 10 rows")


def test_metrics_over_several_verifiers_count_the_columns_that_apply():
    rewards = torch.tensor([[1.0, NAN, NAN], [0.0, NAN, NAN], [NAN, 0.5, NAN], [NAN, NAN, NAN]])
    checks = check_verifiers(rewards, 1.0)
    metrics = verifier_metrics(checks, rewards)
    assert metrics["dsdr/frac_unverified"] == 0.25
    assert metrics["dsdr/verifier_nonbinary"] == pytest.approx(1 / 3)
    assert metrics["dsdr/verifier_threshold_never_met"] == 0.5  # the second of the two columns that apply
