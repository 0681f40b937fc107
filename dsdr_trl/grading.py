"""Final-answer extraction and grading: the one verifier behind the training reward and the evaluation.

``grade`` / ``grade_many`` / ``grade_batch`` decide whether a completion's final answer equals the gold answer.
The final answer is looked for over the whole completion, in linear time, in this order (docs/grading.md has
the table with examples):

1. the last non-empty ``\\boxed{}`` / ``\\fbox{}`` (several boxes on its line form one answer, as in
   Math-Verify; an empty box is ignored);
2. otherwise the last answer phrase ("the final answer is", "answer:", "la réponse est", "答案是", ...):
   when the rest of its sentence is one math expression (``2x+1``, ``\\frac{\\sqrt{505}}{7}``), that
   expression, read whole; else Math-Verify's reading of that sentence alone (``Final Answer: The largest $n$
   is 34.``, ``The answer is 12 apples``), wherever the phrase lies; two numbers offered as alternatives
   (``3 or 4``) are a hedge and no answer;
3. otherwise a completion that is only a math expression, read whole (``2x``, a ``pmatrix``);
4. otherwise the last math region or number (Math-Verify's reading of the closing text).

Math-Verify does the reading of (1), (2)'s prose and (4) (its regexes and priorities come from real model outputs
and are regression-tested) and every comparison: it parses LaTeX with a grammar (latex2sympy2_extended), never
evaluating model text as Python. Its regexes are quadratic on hostile text, so it reads a bounded window: the
``MATH_VERIFY_WINDOW_CHARS`` that end at the last math, with the last box or answer phrase put in front when it
lies before them. Before that, text in other scripts is made readable: full-width forms become ASCII, a number
next to CJK characters is spaced from them, and a non-English answer phrase is given to Math-Verify in English.

Formatting noise in the last box is removed first (``answer_variants``): trailing punctuation, styling wrappers
(``\\textbf{12}``), an answer-choice label before a value (``\\textbf{(C) }12`` matches ``12`` and ``C``). A pair
of integers joined by one comma (``1,22``, not the thousands group ``1,000``) also reads as a decimal number.
Numbers are compared to ``decimals`` decimal places (6 by default).

A gold answer is read as the content of a box (``28\\%``, ``(2,1),(1,2)``, ``\\text{Evelyn}``); a gold that is a
whole worked solution is read the way a completion is.

Reasoning models: with ``reasoning_end="</think>"`` only the text after the last ``</think>`` is graded, and a
completion whose reasoning never ends grades ``False``, as TRL's ``reasoning_accuracy_reward`` does.

Time limit: math-verify's own limit uses ``signal.alarm`` and fails outside the main thread, so it is
switched off and every comparison (extraction, parsing and the verdict) runs in a killable child process of
a small pool (``dsdr_trl._time_limit``), limited to ``timeout_s`` seconds each. A comparison that runs out of
time or crashes is unscorable: ``None``, counted in ``Grades.failed`` and warned about above
``FAILED_WARNING_RATE``.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from typing import NamedTuple

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from ._time_limit import DEFAULT_WORKERS, TIMED_OUT, map_with_time_limit

__all__ = [
    "DEFAULT_DECIMALS",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_WORKERS",
    "FAILED_WARNING_RATE",
    "MATH_VERIFY_WINDOW_CHARS",
    "MAX_ANSWER_CHARS",
    "Grades",
    "answer_variants",
    "extract_boxed_answer",
    "extract_final_answer",
    "grade",
    "grade_batch",
    "grade_many",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 3.0
DEFAULT_DECIMALS = 6  # math-verify's float_rounding default
# Above this share of comparisons timed out or crashed in one batch, a warning says so.
FAILED_WARNING_RATE = 0.01
# Longer "answers" are prose caught by a fallback, or a runaway box; they also bound parsing cost.
MAX_ANSWER_CHARS = 1_000
# Math-verify's extraction runs on this many characters ending at the last math: its regexes are quadratic on
# hostile text (4,000 repeated "\\(" take about 0.8 s). A box or answer phrase before them is put in front.
MATH_VERIFY_WINDOW_CHARS = 3_000
_PHRASE_EXCERPT_CHARS = 500  # what math-verify reads after an answer phrase that lies before its window

_BOX_TOKEN = re.compile(r"\\(?:boxed|fbox)(?:\s*\{|\s+([^\s{}$]+))|\\\\|\\[{}]|[{}]")
_EMPTY_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{\s*\}")
_ANSWER_PHRASE = re.compile(
    r"(?i)(?:"
    # English: "The final answer is", "Final Answer:", "**Answer:**", "**Final Answer**:", "answer is"
    r"\b(?:final\s+answer|answer)(?:\s*\*\*)?\s*(?:is\b|:)|\bfinal\s+answer(?:\s*\*\*)?[ \t]*(?=\n)"
    # French: "La réponse est", "Réponse :", "la réponse finale est"; Spanish: "La respuesta es", "Respuesta:"
    r"|\br[ée]ponse(?:\s+finale)?(?:\s*\*\*)?\s*(?:est\b|:)|\brespuesta(?:\s+final)?(?:\s*\*\*)?\s*(?:es\b|:)"
    # German: "Die Antwort ist", "Antwort:", "Endgültige Antwort:"
    r"|\b(?:endg[üu]ltige\s+)?antwort(?:\s*\*\*)?\s*(?:ist\b|lautet\b|:)"
    # Chinese and Japanese: "答案是", "答案为", "答案：", "最终答案是", "答えは", "答え："
    r"|(?:最终|最后的?)?答案\s*(?:是|为|為|:|：)|答え\s*(?:は|:|：)"
    r")[\s:：*]*"
)
_FINAL_WORD = re.compile(r"(?i)final|endg|最终|最后")
# Where the expression after an answer phrase ends: a line end, a full stop, or a comma or word that starts prose.
_SENTENCE_END = re.compile(
    r"\n|\.(?=\s|$)|。|,\s+(?!(?:or|ou|oder)\s+\$?-?\d)(?=[^\W\d_]{2,})"
    r"|\s+(?:since|because|which|as|where|when|if|for|so|but)\b",
    re.I,
)
# Two numbers offered as alternatives after an answer phrase ("3 or 4", "5 或 6"): a hedge, not an answer.
_HEDGE = re.compile(r"\d\s*\$?,?\s+(?:or|ou|oder|o)\s+\$?\s*-?\d|\d\s*\$?\s*(?:或者?|还是)\s*\$?\s*-?\d", re.I)
_MATH_DELIMITER = re.compile(r"\\\$|\$\$|\$|\\\(|\\\)|\\\[|\\\]")
_CLOSER = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}
_DELIMITER_PAIRS = tuple(_CLOSER.items())
_TRAILING_PUNCTUATION = ".,;"
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
# A pair of integers joined by one comma that is not a thousands group: "1,22" is also the decimal 1.22.
_DECIMAL_COMMA = re.compile(r"-?\d+,(?!\d{3}$)\d+")
# A number as math-verify reads plain text (thousands separators, decimal comma, percent): left to it.
_PLAIN_NUMBER = re.compile(r"[-+]?[\d.,\s']*\d[\d.,\s']*(?:\\?%)?")
_TEXT_ARGUMENT = re.compile(r"\\(?:text|textrm|textbf|mathrm|mbox|operatorname|begin|end)\s*\{[^{}]*\}")
_LETTER_RUN = re.compile(r"(?<!\\)(?<![^\W\d_])[^\W\d_]{2,}")  # letters of any script
# Letter runs that are math, not prose, in an answer: function and operator names.
_MATH_WORDS = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln lg exp lim max min gcd lcm mod sqrt pi "
    "deg inf infty det dx dy dz dt".split()
)
# Short letter runs that are prose words rather than a product of variables (``xy``).
_SHORT_WORDS = frozenset(
    "an as at be by do go he if in is it me my no of on or so to up us we the and are but can for has her his "
    "its let not now one our see two was who why yes you all any get use".split()
)
_CJK = "\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af"  # kana, CJK ideographs, hangul
_NOT_IN_AN_EXPRESSION = re.compile(rf"[$?!;{_CJK}]|\\boxed|\\fbox|\\begin\{{(?:align|equation)")
# Text from other scripts made readable to math-verify's ASCII patterns.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {
    0x3000: " ",
    0x3002: ". ",
    0x3001: ", ",
    0x00A0: " ",
    0x2009: " ",
    0x202F: " ",
    0x2212: "-",
}
_CJK_NUMBER_BOUNDARY = re.compile(rf"(?<=[{_CJK}])(?=[-+*(\d$\\])|(?<=[\d$*)])(?=[{_CJK}])")

_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


class _DropDisabledTimeoutWarning(logging.Filter):
    """math-verify warns that its own time limit is off; here the child process is the limit."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _logger_name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_logger_name).addFilter(_DropDisabledTimeoutWarning())


