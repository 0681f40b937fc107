"""Writes the paper-run recipes (`recipes/<model>/<method>.yaml`) from the tables below.

The YAML files are committed; this script is how they were made and how to change them consistently:

    python dsdr_trl/recipes/generate.py

Every value carries a comment naming where it comes from: a section/table of the paper (arXiv 2602.19895),
or "not in the paper" with the reason for our choice.
"""

from __future__ import annotations

from pathlib import Path

import yaml

RECIPES_DIR = Path(__file__).resolve().parent
NUM_PROCESSES = 8  # Appendix A: 8 GPUs
GROUP_SIZE = 8  # Table 2: G
PROMPTS_PER_GENERATION = 256  # Table 2: batch size (prompts)
PROMPTS_PER_UPDATE = 16  # Table 2: mini-batch size (prompts)

MODELS = {
    # name: (Hub id, max response length (Table 2), completions per device per micro-step)
    "qwen2.5-math-1.5b": ("Qwen/Qwen2.5-Math-1.5B", 4096, 4),
    "qwen3-1.7b": ("Qwen/Qwen3-1.7B", 8192, 2),
    "qwen3-4b": ("Qwen/Qwen3-4B", 8192, 2),
}
# Reasoning models think in <think>...</think> before they answer (Qwen3's chat template leaves thinking on):
# their verifier grades only what follows </think>, as TRL's reasoning_accuracy_reward does. Qwen2.5-Math answers
# directly, so its whole completion is graded.
REASONING_MODELS = ("qwen3-1.7b", "qwen3-4b")

# file stem -> title. The ablations are in Table 1 for Qwen3-1.7B only, so only that model gets them.
METHODS = {
    "dsdr": "DSDR (Sec. 3.2, Eq. 16)",
    "grpo": "GRPO baseline (Table 1), run by DSDRTrainer with both DSDR terms off",
    "dapo": "DAPO baseline (Table 1), run by DSDRTrainer with both DSDR terms off",
    "dsdr_wo_gd": "Ablation 'w/o GD' (Table 1): no global diversity bonus",
    "dsdr_wo_gc_uniform": "Ablation 'w/o GC' (Table 1), first reading: uniform coupling weights",
    "dsdr_wo_gc_no_local": "Ablation 'w/o GC' (Table 1), second reading: no local term",
}
ABLATION_MODELS = ("qwen3-1.7b",)


def batch_layout(per_device: int) -> list[tuple[str, object, str]]:
    completions_per_generation = PROMPTS_PER_GENERATION * GROUP_SIZE  # 2048
    completions_per_update = PROMPTS_PER_UPDATE * GROUP_SIZE  # 128
    accumulation = completions_per_update // (per_device * NUM_PROCESSES)
    steps = completions_per_generation // (per_device * NUM_PROCESSES)
    return [
        ("num_generations", GROUP_SIZE, "Table 2: group size G = 8 (rollout n)"),
        (
            "per_device_train_batch_size",
            per_device,
            "not in the paper: completions per GPU per forward/backward, sized for memory",
        ),
        (
            "gradient_accumulation_steps",
            accumulation,
            f"Table 2: mini-batch 16 prompts = 16 x 8 = {completions_per_update} completions per optimizer step "
            f"= {per_device} per device x {accumulation} accumulation x {NUM_PROCESSES} processes",
        ),
        (
            "generation_batch_size",
            completions_per_generation,
            f"Table 2: batch 256 prompts x 8 = {completions_per_generation} completions per generation (TRL counts "
            f"completions); TRL derives steps_per_generation = {completions_per_generation} / ({per_device} x "
            f"{NUM_PROCESSES} processes) = {steps} micro-steps = {steps // accumulation} optimizer steps per "
            "generation, as verl's 256 / 16 mini-batches",
        ),
        ("num_iterations", 1, "not in the paper: one pass over each generation batch (verl's ppo_epochs default 1)"),
    ]


