"""`DSDRTrainer`: TRL's `GRPOTrainer` with DSDR's dual-scale diversity regularisation (arXiv 2602.19895).

Plumbing only: every equation lives in `dsdr_trl.functional`, every text operation in the scorer. All contact with
TRL's private API is here, in four overrides that call `super()`, checked when the trainer is built.
"""

from __future__ import annotations

import functools
import inspect
import logging
import textwrap
import time
import warnings
from typing import Any

import torch
import trl
from accelerate.utils import gather_object
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from torch import nn
from trl import GRPOConfig, GRPOTrainer

from . import _console, _files
from . import functional as DF
from .config import DSDRConfig
from .rewards import completion_text
from .scorer import DiversityScorer, DiversityScores
from .verifier import VerifierChoice, check_verifiers, correct_rows, resolve_verifiers, verifier_metrics

SUPPORTED_TRL = ">=1.12.0,<1.17"
# An all-correct group "has signal" when its advantages spread by more than this. GRPO's constant groups spread by 0
# (normalize_then_sum's batch re-centring shifts the whole group by ~1e-8, which a non-zero test would count); float32
# rounding at advantages of order 1 is ~1e-7.
SIGNAL_TOLERANCE = 1e-6

logger = logging.getLogger(__name__)

# The private methods DSDR wraps, and the parameters it relies on. A TRL release that changes them is refused.
_OVERRIDE_POINTS: dict[str, tuple[str, ...]] = {
    "_calculate_rewards": ("inputs", "prompts", "completions", "completion_ids_list"),
    "_generate_and_score_completions": ("inputs",),
    "_compute_loss": ("model", "inputs"),
    "_get_per_token_logps_and_entropies": ("model", "input_ids", "attention_mask", "logits_to_keep"),
}
# Attributes of GRPOTrainer read after `super().__init__()`.
_TRAINER_ATTRIBUTES = (
    "reward_func_names",
    "reward_weights",
    "scale_rewards",
    "multi_objective_aggregation",
    "num_generations",
    "num_generations_eval",
    "_metrics",
    "_logs",
)