def extract_final_answer(text: str) -> str | None:
    """Return the final answer of a completion, or ``None`` when it states none.

    Looked for over the whole text in this order, the first that exists wins:

    1. the last non-empty ``\\boxed{...}`` or ``\\fbox{...}`` (balanced braces; also ``\\boxed 5``);
    2. the expression after the last answer phrase ("final answer is", "the answer is", "answer:", and their
       French, Spanish, German, Chinese and Japanese forms), up to the end of its sentence, without math
       delimiters or a closing full stop;
    3. the last math region (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``);
    4. a completion that is only a math expression (``2x``, ``\\frac{\\sqrt{505}}{7}``).

    An empty answer, or one longer than ``MAX_ANSWER_CHARS``, counts as none (the next place is tried).
    Linear in ``len(text)``.
    """
    text = _readable(text)
    for find in (extract_boxed_answer, _phrase_answer, _last_math_region, _whole_expression):  # the first found wins
        if (answer := find(text)) is not None:
            return answer
    return None


def _readable(text: str) -> str:
    """Full-width forms as ASCII, spaces as plain spaces, a number next to CJK characters spaced from them."""
    if text.isascii():
        return text
    return _CJK_NUMBER_BOUNDARY.sub(" ", text.translate(_FULL_WIDTH))


