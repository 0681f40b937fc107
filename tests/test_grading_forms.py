"""Where the final answer is read, class by class (issue 20), each with the nearby forms a model writes.

1. an answer stated long before the end of the completion;
2. a plain-text answer after an answer phrase, or a completion that is only the answer, read whole;
3. an empty box after the answer;
4. the reasoning-model reading (only after the last ``</think>``);
5. decimal commas and numeric precision;
6. answer phrases and number boundaries in other languages;
7. comparisons that run out of time or crash: unscorable (``None``), counted, warned about, on a pool.
"""

from __future__ import annotations

import logging
import os
import time

import pytest

from dsdr_trl import _time_limit
from dsdr_trl.grading import (
    FAILED_WARNING_RATE,
    MATH_VERIFY_WINDOW_CHARS,
    extract_final_answer,
    grade,
    grade_batch,
    grade_many,
)

# About 4,000 characters of checking that ends in another number, as long reasoning does after its answer.
WORKING = "\n\n" + "Let me double-check: 3 + 4 = 7, and 7 - 1 = 6. " * 85 + "So in the end x = 10"
assert len(WORKING) > MATH_VERIFY_WINDOW_CHARS

ANSWER_FIRST = [
    "The final answer is $12$.",
    "**Final Answer:** 12",
    "**Final Answer**: $12$",
    "The answer is 12.",
    "Answer: 12",
    "ANSWER: \\(12\\)",
    "the answer is: $$12$$",
    "Final answer\n12",
    "\\boxed{12}",
    "So the answer is $\\boxed{12}$.",
    "La réponse est 12.",
    "Réponse : $12$",
    "答案是 12。",
    "最终答案：12",
]


@pytest.mark.parametrize("answer", ANSWER_FIRST)
def test_an_answer_before_long_working_is_still_the_answer(answer: str) -> None:
    completion = answer + WORKING
    assert grade_many([completion, completion], ["12", "10"]) == [True, False]


def test_an_answer_followed_by_long_prose_without_math_is_still_read() -> None:
    completion = "So $x = 7$." + "\n\nI will now reflect on the method in words, without computing anything else." * 60
    assert len(completion) > MATH_VERIFY_WINDOW_CHARS
    assert grade_many([completion, completion], ["7", "6"]) == [True, False]


def test_the_last_answer_phrase_wins_over_an_earlier_one() -> None:
    completion = "The answer is 3." + WORKING + "\n\nOn reflection, the answer is 12."
    assert grade_many([completion, completion], ["12", "3"]) == [True, False]


def test_an_answer_phrase_at_the_start_of_a_long_hostile_text_is_read_in_bounded_time() -> None:
    completion = "The final answer is $12$.\n" + "\\(" * 100_000
    start = time.perf_counter()
    assert extract_final_answer(completion) == "12"
    assert grade(completion, "12") is True
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        # An expression after an answer phrase is read whole, never as its first number.
        ("The answer is 2x+1", "2x+1", True),
        ("The answer is 2x+1", "2", False),
        ("The answer is 2x", "2x", True),
        ("The answer is 2x", "2", False),
        ("the answer is 2x + 1.", "2x+1", True),
        ("Answer: 2x", "2", False),
        ("Final Answer: $2x$", "2x", True),
        ("**Answer:** 2x + 1", "2", False),
        ("The final answer is 2x+1, as shown above.", "2x+1", True),
        ("The final answer is 2x+1, as shown above.", "2", False),
        ("The answer is x^2+1", "x^2+1", True),
        ("The answer is $2x+1$, which is odd.", "2x+1", True),
        ("The answer is $2$ and $3$.", "2, 3", True),  # several answers form a set, as in Math-Verify
        ("The answer is $2$ and $3$.", "2", False),
        ("The answer is $$\nx = 5\n$$", "5", True),
        (r"Answer: \sqrt{2}", r"\sqrt{2}", True),
        (r"The answer is \frac{\sqrt{505}}{7}.", r"\frac{\sqrt{505}}{7}", True),
        ("The answer is 3xy", "3xy", True),
        ("The answer is 3xy", "3", False),
        (r"The answer is \sin(x)+1", r"\sin(x)+1", True),
        # Prose after the phrase is left to Math-Verify, which reads its number.
        ("The answer is 12 apples.", "12", True),
        ("The answer is 5 cm.", "5", True),
        ("Answer: 2 km", "2", True),
        ("The answer is 2ab", "2ab", True),
        ("Final Answer: The largest $n$ is 34.", "34", True),
        ("The answer is 10,455.", "10455", True),
        # A completion that is only the answer.
        (r"\frac{\sqrt{505}}{7}", r"\frac{\sqrt{505}}{7}", True),
        (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", True),
        ("2x", "2x", True),
        ("2x", "2", False),
        ("$2x$", "2", False),
        ("  2x + 1\n", "2x+1", True),
        ("x = 5", "5", True),
        ("-5", "-5", True),
        ("1,000", "1000", True),
    ],
)
def test_plain_text_answers_are_read_whole(completion: str, gold: str, expected: bool) -> None:
    assert grade(completion, gold) is expected


