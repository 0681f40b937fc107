"""The tiny policy: a character-level tokenizer built in code, a small Qwen2-shaped causal LM trained from scratch,
and its supervised warm start with TRL's SFTTrainer."""

from __future__ import annotations

from pathlib import Path

import torch
from datasets import Dataset
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
from trl import SFTConfig, SFTTrainer

PAD, EOS = "<pad>", "<eos>"
ALPHABET = "0123456789+-*()$ =:"


def build_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character of ALPHABET, plus pad and eos; decoding concatenates characters."""
    vocab = {PAD: 0, EOS: 1, **{char: i + 2 for i, char in enumerate(ALPHABET)}}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, padding_side="left")
    return tokenizer


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int, hidden: int = 96, layers: int = 3) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model


def warm_start(
    rows: list[dict], output_dir: Path, seed: int, max_steps: int, learning_rate: float = 3e-3, batch_size: int = 128
) -> Path:
    """Supervised warm start from scratch on prompt/completion rows; saves model and tokenizer to output_dir."""
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed)
    args = SFTConfig(
        output_dir=str(output_dir / "trainer"),
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, max_steps // 20),
        weight_decay=0.0,
        logging_steps=max(1, max_steps // 10),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=seed,
        max_length=48,
        completion_only_loss=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    trainer.train()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
