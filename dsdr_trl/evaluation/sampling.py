"""Sampling backends behind the `Sampler` protocol, and drawing and grading one chunk of planned samples.

Sampling uses vLLM when it is installed and a GPU is present and transformers `generate` otherwise, with the same
settings either way (temperature, top-p, max new tokens, seed; no top-k and no repetition penalty, whatever the
model's own generation config says). Seeds are derived per sample; vLLM honours them per sample, transformers seeds
each batch with its first sample's seed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from ..data import Prompt
from ..grading import grade_many
from .loading import adapter_config, find_adapter, load_model, load_tokenizer
from .protocol import SamplingSettings, sample_seed
from .store import WorkItem


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
        lora_rank = adapter_config(adapter_path)["r"] if adapter_path else None
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


def resolve_backend(backend: str) -> str:
    """The backend to use; "auto" means "vllm" when vLLM is installed and a GPU is visible, else "transformers"."""
    if backend not in ("auto", "vllm", "transformers"):
        raise ValueError(f"backend must be 'auto', 'vllm' or 'transformers', got {backend!r}.")
    if backend != "auto":
        return backend
    has_vllm = importlib.util.find_spec("vllm") is not None
    return "vllm" if has_vllm and torch.cuda.is_available() else "transformers"


def make_sampler(
    name_or_path: str, backend: str, device: str | torch.device, batch_size: int, dtype: str, seed: int
) -> tuple[Sampler, PreTrainedTokenizerBase]:
    """Load a model (or adapter) into the chosen backend; returns the sampler and the tokenizer for prompts."""
    base, adapter = find_adapter(name_or_path)
    tokenizer = load_tokenizer(adapter or base, base)
    if resolve_backend(backend) == "vllm":
        return VLLMSampler(base, adapter, tokenizer, seed), tokenizer
    return TransformersSampler(load_model(name_or_path, device, dtype), tokenizer, batch_size), tokenizer


def render_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Prompt) -> str:
    """The text the model is conditioned on: the chat template with a generation prompt when there is one."""
    if isinstance(prompt, str):
        return prompt
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(message["content"] for message in prompt)


def draw_samples(
    sampler: Sampler, tokenizer: PreTrainedTokenizerBase, items: Sequence[WorkItem], *, reasoning_end: str | None = None
) -> list[dict[str, Any]]:
    """Sample and grade one chunk of work items (same settings); returns their records for the store.

    `reasoning_end` is the protocol's reading (see `grade_records`).
    """
    settings = items[0].settings
    prompts = [render_prompt(tokenizer, item.problem.prompt) for item in items]
    seeds = [
        sample_seed(settings.seed, item.problem.benchmark, item.problem.index, item.sample_index) for item in items
    ]
    generations = sampler.generate(prompts, settings, seeds)
    records = [
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
        }
        for item, generation, seed in zip(items, generations, seeds, strict=True)
    ]
    return grade_records(records, reasoning_end)


def grade_records(records: Sequence[dict[str, Any]], reasoning_end: str | None) -> list[dict[str, Any]]:
    """The records with their completion graded against their answer, and the reading recorded.

    `reasoning_end` None grades the whole completion; a marker such as "</think>" only the text after its last
    occurrence, and a completion without it is incorrect (`dsdr_trl.grading.grade_many`).
    """
    grades = grade_many([r["completion"] for r in records], [r["answer"] for r in records], reasoning_end=reasoning_end)
    return [
        # None means the grader could not decide (the gold cannot be parsed, a timeout): it counts as incorrect.
        {**record, "reasoning_end": reasoning_end, "grade": grade, "correct": grade is True}
        for record, grade in zip(records, grades, strict=True)
    ]
