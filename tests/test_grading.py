"""Answer extraction and grading: unit cases per answer format, and the figures on the shared data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from dsdr_trl.grading import MATH_VERIFY_WINDOW_CHARS, answer_variants, extract_final_answer, grade, grade_many
from tests.processes import kill, processes_with_environment

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOLUTIONS = DATA / "solutions" / "math500_solutions.jsonl"
BENCHMARKS = ("aime24", "aime25", "math500", "minervamath", "olympiadbench")

# Rows of the derangement (solution i against the answer of row i + 1) that are skipped because the two
# answers are equal: as strings, or as values (the remaining pairs must all be rejected).
EQUAL_NEIGHBOUR_ANSWERS = {
    22: "'5' and 'x=5': an assignment grades as its value",
    186: "'7' and '7'",
    403: "'3' and '3'",
}


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        pytest.skip(
            f"the project's shared data (public benchmark files, not shipped with the package) was not found at "
            f"{path}: put a copy of it at ../shared/data beside the repository"
        )
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{\frac{1}{2}} holds", r"\frac{1}{2}"),
        (r"\boxed{a} first, then \boxed{b{c}}", "b{c}"),
        (r"\boxed 5", "5"),
        (r"\fbox{7}.", "7"),
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),
        (r"\boxed{8} and an unclosed \boxed{9", "8"),
        ("The final answer is $42$.", "42"),
        ("The answer is: 3/4", "3/4"),
        ("Answer: **17**", "17"),
        ("Thus $x = 5$.", "x = 5"),
        ("We get \\[ y = 2 \\]", "y = 2"),
        ("Thus $x = 5$.\n\nNo math in the last paragraph.", "x = 5"),  # found anywhere in the text
        (r"\boxed{unclosed", None),
        (r"\boxed{}", None),
        ("", None),
        ("no answer here", None),
    ],
)
def test_extract_final_answer(text: str, expected: str | None) -> None:
    assert extract_final_answer(text) == expected


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        (r"\frac43", r"\frac{4}{3}"),
        (r"11\sqrt2", r"11\sqrt{2}"),
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),
        ("30", r"30^\circ"),
        (r"5 \text{ cm}", "5"),
        (r"12\%", "12"),
        (r"[0, 1)", "[0,1)"),
        (r"(1, 2)", "(1,2)"),
        (r"\{2,1\}", r"\{1,2\}"),
        ("2, 1", "1, 2"),
        (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
        ("(x+1)^2", "x^2+2x+1"),
        ("073", "73"),
        (r"\textbf{(A)}", r"\text{(A)}"),
        ("C", r"\text{(C)}"),
        ("x=5", "5"),
        ("10000000000", "10^{10}"),
        (r"\text{Evelyn}", r"\text{Evelyn}"),
    ],
)
def test_equivalent_forms_are_accepted(answer: str, gold: str) -> None:
    assert grade(f"So the answer is \\boxed{{{answer}}}.", gold) is True


@pytest.mark.parametrize(
    ("answer", "gold"),
    [("3", "2"), ("1.3333", r"\frac{4}{3}"), ("B", r"\text{(A)}"), ("[0,1]", "[0,1)"), ("x^2+1", "(x+1)^2"), ("-73", "73")],
)
def test_different_answers_are_rejected(answer: str, gold: str) -> None:
    assert grade(f"\\boxed{{{answer}}}", gold) is False


@pytest.mark.parametrize(
    ("completion", "gold"),
    [
        # Several boxes that together form the answer (OlympiadBench's multi-answer problems).
        (r"\boxed{(1, 2)}, \boxed{(2, 1)}", "(1,2),(2,1)"),
        (r"$$\boxed{k = 45} \quad \text{and} \quad \boxed{n = 2}$$", "k = 45, n = 2"),
        # A final answer in plain text, without a box or math delimiters.
        ("Final Answer: The largest $n$ is 34.", "34"),
        ("the number is not 10 which is 1,000.99€", "1000.99"),
        ("-5", "-5"),
        ("1,000", "1000"),
        ("The answer is x^2+1", "x^2+1"),  # math-verify finds nothing here: our extractor's fallback does
        (r"Answer: \sqrt{2}", r"\sqrt{2}"),
        # Percent words and plain fractions.
        ("28 percent", r"28\%"),
        ("28 pct", r"28\%"),
        (r"\frac{10}{9}", "10/9"),
        # Formatting noise inside the box.
        (r"\boxed{9.}", "9"),
        (r"\boxed{12\,;}", "12"),
        (r"\boxed{\textbf{12}}", "12"),
        (r"\boxed{\mathrm{12}}", "12"),
        (r"\boxed{\textbf{\text{Evelyn}}}", r"\text{Evelyn}"),
        (r"\boxed{\textbf{(C) }12}", "12"),
        (r"\boxed{\textbf{(C) }12}", r"\text{(C)}"),
        (r"\boxed{(C)\ 12}", "C"),
        (r"\boxed{007}", "7"),
        (r"\fbox{7}.", "7"),
        # A gold answer that is a whole worked solution is read the way a completion is.
        (r"\boxed{7}", r"We get $x = 2$, so the answer is $\boxed{7}$."),
    ],
)
def test_model_output_forms_are_accepted(completion: str, gold: str) -> None:
    assert grade(completion, gold) is True


@pytest.mark.parametrize(
    ("completion", "gold"),
    [
        (r"We found \boxed{3}. Wait, that is wrong: \boxed{12}.", "12"),  # a hedge on one line is a set {3, 12}
        (r"\boxed{(A) B}", "B"),  # a label before another choice letter is not split into two readings
        (r"\boxed{(A) B}", "A"),
        (r"\boxed{\textbf{(C) }12}", "13"),
        (r"\boxed{\textbf{(C) }12}", r"\text{(D)}"),
        (r"\boxed{2}", r"We get $x = 2$, so the answer is $\boxed{7}$."),  # the gold's answer, not its first value
    ],
)
def test_model_output_forms_reject_other_answers(completion: str, gold: str) -> None:
    assert grade(completion, gold) is False


@pytest.mark.parametrize(
    ("answer", "variants"),
    [
        ("5.", ("5",)),
        (r"12\,;", ("12",)),
        (r"(1, 2)\quad", ("(1, 2)",)),
        ("x \\\\", ("x \\\\",)),  # a LaTeX line break is no punctuation
        (r"\textbf{12}", ("12",)),
        (r"\mathbf{\mathrm{3\sqrt{2}}}", (r"3\sqrt{2}",)),
        (r"\mathrm{odd}", (r"\text{odd}",)),
        (r"\text{a} + \text{b}", (r"\text{a} + \text{b}",)),
        (r"\textbf{(C) }12", ("12", r"\text{(C)}")),
        (r"(B) \frac{\pi}{2}", (r"\frac{\pi}{2}", r"\text{(B)}")),
        (r"\text{(C)}", ("(C)",)),
        ("(A) B", ("(A) B",)),
        ("...", ()),
    ],
)
def test_answer_variants(answer: str, variants: tuple[str, ...]) -> None:
    assert answer_variants(answer) == variants


def test_a_box_before_the_window_still_wins() -> None:
    check = "Let me check: 3 + 4 = 7. " * (MATH_VERIFY_WINDOW_CHARS // 20)
    completion = f"\\boxed{{12}}\n{check}"
    assert len(check) > MATH_VERIFY_WINDOW_CHARS
    assert grade_many([completion, completion, check], ["12", "7", "7"]) == [True, False, True]


def test_missing_answer_is_false_and_unparsable_gold_is_none() -> None:
    assert grade("I do not know.", "5") is False
    assert grade(r"\boxed{5}", "") is None
    assert grade_many([r"\boxed{5}", r"\boxed{6}", "nothing"], ["5", "5", "5"]) == [True, False, False]


def test_grade_many_checks_lengths() -> None:
    with pytest.raises(ValueError, match="2 completions but 1"):
        grade_many(["a", "b"], ["1"])


def test_reference_solutions_are_accepted() -> None:
    rows = _read_jsonl(SOLUTIONS)
    verdicts = grade_many([row["solution"] for row in rows], [row["answer"] for row in rows])
    assert [row["answer"] for row, verdict in zip(rows, verdicts) if verdict is not True] == []


@pytest.mark.slow  # about 4 s: 497 math-verify comparisons
def test_solutions_against_other_answers_are_rejected() -> None:
    rows = _read_jsonl(SOLUTIONS)
    pairs = [(i, (i + 1) % len(rows)) for i in range(len(rows)) if i not in EQUAL_NEIGHBOUR_ANSWERS]
    verdicts = grade_many([rows[i]["solution"] for i, _ in pairs], [rows[j]["answer"] for _, j in pairs])
    accepted = [(rows[i]["answer"], rows[j]["answer"]) for (i, j), verdict in zip(pairs, verdicts) if verdict]
    assert len(accepted) <= 0.002 * len(pairs), accepted
    assert accepted == []  # measured: every one of the 497 pairs is rejected


NOISY_BOX_FORMS = ("{}.", r"\textbf{{{}}}", r"\mathrm{{{}}}\,", r"\textbf{{(E) }}{}", "00{}")


def _with_noisy_box(solution: str, form: str) -> str:
    """The solution with its last box's content put in ``form`` (the formatting noise of human-written solutions)."""
    start = solution.rindex("\\boxed{") + len("\\boxed{")
    answer = extract_final_answer(solution)
    assert answer is not None and solution.startswith(answer, start)
    return solution[:start] + form.format(answer) + solution[start + len(answer) :]


