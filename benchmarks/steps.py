"""DSDR and GRPO trainers built side by side on the same policy, and what the benchmarks time on them."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

import common  # noqa: F401  (puts the repo on sys.path, sets HF_HUB_OFFLINE)
import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from dsdr_trl.trainer import completion_text

SHARED_ARGS = dict(
    report_to="none",
    save_strategy="no",
    logging_strategy="no",
    disable_tqdm=True,
    dataloader_num_workers=0,
    seed=0,
    temperature=1.0,
)


def verifier(completions, **_) -> list[float]:
    """A cheap deterministic stand-in for a math verifier: about two thirds of the completions are 'correct'."""
    return [float(len(completion_text(completion)) % 3 != 0) for completion in completions]


def prompt_dataset(rows: list[dict], count: int):
    from datasets import Dataset

    return Dataset.from_list(
        [{"prompt": [{"role": "user", "content": row["problem"]}], "solution": row["answer"]} for row in rows[:count]]
    )


def build_trainers(
    model, tokenizer, dataset, *, device: str, local_entropy_coef: float, diversity_scorer=None, **overrides
) -> dict:
    """{"grpo": trl.GRPOTrainer, "dsdr": DSDRTrainer} on the same model object (same weights, same data order).

    GRPO is TRL's own trainer with the same GRPOConfig fields, so the comparison includes every cost DSDR adds.
    """
    from trl import GRPOConfig, GRPOTrainer

    from dsdr_trl import DSDRConfig, DSDRTrainer

    fields = dict(SHARED_ARGS, use_cpu=torch.device(device).type == "cpu", **overrides)
    grpo = GRPOTrainer(
        model=model,
        reward_funcs=verifier,
        args=GRPOConfig(output_dir=tempfile.mkdtemp(prefix="bench-grpo-"), **fields),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    dsdr_args = DSDRConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-dsdr-"),
        diversity_coef=0.001 if diversity_scorer is not None else 0.0,
        local_entropy_coef=local_entropy_coef,
        **fields,
    )
    dsdr = DSDRTrainer(
        model=model,
        reward_funcs=verifier,
        args=dsdr_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        diversity_scorer=diversity_scorer,
    )
    for trainer in (grpo, dsdr):
        trainer.remove_callback(PrinterCallback)  # the end-of-train summary of every round is noise here
    return {"grpo": grpo, "dsdr": dsdr}


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (generation, rewards, DSDR scoring, loss, backward, optimizer)."""

    def __init__(self, device: str):
        self.device = device
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        common.synchronize(self.device)
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        common.synchronize(self.device)
        self.times.append(time.perf_counter() - self._start)


def time_scoring(trainer, device: str) -> list[float]:
    """Records the seconds of every `_score_diversity` call (embed + extract + gather + Eq. 4-9) of `trainer`."""
    seconds: list[float] = []
    original = trainer._score_diversity

    def timed_score(completions):
        start = time.perf_counter()
        result = original(completions)
        common.synchronize(device)
        seconds.append(time.perf_counter() - start)
        return result

    trainer._score_diversity = timed_score  # instance attribute: shadows the method for this trainer only
    return seconds


def alternate_training(trainers: dict, rounds: int, steps_per_round: int, device: str) -> tuple[dict, list[float]]:
    """Trains each trainer `steps_per_round` steps per round, alternately; round 0 is warm-up and not reported.

    Returns ({name: [step seconds, ...]}, [DSDR scoring seconds of the reported steps, ...]).
    """
    timers = {name: StepTimer(device) for name in trainers}
    for name, trainer in trainers.items():
        trainer.add_callback(timers[name])
        trainer.args.max_steps = steps_per_round
    scoring = time_scoring(trainers["dsdr"], device) if trainers["dsdr"].diversity_scorer is not None else []
    names = list(trainers)
    warm_steps, warm_scoring = {}, 0
    for round_ in range(rounds + 1):
        for name in names if round_ % 2 == 0 else names[::-1]:
            trainers[name].train()
        if round_ == 0:
            warm_steps = {name: len(timer.times) for name, timer in timers.items()}
            warm_scoring = len(scoring)
    return {name: timer.times[warm_steps[name] :] for name, timer in timers.items()}, scoring[warm_scoring:]


def count_forwards(model, function: Callable[[], object]) -> int:
    """How many times `model`'s forward runs during `function()`."""
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        function()
    finally:
        handle.remove()
    return len(calls)
