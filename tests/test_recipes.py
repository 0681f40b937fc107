"""Every shipped recipe parses into ScriptArguments + DSDRConfig + ModelConfig and says what the paper's Table 2 says;
`dsdr-trl recipes` lists, prints and copies them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dsdr_trl.recipes import RECIPES_DIR as RECIPES
from dsdr_trl.recipes import first_sentence, recipe_names, recipe_path, recipe_title
from dsdr_trl.scripts import cli
from dsdr_trl.scripts.train import make_parser, resolve_reward_function

PAPER_RECIPES = sorted(RECIPES.glob("qwen*/*.yaml"))

# Appendix A / Table 2 of the paper (arXiv 2602.19895).
NUM_PROCESSES = 8
PROMPTS_PER_GENERATION = 256
PROMPTS_PER_UPDATE = 16
MAX_RESPONSE_LENGTH = {"qwen2.5-math-1.5b": 4096, "qwen3-1.7b": 8192, "qwen3-4b": 8192}
CLIP_HIGH = {"grpo": 0.2}  # every other method uses DAPO's clip-higher, 0.28
# What each method turns off, relative to DSDR's lambda_d = 0.001, lambda_l = 0.001, softmax coupling.
METHOD_SETTINGS = {
    "dsdr": (0.001, 0.001, "softmax"),
    "grpo": (0.0, 0.0, "softmax"),
    "dapo": (0.0, 0.0, "softmax"),
    "dsdr_wo_gd": (0.0, 0.001, "softmax"),
    "dsdr_wo_gc_uniform": (0.001, 0.001, "uniform"),
    "dsdr_wo_gc_no_local": (0.001, 0.0, "softmax"),
}


def parse(recipe: Path, tmp_path: Path, *extra: str):
    # bf16 recipes validate only on a GPU machine or with use_cpu; parsing must not depend on the machine.
    return make_parser().parse_args_and_config(
        ["--config", str(recipe), "--output_dir", str(tmp_path), "--use_cpu", "true", *extra]
    )


def test_every_model_has_dsdr_and_both_baselines():
    found = {(recipe.parent.name, recipe.stem) for recipe in PAPER_RECIPES}
    for model in MAX_RESPONSE_LENGTH:
        assert {(model, "dsdr"), (model, "grpo"), (model, "dapo")} <= found
    # Table 1 has the ablations for Qwen3-1.7B, both readings of "w/o GC" included.
    for ablation in ("dsdr_wo_gd", "dsdr_wo_gc_uniform", "dsdr_wo_gc_no_local"):
        assert ("qwen3-1.7b", ablation) in found


@pytest.mark.parametrize("recipe", PAPER_RECIPES, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_recipe_matches_the_paper(recipe, tmp_path):
    script_args, args, model_args = parse(recipe, tmp_path)
    model, method = recipe.parent.name, recipe.stem

    assert args.learning_rate == 1e-6
    assert args.num_generations == 8
    assert args.temperature == 1.0
    assert args.max_completion_length == MAX_RESPONSE_LENGTH[model]
    assert (args.epsilon, args.epsilon_high) == (0.2, CLIP_HIGH.get(method, 0.28))
    diversity_coef, local_entropy_coef, coupling = METHOD_SETTINGS[method]
    assert (args.diversity_coef, args.local_entropy_coef, args.coupling) == (diversity_coef, local_entropy_coef, coupling)
    assert args.coupling_temperature == 5.0
    assert args.advantage_epsilon == 1e-6

    # TRL counts completions; the paper counts prompts. Recomputed for the 8 processes of Appendix A.
    completions_per_update = args.per_device_train_batch_size * args.gradient_accumulation_steps * NUM_PROCESSES
    assert completions_per_update / args.num_generations == PROMPTS_PER_UPDATE
    assert args.generation_batch_size / args.num_generations == PROMPTS_PER_GENERATION
    steps_per_generation_on_8 = args.generation_batch_size // (args.per_device_train_batch_size * NUM_PROCESSES)
    assert steps_per_generation_on_8 / args.gradient_accumulation_steps == PROMPTS_PER_GENERATION / PROMPTS_PER_UPDATE

    assert script_args.dataset_name == "open-r1/DAPO-Math-17k-Processed" and script_args.deduplicate
    assert model_args.model_name_or_path.lower().endswith(model)
    assert args.model_init_kwargs == {"attn_implementation": "flash_attention_2", "dtype": "bfloat16"}
    assert args.use_vllm and args.vllm_mode == "colocate"
    rewards = [resolve_reward_function(name).__name__ for name in script_args.reward_funcs]
    # Qwen3 thinks before it answers: only the text after </think> is graded. Qwen2.5-Math answers directly.
    verifier = "reasoning_math_accuracy_reward" if model.startswith("qwen3") else "math_accuracy_reward"
    assert rewards[0] == verifier
    if len(rewards) > 1:  # DAPO's overlong punishment joins the verifier, which must then be named
        assert args.correctness_reward == verifier


@pytest.mark.parametrize("recipe", PAPER_RECIPES, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_every_value_says_where_it_comes_from(recipe):
    for line in recipe.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert "  # " in line, f"{recipe.name}: no source comment on {line!r}"


def test_command_line_overrides_the_recipe(tmp_path):
    recipe = RECIPES / "qwen3-1.7b" / "dsdr.yaml"
    _, args, _ = parse(recipe, tmp_path, "--diversity_coef", "0.01", "--coupling", "uniform")
    assert (args.diversity_coef, args.coupling) == (0.01, "uniform")


def test_committed_recipes_are_what_the_generator_writes(tmp_path):
    # A hand edit of a generated YAML would silently diverge from dsdr_trl/recipes/generate.py.
    before = {path: path.read_text(encoding="utf-8") for path in PAPER_RECIPES}
    subprocess.run([sys.executable, str(RECIPES / "generate.py")], check=True, capture_output=True, cwd=tmp_path)
    assert {path: path.read_text(encoding="utf-8") for path in PAPER_RECIPES} == before


@pytest.mark.parametrize("name", ["ddp", "zero2", "zero3", "fsdp"])
def test_accelerate_configs_launch_eight_processes(name):
    config = yaml.safe_load((RECIPES / "accelerate" / f"{name}.yaml").read_text(encoding="utf-8"))
    assert config["num_processes"] == NUM_PROCESSES
    assert config["mixed_precision"] == "bf16"
    expected = {"ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "fsdp": "FSDP"}[name]
    assert config["distributed_type"] == expected
    if expected == "DEEPSPEED":
        assert config["deepspeed_config"]["zero_stage"] == int(name[-1])


def test_recipes_are_named_by_their_path_without_suffix():
    names = recipe_names()
    assert "qwen3-1.7b/dsdr" in names and "tiny_cpu" in names and "accelerate/zero2" in names
    assert len(names) == len(PAPER_RECIPES) + 4 + 1  # paper runs, accelerate configs, tiny_cpu
    assert recipe_path("qwen3-1.7b/dsdr.yaml") == recipe_path("qwen3-1.7b/dsdr") == RECIPES / "qwen3-1.7b" / "dsdr.yaml"
    with pytest.raises(ValueError, match="qwen3-1.7b/dsdr, "):  # the error lists what exists
        recipe_path("qwen3/dsdr")


def test_recipes_command_lists_shows_and_copies(tmp_path, capsys):
    assert cli.main(["recipes", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing] == recipe_names()
    assert any(line.startswith("qwen3-1.7b/dsdr ") and "Qwen/Qwen3-1.7B" in line for line in listing)

    assert cli.main(["recipes", "show", "tiny_cpu"]) == 0
    assert capsys.readouterr().out == recipe_path("tiny_cpu").read_text(encoding="utf-8")

    assert cli.main(["recipes", "copy", "accelerate/zero2", str(tmp_path)]) == 0
    assert (tmp_path / "zero2.yaml").read_text(encoding="utf-8") == recipe_path("accelerate/zero2").read_text()
    with pytest.raises(SystemExit) as exit_info:  # no silent overwrite
        cli.main(["recipes", "copy", "accelerate/zero2", str(tmp_path / "zero2.yaml")])
    assert exit_info.value.code == 2 and "--force" in capsys.readouterr().err
    assert cli.main(["recipes", "copy", "tiny_cpu", str(tmp_path / "zero2.yaml"), "--force"]) == 0
    assert (tmp_path / "zero2.yaml").read_text(encoding="utf-8") == recipe_path("tiny_cpu").read_text()


def test_a_recipe_title_is_its_first_sentence():
    assert first_sentence("# DSDR (Sec. 3.2, Eq. 16) -- Qwen/Qwen3-1.7B\n# Generated by ...\nx: 1\n") == (
        "DSDR (Sec. 3.2, Eq. 16) -- Qwen/Qwen3-1.7B"  # a line that ends without punctuation is whole
    )
    assert first_sentence("# Eight GPUs (Appendix A). Fits the 1.5B model;\n# prefer zero2.\n") == "Eight GPUs (Appendix A)."
    assert first_sentence("# One sentence on two lines,\n# ends here. Another one.\n") == "One sentence on two lines, ends here."
    assert first_sentence("x: 1\n") == ""
    assert all(not recipe_title(name).endswith((",", ";", ":")) for name in recipe_names())


@pytest.mark.slow
def test_tiny_setup_writes_what_the_tiny_recipe_reads(tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dsdr_trl.recipes.tiny import PROBLEMS, build_model, build_tokenizer

    recipe = yaml.safe_load(recipe_path("tiny_cpu").read_text(encoding="utf-8"))
    assert cli.main(["recipes", "tiny-setup", str(tmp_path)]) == 0
    assert "dsdr-trl train --config tiny_cpu" in capsys.readouterr().out
    model_dir = tmp_path / recipe["model_name_or_path"]
    assert (model_dir / "model.safetensors").stat().st_mode == (model_dir / "config.json").stat().st_mode
    rows = [json.loads(line) for line in (tmp_path / recipe["dataset_name"]).read_text(encoding="utf-8").splitlines()]
    assert [row["solution"] for row in rows] == [answer for _, answer, _ in PROBLEMS]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / recipe["model_name_or_path"])
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / recipe["model_name_or_path"])
    text = rows[0]["prompt"] + " $x^2 = 4$ é"  # any text round-trips through the saved byte-level tokenizer
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert tokenizer(text)["input_ids"] == build_tokenizer()(text)["input_ids"]
    # Warmed up: the saved weights are no longer the random ones of the same seed.
    untrained = build_model(build_tokenizer())
    assert not torch.equal(model.model.embed_tokens.weight, untrained.model.embed_tokens.weight)


def test_tiny_model_weights_depend_only_on_the_seed_and_leave_the_callers_random_state_alone():
    import torch

    from dsdr_trl.recipes.tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first = build_model(tokenizer, seed=1)
    assert torch.equal(torch.rand(3), expected_draw)
    second, other_seed = build_model(tokenizer, seed=1), build_model(tokenizer, seed=2)
    assert torch.equal(first.lm_head.weight, second.lm_head.weight)
    assert not torch.equal(first.lm_head.weight, other_seed.lm_head.weight)
