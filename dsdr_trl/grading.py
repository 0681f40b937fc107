"""Final-answer extraction and grading: the one verifier behind the training reward and the evaluation.

``extract_final_answer`` finds the answer a completion commits to; ``grade`` / ``grade_many`` compare it
with the gold answer using math-verify, which parses LaTeX with a grammar (latex2sympy2_extended) and
never evaluates model text as Python. math-verify already equates the usual surface forms: compact
LaTeX (``\\frac43``, ``11\\sqrt2``, ``\\dfrac``), degrees (``^\\circ``), units (``\\text{ cm}``),
percent (``\\%``), dollars (``\\$``), thousands separators, leading zeros (``073``), intervals, tuples,
sets and lists of answers (``1, 2`` and ``2, 1``), matrices, expressions in variables (by symbolic
equality), assignments (``x=5`` and ``5``) and multiple-choice letters (``\\textbf{(A)}`` and ``A``).

Time limit: math-verify's own limit uses ``signal.alarm`` and fails outside the main thread, so it is
switched off and every comparison instead runs in a killable child process
(``dsdr_trl._time_limit``), limited to ``timeout_s`` seconds each. A comparison that runs out of time
grades as ``False``: the answer was not verified.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from ._time_limit import TIMED_OUT, map_with_time_limit

__all__ = ["DEFAULT_TIMEOUT_S", "MAX_ANSWER_CHARS", "extract_boxed_answer", "extract_final_answer", "grade", "grade_many"]

DEFAULT_TIMEOUT_S = 3.0
# Longer "answers" are prose caught by a fallback, or a runaway box; they also bound parsing cost.
MAX_ANSWER_CHARS = 1_000

_BOX_TOKEN = re.compile(r"\\(?:boxed|fbox)(?:\s*\{|\s+([^\s{}$]+))|\\\\|\\[{}]|[{}]")
_ANSWER_PHRASE = re.compile(r"(?i)\b(?:final answer|the answer|answer)\s*(?:is\b|:)[\s:]*")
# The last math region of the final paragraph, searched in a bounded tail so lazy matching stays cheap.
_MATH_REGION = re.compile(r"\$\$(.+?)\$\$|(?<!\\)\$(.+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_FINAL_PARAGRAPH_CHARS = 2_000
_DELIMITER_PAIRS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_TRAILING_PUNCTUATION = ".,;"

_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


class _DropDisabledTimeoutWarning(logging.Filter):
    """math-verify warns that its own time limit is off; here the child process is the limit."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _logger_name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_logger_name).addFilter(_DropDisabledTimeoutWarning())


def extract_final_answer(text: str) -> str | None:
    """Return the final answer of a completion, or ``None`` when it states none.

    Looked for in this order, the first that exists wins:

    1. the last ``\\boxed{...}`` or ``\\fbox{...}`` (balanced braces; also ``\\boxed 5``);
    2. the text after the last "final answer is", "the answer is" or "answer:", up to the end of its
       line, without math delimiters or a closing full stop;
    3. the last math region (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``) of the last paragraph.

    An empty answer, or one longer than ``MAX_ANSWER_CHARS``, counts as none (the next place is tried).
    Linear in ``len(text)``.
    """
    for find in (extract_boxed_answer, _after_answer_phrase, _last_math_of_final_paragraph):
        answer = find(text)
        if answer is not None:
            return answer
    return None


def _bounded(answer: str | None) -> str | None:
    """The stripped answer, or ``None`` if it is empty or longer than ``MAX_ANSWER_CHARS``."""
    if answer is None:
        return None
    answer = answer.strip()
    return answer if 0 < len(answer) <= MAX_ANSWER_CHARS else None


def extract_boxed_answer(text: str) -> str | None:
    """Contents of the last closed ``\\boxed{}``/``\\fbox{}`` (or ``\\boxed 5``), in one pass over the braces."""
    first = min((i for i in (text.find("\\boxed"), text.find("\\fbox")) if i != -1), default=-1)
    if first == -1:
        return None
    last: str | None = None
    open_braces: list[int | None] = []  # content start of a box's brace, None for any other brace
    for token in _BOX_TOKEN.finditer(text, first):
        match token.group():
            case "{":
                open_braces.append(None)
            case "}":
                if open_braces and (start := open_braces.pop()) is not None:
                    last = text[start : token.start()]
            case "\\\\" | "\\{" | "\\}":
                pass
            case _ if token.group(1) is not None:  # \boxed 5
                last = token.group(1)
            case _:
                open_braces.append(token.end())
    return _bounded(last)


def _after_answer_phrase(text: str) -> str | None:
    last = None
    for last in _ANSWER_PHRASE.finditer(text):
        pass
    if last is None:
        return None
    line_end = text.find("\n", last.end())
    line = text[last.end() : line_end if line_end != -1 else len(text)]
    return _bounded(_strip_delimiters(line.strip().strip("*")))  # markdown bold around the answer


def _last_math_of_final_paragraph(text: str) -> str | None:
    tail = text.rstrip()[-_FINAL_PARAGRAPH_CHARS:]
    paragraph = tail[tail.rfind("\n\n") + 1 :]
    last = None
    for last in _MATH_REGION.finditer(paragraph):
        pass
    if last is None:
        return None
    return _bounded(next(group for group in last.groups() if group is not None))


def _strip_delimiters(answer: str) -> str:
    """``$5$.`` -> ``5``: drop one pair of enclosing math delimiters and closing punctuation."""
    answer = answer.rstrip(_TRAILING_PUNCTUATION).strip()
    for opener, closer in _DELIMITER_PAIRS:
        if len(answer) >= len(opener) + len(closer) and answer.startswith(opener) and answer.endswith(closer):
            return answer[len(opener) : -len(closer)].strip().rstrip(_TRAILING_PUNCTUATION)
    return answer


def grade(completion: str, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool | None:
    """Whether the final answer of ``completion`` equals ``gold``; ``None`` if ``gold`` cannot be parsed.

    No final answer, or a comparison that runs longer than ``timeout_s``, grades ``False``.
    Safe to call from any thread. For many completions, ``grade_many`` saves the per-call overhead.
    """
    return grade_many([completion], [gold], timeout_s=timeout_s)[0]


def grade_many(
    completions: Sequence[str], golds: Sequence[str], *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[bool | None]:
    """``grade`` for each pair ``(completions[i], golds[i])``, in one exchange with the worker process."""
    if len(completions) != len(golds):
        raise ValueError(f"{len(completions)} completions but {len(golds)} gold answers.")
    pairs = [(extract_final_answer(completion), gold) for completion, gold in zip(completions, golds)]
    return [False if result is TIMED_OUT else result for result in map_with_time_limit(_compare, pairs, timeout_s)]


def _compare(pair: tuple[str | None, str]) -> bool | None:
    """Runs in the time-limited child: math-verify's verdict on ``(answer, gold)``."""
    answer, gold = pair
    gold_parsed = _parse_gold(gold)
    if not gold_parsed:
        return None
    if answer is None:
        return False
    answer_parsed = parse(f"\\boxed{{{answer}}}", _CONFIG, parsing_timeout=None)
    return verify(gold_parsed, answer_parsed, timeout_seconds=None)


@functools.lru_cache(maxsize=4_096)
def _parse_gold(gold: str) -> list:
    # Gold answers repeat across a group's completions; the cache lives in the long-lived child.
    return parse(f"\\boxed{{{gold}}}", _CONFIG, parsing_timeout=None)
