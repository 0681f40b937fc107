"""Every script that runs with GRPOTrainer runs with DSDRTrainer: scenarios modelled on TRL's own GRPOTrainer tests
(several reward functions, reward models, environment rewards, evaluation, the aggregations), each trained with
DSDR's default coefficients and with both coefficients 0; refusals come from TRL first; the local term's scaling
through TRL's real shuffle and accumulation path."""

from __future__ import annotations

import inspect
import itertools
import math
from types import SimpleNamespace

import pytest
import torch
import trl
from datasets import Dataset
from packaging.version import Version
from transformers import Qwen2Config, Qwen2ForSequenceClassification, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from dsdr_trl import DSDRConfig, DSDRTrainer
from dsdr_trl import functional as DF
from dsdr_trl.trainer import _refuse_fused_liger_loss, completion_text
from tests.test_trainer import (
    PROMPTS,
    alternating_reward,
    digit_reward,
    length_reward,
    parameters,
    policy_logps,
    prompt_dataset,
    tiny_args,
)
from tests.tiny import build_tiny_model_and_tokenizer, build_tiny_tokenizer

pytestmark = pytest.mark.slow

# DSDR's defaults are the paper's coefficients (lambda_d = lambda_l = 0.001); "off" is DSDRTrainer as GRPOTrainer.
TERMS = {"dsdr_defaults": {}, "both_terms_off": {"diversity_coef": 0.0, "local_entropy_coef": 0.0}}


@pytest.fixture(params=list(TERMS))
def terms(request, minilm_path) -> dict:
    return {"semantic_model": minilm_path, **TERMS[request.param]}


def scored(terms: dict) -> bool:
    return terms.get("diversity_coef", 0.001) > 0


def sometimes_none_reward(completions, **kwargs) -> list[float | None]:
    """A reward that applies to some rows only (None elsewhere), as TRL's tests have."""
    return [None if len(completion_text(c)) % 2 else 0.5 for c in completions]


async def async_digit_reward(completions, **kwargs) -> list[float]:
    return digit_reward(completions)


def train(
    tmp_path, terms: dict, reward_funcs, *, model=None, tokenizer=None, dataset=None, trainer_kwargs=None, **config
):
    built_model, own_tokenizer = build_tiny_model_and_tokenizer()
    model = model or built_model
    args = tiny_args(DSDRConfig, tmp_path, **{**terms, **config})
    trainer = DSDRTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset if dataset is not None else prompt_dataset(),
        processing_class=tokenizer or own_tokenizer,
        **(trainer_kwargs or {}),
    )
    before = parameters(trainer.model)
    trainer.train()
    assert any(not torch.equal(before[k], p) for k, p in parameters(trainer.model).items()), "the policy did not train"
    return trainer


def assert_dsdr_metrics(trainer, terms: dict, prefix: str = "") -> None:
    """dsdr/ metrics are logged, finite, and include the diversity scores exactly when the global term is on."""
    records = [r for r in trainer.state.log_history if f"{prefix}dsdr/frac_correct" in r]
    assert records, f"no {prefix}dsdr/ metrics were logged"
    keys = {key for record in records for key in record}
    assert (f"{prefix}dsdr/semantic/mean" in keys) == scored(terms)
    assert (f"{prefix}dsdr/diversity/mean" in keys) == scored(terms)
    for record in records:
        assert all(math.isfinite(v) for k, v in record.items() if k.startswith(f"{prefix}dsdr/"))


def assert_verifier_is(trainer, name: str) -> None:
    """With a binary verifier that never returns None, the fraction of correct rows is the verifier's mean reward."""
    assert [trainer.reward_func_names[i] for i in trainer.correctness_reward_indices] == [name]
    for record in trainer.state.log_history:
        if "dsdr/frac_correct" in record:
            assert record["dsdr/frac_correct"] == pytest.approx(record[f"rewards/{name}/mean"])


# -- the constructor ------------------------------------------------------------------------------------------------


def test_constructor_takes_grpo_trainers_parameters_in_order_with_the_same_defaults():
    ours = inspect.signature(DSDRTrainer.__init__).parameters
    theirs = inspect.signature(GRPOTrainer.__init__).parameters
    shared = [(p.name, p.kind, p.default) for p in ours.values() if p.name != "diversity_scorer"]
    assert shared == [(p.name, p.kind, p.default) for p in theirs.values()]
    assert ours["diversity_scorer"].kind is inspect.Parameter.KEYWORD_ONLY


