"""`DSDRConfig`: `trl.GRPOConfig` plus the settings of DSDR (arXiv 2602.19895)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from trl import GRPOConfig

from ._console import silence_upstream_deprecations
from .formulas import FORMULA_IDENTITIES

COUPLINGS = ("softmax", "uniform")
# Sec. 4.6: with lambda_l above 0.01 the paper saw training collapse.
LOCAL_ENTROPY_COEF_COLLAPSE = 0.01


@dataclass
class DSDRConfig(GRPOConfig):
    r"""
    Configuration class for the [`DSDRTrainer`].

    Every parameter of [`~trl.GRPOConfig`] keeps its meaning and default; this class documents only the parameters
    DSDR adds. Symbols and equation numbers are those of the paper (arXiv 2602.19895).

    Parameters:
        > Parameters of the global scale (Sec. 3.2.1)

        diversity_coef (`float`, *optional*, defaults to `0.001`):
            lambda_d in Eq. 10: scale of the diversity bonus added to the reward of correct completions. `0` removes
            the global term (the "w/o GD" ablation).
        diversity_clip (`float`, *optional*, defaults to `1.0`):
            sigma_d in Eq. 10: the diversity score is clipped to `[0, diversity_clip]` before it is used. The paper
            does not give a value; the score is already in `[0, 1]`, so `1.0` leaves it unchanged.
        semantic_model (`str`, *optional*, defaults to `"sentence-transformers/all-MiniLM-L6-v2"`):
            f in Eq. 4: the frozen sentence encoder, as a Hub id or a local path (sentence-transformers format).
        semantic_weight (`float`, *optional*, defaults to `0.5`):
            Weight of the semantic component D_emb in the combined score d (Eq. 9).
        formula_weight (`float`, *optional*, defaults to `0.5`):
            Weight of the formula component D_eq in the combined score d (Eq. 9).
        formula_identity (`str`, *optional*, defaults to `"normalized"`):
            When two formulas count as the same in Eq. 7. `"normalized"`: same string after normalising whitespace
            and presentation-only LaTeX. `"sympy"`: same canonical SymPy form (so `x+1` and `1+x` match); parsed
            without executing code, time-bounded and cached, falling back to the normalised string.
        semantic_truncate (`bool`, *optional*, defaults to `False`):
            Embed only the first encoder window of each completion (what a plain `encode` does) instead of
            mean-pooling the embeddings of windows covering the whole completion.
        semantic_max_windows (`int`, *optional*, defaults to `64`):
            At most this many encoder windows per completion; a longer completion is represented by windows evenly
            spaced over it. 64 windows of all-MiniLM-L6-v2 cover 16K tokens, more than the paper's longest response,
            and bound the cost of a runaway one.
        semantic_batch_size (`int`, *optional*, defaults to `64`):
            Number of encoder windows per forward pass of the sentence encoder.

        > Parameters of the coupling (Sec. 3.2.2)

        coupling (`str`, *optional*, defaults to `"softmax"`):
            How the local term weighs the correct completions of a group. `"softmax"`: w_i of Eq. 11.
            `"uniform"`: 1/|P| on each correct completion (the "w/o GC" ablation read as uniform weights).
        coupling_temperature (`float`, *optional*, defaults to `5.0`):
            tau in Eq. 11. Larger values concentrate the weight on the most distinctive correct completions.

        > Parameters of the local scale (Sec. 3.2.3-3.2.4)

        local_entropy_coef (`float`, *optional*, defaults to `0.001`):
            lambda_l in Eq. 16: coefficient of the importance-sampled, length-normalised entropy term J_local
            (Eq. 15). `0` removes the local term. Above `0.01` the paper saw training collapse (Sec. 4.6).

        > Parameters of the verifier and the advantages

        correctness_reward (`str`, `int` or `list`, *optional*):
            Which reward source(s) are the verifier r_i of Eq. 10: names (as in the `rewards/<name>/mean` metric) or
            indices in the trainer's `reward_func_names` (environments' rewards come after `reward_funcs`), a list or a
            comma-separated string (stored as the latter). A completion is correct when a listed verifier that applies
            to it (does not return `None`) reaches `correctness_threshold`; so a multi-task run lists one verifier per
            task. Unset: every environment's `get_reward` and every reward named as a verifier (this package's
            `math_accuracy_reward`, TRL's `accuracy_reward` and `reasoning_accuracy_reward`, any name with accuracy,
            correct, verif, equiv, exact, pass, solved or success), in any order of `reward_funcs`; else the only
            reward source; else the first, with a warning. The trainer logs its choice when there are several rewards.
        correctness_threshold (`float`, *optional*, defaults to `1.0`):
            A completion is correct (i in P) when its verifier reward is `>= correctness_threshold`. Must be > 0: a
            verifier gives 0 to a wrong answer, so a threshold <= 0 would call every answer correct. A verifier that is
            not pass/fail at this threshold (values other than 0 and 1, or a threshold above 1) is reported at the
            first training batch that shows it, with whether its values never or always meet the threshold (a
            warning, and the `dsdr/verifier_*` metrics).
        advantage_epsilon (`float`, *optional*, defaults to `1e-6`):
            eps of Eq. 2: advantages are `(r - mean) / (std + eps)`. `1e-6` is the paper's framework (verl); `1e-4`
            reproduces `GRPOTrainer`. It sets the size of the signal the bonus restores in all-correct groups.

        > Monitoring

        log_diversity (`bool`, *optional*, defaults to `False`):
            Score the diversity of every generation batch and log the `dsdr/` diversity and group metrics
            (`dsdr/semantic/mean`, `dsdr/within_group_cosine`, `dsdr/frac_all_correct_groups`, ...) even when
            `diversity_coef=0`, without changing the objective: the rewards, advantages and coupling weights are
            those of the run without it. For GRPO or DAPO baselines (both coefficients `0`) that should show collapse
            coming. Costs one encoder pass over the completions per generation batch.
    """

    diversity_coef: float = field(
        default=0.001,
        metadata={
            "help": "lambda_d (Sec. 3.2.1, Eq. 10): scale of the diversity bonus added to the reward of correct "
            "completions. 0 removes the global term (the 'w/o GD' ablation)."
        },
    )
    diversity_clip: float = field(
        default=1.0,
        metadata={
            "help": "sigma_d (Sec. 3.2.1, Eq. 10): the diversity score is clipped to [0, diversity_clip]. Not given "
            "in the paper; the score is already in [0, 1], so 1.0 leaves it unchanged."
        },
    )
    semantic_model: str = field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        metadata={
            "help": "f (Sec. 3.2.1, Eq. 4): frozen sentence encoder, a Hub id or a local sentence-transformers path."
        },
    )
    semantic_weight: float = field(
        default=0.5,
        metadata={"help": "Weight of the semantic component D_emb in the combined score d (Sec. 3.2.1, Eq. 9)."},
    )
    formula_weight: float = field(
        default=0.5,
        metadata={"help": "Weight of the formula component D_eq in the combined score d (Sec. 3.2.1, Eq. 9)."},
    )
    formula_identity: str = field(
        default="normalized",
        metadata={
            "help": "When two formulas count as the same in Eq. 7 (Sec. 3.2.1). 'normalized': same string after "
            "normalising whitespace and presentation-only LaTeX. 'sympy': same canonical SymPy form, parsed "
            "without executing code, time-bounded and cached, falling back to the normalised string.",
            "choices": list(FORMULA_IDENTITIES),
        },
    )
    semantic_truncate: bool = field(
        default=False,
        metadata={
            "help": "Embed only the first encoder window of each completion (what a plain `encode` does) instead "
            "of mean-pooling the embeddings of windows covering the whole completion (Sec. 3.2.1, Eq. 4)."
        },
    )
    semantic_max_windows: int = field(
        default=64,
        metadata={
            "help": "At most this many encoder windows per completion (Sec. 3.2.1, Eq. 4); a longer completion is "
            "represented by windows evenly spaced over it. 64 windows of all-MiniLM-L6-v2 cover 16K tokens, more "
            "than the paper's longest response, and bound the cost of a runaway one."
        },
    )
    semantic_batch_size: int = field(
        default=64,
        metadata={"help": "Number of encoder windows per forward pass of the sentence encoder."},
    )
    coupling: str = field(
        default="softmax",
        metadata={
            "help": "Weights of the correct completions in the local term (Sec. 3.2.2). 'softmax': w_i of Eq. 11. "
            "'uniform': 1/|P| on each correct completion (the 'w/o GC' ablation read as uniform weights).",
            "choices": list(COUPLINGS),
        },
    )
    coupling_temperature: float = field(
        default=5.0,
        metadata={
            "help": "tau (Sec. 3.2.2, Eq. 11): larger values concentrate the coupling weight on the most distinctive "
            "correct completions."
        },
    )
    local_entropy_coef: float = field(
        default=0.001,
        metadata={
            "help": "lambda_l (Sec. 3.2.4, Eq. 16): coefficient of the importance-sampled, length-normalised entropy "
            "term J_local (Eq. 15). 0 removes the local term. Above 0.01 the paper saw training collapse (Sec. 4.6)."
        },
    )
    correctness_reward: str | None = field(
        default=None,
        metadata={
            "help": "Which reward source(s) are the verifier r_i (Sec. 3.1, Eq. 10): names (as in the "
            "'rewards/<name>/mean' metric) or indices, comma-separated; a completion is correct when a listed "
            "verifier that applies to it (not None) reaches correctness_threshold. Unset: every environment's "
            "get_reward and every reward named as a verifier (math_accuracy, TRL's accuracy_reward, names with "
            "accuracy, correct, verif, equiv, exact, pass, solved or success), in any order; else the only reward; "
            "else the first, with a warning."
        },
    )
    correctness_threshold: float = field(
        default=1.0,
        metadata={
            "help": "A completion is correct (i in P, Sec. 3.1) when its verifier reward is >= correctness_threshold; "
            "> 0, as a verifier gives 0 to a wrong answer. A verifier that is not pass/fail at this threshold (values "
            "other than 0 and 1, or a threshold above 1) is reported at the first training batch that shows it, "
            "with whether the threshold is never or always met (a warning, and the dsdr/verifier_* metrics)."
        },
    )
    advantage_epsilon: float = field(
        default=1e-6,
        metadata={
            "help": "eps of Eq. 2: advantages are (r - mean) / (std + eps). 1e-6 is the paper's framework (verl); "
            "1e-4 reproduces GRPOTrainer."
        },
    )
    log_diversity: bool = field(
        default=False,
        metadata={
            "help": "Score diversity and log the dsdr/ diversity and group metrics (Sec. 3.2.1, Eq. 4-9) even when "
            "diversity_coef=0, without changing the objective: for GRPO/DAPO baselines, to see collapse coming. "
            "Costs one encoder pass over the completions per generation batch."
        },
    )

    def __post_init__(self):
        # Before GRPOConfig's own checks, which refuse it too, but with ZeroDivisionError for 0.
        if self.num_generations is not None and self.num_generations < 2:
            raise ValueError(
                f"DSDRConfig: num_generations must be >= 2, got {self.num_generations}: the diversity of a completion "
                "(Eq. 6-7) and its advantage (Eq. 2) are measured against the other completions of its group."
            )
        # A saved config holds both generation_batch_size and the steps_per_generation GRPOConfig derived from it,
        # which GRPOConfig refuses together: derive steps_per_generation again and check it matches.
        saved_steps_per_generation = None
        if self.generation_batch_size is not None and self.steps_per_generation is not None:
            saved_steps_per_generation, self.steps_per_generation = self.steps_per_generation, None
        silence_upstream_deprecations()  # TRL's gradient_checkpointing=True default makes transformers warn
        super().__post_init__()
        if saved_steps_per_generation not in (None, self.steps_per_generation):
            raise ValueError(
                f"DSDRConfig: generation_batch_size={self.generation_batch_size} gives steps_per_generation="
                f"{self.steps_per_generation}, not {saved_steps_per_generation}; set only one of the two."
            )
        self.correctness_reward = _verifier_list(self.correctness_reward)
        for name in ("diversity_coef", "local_entropy_coef", "semantic_weight", "formula_weight"):
            _require(name, getattr(self, name), lambda v: v >= 0, "a finite number >= 0")
        for name in ("diversity_clip", "coupling_temperature", "advantage_epsilon"):
            _require(name, getattr(self, name), lambda v: v > 0, "a finite number > 0")
        # A verifier gives 0 to a wrong answer: at a threshold <= 0 every answer would be correct.
        _require("correctness_threshold", self.correctness_threshold, lambda v: v > 0, "a finite number > 0")
        if self.semantic_weight + self.formula_weight == 0:
            raise ValueError(
                "DSDRConfig: semantic_weight and formula_weight are both 0, so the diversity score d (Eq. 9) is "
                "undefined. Give at least one of them a value > 0 (the paper uses 0.5 and 0.5)."
            )
        _require_choice("coupling", self.coupling, COUPLINGS)
        _require_choice("formula_identity", self.formula_identity, FORMULA_IDENTITIES)
        if self.semantic_batch_size < 1:
            raise ValueError(f"DSDRConfig: semantic_batch_size must be an integer >= 1, got {self.semantic_batch_size}.")
        if self.semantic_max_windows < 2:
            raise ValueError(f"DSDRConfig: semantic_max_windows must be an integer >= 2, got {self.semantic_max_windows}.")
        if self.local_entropy_coef > LOCAL_ENTROPY_COEF_COLLAPSE:
            warnings.warn(
                f"DSDRConfig: local_entropy_coef={self.local_entropy_coef} is above {LOCAL_ENTROPY_COEF_COLLAPSE}, "
                "where the paper saw training collapse (Sec. 4.6). The paper uses 0.001.",
                UserWarning,
                stacklevel=3,
            )


def _verifier_list(setting) -> str | None:
    """`correctness_reward` as a comma-separated string of names / indices (a name, an index or a list of them)."""
    if setting is None:
        return None
    items = setting.split(",") if isinstance(setting, str) else setting if isinstance(setting, (list, tuple)) else [setting]
    names = [str(item).strip() for item in items]
    if not names or not all(names) or any(isinstance(item, bool) or not isinstance(item, (str, int)) for item in items):
        raise ValueError(
            f"DSDRConfig: correctness_reward must be reward names or indices (one, a list, or comma-separated), got "
            f"{setting!r}."
        )
    return ",".join(names)


def _require(name: str, value: float, condition, allowed: str) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not condition(value):
        raise ValueError(f"DSDRConfig: {name} must be {allowed}, got {value!r}.")


def _require_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"DSDRConfig: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}.")
