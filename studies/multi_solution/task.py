"""The task: "write an arithmetic expression over these numbers whose value is T" (Countdown-style).

A prompt gives four distinct digits and a target, e.g. ``1 2 3 4=10:``; the policy answers with a formula between dollar
signs, ``$2*3+4$``, so that `dsdr_trl.formulas` extracts it. An answer is correct when it parses (digits, ``+``,
``-``, ``*``, parentheses), uses each given number at most as often as it is given, and equals the target.

Many answers are correct: ``$2*3+4$``, ``$4+3*2$``, ``$3*4-2$``... Two correct answers are the same *solution* when
they differ only by the order of the operands of ``+`` and ``*`` and by redundant parentheses (`canonical`); the study
counts distinct solutions, not distinct strings. Expressions are parsed by a small recursive-descent parser and
evaluated on the tree; nothing is ever passed to ``eval``.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections import Counter
from dataclasses import dataclass

MAX_ANSWER_CHARS = 64
MAX_DEPTH = 16

# A tree is ("num", value) or (op, left, right) with op in "+-*".
Tree = tuple


class ParseError(ValueError):
    pass


class _Parser:
    """expr := term (('+' | '-') term)* ; term := factor ('*' factor)* ; factor := digits | '(' expr ')'."""

    def __init__(self, text: str):
        self.text, self.pos, self.depth = text, 0, 0

    def parse(self) -> Tree:
        tree = self.expr()
        if self.pos != len(self.text):
            raise ParseError(f"unexpected {self.text[self.pos]!r} at {self.pos}")
        return tree

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expr(self) -> Tree:
        tree = self.term()
        while self.peek() in ("+", "-") and self.peek():
            op = self.text[self.pos]
            self.pos += 1
            tree = (op, tree, self.term())
        return tree

    def term(self) -> Tree:
        tree = self.factor()
        while self.peek() == "*":
            self.pos += 1
            tree = ("*", tree, self.factor())
        return tree

    def factor(self) -> Tree:
        char = self.peek()
        if char == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ParseError("nested too deeply")
            self.pos += 1
            tree = self.expr()
            if self.peek() != ")":
                raise ParseError(f"missing ')' at {self.pos}")
            self.pos += 1
            self.depth -= 1
            return tree
        start = self.pos
        while self.peek().isdigit() and self.peek().isascii():
            self.pos += 1
        if start == self.pos:
            raise ParseError(f"expected a number at {start}")
        return ("num", int(self.text[start : self.pos]))


def parse(text: str) -> Tree:
    """Parses an expression (spaces ignored); raises ParseError. Never evaluates code."""
    text = text.replace(" ", "")
    if not text or len(text) > MAX_ANSWER_CHARS:
        raise ParseError("empty or too long")
    return _Parser(text).parse()


def evaluate(tree: Tree) -> int:
    if tree[0] == "num":
        return tree[1]
    left, right = evaluate(tree[1]), evaluate(tree[2])
    return left + right if tree[0] == "+" else left - right if tree[0] == "-" else left * right


def numbers_used(tree: Tree) -> Counter:
    if tree[0] == "num":
        return Counter([tree[1]])
    return numbers_used(tree[1]) + numbers_used(tree[2])


def canonical(tree: Tree) -> str:
    """A key equal for expressions that differ only by commutativity/associativity of + and *, and parentheses."""
    if tree[0] == "num":
        return str(tree[1])
    if tree[0] == "*":
        factors = sorted(canonical(t) for t in _flatten(tree, "*"))
        return "*(" + ",".join(factors) + ")"
    terms = sorted(("+" if sign > 0 else "-") + canonical(t) for sign, t in _signed_terms(tree, 1))
    return "+(" + ",".join(terms) + ")"


def _flatten(tree: Tree, op: str) -> list[Tree]:
    return _flatten(tree[1], op) + _flatten(tree[2], op) if tree[0] == op else [tree]


def _signed_terms(tree: Tree, sign: int) -> list[tuple[int, Tree]]:
    if tree[0] == "+":
        return _signed_terms(tree[1], sign) + _signed_terms(tree[2], sign)
    if tree[0] == "-":
        return _signed_terms(tree[1], sign) + _signed_terms(tree[2], -sign)
    return [(sign, tree)]


def extract_answer(completion: str) -> str | None:
    """The text between the first two dollar signs, or None."""
    start = completion.find("$")
    end = completion.find("$", start + 1) if start >= 0 else -1
    return completion[start + 1 : end] if end > start else None


def grade(completion: str, numbers: list[int], target: int) -> str | None:
    """The canonical solution if the completion is correct, else None."""
    answer = extract_answer(completion)
    if answer is None:
        return None
    try:
        tree = parse(answer)
    except ParseError:
        return None
    if numbers_used(tree) - Counter(numbers) or evaluate(tree) != target:
        return None
    return canonical(tree)


def countdown_reward(prompts, completions, numbers, target, **kwargs) -> list[float]:
    """TRL reward function: 1.0 for a correct answer, 0.0 otherwise (the binary verifier r_i)."""
    return [float(grade(c, n, t) is not None) for c, n, t in zip(completions, numbers, target)]


# -- prompts, solutions and warm-start data --------------------------------------------------------------------------


def format_prompt(numbers: list[int], target: int) -> str:
    return " ".join(map(str, numbers)) + f"={target}:"


def all_trees(numbers: tuple[int, ...]) -> list[Tree]:
    """Every expression tree that uses all of `numbers` once each (ops + - *)."""
    if len(numbers) == 1:
        return [("num", numbers[0])]
    trees = []
    indices = range(len(numbers))
    for size in range(1, len(numbers)):
        for left_idx in itertools.combinations(indices, size):
            left = tuple(numbers[i] for i in left_idx)
            right = tuple(numbers[i] for i in indices if i not in left_idx)
            for lt in all_trees(left):
                for rt in all_trees(right):
                    trees.extend((op, lt, rt) for op in "+-*")
    return trees


@functools.lru_cache(maxsize=256)
def trees_by_value(numbers: tuple[int, ...]) -> dict[int, dict[str, Tree]]:
    """target -> canonical solution -> its first expression tree, over every non-empty subset of the numbers (each
    used at most once). Cached and shared: do not mutate."""
    found: dict[int, dict[str, Tree]] = {}
    for size in range(1, len(numbers) + 1):
        for subset in itertools.combinations(numbers, size):
            for tree in all_trees(subset):
                found.setdefault(evaluate(tree), {}).setdefault(canonical(tree), tree)
    return found


def solutions(numbers: list[int]) -> dict[int, set[str]]:
    """target -> canonical solutions, over every non-empty subset of the numbers (each used at most once)."""
    return {target: set(trees) for target, trees in trees_by_value(tuple(numbers)).items()}


def random_tree(numbers: list[int], rng: random.Random) -> Tree:
    """A random expression tree using each of `numbers` once (random split, random operator)."""
    if len(numbers) == 1:
        return ("num", numbers[0])
    cut = rng.randint(1, len(numbers) - 1)
    return (rng.choice("+-*"), random_tree(numbers[:cut], rng), random_tree(numbers[cut:], rng))


def render(tree: Tree, rng: random.Random) -> str:
    """A surface form of a tree: minimal parentheses, random operand order for + and * (the value is unchanged)."""
    if tree[0] == "num":
        return str(tree[1])
    op, left, right = tree
    if op in "+*" and rng.random() < 0.5:
        left, right = right, left
    prec = {"num": 3, "*": 2, "+": 1, "-": 1}
    left_s, right_s = render(left, rng), render(right, rng)
    if prec[left[0]] < prec[op]:
        left_s = f"({left_s})"
    if prec[right[0]] < prec[op] or (op == "-" and prec[right[0]] == 1):
        right_s = f"({right_s})"
    return f"{left_s}{op}{right_s}"


@dataclass(frozen=True)
class Prompt:
    numbers: tuple[int, ...]
    target: int
    num_solutions: int

    def row(self) -> dict:
        return {"prompt": format_prompt(list(self.numbers), self.target), "numbers": list(self.numbers),
                "target": self.target, "num_solutions": self.num_solutions}


NUM_DIGITS = 4
MAX_TARGET = 20
MIN_SOLUTIONS = 3


@functools.lru_cache(maxsize=1)
def prompt_pool() -> tuple[Prompt, ...]:
    """Every prompt: four distinct digits 1-9 and a target in 1..MAX_TARGET with >= MIN_SOLUTIONS solutions."""
    pool = []
    for numbers in itertools.combinations(range(1, 10), NUM_DIGITS):
        for target, found in sorted(solutions(list(numbers)).items()):
            if 1 <= target <= MAX_TARGET and len(found) >= MIN_SOLUTIONS:
                pool.append(Prompt(numbers, target, len(found)))
    return tuple(pool)


def make_prompts(
    seed: int, num_train: int, num_eval: int, max_target: int = MAX_TARGET
) -> tuple[list[Prompt], list[Prompt]]:
    """Disjoint train and held-out prompts drawn from `prompt_pool` (2,196 prompts, 7.0 solutions on average;
    1,191 prompts with 7.9 solutions for max_target=10, the easier regime), targets <= max_target."""
    pool = [p for p in prompt_pool() if p.target <= max_target]
    rng = random.Random(seed)
    rng.shuffle(pool)
    return pool[:num_train], pool[num_train : num_train + num_eval]


def warm_start_rows(seed: int, count: int, excluded: set[tuple[tuple[int, ...], int]]) -> list[dict]:
    """Syntactically valid expressions over random digits, labelled with their own value (no held-out prompt)."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < count:
        numbers = tuple(sorted(rng.sample(range(1, 10), NUM_DIGITS)))
        tree = random_tree(rng.sample(numbers, rng.choice((2, 2, 3, 4))), rng)
        target = evaluate(tree)
        if not 1 <= target <= MAX_TARGET or (numbers, target) in excluded:
            continue
        rows.append({"prompt": format_prompt(list(numbers), target), "completion": f"${render(tree, rng)}$"})
    return rows