@pytest.mark.parametrize(
    "completion",
    [
        r"\boxed{12}\boxed{}",
        r"\boxed{12} \boxed{ }",
        "\\boxed{12}.\n\nFinal: \\boxed{}",
        r"\fbox{12}\fbox{}",
        r"$\boxed{12}$ and then $\boxed{}$",
        "\\boxed{12}" + WORKING + "\\boxed{}",
    ],
)
def test_an_empty_box_after_the_answer_is_ignored(completion: str) -> None:
    assert extract_final_answer(completion) == "12"
    assert grade_many([completion, completion], ["12", "10"]) == [True, False]


def test_a_completion_with_only_an_empty_box_has_no_answer() -> None:
    assert extract_final_answer(r"\boxed{}") is None
    assert grade(r"\boxed{ }", "0") is False


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        # TRL's reasoning_accuracy_reward scenarios: only what follows the last </think> counts.
        (r"<think> Reasoning content </think> \boxed{\frac{63}{400}}", r"\frac{63}{400}", True),
        (r"Reasoning content </think> \boxed{\frac{63}{400}}", r"\frac{63}{400}", True),  # opener in the prompt
        (r"<think> Reasoning content </think> \boxed{\frac{64}{400}}", r"\frac{63}{400}", False),
        (r"<think> My answer is \boxed{42} </think> Some other text.", "42", False),
        (r"<think> The answer is \boxed{42} </think> Here's a wrong answer: \boxed{43}.", "42", False),
        (r"<think> Incomplete reasoning \boxed{63} without closing tag", "63", False),
        (r"Correct answer \frac{63}{400} but no reasoning at all", r"\frac{63}{400}", False),
        ("<think>first try </think> wait <think> more </think> The answer is 5.", "5", True),
        ("<think>\n...\n</think>\n\nThe final answer is $12$." + WORKING, "12", True),
    ],
)
def test_reasoning_reading_grades_only_after_the_thinking(completion: str, gold: str, expected: bool) -> None:
    assert grade(completion, gold, reasoning_end="</think>") is expected


def test_the_default_reading_grades_the_whole_completion() -> None:
    assert grade(r"<think> My answer is \boxed{42}", "42") is True


@pytest.mark.parametrize("marker", ["", "  "])
def test_an_empty_reasoning_marker_is_refused(marker: str) -> None:
    with pytest.raises(ValueError, match="non-empty marker"):  # "" would end every text and grade everything False
        grade(r"</think> \boxed{42}", "42", reasoning_end=marker)


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        # A decimal-comma gold is also a number; a list of several numbers, or one with spaces, stays a list.
        ("1.22", "1,22", True),
        (r"\boxed{3.5}", "3,5", True),
        (r"\boxed{3,5}", "3.5", True),
        ("La réponse est 3,5.", "3.5", True),
        (r"\boxed{1.35}", "1,3,5", False),
        (r"\boxed{1,3,5}", "1,3,5", True),
        (r"\boxed{1.3}", "1, 3", False),
        (r"\boxed{58.5}", "58,500", False),  # a thousands group, not a decimal comma
        (r"\boxed{58500}", "58,500", True),
        (r"\boxed{(1, 3)}", "1,3", True),
    ],
)
def test_decimal_commas(completion: str, gold: str, expected: bool) -> None:
    assert grade(completion, gold) is expected


