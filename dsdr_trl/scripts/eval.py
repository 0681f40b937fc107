"""`dsdr-trl eval`: the paper's evaluation protocol for one or more models on one or more math benchmarks.

Example (2 models, all five benchmarks, paper defaults)::

    dsdr-trl eval --models Qwen/Qwen2.5-Math-1.5B runs/dsdr/checkpoint-500 --output-dir eval/qwen-1.5b

Writes samples.jsonl (resumable), results.json, table.md and pass_at_k.png to the output directory.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..data import BENCHMARKS, DATA_DIR_ENV
from ..evaluation import DEFAULT_ENCODER, EvaluationProtocol  # the light part of the package: no torch for --help
from .preflight import PreflightError, check_model, note, resolve_encoder

PAPER = EvaluationProtocol()  # the paper's protocol (Sec. 4.1, Table 3)


def build_parser() -> argparse.ArgumentParser:
    """The `dsdr-trl eval` options; defaults follow the paper (Sec. 4.1, Table 3). Each option is also accepted
    with underscores (`--output_dir`), as `dsdr-trl train` spells them."""
    parser = argparse.ArgumentParser(
        prog="dsdr-trl eval",
        description="Pass@1, Avg@k, Pass@k and diversity@k on math benchmarks (DSDR paper protocol). "
        "Rerun with the same --output-dir to resume.",
    )

    def option(name: str, **kwargs) -> None:
        underscored = "--" + name[2:].replace("-", "_")
        shown = all(kwargs.get("default") is not hidden for hidden in (None, False, argparse.SUPPRESS))
        if shown and "default:" not in kwargs["help"]:
            kwargs["help"] += " (default: %(default)s)"
        parser.add_argument(*dict.fromkeys([name, underscored]), **kwargs)

    option("--models", nargs="+", required=True, help="model/checkpoint paths or Hub ids; LoRA adapters are detected")
    option(
        "--benchmarks",
        nargs="+",
        default=list(BENCHMARKS),
        help=f"registered names ({', '.join(BENCHMARKS)}), JSONL files of `problem`, `answer`, or Hub ids (default: all five)",
    )
    option("--output-dir", required=True, help="where samples and reports go; reused to resume")
    option("--limit", type=int, default=None, help="only the first N problems of each benchmark (default: all)")
    option(
        "--data-dir",
        default=None,
        help=f"local data root holding benchmarks/<name>/test.jsonl, searched before the Hub (default: ${DATA_DIR_ENV})",
    )
    option("--system-prompt", default=None, help="system message before each problem (default: none)")
    option("--seed", type=int, default=PAPER.seed, help="base of every sample's seed")
    option("--device", default=None, help="default: cuda if available, else cpu")
    option(
        "--backend",
        choices=["auto", "vllm", "transformers"],
        default="auto",
        help="sampler; auto: vLLM when installed and a GPU is present, else transformers",
    )
    option("--dtype", default="auto", help='"auto" or a torch dtype name, e.g. bfloat16')
    option("--batch-size", type=int, default=16, help="prompts per transformers generate call")
    option("--pass1-temperature", type=float, default=PAPER.pass1_temperature, help="for Pass@1")
    option("--temperature", type=float, default=PAPER.temperature, help="for Avg@k and Pass@k")
    option("--top-p", type=float, default=PAPER.top_p, help="nucleus sampling, both regimes")
    option("--max-new-tokens", type=int, default=PAPER.max_new_tokens, help="response length limit")
    option("--num-samples", type=int, default=PAPER.num_samples, help="samples per problem for Pass@k")
    option("--avg-k", type=int, default=PAPER.avg_k, help="k of Avg@k and diversity@k")
    option(
        "--ks",
        type=int,
        nargs="+",
        default=argparse.SUPPRESS,  # the default depends on --num-samples: said in the help instead
        help="k of Pass@k (default: 1, 2, 4, ... up to --num-samples, and --num-samples)",
    )
    option(
        "--reasoning-end",
        default=None,
        help="grade only the text after the last occurrence of this marker, e.g. '</think>' for models that think "
        "first (Qwen3), as the reasoning_math_accuracy reward does; a completion without it is incorrect "
        "(default: the whole completion)",
    )
    option("--encoder", default=DEFAULT_ENCODER, help='sentence encoder for diversity@k; "none" skips diversity@k')
    option("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation; prints the Markdown table and returns 0 (2 when a benchmark cannot be found)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..data import DataUnavailableError
    from ..evaluation import TABLE_FILE, default_ks

    try:
        protocol = EvaluationProtocol(
            pass1_temperature=args.pass1_temperature,
            temperature=args.temperature,
            top_p=args.top_p,
            avg_k=args.avg_k,
            num_samples=args.num_samples,
            ks=tuple(args.ks) if "ks" in args else default_ks(args.num_samples),
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            reasoning_end=args.reasoning_end,
        )
    except ValueError as error:
        parser.error(str(error))
    encoder = None if args.encoder.lower() == "none" else args.encoder
    try:  # before anything loads or is written
        for model in args.models:
            check_model(model, "--models")
        if encoder:
            encoder, substitution = resolve_encoder(encoder, "--encoder")
            if substitution:
                note(f"dsdr-trl eval: {substitution}.")
    except PreflightError as error:
        print(f"dsdr-trl eval: {error}", file=sys.stderr)
        return 2
    from ..evaluation import run_evaluation  # torch, transformers and the grader: seconds

    output_dir = Path(args.output_dir)
    new_output_dir = not output_dir.exists()
    try:
        run_evaluation(
            args.models,
            args.benchmarks,
            args.output_dir,
            protocol,
            backend=args.backend,
            device=args.device,
            batch_size=args.batch_size,
            dtype=args.dtype,
            limit=args.limit,
            data_dir=args.data_dir,
            system_prompt=args.system_prompt,
            encoder=encoder,
            show_progress=not args.no_progress,
        )
    except DataUnavailableError as error:
        print(f"dsdr-trl eval: {error}", file=sys.stderr)
        return 2
    finally:  # a run that failed before writing anything leaves no empty folder behind
        if new_output_dir and output_dir.is_dir() and not any(output_dir.iterdir()):
            output_dir.rmdir()
    print((output_dir / TABLE_FILE).read_text(encoding="utf-8"))
    return 0
