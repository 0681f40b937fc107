"""DSDR's one GPU check: every figure that needs a CUDA GPU, in one command and one JSON.

    python3 benchmarks/device_check.py --output-dir DIR   # one CUDA GPU: about 6 minutes, at most 8
    python3 benchmarks/device_check.py --smoke            # the CPU, tiny sizes: every part's code path (CI runs it)

Made for a GPU machine with no internet that has CUDA torch, transformers, accelerate, peft and sentence-transformers:
`python benchmarks/prepare_device_check.py`, run beforehand where pip works, fills `.device-check/` (git ignores it)
with the small pure-Python wheels such a machine lacks (trl, datasets, math-verify and their missing dependencies,
this package), the MATH500 solutions and all-MiniLM-L6-v2's tokenizer files; carry that folder with the working tree.
This driver installs those wheels into a folder under /tmp (nothing else on the machine changes), then runs four
parts, each in a process of its own with a time limit, so that a part that fails or overruns costs only itself:

1. local_term: DSDR's loss + backward against GRPO's on the same micro-batch (4 completions of 4,096 tokens after
   256-token prompts), with Qwen2.5-Math-1.5B's shape (random weights) under bf16 autocast, as Trainer.train()
   prepares the model: time and torch.cuda.max_memory_allocated ratios (targets <= 1.03 and <= 1.02).
2. scorer: DiversityScorer with all-MiniLM-L6-v2's architecture (random weights, half precision on the GPU) over one
   generation batch of the paper's size, 2,048 completions of 4,096 encoder tokens: seconds per generation batch,
   and at most what share of a step that is (see SCORER_SHARE_NOTE).
3. cuda_tests: tests/test_cuda.py, the tests that only run on a GPU.
4. gpu_step: benchmarks/gpu_step.py at its documented size, DSDR's full training step against GRPO's
   (target <= 1.05, stretch 1.02), with the scorer's share of the DSDR step; last, with what the others left of
   the parts' 450 s.

Every model is built from its config with random weights of the real shapes; nothing is downloaded. Writes
device_check.json and one log per part into --output-dir, and prints the JSON as its last line. On a machine
without CUDA only --smoke runs.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import common  # noqa: I001  (first: puts the repo on sys.path, sets HF_HUB_OFFLINE)
import torch
from packaging.utils import canonicalize_name

from tests.processes import run_process_group

CARRY = common.REPO / ".device-check"
CARRIED_DATA = CARRY / "math500_solutions.jsonl"
CARRIED_TOKENIZER = CARRY / "minilm_tokenizer"
CARRIED_WHEELS = CARRY / "wheels"
SITE = Path(tempfile.gettempdir()) / "dsdr-device-check-site"

# gpu_step, the longest, runs last and gets whatever the others left of the parts' budget (at least 205 s).
PART_NAMES = ("local_term", "scorer", "cuda_tests", "gpu_step")
PARTS_BUDGET_S = 450  # with the wheels and start-up, the check ends within 8 minutes
GPU_LIMITS_S = {"local_term": 75, "scorer": 80, "cuda_tests": 90}
SMOKE_LIMIT_S = 300  # per part on a CPU: only a guard against a hang

# The policy of the paper's Qwen2.5-Math-1.5B runs (4K responses), as Qwen2Config fields.
QWEN2_5_MATH_1_5B = dict(
    vocab_size=151936,
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    max_position_embeddings=8192,
)
# A generation batch of the paper: 256 prompts x G = 8 completions, responses of up to 4,096 tokens (Qwen2.5-Math).
PAPER_COMPLETIONS, PAPER_RESPONSE_TOKENS = 256 * common.GROUP_SIZE, 4096

SIZES = {
    "gpu": dict(
        gpu_step_args=[],
        local=dict(policy=QWEN2_5_MATH_1_5B, rows=4, prompt=256, completion=4096, bf16=True),
        local_repeats=8,
        memory_repeats=2,
        scorer_set=("4K", PAPER_COMPLETIONS, PAPER_RESPONSE_TOKENS),
        scorer_repeats=2,
    ),
    "smoke": dict(
        gpu_step_args=["--device", "cpu", "--tiny"],
        local=dict(
            policy=common.small_policy(hidden=32, layers=1, vocab=1024), rows=4, prompt=16, completion=64, bf16=True
        ),
        local_repeats=2,
        memory_repeats=1,
        scorer_set=("64", 16, 64),
        scorer_repeats=1,
    ),
}

TARGETS = {
    "step_time_ratio_gpu": ("<=", 1.05),
    "step_scorer_share": (None, None),
    "local_term_time_ratio_bf16": ("<=", 1.03),
    "local_term_peak_mem_ratio_bf16": ("<=", 1.02),
    "scorer_s_per_generation_batch": (None, None),
    "scorer_share_of_step_at_most": (None, None),
    "cuda_tests_failed": ("==", 0),
}
SCORER_SHARE_NOTE = (
    "scorer seconds / (scorer seconds + the policy's loss + backward for the same number of completions, from "
    "local_term): a real step also generates, may recompute old log-probs and steps the optimizer, so it is longer "
    "and the scorer's real share smaller"
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the parts (each runs in a child process: `device_check.py --part NAME --result FILE`) ----------------------------


def part_gpu_step(sizes: dict, device: str) -> dict:
    import gpu_step

    result = gpu_step.main(sizes["gpu_step_args"])
    result["step_time_ratio"] = result.pop("step_time_ratio_gpu" if device == "cuda" else "step_time_ratio_smoke")
    return result


def part_local_term(sizes: dict, device: str) -> dict:
    import run

    result = run.bench_local_term(sizes, common.load_rows(), device)
    result["grpo_s_per_completion"] = result["grpo_s"] / sizes["local"]["rows"]
    result["autocast"] = "bfloat16" if sizes["local"]["bf16"] else None
    return result


def part_scorer(sizes: dict, device: str) -> dict:
    import run

    shape = common.MINILM_SHAPE if device == "cuda" else common.TINY_ENCODER_SHAPE
    encoder = common.random_encoder(shape, device)
    cfg = dict(scorer_sets=[sizes["scorer_set"]], scorer_repeats=sizes["scorer_repeats"])
    result = run.bench_scorer_vs_encode(cfg, common.load_rows(), encoder, device)
    parameter = next(encoder.parameters())  # the scorer converts its encoder in place
    result["encoder"] = dict(shape, dtype=str(parameter.dtype), device=str(parameter.device))
    return result


def part_cuda_tests(sizes: dict, device: str) -> dict:
    report = Path(tempfile.mkdtemp(prefix="dsdr-cuda-tests-")) / "junit.xml"
    command = [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-q", "-rs", "-p", "no:cacheprovider",
               f"--junitxml={report}"]
    exit_code = subprocess.run(command, cwd=common.REPO, stdout=sys.stderr).returncode
    if exit_code not in (0, 1):  # 1: some tests failed, counted below; anything else: pytest could not run them
        raise RuntimeError(f"pytest could not run tests/test_cuda.py (exit code {exit_code})")
    outcomes = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        found = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name")] = found[0] if found else "passed"
    counts = {name: sum(outcome == name for outcome in outcomes.values()) for name in ("passed", "skipped")}
    failed = sum(outcome in ("failure", "error") for outcome in outcomes.values())
    return {"exit_code": exit_code, **counts, "failed": failed, "tests": outcomes}


PARTS = {"gpu_step": part_gpu_step, "local_term": part_local_term, "scorer": part_scorer, "cuda_tests": part_cuda_tests}


# -- the driver -------------------------------------------------------------------------------------------------------


def install_carried_wheels(output_dir: Path) -> dict:
    """pip-installs .device-check/wheels into SITE, without dependencies or an index; what pip check then says of
    the carried distributions is the record of any version they would not accept."""
    wheels = sorted(CARRIED_WHEELS.glob("*.whl"))
    if not wheels:
        return {"wheels": []}
    started = time.perf_counter()
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
         "--upgrade", "--target", str(SITE), *map(str, wheels)],
        capture_output=True, text=True,
    )
    (output_dir / "install.log").write_text(install.stdout + install.stderr)
    if install.returncode != 0:
        sys.exit(f"installing the carried wheels failed (pip exit {install.returncode}):\n{install.stderr[-3000:]}")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))  # children
    sys.path.insert(0, str(SITE))  # this process: machine() reads the carried distributions' versions
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    carried = {canonicalize_name(wheel.name.split("-")[0]) for wheel in wheels}  # name-version-tags.whl
    return {
        "wheels": [wheel.name for wheel in wheels],
        "install_s": round(time.perf_counter() - started, 1),
        # pip check's lines read "name version has requirement ..." / "name version requires ..."
        "pip_check": [
            line for line in check.stdout.splitlines() if line and canonicalize_name(line.split()[0]) in carried
        ],
    }


def carried_files_environment() -> dict:
    """Points the benchmarks at the carried data and tokenizer, where the shared copies are not on this machine."""
    found = {}
    for variable, path in (("DSDR_BENCH_DATA", CARRIED_DATA), ("DSDR_BENCH_ENCODER_TOKENIZER", CARRIED_TOKENIZER)):
        if path.exists() and not os.environ.get(variable):
            os.environ[variable] = str(path)
        found[variable] = os.environ.get(variable)
    return found


def run_part(name: str, smoke: bool, limit_s: float, output_dir: Path) -> dict:
    result_file = output_dir / f"{name}.result.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--part", name, "--result", str(result_file)]
    command += ["--smoke"] if smoke else []
    environment = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    started = time.perf_counter()
    try:
        completed = run_process_group(command, timeout=limit_s, cwd=common.REPO, env=environment)
        output, error = completed.stdout + completed.stderr, None if completed.returncode == 0 else (
            f"exit code {completed.returncode}")
    except AssertionError as timeout:  # run_process_group's report of a part killed at its limit
        output, error = str(timeout), f"stopped at its limit of {limit_s:.0f} s"
    seconds = round(time.perf_counter() - started, 1)
    (output_dir / f"{name}.log").write_text(output)
    if error is None and result_file.is_file():
        result = json.loads(result_file.read_text())
        result_file.unlink()
        log(f"  {name}: done in {seconds} s")
        return dict(result, part_s=seconds)
    error = error or "no result written"
    log(f"  {name}: FAILED ({error}) after {seconds} s; the end of its log:\n" + "\n".join(output.splitlines()[-25:]))
    return {"error": error, "part_s": seconds}


def machine() -> dict:
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_cuda": torch.version.cuda,
        "packages": {},
    }
    for name in ("torch", "transformers", "accelerate", "peft", "sentence-transformers", "tokenizers", "trl",
                 "datasets", "math-verify", "dsdr-trl"):
        try:
            info["packages"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info["packages"][name] = None
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": properties.name,
            "count": torch.cuda.device_count(),
            "memory_gib": round(properties.total_memory / 2**30, 1),
            "multiprocessors": properties.multi_processor_count,
            "capability": f"{properties.major}.{properties.minor}",
        }
        if shutil.which("nvidia-smi"):
            query = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                   capture_output=True, text=True)
            info["gpu"]["driver"] = query.stdout.strip() or None
    prepared = CARRY / "prepared.json"
    if prepared.is_file():  # which commit the carried wheels were built from, and when (checksums: in that file)
        info["carried"] = {key: value for key, value in json.loads(prepared.read_text()).items() if key != "files"}
    return info


def headline_of(parts: dict) -> dict:
    local, scorer, tests, step = (parts[name] for name in PART_NAMES)
    update_s = None
    if "error" not in local and "error" not in scorer:
        update_s = local["grpo_s_per_completion"] * scorer["completions"]
    return {
        "step_time_ratio_gpu": step.get("step_time_ratio"),
        "step_scorer_share": step.get("scorer_share"),
        "local_term_time_ratio_bf16": _rounded(local.get("time_ratio")),
        "local_term_peak_mem_ratio_bf16": _rounded(local.get("peak_mem_ratio")),
        "scorer_s_per_generation_batch": _rounded(scorer.get("scorer_s")),
        "scorer_share_of_step_at_most": None if update_s is None else _rounded(
            scorer["scorer_s"] / (scorer["scorer_s"] + update_s)),
        "cuda_tests_failed": tests.get("failed"),
    }


def _rounded(value):
    return None if value is None else round(value, 4)


def table(headline: dict) -> str:
    width = max(map(len, headline))
    lines = [f"{'measurement':<{width}}  {'value':>8}  target"]
    for key, value in headline.items():
        shown = "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
        verdict = "no figure (see its log)" if value is None else common.verdict(*TARGETS[key], value)
        lines.append(f"{key:<{width}}  {shown:>8}  {verdict}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks every part's code path")
    parser.add_argument("--output-dir", type=Path, default=Path("device_check"),
                        help="where device_check.json and the parts' logs go (default ./device_check)")
    parser.add_argument("--part", choices=PART_NAMES, help=argparse.SUPPRESS)  # a child process: one part
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = "cpu" if args.smoke else "cuda"
    if not args.smoke and not torch.cuda.is_available():
        sys.exit(
            "device_check.py measures DSDR on a CUDA GPU, and torch sees none here "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). Run it on a machine with a GPU, or "
            "check its code paths on the CPU with `python benchmarks/device_check.py --smoke`."
        )
    sizes = SIZES["smoke" if args.smoke else "gpu"]
    if args.part:
        result = PARTS[args.part](sizes, device)
        args.result.write_text(json.dumps(result))
        return result

    started = time.perf_counter()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    # The smoke run checks this environment's packages (CI's); only the real run installs the carried ones.
    installed = {"wheels": [], "skipped": "smoke run"} if args.smoke else install_carried_wheels(args.output_dir)
    missing = [name for name in ("trl", "datasets", "math_verify") if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(
            f"{', '.join(missing)} not installed here, and no carried wheels provide them: run `python "
            "benchmarks/prepare_device_check.py` where pip works, and bring .device-check/ with the tree."
        )
    carried_files = carried_files_environment()
    log(f"DSDR device check ({'smoke, cpu' if args.smoke else 'cuda'}): {', '.join(PART_NAMES)}")
    parts, parts_started = {}, time.perf_counter()
    for name in PART_NAMES:
        left_s = PARTS_BUDGET_S - (time.perf_counter() - parts_started)
        limit_s = SMOKE_LIMIT_S if args.smoke else GPU_LIMITS_S.get(name, left_s)
        parts[name] = run_part(name, args.smoke, limit_s, args.output_dir)
    headline = headline_of(parts)
    record = {
        "mode": "smoke" if args.smoke else "gpu",
        "headline": headline,
        "targets": {key: list(value) for key, value in TARGETS.items()},
        "notes": {
            "step_time_ratio_gpu": "stretch target 1.02",
            "scorer_share_of_step_at_most": SCORER_SHARE_NOTE,
        },
        "machine": machine(),
        "carried_wheels": installed,
        "carried_files": carried_files,
        "parts": parts,
        "total_s": round(time.perf_counter() - started, 1),
    }
    output = args.output_dir / "device_check.json"
    output.write_text(json.dumps(record, indent=2) + "\n")
    gpu = record["machine"].get("gpu", {}).get("name", "no GPU")
    print(f"DSDR device check ({record['mode']}, {gpu}, {record['total_s']:.0f} s); every figure: {output}")
    print(table(headline))
    print(json.dumps(record, separators=(",", ":")), flush=True)
    return record


if __name__ == "__main__":
    main()
