"""Math datasets as GRPO prompt datasets: DAPO-Math-17k for training, the paper's five benchmarks for evaluation.

Every loader returns a `datasets.Dataset` with the columns TRL's GRPOTrainer and our reward functions read:

- `prompt`: the problem as a plain string ("standard" format) or as a list of chat messages
  ("conversational" format: an optional system message, then one user message);
- `solution`: the reference final answer, as a string (what `math_accuracy_reward(completions, solution)` reads);
- `problem`: the problem text alone, without system prompt or chat structure (for reports and de-duplication).

Benchmarks are read from a local JSONL file (`problem`, `answer` per line) or from the Hugging Face Hub. When the
Hub is needed but unreachable, loading fails at once with `DataUnavailableError`, which says where to put a local
copy, instead of retrying for half a minute.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `datasets` is imported where it is used, so that the command line's --help stays fast
    from datasets import Dataset

DAPO_MATH_HUB_ID = "open-r1/DAPO-Math-17k-Processed"
DAPO_MATH_CONFIG = "en"

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""The instruction the paper's benchmarks end with (the local benchmark files already contain it)."""

DATA_DIR_ENV = "DSDR_DATA_DIR"
"""Environment variable naming a local data root: `<root>/benchmarks/<name>/test.jsonl` is used before the Hub."""

HUB_PROBE_TIMEOUT_S = 5.0
"""How long to wait for the Hub to answer before calling it unreachable (`datasets` alone retries for ~30 s)."""

Prompt = str | list[dict[str, str]]


class DataUnavailableError(RuntimeError):
    """A data set that is neither on this machine nor obtainable from the Hugging Face Hub."""


def hub_is_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hub endpoint (`HF_ENDPOINT`) answers an HTTP request within `timeout` seconds (proxies honoured)."""
    import requests
    from huggingface_hub import constants

    try:
        requests.head(constants.ENDPOINT, timeout=timeout)
    except requests.RequestException:
        return False
    return True


def load_hub_dataset(hub_id: str, config: str | None, split: str, local_hint: str) -> Dataset:
    """`datasets.load_dataset(hub_id, config, split=split)`, or a `DataUnavailableError` within seconds when the Hub
    cannot provide it: unreachable, or `HF_HUB_OFFLINE=1` with no copy in the datasets cache. `local_hint` (one
    sentence) tells the user how to give a local copy instead."""
    from datasets import load_dataset
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        try:
            return load_dataset(hub_id, config, split=split)
        except ConnectionError as error:
            raise DataUnavailableError(
                f"{hub_id} is not in the datasets cache, and HF_HUB_OFFLINE=1 keeps the Hub out. {local_hint}"
            ) from error
    if not hub_is_reachable():
        raise DataUnavailableError(
            f"{hub_id} would come from the Hugging Face Hub, but {constants.ENDPOINT} does not answer from this "
            f"machine. {local_hint} (With HF_HUB_OFFLINE=1, a copy already in the datasets cache is used.)"
        )
    return load_dataset(hub_id, config, split=split)


@dataclass(frozen=True)
class BenchmarkSource:
    """Where one evaluation benchmark lives, locally and on the Hub, and how its columns are named there."""

    hub_id: str
    split: str
    problem_column: str
    answer_column: str
    local_file: str
    """Relative to the data root, e.g. `benchmarks/aime24/test.jsonl` (local files use `problem`, `answer`)."""


BENCHMARKS: dict[str, BenchmarkSource] = {
    "aime24": BenchmarkSource("HuggingFaceH4/aime_2024", "train", "problem", "answer", "benchmarks/aime24/test.jsonl"),
    "aime25": BenchmarkSource("math-ai/aime25", "test", "problem", "answer", "benchmarks/aime25/test.jsonl"),
    "math500": BenchmarkSource("HuggingFaceH4/MATH-500", "test", "problem", "answer", "benchmarks/math500/test.jsonl"),
    "minervamath": BenchmarkSource(
        "math-ai/minervamath", "test", "question", "answer", "benchmarks/minervamath/test.jsonl"
    ),
    "olympiadbench": BenchmarkSource(
        "math-ai/olympiadbench", "test", "question", "final_answer", "benchmarks/olympiadbench/test.jsonl"
    ),
}
"""The five benchmarks of the paper's Table 1, by the short names used in reports and on the command line."""


