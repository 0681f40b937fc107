"""dsdr_trl.data: DAPO-Math formatting and de-duplication, benchmark loading from the shared local data."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset

from dsdr_trl.data import (
    BENCHMARKS,
    BOXED_INSTRUCTION,
    DataUnavailableError,
    load_benchmark,
    load_dapo_math,
    resolve_local_benchmark,
)
from tests.tiny import SHARED_DATA_DIR, requires_shared_benchmarks

SYSTEM = "You are a careful mathematician."


def dapo_like() -> Dataset:
    """Shaped like open-r1/DAPO-Math-17k-Processed ("en"): repeated prompts differing only in case and spacing."""
    return Dataset.from_dict(
        {
            "prompt": [
                "What is $1+1$?",
                "Find  the area of a unit square.",
                "what is $1+1$?\n",
                "Find the area of a unit square.",
                "Compute $2^{10}$.",
            ],
            "solution": ["2", "1", "2", "1", "1024"],
            "data_source": ["math_dapo"] * 5,
        }
    )


def test_dapo_standard_deduplicates_keeping_first_occurrence():
    formatted = load_dapo_math(conversational=False, dataset=dapo_like())
    assert formatted["prompt"] == ["What is $1+1$?", "Find  the area of a unit square.", "Compute $2^{10}$."]
    assert formatted["solution"] == ["2", "1", "1024"]
    assert formatted["problem"] == formatted["prompt"]


def test_dapo_deduplication_can_be_turned_off():
    assert len(load_dapo_math(dataset=dapo_like(), deduplicate=False)) == 5


def test_dapo_standard_with_system_prompt_prefixes_it():
    formatted = load_dapo_math(conversational=False, system_prompt=SYSTEM, dataset=dapo_like())
    assert formatted["prompt"][2] == f"{SYSTEM}\n\nCompute $2^{{10}}$."
    assert formatted["problem"][2] == "Compute $2^{10}$."


def test_dapo_conversational_without_system_prompt_is_one_user_message():
    formatted = load_dapo_math(dataset=dapo_like())
    assert formatted["prompt"][0] == [{"role": "user", "content": "What is $1+1$?"}]


def test_dapo_conversational_with_system_prompt_puts_it_first():
    formatted = load_dapo_math(system_prompt=SYSTEM, dataset=dapo_like())
    assert formatted["prompt"][1] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Find  the area of a unit square."},
    ]
    assert formatted["solution"] == ["2", "1", "1024"]


def test_dapo_rejects_a_dataset_without_the_answer_column():
    with pytest.raises(ValueError, match="solution"):
        load_dapo_math(dataset=Dataset.from_dict({"prompt": ["x"]}))


def test_registry_names_the_five_paper_benchmarks():
    assert set(BENCHMARKS) == {"aime24", "aime25", "math500", "minervamath", "olympiadbench"}


@requires_shared_benchmarks
@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_registered_benchmark_resolves_locally(name):
    local_file = resolve_local_benchmark(name, SHARED_DATA_DIR)
    assert local_file == SHARED_DATA_DIR / BENCHMARKS[name].local_file


@requires_shared_benchmarks
def test_load_benchmark_from_the_local_data_keeps_order_and_answers():
    records = [json.loads(line) for line in (SHARED_DATA_DIR / "benchmarks/aime24/test.jsonl").read_text().splitlines()]
    loaded = load_benchmark("aime24", data_dir=SHARED_DATA_DIR, limit=3, system_prompt=SYSTEM)
    assert loaded["solution"] == [r["answer"] for r in records[:3]]
    # The local problems already end with the instruction: it must not be appended twice.
    assert loaded["problem"] == [r["problem"] for r in records[:3]]
    assert loaded["prompt"][0][0] == {"role": "system", "content": SYSTEM}
    assert loaded["prompt"][0][1]["content"].count(BOXED_INSTRUCTION) == 1


def test_load_benchmark_from_a_jsonl_path_appends_the_missing_instruction(tmp_path):
    path = tmp_path / "mini.jsonl"
    rows = [{"problem": "What is 3*4?", "answer": 12}, {"problem": "List two primes.", "answer": ["2", "3"]}]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    loaded = load_benchmark(str(path), conversational=False)
    assert loaded["prompt"][0] == f"What is 3*4?\n{BOXED_INSTRUCTION}"
    assert loaded["solution"] == ["12", "2, 3"]
    assert load_benchmark(str(tmp_path / "mini.jsonl"), instruction=None, conversational=False)["prompt"] == [
        "What is 3*4?",
        "List two primes.",
    ]


def test_benchmark_nowhere_offline_says_where_a_local_copy_goes(tmp_path):
    # conftest sets HF_HUB_OFFLINE=1, and the datasets cache has no MATH-500.
    with pytest.raises(DataUnavailableError, match="HF_HUB_OFFLINE=1") as error:
        load_benchmark("math500", data_dir=tmp_path)
    assert f"nothing at {tmp_path / 'benchmarks/math500/test.jsonl'}" in str(error.value)


def test_unreachable_hub_fails_without_retrying(monkeypatch):
    from huggingface_hub import constants

    # A closed local port: the connection is refused at once, as on a machine without network.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("DSDR_DATA_DIR", raising=False)
    with pytest.raises(DataUnavailableError, match=r"http://127\.0\.0\.1:9 does not answer") as error:
        load_benchmark("aime24")
    assert "no data root set" in str(error.value) and "DSDR_DATA_DIR=<root>" in str(error.value)
    with pytest.raises(DataUnavailableError, match="local .json / .jsonl / .parquet|dataset="):
        load_dapo_math()
