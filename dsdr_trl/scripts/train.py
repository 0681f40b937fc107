"""`dsdr-trl train`: train a model with DSDR from a YAML recipe and/or command-line flags.

Every field of `ScriptArguments` (below), of `DSDRConfig` (and so of `trl.GRPOConfig` and
`transformers.TrainingArguments`) and of `trl.ModelConfig` can be set in the YAML file given with
`--config` or on the command line; the command line wins. `--config` takes a file or the name of a shipped
recipe (`dsdr-trl recipes list`). Examples::

    dsdr-trl train --config qwen3-1.7b/dsdr
    dsdr-trl recipes copy accelerate/zero2 zero2.yaml
    accelerate launch --config_file zero2.yaml -m dsdr_trl.scripts.train --config qwen3-1.7b/dsdr --output_dir runs/dsdr

This module only parses and wires: the dataset comes from `dsdr_trl.data`, the rewards from `dsdr_trl.rewards`
(or any importable function), the LoRA settings from `trl.get_peft_config`, and the training from `DSDRTrainer`.
`--help` is short and imports nothing heavy; `--help-all` lists every field.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..data import DAPO_MATH_CONFIG, DAPO_MATH_HUB_ID, DataUnavailableError, format_problems, load_hub_dataset
from ..recipes import recipe_path

REWARD_FUNCTIONS: dict[str, str] = {
    "math_accuracy": "dsdr_trl.rewards:math_accuracy_reward",
    "reasoning_math_accuracy": "dsdr_trl.rewards:reasoning_math_accuracy_reward",
    "boxed_format": "dsdr_trl.rewards:boxed_format_reward",
}
"""Short names accepted in `reward_funcs`, and the function each stands for."""

PROMPT_FORMATS = ("conversational", "standard")
LOCAL_DATA_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass
class ScriptArguments:
    """What `dsdr-trl train` needs beyond `DSDRConfig` and `trl.ModelConfig`: the data and the reward functions."""

    dataset_name: str = field(
        default=DAPO_MATH_HUB_ID,
        metadata={"help": "Hub dataset id, or a local .json / .jsonl / .parquet file."},
    )
    dataset_config: str | None = field(
        default=DAPO_MATH_CONFIG,
        metadata={"help": "Configuration name of a Hub dataset (ignored for local files)."},
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on (a local file has one)."})
    dataset_test_split: str | None = field(
        default=None,
        metadata={
            "help": "Split to evaluate on, or a local .json / .jsonl / .parquet file; used only when eval_strategy "
            "is not 'no'."
        },
    )
    problem_column: str = field(default="prompt", metadata={"help": "Column holding the problem text."})
    answer_column: str = field(default="solution", metadata={"help": "Column holding the reference final answer."})
    prompt_format: str = field(
        default="conversational",
        metadata={
            "help": "'conversational': chat messages rendered with the model's chat template; 'standard': plain text.",
            "choices": list(PROMPT_FORMATS),
        },
    )
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system prompt before each problem."})
    deduplicate: bool = field(
        default=True,
        metadata={"help": "Drop repeated problems (compared after normalisation), as the paper does for DAPO-Math-17k."},
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["math_accuracy"],
        metadata={
            "help": f"Reward functions: {', '.join(REWARD_FUNCTIONS)}, or an import path 'package.module:function' "
            "(or 'package.module.function'). With several, set correctness_reward to the verifier's name."
        },
    )


def make_parser():
    """The parser over (ScriptArguments, DSDRConfig, ModelConfig); `--config FILE` reads a YAML recipe."""
    from trl import ModelConfig, TrlParser

    from ..config import DSDRConfig

    return TrlParser((ScriptArguments, DSDRConfig, ModelConfig), prog="dsdr-trl train")


def resolve_reward_function(name: str) -> Callable:
    """A reward function from a short name in `REWARD_FUNCTIONS` or an import path (`a.b:f` or `a.b.f`)."""
    path = REWARD_FUNCTIONS.get(name, name)
    if ":" in path:
        module_name, _, attribute = path.partition(":")
    elif "." in path:
        module_name, _, attribute = path.rpartition(".")
    else:
        raise ValueError(
            f"Unknown reward function {name!r}: use one of {', '.join(REWARD_FUNCTIONS)} or an import path "
            "such as 'my_package.rewards:my_reward'."
        )
    # Like `python -m`, look in the working directory first, so that a reward module next to the recipe imports.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    function = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(function):
        raise ValueError(f"Reward function {name!r}: {module_name} has no callable {attribute!r}.")
    return function


def load_prompts(script_args: ScriptArguments, split: str):
    """The `prompt` / `solution` / `problem` dataset of one split, from the Hub or a local file."""
    from datasets import load_dataset

    # A split may itself be a local file (an evaluation set next to a local training file).
    source = split if Path(split).suffix.lower() in LOCAL_DATA_FORMATS else script_args.dataset_name
    suffix = Path(source).suffix.lower()
    if suffix in LOCAL_DATA_FORMATS:
        # `datasets` puts the rows of a local file in a split named "train", whatever the file holds.
        raw = load_dataset(LOCAL_DATA_FORMATS[suffix], data_files=source, split="train")
    else:
        hint = "To train offline, pass a local .json / .jsonl / .parquet file as dataset_name."
        raw = load_hub_dataset(script_args.dataset_name, script_args.dataset_config, split, hint)
    missing = {script_args.problem_column, script_args.answer_column} - set(raw.column_names)
    if missing:
        raise ValueError(
            f"Dataset {script_args.dataset_name} lacks the columns {sorted(missing)} (it has {raw.column_names}); "
            "set problem_column and answer_column."
        )
    return format_problems(
        raw[script_args.problem_column],
        raw[script_args.answer_column],
        conversational=script_args.prompt_format == "conversational",
        system_prompt=script_args.system_prompt,
        deduplicate=script_args.deduplicate,
    )


def train(script_args: ScriptArguments, training_args, model_args):
    """Build the trainer from the three argument objects, train, and save the final model; returns the trainer."""
    from trl import get_peft_config, get_quantization_config

    from ..trainer import DSDRTrainer

    if not model_args.model_name_or_path:
        raise ValueError("Set model_name_or_path (in the recipe or with --model_name_or_path).")
    # As in TRL's own scripts: ModelConfig's loading options first, the recipe's model_init_kwargs on top.
    model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs

    evaluating = training_args.eval_strategy != "no"
    if evaluating and not script_args.dataset_test_split:
        raise ValueError("eval_strategy is set but dataset_test_split is not: name the split to evaluate on.")
    trainer = DSDRTrainer(
        model=model_args.model_name_or_path,
        reward_funcs=[resolve_reward_function(name) for name in script_args.reward_funcs],
        args=training_args,
        train_dataset=load_prompts(script_args, script_args.dataset_train_split),
        eval_dataset=load_prompts(script_args, script_args.dataset_test_split) if evaluating else None,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    return trainer


def dsdr_field_names() -> list[str]:
    """The fields DSDRConfig adds to GRPOConfig, read from the source of `dsdr_trl.config`: importing it would
    import TRL, which takes seconds, and the short help must not."""
    tree = ast.parse((Path(__file__).resolve().parents[1] / "config.py").read_text(encoding="utf-8"))
    config = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "DSDRConfig")
    return [node.target.id for node in config.body if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)]


def short_help() -> str:
    """`dsdr-trl train --help`: --config first, the data and reward fields, DSDR's fields, and where the rest is."""
    script_fields = "\n".join(
        textwrap.fill(item.metadata["help"], 116, initial_indent=f"  --{item.name:<20} ", subsequent_indent=" " * 25)
        for item in fields(ScriptArguments)
    )
    dsdr_fields = textwrap.fill(f"DSDR's own fields (the configuration page of the docs): {', '.join(dsdr_field_names())}.", 116)
    return f"""usage: dsdr-trl train --config RECIPE [--FIELD VALUE ...]

Train a model with DSDR (DSDRTrainer, a drop-in for TRL's GRPOTrainer). Every field can be set in the recipe or
on the command line, which wins (`--field value`; `--field-name` works as well as `--field_name`).

  --config RECIPE        a YAML file, or the name of a shipped recipe: `dsdr-trl recipes list` shows them
                         (`qwen3-1.7b/dsdr` and the other paper runs need CUDA GPUs; `tiny_cpu` runs on a laptop)
  --model_name_or_path   the model to train: a Hub id or a local folder
  --output_dir           where checkpoints and the final model go

Data and rewards:
{script_fields}

{dsdr_fields}

Every other field (TRL's GRPOConfig, transformers' TrainingArguments, TRL's ModelConfig: batch sizes, vLLM, LoRA
with --use_peft, ...): `dsdr-trl train --help-all`. Several GPUs: `accelerate launch [...] -m dsdr_trl.scripts.train
--config RECIPE`."""