# -- several reward functions, reward models ---------------------------------------------------------------------


def test_several_weighted_reward_functions_some_returning_none(tmp_path, terms, caplog):
    with caplog.at_level("WARNING", logger="dsdr_trl.trainer"):
        trainer = train(
            tmp_path, terms, [digit_reward, sometimes_none_reward, length_reward], reward_weights=[1.0, 0.5, 0.2]
        )
    assert sum("so the first, 'digit_reward', decides" in r.getMessage() for r in caplog.records) == 1
    assert_verifier_is(trainer, "digit_reward")
    assert_dsdr_metrics(trainer, terms)
    assert any("rewards/sometimes_none_reward/mean" in r for r in trainer.state.log_history)


def test_sync_and_async_reward_functions(tmp_path, terms):
    trainer = train(tmp_path, terms, [async_digit_reward, length_reward])
    assert_verifier_is(trainer, "async_digit_reward")
    assert_dsdr_metrics(trainer, terms)


def test_a_reward_model_with_its_own_processing_class(tmp_path, terms):
    reward_tokenizer = build_tiny_tokenizer()
    config = Qwen2Config(
        vocab_size=len(reward_tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, num_labels=1, pad_token_id=reward_tokenizer.pad_token_id,
    )
    torch.manual_seed(3)
    reward_model = Qwen2ForSequenceClassification(config)
    trainer = train(
        tmp_path, terms, [digit_reward, reward_model],
        trainer_kwargs={"reward_processing_classes": [None, reward_tokenizer]},
    )
    assert_verifier_is(trainer, "digit_reward")
    assert_dsdr_metrics(trainer, terms)


# -- environment rewards ---------------------------------------------------------------------------------------------


class ParityEnvironment:
    """An environment that owns the reward (TRL's `environment_factory` with `get_reward`): every other rollout
    succeeds, so groups hold both outcomes."""

    _rollouts = itertools.count()

    def reset(self, **kwargs) -> None:
        self._solved = next(self._rollouts) % 2 == 0

    def get_reward(self) -> float:
        return float(self._solved)


@pytest.fixture
def tool_calling_tokenizer():
    # Environments need a chat template that can render tool calls: Qwen3's, which TRL ships.
    from trl.chat_template_utils import qwen3_chat_template

    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = qwen3_chat_template
    return tokenizer


@pytest.mark.parametrize("reward_funcs", [None, [digit_reward]], ids=["environment_only", "environment_and_function"])
def test_the_environment_owns_the_reward(tmp_path, terms, tool_calling_tokenizer, reward_funcs, monkeypatch):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    trainer = train(
        tmp_path, terms, reward_funcs, tokenizer=tool_calling_tokenizer, dataset=prompt_dataset(conversational=True),
        trainer_kwargs={"environment_factory": ParityEnvironment},
    )
    assert trainer.reward_func_names[-1] == "ParityEnvironment"
    # TRL appends the environment's reward after the functions; it is the verifier wherever it stands.
    assert_verifier_is(trainer, "ParityEnvironment")
    assert_dsdr_metrics(trainer, terms)


# -- evaluation ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_generations_eval", [1, 2])
def test_evaluation_with_num_generations_eval(tmp_path, terms, num_generations_eval):
    trainer = train(
        tmp_path, terms, alternating_reward, num_generations_eval=num_generations_eval,
        per_device_eval_batch_size=4, eval_strategy="steps", eval_steps=1,
        trainer_kwargs={"eval_dataset": Dataset.from_dict({"prompt": PROMPTS})},
    )
    evaluated = [r for r in trainer.state.log_history if "eval_dsdr/frac_correct" in r]
    assert len(evaluated) == 2
    # A group of one completion has no rest of the group to differ from: it is evaluated without diversity scoring.
    assert_dsdr_metrics(trainer, {**terms, "diversity_coef": 0.0} if num_generations_eval == 1 else terms, "eval_")


# -- multi_objective_aggregation ---------------------------------------------------------------------------------------


def test_normalize_then_sum_trains(tmp_path, terms):
    trainer = train(
        tmp_path, terms, [digit_reward, sometimes_none_reward, length_reward],
        multi_objective_aggregation="normalize_then_sum", reward_weights=[1.0, 0.5, 0.2],
    )
    assert_verifier_is(trainer, "digit_reward")
    assert_dsdr_metrics(trainer, terms)


@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_both_terms_off_with_trl_epsilon_is_grpo_for_several_rewards(tmp_path, aggregation):
    final = {}
    for name, trainer_class, config_class, extra in [
        ("grpo", GRPOTrainer, GRPOConfig, {}),
        ("dsdr", DSDRTrainer, DSDRConfig, dict(diversity_coef=0.0, local_entropy_coef=0.0, advantage_epsilon=1e-4)),
    ]:
        model, tokenizer = build_tiny_model_and_tokenizer()
        args = tiny_args(
            config_class, tmp_path / name, max_steps=3, multi_objective_aggregation=aggregation,
            reward_weights=[1.0, 0.5, 0.2], **extra,
        )
        trainer = trainer_class(
            model=model, reward_funcs=[digit_reward, sometimes_none_reward, length_reward], args=args,
            train_dataset=prompt_dataset(), processing_class=tokenizer,
        )
        trainer.train()
        final[name] = parameters(trainer.model)
    for key, value in final["grpo"].items():
        assert torch.equal(value, final["dsdr"][key]), key


# -- GRPOConfig options with both DSDR terms on --------------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        dict(num_iterations=2),  # pi_old log-probs computed at generation: rho != 1 after the first update
        dict(beta=0.04),  # KL to a reference model
        dict(top_entropy_quantile=0.5),
        dict(entropy_coef=0.01),  # TRL's own entropy bonus beside the local term
        dict(scale_rewards="batch"),
        dict(scale_rewards="none"),
        dict(gradient_checkpointing=True),
        dict(steps_per_generation=4, per_device_train_batch_size=4),
    ],
    ids=lambda option: ",".join(f"{k}={v}" for k, v in option.items()),
)
def test_grpo_config_options_train_with_both_terms_on(tmp_path, minilm_path, tiny_model_dir, option):
    terms = {"semantic_model": minilm_path}
    # The reference model of the KL term is loaded from the policy's path.
    model = tiny_model_dir if option.get("beta") else None
    trainer = train(tmp_path, terms, alternating_reward, model=model, **option)
    assert_dsdr_metrics(trainer, terms)


