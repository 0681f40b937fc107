"""`dsdr-trl demo`: DSDR at work in a minute or two on a laptop CPU, offline, every DSDR quantity at each step.

It builds a tiny Qwen2 and its tokenizer in code and half-teaches it two worked solutions to each of eight arithmetic
problems (`dsdr_trl.recipes.tiny`; nothing is downloaded), then trains it with `DSDRTrainer`, rewarded by the verifier
`math_accuracy_reward` and scored for diversity by the paper's sentence encoder (the test extra's offline
all-MiniLM-L6-v2, checked to be the official weights). Its completions are right about half the time and write
formulas, so each step's line shows the semantic and formula diversities (D_emb, D_eq), the combined score d, the bonus
on correct completions, the entropy of the coupling weights H(w) and the local entropy term H_local; a quantity that
does not apply to a step (no correct completion, no group with two) says so instead of a number. What is sampled, and
so every number, differs between CPUs (vendor, BLAS, thread count).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence

WHY_ABSENT: dict[str, str] = {
    # label of the step line (dsdr_trl._console.WATCHED) -> why a step may have no value of it
    "bonus": "no correct completion",
    "H(w)": "no group with two correct",
    "H_local": "no correct completion",
}
LEGEND = (
    "D_emb, D_eq: semantic and formula diversity (Eq. 6, 8); d: their combination (Eq. 9); bonus: mean reward bonus\n"
    "of the correct completions (Eq. 10); H(w): entropy of the coupling weights, 1 = uniform (Eq. 11); H_local: local\n"
    "entropy estimate on the correct completions (Eq. 15); entropy, length: mean token entropy and completion length.\n"
    "Sampling, so every number, differs between CPUs."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsdr-trl demo",
        description="Train a tiny model built in code with DSDR on CPU, offline, printing every DSDR quantity at each\n"
        "step. Needs the test extra's offline encoder: pip install 'dsdr-trl[test]'.",
        epilog=LEGEND,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=8, help="DSDR training steps (default: 8)")
    return parser


def encoder_path() -> str:
    """The offline all-MiniLM-L6-v2 of the test extra, after checking that it is the official one."""
    from ..recipes.tiny import offline_minilm_path

    try:
        return str(offline_minilm_path())
    except RuntimeError as error:
        raise SystemExit(str(error)) from error


def train_tiny(
    reward_funcs, steps: int, *, learning_rate: float = 1e-4, diversity_scorer=None, semantic_model: str | None = None
) -> None:
    """Train the half-taught tiny model on its eight problems for `steps` steps with DSDR, printing the step line at
    each step (the examples' smoke modes run their own reward or scorer through it). `semantic_model` is the
    encoder's path when the caller has it already (default: `encoder_path()`, which hashes the weights)."""
    from transformers import PrinterCallback, TrainerCallback

    from .. import DSDRConfig, DSDRTrainer
    from .._console import compact_line
    from ..recipes.tiny import build_model, build_tokenizer, prompt_dataset, warm_up

    class PrintStepLine(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:  # a training step, not the summary that ends training
                print(compact_line(logs, state.global_step, state.max_steps, WHY_ABSENT), flush=True)

    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    warm_up(model, tokenizer)
    with tempfile.TemporaryDirectory() as output_dir:
        config = DSDRConfig(  # GRPOConfig's fields plus DSDR's; the paper's DSDR values are the defaults
            output_dir=output_dir,
            semantic_model=semantic_model or encoder_path(),
            num_generations=4,
            per_device_train_batch_size=8,  # 2 prompts x 4 completions per step
            max_completion_length=48,
            max_steps=steps,
            learning_rate=learning_rate,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
            seed=0,
        )
        trainer = DSDRTrainer(
            model=model,
            reward_funcs=reward_funcs,
            args=config,
            train_dataset=prompt_dataset(),
            processing_class=tokenizer,
            callbacks=[PrintStepLine()],
            diversity_scorer=diversity_scorer,
        )
        trainer.remove_callback(PrinterCallback)  # the step line with its n/a reasons instead
        trainer.train()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    from ..recipes.tiny import offline_minilm_path

    try:  # a missing test extra is said in one line, before anything is built
        encoder = str(offline_minilm_path())
    except RuntimeError as error:
        print(f"dsdr-trl demo: {error}", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo never reaches the Hub (read when huggingface_hub loads)
    # The demo trains on the CPU: said to DeepSpeed, when installed, it spares its warning that it found no GPU.
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from transformers.utils import logging as transformers_logging

    from ..rewards import math_accuracy_reward

    # Deprecation notices raised inside transformers and TRL (e.g. `gradient_checkpointing` renamed): only those
    # libraries can act on them. And no bar for loading the encoder's weights, which takes a blink.
    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers_logging.disable_progress_bar()
    print(f"dsdr-trl demo: a tiny Qwen2 half-taught eight arithmetic problems, then {args.steps} DSDR steps on CPU "
          "(2 problems x 4 completions each)", flush=True)  # fmt: skip
    # A large learning rate (the paper: 1e-6), so that a few steps move a tiny model.
    train_tiny(math_accuracy_reward, args.steps, semantic_model=encoder)
    print(LEGEND)
    return 0
