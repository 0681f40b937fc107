"""The paper's evaluation protocol (Sec. 4.1, Table 3): Pass@1, Avg@k, Pass@k curves and diversity@k.

For each model and benchmark, two sampling regimes are run:

- "pass@1": one sample per problem at temperature 0.1 (top-p 0.9). Pass@1 is its mean correctness.
- "sampled": `num_samples` (64) samples per problem at temperature 0.7, top-p 0.9. Avg@k (k = 16) is the mean
  correctness of the first k of them, and Pass@k for each k is the unbiased estimator of Chen et al. (2021)
  over all of them. The paper draws its 16 Avg@16 samples and its 64 Pass@k samples with the same settings;
  sharing them here saves a quarter of the generation and changes no expectation.

Diversity@k is a reproducible stand-in for the paper's LLM-judged diversity. Among the *correct* samples of a
problem within the first k sampled ones (problems with at least two correct samples only):

- `semantic`: mean D_emb (Eq. 6) of DSDR's own `DiversityScorer`, the correct samples forming one group;
- `formula`: mean D_eq (Eq. 8), the share of a sample's formulas that no other correct sample uses;
- `derivations`: the number of distinct derivations, where a derivation is a sample's set of normalised
  formulas (`dsdr_trl.formulas.extract_formulas`): two correct samples count as the same derivation exactly
  when they write down the same formulas. `derivation_ratio` divides it by the number of correct samples.

Each is averaged over the problems it is defined for. All metrics are fractions in [0, 1]; reports show percent.

Samples are appended to `samples.jsonl` in the output directory as they are produced, each keyed by model,
benchmark, problem index, a fingerprint of the prompt, sample index and sampling settings; a rerun with the same
output directory generates only what is missing. Sampling uses vLLM when it is installed and a GPU is present
and transformers `generate` otherwise, with the same settings either way (temperature, top-p, max new tokens,
seed; no top-k and no repetition penalty, whatever the model's own generation config says). Seeds are derived
per sample; vLLM honours them per sample, transformers seeds each batch with its first sample's seed.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
)

from .data import Prompt, load_benchmark
from .formulas import extract_formulas
from .grading import grade_many

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
SAMPLES_FILE = "samples.jsonl"
RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
PLOT_FILE = "pass_at_k.png"
BENCHMARK_TITLES = {
    "aime24": "AIME24",
    "aime25": "AIME25",
    "math500": "MATH500",
    "minervamath": "Minerva",
    "olympiadbench": "Olympiad",
}
PASS1_REGIME = "pass@1"
SAMPLED_REGIME = "sampled"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased Pass@k from n samples of which c are correct (Chen et al., 2021): 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1..n} (1 - k / i), which never forms the huge binomials.
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}.")
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}.")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    if k > n:
        raise ValueError(f"k = {k} is larger than the number of samples n = {n}.")
    if c > n:
        raise ValueError(f"c = {c} correct samples is more than n = {n} samples.")
    if n - c < k:
        # Every draw of k samples contains a correct one.
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


@dataclass(frozen=True)
class SamplingSettings:
    """Everything that decides the distribution of a sample, and so belongs in its resume key."""

    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int

    def key(self) -> str:
        """A stable text form, used in resume keys."""
        return f"T={self.temperature}|top_p={self.top_p}|max_new_tokens={self.max_new_tokens}|seed={self.seed}"


@dataclass(frozen=True)
class EvaluationProtocol:
    """What is sampled and reported; defaults are the paper's (Sec. 4.1, Table 3; max length of 4K training)."""

    pass1_temperature: float = 0.1
    temperature: float = 0.7
    top_p: float = 0.9
    avg_k: int = 16
    num_samples: int = 64
    ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    max_new_tokens: int = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {self.num_samples}.")
        if not 1 <= self.avg_k <= self.num_samples:
            raise ValueError(f"avg_k must be between 1 and num_samples = {self.num_samples}, got {self.avg_k}.")
        bad_ks = [k for k in self.ks if not 1 <= k <= self.num_samples]
        if not self.ks or bad_ks:
            raise ValueError(f"every k must be between 1 and num_samples = {self.num_samples}; got {self.ks}.")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}.")

    def regimes(self) -> dict[str, tuple[SamplingSettings, int]]:
        """Regime name -> (sampling settings, samples per problem)."""
        return {
            PASS1_REGIME: (SamplingSettings(self.pass1_temperature, self.top_p, self.max_new_tokens, self.seed), 1),
            SAMPLED_REGIME: (
                SamplingSettings(self.temperature, self.top_p, self.max_new_tokens, self.seed),
                self.num_samples,
            ),
        }


