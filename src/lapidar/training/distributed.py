"""Data parallelism on established engines: torch.distributed processes started by torchrun, wrapped by accelerate.

lapidar has no distributed layer of its own. `torchrun` (or `accelerate launch`, or `lapidar train --nproc N`, which
runs torchrun) starts the processes and sets RANK/WORLD_SIZE; `join()` lets accelerate open the process group (gloo
on CPU, NCCL on GPUs) and wrap the model in DistributedDataParallel. The loop asks `World` for the few collective
operations it needs:

- `shard(batch)`: the rows of a global micro-batch this process trains on. The global batches are the ones a single
  process with `batch_size x world_size` would use, so the data order and the loss do not depend on the world size.
- `sum(values)`: token counts, losses and statistics summed over the processes before anything is logged or
  normalised (see `loop._world_scale`).
- `any(flag)`: one decision for all processes (stop requested, loss diverged).
- `main`: only process 0 writes the run directory, metrics, TensorBoard and weights.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "SHARDED",
    "STRATEGIES",
    "World",
    "check_strategy",
    "in_launched_process",
    "join",
    "launch",
    "launch_ray",
    "unwrap",
]

STRATEGIES = ("ddp", "fsdp", "zero2", "zero3", "zero3-offload")
# Strategies that split weights/gradients/optimiser states over the processes (ddp keeps a whole copy in each).
SHARDED = {"fsdp": 3, "zero2": 2, "zero3": 3, "zero3-offload": 3}  # strategy -> the ZeRO stage it amounts to


def check_strategy(strategy: str, cuda: bool | None = None) -> None:
    """Refuse, before data or weights load, a `--strategy` this machine or this install cannot run.

    DeepSpeed ZeRO runs on CUDA GPUs only; accelerate 1.16 builds FSDP only on GPUs (with `cpu=True` its
    Accelerator is MULTI_CPU and ignores an FSDP plugin: the model would silently be DDP-wrapped instead).
    """
    from lapidar.errors import UserError

    if strategy not in STRATEGIES:
        raise UserError(f"--strategy {strategy}: use one of {', '.join(STRATEGIES)}")
    if strategy == "ddp":
        return
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if strategy.startswith("zero"):
        missing = [] if cuda else ["CUDA GPUs (this machine has none)"]
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            missing.append("the deepspeed package (pip install 'lapidar[deepspeed]')")
        if missing:
            raise UserError(
                f"--strategy {strategy} is DeepSpeed ZeRO, which needs {' and '.join(missing)}; "
                "here use --strategy ddp (every process holds the whole model)"
            )
    elif not cuda:
        raise UserError(
            "--strategy fsdp needs CUDA GPUs: accelerate builds FSDP only on GPUs (on CPU its Accelerator is "
            "MULTI_CPU and would wrap the model in DDP instead); on CPU use --strategy ddp"
        )
    # The GPU paths are not wired into the loop yet: saying so beats a run that silently trains as DDP.
    raise UserError(
        f"--strategy {strategy} is not built into lapidar's training loop yet (it needs the optimiser prepared "
        "by accelerate with the model and full state dicts gathered for saving); use --strategy ddp, or estimate "
        f"the sharded run with `lapidar estimate --strategy {strategy} --gpus N`"
    )


def unwrap(model: Any) -> Any:
    """The module inside a DDP/FSDP wrapper (the peft or transformers model itself)."""
    while isinstance(getattr(model, "module", None), torch.nn.Module):
        model = model.module
    return model


@dataclass
class World:
    """This process's place among the training processes (one process: rank 0 of 1, and every call a no-op)."""

    rank: int = 0
    size: int = 1
    accelerator: Any = None  # accelerate.Accelerator when size > 1

    @property
    def main(self) -> bool:
        """Whether this process writes files and talks to the user."""
        return self.rank == 0

    def wrap(self, model: Any) -> Any:
        """The model the training forward/backward goes through: DDP-wrapped when there are several processes."""
        if self.size == 1:
            return model
        return self.accelerator.prepare_model(model)

    def no_sync(self, model: Any, last: bool) -> AbstractContextManager:
        """Skip DDP's gradient all-reduce on micro-batches before the last of an accumulated step (same result)."""
        if self.size == 1 or last or not hasattr(model, "no_sync"):
            return nullcontext()
        return model.no_sync()

    def shard(self, batch: Sequence[Any], per_process: int) -> tuple[list[Any], bool]:
        """This process's rows of a global micro-batch of up to `per_process x size` rows, and whether they are filler.

        The last batch of an epoch can hold fewer rows than processes; a process left without rows gets the batch's
        first row as filler, whose loss the caller multiplies by zero (every process must run forward and backward,
        or DDP's gradient all-reduce waits forever).
        """
        if self.size == 1:
            return list(batch), False
        mine = list(batch[self.rank * per_process : (self.rank + 1) * per_process])
        return (mine, False) if mine else ([batch[0]], True)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums of `values` over all processes."""
        if self.size == 1:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=self.accelerator.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def union(self, keys: Sequence[str]) -> list[str]:
        """The sorted union of every process's `keys` (a process that saw no rows has no statistics to name)."""
        if self.size == 1:
            return sorted(keys)
        every: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(every, list(keys))
        return sorted({k for ks in every for k in ks})

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on any."""
        return bool(self.sum([float(flag)])[0]) if self.size > 1 else flag

    def broadcast(self, value: Any) -> Any:
        """Process 0's `value` (any picklable object), on every process."""
        if self.size == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.size > 1:
            torch.distributed.barrier()


