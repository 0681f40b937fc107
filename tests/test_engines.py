"""The engines accelerate launches, really run on 2 gloo CPU processes: DDP, DeepSpeed ZeRO-2 and ZeRO-3, FSDP2.

Each engine's run (tests/engine_worker.py, launched with the shipped accelerate config adapted for CPU) trains a
GRPOTrainer, a DSDRTrainer and a DSDRTrainer resumed from its first checkpoint. Sampling and rewards are the same in
every run (same seed, same machine, a deterministic reward), and every group of 4 completions straddles the two
processes (2 rows each), so DSDR's metrics and parameters under each engine must equal the DDP run's up to float
rounding. CPU processes prove the engines' logic (sharding, gathering, saving and loading state); not GPU kernels,
NCCL, mixed precision or memory.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from dsdr_trl.recipes import recipe_path
from tests.engine_worker import ENGINES
from tests.processes import free_port, kill, processes_with_environment, run_process_group
from tests.test_train_script import PROBLEMS

pytest.importorskip("deepspeed", reason="the engine tests need DeepSpeed: pip install -e '.[deepspeed]'")
pytestmark = [pytest.mark.engines, pytest.mark.distributed]
REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = {"ddp": "ddp", "zero2": "zero2", "zero3": "zero3", "fsdp2": "fsdp"}
SHARDING_ENGINES = ("zero2", "zero3", "fsdp2")


def cpu_accelerate_config(engine: str, directory: Path) -> Path:
    """The shipped accelerate config of `engine`, changed only where 2 CPU processes need it: 2 processes, no mixed
    precision; for ZeRO-3 a DeepSpeed file that keeps every parameter sharded (DeepSpeed's default persistence
    threshold keeps parameters this small whole), with the shipped config's other ZeRO-3 settings."""
    config = yaml.safe_load(recipe_path(f"accelerate/{SHIPPED_CONFIG[engine]}").read_text(encoding="utf-8"))
    config.update(num_processes=2, mixed_precision="no")
    config.pop("gpu_ids", None)
    if engine == "zero3":
        shipped = config.pop("deepspeed_config")
        del config["mixed_precision"]  # accelerate refuses it next to a DeepSpeed file: no fp16/bf16 section is fp32
        deepspeed = {
            "zero_optimization": {
                "stage": shipped["zero_stage"],
                "offload_optimizer": {"device": shipped["offload_optimizer_device"]},
                "offload_param": {"device": shipped["offload_param_device"]},
                "stage3_gather_16bit_weights_on_model_save": shipped["zero3_save_16bit_model"],
                "stage3_param_persistence_threshold": 0,
            },
            **dict.fromkeys(
                ["train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"],
                "auto",
            ),
        }
        deepspeed_file = directory / "zero3-cpu.json"
        deepspeed_file.write_text(json.dumps(deepspeed), encoding="utf-8")
        config["deepspeed_config"] = {
            "deepspeed_config_file": str(deepspeed_file),
            "deepspeed_multinode_launcher": shipped["deepspeed_multinode_launcher"],
            "zero3_init_flag": shipped["zero3_init_flag"],
        }
    path = directory / f"{engine}-cpu.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def launch(engine: str, directory: Path, module_and_arguments: list[str], timeout: float = 400):
    """`accelerate launch` with the engine's CPU config, from `directory`; returns the completed run and the
    processes still alive afterwards that it started (found by an environment entry every descendant inherits)."""
    run_id = uuid.uuid4().hex
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(cpu_accelerate_config(engine, directory)), "--main_process_port", str(free_port()),
        "-m", *module_and_arguments,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "DSDR_TEST_RUN": run_id}
    completed = run_process_group(command, timeout=timeout, cwd=directory, env=env)
    left = processes_with_environment(f"DSDR_TEST_RUN={run_id}")
    kill(left)
    return completed, left


@pytest.fixture(scope="session")
def engine_runs(tmp_path_factory, tiny_model_dir, minilm_path):
    """Launches each engine's worker once, on first use; returns {engine: what rank 0 saved}. A failed launch fails
    every test that uses it, with its output, without launching again."""
    runs, failures = {}, {}

    def run(engine: str) -> dict:
        if engine not in runs and engine not in failures:
            directory = tmp_path_factory.mktemp(engine)
            result = directory / "result.pt"
            arguments = ["tests.engine_worker", engine, str(result), tiny_model_dir, minilm_path, str(directory)]
            completed, _ = launch(engine, directory, arguments)
            if completed.returncode == 0:
                runs[engine] = torch.load(result, weights_only=False)
            else:
                failures[engine] = completed.stderr[-6000:]
        if engine in failures:
            pytest.fail(f"the {engine} run failed:\n{failures[engine]}")
        return runs[engine]

    return run


@pytest.mark.parametrize("engine", ENGINES)
def test_the_engine_really_ran(engine_runs, engine):
    for trainer in ("grpo", "dsdr"):
        facts = engine_runs(engine)[trainer]["engine"]
        assert facts["num_processes"] == 2, facts
        parameters = facts["parameters"]
        if engine == "ddp":
            assert (facts["distributed_type"], facts["wrapper"]) == ("MULTI_CPU", "DistributedDataParallel"), facts
        elif engine in ("zero2", "zero3"):
            assert (facts["distributed_type"], facts["wrapper"]) == ("DEEPSPEED", "DeepSpeedEngine"), facts
        if engine == "zero2":  # optimizer states (and gradients) sharded, parameters whole
            assert (facts["zero_stage"], facts["optimizer"], facts["sharded"]) == (2, "DeepSpeedZeroOptimizer", 0)
            assert facts["optimizer_partition_fraction"] == pytest.approx(0.5, abs=0.01), facts
        if engine == "zero3":  # every parameter sharded, the threshold of 0 kept even the smallest ones sharded
            assert (facts["zero_stage"], facts["optimizer"]) == (3, "DeepSpeedZeroOptimizer_Stage3"), facts
            assert facts["sharded"] == parameters, facts
        if engine == "fsdp2":  # every parameter a DTensor split along its first dimension
            assert (facts["distributed_type"], facts["fsdp_version"]) == ("FSDP", 2), facts
            assert facts["sharded"] == parameters, facts