def default_ks(num_samples: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to num_samples, and num_samples itself: the x-axis of the paper's Pass@k curves."""
    powers = [2**i for i in range(num_samples.bit_length()) if 2**i <= num_samples]
    return tuple(sorted({*powers, num_samples}))


def sample_seed(base_seed: int, benchmark: str, problem_index: int, sample_index: int) -> int:
    """A per-sample seed that is the same in every process and run (hashlib, not Python's salted `hash`)."""
    digest = hashlib.sha256(f"{base_seed}|{benchmark}|{problem_index}|{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def prompt_fingerprint(prompt: Prompt) -> str:
    """Short hash of a prompt, so a resumed run never reuses samples drawn for a different prompt."""
    return hashlib.sha256(json.dumps(prompt, sort_keys=True).encode()).hexdigest()[:16]


def render_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Prompt) -> str:
    """The text the model is conditioned on: the chat template with a generation prompt when there is one."""
    if isinstance(prompt, str):
        return prompt
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(message["content"] for message in prompt)


# --------------------------------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class Generation:
    """One sampled completion."""

    text: str
    num_tokens: int
    finished: bool
    """Ended with an end-of-sequence token rather than at the length limit."""


class Sampler(Protocol):
    """Draws one completion per prompt."""

    chunk_size: int
    """How many prompts to hand over per call (also the resume granularity)."""

    def generate(self, prompts: Sequence[str], settings: SamplingSettings, seeds: Sequence[int]) -> list[Generation]:
        """One completion per prompt, `seeds[i]` belonging to `prompts[i]`."""
        ...


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The tokenizer's eos and the model's generation-config eos ids (chat models often stop on several)."""
    configured = model.generation_config.eos_token_id
    configured = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    ids = [tokenizer.eos_token_id, *configured]
    return list(dict.fromkeys(i for i in ids if i is not None))


class TransformersSampler:
    """Samples with `model.generate`, a batch of prompts at a time, leaving the caller's random state untouched."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 8):
        self.model = model
        self.tokenizer = tokenizer
        self.chunk_size = batch_size
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]

    def generate(self, prompts: Sequence[str], settings: SamplingSettings, seeds: Sequence[int]) -> list[Generation]:
        """Sample one completion per prompt; the batch is seeded with `seeds[0]`."""
        padding_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
        try:
            # The chat template already wrote any special tokens the model expects.
            inputs = self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            self.tokenizer.padding_side = padding_side
        inputs = inputs.to(self.model.device)
        # A fresh config, not the model's: its defaults (top-k, repetition penalty) would make this backend
        # sample from a different distribution than vLLM with the same settings.
        generation_config = GenerationConfig(
            do_sample=True,
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=0,
            max_new_tokens=settings.max_new_tokens,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
            use_cache=True,
        )
        devices = [self.model.device] if self.model.device.type == "cuda" else []
        # fork_rng: during training, evaluation must not shift the trainer's random stream.
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seeds[0])
            output = self.model.generate(**inputs, generation_config=generation_config)
        completions = output[:, inputs["input_ids"].shape[1] :].tolist()
        return [self._to_generation(tokens) for tokens in completions]

    def _to_generation(self, tokens: list[int]) -> Generation:
        stop = next((i for i, token in enumerate(tokens) if token in self.stop_ids), None)
        kept = tokens if stop is None else tokens[: stop + 1]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Generation(text=text, num_tokens=len(kept), finished=stop is not None)


class VLLMSampler:
    """Samples with vLLM (per-sample seeds), a LoRA adapter served on top of its base model."""

    chunk_size = 512

    def __init__(self, model_path: str, adapter_path: str | None, tokenizer: PreTrainedTokenizerBase, seed: int):
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        self.tokenizer = tokenizer
        lora_rank = _adapter_config(adapter_path)["r"] if adapter_path else None
        # generation_config="vllm": ignore the model's sampling defaults, as TransformersSampler does.
        self.llm = LLM(
            model=model_path,
            seed=seed,
            generation_config="vllm",
            enable_lora=adapter_path is not None,
            **({"max_lora_rank": lora_rank} if lora_rank else {}),
        )
        self.lora_request = LoRARequest("adapter", 1, adapter_path) if adapter_path else None

    def generate(self, prompts: Sequence[str], settings: SamplingSettings, seeds: Sequence[int]) -> list[Generation]:
        """Sample one completion per prompt with its own seed."""
        from vllm import SamplingParams

        params = [
            SamplingParams(
                n=1,
                temperature=settings.temperature,
                top_p=settings.top_p,
                top_k=-1,
                repetition_penalty=1.0,
                max_tokens=settings.max_new_tokens,
                seed=seed,
            )
            for seed in seeds
        ]
        # Token ids, not text: vLLM would add special tokens the chat template already wrote.
        token_ids = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        token_prompts = [{"prompt_token_ids": ids} for ids in token_ids]
        outputs = self.llm.generate(token_prompts, params, lora_request=self.lora_request, use_tqdm=False)
        return [
            Generation(out.outputs[0].text, len(out.outputs[0].token_ids), out.outputs[0].finish_reason == "stop")
            for out in outputs
        ]


