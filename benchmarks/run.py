"""DSDR's cost, measured side by side with GRPO, in one process.

    python benchmarks/run.py            # full run (several minutes on 2 CPU cores)
    python benchmarks/run.py --quick    # under 3 minutes on 2 CPU cores
    python benchmarks/run.py --smoke    # seconds: every code path, tiny sizes (the test suite runs this)

Prints a table, writes results.json (default: benchmarks/results.json; --output elsewhere) and prints, as its last
line, one JSON object with the headline figures. Every figure is a median over repeated, alternated runs. See
docs/performance.md for what each measurement is and how to read it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import common  # noqa: I001  (first: puts the repo on sys.path, sets HF_HUB_OFFLINE)

# Before any allocation: glibc then maps every block of 64 KiB or more on its own and unmaps it when freed, so the
# resident set follows torch's CPU tensors and the peak-memory figure sees them (see common.cpu_peak_bytes).
MALLOC_FIXED = common.fix_malloc_for_rss()

import torch  # noqa: E402

HEADLINE_KEYS = (
    "scorer_vs_encode_ratio",
    "formula_completions_per_s",
    "local_term_time_ratio",
    "local_term_peak_mem_ratio",
    "policy_forwards_per_microbatch",
    "scorer_scaling_4096_vs_256",
    "step_time_ratio_cpu",
)
TARGETS = {
    "scorer_vs_encode_ratio": ("<=", 1.10),
    "formula_completions_per_s": (">=", 30000),
    "local_term_time_ratio": ("<=", 1.03),
    "local_term_peak_mem_ratio": ("<=", 1.02),
    "policy_forwards_per_microbatch": ("==", 1),
    "scorer_scaling_4096_vs_256": ("<=", 1.2),
    "step_time_ratio_cpu": (None, None),
}


# Sizes per mode. scorer_sets: (label, number of completions, tokens per completion or None for a plain solution).
MODES = {
    "smoke": dict(
        real_encoder=False,
        scorer_sets=[("solutions", 8, None), ("512", 8, 512)],
        scorer_repeats=1,
        formula_completions=256,
        formula_repeats=1,
        local=dict(policy=common.small_policy(hidden=32, layers=1, vocab=1024), rows=8, prompt=16, completion=32),
        local_repeats=2,
        memory_repeats=1,
        scaling=(16, 64),
        scaling_rounds=1,
        step=dict(rows=8, completion=8, rounds=1, steps=1),
    ),
    "quick": dict(
        real_encoder=True,
        scorer_sets=[("solutions", 8, None), ("2K", 8, 2048)],
        scorer_repeats=3,
        formula_completions=4096,
        formula_repeats=5,
        local=dict(policy=common.small_policy(hidden=256, layers=4, vocab=8192), rows=4, prompt=64, completion=256),
        local_repeats=8,
        memory_repeats=2,
        scaling=(256, 4096),
        scaling_rounds=2,
        step=dict(rows=16, completion=32, rounds=1, steps=2),
    ),
    "full": dict(
        real_encoder=True,
        scorer_sets=[("solutions", 16, None), ("2K", 8, 2048), ("4K", 8, 4096), ("8K", 8, 8192)],
        scorer_repeats=3,
        formula_completions=16384,
        formula_repeats=7,
        local=dict(policy=common.small_policy(hidden=256, layers=4, vocab=8192), rows=8, prompt=64, completion=512),
        local_repeats=30,
        memory_repeats=5,
        scaling=(256, 4096),
        scaling_rounds=3,
        step=dict(rows=16, completion=96, rounds=3, steps=3),
    ),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- 1. the scorer against a bare encoder forward ---------------------------------------------------------------------


def bench_scorer_vs_encode(cfg, rows, encoder, device) -> dict:
    """DiversityScorer on N completions (tokenise, window, pad, encode, formulas, Eq. 4-9) against the encoder's
    forward alone over the same windows, in the same length-sorted batches, already padded and on the device."""
    from dsdr_trl import DiversityScorer

    scorer = DiversityScorer(encoder, device=device)
    texts, sets = [], {}
    for index, (label, count, tokens) in enumerate(cfg["scorer_sets"]):
        part = common.solutions(rows, count) if tokens is None else common.long_responses(
            rows, scorer.tokenizer, tokens, count, offset=97 * index
        )
        sets[label] = {"completions": count, "tokens_per_completion": tokens or "natural"}
        texts += part
    windows, _ = scorer.windows(texts)
    batches = _padded_batches(scorer, windows)

    def bare_encoder():
        with torch.inference_mode():
            for features in batches:
                scorer.encoder(features)

    scorer(texts[: common.GROUP_SIZE], common.GROUP_SIZE)  # warm-up on one group: the encoder's first call
    times = common.alternate(
        {"scorer": lambda: scorer(texts, common.GROUP_SIZE), "encoder": bare_encoder},
        cfg["scorer_repeats"],
        device,
        warmup=0,
    )
    scorer_s, encoder_s = common.median(times["scorer"]), common.median(times["encoder"])
    # Where the scorer's time goes besides the encoder (cheap parts, timed separately).
    parts = {}
    parts["tokenise_and_window_s"] = common.timed(lambda: scorer.windows(texts), device)
    parts["extract_formulas_s"] = common.timed(lambda: scorer.extract(texts), device)
    embeddings = torch.randn(len(texts), scorer.encoder.get_embedding_dimension(), device=device)
    formula_sets = scorer.extract(texts)
    parts["score_eq4_9_s"] = common.timed(lambda: scorer.score(embeddings, formula_sets, common.GROUP_SIZE), device)
    return {
        "completions": len(texts),
        "windows": len(windows),
        "window_tokens": sum(len(window) for window in windows),
        "batch_size": scorer.batch_size,
        "sets": sets,
        "scorer_s": scorer_s,
        "encoder_s": encoder_s,
        "ratio": common.paired_ratio(times["scorer"], times["encoder"]),
        "parts": parts,
        "runs": times,
    }


def _padded_batches(scorer, windows) -> list[dict]:
    """The encoder inputs the scorer would build: sorted by length, `batch_size` windows, padded, on the device."""
    from torch.nn.utils.rnn import pad_sequence

    ordered = sorted(windows, key=len)
    batches = []
    for start in range(0, len(ordered), scorer.batch_size):
        rows = [torch.tensor(window) for window in ordered[start : start + scorer.batch_size]]
        input_ids = pad_sequence(rows, batch_first=True, padding_value=scorer.tokenizer.pad_token_id)
        attention_mask = pad_sequence([torch.ones_like(row) for row in rows], batch_first=True)
        features = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in scorer.tokenizer.model_input_names:
            features["token_type_ids"] = torch.zeros_like(input_ids)
        batches.append({key: value.to(scorer.device) for key, value in features.items()})
    return batches


# -- 2. formula extraction and uniqueness -----------------------------------------------------------------------------


def bench_formulas(cfg, rows) -> dict:
    """extract_formulas + Eq. 7-8 on MATH500 reference solutions, one thread, completions per second."""
    from dsdr_trl import functional as DF
    from dsdr_trl.formulas import extract_formulas

    texts = common.solutions(rows, cfg["formula_completions"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        def extract_and_score():
            sets = [frozenset(extract_formulas(text)) for text in texts]
            DF.formula_diversity(sets, common.GROUP_SIZE)

        extract_and_score()  # warm-up: regex compilation, caches
        runs = [common.timed(extract_and_score) for _ in range(cfg["formula_repeats"])]
        sets = [frozenset(extract_formulas(text)) for text in texts]
        uniqueness_s = common.median(
            [common.timed(lambda: DF.formula_diversity(sets, common.GROUP_SIZE)) for _ in range(cfg["formula_repeats"])]
        )
    finally:
        torch.set_num_threads(threads)
    seconds = common.median(runs)
    return {
        "completions": len(texts),
        "mean_chars": sum(map(len, texts)) / len(texts),
        "formulas_per_completion": sum(map(len, sets)) / len(sets),
        "seconds": seconds,
        "uniqueness_seconds": uniqueness_s,
        "completions_per_s": len(texts) / seconds,
        "runs": runs,
    }


# -- 3. the local term in the loss ------------------------------------------------------------------------------------


def _local_setup(cfg, rows, device):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    import steps
    from tests.tiny import build_tiny_tokenizer

    shape = cfg["local"]
    bf16 = shape.get("bf16", False)
    tokenizer = build_tiny_tokenizer()
    config = Qwen2Config(
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **shape["policy"],
    )
    torch.manual_seed(0)
    with torch.device(device):  # random weights made where they are used: a 1.5B policy builds in seconds on a GPU
        model = Qwen2ForCausalLM(config)
    trainers = steps.build_trainers(
        model,
        tokenizer,
        steps.prompt_dataset(rows, 8),
        device=device,
        local_entropy_coef=0.001,
        per_device_train_batch_size=common.GROUP_SIZE,  # the config's; the timed micro-batch has shape["rows"]
        num_generations=common.GROUP_SIZE,
        max_completion_length=shape["completion"],
        bf16=bf16,
    )
    if bf16:  # as Trainer.train() prepares it: the forward runs under bf16 autocast, its outputs cast back to float32
        model = trainers["dsdr"].accelerator.prepare_model(model)
    for trainer in trainers.values():
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); the loss scaling reads it
    return model, trainers, _micro_batch(shape, tokenizer, device)


def _micro_batch(shape, tokenizer, device) -> dict:
    """One micro-batch as GRPOTrainer's `_prepare_inputs` hands it to the loss, DSDR's keys included."""
    generator = torch.Generator().manual_seed(0)
    rows, prompt, completion = shape["rows"], shape["prompt"], shape["completion"]
    vocab = shape["policy"]["vocab_size"]
    prompt_ids = torch.randint(3, vocab, (rows, prompt), generator=generator)
    prompt_mask = torch.ones(rows, prompt, dtype=torch.long)
    prompt_mask[: rows // 2, : prompt // 4] = 0  # left padding on some rows
    completion_ids = torch.randint(3, vocab, (rows, completion), generator=generator)
    lengths = torch.randint(completion // 2, completion + 1, (rows,), generator=generator)
    completion_mask = (torch.arange(completion).unsqueeze(0) < lengths.unsqueeze(1)).long()
    completion_ids = completion_ids.masked_fill(completion_mask == 0, tokenizer.pad_token_id)
    correct = torch.arange(rows) % 3 != 0
    weights = torch.softmax(torch.rand(rows, generator=generator).masked_fill(~correct, float("-inf")), 0)
    batch = {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.randn(rows, generator=generator),
        "dsdr_coupling_weights": weights,
        "dsdr_num_groups": torch.full((rows,), max(rows // common.GROUP_SIZE, 1)),
        "num_items_in_batch": completion_mask.sum(),
    }
    return {key: value.to(device) for key, value in batch.items()}


def bench_local_term(cfg, rows, device) -> dict:
    """`_compute_loss` + backward on one micro-batch: DSDRTrainer (local_entropy_coef=0.001) against TRL's
    GRPOTrainer, the same model and batch, alternately."""
    import steps

    model, trainers, batch = _local_setup(cfg, rows, device)

    def loss_step(name):
        def run():
            model.zero_grad(set_to_none=True)
            trainers[name]._compute_loss(model, batch).backward()

        return run

    forwards = {name: steps.count_forwards(model, loss_step(name)) for name in trainers}
    times = common.alternate({name: loss_step(name) for name in trainers}, cfg["local_repeats"], device, warmup=2)

    peak = common.cuda_peak_bytes if torch.device(device).type == "cuda" else common.cpu_peak_bytes
    memory_method = "torch.cuda.max_memory_allocated" if peak is common.cuda_peak_bytes else "VmHWM - VmRSS"
    if peak is common.cpu_peak_bytes and not MALLOC_FIXED:
        memory_method += " (mallopt failed: glibc may cache freed blocks)"
    memory = {name: [] for name in trainers}
    for round_ in range(cfg["memory_repeats"]):
        for name in list(trainers) if round_ % 2 == 0 else list(trainers)[::-1]:
            model.zero_grad(set_to_none=True)  # outside the measurement: both start from no gradients
            memory[name].append(peak(lambda: trainers[name]._compute_loss(model, batch).backward()))
    model.zero_grad(set_to_none=True)
    shape = cfg["local"]
    policy = shape["policy"]
    grpo_s, dsdr_s = common.median(times["grpo"]), common.median(times["dsdr"])
    grpo_b, dsdr_b = common.median(memory["grpo"]), common.median(memory["dsdr"])
    return {
        "model": f"Qwen2 hidden {policy['hidden_size']}, {policy['num_hidden_layers']} layers, vocab "
        f"{policy['vocab_size']}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters",
        "micro_batch": f"{shape['rows']} rows, prompt {shape['prompt']}, completion {shape['completion']}",
        "grpo_s": grpo_s,
        "dsdr_s": dsdr_s,
        "time_ratio": common.paired_ratio(times["dsdr"], times["grpo"]),
        "grpo_peak_bytes": grpo_b,
        "dsdr_peak_bytes": dsdr_b,
        "peak_mem_ratio": common.paired_ratio(memory["dsdr"], memory["grpo"])
        if min(memory["grpo"]) > 0
        else 1.0 if not any(memory["dsdr"]) else float("inf"),  # both 0: too small to see (smoke sizes)
        "memory_method": memory_method,
        "policy_forwards": forwards,
        "runs": times,
        "memory_runs": memory,
    }


# -- 4. scorer scaling ------------------------------------------------------------------------------------------------


def bench_scaling(cfg, rows, device) -> dict:
    """Time per completion of the whole scorer at N = 4096 against N = 256 (MATH500 solutions, groups of 8).

    The encoder is a 1-layer, hidden-32 BERT with MiniLM's tokenizer and windows: every per-window encoder cost is
    linear in N by construction, so a small encoder makes whatever else grows with N (tokenisation, windowing,
    padding, index bookkeeping, formulas, Eq. 4-9) the visible part of the time.
    """
    from dsdr_trl import DiversityScorer

    scorer = DiversityScorer(common.random_encoder(common.TINY_ENCODER_SHAPE, device=device), device=device)
    small, large = cfg["scaling"]
    texts = {count: common.solutions(rows, count) for count in (small, large)}
    scorer(texts[small], common.GROUP_SIZE)  # warm-up
    runs = {small: [], large: []}
    ratios = []
    for _ in range(cfg["scaling_rounds"]):  # a large run between two small ones: the pair shares the machine's load
        before = common.timed(lambda: scorer(texts[small], common.GROUP_SIZE), device)
        runs[large].append(common.timed(lambda: scorer(texts[large], common.GROUP_SIZE), device))
        after = common.timed(lambda: scorer(texts[small], common.GROUP_SIZE), device)
        runs[small] += [before, after]
        ratios.append((runs[large][-1] / large) / (min(before, after) / small))
    per_completion = {count: common.median(values) / count for count, values in runs.items()}
    return {
        "encoder": "BERT 1 layer, hidden 32 (MiniLM tokenizer, 256-token windows)",
        "seconds_per_completion": {str(count): value for count, value in per_completion.items()},
        "ratio": common.median(ratios),
        "sizes": [small, large],
        "runs": {str(count): values for count, values in runs.items()},
    }


# -- 5. a full training step on the CPU tiny setup --------------------------------------------------------------------


def bench_step(cfg, rows, encoder, device) -> dict:
    """Full training steps (generate, reward, DSDR scoring, loss, backward, AdamW) of DSDRTrainer (both scales on)
    against TRL's GRPOTrainer on the tiny test policy, alternately."""
    import steps
    from dsdr_trl import DiversityScorer
    from tests.tiny import build_tiny_model_and_tokenizer

    shape = cfg["step"]
    model, tokenizer = build_tiny_model_and_tokenizer()
    trainers = steps.build_trainers(
        model.to(device),
        tokenizer,
        steps.prompt_dataset(rows, 64),
        device=device,
        local_entropy_coef=0.001,
        diversity_scorer=DiversityScorer(encoder, device=device),
        per_device_train_batch_size=shape["rows"],
        num_generations=common.GROUP_SIZE,
        max_completion_length=shape["completion"],
    )
    times, scoring = steps.alternate_training(trainers, shape["rounds"], shape["steps"], device)
    grpo_s, dsdr_s = common.median(times["grpo"]), common.median(times["dsdr"])
    scoring_s = common.median(scoring) if scoring else 0.0
    return {
        "setup": f"tests/tiny.py policy, {shape['rows']} completions of <= {shape['completion']} tokens per step",
        "grpo_s": grpo_s,
        "dsdr_s": dsdr_s,
        "ratio": common.paired_ratio(times["dsdr"], times["grpo"]),
        "scorer_s": scoring_s,
        "scorer_share": scoring_s / dsdr_s,
        "runs": times,
        "scorer_runs": scoring,
    }


