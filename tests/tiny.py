"""Tiny, deterministic, offline stand-ins for a chat LLM and its tokenizer, for tests (and where the shared data is).

Nothing here touches the Hugging Face Hub: the tokenizer is a byte-level BPE trained in code on a
small built-in math corpus, and the model is a randomly initialised 2-layer Qwen2-shaped causal LM.
Both work with TRL's GRPOTrainer (pad and eos tokens set, a Qwen-style chat template) and with
`AutoModelForCausalLM.from_pretrained(path)` / `AutoTokenizer.from_pretrained(path)` once saved with
`save_tiny_model`.

Typical use::

    from tests.tiny import save_tiny_model
    model_dir = save_tiny_model(tmp_path / "tiny")
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

from dsdr_trl.recipes.tiny import train_chat_tokenizer

SHARED_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
"""The project's shared data (benchmarks, solutions); never copied into the package."""
requires_shared_benchmarks = pytest.mark.skipif(
    not (SHARED_DATA_DIR / "benchmarks").is_dir(),
    reason=f"the project's shared benchmark data (public JSONL files, not shipped with the package) was not found at "
    f"{SHARED_DATA_DIR / 'benchmarks'}: put a copy of it at ../shared/data beside the repository",
)

# Enough varied math text for BPE to learn a few hundred merges; fixed so training is reproducible.
_CORPUS = [
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "Let $x$ be a real number such that $x^2 - 5x + 6 = 0$. Find the sum of all possible values of $x$.",
    "The answer is \\boxed{5}. Therefore the final answer is $\\frac{1}{2}$.",
    "We compute $\\sqrt{16} = 4$ and $2 + 2 = 4$, so $\\left(a+b\\right)^2 = a^2 + 2ab + b^2$.",
    "Solve for $y$: $3y + 7 = 22$. Subtract 7 from both sides to get $3y = 15$, so $y = 5$.",
    "A triangle has sides 3, 4 and 5. Its area is $\\frac{3 \\cdot 4}{2} = 6$.",
    "How many positive integers less than 100 are divisible by 3 or 5? The answer is 47.",
    "Find the remainder when $2^{10}$ is divided by 7. Since $2^3 \\equiv 1 \\pmod 7$, it is 2.",
    "system user assistant: You are a helpful assistant. Think about the problem first.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 25 30 42 64 100 128 256 1000",
    "The probability is $\\dfrac{3}{8}$ and the expected value is $\\tfrac{7}{2}$.",
    "\\begin{align} f(x) &= x^3 - 3x \\\\ f'(x) &= 3x^2 - 3 \\end{align}",
]


def build_tiny_tokenizer() -> Qwen2Tokenizer:
    """A fresh tiny chat tokenizer: byte-level BPE (any text round-trips), pad/eos set, ChatML template.

    It is a real `Qwen2Tokenizer`, so saving and reloading with `AutoTokenizer` gives identical ids.
    Left padding, as decoder-only generation (and GRPOTrainer) expects. The package's recipe tokenizer, trained on
    this module's corpus.
    """
    return train_chat_tokenizer(_CORPUS * 4)


def build_tiny_model(tokenizer: Qwen2Tokenizer, seed: int = 0) -> Qwen2ForCausalLM:
    """A randomly initialised 2-layer Qwen2 causal LM (hidden 32) sized to `tokenizer`, same weights for a seed."""
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    # Fork the RNG: the weights depend only on `seed`, and the caller's random state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model


def build_tiny_model_and_tokenizer(seed: int = 0) -> tuple[Qwen2ForCausalLM, Qwen2Tokenizer]:
    """Both halves at once, matched (the model's vocabulary is the tokenizer's)."""
    tokenizer = build_tiny_tokenizer()
    return build_tiny_model(tokenizer, seed=seed), tokenizer


def save_tiny_model(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny model and its tokenizer to `directory`, loadable with `from_pretrained(directory)`."""
    directory = Path(directory)
    model, tokenizer = build_tiny_model_and_tokenizer(seed=seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
