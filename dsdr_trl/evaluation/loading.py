"""Models, LoRA adapters and tokenizers for sampling: a checkpoint or a PEFT adapter, local or on the Hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


def default_device() -> str:
    """The device to sample on by default: "cuda" when a GPU is visible, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def adapter_config(adapter_dir: str | Path) -> dict[str, Any]:
    """A PEFT adapter directory's `adapter_config.json` (base model, LoRA rank, ...)."""
    return json.loads((Path(adapter_dir) / "adapter_config.json").read_text())


def find_adapter(name_or_path: str) -> tuple[str, str | None]:
    """(base model, adapter) for a PEFT adapter (local dir or Hub id), else (name_or_path, None).

    The adapter is returned as a local directory (downloaded from the Hub if need be).
    """
    from transformers.utils import find_adapter_config_file

    config_file = find_adapter_config_file(name_or_path)
    if config_file is None:
        return name_or_path, None
    adapter_dir = str(Path(config_file).parent)
    return adapter_config(adapter_dir)["base_model_name_or_path"], adapter_dir


def load_tokenizer(name_or_path: str, base: str) -> PreTrainedTokenizerBase:
    """The adapter's own tokenizer when it ships one (it may add tokens), else the base model's; pad token set."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError):
        tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str, device: str | torch.device, dtype: str = "auto") -> PreTrainedModel:
    """A causal LM for generation; a PEFT adapter is loaded on its base model and merged (faster sampling)."""
    base, adapter = find_adapter(name_or_path)
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model.to(device).eval()