def normalize_prompt_text(text: str) -> str:
    """The form two prompts are compared in for de-duplication: NFKC, case-folded, whitespace collapsed."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


def deduplicate_indices(texts: Iterable[str]) -> list[int]:
    """Indices of the first occurrence of each distinct normalised text, in their original order."""
    seen: set[str] = set()
    kept: list[int] = []
    for index, text in enumerate(texts):
        key = normalize_prompt_text(text)
        if key not in seen:
            seen.add(key)
            kept.append(index)
    return kept


def make_prompt(problem: str, conversational: bool, system_prompt: str | None = None) -> Prompt:
    """One problem as a GRPO prompt.

    Conversational: `[{"role": "system", ...}, {"role": "user", "content": problem}]` (system message only when
    given). Standard: the problem string, preceded by the system prompt and a blank line when one is given,
    because a plain-text prompt has no other place for it.
    """
    if conversational:
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return [*messages, {"role": "user", "content": problem}]
    return f"{system_prompt}\n\n{problem}" if system_prompt else problem


def answer_to_text(answer: Any) -> str:
    """A reference answer as one string: lists (OlympiadBench's `final_answer`) are joined with ", "."""
    if isinstance(answer, (list, tuple)):
        return ", ".join(answer_to_text(part) for part in answer)
    return str(answer).strip()


def format_problems(
    problems: Sequence[str],
    answers: Sequence[Any],
    *,
    conversational: bool = True,
    system_prompt: str | None = None,
    deduplicate: bool = False,
) -> Dataset:
    """Build the `prompt` / `solution` / `problem` dataset from parallel lists of problems and answers."""
    if len(problems) != len(answers):
        raise ValueError(f"{len(problems)} problems but {len(answers)} answers.")
    indices = deduplicate_indices(problems) if deduplicate else range(len(problems))
    rows = [
        {
            "prompt": make_prompt(problems[i], conversational, system_prompt),
            "solution": answer_to_text(answers[i]),
            "problem": problems[i],
        }
        for i in indices
    ]
    from datasets import Dataset

    return Dataset.from_list(rows)


def load_dapo_math(
    split: str = "train",
    conversational: bool = True,
    system_prompt: str | None = None,
    dataset: Dataset | None = None,
    deduplicate: bool = True,
) -> Dataset:
    """DAPO-Math-17k (open-r1's processed English config) as a GRPO prompt dataset, de-duplicated like the paper.

    Source columns: `prompt` (the problem, already asking for a boxed answer) and `solution` (the final answer).
    Duplicates are prompts equal after `normalize_prompt_text`; the first occurrence is kept.

    Args:
        split: the Hub split to load (ignored when `dataset` is given).
        conversational: chat messages (True) or plain strings (False) in `prompt`.
        system_prompt: an optional system prompt (see `make_prompt`).
        dataset: an already-loaded dataset with the same columns, used instead of the Hub.
        deduplicate: drop repeated prompts.
    """
    if dataset is None:
        hint = "Download it where the Hub is reachable and pass it with `dataset=` (or `dataset_name=<file>` to train)."
        dataset = load_hub_dataset(DAPO_MATH_HUB_ID, DAPO_MATH_CONFIG, split, hint)
    missing = {"prompt", "solution"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"DAPO-Math dataset lacks columns {sorted(missing)}; it has {dataset.column_names}.")
    return format_problems(
        dataset["prompt"],
        dataset["solution"],
        conversational=conversational,
        system_prompt=system_prompt,
        deduplicate=deduplicate,
    )


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL file (blank lines skipped)."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def resolve_local_benchmark(name_or_path: str, data_dir: str | Path | None = None) -> Path | None:
    """The local JSONL file for a benchmark, or None when it has to come from the Hub.

    `name_or_path` may be a JSONL file, a directory holding `test.jsonl`, or a registered name, looked up under
    `data_dir` (or `$DSDR_DATA_DIR`) as `<root>/benchmarks/<name>/test.jsonl` or `<root>/<name>/test.jsonl`.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    if (path / "test.jsonl").is_file():
        return path / "test.jsonl"
    root = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if root is None or name_or_path not in BENCHMARKS:
        return None
    candidates = [Path(root) / BENCHMARKS[name_or_path].local_file, Path(root) / name_or_path / "test.jsonl"]
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def local_benchmark_hint(name_or_path: str, data_dir: str | Path | None) -> str:
    """How to give a benchmark as a local file, and where it was looked for, as one sentence of an error message."""
    if name_or_path not in BENCHMARKS:
        return f"{name_or_path!r} is no local file or folder either; a local benchmark is a JSONL file of `problem`, `answer`."
    root = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    looked = f"nothing at {Path(root) / BENCHMARKS[name_or_path].local_file}" if root is not None else "no data root set"
    return (
        f"To use a local copy, put a JSONL file of `problem`, `answer` at <root>/{BENCHMARKS[name_or_path].local_file} "
        f"and pass --data-dir <root> or set {DATA_DIR_ENV}=<root> ({looked})."
    )


def load_benchmark(
    name_or_path: str,
    conversational: bool = True,
    system_prompt: str | None = None,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    instruction: str | None = BOXED_INSTRUCTION,
) -> Dataset:
    """A benchmark as a GRPO prompt dataset (`prompt`, `solution`, `problem`), in its original order.

    Args:
        name_or_path: a name from `BENCHMARKS`, a local JSONL file / directory, or any Hub dataset id whose
            `test` split has `problem` and `answer` columns.
        conversational, system_prompt: see `make_prompt`.
        data_dir: local data root searched before the Hub (see `resolve_local_benchmark`).
        limit: keep only the first `limit` problems.
        instruction: appended (on a new line) to each problem that does not already end with it, so that
            Hub copies, which lack it, are asked exactly what the local files ask. None leaves problems as they are.
    """
    local_file = resolve_local_benchmark(name_or_path, data_dir)
    if local_file is not None:
        records = read_jsonl(local_file)
        problems = [record["problem"] for record in records]
        answers = [record["answer"] for record in records]
    else:
        source = BENCHMARKS.get(name_or_path, BenchmarkSource(name_or_path, "test", "problem", "answer", ""))
        hub_dataset = load_hub_dataset(source.hub_id, None, source.split, local_benchmark_hint(name_or_path, data_dir))
        problems = hub_dataset[source.problem_column]
        answers = hub_dataset[source.answer_column]
    if limit is not None:
        problems, answers = problems[:limit], answers[:limit]
    if instruction:
        problems = [p if p.rstrip().endswith(instruction) else f"{p.rstrip()}\n{instruction}" for p in problems]
    return format_problems(problems, answers, conversational=conversational, system_prompt=system_prompt)
