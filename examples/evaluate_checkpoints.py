"""Evaluate every checkpoint of a training run with the paper's protocol (Sec. 4.1), through dsdr_trl.evaluation.

    python examples/evaluate_checkpoints.py runs/qwen3-1.7b/dsdr --benchmarks aime24 math500 --max-new-tokens 8192 \
        --reasoning-end '</think>'

is `dsdr-trl eval --models <run>/checkpoint-* ...` with the checkpoints found for you, in training order. Writes
samples.jsonl (resumable), results.json, table.md and pass_at_k.png to `<run>/eval` by default.

Smoke mode (`--smoke`, CPU, offline): a tiny model saved twice as two "checkpoints", two bundled problems, two
samples each, 8 new tokens.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

from dsdr_trl.evaluation import TABLE_FILE, EvaluationProtocol, default_ks, run_evaluation


def checkpoints(run_dir: Path) -> list[str]:
    """`checkpoint-<step>` directories in step order, then the final model if it was saved in the run directory."""
    found = sorted(run_dir.glob("checkpoint-*"), key=lambda path: int(re.sub(r"\D", "", path.name) or 0))
    if (run_dir / "config.json").exists() or (run_dir / "adapter_config.json").exists():
        found.append(run_dir)
    return [str(path) for path in found]


def make_smoke_run(root: Path) -> tuple[Path, Path]:
    """A run directory with two tiny checkpoints and a two-problem benchmark file."""
    from dsdr_trl.recipes.tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    for step in (1, 2):
        build_model(tokenizer).save_pretrained(root / "run" / f"checkpoint-{step}")
        tokenizer.save_pretrained(root / "run" / f"checkpoint-{step}")
    benchmark = root / "tiny.jsonl"
    problems = [{"problem": "What is 7 + 5?", "answer": "12"}, {"problem": "What is $2^5$?", "answer": "32"}]
    benchmark.write_text("".join(json.dumps(problem) + "\n" for problem in problems), encoding="utf-8")
    return root / "run", benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="training output_dir holding checkpoint-* directories")
    parser.add_argument("--benchmarks", nargs="+", default=["aime24", "aime25", "math500", "minervamath", "olympiadbench"])
    parser.add_argument("--output-dir", default=None, help="default: <run_dir>/eval")
    parser.add_argument("--max-new-tokens", type=int, default=4096, help="the training max response length")
    parser.add_argument(
        "--reasoning-end", default=None, help="grade only after this marker, e.g. '</think>' for Qwen3 (default: all)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny offline CPU evaluation")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        if args.smoke:
            from dsdr_trl.scripts.demo import encoder_path

            run_dir, benchmark = make_smoke_run(Path(scratch))
            benchmarks, encoder = [str(benchmark)], encoder_path()
            protocol = EvaluationProtocol(avg_k=2, num_samples=2, ks=(1, 2), max_new_tokens=8)
            backend, device = "transformers", "cpu"
        else:
            if not args.run_dir:
                parser.error("give the run directory (or --smoke)")
            run_dir, benchmarks, encoder = Path(args.run_dir), args.benchmarks, "sentence-transformers/all-MiniLM-L6-v2"
            protocol = EvaluationProtocol(
                max_new_tokens=args.max_new_tokens, ks=default_ks(64), reasoning_end=args.reasoning_end
            )
            backend, device = "auto", None
        models = checkpoints(run_dir)
        if not models:
            parser.error(f"no checkpoint-* directory or saved model in {run_dir}")
        output_dir = Path(args.output_dir) if args.output_dir else run_dir / "eval"
        run_evaluation(
            models, benchmarks, output_dir, protocol, backend=backend, device=device, encoder=encoder,
            show_progress=not args.smoke,
        )  # fmt: skip
        print((output_dir / TABLE_FILE).read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
