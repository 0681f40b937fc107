"""What only runs on a CUDA GPU: the encoder in half precision on the training GPU, the local term under bf16
autocast, a bf16 DSDR step, and the gather of embeddings over NCCL.

Skipped without a GPU (marker `cuda`); benchmarks/device_check.py runs them on a GPU machine. The last test starts
this file as a one-process NCCL run under torchrun (see `nccl_worker`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

from dsdr_trl import DiversityScorer, DSDRConfig, DSDRTrainer
from dsdr_trl import functional as DF

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA GPU (benchmarks/device_check.py runs these tests on a GPU machine)",
    ),
]
REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "We add $x+1$ and get $x = 1$.", "So $2+2=4$.", "", "Since $a^2+b^2=c^2$, we have $c = 5$.",
    "The answer is $\\frac{1}{2}$.", "Subtract: $3y = 15$, $y = 5$.", "Multiply $3 \\cdot 4 = 12$.", "12",
]
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789$\\{}^+-=.,:;()",
              "we", "and", "so", "the", "answer", "is", "since", "have", "get", "frac", "cdot", "##s", "##e"]


def save_tiny_encoder(directory: Path) -> str:
    """A sentence-transformers model (2-layer BERT, random weights, mean pooling, normalisation) saved to
    `directory`, with a WordPiece tokenizer written from a fixed vocabulary: no download, no training."""
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Normalize, Pooling, Transformer

    bert = directory / "bert"
    bert.mkdir(parents=True)
    (bert / "vocab.txt").write_text("\n".join(VOCABULARY) + "\n")
    BertTokenizerFast(vocab_file=str(bert / "vocab.txt")).save_pretrained(bert)
    config = BertConfig(vocab_size=len(VOCABULARY), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(config).save_pretrained(bert)
    transformer = Transformer(str(bert), max_seq_length=32)  # short windows: long texts are cut into several
    model = SentenceTransformer(modules=[transformer, Pooling(64, "mean"), Normalize()], device="cpu")
    model.save(str(directory / "encoder"))
    return str(directory / "encoder")


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> str:
    return save_tiny_encoder(tmp_path_factory.mktemp("cuda-encoder"))


def test_encoder_runs_in_half_precision_on_the_training_gpu(encoder_dir):
    on_gpu = DiversityScorer(encoder_dir, device="cuda")
    reference = DiversityScorer(encoder_dir, device="cpu")  # the same weights in float32
    assert {(p.dtype, p.device.type) for p in on_gpu.encoder.parameters()} == {(torch.float16, "cuda")}
    assert {p.dtype for p in reference.encoder.parameters()} == {torch.float32}

    texts = [*TEXTS, " ".join(TEXTS) * 3]  # the last one spans several 32-token windows
    embeddings = on_gpu.embed(texts)
    assert embeddings.dtype == torch.float32 and embeddings.device.type == "cuda"
    expected = reference.embed(texts)
    cosine = torch.nn.functional.cosine_similarity(embeddings.cpu(), expected, dim=1)
    assert cosine.min() > 0.999, cosine  # half precision changes the embeddings only in their last digits
    scores, expected_scores = on_gpu(texts[:8], group_size=4), reference(texts[:8], group_size=4)
    torch.testing.assert_close(scores.combined, expected_scores.combined, atol=2e-3, rtol=0)


@pytest.mark.parametrize("logps_dtype", [torch.float32, torch.bfloat16])
def test_local_term_under_bf16_autocast_matches_float32(logps_dtype):
    """Log-probs from a bf16-autocast forward (float32 as accelerate hands them back, or bf16 from a bf16 model):
    the objective and its gradient are finite and agree with float32 arithmetic; padding holding -inf stays out."""
    generator = torch.Generator().manual_seed(0)
    rows, length, hidden, vocab = 8, 512, 64, 1000
    states = torch.randn(rows, length, hidden, generator=generator).cuda()
    head = torch.randn(vocab, hidden, generator=generator).div(hidden**0.5).cuda()
    tokens = torch.randint(vocab, (rows, length), generator=generator).cuda()
    mask = (torch.arange(length) < torch.randint(length // 2, length + 1, (rows, 1), generator=generator)).cuda()
    weights = torch.softmax(torch.rand(rows, generator=generator), 0).cuda()
    weights[::3] = 0.0  # incorrect rows

    def objective_and_gradient(autocast: bool):
        weight = head.clone().requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = states @ weight.T
            logps = torch.log_softmax(logits.float(), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
            if autocast:
                logps = logps.to(logps_dtype)
            logps = logps.masked_fill(~mask, float("-inf"))  # what a padded position may hold
            values = DF.local_entropy_objective(logps, logps.detach(), mask, weights)  # on-policy: pi_old = pi
        values.float().sum().backward()
        return values.float().detach(), weight.grad

    values, gradient = objective_and_gradient(autocast=True)
    expected_values, expected_gradient = objective_and_gradient(autocast=False)
    assert torch.isfinite(values).all() and torch.isfinite(gradient).all()
    assert (values[::3] == 0).all()
    tolerance = 1e-2 if logps_dtype == torch.float32 else 3e-2
    torch.testing.assert_close(values, expected_values, rtol=tolerance, atol=1e-3)
    assert (gradient - expected_gradient).norm() <= tolerance * expected_gradient.norm()


def bf16_config(tmp_path: Path, **overrides) -> DSDRConfig:
    settings = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4, max_completion_length=12,
        max_steps=2, learning_rate=1e-2, logging_steps=1, report_to="none", save_strategy="no", bf16=True,
        diversity_coef=0.1, local_entropy_coef=0.01, seed=7,
    )
    return DSDRConfig(**dict(settings, **overrides))


def test_a_bf16_dsdr_step_on_the_gpu_gives_finite_loss_and_dsdr_metrics(tmp_path, encoder_dir):
    from tests.test_trainer import alternating_reward, prompt_dataset
    from tests.tiny import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = DSDRTrainer(
        model=model, reward_funcs=alternating_reward, args=bf16_config(tmp_path), train_dataset=prompt_dataset(),
        processing_class=tokenizer, diversity_scorer=DiversityScorer(encoder_dir, device="cuda"),
    )
    assert trainer.accelerator.mixed_precision == "bf16"
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert {p.device.type for p in after.values()} == {"cuda"}
    assert all(torch.isfinite(p).all() for p in after.values())
    assert any(not torch.equal(before[name], p.detach().cpu()) for name, p in after.items())
    # The encoder stays what the scorer made it: half precision, on the training GPU, outside accelerate's wrapping.
    encoder = trainer.diversity_scorer.encoder
    assert {(p.dtype, p.device.type) for p in encoder.parameters()} == {(torch.float16, "cuda")}
    logged = {key for record in trainer.state.log_history for key in record}
    assert {"loss", "dsdr/frac_correct", "dsdr/diversity/mean", "dsdr/semantic/mean", "dsdr/scoring_time_s"} <= logged
    for record in trainer.state.log_history:
        assert all(math.isfinite(v) for k, v in record.items() if k.startswith("dsdr/") or k == "loss"), record


def test_embeddings_gather_over_nccl_like_one_process(tmp_path, encoder_dir):
    from tests.processes import free_port, run_process_group

    output = tmp_path / "nccl.json"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", str(free_port()),
        __file__, str(output), encoder_dir,
    ]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    completed = run_process_group(command, timeout=60, cwd=REPO, env=environment)  # a hang fails within a minute
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(output.read_text())
    assert result["backend"] == "nccl" and result["distributed_type"] == "MULTI_GPU"
    torch.testing.assert_close(torch.tensor(result["gathered"]), torch.tensor(result["direct"]), atol=1e-6, rtol=0)


def nccl_worker(output_path: str, encoder_dir: str) -> None:
    """Under torchrun: the trainer's accelerate state starts NCCL, and `_score_diversity` gathers its embeddings
    with `accelerator.gather` on it; the scores must be those of the scorer called directly."""
    import tempfile

    import torch.distributed as dist

    from tests.test_trainer import digit_reward, prompt_dataset
    from tests.tiny import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    scorer = DiversityScorer(encoder_dir, device=f"cuda:{os.environ['LOCAL_RANK']}")
    trainer = DSDRTrainer(
        model=model, reward_funcs=digit_reward, args=bf16_config(Path(tempfile.mkdtemp())),
        train_dataset=prompt_dataset(), processing_class=tokenizer, diversity_scorer=scorer,
    )
    trainer.model.train()
    gathered = trainer._score_diversity(TEXTS)
    direct = scorer(TEXTS, group_size=4)
    with open(output_path, "w") as handle:
        json.dump({
            "backend": dist.get_backend(),
            "distributed_type": trainer.accelerator.distributed_type.value,
            "gathered": gathered.combined.tolist(),
            "direct": direct.combined.tolist(),
        }, handle)
    dist.destroy_process_group()


if __name__ == "__main__":
    nccl_worker(sys.argv[1], sys.argv[2])
