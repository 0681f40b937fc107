"""Hostile completions: no exception, no hang, and no code execution, in every text-facing function."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dsdr_trl.formulas import MAX_FORMULA_CHARS, extract_formulas, sympy_key
from dsdr_trl.grading import extract_final_answer, grade
from dsdr_trl.rewards import math_accuracy_reward

SIZE = 200_000
# Bounds per call on this 2-core machine; measured worst cases are about ten times lower.
EXTRACTION_BOUND_S = 0.5
GRADE_TIMEOUT_S = 0.5
GRADE_BOUND_S = 2.0

HOSTILE = {
    "empty": "",
    "long prose with math": ("We have $x + 1 = 2$, so \\[ x = 1. \\] " * 6_000)[:SIZE],
    "unclosed dollars": "$" * SIZE,
    "unclosed dollar then text": "$" + "a" * SIZE,
    "unclosed inline parens": "\\(" * (SIZE // 2),
    "unclosed display brackets": "\\[ [" * (SIZE // 4),
    "unclosed environments": "\\begin{align}" * (SIZE // 13),
    "unclosed boxes": "\\boxed{" * (SIZE // 7),
    "deeply nested braces": "\\boxed{" + "{" * SIZE + "x" + "}" * SIZE,
    "nested parens in a box": "\\boxed{" + "(" * 500 + "x" + ")" * 500 + "}",
    "backslashes": "\\" * SIZE + "$x$",
    "escaped dollars": "\\$" * (SIZE // 2),
    "nul bytes": "\x00" * SIZE + "$\x00x\x00$",
    "lone surrogates": "\ud800$\udfff$" * (SIZE // 4),
    "emoji": "🧮 $x^2$ 🤖 \\boxed{🎉}" * (SIZE // 20),
    "right-to-left": "\u05d0\u05e0\u05d9 $\u0627 + 1$ \u202e\\boxed{\u05d0}" * (SIZE // 20),
    "whitespace after answer phrase": "Answer: " + " " * SIZE + "x",
    "answer phrases": "the answer is " * (SIZE // 14),
    "many short formulas": "$a$ " * (SIZE // 4),
    "box before unclosed parens": "\\boxed{1}" + "\\(" * (SIZE // 2),  # the box is read ahead of math-verify's window
    "answer phrase before unclosed parens": "The final answer is $1$." + "\\(" * (SIZE // 2),
    "CJK answer phrases and digits": "答案是1颗。" * (SIZE // 6),
    "full-width digits and colons": "答案：１" * (SIZE // 4),
    "think tags": "<think>\\boxed{1}</think>" * (SIZE // 24),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_extraction_is_fast_and_total(name: str) -> None:
    text = HOSTILE[name]
    start = time.perf_counter()
    formulas = extract_formulas(text)
    answer = extract_final_answer(text)
    assert time.perf_counter() - start < EXTRACTION_BOUND_S
    assert all(0 < len(formula) <= MAX_FORMULA_CHARS for formula in formulas)
    assert answer is None or isinstance(answer, str)


@pytest.mark.parametrize("name", HOSTILE)
def test_grading_is_bounded_and_total(name: str) -> None:
    text = HOSTILE[name]
    start = time.perf_counter()
    verdict = grade(text, "x", timeout_s=GRADE_TIMEOUT_S)
    rewards = math_accuracy_reward([text, [{"role": "assistant", "content": text}]], solution=["1", "1"])
    assert verdict in (True, False, None)  # None: the comparison ran out of time, unscorable
    assert rewards in ([0.0, 0.0], [1.0, 1.0], [None, None])
    assert time.perf_counter() - start < GRADE_BOUND_S + 2 * 3.0  # grade, then two rewards at the default limit


def test_a_box_before_a_hostile_tail_is_still_read() -> None:
    start = time.perf_counter()
    assert grade(HOSTILE["box before unclosed parens"], "1") is True
    assert time.perf_counter() - start < GRADE_BOUND_S + 3.0  # at most one comparison at the default limit


@pytest.mark.parametrize("name", ["nested parens in a box", "lone surrogates", "nul bytes", "emoji", "right-to-left"])
def test_sympy_key_is_bounded_and_total(name: str) -> None:
    text = HOSTILE[name][:MAX_FORMULA_CHARS]
    start = time.perf_counter()
    keys = [sympy_key(text)] + [sympy_key(formula) for formula in sorted(extract_formulas(text))[:20]]
    assert all(isinstance(key, str) and key for key in keys)
    assert time.perf_counter() - start < 2.0 * len(keys)


INJECTIONS = [
    "$__import__('os').system('touch PWNED')$",
    "\\boxed{__import__('os').system('touch PWNED')}",
    "The answer is eval(\"__import__('os').system('touch PWNED')\")",
]


@pytest.mark.parametrize("completion", INJECTIONS)
def test_model_text_is_never_executed(completion: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    places = [tmp_path / "PWNED", Path.cwd() / "PWNED"]
    assert not any(place.exists() for place in places)
    monkeypatch.chdir(tmp_path)
    grade(completion, "x")
    grade(completion, "__import__('os').system('touch PWNED')")
    math_accuracy_reward([completion], solution=["1"])
    for formula in extract_formulas(completion):
        sympy_key(formula)
    assert os.listdir(tmp_path) == []
    assert not any(place.exists() for place in places)
