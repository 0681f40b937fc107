"""Every equation of dsdr_trl.functional against values computed by hand."""

import math

import pytest
import torch

from dsdr_trl import functional as DF


def close(actual, expected, tol=1e-6):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=tol, rtol=tol)


# -- Eq. 4-6 ----------------------------------------------------------------------------------------------------------


def test_semantic_diversity_hand_computed_group_of_three():
    # e1 = x, e2 = y, e3 = -x (norms 2, 1, 3 to check Eq. 4's normalisation).
    # d(1,2) = (1-0)/2 = 0.5, d(1,3) = (1+1)/2 = 1, d(2,3) = 0.5 -> D = [0.75, 0.5, 0.75].
    embeddings = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-3.0, 0.0]])
    close(DF.semantic_diversity(embeddings, 3), [0.75, 0.5, 0.75])


def test_semantic_diversity_g2_and_groups_independent():
    # Group 1: 60 degrees apart -> d = (1 - 0.5) / 2 = 0.25 for both. Group 2: identical -> 0.
    embeddings = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.3, 0.4], [3.0, 4.0]])
    close(DF.semantic_diversity(embeddings, 2), [0.25, 0.25, 0.0, 0.0])


def test_semantic_diversity_identical_completions_is_zero():
    close(DF.semantic_diversity(torch.ones(4, 8), 4), [0.0] * 4)


def test_group_size_must_divide_rows_and_be_at_least_two():
    with pytest.raises(ValueError, match="groups of 3"):
        DF.semantic_diversity(torch.ones(4, 2), 3)
    with pytest.raises(ValueError, match=">= 2"):
        DF.formula_diversity([{"x"}], 1)


# -- Eq. 7-8 ----------------------------------------------------------------------------------------------------------


def test_formula_diversity_hand_computed():
    sets = [{"a", "b"}, {"b", "c", "d"}, set(), {"a"}]
    # o1: a shared with o4, b shared with o2 -> 0/2. o2: b shared, c and d unique -> 2/3. o3: empty -> 0.
    # o4: a shared -> 0.
    close(DF.formula_diversity(sets, 4), [0.0, 2 / 3, 0.0, 0.0])


def test_formula_diversity_counts_each_completion_once_and_groups_separately():
    # Within group 1, "x" appears in one completion only (a set cannot repeat it); group 2 reuses "x" freely.
    sets = [{"x", "y"}, {"y"}, {"x"}, {"x"}]
    close(DF.formula_diversity(sets, 2), [0.5, 0.0, 0.0, 0.0])


def test_formula_diversity_without_formulas_and_all_unique():
    close(DF.formula_diversity([set(), set()], 2), [0.0, 0.0])
    close(DF.formula_diversity([{"p"}, {"q", "r"}], 2), [1.0, 1.0])


# -- Eq. 9-10 ---------------------------------------------------------------------------------------------------------


def test_combine_diversity_plain_average_and_relative_weights():
    semantic, formula = torch.tensor([0.2, 0.6]), torch.tensor([1.0, 0.0])
    close(DF.combine_diversity(semantic, formula), [0.6, 0.3])
    close(DF.combine_diversity(semantic, formula, 3.0, 1.0), [0.4, 0.45])
    close(DF.combine_diversity(semantic, formula, 1.0, 0.0), [0.2, 0.6])
    with pytest.raises(ValueError):
        DF.combine_diversity(semantic, formula, 0.0, 0.0)


def test_augmented_rewards_bonus_on_correct_rows_only_and_clipped():
    rewards = torch.tensor([1.0, 0.0, 1.0, float("nan")])
    correct = torch.tensor([True, False, True, False])
    diversity = torch.tensor([0.5, 0.9, 0.8, 0.7])
    out = DF.augmented_rewards(rewards, correct, diversity, coef=0.1, clip=0.6)
    # 1 + 0.1 * 0.5; 0 unchanged; 1 + 0.1 * min(0.8, 0.6); NaN stays NaN.
    close(out[:3], [1.05, 0.0, 1.06])
    assert torch.isnan(out[3])


# -- Eq. 2 ------------------------------------------------------------------------------------------------------------


def test_group_advantages_hand_computed():
    # Group [1, 0, 1, 0]: mean 0.5, sample std sqrt(1/3) -> +-0.5 / (0.57735 + eps).
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    close(DF.group_advantages(rewards, 4), [a, -a, a, -a, 0, 0, 0, 0], tol=1e-5)


def test_group_advantages_scales():
    rewards = torch.tensor([1.0, 0.0, 3.0, 3.0])
    close(DF.group_advantages(rewards, 2, scale="none"), [0.5, -0.5, 0.0, 0.0])
    batch_std = torch.tensor([1.0, 0.0, 3.0, 3.0]).std().item()
    close(DF.group_advantages(rewards, 2, scale="batch", eps=1e-4), [0.5 / (batch_std + 1e-4), -0.5 / (batch_std + 1e-4), 0, 0])
    with pytest.raises(ValueError, match="scale"):
        DF.group_advantages(rewards, 2, scale="global")


