"""Formula extraction for DSDR's formula-level diversity (Eq. 7-8: the set S(o) of a completion).

``extract_formulas(text)`` returns the set of normalised formula strings found in a completion.

What counts as a formula
    The contents of ``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]`` and of the environments
    ``equation``, ``align``, ``gather``, ``multline``, ``eqnarray`` (each also starred). A math
    region holds one formula per line: it is split at ``\\\\`` and alignment ``&`` is dropped, at its
    top level. Line-structure environments (``aligned``, ``gathered``, ``split``, ``alignedat``) are
    transparent, so ``\\[\\begin{aligned} a&=b \\\\ c&=d \\end{aligned}\\]`` gives ``a=b`` and ``c=d``;
    content environments (``pmatrix``, ``cases``, ``array``, ...) and brace groups stay whole, so a
    matrix is one formula.

Delimiter rules
    ``\\$`` is a dollar sign, not a delimiter; ``\\\\[`` is a line break followed by ``[``. An opener
    without its closer yields nothing (the behaviour of the extractor the paper follows; taking the
    rest of the text would turn prose into "formulas"). Inline math (``$``, ``\\(``) does not cross
    a blank line, as in TeX: ``costs $5.\\n\\nThen $x$`` yields ``x``, not ``5.\\n\\nThen``.

Normalisation (insignificant differences only)
    Whitespace removed (``x+1`` and ``x + 1`` are one formula), except one space after a control
    word followed by a letter (``\\cdot b`` must not become ``\\cdotb``); ``\\left``/``\\right`` and
    ``\\big``-style sizers dropped; ``\\dfrac``/``\\tfrac`` -> ``\\frac``; ``\\displaystyle`` and
    friends, spacing commands (``\\,`` ``\\;`` ``\\:`` ``\\!`` ``\\quad`` ``\\qquad``, control space),
    ``\\label{..}``, ``\\tag{..}``, ``\\nonumber``, ``\\notag`` removed; trailing ``.``, ``,``, ``;``
    dropped. ``\\boxed{X}`` is unwrapped to ``X``: the box is typography, and keeping both the boxed
    and the bare form would count one answer twice. Empty results are dropped.

Identity
    ``extract_formulas`` compares formulas as normalised strings (``formula_identity="normalized"``).
    ``sympy_key`` is the opt-in ``formula_identity="sympy"``: see its docstring.

Cost
    One left-to-right scan: openers are found by a regular expression without nested
    quantifiers, closers by ``str.find`` jumps whose results are remembered, so thousands of unclosed
    delimiters cost no rescans. Every later step is linear in the region it works on. Regions longer
    than ``MAX_REGION_CHARS`` and formulas longer than ``MAX_FORMULA_CHARS`` are dropped: real
    formulas are far shorter (the longest line in the MATH500 reference solutions is a few hundred
    characters), such lengths come from delimiters paired across prose, and formula sets are
    gathered across processes every step, so unbounded strings would cost memory and bandwidth.
"""

from __future__ import annotations

import functools
import re

import sympy
from latex2sympy2_extended.latex2sympy2 import ConversionConfig, latex2sympy
from latex2sympy2_extended.math_normalization import NormalizationConfig

from ._time_limit import TIMED_OUT, map_with_time_limit

__all__ = ["MAX_FORMULA_CHARS", "MAX_REGION_CHARS", "SYMPY_KEY_TIMEOUT_S", "extract_formulas", "sympy_key"]

MAX_REGION_CHARS = 20_000
MAX_FORMULA_CHARS = 1_000
SYMPY_KEY_TIMEOUT_S = 1.0

_DISPLAY_ENVIRONMENTS = ("equation", "align", "gather", "multline", "eqnarray")
# Backslash pairs are consumed first so that the parity of a backslash run decides what follows it.
_OPENER = re.compile(
    r"(?:\\\\)+|\\\$|\$\$|\$|\\\(|\\\[|\\begin\{((?:" + "|".join(_DISPLAY_ENVIRONMENTS) + r")\*?)\}"
)
_CLOSER_OF = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}
_INLINE_OPENERS = frozenset({"$", "\\("})
_PARAGRAPH_BREAK = "\n\n"

