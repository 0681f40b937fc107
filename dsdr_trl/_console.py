"""What a DSDR run prints: one compact line per logged step instead of transformers' whole log dict, and no upstream
notice that only the upstream library can act on.

The full log dict still goes, unchanged, to `trainer.state.log_history` and to every tracker (`report_to`); only the
console line is shorter. `DSDRConfig` calls `silence_upstream_deprecations` and `DSDRTrainer.__init__` calls
`use_compact_log`; `be_verbose` (`dsdr-trl train --verbose`) turns both off.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping

from transformers import PrinterCallback, ProgressCallback

# Notices that transformers and TRL raise about each other's API, which only they can act on:
# TRL's configs default `gradient_checkpointing=True`, and its trainer calls `is_gradient_checkpointing` and
# `gradient_checkpointing_enable/disable`; transformers 5 renamed all four to `activation_checkpointing*`.
_UPSTREAM_DEPRECATIONS = (
    (r"`gradient_checkpointing(_kwargs)?` is deprecated", r"transformers\.training_args"),
    (r"`(is_gradient_checkpointing|gradient_checkpointing_(enable|disable))` is deprecated", r"transformers\.modeling_utils"),
)

WATCHED: dict[str, str] = {
    "loss": "loss",
    "reward": "reward",
    "dsdr/frac_correct": "correct",
    "dsdr/semantic/mean": "D_emb",
    "dsdr/formula/mean": "D_eq",
    "dsdr/diversity/mean": "d",
    "dsdr/bonus/correct_mean": "bonus",
    "dsdr/coupling_entropy": "H(w)",
    "dsdr/local_entropy/correct_mean": "H_local",
    "entropy": "entropy",
    "completions/mean_length": "length",
}
"""The logged quantities of the console line, by their label there (a quantity absent from a step is left out)."""


_verbose = False


def silence_upstream_deprecations() -> None:
    """Hides the upstream deprecation notices above (matched by message and by the module that raises them)."""
    if _verbose:
        return
    for message, module in _UPSTREAM_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning, module=module)
    logging.getLogger("DeepSpeed").addFilter(_cpu_accelerator_notice_filter)


def _cpu_accelerator_notice_filter(record: logging.LogRecord) -> bool:
    """Drops DeepSpeed's "Setting accelerator to CPU" on a machine where torch sees no accelerator either."""
    if not record.getMessage().startswith("Setting accelerator to CPU"):
        return True
    import torch

    return torch.accelerator.is_available()


def compact_line(
    logs: Mapping[str, object], step: int, max_steps: int, why_absent: Mapping[str, str] | None = None
) -> str:
    """The console line of one `on_log` call: the watched quantities of a training or evaluation step, or the
    summary that ends training. A quantity the step did not log is left out, or, when `why_absent` gives a reason
    for its label, shown as `label=n/a (reason)`."""
    if "train_runtime" in logs:
        return f"trained {step} steps in {logs['train_runtime']:.1f} s, mean loss {logs.get('train_loss', float('nan')):.4g}"
    prefix = "eval_" if any(key.startswith("eval_") for key in logs) else ""
    why_absent = why_absent or {}
    values = [
        f"{label}={_format(logs[prefix + key])}" if prefix + key in logs else f"{label}=n/a ({why_absent[label]})"
        for key, label in WATCHED.items()
        if prefix + key in logs or label in why_absent
    ]
    return f"{'eval at ' if prefix else ''}step {step}/{max_steps}  " + " ".join(values)


def _format(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class CompactPrinterCallback(PrinterCallback):
    """transformers' PrinterCallback (used with `disable_tqdm=True`), printing `compact_line`."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_local_process_zero and logs:
            print(compact_line(logs, state.global_step, state.max_steps), flush=True)


class CompactProgressCallback(ProgressCallback):
    """transformers' ProgressCallback (the progress bar), writing `compact_line` above the bar."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            self.training_bar.write(compact_line(logs, state.global_step, state.max_steps))


_COMPACT: dict[type, type] = {PrinterCallback: CompactPrinterCallback, ProgressCallback: CompactProgressCallback}


def use_compact_log(trainer) -> None:
    """Replaces the trainer's console callback (transformers' PrinterCallback or ProgressCallback) by its compact
    version, which prints `compact_line`. A subclass of either that the user gave is left alone."""
    if _verbose:
        return
    for callback in list(trainer.callback_handler.callbacks):
        if type(callback) in _COMPACT:
            trainer.callback_handler.remove_callback(callback)
            trainer.callback_handler.add_callback(_COMPACT[type(callback)]())


def be_verbose() -> None:
    """From now on, this process shows the upstream notices and transformers' full log dict (`dsdr-trl train
    --verbose`)."""
    global _verbose
    _verbose = True
