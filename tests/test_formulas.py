"""Formula extraction (Eq. 7's S(o)) and the opt-in SymPy identity."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dsdr_trl.formulas import MAX_FORMULA_CHARS, extract_formulas, sympy_key

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOLUTIONS = DATA / "solutions" / "math500_solutions.jsonl"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"We have $x + 1$ and $x+1$.", {"x+1"}),
        (r"$$\frac{a}{b}$$", {r"\frac{a}{b}"}),
        (r"so \( \dfrac{1}{2} \) and \(\tfrac12\)", {r"\frac{1}{2}", r"\frac12"}),
        (r"\[ [0,1] \]", {"[0,1]"}),
        (r"\[ \left( x \right). \]", {"(x)"}),
        (r"\[\left. f \right|_{0}^{1}\]", {"f|_{0}^{1}"}),
        (r"\[ \displaystyle \sum_i a_i \, b_i \quad \]", {r"\sum_ia_ib_i"}),
        (r"$x = 1,$ and $y=2;$", {"x=1", "y=2"}),
        (r"costs \$5 and \$6, but $y$ is math", {"y"}),
        (r"\begin{equation} E = mc^2 \label{eq:1} \end{equation}", {"E=mc^2"}),
        (r"\begin{equation*} a \end{equation*}", {"a"}),
        (r"\begin{align*} a &= b + c \\ &= d. \end{align*}", {"a=b+c", "=d"}),
        (r"\begin{align} p &= q \nonumber \\ r &= s \end{align}", {"p=q", "r=s"}),
        (r"\begin{gather} u \\ v \end{gather}", {"u", "v"}),
        (r"\begin{multline*} m + n \end{multline*}", {"m+n"}),
        (r"\begin{eqnarray*} x &=& y \end{eqnarray*}", {"x=y"}),
        (r"\[\begin{aligned} a&=b \\ c&=d \end{aligned}\]", {"a=b", "c=d"}),
        (r"$\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}$", {r"\begin{pmatrix}1&2\\3&4\end{pmatrix}"}),
        (r"$|x| = \begin{cases} x & x \ge 0 \\ -x & x<0 \end{cases}$", {r"|x|=\begin{cases}x&x\ge0\\-x&x<0\end{cases}"}),
        (r"so $\boxed{5}$ and $x=\boxed{\frac{1}{2}}$", {"5", r"x=\frac{1}{2}"}),
        (r"$a \cdot b$ and $\sin  x$", {r"a\cdot b", r"\sin x"}),
        (r"\\[2pt] is a line break, not math; $q$ is", {"q"}),
        (r"$ $ $.$ \(\) \[ , \]", set()),
        ("costs $5.\n\nThen $x$ is math", {"x"}),
        (r"open $x and \( y and \[ z and \begin{align} w", set()),
        ("", set()),
        ("no math at all", set()),
    ],
)
def test_extract_formulas_cases(text: str, expected: set[str]) -> None:
    assert extract_formulas(text) == expected


def test_spacing_variants_are_one_formula() -> None:
    variants = [r"$x+1$", r"$x + 1$", r"\( x  +  1 \)", "$x\n+\t1$", r"\[x+1.\]", r"$$ x+1 $$"]
    assert {frozenset(extract_formulas(text)) for text in variants} == {frozenset({"x+1"})}


def test_overlong_formula_is_dropped() -> None:
    long_formula = "x+" * MAX_FORMULA_CHARS
    assert extract_formulas(f"${long_formula}1$ and $y$") == {"y"}


@pytest.fixture(scope="module")
def solutions() -> list[dict]:
    if not SOLUTIONS.exists():
        pytest.skip(
            f"the project's shared data (public MATH500 solutions, not shipped with the package) was not found at "
            f"{SOLUTIONS}: put a copy of it at ../shared/data beside the repository"
        )
    return [json.loads(line) for line in SOLUTIONS.read_text().splitlines()]


def test_every_reference_solution_with_math_yields_formulas(solutions: list[dict]) -> None:
    with_math = [row["solution"] for row in solutions if any(t in row["solution"] for t in ("$", r"\(", r"\[", r"\begin{"))]
    assert len(with_math) == len(solutions)  # every MATH500 reference solution contains math
    empty = [text[:80] for text in with_math if not extract_formulas(text)]
    assert empty == []


def test_no_formula_keeps_its_delimiters(solutions: list[dict]) -> None:
    for row in solutions:
        for formula in extract_formulas(row["solution"]):
            assert "$" not in formula.replace(r"\$", "")
            for delimiter in (r"\(", r"\)", r"\[", r"\]", r"\begin{align", r"\end{align", r"\begin{equation"):
                assert delimiter not in formula, (formula, row["unique_id"])


@pytest.mark.parametrize(
    ("first", "second"),
    [("x+1", "1+x"), ("2x", r"x \cdot 2"), ("a=b", "b=a"), (r"\frac{1}{2}", r"\frac12"), ("ab", "ba")],
)
def test_sympy_key_identifies_equal_forms(first: str, second: str) -> None:
    assert sympy_key(first) == sympy_key(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [("2+3", "5"), (r"\sqrt{8}", r"2\sqrt{2}"), ("x-1=0", "x=1"), ("X", "x"), ("x+1", "x+2")],
)
def test_sympy_key_does_not_simplify(first: str, second: str) -> None:
    assert sympy_key(first) != sympy_key(second)


@pytest.mark.parametrize("formula", [r"\le", r"\frac{", "__import__('os')", "=="])
def test_sympy_key_falls_back_to_the_formula(formula: str) -> None:
    assert sympy_key(formula) == formula


def test_sympy_key_is_time_bounded() -> None:
    # The LaTeX parser's time grows exponentially with nesting depth: 30 levels take about 2 s.
    deeply_nested = "(" * 60 + "x" + ")" * 60
    start = time.perf_counter()
    assert sympy_key(deeply_nested) == deeply_nested
    assert time.perf_counter() - start < 3.0
    assert sympy_key("y+1") == sympy_key("1+y")  # the worker restarted after the overrun
