"""Property-based tests of dsdr_trl.functional and DiversityScorer.score over random groups (hypothesis).

Invariants: scores in [0, 1]; the bonus in [0, lambda_d * sigma_d] and only on correct rows; coupling weights a
distribution over the correct rows of each group; every group-level result equivariant to permuting rows inside a
group and independent of the other groups' content.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsdr_trl import functional as DF
from dsdr_trl.scorer import DiversityScorer

PROPERTY_SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAN = float("nan")
FORMULAS = ["x", "y", "x+1", "\\frac{1}{2}", "a^2", "z"]


@st.composite
def batches(draw):
    """A generation batch: M groups of G rows with rewards (NaN = unscorable), embeddings, formula sets, raw
    diversity (also outside [0, 1], to exercise the clip), and one permutation of rows inside each group."""
    group_size = draw(st.integers(2, 6))
    num_groups = draw(st.integers(1, 4))
    n = group_size * num_groups
    dim = draw(st.integers(1, 6))
    rewards = draw(st.lists(st.sampled_from([0.0, 1.0, 0.5, 2.0, NAN]), min_size=n, max_size=n))
    values = st.floats(-100, 100, allow_nan=False, width=32)
    embeddings = draw(st.lists(st.lists(values, min_size=dim, max_size=dim), min_size=n, max_size=n))
    formula_sets = draw(st.lists(st.frozensets(st.sampled_from(FORMULAS), max_size=4), min_size=n, max_size=n))
    diversity = draw(st.lists(st.floats(-0.5, 1.5, width=32), min_size=n, max_size=n))
    permutation = []
    for g in range(num_groups):
        inside = draw(st.permutations(range(group_size)))
        permutation.extend(g * group_size + i for i in inside)
    rewards = torch.tensor(rewards)
    return dict(
        group_size=group_size,
        rewards=rewards,
        correct=rewards >= 1.0,  # as the trainer decides it: NaN >= 1 is False
        embeddings=torch.tensor(embeddings),
        formula_sets=formula_sets,
        diversity=torch.tensor(diversity),
        permutation=torch.tensor(permutation),
        coef=draw(st.sampled_from([0.0, 0.001, 0.1, 1.0])),
        clip=draw(st.sampled_from([0.3, 1.0, 2.0])),
        temperature=draw(st.sampled_from([0.0, 1.0, 5.0, 50.0])),
    )


def in_unit_interval(values: torch.Tensor) -> bool:
    return bool(torch.isfinite(values).all() and (values >= 0).all() and (values <= 1).all())


def all_results(b: dict) -> dict[str, torch.Tensor]:
    """Every group-level function of functional on a batch."""
    g = b["group_size"]
    semantic = DF.semantic_diversity(b["embeddings"], g)
    formula = DF.formula_diversity(b["formula_sets"], g)
    combined = DF.combine_diversity(semantic, formula, 0.3, 0.7)
    augmented = DF.augmented_rewards(b["rewards"], b["correct"], b["diversity"], b["coef"], b["clip"])
    clipped = DF.clip_diversity(b["diversity"], b["clip"])
    return dict(
        semantic=semantic,
        formula=formula,
        combined=combined,
        augmented=augmented,
        advantages=DF.group_advantages(augmented, g, "group", 1e-6),
        advantages_unscaled=DF.group_advantages(augmented, g, "none", 1e-6),
        weights=DF.coupling_weights(clipped, b["correct"], g, b["temperature"]),
    )


def permuted(b: dict) -> dict:
    p = b["permutation"]
    out = dict(b)
    for key in ("rewards", "correct", "embeddings", "diversity"):
        out[key] = b[key][p]
    out["formula_sets"] = [b["formula_sets"][i] for i in p.tolist()]
    return out


def assert_same(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5, equal_nan=True, msg=name)


@PROPERTY_SETTINGS
@given(batches())
def test_scores_bonus_weights_and_advantages_stay_in_range(b):
    g = b["group_size"]
    r = all_results(b)
    for name in ("semantic", "formula", "combined"):
        assert in_unit_interval(r[name]), (name, r[name])

    rewards, correct, unscorable = b["rewards"], b["correct"], torch.isnan(b["rewards"])
    assert torch.isnan(r["augmented"][unscorable]).all()  # an unscorable row stays unscorable: no bonus makes it a number
    bonus = (r["augmented"] - rewards)[~unscorable]
    assert (bonus >= 0).all() and (bonus <= b["coef"] * b["clip"] * (1 + 1e-6) + 1e-6).all(), bonus
    assert (bonus[~correct[~unscorable]] == 0).all()

    for name in ("advantages", "advantages_unscaled"):
        assert torch.isfinite(r[name]).all(), name
        assert (r[name][unscorable] == 0).all(), name

    w = r["weights"].view(-1, g)
    assert torch.isfinite(w).all() and (w >= 0).all()
    assert (r["weights"][~correct] == 0).all()
    has_correct = correct.view(-1, g).any(dim=1)
    torch.testing.assert_close(w.sum(dim=1), has_correct.float(), atol=1e-5, rtol=0)


@PROPERTY_SETTINGS
@given(batches())
def test_results_are_equivariant_to_permuting_rows_inside_a_group(b):
    p = b["permutation"]
    before, after = all_results(b), all_results(permuted(b))
    for name, values in before.items():
        assert_same(after[name], values[p], name)


@PROPERTY_SETTINGS
@given(batches(), st.data())
def test_a_group_does_not_depend_on_the_other_groups(b, data):
    """Redraw every row outside group 0: group 0's results do not move."""
    g = b["group_size"]
    n = b["rewards"].numel()
    if n == g:  # a single group: append a second one to vary
        b, n = dict(b), 2 * g
        for key in ("rewards", "embeddings", "diversity"):
            b[key] = torch.cat([b[key], b[key]])
        b["formula_sets"] = b["formula_sets"] * 2
        b["correct"] = b["rewards"] >= 1.0
    other = dict(b)
    rest = n - g
    new_rewards = torch.tensor(data.draw(st.lists(st.sampled_from([0.0, 1.0, NAN]), min_size=rest, max_size=rest)))
    other["rewards"] = torch.cat([b["rewards"][:g], new_rewards])
    other["correct"] = other["rewards"] >= 1.0
    other["embeddings"] = torch.cat([b["embeddings"][:g], torch.randn(rest, b["embeddings"].size(1)) * 50])
    other["diversity"] = torch.cat([b["diversity"][:g], torch.rand(rest)])
    other["formula_sets"] = list(b["formula_sets"][:g]) + [frozenset(FORMULAS)] * rest
    before, after = all_results(b), all_results(other)
    for name in before:
        assert_same(after[name][:g], before[name][:g], name)


