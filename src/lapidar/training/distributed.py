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

import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from lapidar.errors import UserError

__all__ = [
    "DEEPSPEED",
    "ENGINES",
    "ENGINE_DIR",
    "FSDP_DIR",
    "SHARDED",
    "SHARING",
    "STRATEGIES",
    "World",
    "check_strategy",
    "in_launched_process",
    "join",
    "launch",
    "launch_ray",
    "launcher_strategy",
    "unwrap",
]

STRATEGIES = ("ddp", "fsdp", "zero2", "zero3", "zero3-offload")
# Strategies that split weights/gradients/optimiser states over the processes (ddp keeps a whole copy in each).
SHARDED = {"fsdp": 3, "zero2": 2, "zero3": 3, "zero3-offload": 3}  # strategy -> the ZeRO stage it amounts to
DEEPSPEED = ("zero2", "zero3", "zero3-offload")
# The engine that runs each strategy, in the launcher's first line.
ENGINES = {
    "ddp": "DDP through accelerate",
    "fsdp": "torch FSDP2",
    "zero2": "DeepSpeed ZeRO-2",
    "zero3": "DeepSpeed ZeRO-3",
    "zero3-offload": "DeepSpeed ZeRO-3 with CPU offload",
}
# What the first line of a run says about how the processes share the model.
SHARING = {
    "fsdp": "FSDP2: weights, gradients and optimiser states sharded over the processes",
    "zero2": "DeepSpeed ZeRO-2: gradients and optimiser states sharded over the processes",
    "zero3": "DeepSpeed ZeRO-3: weights, gradients and optimiser states sharded over the processes",
    "zero3-offload": "DeepSpeed ZeRO-3: weights, gradients and optimiser states sharded over the processes, "
    "optimiser states and steps in CPU memory",
}


def check_strategy(strategy: str, method: str = "lora", precision: str = "auto") -> None:
    """Refuse, before data or weights load, a `--strategy` this machine, this install or this method cannot run.

    fsdp is torch's FSDP2 (`fully_shard`) and zero2/zero3/zero3-offload DeepSpeed's engine, on CPU (gloo) as on GPUs
    (NCCL): accelerate 1.16 builds neither on CPU (its Accelerator is MULTI_CPU there and would wrap the model in
    DDP), so lapidar calls the two engines itself, the same way on both.
    """
    from lapidar.methods import get_method

    if strategy not in STRATEGIES:
        raise UserError(f"--strategy {strategy}: use one of {', '.join(STRATEGIES)}")
    if strategy == "ddp":
        return
    entry = get_method(method)
    if entry.quant or entry.optimizer:
        what = f"a {entry.quant} bitsandbytes base" if entry.quant else f"the {entry.optimizer} optimiser"
        raise UserError(
            f"--method {method} with --strategy {strategy}: {what} cannot be sharded (each process needs whole "
            f"weights for it); use --strategy ddp with --method {method}, or --method lora with --strategy {strategy}"
        )
    from lapidar.training.hardware import use_fp16

    if use_fp16(precision):
        asked = "--precision fp16" if precision == "fp16" else "fp16 (--precision auto on a GPU without bf16)"
        raise UserError(
            f"{asked} with --strategy {strategy}: lapidar's fp16 loss scaling runs with --strategy ddp only; use "
            f"--strategy ddp, or --precision fp32 with --strategy {strategy}"
        )
    if strategy == "fsdp":
        return
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise UserError(
            f"--strategy {strategy} is DeepSpeed ZeRO, which needs the deepspeed package: pip install "
            "'lapidar[deepspeed]' (it runs on CPU too); or use --strategy fsdp (torch's FSDP2, the same sharding as "
            "ZeRO-3, nothing to install) or --strategy ddp"
        ) from None


# What `accelerate launch` passes its processes (from its FSDP / DeepSpeed options or its config file).
_ACCELERATE_FSDP, _ACCELERATE_DEEPSPEED = "ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"