def recipe(model: str, method: str) -> list[tuple[str, object, str] | str]:
    hub_id, max_length, per_device = MODELS[model]
    dsdr_on = method.startswith("dsdr")
    clip_high = 0.2 if method == "grpo" else 0.28
    clip_source = (
        "Table 1/2: the GRPO baseline clips at (0.2, 0.2)"
        if method == "grpo"
        else "Sec. 4.1 / Table 2: clip-higher (0.2, 0.28), as DAPO"
    )
    verifier = "reasoning_math_accuracy" if model in REASONING_MODELS else "math_accuracy"
    verifier_source = (
        "Sec. 3.1: binary verifier reward r_i; not in the paper: graded after </think>, as Qwen3 thinks first"
        if model in REASONING_MODELS
        else "Sec. 3.1: binary verifier reward r_i"
    )
    rewards: list[str] = [verifier]
    if method == "dapo":
        rewards.append(f"dsdr_trl.recipes.dapo_overlong:soft_overlong_punishment_{max_length // 1024}k")
    lines: list[tuple[str, object, str] | str] = [
        "# Model (trl.ModelConfig)",
        ("model_name_or_path", hub_id, "Sec. 4.1 / Table 1: base model"),
        (
            "model_init_kwargs",
            {"attn_implementation": "flash_attention_2", "dtype": "bfloat16"},
            "not in the paper: FlashAttention-2 in bf16 (pip install 'dsdr-trl[flash-attn]' --no-build-isolation)",
        ),
        "",
        "# Data (dsdr_trl.scripts.train.ScriptArguments)",
        ("dataset_name", "open-r1/DAPO-Math-17k-Processed", "Sec. 4.1: DAPO-Math-17k"),
        ("dataset_config", "en", "Sec. 4.1: the English config (columns prompt, solution)"),
        ("deduplicate", True, "Sec. 4.1: de-duplicated training prompts"),
        ("prompt_format", "conversational", "not in the paper: the model's chat template around each problem"),
        ("reward_funcs", rewards, verifier_source
         + (" + DAPO's soft overlong punishment (Eq. 13 of the DAPO paper, via trl.rewards)" if method == "dapo" else "")),
    ]
    if method == "dapo":
        lines.append(("correctness_reward", f"{verifier}_reward", "Eq. 10: the verifier among the reward functions"))
    lines += ["", "# Optimisation"]
    lines += [
        ("learning_rate", 1.0e-6, "Table 2: lr 1e-6"),
        ("lr_scheduler_type", "constant", "not in the paper: constant, verl's default"),
        ("warmup_steps", 0, "not in the paper: no warm-up, verl's default"),
        ("weight_decay", 0.01, "not in the paper: verl's actor default"),
        ("max_grad_norm", 1.0, "not in the paper: verl's default gradient clip"),
        ("num_train_epochs", 1, "not in the paper: one pass over the de-duplicated prompts"),
        ("bf16", True, "not in the paper: bf16 mixed precision"),
        ("gradient_checkpointing", True, "not in the paper: needed for 4K-8K responses"),
        "",
        "# Batch layout for 8 processes (Appendix A: verl batch 256 prompts / mini-batch 16 prompts, n = 8)",
        *batch_layout(per_device),
        "",
        "# Sampling (Table 2)",
        ("temperature", 1.0, "Table 2: training temperature 1.0"),
        ("top_p", 1.0, "not in the paper: no nucleus truncation during training"),
        ("max_completion_length", max_length, f"Table 2: max response length {max_length} for this model"),
        "",
        "# Policy loss (Eq. 3)",
        ("epsilon", 0.2, clip_source),
        ("epsilon_high", clip_high, clip_source),
        ("beta", 0.0, "not in the paper: no KL term (no reference model), as in DAPO and verl's RLVR recipes"),
        ("loss_type", "dapo", "not in the paper: token-level mean, verl's default loss aggregation ('token-mean')"),
        ("scale_rewards", "group", "Eq. 2: advantages normalised by the group's standard deviation"),
        "",
        "# DSDR (Sec. 3.2)",
        *dsdr_settings(method),
        "",
        "# Generation with vLLM colocated on the training GPUs (pip install 'dsdr-trl[vllm]')",
        ("use_vllm", True, "not in the paper: verl generates with vLLM too"),
        ("vllm_mode", "colocate", "not in the paper: vLLM shares each training GPU (no separate server)"),
        (
            "vllm_gpu_memory_utilization",
            0.4,
            "not in the paper: share of GPU memory for vLLM's weights and KV cache; lower it on OOM",
        ),
        (
            "vllm_importance_sampling_correction",
            True,
            "not in the paper: corrects the vLLM / training log-prob mismatch (TRL's default)",
        ),
        "",
        "# Logging and checkpoints (not in the paper)",
        ("output_dir", f"runs/{model}/{method}", "not in the paper"),
        ("logging_steps", 1, "not in the paper: dsdr/ metrics every optimizer step"),
        ("save_strategy", "steps", "not in the paper"),
        ("save_steps", 100, "not in the paper"),
        ("report_to", "none", "not in the paper: set to wandb / tensorboard as you like"),
        ("seed", 42, "not in the paper"),
    ]
    if method == "dapo":
        lines.insert(
            0,
            "# Of DAPO, this recipe has clip-higher, the token-level loss, no KL and the soft overlong punishment.\n"
            "# NOT in it, because TRL cannot express it: dynamic sampling (drop groups whose completions are all\n"
            "# correct or all wrong, and sample more prompts until the batch is full). TRL trains on every group.\n",
        )
    if model == "qwen2.5-math-1.5b":
        lines.insert(
            1,
            "# Qwen2.5-Math-1.5B has a 4096-token context: prompt + 4096-token response can exceed it; vLLM then stops\n"
            "# at the context length (set VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 and vllm_max_model_length to go past it).\n",
        )
    return lines


