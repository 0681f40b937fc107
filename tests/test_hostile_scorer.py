"""Hostile model output through DiversityScorer (the real MiniLM encoder) and broken rewards through the trainer:
no exception, no hang, no NaN; unscorable rows never get a bonus, a weight or an advantage.

(The formula extractor and the grader on the same kind of text: tests/test_hostile_text.py.)
"""

from __future__ import annotations

import math
import time

import pytest
import torch

from dsdr_trl import DSDRConfig, DSDRTrainer
from dsdr_trl import functional as DF
from dsdr_trl.scorer import DiversityScorer
from dsdr_trl.trainer import completion_text
from tests.test_trainer import prompt_dataset, tiny_args
from tests.tiny import build_tiny_model_and_tokenizer

SIZE = 200_000
# Bounds on this 2-core machine (shared). Measured: windowing a 200k-character text takes at most ~0.6 s
# ('$' * 200k: 788 windows); scoring a group of 200k-character texts on their first window ~1 s.
WINDOWING_BOUND_S = 3.0
TRUNCATED_GROUP_BOUND_S = 8.0
SMALL_GROUP_BOUND_S = 8.0
# Encoding is ~0.2-0.3 s per 256-token window on this CPU, and nothing caps the windows of one completion.
MAX_WINDOWS_PER_COMPLETION = 64