def test_ddp_reference_trained(engine_runs, tiny_model_dir):
    """The comparisons below are not trivial: training moved every run's parameters, with both DSDR terms on.

    Whatever was sampled: the worker's `alternating_reward` makes every group half correct at every step, so the
    advantages are never all 0 and the correct-only metrics are logged at every step, on any CPU."""
    initial = load_file(Path(tiny_model_dir) / "model.safetensors")
    reference = engine_runs("ddp")
    for trainer in ("grpo", "dsdr"):
        final = reference[trainer]["parameters"]
        assert max((final[name] - initial[name]).abs().max().item() for name in initial) > 1e-3
    metrics = reference["dsdr"]["metrics"]
    assert len(metrics) == 2 and all(len(step) > 5 for step in metrics)
    assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in metrics)
    assert {"dsdr/diversity/mean", "dsdr/local_entropy/correct_mean"} <= metrics[0].keys()


@pytest.mark.parametrize("engine", SHARDING_ENGINES)
def test_parameters_and_dsdr_metrics_equal_ddp(engine_runs, engine):
    run, reference = engine_runs(engine), engine_runs("ddp")
    for trainer in ("grpo", "dsdr"):
        parameters, expected = run[trainer]["parameters"], reference[trainer]["parameters"]
        assert parameters.keys() == expected.keys()
        for name in expected:
            torch.testing.assert_close(parameters[name], expected[name], atol=1e-5, rtol=1e-5, msg=f"{trainer} {name}")
    metrics, expected_metrics = run["dsdr"]["metrics"], reference["dsdr"]["metrics"]
    assert [step.keys() for step in metrics] == [step.keys() for step in expected_metrics]
    for step, expected_step in zip(metrics, expected_metrics, strict=True):
        for name in expected_step:
            assert step[name] == pytest.approx(expected_step[name], abs=1e-6), name


@pytest.mark.parametrize("engine", ENGINES)
def test_resuming_from_a_checkpoint_equals_the_uninterrupted_run(engine_runs, engine):
    """The checkpoint after step 1 restores parameters, optimizer state and random state: step 2 samples the same
    completions (same metrics) and ends at the same parameters."""
    run = engine_runs(engine)
    uninterrupted, resumed = run["dsdr"], run["resumed"]
    assert resumed["metrics"][-1] == pytest.approx(uninterrupted["metrics"][-1], abs=1e-6)
    for name, expected in uninterrupted["parameters"].items():
        torch.testing.assert_close(resumed["parameters"][name], expected, atol=1e-6, rtol=1e-6, msg=name)


@pytest.mark.parametrize("engine", ["zero3", "fsdp2"])
def test_the_train_entry_point_runs_the_engine_and_leaves_no_process(engine, tmp_path, tiny_model_dir, minilm_path):
    """`accelerate launch -m dsdr_trl.scripts.train --config tiny_cpu`, as a user runs it (FSDP through the test
    worker's `train`, which turns FSDP on for CPU processes first). math_accuracy grades in a child process of each
    rank: once the launcher has exited, none of the processes it started may be left."""
    data = tmp_path / "tiny-math.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "solution": s}) + "\n" for p, s in PROBLEMS), encoding="utf-8")
    module = {"zero3": "dsdr_trl.scripts.train", "fsdp2": "tests.engine_worker train"}[engine].split()
    arguments = [
        *module, "--config", "tiny_cpu", "--model_name_or_path", tiny_model_dir, "--dataset_name", str(data),
        "--semantic_model", minilm_path, "--reward_funcs", "math_accuracy", "--output_dir", "run",
        "--per_device_train_batch_size", "2", "--max_completion_length", "16", "--max_steps", "1",
        "--save_strategy", "steps", "--save_steps", "1",
    ]  # fmt: skip
    if engine == "zero3":  # accelerate ignores DeepSpeed when use_cpu is set (the recipe sets it); no bf16 on CPU
        arguments += ["--use_cpu", "false", "--ddp_backend", "gloo", "--bf16", "false"]
    completed, left = launch(engine, tmp_path, arguments)
    assert completed.returncode == 0, completed.stderr[-6000:]
    assert left == [], f"processes left after the run: {left}"
    checkpoint = tmp_path / "run" / "checkpoint-1"
    if engine == "zero3":  # one ZeRO partition of the optimizer state per process
        assert len(list(checkpoint.glob("global_step1/*optim_states.pt"))) == 2, sorted(checkpoint.rglob("*"))
    else:  # FSDP's own checkpoint files (the shipped config saves full state dicts)
        assert {"pytorch_model_fsdp.bin", "optimizer.bin"} <= {path.name for path in checkpoint.iterdir()}
    final = load_file(tmp_path / "run" / "model.safetensors")  # the final model, gathered whole
    initial = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert all(final[name].shape == tensor.shape for name, tensor in initial.items())
