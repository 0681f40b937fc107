"""TRL reward functions built on ``dsdr_trl.grading``.

TRL calls a reward function as ``f(prompts=..., completions=..., completion_ids=..., **dataset_columns,
trainer_state=..., log_extra=..., log_metric=...)`` and logs its mean as ``rewards/<__name__>/mean``.
Completions are strings (standard format) or lists of message dicts (conversational format); for the
latter the text is the content of the assistant messages, in order. Both functions are safe to call
from TRL's reward worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .grading import extract_boxed_answer, grade_many

__all__ = ["boxed_format_reward", "math_accuracy_reward"]

Completion = str | Sequence[dict[str, Any]]


def math_accuracy_reward(completions: Sequence[Completion], solution: Sequence[str], **kwargs: Any) -> list[float | None]:
    """1.0 where the completion's final answer equals ``solution`` (the gold answer), else 0.0.

    ``None`` where the gold answer cannot be parsed, so TRL leaves that row out of this reward
    rather than punishing the completion for a bad label.
    """
    grades = grade_many([completion_text(completion) for completion in completions], list(solution))
    return [None if verdict is None else float(verdict) for verdict in grades]


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