def _adapter_config(adapter_path: str) -> dict[str, Any]:
    return json.loads((Path(adapter_path) / "adapter_config.json").read_text())


def find_adapter(name_or_path: str) -> tuple[str, str | None]:
    """(base model, adapter) for a PEFT adapter (local dir or Hub id), else (name_or_path, None).

    The adapter is returned as a local directory (downloaded from the Hub if need be).
    """
    from transformers.utils import find_adapter_config_file

    config_file = find_adapter_config_file(name_or_path)
    if config_file is None:
        return name_or_path, None
    adapter_dir = str(Path(config_file).parent)
    return _adapter_config(adapter_dir)["base_model_name_or_path"], adapter_dir


def load_tokenizer(name_or_path: str, base: str) -> PreTrainedTokenizerBase:
    """The adapter's own tokenizer when it ships one (it may add tokens), else the base model's; pad token set."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError):
        tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str, device: str | torch.device, dtype: str = "auto") -> PreTrainedModel:
    """A causal LM for generation; a PEFT adapter is loaded on its base model and merged (faster sampling)."""
    base, adapter = find_adapter(name_or_path)
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model.to(device).eval()


def resolve_backend(backend: str) -> str:
    """"auto" -> "vllm" when vLLM is installed and a GPU is visible, else "transformers"."""
    if backend not in ("auto", "vllm", "transformers"):
        raise ValueError(f"backend must be 'auto', 'vllm' or 'transformers', got {backend!r}.")
    if backend != "auto":
        return backend
    has_vllm = importlib.util.find_spec("vllm") is not None
    return "vllm" if has_vllm and torch.cuda.is_available() else "transformers"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def make_sampler(
    name_or_path: str, backend: str, device: str | torch.device, batch_size: int, dtype: str, seed: int
) -> tuple[Sampler, PreTrainedTokenizerBase]:
    """Load a model (or adapter) into the chosen backend; returns the sampler and the tokenizer for prompts."""
    base, adapter = find_adapter(name_or_path)
    tokenizer = load_tokenizer(adapter or base, base)
    if resolve_backend(backend) == "vllm":
        return VLLMSampler(base, adapter, tokenizer, seed), tokenizer
    return TransformersSampler(load_model(name_or_path, device, dtype), tokenizer, batch_size), tokenizer


# ---------------------------------------------------------------------------------------------- sample store


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
        if self.path.exists():
            with open(self.path, encoding="utf-8") as handle:
                for line in handle:
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
            # Start on a fresh line even if the previous run died mid-line.
            if handle.tell() > 0 and not self.path.read_bytes().endswith(b"\n"):
                handle.write("\n")
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                self.records[sample_key(record)] = record


# ------------------------------------------------------------------------------------------------ the run


@dataclass(frozen=True)
class Problem:
    """One benchmark problem as the run sees it."""

    benchmark: str
    index: int
    prompt: Prompt
    answer: str
    fingerprint: str


@dataclass(frozen=True)
class WorkItem:
    """One sample to draw."""

    model: str
    problem: Problem
    regime: str
    settings: SamplingSettings
    sample_index: int

    def key(self) -> tuple[Any, ...]:
        return (
            self.model,
            self.problem.benchmark,
            self.problem.index,
            self.problem.fingerprint,
            self.sample_index,
            self.settings.key(),
        )


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


def draw_samples(
    sampler: Sampler, tokenizer: PreTrainedTokenizerBase, items: Sequence[WorkItem]
) -> list[dict[str, Any]]:
    """Sample and grade one chunk of work items (same settings); returns their records."""
    settings = items[0].settings
    prompts = [render_prompt(tokenizer, item.problem.prompt) for item in items]
    seeds = [
        sample_seed(settings.seed, item.problem.benchmark, item.problem.index, item.sample_index) for item in items
    ]
    generations = sampler.generate(prompts, settings, seeds)
    grades = grade_many([g.text for g in generations], [item.problem.answer for item in items])
    return [
        {
            "model": item.model,
            "benchmark": item.problem.benchmark,
            "problem_index": item.problem.index,
            "prompt_sha": item.problem.fingerprint,
            "sample_index": item.sample_index,
            "settings": settings.key(),
            "regime": item.regime,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_new_tokens": settings.max_new_tokens,
            "seed": seed,
            "answer": item.problem.answer,
            "completion": generation.text,
            "num_tokens": generation.num_tokens,
            "finished": generation.finished,
            # None means the grader could not decide (no answer found, timeout): it counts as incorrect.
            "grade": grade,
            "correct": grade is True,
        }
        for item, generation, grade, seed in zip(items, generations, grades, seeds, strict=True)
    ]


def generate_missing(
    work: Sequence[WorkItem],
    store: SampleStore,
    *,
    backend: str,
    device: str | torch.device,
    batch_size: int,
    dtype: str,
    seed: int,
    show_progress: bool,
) -> int:
    """Draw every planned sample not yet in the store, one model loaded at a time; returns how many were drawn."""
    missing = [item for item in work if item.key() not in store]
    with tqdm(total=len(missing), desc="sampling", unit="sample", disable=not show_progress) as progress:
        for model_name in dict.fromkeys(item.model for item in missing):
            sampler, tokenizer = make_sampler(model_name, backend, device, batch_size, dtype, seed)
            model_items = [item for item in missing if item.model == model_name]
            for batch in chunks(model_items, sampler.chunk_size):
                store.append(draw_samples(sampler, tokenizer, batch))
                progress.update(len(batch))
            # Free this model before the next one is loaded.
            del sampler
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return len(missing)


# ------------------------------------------------------------------------------------------------- metrics


def correctness_metrics(correct: Sequence[Sequence[bool]], avg_k: int, ks: Sequence[int]) -> dict[str, float]:
    """Avg@k and Pass@k over problems, from each problem's ordered sample correctness (fractions in [0, 1])."""
    if not correct:
        raise ValueError("no problems to score.")
    metrics = {f"avg@{avg_k}": sum(sum(row[:avg_k]) / avg_k for row in correct) / len(correct)}
    for k in ks:
        metrics[f"pass@{k}"] = sum(pass_at_k(len(row), sum(row), k) for row in correct) / len(correct)
    return metrics


