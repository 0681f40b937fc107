"""What a run prints and saves: the compact line per logged step, the upstream notices hidden (and only those), the
model card's paper, and saved weights readable like the files next to them."""

from __future__ import annotations

import os
import stat
import warnings

import pytest
from datasets import Dataset
from transformers import PrinterCallback, ProgressCallback, TrainerControl, TrainerState

from dsdr_trl import DSDRConfig, DSDRTrainer, _console
from dsdr_trl._files import follow_umask
from tests.tiny import build_tiny_model_and_tokenizer

LOGS = {  # one logged training step, as GRPOTrainer logs it (abridged)
    "loss": 0.18352,
    "grad_norm": 4.253,
    "reward": 0.875,
    "dsdr/frac_correct": 0.875,
    "dsdr/semantic/mean": 0.12441,
    "dsdr/formula/mean": 0.5375,
    "dsdr/diversity/mean": 0.331,
    "dsdr/bonus/correct_mean": 0.00029741,
    "dsdr/coupling_entropy": 0.77683,
    "dsdr/local_entropy/correct_mean": 0.24021,
    "dsdr/scoring_time_s": 0.01,
    "entropy": 0.369,
    "completions/mean_length": 20.875,
    "completions/max_length": 29.0,
}


def test_the_compact_line_shows_the_watched_quantities_in_order():
    assert _console.compact_line(LOGS, 1, 2) == (
        "step 1/2  loss=0.1835 reward=0.875 correct=0.875 D_emb=0.1244 D_eq=0.5375 d=0.331 bonus=0.0002974 "
        "H(w)=0.7768 H_local=0.2402 entropy=0.369 length=20.88"
    )
    # A step without generation (steps_per_generation > 1) logs no reward: what it lacks is left out.
    assert _console.compact_line({"loss": -0.2274, "entropy": 0.356}, 2, 2) == "step 2/2  loss=-0.2274 entropy=0.356"
    evaluation = {f"eval_{key}": value for key, value in LOGS.items() if key in ("reward", "dsdr/frac_correct")}
    assert _console.compact_line(evaluation, 4, 8) == "eval at step 4/8  reward=0.875 correct=0.875"
    summary = {"train_runtime": 1.022, "train_loss": -0.021944, "epoch": 0.25}
    assert _console.compact_line(summary, 2, 2) == "trained 2 steps in 1.0 s, mean loss -0.02194"


@pytest.mark.parametrize("console", [PrinterCallback, ProgressCallback])
def test_the_console_callback_prints_one_line_and_leaves_the_logs_whole(console, capsys):
    callback = _console._COMPACT[console]()
    state = TrainerState(global_step=1, max_steps=2)
    if console is ProgressCallback:
        callback.on_train_begin(None, state, TrainerControl())
    logs = dict(LOGS)
    callback.on_log(None, state, TrainerControl(), logs=logs)
    if console is ProgressCallback:
        callback.on_train_end(None, state, TrainerControl())
    assert logs == LOGS  # transformers' PrinterCallback pops total_flos from the shared dict; the line reads only
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step")]
    assert printed == [_console.compact_line(LOGS, 1, 2)]


def tiny_trainer(tmp_path, **overrides) -> DSDRTrainer:
    model, tokenizer = build_tiny_model_and_tokenizer()
    args = DSDRConfig(
        output_dir=str(tmp_path), diversity_coef=0.0, num_generations=2, per_device_train_batch_size=2,
        max_completion_length=4, max_steps=1, report_to="none", use_cpu=True, **overrides,
    )  # fmt: skip
    return DSDRTrainer(
        model=model,
        reward_funcs=lambda completions, **kwargs: [0.0] * len(completions),
        args=args,
        train_dataset=Dataset.from_dict({"prompt": ["What is 1 + 1?"] * 2}),
        processing_class=tokenizer,
    )


@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_the_trainer_uses_the_compact_console_callback_and_keeps_a_users_own(tmp_path, disable_tqdm):
    class MyPrinter(PrinterCallback):
        pass

    trainer = tiny_trainer(tmp_path, disable_tqdm=disable_tqdm)
    trainer.add_callback(MyPrinter)
    kinds = [type(callback) for callback in trainer.callback_handler.callbacks]
    default = PrinterCallback if disable_tqdm else ProgressCallback
    assert _console._COMPACT[default] in kinds and default not in kinds and MyPrinter in kinds


def test_verbose_keeps_transformers_console_callback(tmp_path, monkeypatch):
    monkeypatch.setattr(_console, "_verbose", True)
    kinds = [type(callback) for callback in tiny_trainer(tmp_path).callback_handler.callbacks]
    assert ProgressCallback in kinds and not set(_console._COMPACT.values()) & set(kinds)


def test_upstream_deprecations_are_hidden_and_nothing_else(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DSDRConfig(output_dir=str(tmp_path), use_cpu=True)  # TRL's gradient_checkpointing=True default: transformers warns
        model, _ = build_tiny_model_and_tokenizer()
        model.gradient_checkpointing_enable()  # what TRL's trainer calls
        warnings.warn("`gradient_checkpointing` is deprecated in my own code", FutureWarning)  # not transformers'
        warnings.warn("an unrelated notice", FutureWarning)
    assert [str(warning.message) for warning in caught] == [
        "`gradient_checkpointing` is deprecated in my own code",
        "an unrelated notice",
    ]


def test_the_model_card_cites_dsdr(tmp_path):
    trainer = tiny_trainer(tmp_path)
    trainer.create_model_card(model_name="tiny-dsdr")
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "trained with DSDR, a method introduced in [DSDR: Dual-Scale Diversity Regularization" in card
    assert "https://huggingface.co/papers/2602.19895" in card and "eprint       = {arXiv:2602.19895}" in card
    assert "2402.03300" not in card  # GRPO's paper (DeepSeekMath), which GRPOTrainer's card cites


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_saved_weights_are_readable_like_the_files_next_to_them(tmp_path):
    trainer = tiny_trainer(tmp_path)
    trainer.save_model(str(tmp_path / "final"))
    mode = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (tmp_path / "final").iterdir()}
    assert mode["model.safetensors"] == mode["config.json"], mode


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_follow_umask_changes_only_owner_only_weights(tmp_path):
    umask = os.umask(0o027)
    try:
        for name, created in (("a.safetensors", 0o600), ("b.safetensors", 0o644), ("c.json", 0o600)):
            (tmp_path / name).touch()
            (tmp_path / name).chmod(created)
        follow_umask(tmp_path)
    finally:
        os.umask(umask)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in tmp_path.iterdir()}
    assert modes == {"a.safetensors": 0o640, "b.safetensors": 0o644, "c.json": 0o600}
