"""The paper's sampling protocol (Sec. 4.1, Table 3) as plain settings: what is sampled, how, and with which seed.

Two regimes are sampled per model and benchmark:

- "pass@1": one sample per problem at temperature 0.1 (top-p 0.9). Pass@1 is its mean correctness.
- "sampled": `num_samples` (64) samples per problem at temperature 0.7, top-p 0.9. Avg@k (k = 16) is the mean
  correctness of the first k of them, and Pass@k for each k is the unbiased estimator of Chen et al. (2021)
  over all of them. The paper draws its 16 Avg@16 samples and its 64 Pass@k samples with the same settings;
  sharing them here saves a quarter of the generation and changes no expectation.

How a completion is graded is a setting too (`EvaluationProtocol.reasoning_end`).

Standard library only: the command line and the training callback read these settings without loading a model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: The regime of one sample per problem at `pass1_temperature` (Pass@1).
PASS1_REGIME = "pass@1"
#: The regime of `num_samples` samples per problem at `temperature` (Avg@k, Pass@k, diversity@k).
SAMPLED_REGIME = "sampled"


@dataclass(frozen=True)
class SamplingSettings:
    """Everything that decides the distribution of a sample, and so belongs in its resume key."""

    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int

    def key(self) -> str:
        """A stable text form, used in resume keys."""
        return f"T={self.temperature}|top_p={self.top_p}|max_new_tokens={self.max_new_tokens}|seed={self.seed}"


@dataclass(frozen=True)
class EvaluationProtocol:
    """What is sampled and reported; defaults are the paper's (Sec. 4.1, Table 3; max length of 4K training).

    `reasoning_end` is how completions are graded, not how they are sampled: None grades the whole completion;
    a marker such as "</think>" grades only the text after its last occurrence, and a completion without it
    (thinking that never ends) is incorrect. Use the reading of the training reward: None for `math_accuracy`,
    "</think>" for `reasoning_math_accuracy` (docs/grading.md). Diversity@k reads the whole completion, thinking
    included, either way, as DSDR's diversity score does in training.
    """

    pass1_temperature: float = 0.1
    temperature: float = 0.7
    top_p: float = 0.9
    avg_k: int = 16
    num_samples: int = 64
    ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    max_new_tokens: int = 4096
    seed: int = 0
    reasoning_end: str | None = None

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {self.num_samples}.")
        if not 1 <= self.avg_k <= self.num_samples:
            raise ValueError(f"avg_k must be between 1 and num_samples = {self.num_samples}, got {self.avg_k}.")
        bad_ks = [k for k in self.ks if not 1 <= k <= self.num_samples]
        if not self.ks or bad_ks:
            raise ValueError(f"every k must be between 1 and num_samples = {self.num_samples}; got {self.ks}.")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}.")
        if self.reasoning_end is not None and not (isinstance(self.reasoning_end, str) and self.reasoning_end.strip()):
            raise ValueError(
                f"reasoning_end must be a non-empty marker such as '</think>', or None, got {self.reasoning_end!r}."
            )

    def regimes(self) -> dict[str, tuple[SamplingSettings, int]]:
        """Regime name -> (sampling settings, samples per problem)."""
        return {
            PASS1_REGIME: (SamplingSettings(self.pass1_temperature, self.top_p, self.max_new_tokens, self.seed), 1),
            SAMPLED_REGIME: (
                SamplingSettings(self.temperature, self.top_p, self.max_new_tokens, self.seed),
                self.num_samples,
            ),
        }


def default_ks(num_samples: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to num_samples, and num_samples itself: the x-axis of the paper's Pass@k curves."""
    powers = [2**i for i in range(num_samples.bit_length()) if 2**i <= num_samples]
    return tuple(sorted({*powers, num_samples}))


def sample_seed(base_seed: int, benchmark: str, problem_index: int, sample_index: int) -> int:
    """A per-sample seed that is the same in every process and run (hashlib, not Python's salted `hash`)."""
    digest = hashlib.sha256(f"{base_seed}|{benchmark}|{problem_index}|{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
