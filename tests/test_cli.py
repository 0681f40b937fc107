"""`dsdr-trl`: every --help answers without importing the heavy stack, --version, eval's flags and defaults, and the
one-line error when a benchmark is neither local nor obtainable."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from importlib.metadata import version

import pytest

import dsdr_trl
from dsdr_trl.scripts import cli
from dsdr_trl.scripts import eval as eval_script

HEAVY_MODULES = ("torch", "transformers", "trl", "datasets", "sentence_transformers")


@pytest.mark.parametrize(
    "argv", [["--help"], ["train", "--help"], ["eval", "--help"], ["recipes", "--help"], ["demo", "--help"]]
)
def test_help_imports_nothing_heavy(argv):
    # What makes --help take seconds is importing torch and the libraries above it: none may be imported.
    code = (
        "import json, sys\n"
        "from dsdr_trl.scripts import cli\n"
        "try:\n"
        f"    status = cli.main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    status = exit.code\n"
        f"print(json.dumps([status, sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    status, imported = json.loads(result.stdout.splitlines()[-1])
    assert (status, imported) == (0, [])


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["train", "--config", "tiny_cpu", "--divresity_coef", "0.1"],
         "dsdr-trl train: unknown option --divresity_coef; did you mean --diversity_coef?"),
        (["train", "--config", "tiny_cpu", "--model_name_or_path", "runs/a/checkpoint-5"],
         "dsdr-trl train: --model_name_or_path runs/a/checkpoint-5: no such folder"),
        (["eval", "--models", "runs/a/checkpoint-5", "--output-dir", "unused"],
         "dsdr-trl eval: --models runs/a/checkpoint-5: no such folder"),
    ],
)  # fmt: skip
def test_a_wrong_option_or_path_is_one_line_before_anything_heavy_loads(argv, error, tmp_path):
    code = (
        "import json, sys\n"
        "from dsdr_trl.scripts import cli\n"
        f"status = cli.main({argv!r})\n"
        f"print(json.dumps([status, sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert json.loads(result.stdout) == [2, []]
    assert result.stderr.startswith(error) and result.stderr.count("\n") == 1
    assert not (tmp_path / "unused").exists()


def test_version_is_the_installed_distribution_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dsdr-trl {dsdr_trl.__version__}" == f"dsdr-trl {version('dsdr-trl')}"


def test_top_level_help_lists_every_subcommand(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(f"\n  {name}" in text for name in cli.SUBCOMMANDS) and "--version" in text
    assert cli.main([]) == 2 and capsys.readouterr().out == text  # no subcommand: the same help, and status 2
    assert cli.main(["nope"]) == 2
    assert "unknown subcommand 'nope'" in capsys.readouterr().err


def test_eval_defaults_are_the_protocol_defaults():
    from dsdr_trl.evaluation import DEFAULT_ENCODER, EvaluationProtocol

    args = eval_script.build_parser().parse_args(["--models", "m", "--output-dir", "out"])
    protocol = {field.name: field.default for field in dataclasses.fields(EvaluationProtocol)}
    for name in set(protocol) - {"ks"}:  # ks is derived from --num-samples instead
        assert getattr(args, name) == protocol[name], name
    assert args.encoder == DEFAULT_ENCODER


def test_eval_flags_take_both_spellings_and_all_have_help():
    parser = eval_script.build_parser()
    hyphens = parser.parse_args(["--models", "m", "--output-dir", "out", "--max-new-tokens", "8", "--no-progress"])
    underscores = parser.parse_args(["--models", "m", "--output_dir", "out", "--max_new_tokens", "8", "--no_progress"])
    assert hyphens == underscores and hyphens.output_dir == "out" and hyphens.max_new_tokens == 8
    assert "ks" not in hyphens  # its default depends on --num-samples
    assert all(action.help for action in parser._actions)
    help_text = parser.format_help()
    assert "(default: None)" not in help_text and help_text.count("default: 1, 2, 4") == 1


def test_eval_reasoning_end_is_a_grading_setting_and_must_be_a_marker(capsys):
    parser = eval_script.build_parser()
    required = ["--models", "m", "--output-dir", "out"]
    assert parser.parse_args(required).reasoning_end is None  # the whole completion is graded
    assert parser.parse_args([*required, "--reasoning-end", "</think>"]).reasoning_end == "</think>"
    assert parser.parse_args([*required, "--reasoning_end", "</think>"]).reasoning_end == "</think>"
    with pytest.raises(SystemExit) as exit:
        cli.main(["eval", *required, "--reasoning-end", ""])
    assert exit.value.code == 2
    assert "reasoning_end must be a non-empty marker such as '</think>'" in capsys.readouterr().err


def test_eval_stops_in_one_line_when_a_benchmark_is_nowhere(tmp_path, capsys):
    # conftest sets HF_HUB_OFFLINE=1: no local copy and no Hub, so no model is loaded and nothing is retried.
    argv = ["eval", "--models", str(tmp_path), "--benchmarks", "math500", "--output-dir", str(tmp_path / "out"),
            "--data-dir", str(tmp_path / "data"), "--encoder", "none"]  # fmt: skip
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("dsdr-trl eval: ")
    assert f"{tmp_path / 'data'}/benchmarks/math500/test.jsonl" in error and "--data-dir" in error
    assert not (tmp_path / "out").exists()  # and no empty output folder is left behind


@pytest.mark.parametrize("model", ["runs/dsdr/checkpoint-500", "someone/model"])
def test_eval_names_a_missing_model_and_writes_nothing(tmp_path, capsys, model):
    # conftest sets HF_HUB_OFFLINE=1: a Hub id must be in the cache, and someone/model is not.
    argv = ["eval", "--models", model, "--benchmarks", "math500", "--output-dir", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"dsdr-trl eval: --models {model}: no such folder")
    assert not (tmp_path / "out").exists()