def test_group_advantages_nan_rows_excluded_and_zeroed():
    # Row 2 is unscorable: the group mean/std use [1, 0, 0]; its own advantage is 0.
    rewards = torch.tensor([1.0, 0.0, float("nan"), 0.0])
    mean, std = 1 / 3, torch.tensor([1.0, 0.0, 0.0]).std().item()
    close(DF.group_advantages(rewards, 4), [(1 - mean) / (std + 1e-6), -mean / (std + 1e-6), 0.0, -mean / (std + 1e-6)], tol=1e-5)


def test_all_correct_group_gets_a_signal_only_through_the_bonus():
    rewards, correct = torch.ones(4), torch.ones(4, dtype=torch.bool)
    assert torch.all(DF.group_advantages(rewards, 4) == 0)
    diversity = torch.tensor([0.1, 0.2, 0.3, 0.4])
    advantages = DF.group_advantages(DF.augmented_rewards(rewards, correct, diversity, 0.001, 1.0), 4)
    # The bonus is 0.001 * d: std ~ 1.29e-4, so eps = 1e-6 leaves a clear, diversity-ranked signal.
    assert torch.all(advantages.diff() > 0)
    assert advantages.abs().max() > 1.0


def test_group_advantages_matches_trl_with_trl_epsilon():
    from trl.trainer.utils import nanstd

    torch.manual_seed(0)
    rewards = torch.rand(24)
    rewards[5] = float("nan")
    grouped = rewards.view(-1, 8)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(8)
    std = nanstd(grouped, dim=1).repeat_interleave(8)
    expected = torch.nan_to_num((rewards - mean) / (std + 1e-4), nan=0.0)
    assert torch.equal(DF.group_advantages(rewards, 8, eps=1e-4), expected)


