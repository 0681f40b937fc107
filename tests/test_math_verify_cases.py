"""The grader against the regression cases of Math-Verify's own test suite (real model outputs, expected verdicts).

Math-Verify's tests call it with a per-test choice of extractors (``match_types``) and float precision; the
grader has one reading for every completion, the one the training reward and the evaluation use. The cases
go through the public ``grade_many`` with the gold answer stripped of its math delimiters, as the benchmark
loaders give it.
"""

from __future__ import annotations

import json

import pytest

from dsdr_trl.grading import grade_many
from tests.tiny import SHARED_DATA_DIR

CASES = SHARED_DATA_DIR / "peers" / "math_verify_cases.jsonl"
MIN_AGREEMENTS = 230

# Every case (0-based line of the file) where the grader's verdict differs from the expected one, and why.
DISAGREEMENTS = {
    31: "'Answer $ \\n 9 \\n $' vs 9: the case's test reads LaTeX only, where inline $...$ may not span lines; "
    "the grader also reads plain numbers and finds the 9",
    32: "'Answer \\( \\n 9 \\n \\)' vs 9: as the line above, for \\( ... \\)",
}


def _strip_math_delimiters(gold: str) -> str:
    """``$28\\%$`` -> ``28\\%``; ``$1$ and $2$`` stays: its delimiters do not enclose the whole answer."""
    gold = gold.strip()
    for delimiter in ("$$", "$"):
        inner = gold.removeprefix(delimiter).removesuffix(delimiter)
        if len(inner) + 2 * len(delimiter) == len(gold) and "$" not in inner:
            return inner.strip()
    return gold


def test_strip_math_delimiters() -> None:
    assert _strip_math_delimiters(" $28\\%$ ") == "28\\%"
    assert _strip_math_delimiters("$$\\frac{1}{2}$$") == "\\frac{1}{2}"
    assert _strip_math_delimiters("$1$ and $2$") == "$1$ and $2$"
    assert _strip_math_delimiters("10/9") == "10/9"


@pytest.mark.slow  # about 10 s: 233 comparisons, several on long completions
def test_agreement_with_math_verify_cases() -> None:
    if not CASES.is_file():
        pytest.skip(f"Math-Verify's cases not found at {CASES}: put the project's shared data at <repo>/../shared/data")
    rows = [json.loads(line) for line in CASES.read_text().splitlines()]
    verdicts = grade_many([row["pred"] for row in rows], [_strip_math_delimiters(row["gold"]) for row in rows])
    disagreements = {i for i, (row, verdict) in enumerate(zip(rows, verdicts)) if (verdict is True) != row["expected"]}
    assert len(rows) - len(disagreements) >= MIN_AGREEMENTS
    assert {i: rows[i]["pred"] for i in disagreements} == {i: rows[i]["pred"] for i in DISAGREEMENTS}
    assert len(rows) - len(disagreements) == 231  # measured: 231 of 233