def launcher_strategy(environ: Mapping[str, str] = os.environ) -> str | None:
    """The strategy `accelerate launch` was asked for (FSDP, or DeepSpeed with a ZeRO stage and offload), or None.

    lapidar drives FSDP2 and DeepSpeed itself with its own settings; the launcher's choice of engine and ZeRO stage
    is what carries over. A stage or offload lapidar does not run is refused, naming the strategies it does run.
    """

    def on(name: str) -> bool:
        return environ.get(name, "false").lower() == "true"

    if on(_ACCELERATE_FSDP):
        return "fsdp"
    if not on(_ACCELERATE_DEEPSPEED):
        return None
    stage = environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    offload = {environ.get("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "none").lower()}
    offload.add(environ.get("ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "none").lower())
    where = "accelerate launch (DeepSpeed)"
    config_file = environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if config_file and config_file.lower() != "none":
        where = f"the DeepSpeed config {config_file}"
        try:
            zero = json.loads(Path(config_file).read_text(encoding="utf-8")).get("zero_optimization", {})
        except (OSError, ValueError, AttributeError) as e:
            raise UserError(
                f"{config_file}: cannot read it as a DeepSpeed JSON config ({e}); fix the file, or launch with "
                "`lapidar train CONFIG --nproc N --strategy zero3`"
            ) from None
        stage = str(zero.get("stage", stage))
        for key in ("offload_optimizer", "offload_param"):
            offload.add(str((zero.get(key) or {}).get("device", "none")).lower())
    offload -= {"none", ""}
    chosen = {("2", False): "zero2", ("3", False): "zero3", ("3", True): "zero3-offload"}.get(
        (str(stage), offload == {"cpu"})
    )
    if chosen is None or offload - {"cpu"} or (chosen == "zero2" and offload):
        asked = f"ZeRO stage {stage}" + (f" with {'/'.join(sorted(offload))} offload" if offload else "")
        raise UserError(
            f"{where} asks for {asked}; lapidar runs ZeRO-2, ZeRO-3 and ZeRO-3 with CPU offload: set "
            "zero_stage 2 or 3 (offload device cpu or none), or launch with "
            "`lapidar train CONFIG --nproc N --strategy zero2|zero3|zero3-offload`"
        )
    return chosen


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
    strategy: str = "ddp"
    engine: Any = None  # the DeepSpeed engine, once `prepare` made it

    @property
    def main(self) -> bool:
        """Whether this process writes files and talks to the user."""
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Whether each process holds only a shard of the optimiser states (and more, by strategy)."""
        return self.size > 1 and self.strategy in SHARDED

    @property
    def sharded_weights(self) -> bool:
        """Whether each process holds only a shard of the weights (every forward is then a collective operation:
        all processes must run the same number of them)."""
        return self.sharded and SHARDED[self.strategy] == 3

    @property
    def deepspeed(self) -> bool:
        """Whether the model trains through a DeepSpeed engine."""
        return self.size > 1 and self.strategy in DEEPSPEED

    def prepare(self, model: Any, build_optimizer: Any, cfg: Any) -> tuple[Any, Any]:
        """(the model training runs through, its optimiser): DDP-wrapped by accelerate, sharded in place by torch's
        FSDP2, or a DeepSpeed engine; `build_optimizer(model)` is called once the parameters are the ones that
        train. The optimiser returned is the torch one (the learning-rate schedule sets its groups' rates)."""
        if self.size == 1:
            return model, build_optimizer(model)
        if self.strategy == "fsdp":
            _fully_shard(model, self.accelerator.device, self.size)
            return model, build_optimizer(model)
        if self.deepspeed:
            optimizer = build_optimizer(model)
            self.engine = _deepspeed_engine(model, optimizer, self.strategy, cfg, self.accelerator.device)
            return self.engine, optimizer
        return self.accelerator.prepare_model(model), build_optimizer(model)

    def backward(self, train_model: Any, loss: torch.Tensor) -> None:
        """Gradients of `loss`, added to those of the step's earlier micro-batches."""
        if self.deepspeed:
            # Not divided by the accumulation steps: the loss is already scaled for the whole global step.
            train_model.backward(loss, scale_wrt_gas=False)
        else:
            loss.backward()

    def step(self, train_model: Any, optimizer: Any, params: list, max_norm: float, scaler: Any = None) -> bool:
        """One optimiser step on the accumulated gradients, clipped to `max_norm`, then gradients cleared; True when
        fp16's gradient `scaler` found them overflowed and skipped the step."""
        if self.deepspeed:
            train_model.step()  # reduces the gradients, clips them (gradient_clipping), steps, clears them
            return False
        skipped = False
        if scaler is not None and scaler.is_enabled():
            scaler.unscale_(optimizer)  # clipping sees the true gradients
            torch.nn.utils.clip_grad_norm_(params, max_norm)
            before = scaler.get_scale()
            scaler.step(optimizer)  # skipped when a gradient is inf/nan
            scaler.update()
            skipped = scaler.get_scale() < before
        else:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return skipped

    def zero_grad(self, train_model: Any, optimizer: Any) -> None:
        """Drop the accumulated gradients without stepping."""
        if self.deepspeed:
            train_model.zero_grad()
        else:
            optimizer.zero_grad(set_to_none=True)

    def weights_to_save(self, model: Any, adapter: bool) -> dict[str, torch.Tensor] | None:
        """The weights `save_pretrained` writes, gathered whole from the shards (on process 0; an empty dict on the
        others); None when the model's own state dict is whole (one process, DDP). Every process must call it."""
        if not self.sharded_weights:
            return None
        if self.deepspeed:
            # ZeRO-3 may still be prefetching weights for a forward that will not come (an evaluation ended the
            # step): wait for them and release every gathered weight before gathering anew.
            self.engine.empty_partition_cache()
            return _gather_zero3(model, adapter, self.main)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        from torch.distributed.tensor import DTensor

        if not adapter:
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            whole = cast(dict[str, torch.Tensor], get_model_state_dict(model, options=options))
            # A tied weight (Qwen's head is its embedding) is gathered once per name: keep the first name only, as
            # save_pretrained does for a model whose tied weights share storage.
            seen: set[int] = set()
            for key, value in model.state_dict(keep_vars=True).items():
                if id(value) in seen:
                    whole.pop(key, None)
                seen.add(id(value))
            return whole
        # Only what peft saves (the adapter, and embeddings where they were resized), not the frozen base: peft picks
        # the entries from the sharded state dict, and just those are gathered.
        raw = model.state_dict()
        picked = _adapter_keys(model, raw)
        out: dict[str, torch.Tensor] = {}
        for key in picked:  # the same keys in the same order on every process: one all-gather each
            value = raw[key]
            full = value.full_tensor() if isinstance(value, DTensor) else value
            if self.main:
                out[key] = full.detach().cpu()
        return out

    def optimizer_state(self, model: Any, optimizer: Any) -> dict | None:
        """The optimiser's state for the checkpoint's state file: a single process's or a DDP replica's; None when
        sharded, where every process writes its own shard instead (`save_engine`)."""
        return None if self.sharded else optimizer.state_dict()

    def save_engine(self, train_model: Any, optimizer: Any, parent: Path) -> Path | None:
        """When sharded: every process writes its shard of the optimiser states under `parent` (DeepSpeed's own
        checkpoint format, or torch.distributed.checkpoint's for fsdp: no process gathers the whole state); returns
        the directory to move into the checkpoint (named ENGINE_DIR or FSDP_DIR), None when not sharded. Every
        process must call it; the directory must be on storage every node sees (as the run directory is)."""
        if not self.sharded:
            return None
        if self.deepspeed:
            path = parent / ENGINE_DIR
            train_model.save_checkpoint(str(path), tag=ENGINE_TAG, exclude_frozen_parameters=True)
        else:
            import torch.distributed.checkpoint as dcp
            from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

            path = parent / FSDP_DIR
            dcp.save({"optimizer": get_optimizer_state_dict(train_model, optimizer)}, checkpoint_id=str(path))
        self.barrier()
        return path

    def load_optimizer_state(self, train_model: Any, optimizer: Any, state: dict | None, checkpoint: Path) -> None:
        """Load what `optimizer_state` (or `save_engine`) saved into `checkpoint`; each process keeps its shard."""
        if self.sharded:
            where = checkpoint / (ENGINE_DIR if self.deepspeed else FSDP_DIR)
            found = (where / ENGINE_TAG).is_dir() if self.deepspeed else (where / ".metadata").is_file()
            if not found:
                raise UserError(
                    f"{checkpoint} holds no {'DeepSpeed' if self.deepspeed else 'FSDP'} optimiser shards "
                    f"({where.name}/): it was not written by a --strategy {self.strategy} run with this many "
                    "processes; resume it with the strategy and number of processes it was trained with (--strategy, --nproc)"
                )
        if self.deepspeed:
            train_model.load_checkpoint(
                str(where), tag=ENGINE_TAG, load_module_strict=False, load_lr_scheduler_states=False
            )
            return
        if self.sharded:
            import torch.distributed.checkpoint as dcp
            from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

            # The shapes to load into are the optimiser's own (torch initialises its states for this).
            target = {"optimizer": get_optimizer_state_dict(train_model, optimizer)}
            dcp.load(target, checkpoint_id=str(where))
            set_optimizer_state_dict(train_model, optimizer, target["optimizer"])
            return
        if state is None:
            raise UserError(
                f"{checkpoint} was written by a sharded run (its optimiser states are in {ENGINE_DIR}/ or "
                f"{FSDP_DIR}/); resume it with the strategy and number of processes it was trained with (--strategy, --nproc)"
            )
        optimizer.load_state_dict(state)

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


def _fully_shard(model: Any, device: torch.device, size: int) -> None:
    """Shard `model` in place with torch's FSDP2: each decoder layer is one unit (its weights are gathered just
    before it runs and freed after), and the rest (embeddings, final norm, head) one more. Gradients are
    reduce-scattered and averaged over the processes, as DDP's all-reduce averages them."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model.to(device)
    mesh = init_device_mesh(device.type, (size,))
    inner = unwrap(model)
    base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    for layer in base.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)


ENGINE_DIR = "deepspeed"  # inside a checkpoint: the DeepSpeed engine's own files (optimiser shards)
FSDP_DIR = "fsdp"  # inside a checkpoint: fsdp's optimiser shards (torch.distributed.checkpoint, one file per process)
ENGINE_TAG = "state"


def _deepspeed_engine(model: Any, optimizer: Any, strategy: str, cfg: Any, device: torch.device) -> Any:
    """A DeepSpeed engine for `model` and the torch `optimizer`, from the shipped config of `strategy`.

    The shipped JSON files leave sizes as "auto" (the convention of accelerate and the HF Trainer, so they work with
    `accelerate launch` too); they are filled here from the run's config and the model's width. lapidar computes
    under torch autocast itself and keeps trainable weights in fp32, so DeepSpeed's own bf16/fp16 modes stay off.
    Gradient accumulation is unmanaged: each micro-batch's backward adds to the gradients, and `step()` (the
    caller's step boundary) reduces them, clips them and steps.
    """
    import logging
    from importlib.resources import files

    import deepspeed

    deepspeed.utils.logger.setLevel(logging.WARNING)
    config = json.loads((files("lapidar.resources") / "strategies" / f"{strategy}.json").read_text())
    hidden = unwrap(model).config.hidden_size
    filled = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.max_grad_norm,
        "reduce_bucket_size": hidden * hidden,
        "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
        "stage3_param_persistence_threshold": 10 * hidden,
    }

    def fill(node: dict) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                fill(value)
            elif value == "auto" and key in filled:
                node[key] = filled[key]

    fill(config)
    config["bf16"] = {"enabled": False}
    config["managed_gradient_accumulation"] = False
    config["steps_per_print"] = 2**31 - 1
    offload = config["zero_optimization"].get("offload_optimizer")
    if offload is not None:
        offload["pin_memory"] = offload.get("pin_memory", False) and device.type == "cuda"
        config["zero_force_ds_cpu_optimizer"] = False  # lapidar's torch optimiser steps on the CPU copies
    model.to(device)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config, dist_init_required=False)
    return engine


def _adapter_keys(model: Any, raw: dict[str, torch.Tensor]) -> list[str]:
    """The keys of `raw` (the model's sharded state dict) that peft saves for the adapter, in peft's order.

    peft is handed each shard's local tensor, so that it only picks: from 0.22 on it gathers the DTensors it picks
    itself, as a collective, which would hand back new tensors of every entry on every process (and gather a
    second time what is gathered here one key at a time)."""
    from peft import get_peft_model_state_dict
    from torch.distributed.tensor import DTensor

    local = {k: v.to_local() if isinstance(v, DTensor) else v for k, v in raw.items()}
    key_of = {id(v): k for k, v in local.items()}
    found = [key_of.get(id(v)) for v in get_peft_model_state_dict(model, state_dict=local).values()]
    keys = [k for k in found if k is not None]
    if len(keys) != len(found):
        raise RuntimeError("peft changed a tensor while picking the adapter's entries; cannot gather them")
    return keys


def _gather_zero3(model: Any, adapter: bool, main: bool) -> dict[str, torch.Tensor]:
    """ZeRO-3's partitioned weights gathered whole, one tensor at a time (on process 0; empty elsewhere): the
    adapter's entries as peft picks them, or the whole model (a tied weight under its first name only)."""
    import deepspeed

    raw = model.state_dict(keep_vars=True)  # the partitioned parameters themselves
    if adapter:
        keys = _adapter_keys(model, raw)
    else:
        seen: set[int] = set()
        keys = []
        for key, value in raw.items():
            if id(value) not in seen:
                keys.append(key)
            seen.add(id(value))
    out: dict[str, torch.Tensor] = {}
    for key in keys:  # the same keys in the same order on every process
        value = raw[key]
        if hasattr(value, "ds_id"):
            with deepspeed.zero.GatheredParameters([value], modifier_rank=None):
                if main:
                    out[key] = value.detach().cpu().clone()
        elif main:
            out[key] = value.detach().cpu().clone()
    return out


def in_launched_process() -> bool:
    """Whether torchrun / accelerate launch started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(strategy: str = "ddp") -> World:
    """Join the process group torchrun set up (one process: a World of size 1, nothing initialised)."""
    if not in_launched_process():
        return World(strategy=strategy)
    from accelerate import Accelerator, DistributedDataParallelKwargs

    # accelerate reads RANK/WORLD_SIZE/MASTER_ADDR from torchrun and opens the group: gloo on CPU, NCCL on GPUs.
    # It is asked for nothing more: FSDP2 and DeepSpeed are driven by `World.prepare` (the strategy `accelerate
    # launch` asked for is the run's --strategy, see `launcher_strategy`), so its own plugins stay off.
    hidden = {name: os.environ.pop(name) for name in (_ACCELERATE_FSDP, _ACCELERATE_DEEPSPEED) if name in os.environ}
    # DDP's gradients are views into its all-reduce buckets rather than a second copy of every gradient.
    views = DistributedDataParallelKwargs(gradient_as_bucket_view=True)
    try:
        accelerator = Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[views])
    finally:
        os.environ.update(hidden)
    return World(accelerator.process_index, accelerator.num_processes, accelerator, strategy)


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
