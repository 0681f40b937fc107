"""The equations of DSDR (arXiv 2602.19895) as pure tensor functions.

No TRL, no I/O, no state. Shapes: N rows of a generation batch, laid out as N / G groups of G consecutive rows
(the layout of TRL's sampler); B rows and T completion tokens in a micro-batch.
"""

from __future__ import annotations

from collections import Counter
from itertools import chain
from collections.abc import Sequence, Set
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "semantic_diversity",
    "formula_diversity",
    "combine_diversity",
    "clip_diversity",
    "augmented_rewards",
    "group_advantages",
    "normalized_sum_advantages",
    "coupling_weights",
    "local_entropy_objective",
]


def _num_groups(num_rows: int, group_size: int, minimum: int = 2) -> int:
    if group_size < minimum:
        raise ValueError(
            f"group_size must be >= {minimum} to compare a completion with the rest of its group, got {group_size}."
        )
    if num_rows % group_size:
        raise ValueError(f"{num_rows} rows do not split into groups of {group_size} consecutive rows.")
    return num_rows // group_size


def semantic_diversity(embeddings: torch.Tensor, group_size: int) -> torch.Tensor:
    """Semantic diversity D_emb of every completion within its group (Eq. 4-6).

    zbar_i = z_i / ||z_i||, d_emb(i, j) = (1 - zbar_i . zbar_j) / 2, D_emb(i) = mean over j != i of d_emb(i, j),
    over the whole group (correct or not). One (G, G) similarity matrix per group, never a (G, G, D) tensor.

    Args:
        embeddings: (N, D) sentence embeddings, groups of `group_size` consecutive rows.
        group_size: G >= 2.

    Returns:
        (N,) float tensor in [0, 1].
    """
    num_groups = _num_groups(embeddings.size(0), group_size)
    unit = F.normalize(embeddings.float(), dim=-1).view(num_groups, group_size, -1)
    distances = (1.0 - unit @ unit.transpose(1, 2)) / 2.0  # (M, G, G)
    off_diagonal_sum = distances.sum(-1) - distances.diagonal(dim1=1, dim2=2)
    return (off_diagonal_sum / (group_size - 1)).clamp(0.0, 1.0).reshape(-1)


def formula_diversity(formula_sets: Sequence[Set[str]], group_size: int) -> torch.Tensor:
    """Formula-level uniqueness D_eq of every completion within its group (Eq. 7-8).

    A formula of S(o_i) is unique when no other completion of the group uses it (Eq. 7); D_eq(o_i) is the fraction
    of S(o_i) that is unique, and 0 when S(o_i) is empty (Eq. 8). Linear in the total number of formulas.

    Args:
        formula_sets: N sets of (normalised) formula strings, groups of `group_size` consecutive rows.
        group_size: G >= 2.

    Returns:
        (N,) float32 tensor in [0, 1].
    """
    num_groups = _num_groups(len(formula_sets), group_size)
    scores = []
    for g in range(num_groups):
        group = formula_sets[g * group_size : (g + 1) * group_size]
        users = Counter(chain.from_iterable(group))
        shared = {formula for formula, count in users.items() if count > 1}
        scores.extend(len(formulas - shared) / len(formulas) if formulas else 0.0 for formulas in group)
    return torch.tensor(scores, dtype=torch.float32)


def combine_diversity(
    semantic: torch.Tensor, formula: torch.Tensor, semantic_weight: float = 0.5, formula_weight: float = 0.5
) -> torch.Tensor:
    """Combined diversity d_i (Eq. 9): the weighted mean of D_emb and D_eq.

    The weights are relative (divided by their sum), so d stays in [0, 1]; the paper's 0.5 / 0.5 is a plain average.

    Args:
        semantic: (N,) D_emb.
        formula: (N,) D_eq, on the same device.
        semantic_weight, formula_weight: >= 0, not both 0.

    Returns:
        (N,) float tensor in [0, 1].
    """
    total = semantic_weight + formula_weight
    if semantic_weight < 0 or formula_weight < 0 or total <= 0:
        raise ValueError(f"weights must be >= 0 and not both 0, got {semantic_weight} and {formula_weight}.")
    return (semantic_weight * semantic.float() + formula_weight * formula.float()) / total