class DSDRTrainer(GRPOTrainer):
    """Trainer for DSDR, Dual-Scale Diversity Regularization (arXiv 2602.19895).

    A drop-in replacement for [`~trl.GRPOTrainer`]: the same constructor and the same behaviour, except for what
    follows. With `diversity_coef=0`, `local_entropy_coef=0` and `advantage_epsilon=1e-4` it is GRPOTrainer, and it
    accepts every setting GRPOTrainer accepts.

    What changes relative to `GRPOTrainer`:

    1. **Rewards (global scale, Eq. 4-10).** After the reward functions have run and TRL has gathered their outputs,
       every completion is scored for how different it is from the rest of its group: semantically (a frozen
       sentence encoder, `semantic_model`) and symbolically (formulas no other completion uses). Each process encodes
       its own rows; embeddings and formula sets are gathered in rank-major order, so groups that straddle processes
       are scored whole and identically on every process. Correct completions get the bonus
       `diversity_coef * clip(d, 0, diversity_clip)`; the other rows are unchanged. Groups of one completion
       (evaluation with `num_generations_eval=1`) are not scored. A completion is correct when a verifier that applies
       to it (does not return `None`) gives it a reward `>= correctness_threshold`. The verifiers are those named by
       `correctness_reward`, else chosen by the rule of `dsdr_trl.verifier` (environments' rewards and rewards named
       as verifiers, in any order). While a correct-only term is on, the first training batch on which a verifier is
       not pass/fail at the threshold is reported in a warning; every batch, in the `dsdr/verifier_*` metrics.
    2. **Advantages (Eq. 2).** Formed from the augmented rewards as GRPOTrainer forms them (reward weights, NaN for
       unscorable rows, `scale_rewards`, `multi_objective_aggregation`), with `advantage_epsilon` in place of TRL's
       hard-coded 1e-4. With `"sum_then_normalize"` the bonus is added to the weighted sum of the rewards, so its
       scale is `diversity_coef` whatever the reward weights. With `"normalize_then_sum"` it is added to the
       verifier's reward before that reward is normalised within its group, so it is scaled by the verifier's
       reward weight (weight 0 removes it, while the coupling and the local term stay; the trainer warns) and, in an
       all-correct group, by the group's bonus spread instead of `diversity_coef`.
    3. **Coupling (Eq. 11).** Each correct completion gets a weight, a softmax of `coupling_temperature * dbar` over
       the correct completions of its group (`coupling="uniform"`: 1/|P|; uniform too when `diversity_coef=0`, as
       there is no score). A completion that the loss ignores (all its tokens masked, as `mask_truncated_completions`
       does to truncated ones) gets no weight, and the group's weight goes to the others. The weight travels with
       its row through TRL's shuffling and micro-batching.
    4. **Loss (Eq. 14-16).** `L = L_GRPO - local_entropy_coef * J_local`, where J_local is the importance-sampled,
       length-normalised entropy of correct completions, weighted by the coupling, computed from the per-token
       log-probabilities of the same forward pass as the policy loss (no second forward). It is a mean over the
       groups of the generation batch; its gradient does not depend on the per-device batch size or the number of
       processes, and averaged over the optimizer steps of one generation batch it does not depend on gradient
       accumulation or `steps_per_generation` (each step's gradient is exact when `steps_per_generation` divides
       `gradient_accumulation_steps`, and right in expectation over TRL's shuffle otherwise). The tokens are those
       of the policy loss (`tool_mask` included), and the vLLM importance-sampling ratio applies where TRL applies
       it to the policy loss (not with `loss_type="vespo"`).
    5. **Metrics** under `dsdr/` (see the docs' metrics page); `log_diversity=True` logs the diversity metrics also
       when `diversity_coef=0`, without changing the objective.

    Refused, after GRPOTrainer's own checks: a `use_liger_kernel=True` whose TRL release computes the loss in Liger's
    fused kernel (trl < 1.14) while `local_entropy_coef > 0`, as that loss never exposes the per-token
    log-probabilities the local term needs.

    Args:
        model, reward_funcs, args, ...: as for [`~trl.GRPOTrainer`]; `args` must be a [`DSDRConfig`] (default: one
            with `output_dir="<model name>-DSDR"`).
        diversity_scorer ([`DiversityScorer`], *optional*): the scorer to use instead of the one `args` describes,
            e.g. with another encoder or formula extractor. Used only when `diversity_coef > 0` or `log_diversity`.
    """

    _tag_names = ["trl", "grpo", "dsdr"]
    _name = "DSDR"
    _paper = {  # the paper a model card (`create_model_card`, `push_to_hub`) cites
        "title": "DSDR: Dual-Scale Diversity Regularization for Exploration in LLM Reasoning",
        "id": "2602.19895",
        "citation": textwrap.dedent("""\
            @article{wan2026dsdr,
                title        = {{DSDR: Dual-Scale Diversity Regularization for Exploration in LLM Reasoning}},
                author       = {Wan and Shen and Dou and others},
                year         = 2026,
                eprint       = {arXiv:2602.19895},
            }"""),
    }

    def __init__(
        self,
        model: Any,
        reward_funcs: Any = None,
        args: DSDRConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        reward_processing_classes: Any = None,
        callbacks: Any = None,
        optimizers: tuple[Any, Any] = (None, None),
        quantization_config: Any = None,
        peft_config: Any = None,
        tools: Any = None,
        rollout_func: Any = None,
        environment_factory: Any = None,
        *,
        diversity_scorer: DiversityScorer | None = None,
    ):
        check_trl_internals()
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = DSDRConfig(output_dir=f"{name.split('/')[-1]}-DSDR")
        elif not isinstance(args, DSDRConfig):
            kind = "a GRPOConfig" if isinstance(args, GRPOConfig) else type(args).__name__
            raise TypeError(f"DSDRTrainer needs a DSDRConfig as `args`, got {kind}. Replace GRPOConfig with DSDRConfig.")
        if diversity_scorer is not None and not isinstance(diversity_scorer, DiversityScorer):
            raise TypeError(f"diversity_scorer must be a DiversityScorer, got {type(diversity_scorer).__name__}.")
        # GRPOTrainer appends each environment's get_reward after the reward functions (and to the caller's list).
        num_reward_funcs = 0 if reward_funcs is None else len(reward_funcs) if isinstance(reward_funcs, list) else 1
        super().__init__(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            reward_processing_classes=reward_processing_classes,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
            tools=tools,
            rollout_func=rollout_func,
            environment_factory=environment_factory,
        )
        _console.use_compact_log(self)  # one line per logged step on the console; the full dict goes to the logs
        missing = [name for name in _TRAINER_ATTRIBUTES if not hasattr(self, name)]
        if missing:
            raise _unsupported_trl(f"GRPOTrainer no longer sets {', '.join(missing)}")
        _refuse_fused_liger_loss(self)
        environment_columns = range(num_reward_funcs, len(self.reward_func_names))
        choice = resolve_verifiers(args.correctness_reward, self.reward_func_names, environment_columns)
        self.correctness_reward_indices = choice.indices
        if self.accelerator.is_main_process:
            self._announce_verifiers(choice)
        self._verifier_warned = False
        self.reward_funcs = [
            func if isinstance(func, nn.Module) else _naming_errors(func, name)
            for func, name in zip(self.reward_funcs, self.reward_func_names)
        ]
        self.diversity_scorer = None
        if args.diversity_coef > 0 or args.log_diversity:
            self.diversity_scorer = diversity_scorer or DiversityScorer.from_config(args, self.accelerator.device)
        elif diversity_scorer is not None:
            warnings.warn("diversity_scorer is unused: diversity_coef=0 turns the global diversity term off.")
        self._dsdr_rewards: tuple[torch.Tensor, DiversityScores | None, float] | None = None
        self._dsdr_logps: list[torch.Tensor] | None = None

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        super().save_model(output_dir, _internal_call)
        if self.is_world_process_zero():
            _files.follow_umask(output_dir or self.args.output_dir)

    def _group_size(self) -> int:
        return self.num_generations if self.model.training else self.num_generations_eval

    def _verifier_names(self) -> list[str]:
        return [self.reward_func_names[i] for i in self.correctness_reward_indices]

    def _announce_verifiers(self, choice: VerifierChoice) -> None:
        """Logs which rewards decide correctness when there was a choice, and a verifier with reward weight 0."""
        chosen = self._verifier_names()
        if choice.guessed:
            logger.warning(
                "DSDR: none of the rewards %s is recognisably a verifier (an environment's get_reward, or a name such "
                "as accuracy_reward: see dsdr_trl.verifier), so the first, %r, decides which "
                "completions are correct (Eq. 10, 11, 15): only they get the diversity bonus and the entropy term. "
                "If it does not check the answer, set DSDRConfig.correctness_reward to the reward that does.",
                self.reward_func_names,
                chosen[0],
            )
        elif self.args.correctness_reward is None and len(self.reward_func_names) > 1:
            logger.warning(
                "DSDR: the verifier that decides which completions are correct (Eq. 10, 11, 15) is %s, among the "
                "rewards %s. Set DSDRConfig.correctness_reward to choose others.",
                choice.reason,
                self.reward_func_names,
            )
        unweighted = [name for i, name in zip(self.correctness_reward_indices, chosen) if self.reward_weights[i] == 0]
        if unweighted:
            logger.warning(
                "DSDR: the verifier %s has reward weight 0: it still decides which completions are correct, but adds "
                "nothing to the reward. With multi_objective_aggregation='normalize_then_sum' the diversity bonus, which "
                "is added to the verifier's reward, is multiplied by that 0 and removed, while the coupling and the "
                "local term stay. Give the verifier a weight > 0 in reward_weights.",
                unweighted,
            )

    # -- global scale: rewards, advantages, coupling ------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        start = time.perf_counter()
        scores = None
        if self.diversity_scorer is not None and self._group_size() > 1:  # a group of one has no "rest of the group"
            scores = self._score_diversity(completions)
        self._dsdr_rewards = (rewards_per_func, scores, time.perf_counter() - start)
        return rewards_per_func

    def _score_diversity(self, completions: list) -> DiversityScores:
        """Scores the whole generation batch from this process's completions (collective: every process calls it)."""
        texts = [completion_text(completion) for completion in completions]
        embeddings, formula_sets, error = None, None, None
        try:
            embeddings = self.diversity_scorer.embed(texts).to(self.accelerator.device)
            formula_sets = self.diversity_scorer.extract(texts)
        except Exception as exc:  # re-raised below on every process, so that none is left waiting in a collective
            error = exc
        errors = gather_object([None if error is None else f"{type(error).__name__}: {error}"])
        failed = [(rank, message) for rank, message in enumerate(errors) if message is not None]
        if failed:
            rank, message = failed[0]
            raise RuntimeError(f"DSDR diversity scoring failed on process {rank}: {message}") from error
        all_embeddings = self.accelerator.gather(embeddings.contiguous())
        all_formula_sets = gather_object(formula_sets)
        return self.diversity_scorer.score(all_embeddings, all_formula_sets, self._group_size())

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if self._dsdr_rewards is None or "advantages" not in output:
            raise _unsupported_trl("_generate_and_score_completions no longer computes rewards the way DSDR wraps")
        rewards_per_func, scores, scoring_time = self._dsdr_rewards
        self._dsdr_rewards = None

        mode = "train" if self.model.training else "eval"
        group_size = self._group_size()
        device = rewards_per_func.device
        threshold = self.args.correctness_threshold
        verifier_rewards = rewards_per_func[:, list(self.correctness_reward_indices)]
        correct = correct_rows(verifier_rewards, threshold)
        self._check_verifiers(mode, verifier_rewards)
        # Only a scored batch with a global term changes the objective; log_diversity alone leaves it as it is.
        with_bonus = scores is not None and self.args.diversity_coef > 0
        diversity = scores.combined.to(device) if with_bonus else torch.zeros_like(correct, dtype=rewards_per_func.dtype)

        def add_bonus(rewards: torch.Tensor) -> torch.Tensor:  # Eq. 10
            if not with_bonus:
                return rewards
            return DF.augmented_rewards(rewards, correct, diversity, self.args.diversity_coef, self.args.diversity_clip)

        if self.multi_objective_aggregation == "normalize_then_sum":
            # Each correct row's bonus goes to one column: the first listed verifier that calls it correct.
            columns = rewards_per_func.clone()
            without_bonus = correct.clone()
            for index in self.correctness_reward_indices:
                carries = without_bonus & (rewards_per_func[:, index] >= threshold)
                if with_bonus:
                    columns[:, index] = DF.augmented_rewards(
                        rewards_per_func[:, index], carries, diversity, self.args.diversity_coef, self.args.diversity_clip
                    )
                without_bonus &= ~carries
            bonus = (columns - rewards_per_func).nan_to_num().sum(dim=1)
            advantages = DF.normalized_sum_advantages(
                columns, self.reward_weights.to(device), group_size, self.args.advantage_epsilon
            )
        else:  # "sum_then_normalize"; TRL refuses any other value
            rewards = (rewards_per_func * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)
            rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
            augmented = add_bonus(rewards)
            bonus = augmented - rewards
            advantages = DF.group_advantages(augmented, group_size, self.scale_rewards, self.args.advantage_epsilon)
        clipped = DF.clip_diversity(diversity, self.args.diversity_clip)
        temperature = self.args.coupling_temperature if with_bonus and self.args.coupling == "softmax" else 0.0
        # A row whose tokens are all masked (mask_truncated_completions, or all tool output) takes no part in the
        # loss: its share of the group's coupling weight goes to the correct rows that do.
        in_loss = self.accelerator.gather(_loss_mask(output).sum(dim=1)) > 0
        weights = DF.coupling_weights(clipped, correct & in_loss, group_size, temperature)

        local_rows = output["advantages"].size(0)
        local = slice(self.accelerator.process_index * local_rows, (self.accelerator.process_index + 1) * local_rows)
        output["advantages"] = advantages[local]
        output["dsdr_coupling_weights"] = weights[local]
        # Every row carries the number of groups of its generation batch, which normalises J_local in the loss.
        output["dsdr_num_groups"] = torch.full((local_rows,), correct.numel() // group_size, device=device)

        logged_advantages = self._logs["advantages"]  # TRL logged its own advantages for the completions table
        for _ in range(min(advantages.numel(), len(logged_advantages))):
            logged_advantages.pop()
        logged_advantages.extend(advantages.tolist())
        self._log_global_metrics(
            mode, correct, bonus if with_bonus else None, advantages, weights, scores, scoring_time, group_size
        )
        return output

    def _check_verifiers(self, mode: str, verifier_rewards: torch.Tensor) -> None:
        """Logs the verifiers' health metrics; on the first training batch that shows a problem, warns once."""
        checks = check_verifiers(verifier_rewards, self.args.correctness_threshold)
        for name, value in verifier_metrics(checks, verifier_rewards).items():
            self._metrics[mode][name].append(value)
        # With both correct-only terms off, which rows are correct changes nothing: the metrics suffice.
        terms_on = self.args.diversity_coef > 0 or self.args.local_entropy_coef > 0
        if mode != "train" or self._verifier_warned or not terms_on:
            return
        problems = [(name, problem) for name, check in zip(self._verifier_names(), checks) if (problem := check.problem())]
        if not problems:
            return
        self._verifier_warned = True
        if self.accelerator.is_main_process:
            logger.warning(
                "DSDR: the verifier does not give pass/fail rewards at correctness_threshold=%s on the batch of step "
                "%d: %s. DSDR's diversity bonus, coupling and entropy term act only on the rows it calls correct, "
                "so they may act on the wrong rows, on none or on all (see dsdr/verifier_nonbinary, "
                "dsdr/verifier_threshold_never_met and dsdr/verifier_threshold_always_met). Set "
                "DSDRConfig.correctness_reward to the reward(s) that check the answer (now %s, among %s), or "
                "correctness_threshold to the value that means correct.",
                self.args.correctness_threshold,
                self.state.global_step,
                "; ".join(f"{name!r}: {problem}" for name, problem in problems),
                self._verifier_names(),
                self.reward_func_names,
            )

    def _log_global_metrics(self, mode, correct, bonus, advantages, weights, scores, seconds, group_size):
        metrics = self._metrics[mode]
        grouped_correct = correct.view(-1, group_size)
        all_correct = grouped_correct.all(dim=1)
        metrics["dsdr/frac_correct"].append(correct.float().mean().item())
        metrics["dsdr/frac_all_correct_groups"].append(all_correct.float().mean().item())
        if all_correct.any():
            # A spread, not a non-zero value: normalize_then_sum's batch re-centring leaves ~1e-8 in constant groups.
            grouped = advantages.view(-1, group_size)[all_correct]
            has_signal = grouped.max(dim=1).values - grouped.min(dim=1).values > SIGNAL_TOLERANCE
            metrics["dsdr/frac_all_correct_groups_with_signal"].append(has_signal.float().mean().item())
        correct_per_group = grouped_correct.sum(dim=1)
        several = correct_per_group >= 2
        if several.any():  # entropy of the coupling weights over P, divided by its maximum log |P|
            w = weights.view(-1, group_size)[several]
            entropy = -(w * torch.log(w.clamp(min=1e-30))).sum(dim=1)
            metrics["dsdr/coupling_entropy"].append((entropy / torch.log(correct_per_group[several].float())).mean().item())
        if bonus is not None and correct.any():
            metrics["dsdr/bonus/correct_mean"].append(bonus[correct].mean().item())
        if scores is None:
            return
        for name, values in (("semantic", scores.semantic), ("formula", scores.formula), ("diversity", scores.combined)):
            values = values.to(correct.device)
            metrics[f"dsdr/{name}/mean"].append(values.mean().item())
            if correct.any():
                metrics[f"dsdr/{name}/correct_mean"].append(values[correct].mean().item())
        # D_emb is the mean of (1 - cos) / 2 over the other rows, so this is the mean within-group cosine similarity.
        metrics["dsdr/within_group_cosine"].append(1.0 - 2.0 * scores.semantic.mean().item())
        metrics["dsdr/scoring_time_s"].append(seconds)

    # -- local scale: the entropy term in the loss ----------------------------------------------------------------------

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        result = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        if self._dsdr_logps is not None:  # inside _compute_loss: keep the policy's log-probs, with their graph
            self._dsdr_logps.append(result[0])
        return result

    def _compute_loss(self, model, inputs):
        if self.args.local_entropy_coef == 0:
            return super()._compute_loss(model, inputs)
        self._dsdr_logps = []
        try:
            loss = super()._compute_loss(model, inputs)
            captured = self._dsdr_logps
        finally:
            self._dsdr_logps = None
        if len(captured) != 1:
            raise _unsupported_trl(
                f"GRPOTrainer's loss made {len(captured)} log-probability passes instead of 1; DSDR's local term "
                "needs the per-token log-probabilities of the policy loss's own forward pass"
            )
        per_token_logps = captured[0]
        mask = _loss_mask(inputs)
        old_per_token_logps = inputs.get("old_per_token_logps")
        if old_per_token_logps is None:  # on-policy step: TRL uses the current log-probs, detached, as pi_old
            old_per_token_logps = per_token_logps.detach()
        sampling_correction = None
        # Where TRL applies it to the policy loss: VESPO uses the ratio inside its own weights instead.
        if self.use_vllm and self.vllm_importance_sampling_correction and self.loss_type != "vespo":
            sampling_correction = inputs["importance_sampling_ratio"]
        weights = inputs["dsdr_coupling_weights"]
        per_sequence = DF.local_entropy_objective(
            per_token_logps, old_per_token_logps, mask, weights, sampling_correction
        )
        mode = "train" if self.model.training else "eval"
        # Sum over this micro-batch's rows / the number of groups the optimizer step sees, times the number of
        # processes (their gradients are averaged): summed over micro-batches and processes, the paper's mean over
        # prompts (Eq. 15), whatever the batch layout.
        num_groups = inputs["dsdr_num_groups"][0].float()
        if mode == "train":
            num_groups = num_groups * self.current_gradient_accumulation_steps / self.args.steps_per_generation
        local_objective = per_sequence.sum() * self.accelerator.num_processes / num_groups
        self._log_local_entropy(mode, per_sequence.detach(), weights)
        return loss - self.args.local_entropy_coef * local_objective

    def _log_local_entropy(self, mode, per_sequence, weights):
        """The importance-sampled entropy estimate of Eq. 15 on the correct rows, unweighted, over all processes."""
        correct = weights > 0  # coupling weights are positive exactly on the correct rows
        estimates = per_sequence[correct] / weights[correct]
        totals = self.accelerator.reduce(torch.stack([estimates.sum(), correct.sum().to(estimates.dtype)]), "sum")
        if totals[1] > 0:
            self._metrics[mode]["dsdr/local_entropy/correct_mean"].append((totals[0] / totals[1]).item())


def _loss_mask(batch: dict) -> torch.Tensor:
    """The tokens the policy loss uses, as TRL masks them: completion tokens that are not tool output."""
    mask = batch["completion_mask"]
    return mask * batch["tool_mask"] if "tool_mask" in batch else mask


class RewardFunctionError(RuntimeError):
    """A reward function raised; the message names it."""


def _naming_errors(func, name: str):
    """Wraps a reward function so that an exception it raises names it (TRL re-raises it bare)."""

    def reraise(error: Exception):
        return RewardFunctionError(f"reward function {name!r} raised {type(error).__name__}: {error}")

    target = func.func if isinstance(func, functools.partial) else func
    if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(getattr(target, "__call__", None)):

        async def named(*args, **kwargs):
            try:
                return await func(*args, **kwargs)
            except Exception as error:
                raise reraise(error) from error

    else:

        def named(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except Exception as error:
                raise reraise(error) from error

    named.__name__ = name
    return named


def check_trl_internals() -> None:
    """Refuses a TRL whose GRPOTrainer lacks, or has changed, a method DSDR wraps."""
    for name, parameters in _OVERRIDE_POINTS.items():
        method = getattr(GRPOTrainer, name, None)
        if method is None:
            raise _unsupported_trl(f"GRPOTrainer.{name} is missing")
        present = inspect.signature(method).parameters
        changed = [parameter for parameter in parameters if parameter not in present]
        if changed:
            raise _unsupported_trl(f"GRPOTrainer.{name} no longer takes {', '.join(changed)}")
    if not SpecifierSet(SUPPORTED_TRL).contains(Version(trl.__version__), prereleases=True):
        warnings.warn(
            f"dsdr-trl is tested with trl{SUPPORTED_TRL}; found trl {trl.__version__}. Its internals look "
            "compatible, but results are not guaranteed.",
            stacklevel=3,
        )


def _unsupported_trl(reason: str) -> RuntimeError:
    return RuntimeError(
        f"dsdr-trl cannot train with trl {trl.__version__}: {reason}. DSDR wraps private GRPOTrainer methods and is "
        f"tested with trl{SUPPORTED_TRL}; install a release in that range (pip install 'trl{SUPPORTED_TRL}')."
    )


def _refuse_fused_liger_loss(trainer: GRPOTrainer) -> None:
    """Refuses the local term where the GRPO loss is Liger's fused kernel (trl < 1.14 sets `liger_loss`)."""
    if trainer.args.local_entropy_coef > 0 and getattr(trainer, "liger_loss", None) is not None:
        raise ValueError(
            f"DSDRTrainer cannot use use_liger_kernel=True with local_entropy_coef > 0 on trl {trl.__version__}: this "
            "release computes the GRPO loss in Liger's fused kernel, which never exposes the per-token "
            "log-probabilities the local entropy term (Eq. 15) needs. Set local_entropy_coef=0 or "
            "use_liger_kernel=False, or install trl>=1.14, where Liger patches only the layer kernels."
        )