@pytest.mark.slow  # about 5 s: 997 math-verify comparisons
def test_noise_in_the_box_neither_hides_nor_fakes_an_answer() -> None:
    rows = _read_jsonl(SOLUTIONS)
    forms = [NOISY_BOX_FORMS[i % len(NOISY_BOX_FORMS)] for i in range(len(rows))]
    forms = [form if form != "00{}" or row["answer"].isdigit() else "{}." for form, row in zip(forms, rows)]
    noisy = [_with_noisy_box(row["solution"], form) for row, form in zip(rows, forms)]
    own = grade_many(noisy, [row["answer"] for row in rows])
    assert [(row["answer"], form) for row, form, verdict in zip(rows, forms, own) if verdict is not True] == []
    others = [(i, (i + 1) % len(rows)) for i in range(len(rows)) if i not in EQUAL_NEIGHBOUR_ANSWERS]
    verdicts = grade_many([noisy[i] for i, _ in others], [rows[j]["answer"] for _, j in others])
    assert [(forms[i], rows[j]["answer"]) for (i, j), verdict in zip(others, verdicts) if verdict] == []


def test_skipped_neighbours_really_are_equal() -> None:
    rows = _read_jsonl(SOLUTIONS)
    skipped = sorted(EQUAL_NEIGHBOUR_ANSWERS)
    verdicts = grade_many([f"\\boxed{{{rows[i]['answer']}}}" for i in skipped], [rows[i + 1]["answer"] for i in skipped])
    assert verdicts == [True] * len(skipped)


