"""Final-answer extraction and grading: the one verifier behind the training reward and the evaluation.

``grade`` / ``grade_many`` decide whether a completion's final answer equals the gold answer. Math-verify
does both halves: its extraction finds the answer in the completion (its regexes and priorities come from
real model outputs and are regression-tested), and its comparison parses LaTeX with a grammar
(latex2sympy2_extended), never evaluating model text as Python. What the grader accepts, by way of it:

- a boxed answer anywhere (``\\boxed{}`` first, the last one wins), and several boxes that together form the
  answer: ``\\boxed{(1, 2)}, \\boxed{(2, 1)}`` or ``\\boxed{k = 45} \\quad \\text{and} \\quad \\boxed{n = 2}``
  grade as the set of their contents (so two different boxed answers on one line, a hedge, are not the
  answer either of them is);
- otherwise an answer in words or plain text: "The final answer is $10,455$.", "Final Answer: The largest $n$
  is 34.", "the number is 1,000.99€", a completion that is just ``-5`` or ``1,000``; else the last math
  region or number, whichever comes last;
- equal values in different forms: ``10/9`` and ``\\frac{10}{9}``, ``\\frac43`` and ``\\frac{4}{3}``, ``28 percent``,
  ``28 pct`` and ``28\\%``, degrees, units (``\\text{ cm}``), dollars, thousands separators, leading zeros
  (``073``), intervals, tuples, sets and lists (``1, 2`` and ``2, 1``), matrices, expressions by symbolic
  equality, assignments (``x=5`` and ``5``) and multiple-choice letters (``\\textbf{(A)}`` and ``A``).

Two things are added around math-verify, each measured on MATH500's reference solutions and math-verify's
own regression cases (docs/grading.md):

- Formatting noise in the last box is removed first (``answer_variants``): trailing punctuation
  (``\\boxed{9.}`` is unreadable to math-verify), styling wrappers (``\\textbf{12}``, ``\\mathrm{12}``), an
  answer-choice label before a value (``\\textbf{(C) }12`` matches ``12`` and ``C``).
- Bounds: math-verify reads the last ``MATH_VERIFY_WINDOW_CHARS`` of a completion (its regexes are quadratic on
  hostile text), with the last box put in front when it lies before that window, since a box wins wherever
  it is. Where math-verify finds nothing, this module's own extractor (``extract_final_answer``: also
  ``\\fbox{}``) gives the answer.

A gold answer is read as the content of a box (``28\\%``, ``(2,1),(1,2)``, ``\\text{Evelyn}``); a gold that is a
whole worked solution is read the way a completion is.

Time limit: math-verify's own limit uses ``signal.alarm`` and fails outside the main thread, so it is
switched off and every comparison (extraction, parsing and the verdict) runs in a killable child process
(``dsdr_trl._time_limit``), limited to ``timeout_s`` seconds each. A comparison that runs out of time
grades as ``False``: the answer was not verified.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from typing import NamedTuple

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from ._time_limit import TIMED_OUT, map_with_time_limit

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MATH_VERIFY_WINDOW_CHARS",
    "MAX_ANSWER_CHARS",
    "answer_variants",
    "extract_boxed_answer",
    "extract_final_answer",
    "grade",
    "grade_many",
]

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
# Math-verify's extraction runs on this many closing characters: its regexes are quadratic on hostile text
# (4,000 repeated "\\(" take about 0.8 s), and a final answer is stated at the end.
MATH_VERIFY_WINDOW_CHARS = 3_000
_TRAILING_NOISE_CHARS = " \t\n.,;:~"
_SPACING_COMMAND_MARKS = ",;:! "  # of the spacing commands \, \; \: \! and "\ "
_STYLING = re.compile(r"\\(?:textbf|mathbf|boldsymbol|text|textrm|mathrm|mbox)\s*\{(.*)\}", re.DOTALL)
_BRACE = re.compile(r"(?<!\\)[{}]")
_PLAIN_WORDS = re.compile(r"[A-Za-z]{2,}(?:\s+[A-Za-z]+)*")
_CHOICE_LETTER = re.compile(r"(?<![A-Za-z\\])[A-E](?![A-Za-z])")
_ANSWER_LABEL = re.compile(
    r"(?:\\(?:textbf|mathbf|text|textrm|mathrm)\s*\{\s*\((?P<braced>[A-E])\)\s*\}|\((?P<plain>[A-E])\))"
    r"(?:\s|~|\\[,;:! ]|\\q?quad(?![A-Za-z]))*(?P<value>.*)",
    re.DOTALL,
)

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
    boxed = extract_boxed_answer(text)
    return boxed if boxed is not None else _unboxed_answer(text)


def _unboxed_answer(text: str) -> str | None:
    """Steps 2 and 3 of ``extract_final_answer``: the answer of a completion that has no box."""
    answer = _after_answer_phrase(text)
    return answer if answer is not None else _last_math_of_final_paragraph(text)


def _bounded(answer: str | None) -> str | None:
    """The stripped answer, or ``None`` if it is empty or longer than ``MAX_ANSWER_CHARS``."""
    if answer is None:
        return None
    answer = answer.strip()
    return answer if 0 < len(answer) <= MAX_ANSWER_CHARS else None


def extract_boxed_answer(text: str) -> str | None:
    """Contents of the last closed ``\\boxed{}``/``\\fbox{}`` (or ``\\boxed 5``), in one pass over the braces."""
    box = _last_box(text)
    return None if box is None else _bounded(text[box.content_start : box.content_end])


class _Box(NamedTuple):
    """Where a box lies in a text: ``text[start:end]`` is ``\\boxed{content}``, content at ``[content_start:content_end]``."""

    start: int
    content_start: int
    content_end: int
    end: int


def _last_box(text: str) -> _Box | None:
    """The last closed ``\\boxed{}``/``\\fbox{}`` (or ``\\boxed 5``) of ``text``, in one pass over the braces."""
    first = min((i for i in (text.find("\\boxed"), text.find("\\fbox")) if i != -1), default=-1)
    if first == -1:
        return None
    last: _Box | None = None
    open_braces: list[tuple[int, int] | None] = []  # (box start, content start) of a box's brace, None for others
    for token in _BOX_TOKEN.finditer(text, first):
        match token.group():
            case "{":
                open_braces.append(None)
            case "}":
                if open_braces and (opened := open_braces.pop()) is not None:
                    last = _Box(opened[0], opened[1], token.start(), token.end())
            case "\\\\" | "\\{" | "\\}":
                pass
            case _ if token.group(1) is not None:  # \boxed 5
                last = _Box(token.start(), token.start(1), token.end(1), token.end(1))
            case _:
                open_braces.append((token.start(), token.end()))
    return last


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


def answer_variants(answer: str) -> tuple[str, ...]:
    """The readings of a final answer once formatting noise is removed; empty if nothing is left.

    Removed, in this order: trailing punctuation and spacing (``5.`` -> ``5``; ``\\boxed{9.}`` alone is
    unreadable to math-verify), then styling commands around the whole answer (``\\textbf{12}`` -> ``12``; plain
    words keep one ``\\text{}``: ``\\mathrm{odd}`` -> ``\\text{odd}``). An answer-choice label in
    front of a value gives two readings, the value and the label: ``\\textbf{(C) }12`` -> ``("12", "\\text{(C)}")``
    (not when the value holds another choice letter: ``(A) B`` is a hedge, kept as one reading).
    """
    answer = _unwrap_styling(_strip_trailing_noise(answer))
    label = _ANSWER_LABEL.match(answer)
    if label is not None and label.group("value") and not _CHOICE_LETTER.search(label.group("value")):
        letter = label.group("braced") or label.group("plain")
        return (_unwrap_styling(label.group("value")), f"\\text{{({letter})}}")
    return (answer,) if answer else ()


def _strip_trailing_noise(answer: str) -> str:
    """``5.`` -> ``5``, ``12\\,;`` -> ``12``, ``(1, 2)\\quad`` -> ``(1, 2)``; linear in ``len(answer)``."""
    end = len(answer)
    while end:
        last = answer[end - 1]
        backslashes = 0
        while backslashes < end - 1 and answer[end - 2 - backslashes] == "\\":
            backslashes += 1
        escaped = backslashes % 2 == 1
        if escaped and last in _SPACING_COMMAND_MARKS:  # \, \; \: \! and "\ "
            end -= 2
        elif not escaped and last in _TRAILING_NOISE_CHARS:
            end -= 1
        elif (command := next((c for c in ("\\qquad", "\\quad") if answer.endswith(c, 0, end)), None)) is not None:
            end -= len(command)
        else:
            break
    return answer[:end].strip()


def _unwrap_styling(answer: str) -> str:
    """``\\textbf{12}`` -> ``12`` (nested too); plain words stay text: ``\\textbf{Evelyn}`` -> ``\\text{Evelyn}``."""
    while (wrapped := _STYLING.fullmatch(answer)) is not None and _is_one_group(inner := wrapped.group(1).strip()):
        if _PLAIN_WORDS.fullmatch(inner):
            return f"\\text{{{inner}}}"
        answer = inner
    return answer


def _is_one_group(inner: str) -> bool:
    """Whether the braces of ``inner`` balance without closing the wrapper's brace early (``a} + \\text{b``)."""
    depth = 0
    for brace in _BRACE.findall(inner):
        depth += 1 if brace == "{" else -1
        if depth < 0:
            return False
    return depth == 0