def dsdr_settings(method: str) -> list[tuple[str, object, str]]:
    paper = {
        "diversity_coef": (0.001, "Table 2: lambda_d = 0.001"),
        "diversity_clip": (1.0, "not in the paper: sigma_d = 1, d is already in [0, 1]"),
        "semantic_model": ("sentence-transformers/all-MiniLM-L6-v2", "Sec. 4.1: encoder f"),
        "coupling": ("softmax", "Eq. 11: softmax coupling"),
        "coupling_temperature": (5.0, "Table 2: tau = 5"),
        "local_entropy_coef": (0.001, "Table 2: lambda_l = 0.001"),
        "advantage_epsilon": (1.0e-6, "Eq. 2: eps = 1e-6, as verl, the paper's framework"),
    }
    baseline = (
        "baseline: the same trainer with the term off, so that only the method differs (configs, not code forks)"
    )
    baseline_overrides = {
        "diversity_coef": (0.0, baseline),
        "local_entropy_coef": (0.0, baseline),
        "advantage_epsilon": (
            1.0e-6,
            "Eq. 2: eps = 1e-6 for the baselines too: the paper ran every method in verl (eps 1e-6), so the "
            "baseline differs from DSDR only in the DSDR terms (1e-4 would reproduce TRL's GRPOTrainer instead)",
        ),
    }
    overrides = {
        "grpo": baseline_overrides,
        "dapo": baseline_overrides,
        "dsdr_wo_gd": {"diversity_coef": (0.0, "Table 1 'w/o GD': lambda_d = 0 (coupling falls back to uniform)")},
        "dsdr_wo_gc_uniform": {"coupling": ("uniform", "Table 1 'w/o GC': uniform weights 1/|P| instead of Eq. 11")},
        "dsdr_wo_gc_no_local": {"local_entropy_coef": (0.0, "Table 1 'w/o GC': the local term removed")},
    }
    settings = {**paper, **overrides.get(method, {})}
    return [(key, value, comment) for key, (value, comment) in settings.items()]


def render(lines: list[tuple[str, object, str] | str], title: str, name: str) -> str:
    out = [
        f"# {title}",
        "# Generated by dsdr_trl/recipes/generate.py; every value names its source in the paper (arXiv 2602.19895).",
        "# Needs CUDA GPUs: bf16, FlashAttention-2 and vLLM (pip install 'dsdr-trl[vllm]', then",
        "# pip install 'dsdr-trl[flash-attn]' --no-build-isolation). Launch on 8 GPUs:",
        "#   dsdr-trl recipes copy accelerate/zero2 zero2.yaml",
        f"#   accelerate launch --config_file zero2.yaml -m dsdr_trl.scripts.train --config {name}",
        "",
    ]
    for line in lines:
        if isinstance(line, str):
            out.append(line)
            continue
        key, value, comment = line
        text = yaml.safe_dump({key: value}, default_flow_style=True, width=10_000).strip()[1:-1]
        out.append(f"{text}  # {comment}")
    return "\n".join(out) + "\n"


def main() -> None:
    for model in MODELS:
        for method, title in METHODS.items():
            if method.startswith("dsdr_") and model not in ABLATION_MODELS:
                continue
            path = RECIPES_DIR / model / f"{method}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            text = render(recipe(model, method), f"{title} -- {MODELS[model][0]}", f"{model}/{method}")
            path.write_text(text, encoding="utf-8")
            print(path.relative_to(RECIPES_DIR))


if __name__ == "__main__":
    main()