# -- log_diversity: monitoring without changing the objective --------------------------------------------------------


def test_log_diversity_with_both_terms_off_is_grpo_and_logs_diversity(tmp_path, minilm_path):
    final, logs = {}, {}
    for name, trainer_class, config_class, extra in [
        ("grpo", GRPOTrainer, GRPOConfig, {}),
        ("dsdr", DSDRTrainer, DSDRConfig, dict(
            diversity_coef=0.0, local_entropy_coef=0.0, advantage_epsilon=1e-4, log_diversity=True,
            semantic_model=minilm_path,
        )),
    ]:
        model, tokenizer = build_tiny_model_and_tokenizer()
        args = tiny_args(config_class, tmp_path / name, max_steps=3, **extra)
        trainer = trainer_class(
            model=model, reward_funcs=digit_reward, args=args, train_dataset=prompt_dataset(), processing_class=tokenizer
        )
        trainer.train()
        final[name], logs[name] = parameters(trainer.model), trainer.state.log_history
    for key, value in final["grpo"].items():
        assert torch.equal(value, final["dsdr"][key]), key
    for record in logs["dsdr"][:-1]:  # the last record is the training summary
        assert {"dsdr/semantic/mean", "dsdr/within_group_cosine", "dsdr/frac_all_correct_groups"} <= record.keys()
        assert "dsdr/bonus/correct_mean" not in record


def test_log_diversity_leaves_the_local_term_and_its_coupling_unchanged(tmp_path, minilm_path):
    """With diversity_coef=0 the coupling is uniform (w/o GD); scores computed for logging must not change that."""
    final = {}
    for log_diversity in (False, True):
        trainer = train(
            tmp_path / str(log_diversity), {"semantic_model": minilm_path}, alternating_reward, diversity_coef=0.0,
            local_entropy_coef=0.01, log_diversity=log_diversity,
        )
        final[log_diversity] = parameters(trainer.model)
        assert any("dsdr/local_entropy/correct_mean" in r for r in trainer.state.log_history)
    for key, value in final[False].items():
        assert torch.equal(value, final[True][key]), key


# -- refusals: TRL's own checks come first; DSDR refuses only what cannot work -------------------------------------