HOSTILE = {
    "empty": "",
    "whitespace only": " \t\n\r\u00a0\u2003" * (SIZE // 6),
    "long prose with math": ("We have $x + 1 = 2$, so \\[ x = 1. \\] " * 6_000)[:SIZE],
    "unclosed dollars": "$" * SIZE,
    "unclosed inline parens": "\\(" * (SIZE // 2),
    "unclosed display brackets": "\\[" * (SIZE // 2),
    "unclosed environments": "\\begin{" * (SIZE // 7),
    "deeply nested braces": "{" * (SIZE // 2) + "x" + "}" * (SIZE // 2),
    "unbalanced left": "\\left(" * (SIZE // 6),
    "unclosed boxed": "\\boxed{" * (SIZE // 7),
    "nul bytes": "\x00" * SIZE,
    "emoji": "🧮🤖🎉👩‍👩‍👧" * (SIZE // 11),
    "right-to-left": ("\u05d0\u05e0\u05d9 \u202e$\u0627 + 1$\u202c " * (SIZE // 12)),
    "one long word": "a" * SIZE,
}
SURROGATES = {"lone high surrogate": "\ud800", "lone surrogates with math": "$x$ \udfff \ud800 $y$" * 100}


@pytest.fixture(scope="module")
def scorer(minilm_path) -> DiversityScorer:
    return DiversityScorer(minilm_path)


@pytest.fixture(scope="module")
def truncating_scorer(scorer) -> DiversityScorer:
    out = DiversityScorer(scorer.encoder, truncate=True)
    return out


def assert_valid(scores, n: int) -> None:
    for field in ("semantic", "formula", "combined"):
        values = getattr(scores, field)
        assert values.shape == (n,), field
        assert torch.isfinite(values).all() and (values >= 0).all() and (values <= 1).all(), (field, values)


@pytest.mark.parametrize("name", HOSTILE)
def test_windowing_a_200k_character_completion_is_linear_and_bounded(scorer, name):
    text = HOSTILE[name][:SIZE]
    start = time.perf_counter()
    windows, owners = scorer.windows([text, "ok"])
    assert time.perf_counter() - start < WINDOWING_BOUND_S
    assert owners.tolist() == [0] * (len(windows) - 1) + [1]
    assert 1 <= len(windows) - 1 <= len(text) // scorer.window_size + 1  # at most one token per character
    assert all(len(w) <= scorer.encoder.max_seq_length for w in windows)


def test_a_group_of_200k_character_completions_scores_on_first_windows(truncating_scorer):
    """Every hostile text at full size in one batch (groups of 2, each paired with a plain answer)."""
    texts = []
    for text in HOSTILE.values():
        texts += [text, "The answer is $x = 1$, so \\boxed{1}."]
    start = time.perf_counter()
    scores = truncating_scorer(texts, group_size=2)
    elapsed = time.perf_counter() - start
    assert elapsed < TRUNCATED_GROUP_BOUND_S * len(HOSTILE) / 4, elapsed
    assert_valid(scores, len(texts))


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_completions_score_with_full_windows(scorer, name):
    """Full windowing (mean of window embeddings) on the same hostile shapes, cut to 1,000 characters so the
    encoder runs on a handful of windows; with an empty and a duplicate row in the group."""
    text = HOSTILE[name][:1_000]
    start = time.perf_counter()
    scores = scorer([text, text, "", "Let $y = 2$. Then \\boxed{2}."], group_size=4)
    assert time.perf_counter() - start < SMALL_GROUP_BOUND_S
    assert_valid(scores, 4)
    assert scores.formula[0] == scores.formula[1] == 0  # a formula both copies use is not unique
    assert math.isclose(scores.semantic[0].item(), scores.semantic[1].item(), abs_tol=1e-5)


def test_an_all_empty_group_has_zero_diversity(scorer):
    scores = scorer(["", "   ", "\n\n", ""], group_size=2)
    assert_valid(scores, 4)
    assert torch.allclose(scores.combined, torch.zeros(4), atol=1e-6)


def test_windows_per_completion_are_capped(scorer, monkeypatch):
    encoded = []

    def count(windows):
        encoded.append(len(windows))
        return torch.zeros(len(windows), scorer.encoder.get_embedding_dimension())

    monkeypatch.setattr(scorer, "encode_windows", count)
    scorer.embed(["$" * SIZE])
    assert sum(encoded) <= MAX_WINDOWS_PER_COMPLETION


@pytest.mark.parametrize("name", SURROGATES)
def test_lone_surrogates_are_scored(scorer, name):
    scores = scorer([SURROGATES[name], "plain text $x$"], group_size=2)
    assert_valid(scores, 2)


def test_conversational_completions_keep_only_assistant_text():
    completion = [
        {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "calc"}}]},
        {"role": "tool", "content": "TOOL OUTPUT $z$"},
        {"role": "assistant", "content": [{"type": "text", "text": "We get $x$."}, {"type": "image"}, {"text": None}, "junk"]},
        "not a message",
        None,
        {"role": "assistant", "content": 42},
        {"role": "assistant", "content": "\x00 done \ud83e\udd16"},
    ]
    text = completion_text(completion)
    assert "TOOL OUTPUT" not in text
    assert text == "We get $x$.\n\x00 done \ud83e\udd16"
    assert completion_text(None) == "" and completion_text([]) == "" and completion_text([{"role": "tool", "content": "t"}]) == ""


def test_conversational_completions_through_the_scorer(scorer):
    completions = [
        [{"role": "assistant", "content": None}, {"role": "tool", "content": "$t$"}],
        [{"role": "assistant", "content": "Using $a^2$."}],
        [{"role": "assistant", "content": [{"type": "text", "text": None}]}, {"role": "tool", "content": None}],
        [{"role": "assistant", "content": "Using $a^2$ and $b$."}, {"role": "tool", "content": "$a^2$"}],
    ]
    texts = [completion_text(c) for c in completions]
    scores = scorer(texts, group_size=4)
    assert_valid(scores, 4)
    # The tool's "$t$" is not the completion's: row 0 has no formula; "$a^2$" is shared by rows 1 and 3.
    torch.testing.assert_close(scores.formula, torch.tensor([0.0, 0.0, 0.0, 0.5]))


# -- broken rewards through the trainer ------------------------------------------------------------------------------

# Rewards by row position in a generation batch of 6 groups of G = 2 (None: every reward function gave up).
PATTERN = [None, None, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, None, 1.0, None, 0.0]
#          all unscorable | all correct | 1 correct | 0 correct | None + correct | None + incorrect


def positional_reward(completions, **kwargs):
    return [PATTERN[i % len(PATTERN)] for i in range(len(completions))]


def all_none_reward(completions, **kwargs):
    return [None] * len(completions)


class Spy:
    """Records the inputs and outputs of a functional used by the trainer (the real function still runs)."""

    def __init__(self, function):
        self.function, self.calls = function, []

    def __call__(self, *args, **kwargs):
        result = self.function(*args, **kwargs)
        self.calls.append((args, result))
        return result


@pytest.mark.slow
@pytest.mark.parametrize("reward", [positional_reward, all_none_reward], ids=["mixed groups", "all unscorable"])
def test_unscorable_rows_get_no_bonus_no_weight_and_no_nan(tmp_path, minilm_path, monkeypatch, reward):
    spies = {name: Spy(getattr(DF, name)) for name in ("augmented_rewards", "group_advantages", "coupling_weights")}
    for name, spy in spies.items():
        monkeypatch.setattr(DF, name, spy)
    model, tokenizer = build_tiny_model_and_tokenizer()
    args = tiny_args(
        DSDRConfig, tmp_path, max_steps=1, num_generations=2, per_device_train_batch_size=12, semantic_model=minilm_path,
        diversity_coef=0.5, local_entropy_coef=0.01,
    )
    trainer = DSDRTrainer(model=model, reward_funcs=reward, args=args, train_dataset=prompt_dataset(), processing_class=tokenizer)
    outputs = []
    generate = trainer._generate_and_score_completions
    monkeypatch.setattr(trainer, "_generate_and_score_completions", lambda inputs: outputs.append(generate(inputs)) or outputs[-1])
    trainer.train()

    pattern = torch.tensor([math.nan if r is None else r for r in (PATTERN if reward is positional_reward else [None] * 12)])
    unscorable = torch.isnan(pattern)
    (rewards, correct, diversity, *_), augmented = spies["augmented_rewards"].calls[0]
    torch.testing.assert_close(rewards, pattern, equal_nan=True)
    assert torch.equal(correct, pattern >= 1.0)  # NaN never counts as correct
    assert torch.isnan(augmented[unscorable]).all()
    bonus = (augmented - rewards)[~unscorable]
    assert torch.all(bonus[~correct[~unscorable]] == 0) and torch.all(bonus <= 0.5 + 1e-6)
    assert torch.all(bonus[correct[~unscorable]] > 0) and torch.isfinite(diversity).all()

    advantages = spies["group_advantages"].calls[0][1]
    weights = spies["coupling_weights"].calls[0][1]
    assert torch.isfinite(advantages).all() and torch.all(advantages[unscorable] == 0)
    assert torch.all(weights[~correct] == 0) and torch.isfinite(weights).all()
    groups = weights.view(-1, 2).sum(dim=1)
    torch.testing.assert_close(groups, correct.view(-1, 2).any(dim=1).float())
    (output,) = outputs
    torch.testing.assert_close(output["advantages"], advantages)
    torch.testing.assert_close(output["dsdr_coupling_weights"], weights)
    if reward is positional_reward:
        grouped = advantages.view(-1, 2)
        # All correct: the bonus is the only signal. With G = 2, D_emb is symmetric (d(1,2) = d(2,1)), so only a
        # difference in formula uniqueness can separate the two rows; the more diverse row gets the positive side.
        pair = diversity.view(-1, 2)[1]
        if pair[0] == pair[1]:
            assert torch.all(grouped[1] == 0)
        else:
            assert torch.equal(grouped[1] > 0, pair == pair.max()) and grouped[1].sum().abs() < 1e-5
        assert grouped[2, 0] > 0 > grouped[2, 1]  # one correct
        assert torch.all(grouped[[0, 3, 4, 5]] == 0)  # nothing to compare a row with, or all equal

    record = trainer.state.log_history[0]
    assert record["dsdr/frac_correct"] == pytest.approx(correct.float().mean().item())
    assert math.isfinite(record["loss"])
    for key, value in record.items():
        if key.startswith("dsdr/"):
            assert math.isfinite(value), key
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