def _bounded(answer: str | None) -> str | None:
    """The stripped answer, or ``None`` if it is empty or longer than ``MAX_ANSWER_CHARS``."""
    if answer is None:
        return None
    answer = answer.strip()
    return answer if 0 < len(answer) <= MAX_ANSWER_CHARS else None


def extract_boxed_answer(text: str) -> str | None:
    """Contents of the last closed, non-empty ``\\boxed{}``/``\\fbox{}`` (or ``\\boxed 5``), in one pass."""
    return _box_content(text, _last_box(text))


def _box_content(text: str, box: _Box | None) -> str | None:
    return None if box is None else _bounded(text[box.content_start : box.content_end])


class _Box(NamedTuple):
    """Where a box lies in a text: ``text[start:end]`` is ``\\boxed{content}``, content at ``[content_start:content_end]``."""

    start: int
    content_start: int
    content_end: int
    end: int


def _last_box(text: str) -> _Box | None:
    """The last closed, non-empty ``\\boxed{}``/``\\fbox{}`` (or ``\\boxed 5``) of ``text``, in one pass over the braces."""
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
                opened = open_braces.pop() if open_braces else None
                if opened is not None and text[opened[1] : token.start()].strip():  # an empty box is no answer
                    last = _Box(opened[0], opened[1], token.start(), token.end())
            case "\\\\" | "\\{" | "\\}":
                pass
            case _ if token.group(1) is not None:  # \boxed 5
                last = _Box(token.start(), token.start(1), token.end(1), token.end(1))
            case _:
                open_braces.append((token.start(), token.end()))
    return last


def _last_answer_phrase(text: str) -> re.Match[str] | None:
    last = None
    for last in _ANSWER_PHRASE.finditer(text):
        pass
    return last


def _phrase_answer(text: str, phrase: re.Match[str] | None = None) -> str | None:
    """The rest of the sentence after the last answer phrase (a math region that opens it is read to its end)."""
    phrase = phrase or _last_answer_phrase(text)
    if phrase is None:
        return None
    rest = text[phrase.end() : phrase.end() + MAX_ANSWER_CHARS + 16]
    scan_from = 0
    for opener, closer in _DELIMITER_PAIRS:
        if rest.startswith(opener):
            close = rest.find(closer, len(opener))
            if close == -1:
                return None
            scan_from = close + len(closer)
            break
    end = _SENTENCE_END.search(rest, scan_from)
    sentence = rest[: end.start() if end else len(rest)].strip().strip("*")
    return _bounded(_strip_delimiters(sentence))


