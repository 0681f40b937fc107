"""What to sample and what is already sampled: benchmark problems, the work plan, and the resumable sample store.

Samples are appended to `samples.jsonl` in the output directory as they are produced, each keyed by model,
benchmark, problem index, a fingerprint of the prompt, sample index and sampling settings; a rerun with the same
output directory generates only what is missing. How a sample was graded is not in the key: a rerun with another
grading reading grades the stored samples again (`run.regrade_stale`). `WorkItem.key` and `sample_key` are the two
sides of that key (planned and stored), so they live together here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import Prompt, load_benchmark
from .protocol import EvaluationProtocol, SamplingSettings

#: The sample store's file name in the output directory.
SAMPLES_FILE = "samples.jsonl"


@dataclass(frozen=True)
class Problem:
    """One benchmark problem as the run sees it."""

    benchmark: str
    index: int
    prompt: Prompt
    answer: str
    fingerprint: str


def prompt_fingerprint(prompt: Prompt) -> str:
    """Short hash of a prompt, so a resumed run never reuses samples drawn for a different prompt."""
    return hashlib.sha256(json.dumps(prompt, sort_keys=True).encode()).hexdigest()[:16]


def load_problems(
    benchmarks: Sequence[str], limit: int | None, data_dir: str | Path | None, system_prompt: str | None
) -> dict[str, list[Problem]]:
    """Benchmark name -> its problems (conversational prompts), first `limit` of each."""
    problems: dict[str, list[Problem]] = {}
    for name in benchmarks:
        dataset = load_benchmark(name, conversational=True, system_prompt=system_prompt, data_dir=data_dir, limit=limit)
        problems[name] = [
            Problem(name, i, row["prompt"], row["solution"], prompt_fingerprint(row["prompt"]))
            for i, row in enumerate(dataset)
        ]
    return problems


@dataclass(frozen=True)
class WorkItem:
    """One sample to draw."""

    model: str
    problem: Problem
    regime: str
    settings: SamplingSettings
    sample_index: int

    def key(self) -> tuple[Any, ...]:
        """The key its record will have in the store (`sample_key`)."""
        return (
            self.model,
            self.problem.benchmark,
            self.problem.index,
            self.problem.fingerprint,
            self.sample_index,
            self.settings.key(),
        )


def plan_work(
    models: Sequence[str], problems: dict[str, list[Problem]], protocol: EvaluationProtocol
) -> list[WorkItem]:
    """Every sample the protocol needs, model-major then benchmark, regime, problem, sample."""
    return [
        WorkItem(model, problem, regime, settings, sample_index)
        for model in models
        for benchmark_problems in problems.values()
        for regime, (settings, count) in protocol.regimes().items()
        for problem in benchmark_problems
        for sample_index in range(count)
    ]


def chunks(items: Sequence[WorkItem], size: int) -> Iterator[list[WorkItem]]:
    """Consecutive runs of at most `size` items sharing model, benchmark and regime (one generate call each)."""
    batch: list[WorkItem] = []
    for item in items:
        if batch and (len(batch) == size or _group(batch[0]) != _group(item)):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def _group(item: WorkItem) -> tuple[str, str, str]:
    return item.model, item.problem.benchmark, item.regime


def sample_key(record: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a stored sample reusable: who, on what, which draw, drawn how."""
    return (
        record["model"],
        record["benchmark"],
        record["problem_index"],
        record["prompt_sha"],
        record["sample_index"],
        record["settings"],
    )


class SampleStore:
    """Samples on disk as JSONL, appended as they are produced; reloaded to resume an interrupted run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: dict[tuple[Any, ...], dict[str, Any]] = {}
        # Whether the file ends mid-line (a previous run was killed while writing); every append ends its lines.
        self._ends_mid_line = False
        if self.path.exists():
            with open(self.path, encoding="utf-8") as handle:
                for line in handle:
                    self._ends_mid_line = not line.endswith("\n")
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short when the previous run was killed
                    self.records[sample_key(record)] = record

    def __contains__(self, key: tuple[Any, ...]) -> bool:
        return key in self.records

    def __getitem__(self, key: tuple[Any, ...]) -> dict[str, Any]:
        return self.records[key]

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Write records now (flushed), so they survive an interruption."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            if self._ends_mid_line:
                handle.write("\n")
                self._ends_mid_line = False
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                self.records[sample_key(record)] = record
