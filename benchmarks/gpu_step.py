"""DSDR against GRPO on a GPU: full training steps, timed alternately in one run.

    python benchmarks/gpu_step.py                       # the measurement (one CUDA GPU, about 10 GB)
    python benchmarks/gpu_step.py --device cpu --tiny   # smoke: the same code path, tiny sizes, on the CPU

The measurement: a Qwen3-shaped policy with random weights (28 layers, hidden 1024, 16 query / 8 key-value heads of
128, MLP 3072: about 0.44B parameters without the embedding), G = 8 completions for each of 32 prompts, 512 new
tokens, bf16; DSDR scores with all-MiniLM-L6-v2's architecture (BertModel, 6 layers, hidden 384, 12 heads, MLP
1536, vocab 30522, mean pooling + normalisation) with random weights, built from its config without any download.
The policy's vocabulary is the in-code test tokenizer's (tests/tiny.py), so generated text decodes to real
characters; a small vocabulary makes the policy's logits cheaper than Qwen3's 151,936, so GRPO's step is shorter
and the DSDR / GRPO ratio reported here is, if anything, an overestimate.

Prints `step_time_ratio_gpu` (target <= 1.05) and the scorer's share of the DSDR step; the last line is one JSON
object. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import common  # noqa: I001  (first: puts the repo on sys.path, sets HF_HUB_OFFLINE)
import torch

QWEN3_0_5B = dict(
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=4096,
    tie_word_embeddings=True,
)
TINY_POLICY = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    head_dim=8, max_position_embeddings=1024, tie_word_embeddings=True,
)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (only with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="tiny policy and encoder, few tokens: a smoke run")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--micro-batch", type=int, default=32, help="rows per forward/backward pass")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, after one warm-up round")
    parser.add_argument("--steps-per-round", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None, help="also write the result here as JSON")
    args = parser.parse_args(argv)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(
            "gpu_step.py measures DSDR on a CUDA GPU, and torch sees none here "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). Run it on a machine with a GPU, or "
            "check the code path on the CPU with `python benchmarks/gpu_step.py --device cpu --tiny`."
        )
    if args.device == "cpu" and not args.tiny:
        sys.exit("on the CPU only the smoke run is meaningful: add --tiny.")
    if args.tiny:
        args.prompts, args.new_tokens, args.micro_batch = min(args.prompts, 2), min(args.new_tokens, 16), 8
        args.rounds = min(args.rounds, 1)

    from transformers import Qwen3Config, Qwen3ForCausalLM

    import steps
    from dsdr_trl import DiversityScorer
    from tests.tiny import build_tiny_tokenizer

    started = time.perf_counter()
    tokenizer = build_tiny_tokenizer()
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **(TINY_POLICY if args.tiny else QWEN3_0_5B),
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config)
    parameters = sum(p.numel() for p in model.parameters())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    encoder = common.random_encoder(common.TINY_ENCODER_SHAPE if args.tiny else common.MINILM_SHAPE, args.device)

    rows_per_step = args.prompts * args.group_size
    micro_batch = min(args.micro_batch, rows_per_step)
    accumulation = rows_per_step // micro_batch
    gpu = args.device.startswith("cuda")
    trainers = steps.build_trainers(
        model.to(args.device),
        tokenizer,
        steps.prompt_dataset(common.load_rows(), 500),
        device=args.device,
        local_entropy_coef=0.001,
        diversity_scorer=DiversityScorer(encoder, device=args.device),
        per_device_train_batch_size=micro_batch,
        gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation,  # one generation of prompts x G rows per optimizer step
        num_generations=args.group_size,
        max_completion_length=args.new_tokens,
        bf16=gpu,
        gradient_checkpointing=False,
        learning_rate=1e-6,
        generation_kwargs={"min_new_tokens": args.new_tokens},  # every completion is new_tokens long
    )
    times, scoring = steps.alternate_training(trainers, args.rounds, args.steps_per_round, args.device)
    grpo_s, dsdr_s = common.median(times["grpo"]), common.median(times["dsdr"])
    scorer_s = common.median(scoring) if scoring else 0.0
    result = {
        "step_time_ratio_gpu" if gpu else "step_time_ratio_smoke": round(dsdr_s / grpo_s, 4),
        "scorer_share": round(scorer_s / dsdr_s, 4),
        "dsdr_step_s": round(dsdr_s, 4),
        "grpo_step_s": round(grpo_s, 4),
        "scorer_s": round(scorer_s, 4),
        "policy_parameters": parameters,
        "rows_per_step": rows_per_step,
        "new_tokens": args.new_tokens,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None,
        "runs": times,
        "scorer_runs": scoring,
        "total_s": round(time.perf_counter() - started, 1),
    }
    print(
        f"DSDR / GRPO step on {result['device']}: {dsdr_s:.3f} s / {grpo_s:.3f} s = {dsdr_s / grpo_s:.3f} "
        f"(target <= 1.05); scorer {scorer_s:.3f} s = {100 * scorer_s / dsdr_s:.1f}% of the DSDR step; "
        f"policy {parameters / 1e6:.0f}M parameters, {rows_per_step} completions of {args.new_tokens} tokens"
    )
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({key: value for key, value in result.items() if not key.endswith("runs")}), flush=True)
    return result


if __name__ == "__main__":
    main()
