"""Evaluation during training: `PassAtKCallback` logs Avg@k and Pass@k of the model being trained, its problems
sharded over processes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from .metrics import average_over_benchmarks, correctness_metrics
from .protocol import SAMPLED_REGIME, EvaluationProtocol, default_ks
from .sampling import TransformersSampler, draw_samples
from .store import Problem, WorkItem, chunks, load_problems


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
        reasoning_end: how completions are graded (see `EvaluationProtocol`): None grades the whole completion,
            "</think>" only the text after it. Pass the reading of the training reward: "</think>" when it is
            `reasoning_math_accuracy_reward` (as in the Qwen3 recipes), None for `math_accuracy_reward`.
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
        reasoning_end: str | None = None,
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
            reasoning_end=reasoning_end,
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
                        for record in draw_samples(
                            sampler, tokenizer, batch, reasoning_end=self.protocol.reasoning_end
                        )
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