def test_groups_of_one_get_zero_advantage_and_full_weight_when_correct():
    # Evaluation with num_generations_eval=1: nothing to be relative to (GRPOTrainer gives 0 too); |P| = 1 -> w = 1.
    rewards = torch.tensor([1.0, 0.0, 0.5])
    for scale in ("group", "batch", "none"):
        close(DF.group_advantages(rewards, 1, scale=scale), [0.0, 0.0, 0.0])
    close(DF.coupling_weights(torch.tensor([0.3, 0.9, 0.1]), torch.tensor([True, False, True]), 1, 5.0), [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=">= 2"):
        DF.semantic_diversity(torch.ones(3, 2), 1)


def test_normalized_sum_advantages_hand_computed():
    # Two groups of 2, two rewards with weights [1, 0.5].
    # Column 0: group 1 [1, 0] -> mean 0.5, sample std sqrt(0.5) -> +-0.5/sqrt(0.5) = +-sqrt(0.5);
    #           group 2 [1, 1] -> 0, 0.
    # Column 1: group 1 [0.2, 0.2] -> 0, 0; group 2 [0.0, 0.4] -> -+sqrt(0.5).
    # Weighted sums s = [sqrt(.5), -sqrt(.5), -0.5 sqrt(.5), 0.5 sqrt(.5)]: mean 0, sample std sqrt(5/12).
    rewards = torch.tensor([[1.0, 0.2], [0.0, 0.2], [1.0, 0.0], [1.0, 0.4]], dtype=torch.float64)
    h = math.sqrt(0.5)
    summed = torch.tensor([h, -h, -0.5 * h, 0.5 * h], dtype=torch.float64)
    expected = summed / math.sqrt(5 / 12)
    close(DF.normalized_sum_advantages(rewards, torch.tensor([1.0, 0.5], dtype=torch.float64), 2, eps=0.0), expected)


def test_normalized_sum_advantages_nan_entries_and_unscorable_rows():
    # Row 1 has no first reward (None): column 0 of group 1 is just [1.0] -> std NaN -> that entry drops out of the
    # sum; row 3 has no reward at all -> advantage 0, left out of the batch normalisation.
    nan = float("nan")
    rewards = torch.tensor([[1.0, 0.0], [nan, 1.0], [0.0, 1.0], [nan, nan]])
    advantages = DF.normalized_sum_advantages(rewards, torch.ones(2), 2, eps=1e-6)
    assert torch.isfinite(advantages).all() and advantages[3] == 0
    # Column 1 of group 1 is [0, 1] -> [-a, +a]; row 2's group has one scorable row -> its sum is 0 (NaN std).
    a = 0.5 / (math.sqrt(0.5) + 1e-6)
    summed = torch.tensor([-a, a, 0.0])
    close(advantages[:3], (summed - summed.mean()) / (summed.std() + 1e-6), tol=1e-5)


def test_normalized_sum_advantages_matches_trl_with_trl_epsilon():
    from trl.trainer.utils import nanstd

    torch.manual_seed(1)
    rewards, weights = torch.rand(24, 3), torch.tensor([1.0, 0.5, 2.0])
    rewards[3, 1] = rewards[9] = float("nan")
    grouped = rewards.view(-1, 8, 3)
    per_func = ((grouped - torch.nanmean(grouped, dim=1, keepdim=True)) / (nanstd(grouped, dim=1, keepdim=True) + 1e-4))
    summed = (per_func.view(-1, 3) * weights).nansum(dim=1)
    summed[9] = float("nan")
    expected = torch.nan_to_num((summed - torch.nanmean(summed)) / (nanstd(summed) + 1e-4), nan=0.0)
    assert torch.equal(DF.normalized_sum_advantages(rewards, weights, 8, eps=1e-4), expected)


def test_bonus_on_the_verifier_column_keeps_the_all_correct_signal_under_normalize_then_sum():
    # An all-correct group with a constant format reward: only the bonus on the verifier column ranks the rows.
    verifier, correct = torch.ones(4), torch.ones(4, dtype=torch.bool)
    diversity = torch.tensor([0.4, 0.1, 0.3, 0.2])
    columns = torch.stack([DF.augmented_rewards(verifier, correct, diversity, 0.001, 1.0), torch.full((4,), 0.5)], 1)
    advantages = DF.normalized_sum_advantages(columns, torch.ones(2), 4)
    assert advantages.argsort().tolist() == diversity.argsort().tolist()
    assert advantages.abs().max() > 1.0


# -- Eq. 11 -----------------------------------------------------------------------------------------------------------


def test_coupling_weights_hand_computed():
    diversity = torch.tensor([0.2, 0.4, 0.9, 0.0])
    correct = torch.tensor([True, True, False, True])
    # Softmax of 5 * [0.2, 0.4, 0.0] over P = {0, 1, 3}: exp(1), exp(2), exp(0) over their sum.
    z = math.e + math.e**2 + 1
    close(DF.coupling_weights(diversity, correct, 4, 5.0), [math.e / z, math.e**2 / z, 0.0, 1 / z])


def test_coupling_weights_edge_groups():
    diversity = torch.tensor([0.3, 0.7, 0.3, 0.7, 0.3, 0.7])
    correct = torch.tensor([False, False, True, False, True, True])
    # Group 1: no correct row -> zeros. Group 2: one correct -> 1. Group 3: uniform with tau = 0.
    close(DF.coupling_weights(diversity, correct, 2, 0.0), [0.0, 0.0, 1.0, 0.0, 0.5, 0.5])
    with pytest.raises(ValueError):
        DF.coupling_weights(diversity, correct, 2, -1.0)


# -- Eq. 14-15 --------------------------------------------------------------------------------------------------------


def test_local_entropy_objective_hand_computed():
    logps = torch.log(torch.tensor([[0.5, 0.25, 0.9], [0.2, 0.2, 0.2]]))
    old = torch.log(torch.tensor([[0.25, 0.25, 0.1], [0.4, 0.2, 0.2]]))
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    weights = torch.tensor([0.5, 2.0])
    # Row 0: T = 2, rho = [2, 1] -> 0.5 * (2 * ln 2 + 1 * ln 4) / 2. Row 1: rho = [0.5, 1, 1] -> 2 * (0.5 + 2) ln 5 / 3.
    expected = [0.5 * (2 * math.log(2) + math.log(4)) / 2, 2.0 * 2.5 * math.log(5) / 3]
    close(DF.local_entropy_objective(logps, old, mask, weights), expected, tol=1e-5)
    ratio = torch.tensor([[0.5], [1.0]])
    close(DF.local_entropy_objective(logps, old, mask, weights, ratio), [expected[0] / 2, expected[1]], tol=1e-5)


def test_local_entropy_objective_ignores_masked_garbage():
    logps = torch.tensor([[-1.0, float("-inf")]], requires_grad=True)
    out = DF.local_entropy_objective(logps, logps.detach(), torch.tensor([[1, 0]]), torch.tensor([1.0]))
    out.sum().backward()
    close(out.detach(), [1.0])
    assert torch.isfinite(logps.grad).all()


def test_local_surrogate_gradient_is_minus_entropy_gradient():
    """E_{a ~ pi_old}[grad(rho(a) * log pi(a))] = -grad H(pi_theta), enumerated exactly over a vocabulary of 6."""
    torch.manual_seed(0)
    logits = torch.randn(6, dtype=torch.float64, requires_grad=True)
    old_probs = torch.softmax(torch.randn(6, dtype=torch.float64), -1)
    logps = torch.log_softmax(logits, -1)

    # The objective for each possible sampled token a (one sequence of length 1 each), weights 1.
    per_action = DF.local_entropy_objective(
        logps.unsqueeze(1), old_probs.log().unsqueeze(1), torch.ones(6, 1), torch.ones(6, dtype=torch.float64)
    )
    (surrogate_grad,) = torch.autograd.grad((old_probs * per_action).sum(), logits, retain_graph=True)

    entropy = -(logps.exp() * logps).sum()
    (entropy_grad,) = torch.autograd.grad(entropy, logits)
    # The objective is -rho log pi, so its expected gradient is +grad H.
    torch.testing.assert_close(surrogate_grad, entropy_grad, atol=1e-12, rtol=1e-10)
