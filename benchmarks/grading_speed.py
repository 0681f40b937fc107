"""Grading speed: milliseconds per graded completion, and the wall time of a batch of hostile completions.

MATH500 reference solutions against their own answers, four graders on the same pairs, run alternately after one
warm-up pass (the graders' worker processes started, gold answers cached as they are when a group's completions
share one), median of the rounds:

- ``after``: ``dsdr_trl.grading.grade_many`` as it is in this tree (its pool of ``DEFAULT_WORKERS`` processes);
- ``after, 1 worker``: the same, its comparisons one after another in one process;
- ``before``: ``dsdr_trl/grading.py`` as it was at the git revision ``--before`` (default: the grader before
  issue 20), run on this tree's pool;
- ``math-verify alone``: ``parse(solution)``, ``parse(answer)`` and ``verify`` in this process, as its tests call
  it (its own signal-based time limit, so the main thread only).

Then ``--hostile`` completions (256 by default, one generation batch per process of the paper's recipes) whose
comparison runs past the limit (``--hostile-timeout`` seconds, each), graded once one after another (1 worker, as
before the pool) and once on the pool: the worst batch costs about n x limit / workers instead of n x limit.

Prints one line per figure, then a JSON line of the figures.

    python benchmarks/grading_speed.py [--count 500] [--repeats 3] [--before 26b4418] [--hostile 256]
        [--hostile-timeout 0.5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import subprocess
import sys
import time
from types import ModuleType

from common import REPO, alternate, load_rows, median

from dsdr_trl import grading

BEFORE_REVISION = "26b4418"


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
    parser.add_argument("--hostile", type=int, default=256, help="hostile completions in the batch (0: skip)")
    parser.add_argument("--hostile-timeout", type=float, default=0.5, help="time limit per hostile comparison (s)")
    args = parser.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    rows = load_rows()[: args.count]
    completions, golds = [row["solution"] for row in rows], [row["answer"] for row in rows]
    before = load_grader_at(args.before)
    graders = {
        "after": lambda: grading.grade_many(completions, golds),
        "after, 1 worker": lambda: grading.grade_many(completions, golds, workers=1),
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
    if args.hostile:
        figures["hostile batch"] = hostile_batch(args.hostile, args.hostile_timeout)
    print(json.dumps(figures))


def hostile_batch(count: int, timeout_s: float) -> dict:
    """Wall time to grade ``count`` completions whose comparison runs past ``timeout_s``: serial, then on the pool."""
    # latex2sympy's parse time grows exponentially with nesting: each of these runs for hours without a limit.
    completions = [r"\boxed{" + "(" * 60 + f"x_{{{i}}}" + ")" * 60 + "}" for i in range(count)]
    figures = {"completions": count, "timeout_s": timeout_s}
    pool = grading.DEFAULT_WORKERS
    for name, workers in (("serial (1 worker)", 1), (f"pool ({pool} workers)", pool)):
        start = time.perf_counter()
        grades = grading.grade_batch(completions, ["x"] * count, timeout_s=timeout_s, workers=workers)
        seconds = time.perf_counter() - start
        figures[name] = {"seconds": round(seconds, 1), "unscorable": grades.failed}
        print(f"{count} hostile completions, {name:18s} {seconds:7.1f} s, {grades.failed} unscorable")
    return figures


if __name__ == "__main__":
    main()