def _last_math_region(text: str) -> str | None:
    """The content of the last closed ``$...$``, ``$$...$$``, ``\\(...\\)`` or ``\\[...\\]``, in one pass."""
    opened: tuple[str, int] | None = None  # (opening delimiter, content start)
    last = None
    for token in _MATH_DELIMITER.finditer(text):
        delimiter = token.group()
        if opened is None:
            if delimiter in _CLOSER:
                opened = (delimiter, token.end())
        elif delimiter == _CLOSER[opened[0]]:
            last = (opened[1], token.start())
            opened = None
    return None if last is None else _bounded(text[last[0] : last[1]])


def _whole_expression(text: str) -> str | None:
    """The completion itself when it is one math expression (``2x``, ``$\\frac{1}{2}$``), without its delimiters."""
    if len(text) > 2 * MAX_ANSWER_CHARS:
        return None
    answer = _bounded(_strip_delimiters(text.strip()))
    return answer if answer is not None and _is_symbolic(answer) else None


def _is_symbolic(answer: str) -> bool:
    """Whether ``answer`` is one math expression that math-verify's plain-text patterns would misread.

    Not a plain number (math-verify reads ``1,000``, ``3,5`` and ``12%`` as numbers), not prose (a word that is
    neither a math name nor a short product of variables written against a coefficient, as in ``3xy``; so
    ``12 apples`` and ``5 cm`` are a number and its unit), not several math regions or a box, and not a chain of
    equalities (``a = b = 5``: math-verify reads its last side).
    """
    if _PLAIN_NUMBER.fullmatch(answer) or _NOT_IN_AN_EXPRESSION.search(answer) or answer.count("=") > 1:
        return False
    answer = _TEXT_ARGUMENT.sub("", answer)
    for word in _LETTER_RUN.finditer(answer):
        lowered = word.group().lower()
        attached = word.start() > 0 and not answer[word.start() - 1].isspace()
        if lowered not in _MATH_WORDS and (len(lowered) > 3 or lowered in _SHORT_WORDS or not attached):
            return False
    return True


def _strip_delimiters(answer: str) -> str:
    """``$5$.`` -> ``5``: drop one pair of enclosing math delimiters and closing punctuation."""
    answer = answer.rstrip(_TRAILING_PUNCTUATION).strip()
    for opener, closer in _DELIMITER_PAIRS:
        if len(answer) >= len(opener) + len(closer) and answer.startswith(opener) and answer.endswith(closer):
            inner = answer[len(opener) : -len(closer)]
            return answer if opener in inner else inner.strip().rstrip(_TRAILING_PUNCTUATION)
    return answer


class _Reading(NamedTuple):
    """What the time-limited child compares with a gold answer, built from one completion in the parent.

    ``stages``: texts for math-verify's extraction, in order of precedence; the first stage in which any text
    yields an answer is compared (its texts are alternative readings of one answer, any of which may match).
    An answer read whole by this module is given as ``\\boxed{answer}``.
    """

    stages: tuple[tuple[str, ...], ...]


_NOTHING = _Reading(())


def _read(completion: str) -> _Reading:
    text = _readable(completion)
    box = _last_box(text)
    boxed = _box_content(text, box)
    if box is not None and boxed is not None and (variants := answer_variants(boxed)):
        return _Reading((_box_windows(text, box, variants), _as_boxes(variants)))
    phrase = _last_answer_phrase(text)
    answer = _phrase_answer(text, phrase) if phrase is not None else _whole_expression(text)
    window = (_window(text, phrase),)
    if answer is not None and _is_symbolic(answer):
        return _Reading((_as_boxes(answer_variants(answer)), window))
    if answer is not None and phrase is not None and _HEDGE.search(answer):
        return _NOTHING
    if answer is not None and phrase is not None:  # a number or prose: math-verify reads the phrase's sentence
        return _Reading(((_english_phrase(phrase) + answer,), window, _as_boxes(answer_variants(answer))))
    answer = _last_math_region(text)
    return _Reading((window,) if answer is None else (window, _as_boxes(answer_variants(answer))))


def _as_boxes(answers: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"\\boxed{{{answer}}}" for answer in answers)


def _box_windows(text: str, box: _Box, variants: tuple[str, ...]) -> tuple[str, ...]:
    """Math-verify's windows around the last box, its content replaced by each variant; empty boxes left out."""
    window_start = max(0, len(text) - MATH_VERIFY_WINDOW_CHARS)
    after = _EMPTY_BOX.sub("", text[max(box.end, window_start) :])
    before = text[window_start : box.start] if box.start >= window_start else ""
    separator = "" if box.start >= window_start else "\n"  # a box before the window still wins over what follows
    return tuple(f"{before}\\boxed{{{variant}}}{separator}{after}" for variant in variants)