def in_launched_process() -> bool:
    """Whether torchrun / accelerate launch started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join() -> World:
    """Join the process group torchrun set up (one process: a World of size 1, nothing initialised)."""
    if not in_launched_process():
        return World()
    from accelerate import Accelerator

    # accelerate reads RANK/WORLD_SIZE/MASTER_ADDR from torchrun and opens the group: gloo on CPU, NCCL on GPUs.
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    return World(accelerator.process_index, accelerator.num_processes, accelerator)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(nproc: int, args: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Run lapidar with `args` in `nproc` processes on this machine with torchrun; returns their exit status.

    torchrun is torch's own launcher (`python -m torch.distributed.run`): it sets RANK/WORLD_SIZE/MASTER_* for each
    process, forwards SIGINT/SIGTERM to them and stops the others when one fails.
    """
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        "--nnodes=1",
        "--master-addr=127.0.0.1",
        f"--master-port={_free_port()}",
        "-m",
        "lapidar",
        *args,
    ]
    full_env = {**os.environ, **(env or {})}
    # Each process gets an equal share of the cores (torchrun would otherwise set 1 thread and warn).
    full_env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(command, env=full_env)


def launch_ray(nproc: int, worker: Any, config: dict[str, Any], storage: str) -> None:
    """Run `worker(config)` in `nproc` Ray Train workers (TorchTrainer): on the cluster at $RAY_ADDRESS, or a local
    Ray started here. Ray Train opens the torch process group (gloo on CPU, NCCL on GPUs) and sets RANK/WORLD_SIZE
    as torchrun does, so `join()` finds the same world; `storage` is where Ray keeps its own records."""
    from lapidar.errors import UserError

    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError as e:
        raise UserError(f"--launcher ray needs Ray Train ({e.name} is missing): pip install 'lapidar[ray]'") from e
    address = os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=True)
        except ConnectionError as e:
            raise UserError(
                f"--launcher ray: cannot reach the Ray cluster at RAY_ADDRESS={address} ({e}); start one with "
                "`ray start --head` and set RAY_ADDRESS to the address it prints, or unset RAY_ADDRESS for a local Ray"
            ) from e
    trainer = TorchTrainer(
        worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=nproc, use_gpu=torch.cuda.is_available()),
        run_config=RunConfig(storage_path=storage, name="ray"),
    )
    try:
        trainer.fit()
    except Exception as e:  # Ray wraps a worker's error; its message (a UserError's line) is what matters
        raise UserError(f"the Ray Train workers failed: {str(e).strip().splitlines()[-1]}") from e
