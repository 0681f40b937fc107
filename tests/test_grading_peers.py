"""Scenarios from the grading tests of well-known evaluation and RL projects, written here as our own cases.

Each block names the project whose test suite the scenario comes from (the (gold, completion, verdict) situations,
not their code). The grader must agree with the verdict those projects' tests expect, with one reading for every
completion (theirs often choose extractors per test).
"""

from __future__ import annotations

import pytest

from dsdr_trl.grading import grade_many

CASES = [
    # huggingface/lighteval tests/metrics/test_extractive_match.py: numbers in plain text.
    ("-5", "-5", True),
    ("7425000", "7,425,000", True),
    ("1000", "1 000", True),
    ("1000", "1000.0", True),
    ("1000.0", "1,000.0", True),
    ("1000.99", "1000,99", True),
    ("1,22", "1.22", True),
    ("2.74", "Soucis : 2,74 $ a..", True),
    ("0.4", ".4", True),
    ("1000.99", "$1,000.99", True),
    ("1000.99", "so the number is 10 which is 1,000.99m²", True),
    ("2", "AZYUK2A", False),
    ("10/9", r"\frac{10}{9}", True),
    ("-10/9", r"-\frac{10}{9}", True),
    # lighteval: LaTeX notations after an answer word.
    ("9", "Answer \\[ 9 \\]", True),
    ("9", "Answer $ 9 $", True),
    ("9", "Answer $$ 9 $$", True),
    ("9", "Answer \\( 9 \\)", True),
    ("10", "Answer \\( (9+1) \\)", True),
    ("9", "Answer \\[ \n 9 \n \\]", True),
    ("10/9", "Answer $ \\frac{1}{2} \\$ = \\frac{10}{9} $", True),
    ("1/3", "$\\frac13 $", True),
    ("1", "$\\frac3{3} $", True),
    ("\\sqrt{3}", "$\\sqrt3 $", True),
    ("1/3", "$\\cfrac{1}{3} $", True),
    ("1/3", "$ 1/3 $", True),
    ("1/3", "$\\left( \\frac{1}{3} \\right)$", True),
    ("1/3", "$\\frac{1}{3} \\text{meters}$", True),
    ("1/3", "$k = \\frac{1}{3}$", True),
    ("[0,1)", "$[0,1)$", True),
    ("[0,9)", "$[0,1)$", False),
    ("(0,9)", "$[0,9)$", False),
    ("1", "$-[0,1)$", False),
    ("2-2p", "If $2-x=p$, then $x=2-p$. Thus $x-p=\\boxed{2-2p}$.", True),
    # lighteval: other languages (Chinese numbers against CJK text, French answer words and decimal commas).
    ("13", "所以总共有3 + 4 = 7只鸟和鹳鸟。 因此，现在篱笆上一共有3 + 10 = 13只鸟和鹳鸟。", True),
    ("3", "5页（数学作业） - 2页（阅读作业） = 3页 因此，瑞秋的数学作业比阅读作业多 **3页**。", True),
    ("300", "来计算水池中水的流出时间：12000升/40升/分钟=300分钟。因此，水池中水将在300分钟内被放完。", True),
    ("2/5", "所以，每份应该是 (\\frac{2}{5}) 吨。 答案：每份应该是 (\\frac{2}{5}) 吨。", True),
    ("8/46", "\\frac{4}{23}", True),
    ("105", "réponse est (35 + 70 = 105).", True),
    ("79", "donc 353 g - 79 g = 274 g. Donc, il a déjà 79 g de cire.", True),
    ("0", "So the os then when we 9/3 we get 8 so the answer is 0", True),
    ("1", "so $x+y = 1000$ therefore answer is $1$", True),
    ("1", "how many $? just about 1$", True),
    # volcengine/verl tests/utils/reward_score: leading zeros and signs of integers.
    ("033", r"\boxed{33}", True),
    ("+033", r"\boxed{33}", True),
    ("-0", r"\boxed{0}", True),
    ("000", r"\boxed{0}", True),
    # QwenLM/Qwen2.5-Math evaluation/grader.py: percentages, lists, matrices, equations, symbolic equality.
    ("0.1", r"\boxed{10\%}", True),
    ("0.2", r"\boxed{10\%}", False),
    ("[1, 2, 3]", r"\boxed{[1, 2, 3]}", True),
    ("[1, 2, 4]", r"\boxed{[1, 2, 3]}", False),
    (r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\boxed{\begin{pmatrix}1&2\\3&4\end{pmatrix}}", True),
    (r"\begin{pmatrix}1&2\\3&5\end{pmatrix}", r"\boxed{\begin{pmatrix}1&2\\3&4\end{pmatrix}}", False),
    ("x = y", r"\boxed{x = y}", True),
    ("x = z", r"\boxed{x = y}", False),
    ("10", r"\boxed{x = 10}", True),
    ("x = 10", r"\boxed{10}", True),
    (r"\frac{1}{12}", r"\boxed{0.0833333333333333}", True),
    (r"(1,\frac{9}{2})", r"\boxed{(1,4.5)}", True),
    (r"\frac{x+2}{7}", r"\boxed{\frac{x}{7}+\frac{2}{7}}", True),
    (r"\tan^2(y)+1", r"\boxed{\sec^2(y)}", True),
    ("(a+5)(b+2)", r"\boxed{(+5)(b+2)}", False),
    ("2", r"\boxed{\frac{1+\sqrt{5}}{2}}", False),
    ("x+2n+1", r"\boxed{x+1}", False),
    (r"\frac{100}{3}", r"\boxed{33.3}", False),
    # huggingface/open-r1 tests/test_rewards.py and huggingface/trl tests/test_rewards.py: accuracy rewards.
    (r"\frac{63}{400}", r"\boxed{\frac{63}{400}}", True),
    ("63/400", r"\boxed{\frac{63}{400}}", True),
    (r"\frac{63}{400}", r"\boxed{\frac{64}{400}}", False),
    ("6", r"\boxed{3}", False),
    ("2", r"The answer is \boxed{2}", True),
]


@pytest.mark.parametrize(("gold", "completion", "expected"), CASES)
def test_peer_scenarios(gold: str, completion: str, expected: bool) -> None:
    assert grade_many([completion], [gold]) == [expected]
