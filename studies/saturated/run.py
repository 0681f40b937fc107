"""The saturated-group study: DSDR against GRPO, DAPO and the ablations where most groups are entirely correct.

    python -m studies.saturated.run                    # the reported run (docs/study.md: its size and wall time)
    python -m studies.saturated.run --quick            # fewer seeds, methods and steps
    python -m studies.saturated.run --smoke            # a few steps, for the test (seconds)
    python -m studies.saturated.run --part aggregate   # aggregate the runs finished so far

Steps, each cached in the output directory so that a rerun resumes (split runs over processes with --part,
--methods, --seeds and --no-aggregate; a last call aggregates):

1. the warm start (`task.prior_rows`: correct solutions of every prompt but the held-out ones, drawn from a
   simplicity prior) and the regime check: G = 8 samples at temperature 1.0 on every training prompt, the success
   rate, the fraction of all-correct groups and the skew of the correct solutions;
2. the held-out measurement of the warm start: n samples per prompt at temperature 0.7, top-p 0.9 (Sec. 4.1);
3. the comparison: every method x seed, RL from the warm start, held-out per-prompt outcomes at the end;
4. the mechanism experiment (Prop. C.4 in isolation): RL on the prompts whose warm-start group was all correct,
   measuring the distinct correct solutions and the entropy over them on those prompts every few steps;
5. aggregation: results.json, summary.json (bootstrap intervals over prompts and seeds), table.md and figures.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from studies.multi_solution.run import LABELS, load_config, semantic_model_path, study_arguments, study_setup, train

from .stats import AUC_KS, paired_difference, pass_at_k_auc, summarize
from .task import is_easy

HERE = Path(__file__).resolve().parent
METHODS = ("grpo", "dapo", "dsdr", "dsdr_wo_gd", "dsdr_wo_gc_uniform", "dsdr_wo_gc_no_local")
SWEEP = ("dsdr_d0.1_l0.001", "dsdr_d0.001_l0.01", "dsdr_d0.001_l0.05")
LOGGED = ("entropy", "reward", "dsdr/frac_correct", "dsdr/frac_all_correct_groups", "dsdr/within_group_cosine",
          "dsdr/semantic/mean", "dsdr/coupling_entropy")
GROUP_SIZE = 8
TRAIN_TEMPERATURE = 1.0
HELD_OUT_TEMPERATURE, HELD_OUT_TOP_P = 0.7, 0.9  # Sec. 4.1
CURVE_SAMPLES = 16  # held-out samples per prompt at intermediate steps (the curves); the end uses all n


@dataclass(frozen=True)
class Mode:
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    mechanism_methods: tuple[str, ...]
    sft_steps: int
    rl_steps: int
    eval_every: int
    num_train: int
    num_eval: int
    num_samples: int
    mechanism_steps: int
    mechanism_every: int
    mechanism_prompts: int
    easy_fraction: float = 0.5  # share of prompts whose target is one of the digits (training and held-out alike)
    prior_decay: float = 0.03  # the warm start's simplicity prior: a solution with m numbers weighs decay^(m - 1)
    sft_batch: int = 128


MODES = {
    "full": Mode(seeds=(0, 1, 2, 3, 4), methods=METHODS + SWEEP,
                 mechanism_methods=("grpo", "dapo", "dsdr", "dsdr_wo_gd", "dsdr_wo_gc_no_local"), sft_steps=500,
                 rl_steps=60, eval_every=20, num_train=320, num_eval=200, num_samples=64, mechanism_steps=40,
                 mechanism_every=10, mechanism_prompts=32),
    "quick": Mode(seeds=(0, 1, 2), methods=("grpo", "dapo", "dsdr"), mechanism_methods=("grpo", "dsdr"), sft_steps=500,
                  rl_steps=20, eval_every=20, num_train=320, num_eval=200, num_samples=64, mechanism_steps=20,
                  mechanism_every=10, mechanism_prompts=32),
    "smoke": Mode(seeds=(0,), methods=("grpo", "dsdr"), mechanism_methods=("dsdr",), sft_steps=3, rl_steps=2,
                  eval_every=2, num_train=16, num_eval=4, num_samples=4, mechanism_steps=2, mechanism_every=1,
                  mechanism_prompts=8, sft_batch=16),
}


def environment() -> dict:
    """What a result depends on besides the code: runs are bit-identical on one machine and library set only."""
    import sentence_transformers
    import transformers
    import trl

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl.__version__,
            "sentence_transformers": sentence_transformers.__version__, "python": platform.python_version()}


# -- per-prompt measurements ------------------------------------------------------------------------------------------


def solution_entropy(solutions: list[str]) -> float:
    """Entropy (nats) of the empirical distribution over the distinct solutions in `solutions`; 0 when empty."""
    counts = Counter(solutions)
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values()) if total else 0.0


def per_prompt(model, prompts, n: int, temperature: float, top_p: float, seed: int) -> dict:
    """n samples per prompt; per prompt the number correct, the distinct correct solutions and their entropy, and the
    same two for the first CURVE_SAMPLES samples (the intermediate steps' sample size)."""
    from studies.multi_solution.measure import sample
    from studies.multi_solution.policy import build_tokenizer
    from studies.multi_solution.task import grade

    groups = sample(model, build_tokenizer(), prompts, n, temperature, seed, top_p=top_p)
    graded = [[grade(text, list(p.numbers), p.target) for text in group] for group, p in zip(groups, prompts)]
    correct = [[s for s in group if s is not None] for group in graded]
    prefix = [[s for s in group[:CURVE_SAMPLES] if s is not None] for group in graded]
    return {"n": n, "correct": [len(c) for c in correct], "distinct": [len(set(c)) for c in correct],
            "entropy": [solution_entropy(c) for c in correct],
            "top_count": [Counter(c).most_common(1)[0][1] if c else 0 for c in correct],
            "distinct_prefix": [len(set(c)) for c in prefix], "correct_prefix": [len(c) for c in prefix]}


def held_out_summary(record: dict) -> dict:
    """Means over prompts of a per_prompt record: Pass@k AUC, distinct correct, Avg@n, Pass@k."""
    from dsdr_trl.evaluation import pass_at_k

    n = record["n"]
    return {
        "pass_at_k_auc": float(np.mean([pass_at_k_auc(n, c, auc_ks(n)) for c in record["correct"]])),
        "distinct_correct": float(np.mean(record["distinct"])),
        "avg": float(np.mean(record["correct"])) / n,
        "pass@k": {k: float(np.mean([pass_at_k(n, c, k) for c in record["correct"]])) for k in range(1, n + 1)},
    }


# -- the study --------------------------------------------------------------------------------------------------------


class Study:
    def __init__(self, mode: Mode, output_dir: Path):
        from .task import mixed_prompts

        self.mode, self.output_dir = mode, output_dir
        self.train_prompts, self.eval_prompts = mixed_prompts(0, mode.num_train, mode.num_eval, mode.easy_fraction)
        self.semantic_model = semantic_model_path()
        self._scorer = None

    @property
    def scorer(self):
        from dsdr_trl.scorer import DiversityScorer

        if self._scorer is None:
            self._scorer = DiversityScorer(self.semantic_model)
        return self._scorer

    def _cached(self, path: Path, compute) -> dict:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            start, cpu = time.perf_counter(), time.process_time()
            value = compute()
            value |= {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                      "environment": environment()}
            path.write_text(json.dumps(value))
        return json.loads(path.read_text())

    def warm_start_dir(self) -> Path:
        from studies.multi_solution.policy import warm_start

        from studies.multi_solution.task import prompt_pool

        from .task import prior_rows

        directory = self.output_dir / "warm_start"
        if not (directory / "model.safetensors").exists():  # every prompt of the pool but the held-out ones
            held_out = set(self.eval_prompts)
            rows = prior_rows([p for p in prompt_pool() if p not in held_out],
                              self.mode.sft_steps * self.mode.sft_batch, seed=0, decay=self.mode.prior_decay)
            warm_start(rows, directory, seed=0, max_steps=self.mode.sft_steps, batch_size=self.mode.sft_batch)
        return directory

    def load_warm_start(self):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(self.warm_start_dir())

    def regime(self) -> dict:
        """G samples at the training temperature on every training prompt, from the warm start."""

        def compute():
            record = per_prompt(self.load_warm_start(), self.train_prompts, GROUP_SIZE, TRAIN_TEMPERATURE, 1.0, seed=7)
            correct = np.array(record["correct"])
            solved = correct > 0
            return {"train_success": float(correct.mean() / GROUP_SIZE),
                    "frac_all_correct_groups": float((correct == GROUP_SIZE).mean()),
                    "frac_unsolved_groups": float((correct == 0).mean()),
                    "distinct_correct_per_group": float(np.mean(record["distinct"])),
                    # among a group's correct samples, the share of its most frequent solution (1 = no diversity)
                    "top_solution_share": float(np.mean(np.array(record["top_count"])[solved] / correct[solved]))
                    if solved.any() else 0.0,
                    "per_prompt": record}

        return self._cached(self.output_dir / "warm_start" / "regime.json", compute)

    def initial(self) -> dict:
        return self._cached(self.output_dir / "warm_start" / "held_out.json", lambda: per_prompt(
            self.load_warm_start(), self.eval_prompts, self.mode.num_samples, HELD_OUT_TEMPERATURE, HELD_OUT_TOP_P,
            seed=1000))

    def saturated_prompts(self) -> tuple[list, int]:
        """The mechanism_prompts training prompts with the most correct samples in their warm-start group of G (all
        correct first, in prompt order), and how many of them were all correct (all of them, in the reported run)."""
        correct = self.regime()["per_prompt"]["correct"]
        ranked = sorted(range(len(correct)), key=lambda i: -correct[i])[: self.mode.mechanism_prompts]
        return [self.train_prompts[i] for i in ranked], sum(correct[i] == GROUP_SIZE for i in ranked)

    def _train(self, method: str, seed: int, prompts, steps: int, every: int, measure, tag: str) -> dict:
        # log_diversity: every method, GRPO and DAPO included, logs the dsdr/ metrics with its objective unchanged.
        # No gradient checkpointing (GRPOConfig's default): same gradients, and recomputation only costs time here.
        config = load_config(method, self.output_dir / "trainer" / tag / method / str(seed), seed, steps,
                             self.semantic_model, log_diversity=True, gradient_checkpointing=False)
        measurements, logs = train(config, self.load_warm_start(), prompts, self.scorer, every, measure, LOGGED)
        return {"method": method, "seed": seed, "measurements": measurements, "logs": logs}

    def run(self, method: str, seed: int) -> dict:
        """RL from the warm start; held-out curves every eval_every steps, per-prompt outcomes (n samples) at the
        end."""
        mode = self.mode

        def measure(model, step):
            n = mode.num_samples if step == mode.rl_steps else CURVE_SAMPLES
            return per_prompt(model, self.eval_prompts, n, HELD_OUT_TEMPERATURE, HELD_OUT_TOP_P, seed=1000 + step)

        return self._cached(self.output_dir / "runs" / method / f"seed{seed}.json", lambda: self._train(
            method, seed, self.train_prompts, mode.rl_steps, mode.eval_every, measure, "comparison"))

    def mechanism(self, method: str, seed: int) -> dict:
        """RL on saturated prompts only; on them, the distinct correct solutions and their entropy (at the training
        temperature)."""
        prompts, all_correct = self.saturated_prompts()
        mode = self.mode

        def measure(model, step):
            return per_prompt(model, prompts, mode.num_samples, TRAIN_TEMPERATURE, 1.0, seed=2000 + step)

        def compute():
            start = {"step": 0, **measure(self.load_warm_start(), 0)}
            result = self._train(method, seed, prompts, mode.mechanism_steps, mode.mechanism_every, measure,
                                 "mechanism")
            result["measurements"].insert(0, start)
            return result | {"prompts_all_correct_at_start": all_correct}

        return self._cached(self.output_dir / "mechanism" / method / f"seed{seed}.json", compute)


# -- aggregation ------------------------------------------------------------------------------------------------------


def _matrix(runs: list[dict], key: str, step: int | None = None) -> np.ndarray:
    """[seeds, prompts] of a per-prompt field, at the last measurement (or at `step`)."""
    rows = []
    for run in runs:
        by_step = {m["step"]: m for m in run["measurements"]}
        rows.append((run["measurements"][-1] if step is None else by_step[step])[key])
    return np.array(rows, dtype=np.float64)


def auc_ks(num_samples: int) -> tuple[int, ...]:
    """The primary outcome's k (1, 2, 4, ..., 64), those a run with num_samples samples can estimate (smoke mode)."""
    return tuple(k for k in AUC_KS if k <= num_samples)


def auc_matrix(runs: list[dict]) -> np.ndarray:
    n = runs[0]["measurements"][-1]["n"]
    return np.array([[pass_at_k_auc(n, c, auc_ks(n)) for c in run["measurements"][-1]["correct"]] for run in runs])


def pass_at_k_matrix(runs: list[dict], k: int) -> np.ndarray:
    from dsdr_trl.evaluation import pass_at_k

    return np.array([[pass_at_k(run["measurements"][-1]["n"], c, k) for c in run["measurements"][-1]["correct"]]
                     for run in runs])


def _paired_with(runs: list[dict], control: list[dict]) -> tuple[list[dict], list[dict]]:
    """(runs, control runs) restricted to the seeds both have, in the order of `runs`: row s of each is one seed."""
    by_seed = {run["seed"]: run for run in control}
    mine = [run for run in runs if run["seed"] in by_seed]
    return mine, [by_seed[run["seed"]] for run in mine]


def _first_logged(run: dict, key: str) -> float | None:
    return next((log[key] for log in run["logs"] if key in log), None)


def _log_series(runs: list[dict], key: str) -> dict:
    """A trainer-logged scalar per step: mean and 95 % bootstrap interval over seeds (steps logged by every seed)."""
    steps = sorted({log["step"] for log in runs[0]["logs"] if key in log})
    series = {"step": [], "mean": [], "ci95": []}
    for step in steps:
        values = [next((log[key] for log in run["logs"] if log["step"] == step and key in log), None) for run in runs]
        if any(v is None for v in values):
            continue
        entry = summarize(np.array(values)[:, None])
        series["step"].append(step)
        series["mean"].append(entry["mean"])
        series["ci95"].append(entry["ci95"])
    return series


def _curve(runs: list[dict], key: str, initial: dict | None = None) -> dict:
    """A per-prompt field at every measured step: mean and 95 % interval over seeds and prompts."""
    steps = [m["step"] for m in runs[0]["measurements"]]
    series = {"step": [], "mean": [], "ci95": []}
    if initial is not None and 0 not in steps:
        entry = summarize(np.array(initial[key], dtype=np.float64)[None, :])
        series["step"].append(0), series["mean"].append(entry["mean"]), series["ci95"].append(entry["ci95"])
    for step in steps:
        entry = summarize(_matrix(runs, key, step))
        series["step"].append(step), series["mean"].append(entry["mean"]), series["ci95"].append(entry["ci95"])
    return series


def aggregate(study: Study, comparison: dict[str, list[dict]], mechanism: dict[str, list[dict]]) -> tuple[dict, dict]:
    """(results, summary): everything measured, and summary.json's numbers."""
    initial = study.initial()
    initial_stats = held_out_summary(initial)
    regime = study.regime()
    results = {
        "environment": environment(),
        "settings": asdict(study.mode),
        "regime": {k: v for k, v in regime.items() if k != "per_prompt"},
        "initial": initial_stats,
        "methods": {},
        "mechanism": {},
    }
    # summary.json: the keys, plus the environment every results file records (the rest is in results.json)
    summary = {"seeds": len(study.mode.seeds), "heldout_prompts": len(study.eval_prompts),
               "samples_per_prompt": study.mode.num_samples, "environment": results["environment"]}
    easy = np.array([is_easy(p) for p in study.eval_prompts])
    for method, runs in comparison.items():
        auc, distinct = auc_matrix(runs), _matrix(runs, "distinct")
        entry = {
            "seeds": [run["seed"] for run in runs],
            "train_success_at_start": float(np.mean([_first_logged(r, "dsdr/frac_correct") for r in runs])),
            "frac_all_correct_groups_at_start": float(np.mean([_first_logged(r, "dsdr/frac_all_correct_groups")
                                                                for r in runs])),
            "pass_at_k_auc": summarize(auc),
            "distinct_correct": summarize(distinct),
            "avg": summarize(_matrix(runs, "correct") / study.mode.num_samples),
            "pass@k": {k: summarize(pass_at_k_matrix(runs, k)) for k in AUC_KS if k <= study.mode.num_samples},
            "distinct_correct_curve": _curve(runs, "distinct_prefix", initial),
            "training_logs": {key: _log_series(runs, key) for key in LOGGED},
            "seconds_per_run": float(np.mean([r["seconds"] for r in runs])),
            "cpu_seconds_per_run": float(np.mean([r["cpu_seconds"] for r in runs])),
        }
        if method != "grpo" and "grpo" in comparison:
            mine, paired = _paired_with(runs, comparison["grpo"])
            outcomes = {"pass_at_k_auc": (auc_matrix(mine), auc_matrix(paired)),
                        "distinct_correct": (_matrix(mine, "distinct"), _matrix(paired, "distinct"))}
            entry["minus_grpo"] = {key: paired_difference(*pair) for key, pair in outcomes.items()} | {
                "pass@k": {k: paired_difference(pass_at_k_matrix(mine, k), pass_at_k_matrix(paired, k))
                           for k in entry["pass@k"]},
            }
        # Exploratory, chosen after the run: the same outcomes on the easy and the other held-out prompts apart.
        entry["by_prompt_kind"] = {}
        for kind, columns in (("easy", easy), ("other", ~easy)):
            part = {"pass_at_k_auc": summarize(auc[:, columns]), "distinct_correct": summarize(distinct[:, columns])}
            if "minus_grpo" in entry:
                part["minus_grpo"] = {key: paired_difference(treatment[:, columns], control[:, columns])
                                      for key, (treatment, control) in outcomes.items()}
            entry["by_prompt_kind"][kind] = part
        results["methods"][method] = entry
        summary[method] = {key: entry[key] for key in ("train_success_at_start", "frac_all_correct_groups_at_start",
                                                       "pass_at_k_auc", "distinct_correct")}
    if "minus_grpo" in results["methods"].get("dsdr", {}):
        summary["dsdr_minus_grpo"] = {key: results["methods"]["dsdr"]["minus_grpo"][key]
                                      for key in ("pass_at_k_auc", "distinct_correct")}
    for method, runs in mechanism.items():
        results["mechanism"][method] = {
            "seeds": [run["seed"] for run in runs],
            "prompts": len(runs[0]["measurements"][0]["correct"]),
            "prompts_all_correct_at_start": runs[0]["prompts_all_correct_at_start"],
            **{key: _curve(runs, key) for key in ("distinct", "entropy", "correct")},
            "frac_all_correct_groups": _log_series(runs, "dsdr/frac_all_correct_groups"),
        }
        if method != "grpo" and "grpo" in mechanism:
            mine, paired = _paired_with(runs, mechanism["grpo"])
            results["mechanism"][method]["minus_grpo_at_end"] = {
                key: paired_difference(_matrix(mine, key), _matrix(paired, key)) for key in ("distinct", "entropy")}
    return results, summary


def _cell(entry: dict, scale: float = 1.0, digits: int = 1) -> str:
    low, high = entry["ci95"]
    return f"{scale * entry['mean']:.{digits}f} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def markdown_tables(results: dict) -> str:
    regime = results["regime"]
    lines = ["Warm start, regime check on the training prompts (G = 8 samples at temperature 1.0 per prompt):", "",
             "| train success | all-correct groups | unsolved groups | distinct correct / group "
             "| top solution's share |",
             "|---|---|---|---|---|",
             f"| {100 * regime['train_success']:.1f} % | {100 * regime['frac_all_correct_groups']:.1f} % | "
             f"{100 * regime['frac_unsolved_groups']:.1f} % | {regime['distinct_correct_per_group']:.2f} | "
             f"{100 * regime['top_solution_share']:.1f} % |", ""]
    initial = results["initial"]
    top_k = max(initial["pass@k"], key=int)
    lines += ["Held-out prompts after RL (95 % bootstrap intervals over prompts and seeds; AUC and Pass in %):", "",
              "| Method | train success at start | all-correct groups at start | Pass@k AUC | distinct correct "
              f"(of {top_k}) | Pass@1 | Pass@{top_k} |", "|" + "---|" * 7,
              f"| Warm start | | | {100 * initial['pass_at_k_auc']:.1f} | {initial['distinct_correct']:.2f} | "
              f"{100 * initial['pass@k'][1]:.1f} | {100 * initial['pass@k'][top_k]:.1f} |"]
    for method, entry in results["methods"].items():
        lines.append(
            f"| {LABELS.get(method, method)} | {100 * entry['train_success_at_start']:.1f} % | "
            f"{100 * entry['frac_all_correct_groups_at_start']:.1f} % | {_cell(entry['pass_at_k_auc'], 100)} | "
            f"{_cell(entry['distinct_correct'], digits=2)} | {_cell(entry['pass@k'][1], 100)} | "
            f"{_cell(entry['pass@k'][top_k], 100)} |")
    diff_ks = [k for k in (1, 8, 64) if k <= top_k]
    lines += ["", "Paired differences, method − GRPO (same seed, same prompt; 95 % bootstrap intervals; points of % "
              "for AUC and Pass@k):", "", "| Method | Δ Pass@k AUC | Δ distinct correct | "
              + " | ".join(f"Δ Pass@{k}" for k in diff_ks) + " |", "|" + "---|" * (3 + len(diff_ks))]
    for method, entry in results["methods"].items():
        if "minus_grpo" in entry:
            diff = entry["minus_grpo"]
            lines.append(f"| {LABELS.get(method, method)} | {_cell(diff['pass_at_k_auc'], 100)} | "
                         f"{_cell(diff['distinct_correct'], digits=2)} | "
                         + " | ".join(_cell(diff["pass@k"][k], 100) for k in diff_ks) + " |")
    lines += ["", "Exploratory, chosen after the run: the easy held-out prompts (target among the digits) and the "
              "other ones apart (95 % bootstrap intervals; Δ = paired difference with GRPO):", "",
              "| Method | AUC, easy | Δ AUC, easy | distinct, easy | Δ distinct, easy | AUC, other | Δ AUC, other "
              "| distinct, other | Δ distinct, other |", "|" + "---|" * 9]
    for method, entry in results["methods"].items():
        cells = []
        for kind in ("easy", "other"):
            part = entry["by_prompt_kind"][kind]
            diff = part.get("minus_grpo")
            cells += [_cell(part["pass_at_k_auc"], 100), _cell(diff["pass_at_k_auc"], 100) if diff else "–",
                      _cell(part["distinct_correct"], digits=2),
                      _cell(diff["distinct_correct"], digits=2) if diff else "–"]
        lines.append(f"| {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    if results["mechanism"]:
        lines += ["", "Mechanism (RL on prompts whose warm-start group was all correct; 64 samples per prompt at "
                  "temperature 1.0; 95 % intervals over prompts and seeds):", "",
                  "| Method | distinct correct, start | distinct correct, end | entropy over solutions (nats), start | "
                  "entropy, end | success, end | Δ distinct vs GRPO, end | Δ entropy vs GRPO, end |",
                  "|" + "---|" * 8]
        for method, entry in results["mechanism"].items():
            first, last = 0, -1
            cell = lambda key, i, digits=2: _cell({"mean": entry[key]["mean"][i], "ci95": entry[key]["ci95"][i]},
                                                  digits=digits)
            success = {"mean": entry["correct"]["mean"][last] / results["settings"]["num_samples"],
                       "ci95": [v / results["settings"]["num_samples"] for v in entry["correct"]["ci95"][last]]}
            diff = entry.get("minus_grpo_at_end")
            lines.append(f"| {LABELS.get(method, method)} | {cell('distinct', first)} | {cell('distinct', last)} | "
                         f"{cell('entropy', first, 3)} | {cell('entropy', last, 3)} | {_cell(success, 100)} % | "
                         + (f"{_cell(diff['distinct'], digits=2)} | {_cell(diff['entropy'], digits=3)} |" if diff
                            else "– | – |"))
    return "\n".join(lines) + "\n"


def plot(results: dict, output_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def band(ax, series, label, style="-"):
        line = ax.plot(series["step"], series["mean"], style, label=label, linewidth=1.5)[0]
        ax.fill_between(series["step"], [c[0] for c in series["ci95"]], [c[1] for c in series["ci95"]],
                        color=line.get_color(), alpha=0.12)

    def save(fig, ax, name, xlabel, ylabel, title):
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(output_dir / name, dpi=90)
        plt.close(fig)

    methods = results["methods"]
    style = {m: "--" if m in SWEEP else "-" for m in methods}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, entry in methods.items():
        ks = sorted(entry["pass@k"], key=int)
        band(ax, {"step": [int(k) for k in ks], "mean": [entry["pass@k"][k]["mean"] for k in ks],
                  "ci95": [entry["pass@k"][k]["ci95"] for k in ks]}, LABELS.get(method, method), style[method])
    initial = results["initial"]["pass@k"]
    ks = [k for k in AUC_KS if k in initial or str(k) in initial]
    ax.plot(ks, [initial.get(k, initial.get(str(k))) for k in ks], ":", color="gray", label="warm start")
    ax.set_xscale("log", base=2)
    save(fig, ax, "pass_at_k.png", "k", "Pass@k (held-out)", "Pass@k after RL (95 % CI over prompts and seeds)")

    for key, source, name, ylabel in (
        ("distinct_correct_curve", None, "distinct_correct.png", f"distinct correct of {CURVE_SAMPLES} (held-out)"),
        ("entropy", "training_logs", "entropy.png", "policy entropy (training, nats/token)"),
        ("dsdr/frac_all_correct_groups", "training_logs", "frac_all_correct.png", "all-correct groups (training)"),
        ("dsdr/within_group_cosine", "training_logs", "within_group_cosine.png", "within-group cosine (training)"),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for method, entry in methods.items():
            series = entry[source][key] if source else entry[key]
            if series["step"]:
                band(ax, series, LABELS.get(method, method), style[method])
        save(fig, ax, name, "training step", ylabel, f"{ylabel} (95 % CI)")

    if results["mechanism"]:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
        for method, entry in results["mechanism"].items():
            band(axes[0], entry["distinct"], LABELS.get(method, method))
            band(axes[1], entry["entropy"], LABELS.get(method, method))
        axes[0].set(xlabel="training step", ylabel="distinct correct solutions (of 64)")
        axes[1].set(xlabel="training step", ylabel="entropy over correct solutions (nats)")
        axes[0].legend(fontsize=7)
        fig.suptitle("Mechanism: RL on all-correct prompts only (95 % CI over prompts and seeds)")
        fig.tight_layout()
        fig.savefig(output_dir / "mechanism.png", dpi=90)
        plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = study_arguments(__doc__, MODES, HERE / "results")
    parser.add_argument("--part", choices=("all", "comparison", "mechanism", "aggregate"), default="all",
                        help="what to run; 'aggregate' only aggregates the runs finished so far")
    args = parser.parse_args(argv)
    mode, output_dir, seeds = study_setup(args, MODES, HERE / "results")

    study = Study(mode, output_dir)
    regime = study.regime()
    print(f"[saturated] regime: train success {regime['train_success']:.3f}, all-correct groups "
          f"{regime['frac_all_correct_groups']:.3f}", file=sys.stderr, flush=True)
    parts = {"comparison": (mode.methods, study.run), "mechanism": (mode.mechanism_methods, study.mechanism)}
    for part, (methods, run) in parts.items():
        if args.part not in ("all", part):
            continue
        if part == "comparison":
            study.initial()
        for method in args.methods.split(",") if args.methods else methods:
            if method not in methods:
                continue
            for seed in seeds:
                print(f"[saturated] {part} {method} seed {seed}", file=sys.stderr, flush=True)
                run(method, seed)
    if args.no_aggregate:
        return {}

    def found(directory: Path, methods) -> dict[str, list[dict]]:
        runs = {m: [json.loads(p.read_text()) for p in sorted((directory / m).glob("seed*.json"))] for m in methods}
        return {m: r for m, r in runs.items() if r}

    results, summary = aggregate(study, found(output_dir / "runs", mode.methods),
                                 found(output_dir / "mechanism", mode.mechanism_methods))
    (output_dir / "results.json").write_text(json.dumps(results, indent=1))
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    table = markdown_tables(results)
    (output_dir / "table.md").write_text(table)
    plot(results, output_dir)
    print(table)
    return summary


if __name__ == "__main__":
    main()