def derivation_signature(text: str) -> tuple[str, ...]:
    """A completion's derivation: its sorted set of normalised formulas."""
    return tuple(sorted(extract_formulas(text)))


def diversity_of_correct(groups: Sequence[Sequence[str]], scorer: Any) -> dict[str, float | int | None]:
    """Diversity@k from each problem's correct completions; problems with fewer than two are left out.

    `scorer` is a `DiversityScorer` (or anything called as `scorer(texts, group_size)` returning `.semantic`
    and `.formula` tensors).
    """
    scored = [list(group) for group in groups if len(group) >= 2]
    if not scored:
        return {"problems": 0, "semantic": None, "formula": None, "derivations": None, "derivation_ratio": None}
    semantic, formula, derivations, ratio = [], [], [], []
    for group in scored:
        scores = scorer(group, group_size=len(group))
        semantic.append(float(scores.semantic.mean()))
        formula.append(float(scores.formula.mean()))
        distinct = len({derivation_signature(text) for text in group})
        derivations.append(distinct)
        ratio.append(distinct / len(group))
    count = len(scored)
    return {
        "problems": count,
        "semantic": sum(semantic) / count,
        "formula": sum(formula) / count,
        "derivations": sum(derivations) / count,
        "derivation_ratio": sum(ratio) / count,
    }


@dataclass
class LazyScorer:
    """Loads the sentence encoder only if some problem has two correct samples to compare."""

    encoder: str
    device: str | torch.device
    _scorer: Any = field(default=None, repr=False)

    def __call__(self, texts: Sequence[str], group_size: int) -> Any:
        if self._scorer is None:
            from .scorer import DiversityScorer

            self._scorer = DiversityScorer(model=self.encoder, device=self.device)
        return self._scorer(list(texts), group_size)


