"""Reports of an evaluation run: results.json (summary and samples), table.md (Table 1 of the paper) and the Pass@k
curves (pass_at_k.png). Standard library only, and matplotlib when the plot is drawn."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The summary and every sample, as JSON, in the output directory.
RESULTS_FILE = "results.json"
#: Table 1 of the paper (and diversity@k) in Markdown, in the output directory.
TABLE_FILE = "table.md"
#: The Pass@k curves, in the output directory.
PLOT_FILE = "pass_at_k.png"
#: Benchmark name -> its column title in the paper's tables.
BENCHMARK_TITLES = {
    "aime24": "AIME24",
    "aime25": "AIME25",
    "math500": "MATH500",
    "minervamath": "Minerva",
    "olympiadbench": "Olympiad",
}


def benchmark_title(name: str) -> str:
    """The paper's column title of a benchmark; a file's name for a local benchmark file."""
    return BENCHMARK_TITLES.get(name, Path(name).name or name)


def markdown_table(
    results: dict[str, Any], benchmarks: Sequence[str], avg_k: int, reasoning_end: str | None = None
) -> str:
    """Table 1 of the paper: rows = models, columns = benchmarks + average, cells "Pass@1 / Avg@k" in percent.

    With `reasoning_end`, the title says that only the text after it was graded.
    """
    header = ["Model", *(benchmark_title(b) for b in benchmarks), "Average"]
    title = f"Pass@1 / Avg@{avg_k} (%)"
    if reasoning_end is not None:
        title += f"; graded after the last `{reasoning_end}` (a completion without it is incorrect)"
    lines = [
        title,
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|",
    ]
    for model, model_results in results.items():
        cells = [model_results["benchmarks"][b] for b in benchmarks] + [model_results["average"]]
        lines.append(
            "| "
            + " | ".join([model] + [f"{100 * c['pass@1']:.1f} / {100 * c[f'avg@{avg_k}']:.1f}" for c in cells])
            + " |"
        )
    diversity_key = f"diversity@{avg_k}"
    if any(diversity_key in r["benchmarks"][b] for r in results.values() for b in benchmarks):
        lines += [
            "",
            f"Diversity@{avg_k} among correct samples: semantic / formula / distinct derivations "
            "(problems with at least two correct samples; - where none)",
            "",
            "| " + " | ".join(header[:-1]) + " |",
            "|" + "|".join(["---"] + [":---:"] * (len(header) - 2)) + "|",
        ]
        for model, model_results in results.items():
            cells = [_diversity_cell(model_results["benchmarks"][b].get(diversity_key)) for b in benchmarks]
            lines.append("| " + " | ".join([model, *cells]) + " |")
    return "\n".join(lines) + "\n"


def _diversity_cell(diversity: dict[str, Any] | None) -> str:
    if not diversity or not diversity["problems"]:
        return "-"
    return f"{diversity['semantic']:.3f} / {diversity['formula']:.3f} / {diversity['derivations']:.2f}"


def plot_pass_at_k(results: dict[str, Any], benchmarks: Sequence[str], path: str | Path) -> None:
    """Pass@k against k (log2 axis), one panel per benchmark plus the average, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [*benchmarks, "average"]
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for axis, panel in zip(axes.flat, panels):
        for model, model_results in results.items():
            curve = model_results["average"] if panel == "average" else model_results["benchmarks"][panel]
            ks = sorted(curve["pass@k"])
            axis.plot(ks, [100 * curve["pass@k"][k] for k in ks], marker="o", markersize=3, label=model)
        axis.set_xscale("log", base=2)
        axis.set_xticks(ks, [str(k) for k in ks])  # plain k values rather than powers of two
        axis.set_ylim(bottom=0)
        axis.set_title("Average" if panel == "average" else benchmark_title(panel))
        axis.set_xlabel("k")
        axis.set_ylabel("Pass@k (%)")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    axes.flat[0].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_reports(output_dir: str | Path, summary: dict[str, Any], samples: Sequence[dict[str, Any]]) -> None:
    """Write results.json ({"summary", "samples"}), table.md and pass_at_k.png for a run's summary.

    `summary` is what `run_evaluation` returns: its "benchmarks", "protocol" and "results" are read here.
    """
    output_dir = Path(output_dir)
    benchmarks, avg_k, results = summary["benchmarks"], summary["protocol"]["avg_k"], summary["results"]
    with open(output_dir / RESULTS_FILE, "w", encoding="utf-8") as handle:
        json.dump({"summary": summary, "samples": list(samples)}, handle, ensure_ascii=False, indent=1)
    table = markdown_table(results, benchmarks, avg_k, summary["protocol"]["reasoning_end"])
    (output_dir / TABLE_FILE).write_text(table, encoding="utf-8")
    plot_pass_at_k(results, benchmarks, output_dir / PLOT_FILE)
