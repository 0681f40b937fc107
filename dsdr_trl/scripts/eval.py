"""`dsdr-trl eval`: the paper's evaluation protocol for one or more models on one or more math benchmarks.

Example (2 models, all five benchmarks, paper defaults)::

    dsdr-trl eval --models Qwen/Qwen2.5-Math-1.5B runs/dsdr/checkpoint-500 --output-dir eval/qwen-1.5b

Writes samples.jsonl (resumable), results.json, table.md and pass_at_k.png to the output directory.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..data import BENCHMARKS
from ..evaluation import DEFAULT_ENCODER, TABLE_FILE, EvaluationProtocol, default_ks, run_evaluation


def build_parser() -> argparse.ArgumentParser:
    """The `dsdr-trl eval` options; defaults follow the paper (Sec. 4.1, Table 3)."""
    defaults = EvaluationProtocol()
    parser = argparse.ArgumentParser(
        prog="dsdr-trl eval",
        description="Pass@1, Avg@k, Pass@k and diversity@k on math benchmarks (DSDR paper protocol). "
        "Rerun with the same --output-dir to resume.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--models", nargs="+", required=True, help="model/checkpoint paths or Hub ids; LoRA adapters are detected"
    )
    parser.add_argument(
        "--benchmarks", nargs="+", default=list(BENCHMARKS), help="registered names, JSONL paths or Hub ids"
    )
    parser.add_argument("--output-dir", required=True, help="where samples and reports go; reused to resume")
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems of each benchmark")
    parser.add_argument("--data-dir", default=None, help="local data root with benchmarks/<name>/test.jsonl")
    parser.add_argument("--system-prompt", default=None, help="system message before each problem")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--backend", choices=["auto", "vllm", "transformers"], default="auto")
    parser.add_argument("--dtype", default="auto", help='"auto" or a torch dtype name, e.g. bfloat16')
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per transformers generate call")
    parser.add_argument("--pass1-temperature", type=float, default=defaults.pass1_temperature)
    parser.add_argument("--temperature", type=float, default=defaults.temperature, help="for Avg@k and Pass@k")
    parser.add_argument("--top-p", type=float, default=defaults.top_p)
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--num-samples", type=int, default=defaults.num_samples, help="samples per problem for Pass@k")
    parser.add_argument("--avg-k", type=int, default=defaults.avg_k, help="k of Avg@k and diversity@k")
    parser.add_argument(
        "--ks", type=int, nargs="+", default=None, help="k of Pass@k (default: 1, 2, 4, ... up to num-samples)"
    )
    parser.add_argument(
        "--encoder", default=DEFAULT_ENCODER, help='sentence encoder for diversity@k; "none" skips diversity@k'
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation; prints the Markdown table and returns 0."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        protocol = EvaluationProtocol(
            pass1_temperature=args.pass1_temperature,
            temperature=args.temperature,
            top_p=args.top_p,
            avg_k=args.avg_k,
            num_samples=args.num_samples,
            ks=tuple(args.ks) if args.ks else default_ks(args.num_samples),
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
        )
    except ValueError as error:
        parser.error(str(error))
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
        encoder=None if args.encoder.lower() == "none" else args.encoder,
        show_progress=not args.no_progress,
    )
    print((Path(args.output_dir) / TABLE_FILE).read_text(encoding="utf-8"))
    return 0