def construction_outcome(trainer_class, config_class, tmp_path, reward_funcs=digit_reward, peft_config=None, **config):
    model, tokenizer = build_tiny_model_and_tokenizer()
    try:
        args = tiny_args(config_class, tmp_path, **config)
        trainer_class(
            model=model, reward_funcs=reward_funcs, args=args, train_dataset=prompt_dataset(),
            processing_class=tokenizer, peft_config=peft_config,
        )
    except Exception as error:  # noqa: BLE001 - the point is to compare whatever each raises
        return type(error), str(error)
    return None


@pytest.mark.parametrize(
    "case",
    ["no_reward_source", "liger", "liger_with_lm_head_adapter", "batch_not_divisible_by_group"],
)
def test_a_setting_grpo_trainer_refuses_is_refused_with_trls_own_message(tmp_path, minilm_path, case):
    peft = pytest.importorskip("peft")
    settings = {
        "no_reward_source": dict(reward_funcs=None),
        "liger": dict(use_liger_kernel=True),
        "liger_with_lm_head_adapter": dict(
            use_liger_kernel=True,
            peft_config=peft.LoraConfig(r=4, target_modules=["q_proj", "lm_head"], task_type="CAUSAL_LM"),
        ),
        "batch_not_divisible_by_group": dict(per_device_train_batch_size=6),
    }[case]
    grpo = construction_outcome(GRPOTrainer, GRPOConfig, tmp_path / "grpo", **settings)
    # DSDR's defaults (both terms on) must not put a refusal of its own before TRL's.
    dsdr = construction_outcome(DSDRTrainer, DSDRConfig, tmp_path / "dsdr", semantic_model=minilm_path, **settings)
    if case != "liger":  # whether plain Liger constructs depends on the installed TRL and liger-kernel
        assert grpo is not None, f"GRPOTrainer accepted {case}"
    assert dsdr == grpo


def test_liger_is_refused_only_where_trl_fuses_the_loss_and_the_local_term_is_on():
    # trl < 1.14 computes the whole GRPO loss in Liger's fused kernel (GRPOTrainer.compute_liger_loss); from 1.14 on,
    # use_liger_kernel only patches layer kernels and the per-token log-probabilities are there as usual.
    assert hasattr(GRPOTrainer, "compute_liger_loss") == (Version(trl.__version__) < Version("1.14"))
    fused = SimpleNamespace(args=SimpleNamespace(local_entropy_coef=0.001), liger_loss=object())
    with pytest.raises(ValueError, match=r"fused kernel.*Set local_entropy_coef=0 or use_liger_kernel=False"):
        _refuse_fused_liger_loss(fused)
    _refuse_fused_liger_loss(SimpleNamespace(args=SimpleNamespace(local_entropy_coef=0.0), liger_loss=object()))
    _refuse_fused_liger_loss(SimpleNamespace(args=SimpleNamespace(local_entropy_coef=0.001), liger_loss=None))


# -- mask_truncated_completions: coupling over the rows that count -------------------------------------------------


def test_rows_masked_out_of_the_loss_get_no_coupling_weight(tmp_path, minilm_path):
    model, tokenizer = build_tiny_model_and_tokenizer()
    args = tiny_args(
        DSDRConfig, tmp_path, semantic_model=minilm_path, max_completion_length=4, mask_truncated_completions=True,
        per_device_train_batch_size=16, diversity_coef=0.1,
        # Favour the end-of-turn token so that some completions end within 4 tokens and the others are truncated.
        generation_kwargs={"sequence_bias": [[[tokenizer.eos_token_id], 5.0]]},
    )
    trainer = DSDRTrainer(
        model=model, reward_funcs=lambda completions, **kw: [1.0] * len(completions), args=args,
        train_dataset=Dataset.from_dict({"prompt": PROMPTS}), processing_class=tokenizer,
    )
    trainer.model.train()
    inputs = next(iter(trainer.get_train_dataloader()))
    # Which completions finish is sampled (each with probability ~0.7, measured): a batch of 16 lacks one kind about
    # once in 250 draws, on any CPU's float path. So it draws again until it has both (a miss in three: ~1e-7).
    for _ in range(3):
        batch = trainer._generate_and_score_completions(inputs)
        in_loss = batch["completion_mask"].sum(dim=1) > 0
        if 0 < in_loss.sum() < in_loss.numel():
            break
    else:
        pytest.fail("three generation batches without both truncated and finished completions")
    weights = batch["dsdr_coupling_weights"]
    assert torch.all(weights[~in_loss] == 0) and torch.all(weights[in_loss] > 0)
    for group_weights, group_in_loss in zip(weights.view(-1, 4), in_loss.view(-1, 4)):
        assert group_weights.sum().item() == pytest.approx(1.0 if group_in_loss.any() else 0.0)