def average_over_benchmarks(per_benchmark: dict[str, dict[str, float]]) -> dict[str, float]:
    """The unweighted mean of each metric over benchmarks (the paper's "Average" column)."""
    keys = next(iter(per_benchmark.values())).keys()
    return {key: _mean(results[key] for results in per_benchmark.values()) for key in keys}


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
                    rows[regime] = [
                        store[WorkItem(model, problem, regime, settings, i).key()] for i in range(count)
                    ]
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
            "pass@1": _mean(m["pass@1"] for m in per_benchmark.values()),
            f"avg@{protocol.avg_k}": _mean(m[f"avg@{protocol.avg_k}"] for m in per_benchmark.values()),
            "pass@k": {k: _mean(m["pass@k"][k] for m in per_benchmark.values()) for k in protocol.ks},
        }
        results[model] = {"benchmarks": per_benchmark, "average": average}
    return results


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values)


# ------------------------------------------------------------------------------------------------- reports


def benchmark_title(name: str) -> str:
    return BENCHMARK_TITLES.get(name, Path(name).name or name)


def markdown_table(results: dict[str, Any], benchmarks: Sequence[str], avg_k: int) -> str:
    """Table 1 of the paper: rows = models, columns = benchmarks + average, cells "Pass@1 / Avg@k" in percent."""
    header = ["Model", *(benchmark_title(b) for b in benchmarks), "Average"]
    lines = [
        f"Pass@1 / Avg@{avg_k} (%)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|",
    ]
    for model, model_results in results.items():
        cells = [model_results["benchmarks"][b] for b in benchmarks] + [model_results["average"]]
        lines.append(
            "| "
            + " | ".join([model] + [f"{100 * c['pass@1']:.1f} / {100 * c[f'avg@{avg_k}']:.1f}" for c in cells])
            + " |"
        )
    diversity_key = f"diversity@{avg_k}"
    if any(diversity_key in r["benchmarks"][b] for r in results.values() for b in benchmarks):
        lines += [
            "",
            f"Diversity@{avg_k} among correct samples: semantic / formula / distinct derivations "
            "(problems with at least two correct samples; - where none)",
            "",
            "| " + " | ".join(header[:-1]) + " |",
            "|" + "|".join(["---"] + [":---:"] * (len(header) - 2)) + "|",
        ]
        for model, model_results in results.items():
            cells = [_diversity_cell(model_results["benchmarks"][b].get(diversity_key)) for b in benchmarks]
            lines.append("| " + " | ".join([model, *cells]) + " |")
    return "\n".join(lines) + "\n"


def _diversity_cell(diversity: dict[str, Any] | None) -> str:
    if not diversity or not diversity["problems"]:
        return "-"
    return f"{diversity['semantic']:.3f} / {diversity['formula']:.3f} / {diversity['derivations']:.2f}"