def test_numeric_precision_is_a_setting() -> None:
    # An evaluation suite (lighteval) accepts 0.3333 for 1/3 when the task asks for 4 decimals.
    assert grade(r"\boxed{0.3333}", r"\frac{1}{3}") is False  # default: 6 decimals
    assert grade(r"\boxed{0.333333}", r"\frac{1}{3}") is True
    assert grade(r"\boxed{0.3333}", r"\frac{1}{3}", decimals=4) is True
    assert grade(r"\boxed{0.3334}", r"\frac{1}{3}", decimals=4) is False
    assert grade("The answer is 0.33.", r"\frac{1}{3}", decimals=2) is True
    with pytest.raises(ValueError, match="decimals"):
        grade("1", "1", decimals=-1)


@pytest.mark.parametrize(
    ("completion", "gold"),
    [
        # Numbers right next to CJK characters (lighteval's Chinese cases).
        ("11个男孩 * 9颗弹珠/男孩 = 99颗弹珠。**结论**：Haley总共有99颗弹珠。", "99"),
        ("地块面积 = 72000 / 18 = 4000千克", "4000"),
        ("计划的比例为13/28", "13/28"),
        ("因此，弗兰克一共有**858颗**糖果。", "858"),
        ("答案：１２", "12"),  # full-width digits and colon
        # Chinese and Japanese answer phrases.
        ("答案是12。然后我们验证 3 + 4 = 7。", "12"),
        ("所以答案为 $\\frac{1}{2}$。", "1/2"),
        ("最终答案：$2x+1$", "2x+1"),
        ("答えは 5 です。確認: 2 + 2 = 4", "5"),
        # French, Spanish and German answer phrases and number forms.
        ("Réponse : 12. Vérifions : 3 + 4 = 7.", "12"),
        ("La réponse finale est $\\frac{3}{4}$. En effet 1 + 1 = 2.", "3/4"),
        ("Réponse: Janeth aura encore 220 $ à payer d'ici 12 mois.", "220"),
        ("La réduction est de 100 * 0,30 = 30 $. Le coût final est donc de 100 - 30 = 70", "70"),
        ("Il reste 10\u202f000 € à payer.", "10000"),
        ("La respuesta es 8. Comprobación: 2 + 2 = 4.", "8"),
        ("Die Antwort ist 8. Probe: 2 + 2 = 4.", "8"),
        ("Antwort: $x = 3$. Probe: 2 + 2 = 4.", "3"),
    ],
)
def test_other_languages(completion: str, gold: str) -> None:
    assert grade(completion, gold) is True


@pytest.mark.parametrize("phrase", ["答案是", "La réponse est", "Réponse :", "Die Antwort ist", "La respuesta es"])
def test_other_languages_answer_phrase_before_long_working(phrase: str) -> None:
    completion = f"{phrase} 12.{WORKING}"
    assert grade_many([completion, completion], ["12", "10"]) == [True, False]


# Exponential parse time with nesting in latex2sympy: runs for hours without a limit.
PATHOLOGICAL = r"\boxed{" + "(" * 60 + "x" + ")" * 60 + "}"


def test_a_comparison_that_runs_out_of_time_is_unscorable_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    completions = [PATHOLOGICAL, r"\boxed{2}", PATHOLOGICAL, r"\boxed{3}", r"\boxed{4}"]
    with caplog.at_level(logging.WARNING, logger="dsdr_trl.grading"):
        grades = grade_batch(completions, ["x", "2", "x", "3", "5"], timeout_s=0.5)
    assert grades.verdicts == [None, True, None, True, False]
    assert grades.failed == 2
    assert "2 of 5 answer comparisons" in caplog.text


