"""The warm start's prior and the prompt mix of the saturated-group study.

The multi-solution study's task and verifier are kept (`studies.multi_solution.task`). What changes is the warm start
and the prompts. The warm start is trained on correct solutions drawn from a *simplicity prior*: a solution written
with m numbers has weight decay^(m - 1), so, like a pretrained model that prefers the textbook answer, it mostly writes
the shortest solutions and rarely the longer, distinct ones. The prompts mix *easy* ones, whose target is one of the
given digits (``1 5 6 9=6:``: ``$6$``, ``$1*6$``, ``$5+1$``, ``$9-5+1$``... all correct), which the warm start solves
almost always, with the others, which it solves sometimes: at the start of RL many groups are entirely correct, and
the held-out prompts still leave room for Pass@k at large k.
"""

from __future__ import annotations

import random

from studies.multi_solution.task import Prompt, Tree, format_prompt, prompt_pool, render, trees_by_value


def operand_count(tree: Tree) -> int:
    return 1 if tree[0] == "num" else operand_count(tree[1]) + operand_count(tree[2])


def simplicity_prior(prompt: Prompt, decay: float) -> list[tuple[str, Tree, float]]:
    """The prompt's distinct solutions with weights proportional to decay^(numbers used - 1), normalised to sum to 1,
    heaviest first (ties in canonical order)."""
    trees = trees_by_value(prompt.numbers).get(prompt.target, {})
    raw = {key: decay ** (operand_count(tree) - 1) for key, tree in trees.items()}
    total = sum(raw.values())
    return sorted(((key, trees[key], raw[key] / total) for key in trees), key=lambda entry: (-entry[2], entry[0]))


def is_easy(prompt: Prompt) -> bool:
    """The target is one of the given digits (the one-number solution exists)."""
    return prompt.target in prompt.numbers


def mixed_prompts(seed: int, num_train: int, num_eval: int, easy_fraction: float) -> tuple[list[Prompt], list[Prompt]]:
    """Disjoint training and held-out prompts from the pool, each with round(easy_fraction * size) easy prompts."""
    easy = [p for p in prompt_pool() if is_easy(p)]
    other = [p for p in prompt_pool() if not is_easy(p)]
    rng = random.Random(seed)
    rng.shuffle(easy)
    rng.shuffle(other)
    num_easy_train, num_easy_eval = round(easy_fraction * num_train), round(easy_fraction * num_eval)
    num_other = num_train + num_eval - num_easy_train - num_easy_eval
    if num_easy_train + num_easy_eval > len(easy) or num_other > len(other):
        raise ValueError(f"the pool has {len(easy)} easy and {len(other)} other prompts, too few for this mix.")
    train = easy[:num_easy_train] + other[: num_train - num_easy_train]
    held_out = easy[num_easy_train : num_easy_train + num_easy_eval]
    held_out += other[num_train - num_easy_train : num_train - num_easy_train + num_eval - num_easy_eval]
    rng.shuffle(train)
    rng.shuffle(held_out)
    return train, held_out


def prior_rows(prompts: list[Prompt], count: int, seed: int, decay: float) -> list[dict]:
    """`count` supervised rows: a prompt drawn uniformly, one of its solutions drawn from the simplicity prior, in a
    random surface form (operand order of + and *)."""
    rng = random.Random(seed)
    priors = {}
    rows = []
    for _ in range(count):
        prompt = rng.choice(prompts)
        if prompt not in priors:
            priors[prompt] = simplicity_prior(prompt, decay)
        _key, tree, _weight = rng.choices(priors[prompt], weights=[w for *_, w in priors[prompt]])[0]
        prompt_text = format_prompt(list(prompt.numbers), prompt.target)
        rows.append({"prompt": prompt_text, "completion": f"${render(tree, rng)}$"})
    return rows