def clip_diversity(diversity: torch.Tensor, clip: float) -> torch.Tensor:
    """dbar_i = clip(d_i, 0, sigma_d) (Eq. 10). (N,) -> (N,)."""
    return diversity.clamp(0.0, clip)


def augmented_rewards(
    rewards: torch.Tensor, correct: torch.Tensor, diversity: torch.Tensor, coef: float, clip: float
) -> torch.Tensor:
    """Correct-only clipped diversity bonus (Eq. 10): rtilde_i = r_i + lambda_d * clip(d_i, 0, sigma_d) * 1[r_i = 1].

    Args:
        rewards: (N,) rewards r_i; NaN marks an unscorable row and stays NaN.
        correct: (N,) bool, 1[i in P]. Must be False where `rewards` is NaN.
        diversity: (N,) d_i.
        coef: lambda_d >= 0.
        clip: sigma_d > 0.

    Returns:
        (N,) rtilde, the dtype of `rewards`.
    """
    bonus = coef * clip_diversity(diversity, clip).to(rewards.dtype)
    return rewards + torch.where(correct, bonus, torch.zeros_like(bonus))


def _nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    # Sample standard deviation (Bessel's correction) ignoring NaN, as GRPOTrainer computes it.
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    variance = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(x), dim=dim, keepdim=True)
    correction = torch.where(count > 1, count / (count - 1), torch.full_like(variance, float("nan")))
    std = torch.sqrt(variance * correction)
    return std.squeeze(dim) if dim is not None else std.reshape(())


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    scale: Literal["group", "batch", "none"] = "group",
    eps: float = 1e-6,
) -> torch.Tensor:
    """Group-relative advantages (Eq. 2): A_i = (r_i - mean_group(r)) / (std(r) + eps).

    NaN rewards (unscorable rows) are left out of the group mean and std and get advantage 0. `scale` follows TRL's
    `scale_rewards`: "group" divides by the group's std, "batch" by the std of the whole batch, "none" not at all.
    With `eps=1e-4` this is exactly GRPOTrainer's computation. A group of one row (evaluation with
    `num_generations_eval=1`) has nothing to be relative to: its advantage is 0, as in GRPOTrainer.

    Args:
        rewards: (N,) rewards (rtilde for DSDR), groups of `group_size` consecutive rows.
        group_size: G >= 1.
        scale: "group", "batch" or "none".
        eps: eps > 0.

    Returns:
        (N,) advantages, finite.
    """
    num_groups = _num_groups(rewards.numel(), group_size, minimum=1)
    grouped = rewards.view(num_groups, group_size)
    centred = grouped - torch.nanmean(grouped, dim=1, keepdim=True)
    if scale == "group":
        advantages = centred / (_nanstd(grouped, dim=1).unsqueeze(1) + eps)
    elif scale == "batch":
        advantages = centred / (_nanstd(rewards) + eps)
    elif scale == "none":
        advantages = centred
    else:
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}.")
    return torch.nan_to_num(advantages.reshape(-1), nan=0.0)