def _window(text: str, phrase: re.Match[str] | None) -> str:
    """What math-verify reads of a completion without a box: the closing text that ends at the last math, with the
    last answer phrase in front when it lies before, and in English when it is not."""
    end = _end_of_last_math(text)
    start = max(0, end - MATH_VERIFY_WINDOW_CHARS)
    if phrase is None:
        return text[start:end]
    english = _english_phrase(phrase)
    if phrase.start() >= start:
        return text[start : phrase.start()] + english + text[phrase.end() : end]
    excerpt = text[phrase.end() : min(phrase.end() + _PHRASE_EXCERPT_CHARS, start)]
    return english + excerpt + "\n" + text[max(start, phrase.end()) : end]


def _english_phrase(phrase: re.Match[str]) -> str:
    """The answer phrase as math-verify's English patterns know it (English ones as written)."""
    written = phrase.group()
    if written.isascii():
        return written
    final = _FINAL_WORD.search(written) is not None
    if written.rstrip(" \t\n*").endswith((":", "：")):
        return "Final answer: " if final else "Answer: "
    return "The final answer is " if final else "The answer is "


def _end_of_last_math(text: str) -> int:
    """Where math-verify's window ends: the end of the text, or just after the last digit or math delimiter when
    the closing ``MATH_VERIFY_WINDOW_CHARS`` have none (an answer followed by a long stretch of prose)."""
    tail_start = len(text) - MATH_VERIFY_WINDOW_CHARS
    if tail_start <= 0:
        return len(text)
    last = max(text.rfind(mark) for mark in "0123456789$\\")
    return len(text) if last >= tail_start or last == -1 else last + 64


def answer_variants(answer: str) -> tuple[str, ...]:
    """The readings of a final answer once formatting noise is removed; empty if nothing is left.

    Removed, in this order: trailing punctuation and spacing (``5.`` -> ``5``; ``\\boxed{9.}`` alone is
    unreadable to math-verify), then styling commands around the whole answer (``\\textbf{12}`` -> ``12``; plain
    words keep one ``\\text{}``: ``\\mathrm{odd}`` -> ``\\text{odd}``). An answer-choice label in
    front of a value gives two readings, the value and the label: ``\\textbf{(C) }12`` -> ``("12", "\\text{(C)}")``
    (not when the value holds another choice letter: ``(A) B`` is a hedge, kept as one reading). A pair of
    integers joined by one comma also reads as a decimal number: ``1,22`` -> ``("1,22", "1.22")``.
    """
    answer = _unwrap_styling(_strip_trailing_noise(answer))
    label = _ANSWER_LABEL.match(answer)
    if label is not None and label.group("value") and not _CHOICE_LETTER.search(label.group("value")):
        letter = label.group("braced") or label.group("plain")
        return (_unwrap_styling(label.group("value")), f"\\text{{({letter})}}")
    return _with_decimal_point(answer) if answer else ()


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


class Grades(NamedTuple):
    """The verdicts of one batch, and how many comparisons timed out or crashed (their verdicts are ``None``)."""

    verdicts: list[bool | None]
    failed: int


def grade(
    completion: str,
    gold: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    decimals: int = DEFAULT_DECIMALS,
    reasoning_end: str | None = None,
) -> bool | None:
    """Whether the final answer of ``completion`` equals ``gold``; ``None`` when that cannot be decided.

    ``None``: ``gold`` cannot be parsed, or the comparison ran longer than ``timeout_s`` or crashed. No final
    answer grades ``False``. Numbers are compared to ``decimals`` decimal places. With ``reasoning_end`` (such
    as ``"</think>"``) only the text after its last occurrence is graded, and a completion without it grades
    ``False``. Safe to call from any thread. For many completions, ``grade_many`` runs the comparisons in parallel.
    """
    return grade_many([completion], [gold], timeout_s=timeout_s, decimals=decimals, reasoning_end=reasoning_end)[0]


