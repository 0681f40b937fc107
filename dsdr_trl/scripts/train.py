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
from ..evaluation.metrics import DEFAULT_ENCODER
from ..recipes import recipe_path
from ..recipes.tiny import DATA_FILE, MODEL_DIR
from .preflight import (
    PreflightError,
    check_local_data,
    check_model,
    note,
    option_names_in,
    resolve_encoder,
    unknown_option_message,
    upstream_option_names,
)

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
            "(or 'package.module.function'). DSDR's terms act on the completions the verifier calls correct: see "
            "--correctness_reward below."
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
  --verbose              print transformers' whole log dict each step, upstream notices and loading bars (default:
                         one line per step with the quantities to watch; the logs and trackers get everything)

Data and rewards:
{script_fields}

Which completions are correct (DSDR's bonus, coupling and entropy term act on them only):
  --correctness_reward   the verifier(s): reward names or indices, comma-separated (e.g. math_accuracy_reward). A
                         completion is correct when a verifier that applies to it (does not return None) reaches
                         --correctness_threshold (default 1.0, must be > 0). Unset: every reward named as a verifier
                         (math_accuracy, names with accuracy, correct, verif, equiv, exact, pass, solved, success)
                         in any order, else the only reward, else the first with a warning. A verifier that is not
                         pass/fail at the threshold (not 0/1, or a threshold above 1) is reported at the first step
                         that shows it, with whether the threshold is never or always met (a warning and the
                         dsdr/verifier_* metrics).

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


def settings_of(recipe: dict, args: list[str], names: Sequence[str]) -> dict:
    """The recipe's values with the command line's values of the options `names` on top (a flag given without a
    value counts as "true"), read without the full parser, which takes seconds to build."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in names:
        parser.add_argument(*dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}"]), nargs="?", const="true")
    given = {key: value for key, value in vars(parser.parse_known_args(args)[0]).items() if value is not None}
    return {**recipe, **given}


def is_on(value) -> bool:
    return str(value).lower() in ("true", "yes", "1")


def missing_hardware(recipe: dict, args: list[str]) -> list[str]:
    """The settings of the recipe (with command-line overrides) that this machine cannot run: bf16/fp16 need an
    accelerator; vLLM and FlashAttention-2 need CUDA. Empty when everything can run."""
    settings = settings_of(recipe, args, ("bf16", "fp16", "use_cpu", "use_vllm", "attn_implementation"))
    attention = settings.get("attn_implementation") or (settings.get("model_init_kwargs") or {}).get(
        "attn_implementation"
    )
    on = {name: is_on(settings.get(name, False)) for name in ("bf16", "fp16", "use_cpu", "use_vllm")}
    wanted = {  # setting -> whether it needs CUDA (else any accelerator)
        "bf16": (on["bf16"] and not on["use_cpu"], False),
        "fp16": (on["fp16"] and not on["use_cpu"], False),
        "use_vllm": (on["use_vllm"], True),
        "flash_attention_2": (attention == "flash_attention_2", True),
    }
    if not any(asked for asked, _ in wanted.values()):
        return []  # and torch, which takes a second to import, is not needed to tell
    import torch

    cuda, accelerator = torch.cuda.is_available(), torch.accelerator.is_available()
    return [name for name, (asked, needs_cuda) in wanted.items() if asked and not (cuda if needs_cuda else accelerator)]


def unknown_option(recipe: dict, recipe_file: Path | None, args: list[str]) -> str | None:
    """One line naming an option of the command line or a field of the recipe that no parser takes, with the
    closest valid name; None when all are valid (or when only the full parser can tell)."""
    known = upstream_option_names()
    if known is None:  # a TRL release that moved its configuration classes: the full parser will tell
        return None
    known |= {item.name for item in fields(ScriptArguments)} | set(dsdr_field_names()) | {"config"}
    return unknown_option_message(option_names_in(args), known) or unknown_option_message(
        [key for key in recipe if key != "env"], known, source=f" in {recipe_file}", dashes=""
    )


def check_inputs(recipe: dict, args: list[str]) -> list[str]:
    """Checks that the model, the data and the sentence encoder are obtainable (a `PreflightError` otherwise), before
    anything loads; returns `args`, with `--semantic_model` set to the offline copy where it stands in for the default
    encoder (see `dsdr_trl.scripts.preflight`)."""
    names = ("model_name_or_path", "dataset_name", "dataset_test_split", "eval_strategy", "semantic_model",
             "diversity_coef", "log_diversity")  # fmt: skip
    settings = settings_of(recipe, args, names)

    def check_tiny_input(option: str, value, tiny_input: str) -> None:
        if value == tiny_input and not Path(value).exists():
            raise PreflightError(
                f"{option} {value}: not in {Path.cwd()}; `dsdr-trl recipes tiny-setup .` writes the tiny_cpu recipe's "
                "model and data here."
            )

    check_tiny_input("--model_name_or_path", settings.get("model_name_or_path"), MODEL_DIR)
    check_model(settings.get("model_name_or_path"), "--model_name_or_path")
    check_tiny_input("--dataset_name", settings.get("dataset_name"), DATA_FILE)
    check_local_data(settings.get("dataset_name"), "--dataset_name", LOCAL_DATA_FORMATS)
    if str(settings.get("eval_strategy", "no")) != "no":
        check_local_data(settings.get("dataset_test_split"), "--dataset_test_split", LOCAL_DATA_FORMATS)
    try:  # DSDRConfig's default diversity_coef is > 0
        needs_encoder = float(settings.get("diversity_coef", 1.0)) > 0 or is_on(settings.get("log_diversity"))
    except ValueError:  # not a number: the full parser says so
        return args
    if needs_encoder:
        encoder, substitution = resolve_encoder(str(settings.get("semantic_model", DEFAULT_ENCODER)), "--semantic_model")
        if substitution:
            note(f"dsdr-trl train: {substitution}.")
            return [*args, "--semantic_model", encoder]
    return args


def quiet_console(verbose: bool) -> None:
    """No loading or shard-writing bars, unless `verbose`, which also keeps the upstream notices that `DSDRConfig`
    hides and transformers' full log dict (see `dsdr_trl._console`)."""
    if verbose:
        from .._console import be_verbose

        be_verbose()
        return
    import datasets
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # loading and saving weights take a blink at this scale
    datasets.disable_progress_bars()  # reading the prompt file and formatting it, likewise


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: the command line), train, and return 0 (2 on an error explained in one line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help-all" in args:
        make_parser().parse_args_and_config(["--help"])  # prints every field and exits
    if not args or "-h" in args or "--help" in args:
        print(short_help())
        return 0 if args else 2
    verbose = "--verbose" in args
    args = [arg for arg in args if arg != "--verbose"]
    try:
        args, recipe_file = resolve_config_argument(args)
    except ValueError as error:
        print(f"dsdr-trl train: {error}", file=sys.stderr)
        return 2
    recipe = {}
    if recipe_file is not None:
        import yaml

        recipe = yaml.safe_load(recipe_file.read_text(encoding="utf-8")) or {}
    error = unknown_option(recipe, recipe_file, args)
    if error:
        print(f"dsdr-trl train: {error}", file=sys.stderr)
        return 2
    missing = missing_hardware(recipe, args)
    if missing:
        print(
            f"dsdr-trl train: {recipe_file or 'the command line'} asks for {', '.join(missing)}, which this machine "
            "cannot run (no CUDA GPU); run it on a GPU machine, or try `dsdr-trl recipes show tiny_cpu` on this one.",
            file=sys.stderr,
        )
        return 2
    try:
        args = check_inputs(recipe, args)
    except PreflightError as error:
        print(f"dsdr-trl train: {error}", file=sys.stderr)
        return 2
    quiet_console(verbose)
    parser = make_parser()
    *parsed, unused = parser.parse_args_and_config(args, return_remaining_strings=True)
    if unused:  # what the check from the source could not tell (another TRL release's layout)
        known = [action.dest for action in parser._actions]
        error = unknown_option_message(option_names_in(unused), known) or f"unexpected arguments {' '.join(unused)}"
        print(f"dsdr-trl train: {error}", file=sys.stderr)
        return 2
    try:
        trainer = train(*parsed)
    except DataUnavailableError as error:
        print(f"dsdr-trl train: {error}", file=sys.stderr)
        return 2
    several_processes = trainer.accelerator.num_processes > 1
    if hasattr(trainer, "end"):  # transformers >= 5.18: finish trackers and tear down the process group
        trainer.end()
    if several_processes:
        # The DDP reducer still holds the gloo process group, whose destructor can deadlock against the GIL at
        # interpreter exit (pytorch/pytorch#56297; seen here in about 1 run in 6). Everything is saved and every
        # tracker closed by now, so leave without running destructors, after stopping the grading child process
        # (its exit handler would not run).
        from .._time_limit import stop_workers

        stop_workers()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