def test_rows_whose_tokens_are_all_tool_output_get_no_coupling_weight(tmp_path, monkeypatch):
    """The rows that take part in the loss are those with a token the policy loss uses (completion_mask * tool_mask):
    a row whose tokens are all tool output gets no weight, and its group's weight goes to the others."""
    generate_and_score = GRPOTrainer._generate_and_score_completions

    def with_tool_output_rows(self, inputs):
        output = generate_and_score(self, inputs)
        output["tool_mask"] = torch.ones_like(output["completion_mask"])
        output["tool_mask"][[0, 5]] = 0
        return output

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", with_tool_output_rows)
    model, tokenizer = build_tiny_model_and_tokenizer()
    trainer = DSDRTrainer(
        model=model, reward_funcs=lambda completions, **kw: [1.0] * len(completions),
        args=tiny_args(DSDRConfig, tmp_path, diversity_coef=0.0), train_dataset=prompt_dataset(),
        processing_class=tokenizer,
    )
    trainer.model.train()
    batch = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    assert torch.all(batch["completion_mask"].sum(dim=1) > 0)  # masked by tool_mask alone
    third = pytest.approx(1 / 3)
    assert batch["dsdr_coupling_weights"].tolist() == [0.0, third, third, third, third, 0.0, third, third]


# -- the local term's scaling through TRL's shuffle and gradient accumulation --------------------------------------


class GradientsAtEachOptimizerStep(TrainerCallback):
    def __init__(self):
        self.gradients: list[torch.Tensor] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.gradients.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone())


@pytest.mark.parametrize(
    "steps_per_generation, accumulation, optimizer_steps",
    [(2, 2, 1), (4, 2, 2), (1, 2, 1)],
    ids=["equal", "more_steps_per_generation", "fewer_steps_per_generation"],
)
def test_local_term_gradient_through_trls_shuffle_and_accumulation(
    tmp_path, steps_per_generation, accumulation, optimizer_steps
):
    """All completions correct and no bonus: advantages are 0, so the gradient is -lambda_l grad J_local alone.

    Learning rate 0 keeps the parameters fixed, so every step's gradient can be compared with the one computed
    directly from the generation batches TRL produced (J_local = mean over their groups, Eq. 15).
    """
    model, tokenizer = build_tiny_model_and_tokenizer()
    with pytest.warns(UserWarning, match="collapse"):
        args = tiny_args(
            DSDRConfig, tmp_path, diversity_coef=0.0, local_entropy_coef=0.5, learning_rate=0.0, max_grad_norm=0.0,
            per_device_train_batch_size=4, gradient_accumulation_steps=accumulation,
            steps_per_generation=steps_per_generation, max_steps=optimizer_steps,
        )
    recorder = GradientsAtEachOptimizerStep()
    trainer = DSDRTrainer(
        model=model, reward_funcs=lambda completions, **kw: [1.0] * len(completions), args=args,
        train_dataset=prompt_dataset(), processing_class=tokenizer, callbacks=[recorder],
    )
    generation_batches = []
    generate = trainer._generate_and_score_completions

    def keep_generation_batch(inputs):
        output = generate(inputs)
        generation_batches.append({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in output.items()})
        return output

    trainer._generate_and_score_completions = keep_generation_batch
    trainer.train()
    assert len(recorder.gradients) == optimizer_steps

    def expected_gradient(batch) -> torch.Tensor:
        trainer.model.zero_grad()
        logps = policy_logps(trainer, batch)
        objective = DF.local_entropy_objective(logps, logps.detach(), batch["completion_mask"], batch["dsdr_coupling_weights"])
        (-0.5 * objective.sum() / batch["dsdr_num_groups"][0]).backward()
        return torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]).clone()

    expected = torch.stack([expected_gradient(batch) for batch in generation_batches]).mean(0)
    assert expected.abs().max() > 1e-4
    observed = torch.stack(recorder.gradients).mean(0)  # averaged over the optimizer steps of the generation batches
    torch.testing.assert_close(observed, expected, atol=1e-6, rtol=1e-4)
    if steps_per_generation > accumulation:
        # Each optimizer step sees a shuffled share of the generation batch: right in expectation, not exactly.
        assert all((gradient - expected).abs().max() > 1e-5 for gradient in recorder.gradients)
