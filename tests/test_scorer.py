"""DiversityScorer with the real all-MiniLM-L6-v2: whole-response windows, batching, formula identities."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import SentenceTransformer

from dsdr_trl import DiversityScorer
from dsdr_trl import functional as DF

LONG = " ".join(f"Step {i}: we add {i} to both sides, so $x_{{{i}}} = x_{{{i - 1}}} + {i}$." for i in range(1, 45))


@pytest.fixture(scope="module")
def scorer(minilm_path) -> DiversityScorer:
    return DiversityScorer(minilm_path)


def test_truncated_embedding_is_what_encode_gives(minilm_path):
    truncating = DiversityScorer(minilm_path, truncate=True)
    texts = [LONG, "A short answer: $\\frac{1}{2}$.", ""]
    expected = SentenceTransformer(minilm_path, device="cpu").encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(truncating.embed(texts), expected, atol=1e-5, rtol=1e-4)


def test_long_response_is_the_mean_of_its_window_embeddings(minilm_path, scorer):
    token_ids = scorer.tokenizer(LONG, add_special_tokens=False)["input_ids"]
    assert len(token_ids) > 3 * scorer.window_size  # the text really spans several windows
    encoder = SentenceTransformer(minilm_path, device="cpu")
    window_embeddings = []
    for start in range(0, len(token_ids), scorer.window_size):
        ids = [scorer.tokenizer.cls_token_id, *token_ids[start : start + scorer.window_size], scorer.tokenizer.sep_token_id]
        features = {
            "input_ids": torch.tensor([ids]),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "token_type_ids": torch.zeros(1, len(ids), dtype=torch.long),
        }
        with torch.inference_mode():
            window_embeddings.append(encoder(features)["sentence_embedding"][0])
    expected = torch.stack(window_embeddings).mean(0)
    torch.testing.assert_close(scorer.embed([LONG])[0], expected, atol=1e-5, rtol=1e-4)
    # ... and differs from the truncated embedding, so the tail of the response counts.
    assert not torch.allclose(scorer.embed([LONG])[0], window_embeddings[0], atol=1e-3)


def test_embeddings_do_not_depend_on_batching_or_order(minilm_path, scorer):
    texts = [LONG, "x", "$a^2 + b^2 = c^2$", "", "Let us count: 1, 2, 3." * 20]
    reference = scorer.embed(texts)
    one_at_a_time = DiversityScorer(minilm_path, batch_size=1).embed(texts)
    torch.testing.assert_close(one_at_a_time, reference, atol=1e-5, rtol=1e-4)
    reversed_order = scorer.embed(texts[::-1]).flip(0)
    torch.testing.assert_close(reversed_order, reference, atol=1e-5, rtol=1e-4)


def test_scores_follow_the_equations(scorer):
    completions = ["So $x+1=2$ and $x=1$.", "So $x + 1 = 2$, hence $x = 1$.", "Guess: $y=7$.", "Guess: $y=7$."]
    scores = scorer(completions, group_size=2)
    embeddings = scorer.embed(completions)
    torch.testing.assert_close(scores.semantic, DF.semantic_diversity(embeddings, 2))
    # Group 1 writes the same two formulas up to spacing; group 2 is two identical completions.
    torch.testing.assert_close(scores.formula, torch.zeros(4))
    torch.testing.assert_close(scores.combined, (scores.semantic + scores.formula) / 2)
    assert scores.semantic[:2].min() > 0 and scores.semantic[2:].max() < 1e-6


def test_sympy_identity_merges_reordered_formulas(minilm_path):
    completions = ["We get $x+1$.", "We get $1+x$."]
    normalized = DiversityScorer(minilm_path)(completions, group_size=2)
    sympy = DiversityScorer(minilm_path, formula_identity="sympy")(completions, group_size=2)
    assert normalized.formula.tolist() == [1.0, 1.0]
    assert sympy.formula.tolist() == [0.0, 0.0]


def test_custom_formula_extractor_is_used(minilm_path):
    words = DiversityScorer(minilm_path, formula_extractor=lambda text: set(text.split()))
    assert words(["a b", "b c"], group_size=2).formula.tolist() == [0.5, 0.5]


def test_invalid_settings(minilm_path):
    with pytest.raises(ValueError, match="formula_identity"):
        DiversityScorer(minilm_path, formula_identity="exact")
    with pytest.raises(ValueError, match="not both 0"):
        DiversityScorer(minilm_path, semantic_weight=0.0, formula_weight=0.0)


def test_capped_windows_are_evenly_spaced_from_first_to_last(minilm_path):
    capped = DiversityScorer(minilm_path, max_windows=2)
    token_ids = capped.tokenizer(LONG, add_special_tokens=False)["input_ids"]
    windows, owners = capped.windows([LONG])
    size = capped.window_size
    last_start = (len(token_ids) - 1) // size * size
    assert [w[1:-1] for w in windows] == [token_ids[:size], token_ids[last_start : last_start + size]]
    assert owners.tolist() == [0, 0]


@pytest.fixture
def zero3_configured(monkeypatch):
    """transformers' global DeepSpeed config set to ZeRO-3, as `TrainingArguments` sets it under a ZeRO-3 launch, in
    a one-process gloo group (zero.Init needs one); both undone afterwards."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is an optional extra: pip install -e '.[deepspeed]'")
    import torch.distributed as dist
    from transformers.integrations import HfDeepSpeedConfig, unset_hf_deepspeed_config

    from tests.processes import free_port

    for name in ("RANK", "LOCAL_RANK"):
        monkeypatch.setenv(name, "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    config = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    try:
        yield config
    finally:
        unset_hf_deepspeed_config()
        dist.destroy_process_group()


def test_encoder_loads_whole_under_a_zero3_deepspeed_config(minilm_path, scorer, zero3_configured):
    from transformers.integrations import is_deepspeed_zero3_enabled

    texts = ["We add $x+1$ and get $x = 1$.", "So $2+2=4$.", LONG]
    under_zero3 = DiversityScorer(minilm_path)
    assert is_deepspeed_zero3_enabled()  # still on for the policy, which DeepSpeed's engine gathers
    whole = dict(scorer.encoder.named_parameters())
    for name, parameter in under_zero3.encoder.named_parameters():
        assert not hasattr(parameter, "ds_id"), name
        assert torch.equal(parameter, whole[name]), name
    torch.testing.assert_close(under_zero3.embed(texts), scorer.embed(texts), atol=0, rtol=0)


def test_an_encoder_partitioned_by_zero3_is_refused(minilm_path, zero3_configured):
    partitioned = SentenceTransformer(minilm_path, device="cpu")  # loaded by the caller inside zero.Init
    assert any(hasattr(parameter, "ds_id") for parameter in partitioned.parameters())
    with pytest.raises(ValueError, match="partitioned by DeepSpeed ZeRO-3"):
        DiversityScorer(partitioned)
