"""Which rewards are the verifier that DSDR's correct-only terms gate on (Eq. 10, 11, 15), and checks of their values.

The rule, in order (the docs' compatibility page states it for users):

1. `DSDRConfig.correctness_reward`, when set: one or several reward names or indices.
2. Else every reward source that is a verifier: an environment's `get_reward`, and every reward whose name has a
   verifier's word (accuracy, correct, verify/verifier, equivalent, exact, pass, solved, success). That covers this
   package's `math_accuracy_reward` and TRL's `accuracy_reward` and `reasoning_accuracy_reward`, in any list order.
3. Else the only reward source.
4. Else the first reward source, announced as a guess.

A row is correct when a verifier that applies to it (does not return `None`) reaches `correctness_threshold`; so
several verifiers serve a multi-task run, each on its own rows.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch

# A word of the reward's name that starts with one of these, or equals one of the whole words, names a verifier.
VERIFIER_WORD_STEMS = ("accura", "correct", "verif", "equiv", "exact")
VERIFIER_WORDS = ("pass", "passed", "passes", "solved", "success")


@dataclass(frozen=True)
class VerifierChoice:
    """The verifier columns of the rewards, and why they were chosen (for the log line)."""

    indices: tuple[int, ...]
    reason: str  # how each was chosen, e.g. "'accuracy_reward' (named as a verifier)"
    guessed: bool = False


def name_words(name: str) -> list[str]:
    """The lower-case words of a reward's name: split at non-alphanumerics and camel-case humps."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    return [word.lower() for word in re.split(r"[^A-Za-z0-9]+", spaced) if word]


def names_a_verifier(name: str) -> bool:
    words = name_words(name)
    return any(word in VERIFIER_WORDS or word.startswith(VERIFIER_WORD_STEMS) for word in words)


def resolve_verifiers(setting: str | None, names: Sequence[str], environment_columns: Collection[int]) -> VerifierChoice:
    """The verifier columns among the reward sources `names` (TRL's `reward_func_names`, environments' columns last).

    `setting` is `correctness_reward`: None, or names / non-negative indices separated by commas.
    """
    if setting is not None:
        indices = [_column_of(item.strip(), names) for item in setting.split(",")]
        return VerifierChoice(tuple(dict.fromkeys(indices)), "set by DSDRConfig.correctness_reward")
    recognised = tuple(i for i, name in enumerate(names) if i in environment_columns or names_a_verifier(name))
    if recognised:
        sources = {True: "an environment's get_reward", False: "named as a verifier"}
        how = " and ".join(f"{names[i]!r} ({sources[i in environment_columns]})" for i in recognised)
        return VerifierChoice(recognised, how)
    if len(names) == 1:
        return VerifierChoice((0,), "the only reward source")
    return VerifierChoice((0,), "the first reward source: none is recognisably a verifier", guessed=True)


def _column_of(item: str, names: Sequence[str]) -> int:
    matches = [i for i, name in enumerate(names) if name == item]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ValueError(
            f"DSDRConfig.correctness_reward: {item!r} names the rewards at indices {matches} of {list(names)}; give "
            "the index of the one that is the verifier."
        )
    if item.isdigit() and int(item) < len(names):
        return int(item)
    raise ValueError(
        f"DSDRConfig.correctness_reward: {item!r} is neither the name of a reward source {list(names)} nor an index "
        f"in 0..{len(names) - 1}. Several verifiers are separated by commas."
    )


def correct_rows(verifier_rewards: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N,) bool: some verifier that applies to the row (not NaN) reaches the threshold. `verifier_rewards` is (N, K)."""
    return (verifier_rewards >= threshold).any(dim=1)  # NaN compares False


@dataclass(frozen=True)
class VerifierCheck:
    """What one verifier's values on a batch say about `correctness_threshold` (only the rows it applies to)."""

    values: torch.Tensor  # (M,) the values it returned, NaN rows left out
    threshold: float

    @property
    def nonbinary(self) -> torch.Tensor:
        return (self.values != 0) & (self.values != 1)

    @property
    def pass_fail(self) -> bool:
        """Whether the values are all 0 or 1 and the threshold lies in (0, 1], so that correct means value 1."""
        return not self.nonbinary.any() and 0 < self.threshold <= 1

    @property
    def never_met(self) -> bool:
        return not self.pass_fail and self.values.numel() > 0 and not (self.values >= self.threshold).any()

    @property
    def always_met(self) -> bool:
        return not self.pass_fail and self.values.numel() > 0 and bool((self.values >= self.threshold).all())

    def problem(self) -> str | None:
        """None for a pass/fail verifier; else what is wrong, with the values seen."""
        if self.pass_fail or self.values.numel() == 0:
            return None
        distinct = sorted({round(v, 4) for v in self.values.tolist()})
        seen = distinct if len(distinct) <= 6 else f"{len(distinct)} distinct values in [{distinct[0]}, {distinct[-1]}]"
        kind = "not 0/1" if self.nonbinary.any() else "0/1"
        reached = int((self.values >= self.threshold).sum())
        verdict = " (never met)" if self.never_met else " (always met)" if self.always_met else ""
        return f"{kind}, values seen {seen}; {reached} of {self.values.numel()} rows >= {self.threshold}{verdict}"


def check_verifiers(verifier_rewards: torch.Tensor, threshold: float) -> list[VerifierCheck]:
    """One check per verifier column of the (N, K) verifier rewards."""
    columns = verifier_rewards.detach().float().cpu().unbind(dim=1)
    return [VerifierCheck(column[~torch.isnan(column)], threshold) for column in columns]


def verifier_metrics(checks: Sequence[VerifierCheck], verifier_rewards: torch.Tensor) -> dict[str, float]:
    """The `dsdr/` health metrics of the verifiers on one batch (see the docs' metrics page)."""
    metrics = {"dsdr/frac_unverified": torch.isnan(verifier_rewards).all(dim=1).float().mean().item()}
    applying = [check for check in checks if check.values.numel() > 0]
    if applying:
        metrics["dsdr/verifier_nonbinary"] = torch.cat([check.nonbinary for check in applying]).float().mean().item()
        metrics["dsdr/verifier_threshold_never_met"] = sum(check.never_met for check in applying) / len(applying)
        metrics["dsdr/verifier_threshold_always_met"] = sum(check.always_met for check in applying) / len(applying)
    return metrics
