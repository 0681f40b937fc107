"""Held-out measurements: Pass@1 (one sample, temperature 0.1), Avg@k and Pass@k (k = 1..n, unbiased, n samples at
temperature 0.7, top-p 0.9: the paper's protocol, Sec. 4.1), distinct correct solutions among the n samples, and the
within-group cosine similarity of the samples under DSDR's own encoder."""

from __future__ import annotations

import statistics

import torch

from dsdr_trl.evaluation import pass_at_k

from .task import Prompt, format_prompt, grade

PASS1_TEMPERATURE = 0.1
SAMPLED_TEMPERATURE = 0.7
TOP_P = 0.9
MAX_NEW_TOKENS = 16


@torch.no_grad()
def sample(
    model, tokenizer, prompts: list[Prompt], n: int, temperature: float, seed: int, top_p: float = TOP_P
) -> list[list[str]]:
    """n completions per prompt (decoded, special tokens removed), reproducible for a seed."""
    texts = [format_prompt(list(p.numbers), p.target) for p in prompts]
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left")
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = model.generate(
            input_ids=batch["input_ids"].repeat_interleave(n, 0),
            attention_mask=batch["attention_mask"].repeat_interleave(n, 0),
            do_sample=True,
            temperature=temperature,
            top_p=top_p,
            top_k=0,
            max_new_tokens=MAX_NEW_TOKENS,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    model.train(was_training)
    decoded = tokenizer.batch_decode(out[:, batch["input_ids"].size(1) :], skip_special_tokens=True)
    return [decoded[i * n : (i + 1) * n] for i in range(len(prompts))]


def measure(model, tokenizer, prompts: list[Prompt], n: int, seed: int, scorer=None, avg_k: int = 16) -> dict:
    """All held-out metrics of a policy, as fractions (distinct counts as numbers of solutions per prompt)."""
    greedy = sample(model, tokenizer, prompts, 1, PASS1_TEMPERATURE, seed)
    sampled = sample(model, tokenizer, prompts, n, SAMPLED_TEMPERATURE, seed + 1)
    pass1 = statistics.mean(grade(g[0], list(p.numbers), p.target) is not None for g, p in zip(greedy, prompts))
    solutions = [[grade(text, list(p.numbers), p.target) for text in group] for group, p in zip(sampled, prompts)]
    correct = [[s is not None for s in group] for group in solutions]
    ks = list(range(1, n + 1))
    result = {
        "pass@1": pass1,
        f"avg@{avg_k}": statistics.mean(statistics.mean(c[:avg_k]) for c in correct),
        "pass@k": {k: statistics.mean(pass_at_k(n, sum(c), k) for c in correct) for k in ks},
        # Distinct correct *solutions* (up to commutativity) and distinct correct strings, among the n samples.
        "distinct_correct": statistics.mean(len({s for s in group if s}) for group in solutions),
        "distinct_correct_strings": statistics.mean(
            len({t for t, s in zip(texts, group) if s}) for texts, group in zip(sampled, solutions)
        ),
        "valid_format": statistics.mean(t.count("$") == 2 for group in sampled for t in group),
        "example": sampled[0][:4],
    }
    if scorer is not None:  # the within-group cosine of DSDR's encoder, over the first 8 samples of each prompt
        group = min(8, n)
        texts = [t for texts in sampled for t in texts[:group]]
        scores = scorer(texts, group)
        result["within_group_cosine"] = 1.0 - 2.0 * scores.semantic.mean().item()
        result["formula_diversity"] = scores.formula.mean().item()
    return result