def plot_pass_at_k(results: dict[str, Any], benchmarks: Sequence[str], path: str | Path) -> None:
    """Pass@k against k (log2 axis), one panel per benchmark plus the average, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [*benchmarks, "average"]
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for axis, panel in zip(axes.flat, panels):
        for model, model_results in results.items():
            curve = model_results["average" if panel == "average" else "benchmarks"]
            curve = curve if panel == "average" else curve[panel]
            ks = sorted(curve["pass@k"])
            axis.plot(ks, [100 * curve["pass@k"][k] for k in ks], marker="o", markersize=3, label=model)
        axis.set_xscale("log", base=2)
        axis.set_xticks(ks, [str(k) for k in ks])  # plain k values rather than powers of two
        axis.set_ylim(bottom=0)
        axis.set_title("Average" if panel == "average" else benchmark_title(panel))
        axis.set_xlabel("k")
        axis.set_ylabel("Pass@k (%)")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    axes.flat[0].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


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
        protocol: sampling and metric settings (default: the paper's).
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
        show_progress=show_progress,
    )
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
        "results": results,
    }
    samples = [store[item.key()] for item in work]
    with open(output_dir / RESULTS_FILE, "w", encoding="utf-8") as handle:
        json.dump({"summary": summary, "samples": samples}, handle, ensure_ascii=False, indent=1)
    (output_dir / TABLE_FILE).write_text(markdown_table(results, benchmarks, protocol.avg_k), encoding="utf-8")
    plot_pass_at_k(results, benchmarks, output_dir / PLOT_FILE)
    return summary


# ------------------------------------------------------------------------------------------ training hook


class PassAtKCallback(TrainerCallback):
    """Every `eval_steps` optimizer steps, sample a benchmark subset with the model being trained and log
    `eval/avg@{num_samples}` and `eval/pass@{k}` (means over benchmarks; fractions in [0, 1]) through
    `trainer.log`, so every logger the trainer reports to receives them.

    Multi-process: every rank samples an equal-sized shard of the problems (rank r takes problems r, r + W, ...;
    short shards are padded with repeats that are then dropped), and the per-problem correctness is gathered so
    that every rank logs the same numbers. All ranks take part because under ZeRO-3 / FSDP a rank cannot run
    the model alone; equal shards give every rank the same number of `generate` calls.

    Usage::

        trainer = DSDRTrainer(...)
        trainer.add_callback(PassAtKCallback(trainer, benchmarks=["math500"], limit=32, eval_steps=50))

    Args:
        trainer: the trainer whose model is evaluated and whose `log` receives the metrics.
        benchmarks, data_dir, system_prompt, limit: which problems (see `dsdr_trl.data.load_benchmark`).
        eval_steps: evaluate when `global_step` is a multiple of it.
        num_samples, ks: samples per problem and the k of Pass@k (k <= num_samples).
        temperature, top_p, max_new_tokens, seed: sampling settings (max_new_tokens defaults to the trainer's
            `max_completion_length` when it has one, else 1024).
        batch_size: prompts per `generate` call.
    """

    def __init__(
        self,
        trainer: Any,
        benchmarks: Sequence[str] = ("math500",),
        *,
        eval_steps: int = 100,
        limit: int | None = 32,
        num_samples: int = 8,
        ks: Sequence[int] | None = None,
        temperature: float = 0.7,
        top_p: float = 0.9,
        max_new_tokens: int | None = None,
        seed: int = 0,
        batch_size: int = 8,
        data_dir: str | Path | None = None,
        system_prompt: str | None = None,
    ):
        if eval_steps < 1:
            raise ValueError(f"eval_steps must be at least 1, got {eval_steps}.")
        self.trainer = trainer
        self.eval_steps = eval_steps
        max_new_tokens = max_new_tokens or getattr(trainer.args, "max_completion_length", None) or 1024
        self.protocol = EvaluationProtocol(
            temperature=temperature,
            top_p=top_p,
            avg_k=num_samples,
            num_samples=num_samples,
            ks=tuple(ks) if ks is not None else default_ks(num_samples),
            max_new_tokens=max_new_tokens,
            seed=seed,
        )
        self.batch_size = batch_size
        self.problems = load_problems(benchmarks, limit, data_dir, system_prompt)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step % self.eval_steps == 0:
            self.trainer.log(self.evaluate(model, processing_class))
        return control

    def evaluate(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        """Sample this rank's shard, gather every rank's correctness, return the metrics (same on all ranks)."""
        from accelerate.utils import gather_object

        accelerator = self.trainer.accelerator
        settings, count = self.protocol.regimes()[SAMPLED_REGIME]
        sampler = TransformersSampler(model, tokenizer, self.batch_size)
        was_training = model.training
        model.eval()
        try:
            local: list[tuple[str, int, list[bool]]] = []
            for benchmark, problems in self.problems.items():
                for problem in shard(problems, accelerator.process_index, accelerator.num_processes):
                    items = [WorkItem("trained", problem, SAMPLED_REGIME, settings, i) for i in range(count)]
                    correct = [
                        record["correct"]
                        for batch in chunks(items, self.batch_size)
                        for record in draw_samples(sampler, tokenizer, batch)
                    ]
                    local.append((benchmark, problem.index, correct))
        finally:
            model.train(was_training)
        gathered = gather_object(local) if accelerator.num_processes > 1 else local
        # Padding repeats a problem on some ranks: keep one result per (benchmark, problem).
        by_problem = {(benchmark, index): correct for benchmark, index, correct in gathered}
        per_benchmark = {
            benchmark: correctness_metrics(
                [by_problem[(benchmark, p.index)] for p in problems], self.protocol.avg_k, self.protocol.ks
            )
            for benchmark, problems in self.problems.items()
        }
        return {f"eval/{key}": value for key, value in average_over_benchmarks(per_benchmark).items()}


def shard(problems: Sequence[Problem], rank: int, world_size: int) -> list[Problem]:
    """Rank `rank`'s problems: every `world_size`-th from `rank`, padded by wrapping so all shards are equal."""
    per_rank = math.ceil(len(problems) / world_size)
    return [problems[(rank + world_size * j) % len(problems)] for j in range(per_rank)]