class _Reading(NamedTuple):
    """What the time-limited child compares with a gold answer, built from one completion in the parent.

    ``texts``: the completion's last ``MATH_VERIFY_WINDOW_CHARS``, with its last box's content cleaned
    (one text per variant of that answer), for math-verify's own extraction. ``fallback``: our extractor's
    answer variants, used only when math-verify finds nothing in any of ``texts``.
    """

    texts: tuple[str, ...]
    fallback: tuple[str, ...]


def _read(completion: str) -> _Reading:
    window_start = max(0, len(completion) - MATH_VERIFY_WINDOW_CHARS)
    box = _last_box(completion)
    boxed = None if box is None else _bounded(completion[box.content_start : box.content_end])
    variants = () if boxed is None else answer_variants(boxed)
    if box is None or not variants:
        texts = (completion[window_start:],)
    elif box.start >= window_start:
        before, after = completion[window_start : box.start], completion[box.end :]
        texts = tuple(f"{before}\\boxed{{{variant}}}{after}" for variant in variants)
    else:  # a box before the window still wins over what follows it, as it would in math-verify's reading
        after = completion[max(box.end, window_start) :]
        texts = tuple(f"\\boxed{{{variant}}}\n{after}" for variant in variants)
    # extract_final_answer's reading, with the box already found above (one pass over the text, not two).
    answer = boxed if boxed is not None else _unboxed_answer(completion)
    return _Reading(texts, () if answer is None else answer_variants(answer))


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
    pairs = [(_read(completion), gold) for completion, gold in zip(completions, golds)]
    return [False if result is TIMED_OUT else result for result in map_with_time_limit(_compare, pairs, timeout_s)]


def _compare(pair: tuple[_Reading, str]) -> bool | None:
    """Runs in the time-limited child: math-verify's verdict on ``(reading, gold)``."""
    reading, gold = pair
    gold_parsed = _parse_gold(gold)
    if not gold_parsed:
        return None
    answers = [parsed for text in reading.texts if (parsed := parse(text, _CONFIG, parsing_timeout=None))]
    if not answers:
        answers = [_parse_boxed(answer) for answer in reading.fallback]
    return any(verify(gold_parsed, answer, timeout_seconds=None) for answer in answers if answer)


def _parse_boxed(answer: str) -> list:
    return parse(f"\\boxed{{{answer}}}", _CONFIG, parsing_timeout=None)


@functools.lru_cache(maxsize=4_096)
def _parse_gold(gold: str) -> list:
    """A gold answer as a box; a gold that is a whole worked solution is read the way a completion is."""
    # Gold answers repeat across a group's completions; the cache lives in the long-lived child.
    return _parse_boxed(gold) or parse(gold, _CONFIG, parsing_timeout=None)