_TRANSPARENT_ENVIRONMENTS = frozenset({"aligned", "gathered", "split", "alignedat"})
_LINE_TOKEN = re.compile(
    r"\\\\(?:\[[^\]]{0,16}\])?"  # line break, with its optional spacing argument `\\[2pt]`
    r"|\\[{}&]"  # escaped brace or ampersand: plain content
    r"|\\(begin|end)\{([a-zA-Z]{1,32}\*?)\}"
    r"|[{}&]"
)
_NOISE = re.compile(
    r"(?<!\\)\\(?:"
    r"(?:left|right|[bB]igg?[lrm]?)(?![a-zA-Z])\.?"  # delimiter sizers, with the null delimiter `.`
    r"|[,;:!]|\s"  # spacing commands and control space
    r"|(?:q?quad|(?:display|text|script)style|nonumber|notag)(?![a-zA-Z])"
    r"|(?:label|tag)\{[^{}]*\}"
    r")"
)
# Whitespace is insignificant in math except after a control word: `\cdot b` is not `\cdotb`.
_WHITESPACE = re.compile(r"(\\[a-zA-Z]++)\s+(?=[a-zA-Z])|\s+")
_BOXED_TOKEN = re.compile(r"\\\\|\\boxed\{|\\[{}]|[{}]")
_TRAILING_PUNCTUATION = ".,;"


def extract_formulas(text: str) -> set[str]:
    """Return S(o): the normalised formulas of ``text`` (see the module docstring for the rules)."""
    formulas: set[str] = set()
    closers = _CloserFinder(text)
    position = 0
    while (opener := _OPENER.search(text, position)) is not None:
        token = opener.group()
        position = opener.end()
        if token[0] == "\\" and token[1] in "\\$":  # backslash pairs, escaped dollar
            continue
        environment = opener.group(1)
        closer = f"\\end{{{environment}}}" if environment else _CLOSER_OF[token]
        close = closers.find(closer, position)
        if close == -1:
            continue
        if token in _INLINE_OPENERS:
            paragraph_break = closers.find(_PARAGRAPH_BREAK, position)
            if paragraph_break != -1 and paragraph_break < close:
                continue  # unclosed within its paragraph; the closer may open the next formula
        region = text[position:close]
        position = close + len(closer)
        if len(region) > MAX_REGION_CHARS:
            continue
        for line in _split_lines(region):
            formula = _normalise(line)
            if formula and len(formula) <= MAX_FORMULA_CHARS:
                formulas.add(formula)
    return formulas