def test_no_warning_below_the_rate(caplog: pytest.LogCaptureFixture) -> None:
    assert FAILED_WARNING_RATE < 0.05
    with caplog.at_level(logging.WARNING, logger="dsdr_trl.grading"):
        grades = grade_batch([r"\boxed{2}"] * 3, ["2"] * 3)
    assert grades == ([True] * 3, 0)
    assert caplog.text == ""


def test_timeouts_run_in_parallel_on_the_pool() -> None:
    # Four comparisons that each run into the 0.5 s limit: one after another they take 2 s, on 4 workers about 0.5 s.
    start = time.perf_counter()
    grades = grade_batch([PATHOLOGICAL] * 4, ["x"] * 4, timeout_s=0.5, workers=4)
    elapsed = time.perf_counter() - start
    assert grades.failed == 4
    assert elapsed < 1.5, elapsed
    start = time.perf_counter()
    assert grade_batch([PATHOLOGICAL] * 2, ["x"] * 2, timeout_s=0.5, workers=1).failed == 2
    assert time.perf_counter() - start >= 1.0  # serial: one limit after the other


def _crash_on_negative(value: int) -> int:
    if value < 0:
        os._exit(1)  # the child process dies, as an out-of-memory kill would end it
    if value == 0:
        raise ZeroDivisionError("a failing call")
    return value * 10


@pytest.mark.parametrize("workers", [1, 3])
def test_a_crash_or_an_exception_fails_only_its_own_item(workers: int) -> None:
    results = _time_limit.map_with_time_limit(_crash_on_negative, [1, -1, 2, 0, 3, -2, 4], 5.0, workers)
    failed = _time_limit.TIMED_OUT
    assert results == [10, failed, 20, failed, 30, failed, 40]


def test_pool_size_is_checked() -> None:
    with pytest.raises(ValueError, match="workers"):
        _time_limit.map_with_time_limit(_crash_on_negative, [1], 1.0, 0)
    assert 1 <= _time_limit.DEFAULT_WORKERS <= 4


@pytest.mark.parametrize(
    ("completion", "gold"),
    [
        # Two values offered as alternatives are a hedge: neither is rewarded.
        (r"We found \boxed{3}. Wait, that is wrong: \boxed{4}.", "3"),
        (r"\boxed{3}\boxed{4}", "3"),
        ("The answer is 3 or 4.", "3"),
        ("The answer is 3 or 4.", "4"),
        ("The answer is 12, or 13.", "12"),
        ("The answer is $3$ or $4$.", "3"),
        ("La réponse est 3 ou 4.", "3"),
        ("答案是 5 或 6", "5"),
        (r"\boxed{1, 2, 3, 4, 5}", "3"),  # a spray of values is a set, not each of its members
        (r"\boxed{3 \text{ or } 4}", "3"),
        # No answer at all.
        ("", "3"),
        (r"\boxed{}", "3"),
    ],
)
def test_hedges_and_sprays_are_not_rewarded(completion: str, gold: str) -> None:
    assert grade(completion, gold) is False


@pytest.mark.parametrize(
    ("completion", "gold"),
    [("The answer is 12, or so I think.", "12"), ("The final answer is 2x+1, or equivalently 1+2x.", "2x+1")],
)
def test_or_in_prose_is_no_hedge(completion: str, gold: str) -> None:
    assert grade(completion, gold) is True


def test_stop_worker_stops_the_pool() -> None:
    assert _time_limit.map_with_time_limit(abs, [-1, -2], 5.0, 2) == [1, 2]
    processes = [worker.process for worker in _time_limit._WORKERS if worker.process is not None]
    assert processes
    _time_limit.stop_workers()
    assert all(not process.is_alive() for process in processes)
    assert _time_limit.map_with_time_limit(abs, [-3], 5.0) == [3]  # fresh workers take over