def normalized_sum_advantages(
    rewards_per_func: torch.Tensor, reward_weights: torch.Tensor, group_size: int, eps: float = 1e-6
) -> torch.Tensor:
    """Advantages for several rewards normalised one by one (TRL's `multi_objective_aggregation="normalize_then_sum"`).

    Each reward column k gets Eq. 2 within the group, (r_k - mean_group(r_k)) / (std_group(r_k) + eps); the
    normalised columns are summed with their weights, and the sum is normalised once more over the whole batch. NaN
    entries (a reward function that returned None) are left out of every mean, std and sum; a row with no reward at
    all gets advantage 0. DSDR's bonus (Eq. 10) enters as part of the verifier's column, before its normalisation, so
    an all-correct group keeps its diversity-ranked signal. With `eps=1e-4` this is exactly GRPOTrainer's computation.

    Args:
        rewards_per_func: (N, K) rewards, one column per reward function, groups of `group_size` consecutive rows.
        reward_weights: (K,) weights of the reward functions.
        group_size: G >= 1.
        eps: eps > 0.

    Returns:
        (N,) advantages, finite.
    """
    num_groups = _num_groups(rewards_per_func.size(0), group_size, minimum=1)
    # Not group_advantages column by column: reducing over the (M, G, K) layout, as TRL does, keeps eps=1e-4
    # bit-identical to GRPOTrainer (a per-column reduction rounds differently).
    grouped = rewards_per_func.view(num_groups, group_size, -1)
    spread = _nanstd(grouped, dim=1).unsqueeze(1) if group_size > 1 else torch.zeros_like(grouped[:, :1])
    normalised = ((grouped - torch.nanmean(grouped, dim=1, keepdim=True)) / (spread + eps)).view_as(rewards_per_func)
    summed = (normalised * reward_weights.to(normalised).unsqueeze(0)).nansum(dim=1)
    summed[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    spread = _nanstd(summed) if summed.numel() > 1 else summed.new_zeros(())
    return torch.nan_to_num((summed - torch.nanmean(summed)) / (spread + eps), nan=0.0)


def coupling_weights(
    diversity: torch.Tensor, correct: torch.Tensor, group_size: int, temperature: float
) -> torch.Tensor:
    """Global-to-local coupling weights (Eq. 11): w_i = softmax over P of (tau * dbar_i), 0 outside P.

    `temperature` 0 gives uniform weights 1/|P| (the tau -> 0 limit). Every group with at least one correct row sums
    to 1; a group without one is all zeros. A group of one row gives weight 1 to that row if it is correct.

    Args:
        diversity: (N,) dbar_i, the clipped diversity.
        correct: (N,) bool, 1[i in P].
        group_size: G >= 1.
        temperature: tau >= 0.

    Returns:
        (N,) float32 weights in [0, 1].
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}.")
    num_groups = _num_groups(diversity.numel(), group_size, minimum=1)
    logits = (temperature * diversity.float()).view(num_groups, group_size)
    logits = logits.masked_fill(~correct.view(num_groups, group_size), float("-inf"))
    weights = torch.softmax(logits, dim=1)  # a group with no correct row is all -inf -> NaN
    return torch.nan_to_num(weights, nan=0.0).reshape(-1)


def local_entropy_objective(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor,
    importance_sampling_ratio: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sequence local entropy objective (Eq. 14-15): w_i * (1/T_i) * sum_t rho_it * (-log pi_theta(o_it)).

    rho_it = pi_theta / pi_old on the sampled token (Eq. 14) is NOT detached: the gradient of rho * log pi, in
    expectation over tokens drawn from pi_old, is minus the gradient of the entropy of pi_theta, so this is an
    unbiased surrogate of the entropy without a full-vocabulary pass. T_i is the number of unmasked tokens of row i.
    The indicator 1[r_i = 1] of Eq. 15 is carried by `weights` (zero outside P).

    Args:
        per_token_logps: (B, T) log pi_theta of the sampled tokens, with gradient.
        old_per_token_logps: (B, T) log pi_old of the same tokens (no gradient is taken through them).
        mask: (B, T) 1 for completion tokens that count, 0 for padding (and tool output).
        weights: (B,) coupling weights w_i, zero for incorrect rows.
        importance_sampling_ratio: optional (B, T) or (B, 1) correction for sampling with another engine (vLLM),
            applied per token as in the policy loss.

    Returns:
        (B,) per-sequence values; the mean over groups of their group sums is J_local.
    """
    mask = mask.bool()
    # Mask the inputs, not just the product: padding may hold -inf log-probs, whose gradient would be NaN.
    logps = per_token_logps.masked_fill(~mask, 0.0)
    old_logps = old_per_token_logps.detach().masked_fill(~mask, 0.0)
    per_token = torch.exp(logps - old_logps) * -logps
    if importance_sampling_ratio is not None:
        # vLLM marks tokens it could not score with NaN; they are masked, but NaN * 0 would still poison the gradient.
        per_token = per_token * torch.nan_to_num(importance_sampling_ratio, nan=0.0)
    per_token = per_token.masked_fill(~mask, 0.0)
    lengths = mask.sum(-1).clamp(min=1)
    return weights.to(per_token.dtype) * per_token.sum(-1) / lengths
