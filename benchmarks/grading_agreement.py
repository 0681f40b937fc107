"""Grading agreement: the grader against Math-Verify alone, on the cases and checks the grading tests pin.

- Math-Verify's regression cases (``../shared/data/peers/math_verify_cases.jsonl``): agreement with the expected
  verdict, gold stripped of its math delimiters as the benchmark loaders give it;
- MATH500 reference solutions against their own answer (all should be accepted) and against the next problem's
  different answer (all should be rejected; neighbours with equal answers are left out, as in tests/test_grading.py);
- the scenarios of peers' grading tests in ``tests/test_grading_peers.py`` (lighteval, verl, Qwen2.5-Math, open-r1,
  TRL): agreement with the verdict those tests expect.

Math-Verify alone is called with one reading for every case, as a reward function would call it:
``verify(parse("\\boxed{gold}"), parse(completion))`` with LaTeX and expression extraction. (Its own tests choose
extractors per case, and with those choices it agrees with all 233 cases.)

    python benchmarks/grading_agreement.py
"""

from __future__ import annotations

import json
import logging

from common import DATA, load_rows
from grading_speed import math_verify_alone

from dsdr_trl.grading import grade_many
from tests.test_grading import EQUAL_NEIGHBOUR_ANSWERS
from tests.test_grading_peers import CASES as PEER_CASES
from tests.test_math_verify_cases import CASES, _strip_math_delimiters


def main() -> None:
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    graders = {
        "dsdr_trl.grading": lambda c, g: [verdict is True for verdict in grade_many(c, g)],
        "math-verify alone": math_verify_alone,
    }

    cases = load_rows(CASES)
    completions, golds = [row["pred"] for row in cases], [_strip_math_delimiters(row["gold"]) for row in cases]
    rows = load_rows(DATA)
    solutions, answers = [row["solution"] for row in rows], [row["answer"] for row in rows]
    pairs = [(i, (i + 1) % len(rows)) for i in range(len(rows)) if i not in EQUAL_NEIGHBOUR_ANSWERS]

    figures = {}
    for name, grade in graders.items():
        agree = sum(v == row["expected"] for v, row in zip(grade(completions, golds), cases))
        accepted = sum(grade(solutions, answers))
        rejected = sum(not v for v in grade([solutions[i] for i, _ in pairs], [answers[j] for _, j in pairs]))
        peers = grade([completion for _, completion, _ in PEER_CASES], [gold for gold, _, _ in PEER_CASES])
        peers_agree = sum(v == expected for v, (_, _, expected) in zip(peers, PEER_CASES))
        figures[name] = {
            "cases_agree": agree,
            "math500_accepted": accepted,
            "math500_wrong_rejected": rejected,
            "peer_scenarios_agree": peers_agree,
        }
        print(
            f"{name:18s} Math-Verify cases {agree}/{len(cases)}, MATH500 own answer accepted {accepted}/{len(rows)}, "
            f"next problem's answer rejected {rejected}/{len(pairs)}, peer scenarios {peers_agree}/{len(PEER_CASES)}"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