def resolve_config_argument(args: list[str]) -> tuple[list[str], Path | None]:
    """`args` with `--config NAME` of a shipped recipe replaced by its file, and the recipe file (None without
    `--config`). A value that is neither an existing file nor a shipped recipe's name is an error naming both."""
    for index, arg in enumerate(args):
        if arg == "--config" and index + 1 < len(args):
            value, rest = args[index + 1], args[index + 2 :]
        elif arg.startswith("--config="):
            value, rest = arg.partition("=")[2], args[index + 1 :]
        else:
            continue
        path = Path(value)
        if not path.is_file():
            try:
                path = recipe_path(value)
            except ValueError as error:
                raise ValueError(f"--config {value}: no such file. {error}") from None
        return [*args[:index], "--config", str(path), *rest], path
    return args, None


def missing_hardware(recipe: dict, args: list[str]) -> list[str]:
    """The settings of the recipe (with command-line overrides) that this machine cannot run: bf16/fp16 need an
    accelerator; vLLM and FlashAttention-2 need CUDA. Empty when everything can run."""
    import torch

    overrides = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in ("bf16", "fp16", "use_cpu", "use_vllm"):
        spellings = dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}"])
        overrides.add_argument(*spellings, nargs="?", const="true", default=None)
    overrides.add_argument("--attn_implementation", "--attn-implementation", default=None)
    given = {key: value for key, value in vars(overrides.parse_known_args(args)[0]).items() if value is not None}
    settings = {**recipe, **given}

    def is_on(name: str) -> bool:
        return str(settings.get(name, False)).lower() in ("true", "yes", "1")

    attention = settings.get("attn_implementation") or (settings.get("model_init_kwargs") or {}).get(
        "attn_implementation"
    )
    cuda, accelerator = torch.cuda.is_available(), torch.accelerator.is_available()
    needs = {
        "bf16": is_on("bf16") and not is_on("use_cpu") and not accelerator,
        "fp16": is_on("fp16") and not is_on("use_cpu") and not accelerator,
        "use_vllm": is_on("use_vllm") and not cuda,
        "flash_attention_2": attention == "flash_attention_2" and not cuda,
    }
    return [name for name, missing in needs.items() if missing]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: the command line), train, and return 0 (2 on an error explained in one line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help-all" in args:
        make_parser().parse_args_and_config(["--help"])  # prints every field and exits
    if not args or "-h" in args or "--help" in args:
        print(short_help())
        return 0 if args else 2
    try:
        args, recipe_file = resolve_config_argument(args)
    except ValueError as error:
        print(f"dsdr-trl train: {error}", file=sys.stderr)
        return 2
    if recipe_file is not None:
        import yaml

        recipe = yaml.safe_load(recipe_file.read_text(encoding="utf-8")) or {}
        missing = missing_hardware(recipe, args)
        if missing:
            print(
                f"dsdr-trl train: {recipe_file} asks for {', '.join(missing)}, which this machine cannot run (no "
                "CUDA GPU); run it on a GPU machine, or try `dsdr-trl recipes show tiny_cpu` on this one.",
                file=sys.stderr,
            )
            return 2
    script_args, training_args, model_args = make_parser().parse_args_and_config(args)
    try:
        trainer = train(script_args, training_args, model_args)
    except DataUnavailableError as error:
        print(f"dsdr-trl train: {error}", file=sys.stderr)
        return 2
    several_processes = trainer.accelerator.num_processes > 1
    if hasattr(trainer, "end"):  # transformers >= 5.18: finish trackers and tear down the process group
        trainer.end()
    if several_processes:
        # The DDP reducer still holds the gloo process group, whose destructor can deadlock against the GIL at
        # interpreter exit (pytorch/pytorch#56297; seen here in about 1 run in 6). Everything is saved and every
        # tracker closed by now, so leave without running destructors.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