class _CloserFinder:
    """``str.find`` for unescaped tokens, remembering each answer.

    The scan only moves forward, so an occurrence found from an earlier start is still the first one
    from any later start up to it, and "not found" stays true: each token's search covers the text
    at most once, which keeps the scan linear however many openers lack their closer.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._next: dict[str, int] = {}

    def find(self, token: str, start: int) -> int:
        found = self._next.get(token)
        if found is not None and (found == -1 or found >= start):
            return found
        text = self._text
        found = text.find(token, start)
        while found != -1 and token[0] in "\\$" and _is_escaped(text, found):
            found = text.find(token, found + 1)
        self._next[token] = found
        return found


def _is_escaped(text: str, index: int) -> bool:
    """Whether ``text[index]`` follows an odd run of backslashes (``\\$``, but not ``\\\\$``)."""
    start = index
    while start > 0 and text[start - 1] == "\\":
        start -= 1
    return (index - start) % 2 == 1


def _split_lines(region: str) -> list[str]:
    """Split a math region into its lines: at top-level ``\\\\``, dropping top-level ``&``.

    Top level means outside brace groups and outside content environments (matrices, cases, ...);
    ``\\begin``/``\\end`` of line-structure environments are removed.
    """
    if "\\\\" not in region and "&" not in region and "\\begin" not in region:
        return [region]
    lines: list[str] = []
    pieces: list[str] = []
    brace_depth = 0
    content_environments = 0
    kept_from = 0
    for token in _LINE_TOKEN.finditer(region):
        text = token.group()
        at_top = brace_depth == 0 and content_environments == 0
        if text == "{":
            brace_depth += 1
        elif text == "}":
            brace_depth = max(0, brace_depth - 1)
        elif token.group(1):
            environment = token.group(2).rstrip("*")
            if environment in _TRANSPARENT_ENVIRONMENTS and at_top:
                pieces.append(region[kept_from : token.start()])
                kept_from = token.end()
            elif environment not in _TRANSPARENT_ENVIRONMENTS:
                delta = 1 if token.group(1) == "begin" else -1
                content_environments = max(0, content_environments + delta)
        elif at_top and text == "&":
            pieces.append(region[kept_from : token.start()])
            kept_from = token.end()
        elif at_top and text.startswith("\\\\"):
            pieces.append(region[kept_from : token.start()])
            kept_from = token.end()
            lines.append("".join(pieces))
            pieces = []
    pieces.append(region[kept_from:])
    lines.append("".join(pieces))
    return lines


def _normalise(formula: str) -> str:
    """Remove the differences that do not change a formula (module docstring, "Normalisation")."""
    formula = _NOISE.sub("", formula)
    if "\\" in formula:
        formula = _WHITESPACE.sub(_squeeze_whitespace, formula)
    else:
        formula = "".join(formula.split())
    formula = formula.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    if "\\boxed{" in formula:
        formula = _unwrap_boxed(formula)
    return formula.rstrip(_TRAILING_PUNCTUATION)


def _squeeze_whitespace(match: re.Match[str]) -> str:
    control_word = match.group(1)
    return control_word + " " if control_word else ""


def _unwrap_boxed(formula: str) -> str:
    """Replace each ``\\boxed{X}`` by ``X`` (brace-balanced; an unclosed box keeps its contents)."""
    pieces: list[str] = []
    opened_by_box: list[bool] = []
    kept_from = 0
    for token in _BOXED_TOKEN.finditer(formula):
        text = token.group()
        if text == "\\boxed{":
            pieces.append(formula[kept_from : token.start()])
            kept_from = token.end()
            opened_by_box.append(True)
        elif text == "{":
            opened_by_box.append(False)
        elif text == "}" and opened_by_box and opened_by_box.pop():
            pieces.append(formula[kept_from : token.start()])
            kept_from = token.end()
    pieces.append(formula[kept_from:])
    return "".join(pieces)


@functools.lru_cache(maxsize=65_536)
def sympy_key(formula: str) -> str:
    """Canonical SymPy form of a normalised formula, or the formula itself when that is not available.

    ``x+1`` and ``1+x`` share a key, as do ``2x`` and ``x \\cdot 2``: SymPy orders the terms of sums and
    products. Nothing is simplified or evaluated (``2+3`` and ``5``, ``\\sqrt{8}`` and ``2\\sqrt{2}``
    keep distinct keys), because consecutive steps of one derivation are equal in value and must stay
    distinct formulas. An equation ``a=b`` has the key of the unordered pair of its sides, so ``b=a``
    is the same formula, while ``x-1=0`` and ``x=1`` are not.

    The text is parsed by latex2sympy2_extended (a grammar, never ``eval``), with case kept (``X`` and
    ``x`` differ), in a child process limited to ``SYMPY_KEY_TIMEOUT_S`` seconds
    (``dsdr_trl._time_limit``); a formula that fails to parse or runs out of time is its own key.
    Results are cached per process.
    """
    key = map_with_time_limit(_canonical_sympy_form, [formula], SYMPY_KEY_TIMEOUT_S)[0]
    return formula if key is TIMED_OUT or key is None else key


_KEEP_CASE = ConversionConfig(lowercase_symbols=False)
# Repairs compact LaTeX the grammar rejects (`\frac12`, `\sqrt2`); leaves units, text and equations alone.
_REPAIR_COMPACT_LATEX = NormalizationConfig(
    basic_latex=True, units=False, malformed_operators=True, nits=False, boxed="all", equations=False
)


def _canonical_sympy_form(formula: str) -> str | None:
    """Runs in the time-limited child: the ``srepr`` of the parsed formula, ``None`` if it does not parse."""
    try:
        expression = latex2sympy(formula, normalization_config=_REPAIR_COMPACT_LATEX, conversion_config=_KEEP_CASE)
    except Exception:  # noqa: BLE001 - any parser failure means "no canonical form"
        return None
    if isinstance(expression, sympy.Equality):
        sides = sorted((sympy.srepr(expression.lhs), sympy.srepr(expression.rhs)))
        return f"Eq({sides[0]}, {sides[1]})"
    return sympy.srepr(expression)