@st.composite
def micro_batches(draw):
    rows = draw(st.integers(1, 6))
    tokens = draw(st.integers(1, 6))
    finite = st.floats(-8, 0, width=32)
    logps = torch.tensor(draw(st.lists(st.lists(finite, min_size=tokens, max_size=tokens), min_size=rows, max_size=rows)))
    old = logps + torch.tensor(draw(st.lists(st.floats(-1, 1, width=32), min_size=tokens, max_size=tokens)))
    mask = torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=tokens, max_size=tokens), min_size=rows, max_size=rows)))
    logps = logps.masked_fill(~mask, float("-inf"))  # padding may hold garbage
    weights = torch.tensor(draw(st.lists(st.sampled_from([0.0, 0.25, 1.0]), min_size=rows, max_size=rows)))
    return logps, old, mask, weights, torch.tensor(draw(st.permutations(range(rows))))


@PROPERTY_SETTINGS
@given(micro_batches())
def test_local_entropy_objective_rows_are_finite_equivariant_and_zero_without_weight(batch):
    logps, old, mask, weights, p = batch
    logps = logps.clone().requires_grad_(True)
    values = DF.local_entropy_objective(logps, old, mask, weights)
    assert torch.isfinite(values).all()
    assert (values[weights == 0] == 0).all()
    assert (values >= 0).all()  # rho > 0 and -log pi >= 0
    values.sum().backward()
    assert torch.isfinite(logps.grad).all()
    assert (logps.grad[~mask] == 0).all()
    swapped = DF.local_entropy_objective(logps.detach()[p], old[p], mask[p], weights[p])
    assert_same(swapped, values.detach()[p], "local_entropy_objective")


# -- DiversityScorer.score: the scorer's own combination, with random embeddings and formula sets ---------------------


@pytest.fixture(scope="module")
def scorers(minilm_path) -> dict[str, DiversityScorer]:
    base = DiversityScorer(minilm_path)
    # score() uses only the weights: reuse the loaded encoder for the other weightings.
    out = {"default": base}
    for name, weights in {"semantic_only": (1.0, 0.0), "formula_only": (0.0, 2.0), "skewed": (3.0, 1.0)}.items():
        other = DiversityScorer(base.encoder)
        other.semantic_weight, other.formula_weight = weights
        out[name] = other
    return out


@PROPERTY_SETTINGS
@given(b=batches(), name=st.sampled_from(["default", "semantic_only", "formula_only", "skewed"]))
def test_scorer_scores_are_in_range_equivariant_and_per_group(scorers, b, name):
    scorer = scorers[name]
    g, p = b["group_size"], b["permutation"]
    scores = scorer.score(b["embeddings"], b["formula_sets"], g)
    for field in ("semantic", "formula", "combined"):
        values = getattr(scores, field)
        assert values.dtype == torch.float32 and values.shape == (b["rewards"].numel(),)
        assert in_unit_interval(values), (field, values)
    weights = (scorer.semantic_weight, scorer.formula_weight)
    expected = (weights[0] * scores.semantic + weights[1] * scores.formula) / sum(weights)
    torch.testing.assert_close(scores.combined, expected)
    if weights[1] == 0:
        torch.testing.assert_close(scores.combined, scores.semantic)

    shuffled = scorer.score(b["embeddings"][p], [b["formula_sets"][i] for i in p.tolist()], g)
    for field in ("semantic", "formula", "combined"):
        assert_same(getattr(shuffled, field), getattr(scores, field)[p], field)

    # Each group scored alone gives the same scores as inside the batch.
    for start in range(0, b["rewards"].numel(), g):
        alone = scorer.score(b["embeddings"][start : start + g], b["formula_sets"][start : start + g], g)
        assert_same(alone.combined, scores.combined[start : start + g], "combined alone")


def test_scorer_rejects_mismatched_inputs(scorers):
    with pytest.raises(ValueError, match="3 embeddings but 2 formula sets"):
        scorers["default"].score(torch.ones(3, 4), [frozenset(), frozenset()], 2)


def test_degenerate_embeddings_give_finite_scores():
    """Zero vectors and huge values (float32 overflow of the norm) do not make NaN."""
    embeddings = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3e38, 3e38], [1.0, 0.0]])
    values = DF.semantic_diversity(embeddings, 2)
    assert in_unit_interval(values), values
    assert math.isclose(values[0].item(), 0.5)  # a zero vector is orthogonal to everything, itself included
