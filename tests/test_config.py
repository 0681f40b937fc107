"""DSDRConfig: every bad setting fails at construction with a message naming the field and what it accepts; the
collapse warning; a round trip through the saved JSON keeps every DSDR field.

(Unknown / missing correctness_reward and an unloadable encoder through the trainer: tests/test_trainer.py.)
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest

from dsdr_trl import DSDRConfig
from dsdr_trl.config import LOCAL_ENTROPY_COEF_COLLAPSE
from trl import GRPOConfig


def config(tmp_path, **overrides) -> DSDRConfig:
    settings = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True, per_device_train_batch_size=4, num_generations=4)
    settings.update(overrides)
    return DSDRConfig(**settings)


DSDR_FIELDS = [f.name for f in dataclasses.fields(DSDRConfig) if f.name not in {g.name for g in dataclasses.fields(GRPOConfig)}]

INF, NAN = float("inf"), float("nan")
NON_NEGATIVE = "a finite number >= 0"
POSITIVE = "a finite number > 0"


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("diversity_coef", -0.001, NON_NEGATIVE),
        ("diversity_coef", NAN, NON_NEGATIVE),
        ("diversity_coef", INF, NON_NEGATIVE),
        ("local_entropy_coef", -1e-9, NON_NEGATIVE),
        ("local_entropy_coef", NAN, NON_NEGATIVE),
        ("semantic_weight", -0.5, NON_NEGATIVE),
        ("formula_weight", -0.5, NON_NEGATIVE),
        ("coupling_temperature", 0.0, POSITIVE),
        ("coupling_temperature", -5.0, POSITIVE),
        ("coupling_temperature", INF, POSITIVE),
        ("diversity_clip", 0.0, POSITIVE),
        ("diversity_clip", -1.0, POSITIVE),
        ("advantage_epsilon", 0.0, POSITIVE),
        ("correctness_threshold", NAN, POSITIVE),
        ("correctness_threshold", 0.0, POSITIVE),
        ("correctness_threshold", -1.0, POSITIVE),
        ("correctness_reward", "accuracy,,format", "reward names or indices"),
        ("correctness_reward", [], "reward names or indices"),
        ("correctness_reward", 1.5, "reward names or indices"),
        ("coupling", "softmax2", "one of 'softmax', 'uniform'"),
        ("coupling", "", "one of 'softmax', 'uniform'"),
        ("formula_identity", "exact", "one of 'normalized', 'sympy'"),
        ("semantic_batch_size", 0, "an integer >= 1"),
    ],
)
def test_bad_values_name_the_field_and_the_allowed_range(tmp_path, field, value, allowed):
    with pytest.raises(ValueError) as error:
        config(tmp_path, **{field: value})
    message = str(error.value)
    assert f"DSDRConfig: {field} must be {allowed}" in message, message
    assert repr(value) in message or str(value) in message, message


def test_both_component_weights_zero_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"semantic_weight and formula_weight are both 0.*at least one of them a value > 0"):
        config(tmp_path, semantic_weight=0.0, formula_weight=0.0)
    # One of them alone is a valid score (only the semantic or only the formula component).
    assert config(tmp_path, semantic_weight=0.0, formula_weight=1.0).formula_weight == 1.0
    assert config(tmp_path, semantic_weight=1.0, formula_weight=0.0).semantic_weight == 1.0


@pytest.mark.parametrize("value", [1, 0, -2])
def test_training_groups_smaller_than_two_are_refused_naming_the_field(tmp_path, value):
    # num_generations 0 / 1 failed in GRPOConfig with ZeroDivisionError / a message without the field name.
    with pytest.raises(ValueError, match=rf"DSDRConfig: num_generations must be >= 2, got {value}"):
        config(tmp_path, num_generations=value)


def test_evaluation_with_one_sample_per_prompt_is_accepted(tmp_path):
    # As GRPOConfig accepts it; the trainer evaluates such groups without diversity scoring (tests/test_grpo_compat.py).
    assert config(tmp_path, num_generations_eval=1, per_device_eval_batch_size=2).num_generations_eval == 1


@pytest.mark.parametrize("value", [LOCAL_ENTROPY_COEF_COLLAPSE * 1.01, 0.05, 1.0])
def test_local_coefficient_above_the_collapse_threshold_warns(tmp_path, value):
    with pytest.warns(UserWarning, match=r"local_entropy_coef=.* above 0.01.*collapse"):
        args = config(tmp_path, local_entropy_coef=value)
    assert args.local_entropy_coef == value  # a warning, not an error: the setting is kept


@pytest.mark.parametrize("value", [0.0, 0.001, LOCAL_ENTROPY_COEF_COLLAPSE])
def test_local_coefficient_up_to_the_threshold_is_silent(tmp_path, value):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*local_entropy_coef.*")
        config(tmp_path, local_entropy_coef=value)


def test_correctness_reward_from_python_or_the_cli_becomes_a_comma_separated_string(tmp_path):
    assert config(tmp_path, correctness_reward=1).correctness_reward == "1"
    assert config(tmp_path, correctness_reward=["accuracy_reward", 2]).correctness_reward == "accuracy_reward,2"
    assert config(tmp_path, correctness_reward="MathEnv, CodeEnv").correctness_reward == "MathEnv,CodeEnv"


def non_default_dsdr_settings() -> dict:
    return dict(
        diversity_coef=0.01,
        diversity_clip=0.8,
        semantic_model="/models/some-encoder",
        semantic_weight=0.25,
        formula_weight=0.75,
        formula_identity="sympy",
        semantic_truncate=True,
        semantic_batch_size=7,
        semantic_max_windows=9,
        coupling="uniform",
        coupling_temperature=10.0,
        local_entropy_coef=0.002,
        correctness_reward="accuracy",
        correctness_threshold=0.5,
        advantage_epsilon=1e-4,
        log_diversity=True,
    )


def test_every_dsdr_field_is_covered_by_the_round_trip():
    assert set(non_default_dsdr_settings()) == set(DSDR_FIELDS)


def test_round_trip_through_saved_json_keeps_every_dsdr_field(tmp_path):
    original = config(tmp_path, **non_default_dsdr_settings())
    saved = json.loads(original.to_json_string())
    defaults = config(tmp_path)
    for name, value in non_default_dsdr_settings().items():
        assert saved[name] == value, name
        assert getattr(defaults, name) != value, f"{name}: the test value is the default, the round trip proves nothing"
    restored = DSDRConfig(**saved)
    for name in DSDR_FIELDS:
        assert getattr(restored, name) == getattr(original, name), name
    assert (restored.num_generations, restored.generation_batch_size) == (4, original.generation_batch_size)


def test_round_trip_of_the_raw_dict(tmp_path):
    original = config(tmp_path, **non_default_dsdr_settings())
    restored = DSDRConfig(**original.to_dict())
    assert {n: getattr(restored, n) for n in DSDR_FIELDS} == {n: getattr(original, n) for n in DSDR_FIELDS}


def test_every_dsdr_field_has_help_text():
    for field in dataclasses.fields(DSDRConfig):
        if field.name in DSDR_FIELDS:
            assert field.metadata.get("help"), field.name


def test_unloadable_encoder_says_which_setting_and_how_to_run_offline(tmp_path):
    from dsdr_trl.scorer import DiversityScorer

    missing = str(tmp_path / "no-such-encoder")
    with pytest.raises(OSError) as error:
        DiversityScorer.from_config(config(tmp_path, semantic_model=missing))
    message = str(error.value)
    for part in (f"semantic_model={missing!r}", "Set DSDRConfig.semantic_model", "HF_HUB_OFFLINE=1", "get_model_path()"):
        assert part in message, (part, message)


def test_inconsistent_generation_batch_and_steps_are_refused(tmp_path):
    with pytest.raises(ValueError, match="set only one of the two"):
        config(tmp_path, generation_batch_size=16, steps_per_generation=3)
