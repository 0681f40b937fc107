"""The paper's DSDR run on DAPO-Math-17k, written against the Python API instead of a YAML recipe.

Real run (8 GPUs, Qwen3-1.7B, 8K responses; the shipped recipe `qwen3-1.7b/dsdr` is the same run as a recipe):

    dsdr-trl recipes copy accelerate/zero2 zero2.yaml
    accelerate launch --config_file zero2.yaml examples/train_dsdr_math.py \\
        --model Qwen/Qwen3-1.7B --max-completion-length 8192 --output-dir runs/qwen3-1.7b-dsdr

Smoke mode (CPU, offline, seconds): `python examples/train_dsdr_math.py --smoke` trains the tiny model of
`dsdr-trl demo` on its bundled problems for 2 steps with this run's reward function and learning rate.
"""

from __future__ import annotations

import argparse

from dsdr_trl import DSDRConfig, DSDRTrainer
from dsdr_trl.data import load_dapo_math
from dsdr_trl.rewards import math_accuracy_reward

NUM_PROCESSES = 8  # Appendix A; the batch layout below is for 8 processes


def paper_config(output_dir: str, max_completion_length: int, per_device: int) -> DSDRConfig:
    """DSDRConfig with the values of the paper's Table 2 (see the recipes for the source of each)."""
    return DSDRConfig(
        output_dir=output_dir,
        learning_rate=1e-6,
        num_generations=8,  # G
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=128 // (per_device * NUM_PROCESSES),  # 16 prompts x 8 per optimizer step
        generation_batch_size=2048,  # 256 prompts x 8 per generation
        max_completion_length=max_completion_length,
        temperature=1.0,
        epsilon=0.2,
        epsilon_high=0.28,
        beta=0.0,
        loss_type="dapo",
        diversity_coef=0.001,  # lambda_d
        local_entropy_coef=0.001,  # lambda_l
        coupling_temperature=5.0,  # tau
        advantage_epsilon=1e-6,
        bf16=True,
        gradient_checkpointing=True,
        use_vllm=True,
        vllm_mode="colocate",
        model_init_kwargs={"attn_implementation": "flash_attention_2", "dtype": "bfloat16"},
        logging_steps=1,
        save_steps=100,
        report_to="none",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Qwen/Qwen3-1.7B")
    parser.add_argument("--max-completion-length", type=int, default=8192, help="4096 for Qwen2.5-Math-1.5B")
    parser.add_argument("--per-device-batch-size", type=int, default=2, help="completions per GPU per micro-step")
    parser.add_argument("--output-dir", default="runs/dsdr")
    parser.add_argument("--smoke", action="store_true", help="tiny offline CPU run of the same code path")
    args = parser.parse_args()
    if args.smoke:  # the tiny model of `dsdr-trl demo`, with this run's reward function
        from dsdr_trl.scripts.demo import train_tiny

        train_tiny(math_accuracy_reward, steps=2, learning_rate=1e-6)
        return
    trainer = DSDRTrainer(
        model=args.model,
        reward_funcs=math_accuracy_reward,
        args=paper_config(args.output_dir, args.max_completion_length, args.per_device_batch_size),
        train_dataset=load_dapo_math(),  # de-duplicated, conversational prompts
    )
    trainer.train()
    trainer.save_model(args.output_dir)


if __name__ == "__main__":
    main()
