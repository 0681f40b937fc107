"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2` (gloo, CPU).

Each process builds a DSDRTrainer and holds half of a generation batch whose groups straddle the processes. Rank 0
writes what both ranks computed to the JSON file named on the command line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import torch
import torch.distributed as dist

from dsdr_trl import DiversityScorer, DSDRConfig, DSDRTrainer
from tests.test_trainer import (
    digit_reward,
    local_term_gradient,
    prompt_dataset,
    rows,
    synthetic_generation_batch,
    with_old_logps,
)
from tests.tiny import build_tiny_model_and_tokenizer

# 12 completions, groups of 4: the middle group straddles the two processes (rows 4-5 on rank 0, 6-7 on rank 1).
COMPLETIONS = [
    "We add $x+1$ and get $x = 1$.", "So $2+2=4$.", "", "Since $a^2+b^2=c^2$, we have $c = 5$.",
    "The answer is $\\frac{1}{2}$.", "Subtract: $3y = 15$, $y = 5$.", "Multiply $3 \\cdot 4 = 12$.", "12",
    "Let $n$ be even; then $n = 2k$.", "$n = 2k$ so $n^2 = 4k^2$.", "By parity, done.", "$\\sqrt{16} = 4$",
]


class FailingScorer(DiversityScorer):
    """Fails on rank 1 only, as an encoder that runs out of memory on one GPU would."""

    def embed(self, texts):
        if dist.get_rank() == 1:
            raise MemoryError("simulated encoder failure")
        return super().embed(texts)


def main(output_path: str, minilm_path: str) -> None:
    model, tokenizer = build_tiny_model_and_tokenizer()
    args = DSDRConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        semantic_model=minilm_path,
        local_entropy_coef=0.5,
        use_cpu=True,
        bf16=False,
        report_to="none",
    )
    trainer = DSDRTrainer(
        model=model, reward_funcs=digit_reward, args=args, train_dataset=prompt_dataset(), processing_class=tokenizer
    )
    rank, world = trainer.accelerator.process_index, trainer.accelerator.num_processes
    assert world == 2, world
    trainer.model.train()

    share = len(COMPLETIONS) // world
    scores = trainer._score_diversity(COMPLETIONS[rank * share : (rank + 1) * share])
    both_scores = [None, None]
    dist.all_gather_object(both_scores, {k: getattr(scores, k).tolist() for k in ("semantic", "formula", "combined")})

    batch = with_old_logps(trainer, synthetic_generation_batch(tokenizer))
    local_rows = rows(batch, rank * 4, (rank + 1) * 4)
    gradient = local_term_gradient(trainer, local_rows, micro_batch_size=4)
    dist.all_reduce(gradient)  # what DDP does: average the processes' gradients
    gradient /= world

    trainer.diversity_scorer = FailingScorer(minilm_path)
    try:
        trainer._score_diversity(COMPLETIONS[rank * share : (rank + 1) * share])
        failure = None
    except RuntimeError as error:
        failure = str(error)
    both_failures = [None, None]
    dist.all_gather_object(both_failures, failure)

    if rank == 0:
        with open(output_path, "w") as f:
            json.dump({"scores": both_scores, "gradient": gradient.tolist(), "failures": both_failures}, f)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2])
    # gloo's worker threads can abort or deadlock the interpreter's teardown (pytorch/pytorch#56297), as
    # dsdr_trl.scripts.train notes: once both ranks are done, leave without running destructors.
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
