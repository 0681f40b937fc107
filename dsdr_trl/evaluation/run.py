"""An evaluation run end to end: plan every sample, draw the missing ones, summarise the metrics, write the reports."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

import torch
from tqdm.auto import tqdm

from .loading import default_device
from .metrics import DEFAULT_ENCODER, correctness_metrics, diversity_of_correct
from .protocol import PASS1_REGIME, SAMPLED_REGIME, EvaluationProtocol
from .reports import write_reports
from .sampling import draw_samples, grade_records, make_sampler
from .store import SAMPLES_FILE, Problem, SampleStore, WorkItem, chunks, load_problems, plan_work


@dataclass
class LazyScorer:
    """Loads the sentence encoder only if some problem has two correct samples to compare."""

    encoder: str
    device: str | torch.device
    _scorer: Any = field(default=None, repr=False)

    def __call__(self, texts: Sequence[str], group_size: int) -> Any:
        if self._scorer is None:
            from ..scorer import DiversityScorer

            self._scorer = DiversityScorer(model=self.encoder, device=self.device)
        return self._scorer(list(texts), group_size)


def generate_missing(
    work: Sequence[WorkItem],
    store: SampleStore,
    *,
    backend: str,
    device: str | torch.device,
    batch_size: int,
    dtype: str,
    seed: int,
    reasoning_end: str | None,
    show_progress: bool,
) -> int:
    """Draw every planned sample not yet in the store, one model loaded at a time; returns how many were drawn.

    Each is graded with the reading `reasoning_end` (see `EvaluationProtocol`).
    """
    missing = [item for item in work if item.key() not in store]
    with tqdm(total=len(missing), desc="sampling", unit="sample", disable=not show_progress) as progress:
        for model_name in dict.fromkeys(item.model for item in missing):
            sampler, tokenizer = make_sampler(model_name, backend, device, batch_size, dtype, seed)
            model_items = [item for item in missing if item.model == model_name]
            for batch in chunks(model_items, sampler.chunk_size):
                store.append(draw_samples(sampler, tokenizer, batch, reasoning_end=reasoning_end))
                progress.update(len(batch))
            # Free this model before the next one is loaded.
            del sampler
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return len(missing)


def regrade_stale(work: Sequence[WorkItem], store: SampleStore, reasoning_end: str | None) -> int:
    """Grade again the planned samples the store holds under another reading; returns how many.

    A sample is reusable whatever the reading (it depends on the sampling settings only), its grade is not: the
    regraded records are appended, and a record appended later replaces the earlier one when the store is read.
    Records written before the reading was recorded were graded whole (None).
    """
    stale = [store[item.key()] for item in work if store[item.key()].get("reasoning_end") != reasoning_end]
    if stale:
        store.append(grade_records(stale, reasoning_end))
    return len(stale)


def summarize(
    models: Sequence[str],
    problems: dict[str, list[Problem]],
    protocol: EvaluationProtocol,
    store: SampleStore,
    scorer: Any | None,
) -> dict[str, Any]:
    """Per model: per-benchmark metrics and their average; diversity@k when a scorer is given."""
    regimes = protocol.regimes()
    results: dict[str, Any] = {}
    for model in models:
        per_benchmark: dict[str, dict[str, Any]] = {}
        for benchmark, benchmark_problems in problems.items():
            sampled: list[list[dict[str, Any]]] = []
            pass1: list[bool] = []
            for problem in benchmark_problems:
                rows = {}
                for regime, (settings, count) in regimes.items():
                    rows[regime] = [store[WorkItem(model, problem, regime, settings, i).key()] for i in range(count)]
                pass1.append(rows[PASS1_REGIME][0]["correct"])
                sampled.append(rows[SAMPLED_REGIME])
            metrics: dict[str, Any] = {"num_problems": len(benchmark_problems), "pass@1": sum(pass1) / len(pass1)}
            # Pass@k goes in its own mapping: its k = 1 (from the T = 0.7 samples) is not the paper's Pass@1.
            sampled_metrics = correctness_metrics(
                [[r["correct"] for r in rows] for rows in sampled], protocol.avg_k, protocol.ks
            )
            metrics[f"avg@{protocol.avg_k}"] = sampled_metrics.pop(f"avg@{protocol.avg_k}")
            metrics["pass@k"] = {k: sampled_metrics[f"pass@{k}"] for k in protocol.ks}
            if scorer is not None:
                correct_texts = [[r["completion"] for r in rows[: protocol.avg_k] if r["correct"]] for rows in sampled]
                metrics[f"diversity@{protocol.avg_k}"] = diversity_of_correct(correct_texts, scorer)
            per_benchmark[benchmark] = metrics
        average: dict[str, Any] = {
            "pass@1": fmean(m["pass@1"] for m in per_benchmark.values()),
            f"avg@{protocol.avg_k}": fmean(m[f"avg@{protocol.avg_k}"] for m in per_benchmark.values()),
            "pass@k": {k: fmean(m["pass@k"][k] for m in per_benchmark.values()) for k in protocol.ks},
        }
        results[model] = {"benchmarks": per_benchmark, "average": average}
    return results


def run_evaluation(
    models: Sequence[str],
    benchmarks: Sequence[str],
    output_dir: str | Path,
    protocol: EvaluationProtocol | None = None,
    *,
    backend: str = "auto",
    device: str | None = None,
    batch_size: int = 16,
    dtype: str = "auto",
    limit: int | None = None,
    data_dir: str | Path | None = None,
    system_prompt: str | None = None,
    encoder: str | None = DEFAULT_ENCODER,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluate models on benchmarks and write samples.jsonl, results.json, table.md and pass_at_k.png.

    Args:
        models: model or checkpoint paths / Hub ids; LoRA adapters are recognised by their adapter_config.json.
        benchmarks: names from `dsdr_trl.data.BENCHMARKS`, JSONL paths or Hub ids.
        output_dir: where everything is written; rerunning with the same directory resumes.
        protocol: sampling, grading and metric settings (default: the paper's, grading whole completions).
        backend: "auto", "vllm" or "transformers".
        device: for transformers sampling and the diversity encoder (default: cuda if available, else cpu).
        batch_size: prompts per transformers `generate` call.
        dtype: "auto" or a torch dtype name ("bfloat16", ...).
        limit: evaluate only the first `limit` problems of each benchmark.
        data_dir: local data root searched before the Hub (see `dsdr_trl.data.resolve_local_benchmark`).
        system_prompt: an optional system message before each problem.
        encoder: sentence encoder for diversity@k (name or path); None skips diversity@k.
        show_progress: show a tqdm progress bar with ETA.

    Returns:
        The summary written to results.json (without the samples).
    """
    protocol = protocol or EvaluationProtocol()
    device = device or default_device()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    problems = load_problems(benchmarks, limit, data_dir, system_prompt)
    work = plan_work(models, problems, protocol)
    store = SampleStore(output_dir / SAMPLES_FILE)
    drawn = generate_missing(
        work,
        store,
        backend=backend,
        device=device,
        batch_size=batch_size,
        dtype=dtype,
        seed=protocol.seed,
        reasoning_end=protocol.reasoning_end,
        show_progress=show_progress,
    )
    regraded = regrade_stale(work, store, protocol.reasoning_end)
    scorer = LazyScorer(encoder, device) if encoder else None
    results = summarize(models, problems, protocol, store, scorer)
    summary = {
        "protocol": asdict(protocol),
        "models": list(models),
        "benchmarks": list(benchmarks),
        "limit": limit,
        "system_prompt": system_prompt,
        "encoder": encoder,
        "samples_drawn_this_run": drawn,
        "samples_regraded_this_run": regraded,
        "results": results,
    }
    write_reports(output_dir, summary, [store[item.key()] for item in work])
    return summary
