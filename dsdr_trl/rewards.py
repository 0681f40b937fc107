"""TRL reward functions built on ``dsdr_trl.grading``.

TRL calls a reward function as ``f(prompts=..., completions=..., completion_ids=..., **dataset_columns,
trainer_state=..., log_extra=..., log_metric=...)`` and logs its mean as ``rewards/<__name__>/mean``.
Completions are strings (standard format) or lists of message dicts (conversational format); for the
latter the text is the content of the assistant messages, in order. All are safe to call from TRL's reward
worker thread.

Which accuracy reward: ``math_accuracy_reward`` grades the whole completion (models that answer directly, such
as Qwen2.5-Math); ``reasoning_math_accuracy_reward`` grades only what follows the last ``</think>`` and gives 0
when the thinking never ends (reasoning models such as Qwen3 in thinking mode), as TRL's
``reasoning_accuracy_reward`` does: an answer tried out inside the thinking is not the answer given.

Both log ``grading/timeouts`` through TRL's ``log_metric``: the comparisons of the batch that ran past their time
limit or crashed, whose rows are unscorable (``None``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .grading import DEFAULT_DECIMALS, extract_boxed_answer, grade_batch

__all__ = ["boxed_format_reward", "math_accuracy_reward", "reasoning_math_accuracy_reward"]

Completion = str | Sequence[dict[str, Any]]
REASONING_END = "</think>"
_REASONING_FIELDS = ("reasoning_content", "thinking")


def math_accuracy_reward(
    completions: Sequence[Completion],
    solution: Sequence[str],
    *,
    decimals: int = DEFAULT_DECIMALS,
    log_metric: Callable[[str, float], None] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """1.0 where the completion's final answer equals ``solution`` (the gold answer), else 0.0.

    ``None`` where that cannot be decided: the gold answer cannot be parsed, or the comparison ran past its
    time limit or crashed. TRL then leaves that row out of this reward rather than punishing the completion
    for a bad label or a slow machine. Numbers are compared to ``decimals`` decimal places.
    """
    texts = [completion_text(completion) for completion in completions]
    return _accuracy(texts, solution, decimals=decimals, reasoning_end=None, log_metric=log_metric)


def reasoning_math_accuracy_reward(
    completions: Sequence[Completion],
    solution: Sequence[str],
    *,
    decimals: int = DEFAULT_DECIMALS,
    log_metric: Callable[[str, float], None] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """``math_accuracy_reward`` of the text after the last ``</think>``; 0.0 where the thinking never ends.

    A conversational completion whose reasoning the chat template's parser already split off (a
    ``reasoning_content`` or ``thinking`` field beside ``content``) has ended its thinking: its content is graded.
    """
    texts = [_with_separated_reasoning_ended(completion) for completion in completions]
    return _accuracy(texts, solution, decimals=decimals, reasoning_end=REASONING_END, log_metric=log_metric)


def _with_separated_reasoning_ended(completion: Completion) -> str:
    text = completion_text(completion)
    if isinstance(completion, str) or REASONING_END in text:
        return text
    separated = any(
        isinstance(message, dict) and message.get("role") == "assistant" and message.get(field)
        for message in completion or ()
        for field in _REASONING_FIELDS
    )
    return REASONING_END + text if separated else text


def _accuracy(
    texts: list[str],
    solution: Sequence[str],
    *,
    decimals: int,
    reasoning_end: str | None,
    log_metric: Callable[[str, float], None] | None,
) -> list[float | None]:
    grades = grade_batch(texts, list(solution), decimals=decimals, reasoning_end=reasoning_end)
    if log_metric is not None:
        log_metric("grading/timeouts", float(grades.failed))
    return [None if verdict is None else float(verdict) for verdict in grades.verdicts]


def boxed_format_reward(completions: Sequence[Completion], **kwargs: Any) -> list[float]:
    """1.0 where the completion has a closed boxed answer (``\\boxed{...}``, ``\\fbox{...}``), else 0.0."""
    return [float(extract_boxed_answer(completion_text(completion)) is not None) for completion in completions]


def completion_text(completion: Completion) -> str:
    """The text of a completion: itself, or the assistant messages' contents joined by newlines.

    Tolerates ``None`` content, tool and other non-assistant messages (skipped), and content given as
    a list of parts (the ``text`` of each part).
    """
    if isinstance(completion, str):
        return completion
    texts = []
    for message in completion or ():
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return "\n".join(texts)