@pytest.mark.slow  # up to 7 s per benchmark (1,506 gold answers in all)
@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_benchmark_gold_answers_accept_themselves(benchmark: str) -> None:
    rows = _read_jsonl(DATA / "benchmarks" / benchmark / "test.jsonl")
    golds = [str(row["answer"]) for row in rows]
    verdicts = grade_many([f"\\boxed{{{gold}}}" for gold in golds], golds)
    misses = [gold for gold, verdict in zip(golds, verdicts) if verdict is not True]
    assert len(misses) <= 0.004 * len(rows), misses
    assert misses == []  # measured: 30, 30, 500, 272 and 674 of 30, 30, 500, 272 and 674


def test_time_limit_holds_in_a_worker_thread() -> None:
    # latex2sympy's parse time grows exponentially with nesting: this runs for hours without a limit.
    pathological = r"\boxed{" + "(" * 60 + "x" + ")" * 60 + "}"
    verdicts: list[bool | None] = []
    worker = threading.Thread(target=lambda: verdicts.append(grade(pathological, "x", timeout_s=0.5)))
    start = time.perf_counter()
    worker.start()
    worker.join(timeout=10)
    elapsed = time.perf_counter() - start
    assert not worker.is_alive()
    assert 0.5 <= elapsed < 2.0  # it ran into the limit, and the limit held
    assert verdicts == [None]  # unscorable, not wrong
    assert grade(r"\boxed{2}", "2") is True  # a fresh worker took over


@pytest.mark.parametrize("workers", [1, 3])
def test_the_worker_processes_end_when_their_parent_leaves_without_exit_handlers(workers: int) -> None:
    # os._exit skips the exit handler that stops the daemon workers; each then sees its pipe close and ends (each
    # child also closes its siblings' copies of the parent's pipe ends, which only a pool of several checks).
    marker = f"DSDR_TIME_LIMIT_TEST={uuid.uuid4().hex}"
    name, value = marker.split("=")
    parent = (
        "import os; from dsdr_trl import _time_limit as t; "
        f"t.map_with_time_limit(abs, [-1, -2, -3], 5, {workers}); print(len(t._WORKERS)); os._exit(0)"
    )
    started = subprocess.run(
        [sys.executable, "-c", parent], check=True, timeout=60, env={**os.environ, name: value}, capture_output=True,
        text=True,
    )  # fmt: skip
    assert int(started.stdout) == workers
    deadline = time.monotonic() + 10
    while (left := processes_with_environment(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    kill(left)
    assert left == []
