"""The evaluation's metrics as pure functions of per-sample correctness and text: Pass@k, Avg@k, diversity@k.

All metrics are fractions in [0, 1]; reports show percent.

Diversity@k is a reproducible stand-in for the paper's LLM-judged diversity. Among the *correct* samples of a
problem within the first k sampled ones (problems with at least two correct samples only):

- `semantic`: mean D_emb (Eq. 6) of DSDR's own `DiversityScorer`, the correct samples forming one group;
- `formula`: mean D_eq (Eq. 8), the share of a sample's formulas that no other correct sample uses;
- `derivations`: the number of distinct derivations, where a derivation is a sample's set of normalised
  formulas (`dsdr_trl.formulas.extract_formulas`): two correct samples count as the same derivation exactly
  when they write down the same formulas. `derivation_ratio` divides it by the number of correct samples.

Each is averaged over the problems it is defined for.

Neither torch nor transformers is imported here (the scorer is passed in), so the study, the benchmarks, the
command line and the training callback use these metrics without loading the sampling stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import fmean
from typing import Any

#: The sentence encoder of diversity@k's semantic term: DSDR's default `semantic_model`.
DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased Pass@k from n samples of which c are correct (Chen et al., 2021): 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1..n} (1 - k / i), which never forms the huge binomials.
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}.")
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}.")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    if k > n:
        raise ValueError(f"k = {k} is larger than the number of samples n = {n}.")
    if c > n:
        raise ValueError(f"c = {c} correct samples is more than n = {n} samples.")
    if n - c < k:
        # Every draw of k samples contains a correct one.
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def correctness_metrics(correct: Sequence[Sequence[bool]], avg_k: int, ks: Sequence[int]) -> dict[str, float]:
    """Avg@k and Pass@k over problems, from each problem's ordered sample correctness (fractions in [0, 1])."""
    if not correct:
        raise ValueError("no problems to score.")
    metrics = {f"avg@{avg_k}": sum(sum(row[:avg_k]) / avg_k for row in correct) / len(correct)}
    for k in ks:
        metrics[f"pass@{k}"] = sum(pass_at_k(len(row), sum(row), k) for row in correct) / len(correct)
    return metrics


def average_over_benchmarks(per_benchmark: dict[str, dict[str, float]]) -> dict[str, float]:
    """The unweighted mean of each metric over benchmarks (the paper's "Average" column)."""
    keys = next(iter(per_benchmark.values())).keys()
    return {key: fmean(results[key] for results in per_benchmark.values()) for key in keys}


def derivation_signature(text: str) -> tuple[str, ...]:
    """A completion's derivation: its sorted set of normalised formulas."""
    # Imported here: the formula extractor loads sympy (about half a second), which only diversity@k needs.
    from ..formulas import extract_formulas

    return tuple(sorted(extract_formulas(text)))


def diversity_of_correct(groups: Sequence[Sequence[str]], scorer: Any) -> dict[str, float | int | None]:
    """Diversity@k from each problem's correct completions; problems with fewer than two are left out.

    `scorer` is a `DiversityScorer` (or anything called as `scorer(texts, group_size)` returning `.semantic`
    and `.formula` tensors).
    """
    scored = [list(group) for group in groups if len(group) >= 2]
    if not scored:
        return {"problems": 0, "semantic": None, "formula": None, "derivations": None, "derivation_ratio": None}
    semantic, formula, derivations, ratio = [], [], [], []
    for group in scored:
        scores = scorer(group, group_size=len(group))
        semantic.append(float(scores.semantic.mean()))
        formula.append(float(scores.formula.mean()))
        distinct = len({derivation_signature(text) for text in group})
        derivations.append(distinct)
        ratio.append(distinct / len(group))
    return {
        "problems": len(scored),
        "semantic": fmean(semantic),
        "formula": fmean(formula),
        "derivations": fmean(derivations),
        "derivation_ratio": fmean(ratio),
    }
