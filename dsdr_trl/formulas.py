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

import re
import string
from collections.abc import Sequence

import sympy
from latex2sympy2_extended.latex2sympy2 import ConversionConfig, latex2sympy
from latex2sympy2_extended.math_normalization import NormalizationConfig

from ._time_limit import TIMED_OUT, map_with_time_limit

__all__ = ["FORMULA_IDENTITIES", "MAX_FORMULA_CHARS", "MAX_REGION_CHARS", "SYMPY_KEY_TIMEOUT_S", "extract_formulas", "sympy_key", "sympy_keys"]

# The values of `formula_identity`: how two formulas count as the same in Eq. 7.
FORMULA_IDENTITIES = ("normalized", "sympy")
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
_BOXED_TOKEN = re.compile(r"\\\\|\\boxed\{|\\[{}]|[{}]")
_TRAILING_PUNCTUATION = ".,;"
_ASCII_LETTERS = frozenset(string.ascii_letters)


def extract_formulas(text: str) -> set[str]:
    """Return S(o): the normalised formulas of ``text`` (see the module docstring for the rules)."""
    formulas: set[str] = set()
    # First occurrence of each closer at or after the position it was searched from. The scan only
    # moves forward, so an answer stays right until the position passes it, and "absent" (-1) stays
    # right for good: each closer's search covers the text once, however many openers lack it.
    next_at: dict[str, int] = {}
    position = 0
    search = _OPENER.search
    while (opener := search(text, position)) is not None:
        token = opener[0]
        position = opener.end()
        closer = _CLOSER_OF.get(token)
        if closer is None:
            if token[1] in "\\$":  # backslash pairs, escaped dollar
                continue
            closer = f"\\end{{{opener[1]}}}"
        close = next_at.get(closer, -2)
        if close < position and close != -1:  # not searched yet (-2), or found before the current position
            close = text.find(closer, position)
            if close > 0 and text[close - 1] == "\\":  # rare: maybe escaped, take the careful path
                close = _find_unescaped(text, closer, position)
            next_at[closer] = close
        if close == -1:
            continue
        if token in _INLINE_OPENERS:
            paragraph_break = next_at.get(_PARAGRAPH_BREAK, -2)
            if -1 < paragraph_break < position or paragraph_break == -2:
                paragraph_break = next_at[_PARAGRAPH_BREAK] = text.find(_PARAGRAPH_BREAK, position)
            if -1 < paragraph_break < close:
                continue  # unclosed within its paragraph; the closer may open the next formula
        region = text[position:close]
        position = close + len(closer)
        if len(region) > MAX_REGION_CHARS:
            continue
        # Only a line break, an alignment mark or an environment can split a region (most have none).
        lines = _split_lines(region) if "\\\\" in region or "&" in region or "\\begin" in region else (region,)
        for line in lines:
            formula = _normalise(line)
            if formula and len(formula) <= MAX_FORMULA_CHARS:
                formulas.add(formula)
    return formulas


def _find_unescaped(text: str, token: str, start: int) -> int:
    """``text.find(token, start)``, skipping occurrences escaped by an odd run of backslashes."""
    found = text.find(token, start)
    while found != -1 and _is_escaped(text, found):
        found = text.find(token, found + 1)
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
    ``\\begin``/``\\end`` of line-structure environments are removed (they contain ``\\\\`` or ``&``).
    """
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
    if "\\" not in formula:  # no command: only whitespace and punctuation can differ
        return "".join(formula.split()).rstrip(_TRAILING_PUNCTUATION)
    words = _NOISE.sub("", formula).split()
    kept = words[:1]
    for word in words[1:]:  # whitespace goes, except between a control word and a letter: `\cdot b`, not `\cdotb`
        previous = kept[-1]
        if word[0] in _ASCII_LETTERS and previous[-1] in _ASCII_LETTERS:
            control_word = previous[previous.rfind("\\") + 1 :] if "\\" in previous else ""
            if control_word.isascii() and control_word.isalpha():
                kept.append(" ")
        kept.append(word)
    formula = "".join(kept)
    formula = formula.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    if "\\boxed{" in formula:
        formula = _unwrap_boxed(formula)
    return formula.rstrip(_TRAILING_PUNCTUATION)


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
    return sympy_keys([formula])[0]


_SYMPY_KEY_CACHE: dict[str, str] = {}
_SYMPY_KEY_CACHE_SIZE = 65_536


def sympy_keys(formulas: Sequence[str]) -> list[str]:
    """``[sympy_key(f) for f in formulas]``, with every uncached formula parsed in one round trip to the child."""
    missing = list(dict.fromkeys(formula for formula in formulas if formula not in _SYMPY_KEY_CACHE))
    if missing:
        keys = map_with_time_limit(_canonical_sympy_form, missing, SYMPY_KEY_TIMEOUT_S)
        if len(_SYMPY_KEY_CACHE) + len(missing) > _SYMPY_KEY_CACHE_SIZE:
            _SYMPY_KEY_CACHE.clear()
        for formula, key in zip(missing, keys):
            _SYMPY_KEY_CACHE[formula] = formula if key is TIMED_OUT or key is None else key
    return [_SYMPY_KEY_CACHE[formula] for formula in formulas]


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
