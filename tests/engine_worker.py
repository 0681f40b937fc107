"""Run by tests/test_engines.py under `accelerate launch` with 2 CPU processes, once per engine.

Each process trains, in turn, a GRPOTrainer, a DSDRTrainer that saves a checkpoint after every step, and a second
DSDRTrainer that resumes from the first checkpoint. Rank 0 saves (torch.save) what the test compares: each run's
engine facts, its full final parameters, and the DSDR run's `dsdr/` metrics.

    python -m tests.engine_worker ENGINE RESULT.pt MODEL_DIR MINILM_DIR WORK_DIR

ENGINE is ddp, zero2, zero3 or fsdp2; the launcher's accelerate config must match it.
`python -m tests.engine_worker train ARGS...` runs `dsdr_trl.scripts.train` with ARGS, FSDP turned on for CPU.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from trl import GRPOConfig, GRPOTrainer

from dsdr_trl import DSDRConfig, DSDRTrainer
from tests.test_trainer import alternating_reward, prompt_dataset

ENGINES = ("ddp", "zero2", "zero3", "fsdp2")


def cpu_settings(engine: str) -> dict:
    """How each engine runs on gloo CPU processes. accelerate ignores DeepSpeed when `use_cpu` is set, so DeepSpeed
    runs with `use_cpu=False` on a machine without an accelerator (the device is then the CPU) and gloo named."""
    if engine in ("zero2", "zero3"):
        return {"use_cpu": False, "ddp_backend": "gloo"}
    return {"use_cpu": True}


def settings(engine: str, output_dir: Path, **overrides) -> dict:
    """Shared by every engine: one group of 4 completions per step, 2 on each process (the group straddles them)."""
    return {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 2,
        "num_generations": 4,
        "max_completion_length": 8,
        "max_steps": 2,
        "learning_rate": 1e-2,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "bf16": False,
        "seed": 7,
        **cpu_settings(engine),
        **overrides,
    }


def enable_fsdp_on_cpu_processes() -> None:
    """The shim that turns accelerate's FSDP on for CPU processes.

    accelerate makes its state FSDP only for GPU-like process groups; on gloo CPU processes (`MULTI_CPU`) it keeps
    the FSDP plugin the launcher asked for (ACCELERATE_USE_FSDP) unused, without a word. After accelerate has set its
    state up, this makes it FSDP with that plugin; everything after (wrapping with `fully_shard`, saving, loading)
    is accelerate's own code.
    """
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    set_up = AcceleratorState.__init__

    def set_up_with_fsdp(self, *args, fsdp_plugin=None, **kwargs):
        set_up(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    AcceleratorState.__init__ = set_up_with_fsdp


def engine_facts(trainer) -> dict:
    """What ran, read from the trained objects (a config that is not applied falls back silently)."""
    accelerator = trainer.accelerator
    facts = {
        "distributed_type": accelerator.distributed_type.value,
        "num_processes": accelerator.num_processes,
        "wrapper": type(trainer.model_wrapped).__name__,
        "parameters": sum(1 for _ in trainer.model_wrapped.parameters()),
    }
    if accelerator.distributed_type == "DEEPSPEED":
        engine = trainer.model_wrapped
        facts["zero_stage"] = engine.zero_optimization_stage()
        facts["optimizer"] = type(engine.optimizer).__name__
        # ZeRO-3: each process holds 1/N of each parameter (ds_tensor), the module's own tensor is empty.
        facts["sharded"] = sum(
            1 for p in engine.module.parameters() if hasattr(p, "ds_tensor") and 0 < p.ds_tensor.numel() < p.ds_numel
        )
        if facts["zero_stage"] == 2:  # ZeRO-2: each process's fp32 optimizer partition is 1/N of the parameters
            partition = sum(group.numel() for group in engine.optimizer.single_partition_of_fp32_groups)
            facts["optimizer_partition_fraction"] = partition / sum(p.numel() for p in engine.module.parameters())
    if accelerator.distributed_type == "FSDP":
        from torch.distributed.tensor import DTensor, Shard

        facts["fsdp_version"] = accelerator.state.fsdp_plugin.fsdp_version
        facts["sharded"] = sum(
            1
            for p in trainer.model_wrapped.parameters()
            if isinstance(p, DTensor) and p.placements == (Shard(0),) and p.to_local().shape[0] < p.shape[0]
        )
    return facts


def full_parameters(trainer) -> dict[str, torch.Tensor]:
    """Every parameter, whole, through accelerate as the Trainer saves them (collective; under ZeRO-3 only the main
    process gets them, the others get an empty dict)."""
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped) or {}
    return {name: tensor.detach().cpu().float().clone() for name, tensor in state.items()}


def dsdr_metrics(trainer) -> list[dict[str, float]]:
    """The `dsdr/` metrics of each logged step (timings left out: they are not a result)."""
    return [
        {k: v for k, v in entry.items() if k.startswith("dsdr/") and not k.endswith("_time_s")}
        for entry in trainer.state.log_history
        if "dsdr/frac_correct" in entry
    ]


def main(engine: str, result_path: str, model_dir: str, minilm_dir: str, work_dir: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "fsdp2":
        enable_fsdp_on_cpu_processes()
    work = Path(work_dir)
    result = {}

    grpo = GRPOTrainer(
        model=model_dir,
        reward_funcs=alternating_reward,
        args=GRPOConfig(**settings(engine, work / "grpo")),
        train_dataset=prompt_dataset(),
    )
    grpo.train()
    result["grpo"] = {"engine": engine_facts(grpo), "parameters": full_parameters(grpo)}

    dsdr_settings = {"semantic_model": minilm_dir, "diversity_coef": 0.1, "local_entropy_coef": 0.1}

    def dsdr_trainer(**overrides) -> DSDRTrainer:
        args = DSDRConfig(**settings(engine, work / "dsdr", **dsdr_settings, **overrides))
        return DSDRTrainer(model=model_dir, reward_funcs=alternating_reward, args=args, train_dataset=prompt_dataset())

    uninterrupted = dsdr_trainer(save_strategy="steps", save_steps=1)
    uninterrupted.train()
    result["dsdr"] = {
        "engine": engine_facts(uninterrupted),
        "parameters": full_parameters(uninterrupted),
        "metrics": dsdr_metrics(uninterrupted),
    }

    resumed = dsdr_trainer()
    resumed.train(resume_from_checkpoint=str(work / "dsdr" / "checkpoint-1"))
    result["resumed"] = {"parameters": full_parameters(resumed), "metrics": dsdr_metrics(resumed)}

    if resumed.accelerator.is_main_process:
        torch.save(result, result_path)


if __name__ == "__main__" and sys.argv[1] == "train":  # the package's train entry point, with the FSDP shim on
    from dsdr_trl.scripts.train import main as train

    enable_fsdp_on_cpu_processes()
    sys.exit(train(sys.argv[2:]))
elif __name__ == "__main__":
    torch.set_num_threads(1)
    main(*sys.argv[1:])
    # As in tests/distributed_worker.py: leave without gloo's teardown (pytorch/pytorch#56297) once all are done.
    torch.distributed.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