# -- driver ---------------------------------------------------------------------------------------------------------


def _table(results, headline) -> str:
    s, f, l, sc, st = (results[k] for k in ("scorer_vs_encode", "formulas", "local_term", "scaling", "step_cpu"))
    ms = lambda seconds: f"{seconds * 1e3:.1f} ms"  # noqa: E731
    mib = lambda n: f"{n / 2**20:.1f} MiB"  # noqa: E731
    lines = [
        ("scorer_vs_encode_ratio", f"{ms(s['scorer_s'])} / {ms(s['encoder_s'])} bare encoder "
         f"({s['completions']} completions, {s['windows']} windows)"),
        ("formula_completions_per_s", f"{f['completions']} solutions in {ms(f['seconds'])}, 1 thread"),
        ("local_term_time_ratio", f"{ms(l['dsdr_s'])} / {ms(l['grpo_s'])} GRPO (loss + backward)"),
        ("local_term_peak_mem_ratio", f"{mib(l['dsdr_peak_bytes'])} / {mib(l['grpo_peak_bytes'])} GRPO"),
        ("policy_forwards_per_microbatch", f"GRPO: {l['policy_forwards']['grpo']}"),
        ("scorer_scaling_4096_vs_256", "per completion: " + ", ".join(
            f"N={n}: {v * 1e3:.3f} ms" for n, v in sc["seconds_per_completion"].items())),
        ("step_time_ratio_cpu", f"{ms(st['dsdr_s'])} / {ms(st['grpo_s'])} GRPO; scorer {ms(st['scorer_s'])} = "
         f"{100 * st['scorer_share']:.0f}% of the DSDR step"),
    ]
    width = max(len(key) for key, _ in lines)
    out = [f"{'measurement':<{width}}  {'value':>10}  {'target':<12}  detail", "-" * (width + 80)]
    for key, detail in lines:
        value = headline[key]
        shown = f"{value:,.0f}" if key == "formula_completions_per_s" else (
            f"{value}" if isinstance(value, int) else f"{value:.3f}")
        out.append(f"{key:<{width}}  {shown:>10}  {common.verdict(*TARGETS[key], value):<12}  {detail}")
    return "\n".join(out)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes: under 3 minutes on 2 CPU cores")
    size.add_argument("--smoke", action="store_true", help="tiny sizes and a tiny encoder: checks the code paths")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared machine, 2 threads that wait for each other at every "
        "operation are slower and far noisier than one)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    cfg = MODES[mode]
    started = time.perf_counter()
    rows = common.load_rows()
    if cfg["real_encoder"]:
        from sentence_transformers import SentenceTransformer

        encoder = SentenceTransformer(common.minilm_path(), device=args.device)
        encoder_name = "all-MiniLM-L6-v2 (real weights)"
    else:
        encoder = common.random_encoder(common.TINY_ENCODER_SHAPE, device=args.device)
        encoder_name = "BERT 1 layer, hidden 32, random weights (smoke)"

    results = {}
    for name, bench in (
        ("scorer_vs_encode", lambda: bench_scorer_vs_encode(cfg, rows, encoder, args.device)),
        ("formulas", lambda: bench_formulas(cfg, rows)),
        ("local_term", lambda: bench_local_term(cfg, rows, args.device)),
        ("scaling", lambda: bench_scaling(cfg, rows, args.device)),
        ("step_cpu", lambda: bench_step(cfg, rows, encoder, args.device)),
    ):
        start = time.perf_counter()
        log(f"[{time.perf_counter() - started:6.1f}s] {name} ...")
        results[name] = bench()
        results[name]["bench_s"] = time.perf_counter() - start

    forwards = results["local_term"]["policy_forwards"]["dsdr"]
    headline = {
        "scorer_vs_encode_ratio": round(results["scorer_vs_encode"]["ratio"], 4),
        "formula_completions_per_s": round(results["formulas"]["completions_per_s"], 1),
        "local_term_time_ratio": round(results["local_term"]["time_ratio"], 4),
        "local_term_peak_mem_ratio": round(results["local_term"]["peak_mem_ratio"], 4),
        "policy_forwards_per_microbatch": forwards,
        "scorer_scaling_4096_vs_256": round(results["scaling"]["ratio"], 4),
        "step_time_ratio_cpu": round(results["step_cpu"]["ratio"], 4),
    }
    record = {
        "mode": mode,
        "load_average_1min_at_end": __import__("os").getloadavg()[0],
        "device": args.device,
        "encoder": encoder_name,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": __import__("os").cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "targets": {key: list(value) for key, value in TARGETS.items()},
        "headline": headline,
        "results": results,
        "total_s": time.perf_counter() - started,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"DSDR benchmarks ({mode}, {args.device}, encoder: {encoder_name}, {record['total_s']:.0f} s)")
    print(_table(results, headline))
    print(f"results: {args.output}")
    print(json.dumps(headline), flush=True)
    return headline


if __name__ == "__main__":
    main()
