"""The paper's evaluation protocol (Sec. 4.1, Table 3): Pass@1, Avg@k, Pass@k curves and diversity@k.

One concern per module; imports point down this list only:

- `protocol`: the sampling regimes and their settings, per-sample seeds (standard library only);
- `metrics`: Pass@k, Avg@k, diversity@k as pure functions (no torch, no transformers);
- `reports`: results.json, the Markdown table and the Pass@k plot (standard library and matplotlib);
- `store`: benchmark problems, the work plan and the resumable sample store;
- `loading`: models, LoRA adapters and tokenizers;
- `sampling`: the transformers and vLLM backends behind `Sampler`, and drawing and grading a chunk of samples;
- `run`: `run_evaluation`, the whole run behind `dsdr-trl eval`;
- `callback`: `PassAtKCallback`, evaluation during training.

Every public name of these modules can be imported from `dsdr_trl.evaluation` itself. Those of `protocol`,
`metrics` and `reports` are imported with the package; the others on first use, so that reading the protocol or
computing Pass@k does not load torch, transformers or TRL.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .metrics import (
    DEFAULT_ENCODER,
    average_over_benchmarks,
    correctness_metrics,
    derivation_signature,
    diversity_of_correct,
    pass_at_k,
)
from .protocol import PASS1_REGIME, SAMPLED_REGIME, EvaluationProtocol, SamplingSettings, default_ks, sample_seed
from .reports import (
    BENCHMARK_TITLES,
    PLOT_FILE,
    RESULTS_FILE,
    TABLE_FILE,
    benchmark_title,
    markdown_table,
    plot_pass_at_k,
    write_reports,
)

# Module -> its public names, imported on first use (these modules load torch, transformers, datasets or the grader).
_LAZY_MODULES = {
    "store": (
        "SAMPLES_FILE", "Problem", "prompt_fingerprint", "load_problems", "WorkItem", "plan_work", "chunks",
        "sample_key", "SampleStore",
    ),
    "loading": ("default_device", "adapter_config", "find_adapter", "load_tokenizer", "load_model"),
    "sampling": (
        "Generation", "Sampler", "stop_token_ids", "TransformersSampler", "VLLMSampler", "resolve_backend",
        "make_sampler", "render_prompt", "draw_samples", "grade_records",
    ),
    "run": ("LazyScorer", "generate_missing", "regrade_stale", "summarize", "run_evaluation"),
    "callback": ("PassAtKCallback", "shard"),
}  # fmt: skip
_LAZY_NAMES = {name: module for module, names in _LAZY_MODULES.items() for name in names}

if TYPE_CHECKING:  # the same names for type checkers, which do not run __getattr__
    from .callback import PassAtKCallback, shard
    from .loading import adapter_config, default_device, find_adapter, load_model, load_tokenizer
    from .run import LazyScorer, generate_missing, regrade_stale, run_evaluation, summarize
    from .sampling import (
        Generation,
        Sampler,
        TransformersSampler,
        VLLMSampler,
        draw_samples,
        grade_records,
        make_sampler,
        render_prompt,
        resolve_backend,
        stop_token_ids,
    )
    from .store import (
        SAMPLES_FILE,
        Problem,
        SampleStore,
        WorkItem,
        chunks,
        load_problems,
        plan_work,
        prompt_fingerprint,
        sample_key,
    )

__all__ = [
    "BENCHMARK_TITLES",
    "DEFAULT_ENCODER",
    "PASS1_REGIME",
    "PLOT_FILE",
    "RESULTS_FILE",
    "SAMPLED_REGIME",
    "TABLE_FILE",
    "EvaluationProtocol",
    "SamplingSettings",
    "average_over_benchmarks",
    "benchmark_title",
    "correctness_metrics",
    "default_ks",
    "derivation_signature",
    "diversity_of_correct",
    "markdown_table",
    "pass_at_k",
    "plot_pass_at_k",
    "sample_seed",
    "write_reports",
    *_LAZY_NAMES,
]


def __getattr__(name: str) -> Any:
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