def grade_many(
    completions: Sequence[str],
    golds: Sequence[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    decimals: int = DEFAULT_DECIMALS,
    reasoning_end: str | None = None,
    workers: int = DEFAULT_WORKERS,
) -> list[bool | None]:
    """``grade`` for each pair ``(completions[i], golds[i])``; see ``grade_batch``."""
    return grade_batch(
        completions, golds, timeout_s=timeout_s, decimals=decimals, reasoning_end=reasoning_end, workers=workers
    ).verdicts


def grade_batch(
    completions: Sequence[str],
    golds: Sequence[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    decimals: int = DEFAULT_DECIMALS,
    reasoning_end: str | None = None,
    workers: int = DEFAULT_WORKERS,
) -> Grades:
    """``grade`` for each pair ``(completions[i], golds[i])``, on up to ``workers`` killable child processes.

    Also counts the comparisons that timed out or crashed (verdict ``None``), and logs a warning when they are
    more than ``FAILED_WARNING_RATE`` of the batch: a limit too short for the machine turns correct answers into
    unscorable rows.
    """
    if len(completions) != len(golds):
        raise ValueError(f"{len(completions)} completions but {len(golds)} gold answers.")
    if decimals < 0:
        raise ValueError(f"decimals must be at least 0, got {decimals}.")
    readings = [_read(text) if text is not None else _NOTHING for text in _final_parts(completions, reasoning_end)]
    _warm_up()
    pairs = [(reading, gold, decimals) for reading, gold in zip(readings, golds)]
    results = map_with_time_limit(_compare, pairs, timeout_s, workers)
    failed = sum(result is TIMED_OUT for result in results)
    if failed > FAILED_WARNING_RATE * len(results):
        logger.warning(
            "%d of %d answer comparisons ran past their %.1f s limit or crashed; they are unscorable (None). "
            "A busy machine may need a longer timeout_s.",
            failed,
            len(results),
            timeout_s,
        )
    return Grades([None if result is TIMED_OUT else result for result in results], failed)


@functools.cache
def _warm_up() -> None:
    """One comparison in this process, so that every forked worker starts with the LaTeX parser built.

    The parser builds its tables on first use (about 0.2 s); in a fresh worker that would count against the time
    limit of its first comparison, after every worker that was killed for overrunning.
    """
    _compare((_Reading(((r"\boxed{\frac{1}{2} + x^2}",),)), "x", DEFAULT_DECIMALS))


def _final_parts(completions: Sequence[str], reasoning_end: str | None) -> list[str | None]:
    """Each completion, or with ``reasoning_end`` the text after its last occurrence (``None`` if it never ends)."""
    if reasoning_end is None:
        return list(completions)
    if not reasoning_end.strip():  # "" would be found at every text's end and grade every completion False
        raise ValueError(f"reasoning_end must be a non-empty marker such as '</think>', or None, got {reasoning_end!r}")
    parts: list[str | None] = []
    for text in completions:
        cut = text.rfind(reasoning_end)
        parts.append(None if cut == -1 else text[cut + len(reasoning_end) :])
    return parts


def _compare(pair: tuple[_Reading, str, int]) -> bool | None:
    """Runs in a time-limited child: math-verify's verdict on ``(reading, gold)`` to ``decimals`` places."""
    reading, gold, decimals = pair
    gold_parsed = _parse_gold(gold)
    if not gold_parsed:
        return None
    for stage in reading.stages:
        answers = [parsed for text in stage if (parsed := parse(text, _CONFIG, parsing_timeout=None))]
        if answers:
            return any(verify(gold_parsed, answer, float_rounding=decimals, timeout_seconds=None) for answer in answers)
    return False


def _parse_boxed(answer: str) -> list:
    return parse(f"\\boxed{{{answer}}}", _CONFIG, parsing_timeout=None)


@functools.lru_cache(maxsize=4_096)
def _parse_gold(gold: str) -> list:
    """A gold answer as a box (both readings of a decimal comma); a whole worked solution as a completion."""
    # Gold answers repeat across a group's completions; the cache lives in the long-lived children.
    gold = _readable(gold).strip()
    readings = [reading for variant in _with_decimal_point(gold) for reading in _parse_boxed(variant)]
    return readings or parse(gold, _CONFIG, parsing_timeout=None)


def _with_decimal_point(answer: str) -> tuple[str, ...]:
    """``1,22`` -> ``("1,22", "1.22")``: a pair of integers joined by one comma may be a decimal comma."""
    return (answer, answer.replace(",", ".")) if _DECIMAL_COMMA.fullmatch(answer) else (answer,)
