"""`dsdr-trl train`: parsing and wiring, then 2 real steps on CPU from the tiny recipe, in-process and on 2 ranks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from dsdr_trl.recipes import recipe_path
from dsdr_trl.scripts import cli
from dsdr_trl.scripts.train import (
    ScriptArguments,
    dsdr_field_names,
    load_prompts,
    make_parser,
    missing_hardware,
    resolve_config_argument,
    resolve_reward_function,
    train,
)
from tests.processes import free_port, run_process_group

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = recipe_path("tiny_cpu")
PROBLEMS = [(f"What is {a} + {b}? Put the final answer in \\boxed{{}}.", str(a + b)) for a in range(1, 5) for b in (1, 2)]


@pytest.fixture
def math_jsonl(tmp_path) -> Path:
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "solution": s}) + "\n" for p, s in PROBLEMS), encoding="utf-8")
    return path


def tiny_run_args(model_dir: str, dataset: Path, encoder: str, output_dir: Path) -> list[str]:
    # The recipe's placeholders are overridden on the command line, which also checks that the command line wins.
    return [
        "--config", str(TINY_RECIPE),
        "--model_name_or_path", model_dir,
        "--dataset_name", str(dataset),
        "--semantic_model", encoder,
        "--output_dir", str(output_dir),
        # The import-path form of a reward function; every other row correct, so that DSDR's correct-only terms (bonus,
        # coupling, local entropy) are at work at every step on any CPU (math_accuracy finds the random model's
        # completions all wrong). Each process scores its own rows, an even number here.
        "--reward_funcs", "tests.test_trainer:alternating_reward",
    ]  # fmt: skip


def test_no_dataclass_field_is_named_config():
    # TrlParser reserves `config` for the YAML path; make_parser would raise if a field took it.
    assert make_parser() is not None


def test_reward_functions_resolve_by_short_name_and_both_import_path_forms():
    from dsdr_trl.rewards import boxed_format_reward, math_accuracy_reward

    assert resolve_reward_function("math_accuracy") is math_accuracy_reward
    assert resolve_reward_function("boxed_format") is boxed_format_reward
    assert resolve_reward_function("dsdr_trl.rewards:math_accuracy_reward") is math_accuracy_reward
    assert resolve_reward_function("dsdr_trl.rewards.boxed_format_reward") is boxed_format_reward
    with pytest.raises(ValueError, match="Unknown reward function"):
        resolve_reward_function("accuracy")
    with pytest.raises(ValueError, match="no callable"):
        resolve_reward_function("dsdr_trl.rewards:missing")


def test_local_file_becomes_prompt_dataset_in_the_requested_format(math_jsonl):
    repeated = math_jsonl.read_text(encoding="utf-8") * 2  # duplicates must go, as the paper de-duplicates
    math_jsonl.write_text(repeated, encoding="utf-8")
    args = ScriptArguments(dataset_name=str(math_jsonl), prompt_format="standard", system_prompt="Be brief.")
    dataset = load_prompts(args, args.dataset_train_split)
    assert len(dataset) == len(PROBLEMS)
    assert dataset[0]["prompt"] == f"Be brief.\n\n{PROBLEMS[0][0]}" and dataset[0]["solution"] == PROBLEMS[0][1]

    chat = load_prompts(ScriptArguments(dataset_name=str(math_jsonl)), "train")
    assert chat[0]["prompt"] == [{"role": "user", "content": PROBLEMS[0][0]}]


def test_missing_columns_are_named(math_jsonl):
    args = ScriptArguments(dataset_name=str(math_jsonl), answer_column="answer")
    with pytest.raises(ValueError, match="answer"):
        load_prompts(args, "train")


def test_short_help_leads_with_config_and_names_every_dsdr_field(capsys):
    from dataclasses import fields

    from trl import GRPOConfig

    from dsdr_trl import DSDRConfig

    assert cli.main(["train", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert help_text.splitlines()[0] == "usage: dsdr-trl train --config RECIPE [--FIELD VALUE ...]"
    assert len(help_text.splitlines()) < 50 and "--help-all" in help_text
    inherited = {item.name for item in fields(GRPOConfig)}
    added = [item.name for item in fields(DSDRConfig) if item.name not in inherited]
    assert dsdr_field_names() == added and all(name in help_text for name in added)
    assert all(f"--{item.name}" in help_text for item in fields(ScriptArguments))


def test_help_all_documents_every_field(capsys):
    from dataclasses import fields

    from dsdr_trl import DSDRConfig

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help-all"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for name in ("diversity_coef", "local_entropy_coef", "coupling_temperature", "reward_funcs", "use_peft"):
        assert f"--{name}" in help_text
    assert all(f"--{field.name}" in help_text for field in fields(DSDRConfig))


def test_config_takes_a_shipped_recipe_name_or_a_file(tmp_path):
    assert resolve_config_argument(["--config", "tiny_cpu", "--seed", "1"]) == (
        ["--config", str(TINY_RECIPE), "--seed", "1"], TINY_RECIPE
    )
    assert resolve_config_argument(["--config=tiny_cpu.yaml"]) == (["--config", str(TINY_RECIPE)], TINY_RECIPE)
    own = tmp_path / "tiny_cpu"  # a file wins over a shipped recipe of the same name
    own.write_text("seed: 3\n", encoding="utf-8")
    assert resolve_config_argument(["--config", str(own)])[1] == own
    with pytest.raises(ValueError, match="no such file.*qwen3-1.7b/dsdr"):
        resolve_config_argument(["--config", "qwen3/dsdr"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a CUDA GPU")
def test_a_gpu_recipe_is_refused_in_one_line_without_a_gpu(capsys):
    assert cli.main(["train", "--config", "qwen3-1.7b/dsdr"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "use_vllm, flash_attention_2" in error and "tiny_cpu" in error
    # Turning the GPU-only settings off on the command line is honoured (flash-attn stays in model_init_kwargs).
    assert missing_hardware({"bf16": True, "use_vllm": True}, ["--use_cpu", "--use-vllm", "false"]) == []
    assert missing_hardware({"bf16": True}, []) == ([] if torch.accelerator.is_available() else ["bf16"])


def test_unknown_config_is_one_line(capsys):
    assert cli.main(["train", "--config", "nowhere.yaml"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow
def test_train_runs_two_steps_in_process(tiny_model_dir, minilm_path, math_jsonl, tmp_path):
    output_dir = tmp_path / "run"
    script_args, args, model_args = make_parser().parse_args_and_config(
        tiny_run_args(tiny_model_dir, math_jsonl, minilm_path, output_dir)
    )
    trainer = train(script_args, args, model_args)
    assert trainer.state.global_step == 2
    logged = {key for record in trainer.state.log_history for key in record}
    assert {"dsdr/diversity/mean", "dsdr/local_entropy/correct_mean"} <= logged  # both DSDR terms were active
    assert (output_dir / "model.safetensors").exists()  # the final model is saved


@pytest.mark.slow
def test_train_with_lora_from_the_command_line(tiny_model_dir, minilm_path, math_jsonl, tmp_path):
    output_dir = tmp_path / "run"
    script_args, args, model_args = make_parser().parse_args_and_config(
        [*tiny_run_args(tiny_model_dir, math_jsonl, minilm_path, output_dir), "--use_peft", "--lora_r", "4",
         "--lora_target_modules", "q_proj", "v_proj", "--max_steps", "1"]
    )  # fmt: skip
    trainer = train(script_args, args, model_args)
    assert trainer.state.global_step == 1
    assert (output_dir / "adapter_config.json").exists()  # ModelConfig's LoRA options reached the trainer


@pytest.mark.slow
@pytest.mark.distributed
def test_train_runs_two_steps_on_two_processes(tiny_model_dir, minilm_path, math_jsonl, tmp_path):
    output_dir = tmp_path / "run"
    # On CPU, `--cpu --num_processes 2` starts one process; --multi_gpu with use_cpu (in the recipe) starts two.
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--main_process_port", str(free_port()),
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "dsdr_trl.scripts.train",
        *tiny_run_args(tiny_model_dir, math_jsonl, minilm_path, output_dir),
        "--per_device_train_batch_size", "2",  # 2 processes x 2 rows x 2 steps_per_generation = 2 groups of 4
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = run_process_group(command, timeout=240, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    # Both ranks took part in the diversity scoring: the metric is logged from the gathered batch.
    output = result.stdout + result.stderr
    assert "dsdr/diversity/mean" in output and "dsdr/local_entropy/correct_mean" in output
    assert (output_dir / "model.safetensors").exists()
