"""Grading speed: milliseconds per graded completion, MATH500 reference solutions against their own answers.

Three graders on the same pairs, run alternately after one warm-up pass (the graders' worker processes
started, gold answers cached as they are when a group's completions share one), median of the rounds:

- ``after``: ``dsdr_trl.grading.grade_many`` as it is in this tree;
- ``before``: ``dsdr_trl/grading.py`` as it was at the git revision ``--before`` (default: the last one whose
  grader handed math-verify only its own extractor's answer);
- ``math-verify alone``: ``parse(solution)``, ``parse(answer)`` and ``verify`` in this process, as its tests call
  it (its own signal-based time limit, so the main thread only).

Prints one line per grader and the share of pairs each accepts, then a JSON line of the figures.

    python benchmarks/grading_speed.py [--count 500] [--repeats 3] [--before 8aacdad]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import subprocess
import sys
from types import ModuleType

from common import REPO, alternate, load_rows, median

from dsdr_trl import grading

BEFORE_REVISION = "8aacdad"


def load_grader_at(revision: str) -> ModuleType:
    """``dsdr_trl/grading.py`` at ``revision``, as the module ``dsdr_trl._grading_before``.

    Loaded before any grading call, so the forked worker process inherits it and can run its functions.
    """
    source = subprocess.run(
        ["git", "show", f"{revision}:dsdr_trl/grading.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    spec = importlib.util.spec_from_loader("dsdr_trl._grading_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "dsdr_trl"
    sys.modules[spec.name] = module
    exec(compile(source, f"{revision}:dsdr_trl/grading.py", "exec"), module.__dict__)  # noqa: S102 - our own source
    return module


def math_verify_alone(completions: list[str], golds: list[str]) -> list[bool]:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
    return [verify(parse(f"\\boxed{{{gold}}}", config), parse(text, config)) for text, gold in zip(completions, golds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500, help="pairs graded per round (the first COUNT of MATH500)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per grader")
    parser.add_argument("--before", default=BEFORE_REVISION, help="git revision of the grader to compare with")
    args = parser.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    rows = load_rows()[: args.count]
    completions, golds = [row["solution"] for row in rows], [row["answer"] for row in rows]
    before = load_grader_at(args.before)
    graders = {
        "after": lambda: grading.grade_many(completions, golds),
        f"before ({args.before})": lambda: before.grade_many(completions, golds),
        "math-verify alone": lambda: math_verify_alone(completions, golds),
    }
    times = alternate(graders, args.repeats)
    figures = {}
    for name, grade in graders.items():
        ms_per_completion = 1e3 * median(times[name]) / len(rows)
        accepted = sum(verdict is True for verdict in grade())
        figures[name] = {"ms_per_completion": round(ms_per_completion, 2), "accepted": accepted, "pairs": len(rows)}
        print(f"{name:22s} {ms_per_completion:7.2f} ms per graded completion, accepts {accepted}/{len(rows)}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
