"""dsdr_trl.evaluation and `dsdr-trl eval`: Pass@k arithmetic, diversity@k, the CLI end to end (resuming), and the
training-time PassAtKCallback inside a real GRPOTrainer."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from dsdr_trl import evaluation
from dsdr_trl.evaluation import (
    SAMPLED_REGIME,
    EvaluationProtocol,
    Generation,
    PassAtKCallback,
    Problem,
    SampleStore,
    TransformersSampler,
    WorkItem,
    correctness_metrics,
    default_ks,
    diversity_of_correct,
    draw_samples,
    pass_at_k,
    regrade_stale,
    shard,
)
from dsdr_trl.scripts import cli
from tests.tiny import (
    SHARED_DATA_DIR,
    build_tiny_model_and_tokenizer,
    requires_shared_benchmarks,
    save_tiny_model,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Hand-computed: 1 - C(4 - c, k) / C(4, k), with C(a, b) = 0 for b > a.
PASS_AT_K_N4 = {
    0: [0.0, 0.0, 0.0, 0.0],
    1: [1 / 4, 1 - 3 / 6, 1 - 1 / 4, 1.0],
    2: [2 / 4, 1 - 1 / 6, 1.0, 1.0],
    3: [3 / 4, 1.0, 1.0, 1.0],
    4: [1.0, 1.0, 1.0, 1.0],
}


@pytest.mark.parametrize("c", range(5))
@pytest.mark.parametrize("k", range(1, 5))
def test_pass_at_k_matches_hand_computed_values(c, k):
    assert pass_at_k(4, c, k) == pytest.approx(PASS_AT_K_N4[c][k - 1], abs=1e-12)


def test_pass_at_k_matches_the_binomial_formula_for_large_n():
    for c, k in [(1, 1), (3, 10), (17, 32), (40, 64), (0, 7)]:
        expected = 1 - math.comb(64 - c, k) / math.comb(64, k)
        assert pass_at_k(64, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("n", [1, 16, 64, 1000])
def test_pass_at_k_limits(n):
    assert all(pass_at_k(n, 0, k) == 0.0 for k in (1, n))
    assert all(pass_at_k(n, n, k) == 1.0 for k in (1, n))
    assert pass_at_k(n, 1, 1) == pytest.approx(1 / n)


@pytest.mark.parametrize(
    ("n", "c", "k", "message"),
    [(4, 1, 5, "larger than the number of samples"), (4, 5, 1, "more than n"), (-1, 0, 1, "non-negative"),
     (4, -1, 1, "non-negative"), (4, 1, 0, "at least 1")],
)
def test_pass_at_k_rejects_impossible_arguments(n, c, k, message):
    with pytest.raises(ValueError, match=message):
        pass_at_k(n, c, k)


def test_default_ks_are_powers_of_two_up_to_n():
    assert default_ks(64) == (1, 2, 4, 8, 16, 32, 64)
    assert default_ks(6) == (1, 2, 4, 6)


def test_correctness_metrics_average_over_problems():
    correct = [[True, False, False, False], [True, True, True, True]]
    metrics = correctness_metrics(correct, avg_k=2, ks=(1, 4))
    assert metrics["avg@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert metrics["pass@1"] == pytest.approx((0.25 + 1.0) / 2)
    assert metrics["pass@4"] == pytest.approx(1.0)


def test_shards_cover_every_problem_with_equal_sizes():
    problems = list(range(5))
    shards = [shard(problems, rank, 2) for rank in range(2)]
    assert shards == [[0, 2, 4], [1, 3, 0]]
    assert set(shards[0]) | set(shards[1]) == set(problems)


def test_sample_store_skips_a_line_cut_short_and_appends_on_a_new_line(tmp_path):
    record = {"model": "m", "benchmark": "b", "problem_index": 0, "prompt_sha": "x", "sample_index": 0, "settings": "s"}
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(record) + "\n" + '{"model": "m", "bench')
    store = SampleStore(path)
    assert len(store.records) == 1
    store.append([{**record, "sample_index": 1}])
    store.append([{**record, "sample_index": 2}])
    assert len(SampleStore(path).records) == 3
    appended = [json.dumps({**record, "sample_index": i}) for i in (1, 2)]
    assert path.read_text().split("\n")[1:] == ['{"model": "m", "bench', *appended, ""]  # each on its own line


# Hand-made completions of a problem whose answer is 4, and whether each is correct read whole / after </think>.
THINKING_COMPLETIONS = [
    (r"<think> 2 + 2 = 4, so the answer is \boxed{4}", True, False),  # the thinking never ends
    (r"<think> maybe \boxed{3} </think> So \boxed{4}.", True, True),
    (r"<think> \boxed{4} </think> I am not sure.", True, False),  # the answer was only thought, not given
    (r"<think> \boxed{4} </think> So \boxed{3}.", False, False),
]


class FixedSampler:
    """Returns the given completions, in order, instead of sampling: grading is then fully deterministic."""

    chunk_size = len(THINKING_COMPLETIONS)

    def generate(self, prompts, settings, seeds):
        return [Generation(text, num_tokens=1, finished=True) for text, _, _ in THINKING_COMPLETIONS[: len(prompts)]]


def thinking_work() -> list[WorkItem]:
    settings, _ = EvaluationProtocol(num_samples=4, avg_k=4, ks=(1, 4)).regimes()[SAMPLED_REGIME]
    problem = Problem("toy", 0, "What is 2 + 2?", "4", "sha")  # a plain-text prompt needs no tokenizer
    return [WorkItem("m", problem, SAMPLED_REGIME, settings, i) for i in range(len(THINKING_COMPLETIONS))]


@pytest.mark.parametrize(("reasoning_end", "column"), [(None, 1), ("</think>", 2)])
def test_the_evaluation_grades_the_whole_completion_or_only_after_the_thinking(reasoning_end, column):
    records = draw_samples(FixedSampler(), None, thinking_work(), reasoning_end=reasoning_end)
    assert [r["correct"] for r in records] == [row[column] for row in THINKING_COMPLETIONS]
    assert all(r["reasoning_end"] == reasoning_end for r in records)  # each sample says how it was graded


def test_a_resumed_run_regrades_stored_samples_read_another_way_without_sampling_them_again(tmp_path):
    work = thinking_work()
    store = SampleStore(tmp_path / "samples.jsonl")
    records = draw_samples(FixedSampler(), None, work)
    del records[0]["reasoning_end"]  # written before the reading was recorded: graded whole
    store.append(records)
    assert regrade_stale(work, store, None) == 0
    assert regrade_stale(work, store, "</think>") == len(work)
    reloaded = SampleStore(tmp_path / "samples.jsonl")  # the regraded records, appended, replace the first ones
    assert [reloaded[item.key()]["correct"] for item in work] == [row[2] for row in THINKING_COMPLETIONS]
    assert [reloaded[item.key()]["completion"] for item in work] == [row[0] for row in THINKING_COMPLETIONS]
    assert regrade_stale(work, reloaded, "</think>") == 0


@pytest.mark.parametrize("reasoning_end", ["", "  "])
def test_the_protocol_rejects_an_empty_reasoning_end(reasoning_end):
    with pytest.raises(ValueError, match="reasoning_end must be a non-empty marker"):
        EvaluationProtocol(reasoning_end=reasoning_end)


def test_diversity_of_correct_with_dsdrs_scorer_separates_copies_from_distinct_derivations(minilm_path):
    from dsdr_trl.scorer import DiversityScorer

    scorer = DiversityScorer(model=minilm_path)
    copies = ["We have $x = 2 + 2$, so the answer is $\\boxed{4}$."] * 3
    distinct = [
        "By counting, $3 + 1 = 4$, hence $\\boxed{4}$.",
        "Squaring gives $x^2 = 16$ and $x > 0$, so $\\boxed{4}$.",
        "The geometric series $\\sum_{i=0}^{1} 2^i = 3$ plus one is $\\boxed{4}$.",
    ]
    only_one_correct = ["$\\boxed{4}$"]
    same = diversity_of_correct([copies, only_one_correct], scorer)
    different = diversity_of_correct([distinct], scorer)
    assert same["problems"] == 1 and different["problems"] == 1
    assert same["semantic"] == pytest.approx(0.0, abs=1e-3)
    assert same["formula"] == 0.0 and same["derivations"] == 1
    assert different["semantic"] > 0.05
    assert different["formula"] > 0.5 and different["derivations"] == 3 and different["derivation_ratio"] == 1.0
    assert diversity_of_correct([only_one_correct], scorer)["semantic"] is None


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("models")
    return [str(save_tiny_model(root / "tiny-a", seed=0)), str(save_tiny_model(root / "tiny-b", seed=1))]


@pytest.fixture
def count_generate(monkeypatch) -> list[int]:
    """Counts the samples TransformersSampler draws (one entry per generate call: its batch size)."""
    calls: list[int] = []
    original = TransformersSampler.generate

    def counting(self, prompts, settings, seeds):
        calls.append(len(prompts))
        return original(self, prompts, settings, seeds)

    monkeypatch.setattr(TransformersSampler, "generate", counting)
    return calls


@requires_shared_benchmarks
def test_eval_cli_end_to_end_writes_reports_and_resumes(tmp_path, tiny_models, count_generate):
    output_dir = tmp_path / "eval"
    argv = [
        "eval", "--models", *tiny_models, "--benchmarks", "aime24", "math500", "--data-dir", str(SHARED_DATA_DIR),
        "--output-dir", str(output_dir), "--limit", "3", "--num-samples", "2", "--avg-k", "2",
        "--max-new-tokens", "4", "--batch-size", "4", "--device", "cpu", "--backend", "transformers",
        "--encoder", "none", "--no-progress",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    expected_samples = 2 * 2 * 3 * (1 + 2)  # models x benchmarks x problems x (Pass@1 sample + 2 sampled)
    assert sum(count_generate) == expected_samples

    results = json.loads((output_dir / "results.json").read_text())
    assert set(results) == {"summary", "samples"}
    assert len(results["samples"]) == expected_samples
    assert {"completion", "grade", "correct", "seed", "temperature", "top_p"} <= set(results["samples"][0])
    assert {s["temperature"] for s in results["samples"]} == {0.1, 0.7}
    summary = results["summary"]
    assert summary["samples_drawn_this_run"] == expected_samples
    for model in tiny_models:
        model_results = summary["results"][model]
        assert set(model_results["benchmarks"]) == {"aime24", "math500"}
        aime = model_results["benchmarks"]["aime24"]
        assert aime["num_problems"] == 3
        assert {"pass@1", "avg@2", "pass@k"} <= set(aime) and set(aime["pass@k"]) == {"1", "2"}
        assert 0.0 <= aime["pass@1"] <= 1.0 and aime["pass@k"]["1"] <= aime["pass@k"]["2"] <= 1.0

    table = (output_dir / "table.md").read_text().splitlines()
    assert "| Model | AIME24 | MATH500 | Average |" in table
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| Model")]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == tiny_models
    assert all(row.count(" / ") == 3 for row in rows)

    png = (output_dir / "pass_at_k.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 1000

    # Rerun: everything is on disk, nothing is generated, and the numbers are the same.
    samples_before = (output_dir / "samples.jsonl").read_text()
    count_generate.clear()
    assert cli.main(argv) == 0
    assert count_generate == []
    assert (output_dir / "samples.jsonl").read_text() == samples_before
    rerun = json.loads((output_dir / "results.json").read_text())["summary"]
    assert rerun["samples_drawn_this_run"] == rerun["samples_regraded_this_run"] == 0
    assert rerun["results"] == summary["results"]

    # Another reading: nothing is sampled again, every sample is regraded, and the reports say which reading.
    assert cli.main([*argv, "--reasoning-end", "</think>"]) == 0
    assert count_generate == []
    reread = json.loads((output_dir / "results.json").read_text())
    assert reread["summary"]["protocol"]["reasoning_end"] == "</think>"
    assert reread["summary"]["samples_regraded_this_run"] == expected_samples
    assert {s["reasoning_end"] for s in reread["samples"]} == {"</think>"}
    assert "graded after the last `</think>`" in (output_dir / "table.md").read_text().splitlines()[0]
    assert cli.main(argv) == 0 and count_generate == []  # and back: the first numbers again
    back = json.loads((output_dir / "results.json").read_text())["summary"]
    assert back["samples_regraded_this_run"] == expected_samples and back["results"] == summary["results"]

    # An interrupted run (some samples missing, last line cut short) draws only what is missing.
    lines = samples_before.splitlines()
    (output_dir / "samples.jsonl").write_text("\n".join(lines[:-5]) + "\n" + lines[-5][:20])
    assert cli.main(argv) == 0
    assert sum(count_generate) == 5


def test_eval_cli_rejects_k_above_the_sample_count(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["eval", "--models", "m", "--output-dir", str(tmp_path), "--num-samples", "4", "--ks", "8"])


@requires_shared_benchmarks
def test_pass_at_k_callback_logs_through_a_grpo_trainer(tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = build_tiny_model_and_tokenizer()
    train = Dataset.from_dict({"prompt": [[{"role": "user", "content": "What is 2+2?"}]] * 4, "solution": ["4"] * 4})
    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_completion_length=4,
        max_steps=2, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=model, reward_funcs=lambda completions, **_: [0.0] * len(completions), args=args,
        train_dataset=train, processing_class=tokenizer,
    )  # fmt: skip
    callback = PassAtKCallback(trainer, ["aime24"], data_dir=SHARED_DATA_DIR, eval_steps=2, limit=2, num_samples=2)
    trainer.add_callback(callback)
    rng_before = torch.get_rng_state()
    metrics = callback.evaluate(trainer.model, tokenizer)
    assert torch.equal(torch.get_rng_state(), rng_before), "evaluation must not move the training random stream"
    assert set(metrics) == {"eval/avg@2", "eval/pass@1", "eval/pass@2"}

    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "eval/pass@2" in entry]
    assert [entry["step"] for entry in logged] == [2]  # eval_steps=2: step 2 only
    assert 0.0 <= logged[0]["eval/avg@2"] <= logged[0]["eval/pass@2"] <= 1.0


def test_callback_restores_training_mode():
    model, tokenizer = build_tiny_model_and_tokenizer()
    model.train()
    trainer = SimpleNamespace(
        args=SimpleNamespace(max_completion_length=3),
        accelerator=SimpleNamespace(process_index=0, num_processes=1),
    )
    callback = PassAtKCallback(trainer, benchmarks=(), num_samples=1)
    # One hand-made problem instead of a benchmark, so this runs without the shared data.
    callback.problems = {"toy": [evaluation.Problem("toy", 0, [{"role": "user", "content": "1+1?"}], "2", "sha")]}
    metrics = callback.evaluate(model, tokenizer)
    assert model.training
    assert set(metrics) == {"eval/avg@1", "eval/pass@1"}


@pytest.mark.parametrize(("reasoning_end", "column"), [(None, 1), ("</think>", 2)])
def test_the_callback_grades_with_the_reading_it_is_given(monkeypatch, reasoning_end, column):
    monkeypatch.setattr(evaluation.callback, "TransformersSampler", lambda model, tokenizer, batch_size: FixedSampler())
    trainer = SimpleNamespace(
        args=SimpleNamespace(max_completion_length=3),
        accelerator=SimpleNamespace(process_index=0, num_processes=1),
    )
    callback = PassAtKCallback(trainer, benchmarks=(), num_samples=4, ks=(4,), reasoning_end=reasoning_end)
    callback.problems = {"toy": [thinking_work()[0].problem]}
    metrics = callback.evaluate(torch.nn.Linear(1, 1), tokenizer=None)
    expected = [row[column] for row in THINKING_COMPLETIONS]
    assert metrics == {"eval/avg@4": pytest.approx(sum(expected) / 4), "eval/pass@4": 1.0}


def test_a_lora_adapter_is_loaded_on_its_base_and_merged(tmp_path, tiny_models):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from dsdr_trl.evaluation import find_adapter, load_model

    base_dir = tiny_models[0]
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)

    assert find_adapter(base_dir) == (base_dir, None)
    assert find_adapter(str(adapter_dir)) == (base_dir, str(adapter_dir))
    merged = load_model(str(adapter_dir), device="cpu")
    assert not isinstance(merged, PeftModel)
    input_ids = torch.tensor([[5, 17, 42, 99]])
    base_logits = AutoModelForCausalLM.from_pretrained(base_dir)(input_ids).logits
    with torch.no_grad():
        expected = peft_model.eval()(input_ids).logits
        assert torch.allclose(merged(input_ids).logits, expected, atol=1e-5)
        # The adapter's non-zero initialisation must actually change the model (else this test proves nothing).
        assert not torch.allclose(base_logits, expected, atol=1e-4)
