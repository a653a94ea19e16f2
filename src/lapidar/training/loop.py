"""The one training loop, for every objective (sft, pretrain, dpo, kto) and every front end.

`fit(run, model, sinks, stop)` reads top to bottom: objective and optimiser -> schedule -> (resume) -> loop over
accumulated steps -> evaluate / checkpoint / early-stop -> best weights -> summary. What differs between objectives
is a registry entry (`training/objectives.py`); what the user sees is a set of event sinks (`training/events.py`);
stopping is a `StopRequest` the caller sets — from a signal handler, a web request, another thread. The loop
installs no signal handler and prints nothing itself, so it runs in a CLI, a web worker or a Ray worker alike.

Exact resume: batches depend only on the seed and the epoch, and a checkpoint holds the optimiser, scheduler, RNG,
early-stopping and loop state; a run killed with SIGKILL and resumed ends where the uninterrupted run ends.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lapidar.data.batching import batches
from lapidar.data.formats import Example
from lapidar.errors import UserError
from lapidar.evaluation.evaluate import generation_metrics
from lapidar.evaluation.report import plot_generation_metrics
from lapidar.io import write_json, write_text
from lapidar.methods import get_method
from lapidar.models.attention import enable_padding_free
from lapidar.models.tokens import NewTokens
from lapidar.training.checkpoint import (
    STATE_FILE,
    latest_checkpoint,
    load_checkpoint_weights,
    save_checkpoint,
    save_weights,
)
from lapidar.training.distributed import SHARING, World
from lapidar.training.events import EventBus, MetricsSink, Sink, TrackerSink
from lapidar.training.hardware import peak_rss_mib, use_bf16, use_fp16
from lapidar.training.objectives import BatchLoss, Context, Objective, get_objective
from lapidar.training.observers import EarlyStopping, plot_losses, read_metrics
from lapidar.training.optim import build_optimizer
from lapidar.training.schedule import lr_factor

__all__ = ["RunData", "StopRequest", "TrainingDiverged", "evaluate", "fit", "neftune"]


@dataclass
class RunData:
    """Everything the loop needs besides the model: config, run directory, tokenizer and the encoded data."""

    cfg: Any  # lapidar.config.TrainConfig
    run_dir: Path
    source: Any  # lapidar.models.loading.ModelSource
    tokenizer: Any
    objective: str
    train_examples: list[Example]
    val_examples: list[Example]
    train: list[Any]  # items encoded by the objective (Encoded rows/blocks, PreferenceRow)
    val: list[Any]
    data_format: str
    notes: list[str] = field(default_factory=list)
    trackers: Any = None  # W&B/MLflow (lapidar.training.trackers.Trackers), opened before the model loads
    new_tokens: NewTokens = field(default_factory=NewTokens)  # --new-tokens, already added to `tokenizer`
    world: World = field(default_factory=World)  # the training processes (one by default)


class StopRequest:
    """A request to stop at the next step boundary (checkpoint first), settable from any thread or a signal handler."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str = "stop requested") -> None:
        """Ask the loop to stop."""
        self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        """Whether a stop was requested."""
        return self._event.is_set()


class TrainingDiverged(UserError):
    """The loss stopped being a number; the message says where the last good weights are and what to change."""


def neftune(model, alpha: float) -> None:
    """NEFTune (Jain et al. 2023, arXiv:2310.05914): uniform noise of scale alpha/sqrt(L*d) on input embeddings,
    in training mode only."""

    def hook(module, _inputs, output):
        if module.training:
            dims = output.size(1) * output.size(2)
            output = output + torch.empty_like(output).uniform_(-1, 1) * (alpha / math.sqrt(dims))
        return output

    model.get_input_embeddings().register_forward_hook(hook)


def _world_scale(global_units: int, world_size: int) -> float:
    """The factor a micro-batch's summed loss is multiplied by: world_size / (units of the whole global step).

    One process: 1 / units. Under data parallelism each process trains on its shard and DDP averages gradients over
    the processes (divides by world_size), so every token (or example) of the global step weighs the same. Every
    process holds all the data, so the global count is known without communication.
    """
    return world_size / max(global_units, 1)


class _Tally:
    """Sums of a window's (or an evaluation's) losses, units, tokens and statistics."""

    def __init__(self, state: dict | None = None) -> None:
        state = state or {}
        self.loss: float = state.get("loss", 0.0)
        self.units: int = state.get("units", 0)
        self.tokens: int = state.get("tokens", 0)
        self.stats: dict[str, list[float]] = {k: list(v) for k, v in state.get("stats", {}).items()}

    def add(self, out: BatchLoss) -> None:
        self.loss += out.loss_sum.item()
        self.units += out.units
        self.tokens += out.tokens
        for k, (s, n) in out.stats.items():
            acc = self.stats.setdefault(k, [0.0, 0])
            acc[0], acc[1] = acc[0] + s, acc[1] + n

    def means(self) -> dict[str, float]:
        out = {"loss": self.loss / max(self.units, 1)}
        out.update({k: s / n for k, (s, n) in self.stats.items() if n})
        if "rewards_chosen" in out and "rewards_rejected" in out:
            out["reward_margin"] = out["rewards_chosen"] - out["rewards_rejected"]
        return out

    def state(self) -> dict:
        return {"loss": self.loss, "units": self.units, "tokens": self.tokens, "stats": self.stats}

    def reduced(self, world: World) -> _Tally:
        """The sums over all processes (the same on every process)."""
        keys = world.union(list(self.stats))  # the same list, in the same order, on every process
        flat = [self.loss, self.units, self.tokens] + [x for k in keys for x in self.stats.get(k, [0.0, 0])]
        total = world.sum(flat)
        stats = {k: [total[3 + 2 * i], total[4 + 2 * i]] for i, k in enumerate(keys)}
        return _Tally({"loss": total[0], "units": int(total[1]), "tokens": int(total[2]), "stats": stats})


def _order(objective: Objective, items: list, batch_size: int, seed: int, shuffle: bool, padding_free: bool):
    # Preference rows are never length-grouped (each batch holds 2n answers of mixed length anyway).
    return batches(items, batch_size, seed, shuffle, padding_free or not objective.group_by_length, objective.length)


@torch.no_grad()
def evaluate(ctx: Context, objective: Objective, items: list, batch_size: int, world: World | None = None) -> dict:
    """Mean loss per unit (label token or example) and mean statistics over `items`, in eval mode, fixed batches.

    With several processes each evaluates every world-size-th item and the sums are combined, so all get the same
    numbers. `ctx.model` is the unwrapped model (no DDP synchronisation in evaluation).
    """
    world = world or World()
    model = ctx.model
    was_training = model.training
    model.eval()
    tally = _Tally()
    # Fixed batches, length-grouped where the objective groups (less padding when the batch is padded).
    mine = _order(objective, items[world.rank :: world.size], batch_size, 0, False, False)
    for batch in mine:
        tally.add(objective.batch(ctx, batch, "val"))
    if world.sharded_weights:
        # Every forward gathers sharded weights from all processes: a process with fewer batches runs one again
        # (not counted) until all have run as many as process 0, which has the most.
        most = len(_order(objective, items[:: world.size], batch_size, 0, False, False))
        filler = mine[0] if mine else items[:1]
        for _ in range(most - len(mine)):
            objective.batch(ctx, filler, "val")
    model.train(was_training)
    return tally.reduced(world).means()


def fit(
    run: RunData,
    model,
    sinks: list[Sink] = (),  # type: ignore[assignment]
    stop: StopRequest | None = None,
    resume_from: Path | None = None,
) -> dict:
    """Train `model` (prepared by the method registry) on `run.train` with `run.objective`; returns the summary.

    The best weights (lowest validation loss; the last ones without validation) go to `run_dir/adapter` or
    `run_dir/model`; summary.json, metrics.jsonl, TensorBoard events and loss.png are written into the run directory.
    """
    cfg, tok, world = run.cfg, run.tokenizer, run.world
    objective = get_objective(run.objective)
    method = get_method(cfg.method)
    device = next(model.parameters()).device
    n_params = sum(p.numel() for p in model.parameters())
    bf16 = use_bf16(cfg.precision, n_params)
    fp16 = not bf16 and use_fp16(cfg.precision)  # fp16 autocast, the loss scaled by a gradient scaler
    if cfg.neftune_alpha:
        neftune(model, cfg.neftune_alpha)
    padding_free = cfg.padding_free and enable_padding_free(model)
    ctx = Context(model, tok, cfg, bf16, padding_free, fp16=fp16)
    objective_note = objective.start(ctx)  # before any checkpoint loads: a full-FT reference copies initial weights
    state = torch.load(resume_from / STATE_FILE, weights_only=False) if resume_from is not None else None
    if state is not None and state.get("processes", world.size) != world.size:
        # A global step is batch_size rows per process: another number of processes would train other steps.
        raise UserError(
            f"{resume_from} was written by {state['processes']} training processes and this run has {world.size}; "
            f"resume it with {state['processes']} (`lapidar train --resume {run.run_dir}` starts as many as it used)"
        )
    if resume_from is not None:
        load_checkpoint_weights(model, resume_from, method.adapter)  # whole weights, before any sharding
    # Training goes through the DDP-wrapped model (gradient all-reduce); evaluation, saving and the DPO/KTO
    # reference use the model itself. Under fsdp the model itself is sharded in place and is what trains.
    train_model, optimizer = world.prepare(model, lambda m: build_optimizer(m, cfg, method.optimizer), cfg)
    train_ctx = dataclasses.replace(ctx, model=train_model)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    # fp16's range is narrow: the loss is scaled up before backward and the gradients back down before the step, a
    # step whose gradients overflowed is skipped and the scale lowered (torch's GradScaler; off outside fp16).
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)
    skipped_steps = 0
    # A global micro-batch holds batch_size rows per process: the batches (and the loss) a single process with
    # batch_size x world_size would have, whatever the world size.
    global_batch = cfg.batch_size * world.size

    steps_per_epoch = math.ceil(math.ceil(len(run.train) / global_batch) / cfg.grad_accum)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    warmup = round(cfg.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup, cfg.scheduler))
    stopper = EarlyStopping(cfg.patience if run.val else None, cfg.min_delta)
    weights_dir = run.run_dir / ("adapter" if method.adapter else "model")
    save_every = cfg.save_steps or cfg.eval_steps

    # Loop state: everything a checkpoint must hold to continue exactly where the run stopped.
    step, epoch, next_group, tokens_seen = 0, 0, 0, 0
    history: dict[str, Any] = {"initial": None, "last": None, "best_val_loss": None, "best_step": None}
    window = _Tally()
    torch.manual_seed(cfg.seed)
    resumed_message = ""
    if resume_from is not None and state is not None:
        world.barrier()  # process 0 trims metrics.jsonl below; nobody reads the checkpoint while it is being cut
        world.load_optimizer_state(train_model, optimizer, state["optimizer"], resume_from)
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, next_group, tokens_seen = state["step"], state["epoch"], state["next_group"], state["tokens_seen"]
        history, window = state["history"], _Tally(state["window"])
        stopper.__dict__.update(state["stopper"])
        torch.set_rng_state(state["torch_rng"])
        if fp16 and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        skipped_steps = state.get("skipped_steps", 0)
        # Forget what the interrupted run logged after this checkpoint; it will be logged again.
        metrics = run.run_dir / "metrics.jsonl"
        if world.main:
            kept = [r for r in read_metrics(metrics) if r["step"] <= step] if metrics.exists() else []
            write_text(metrics, "".join(json.dumps(r) + "\n" for r in kept))
        resumed_message = f"Resuming {run.run_dir} from {resume_from.name} (step {step} of {total_steps})"

    def loop_state() -> dict:
        optimizer_state = world.optimizer_state(model, optimizer)  # None when sharded: see save_engine
        return {
            "step": step,
            "epoch": epoch,
            "next_group": next_group,
            "tokens_seen": tokens_seen,
            "history": history,
            "window": window.state(),
            "stopper": dict(stopper.__dict__),
            "optimizer": optimizer_state,
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "scaler": scaler.state_dict(),
            "processes": world.size,
            "skipped_steps": skipped_steps,
        }

    # Only process 0 reports and writes; the others train silently.
    run_sinks: list[Sink] = []
    if world.main:
        run_sinks = [*sinks, MetricsSink(run.run_dir, purge_step=step + 1 if resume_from else None)]
        if run.trackers is not None:
            run_sinks.append(TrackerSink(run.trackers, cfg.model_dump()))
    bus = EventBus(run_sinks)

    def emit(kind: str, **fields: Any) -> None:
        bus.emit(kind, step=step, total=total_steps, **fields)

    if resumed_message:
        emit("start", message=resumed_message)
    # Counted on the model as loaded: a sharded optimiser holds only this process's part of each parameter.
    n_trainable = sum(
        p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in model.parameters() if p.requires_grad
    )
    header = (
        f"Training {run.source.label}: {run.objective} with {cfg.method}, {n_trainable:,} of {n_params:,} parameters "
        f"train ({100 * n_trainable / n_params:.2f}%); {len(run.train)} train / {len(run.val)} validation "
        f"{objective.item_name}; {total_steps} steps of {cfg.batch_size}x{cfg.grad_accum}"
        f"{f' per process x {world.size} processes (global batch {global_batch * cfg.grad_accum})' if world.size > 1 else ''}"
        f"{' (padding-free)' if padding_free else ''}"
        f"{f'; {SHARING[world.strategy]}' if world.sharded else ''}"
        f"; {objective_note + '; ' if objective_note else ''}"
        f"{'bf16 autocast' if bf16 else 'fp16 autocast with loss scaling' if fp16 else 'fp32'} on {device}"
    )
    emit("start", message=header)
    for note in run.notes:
        emit("note", message=note)
    if fp16 and device.type == "cpu":
        emit(
            "note",
            message="fp16 on CPU: torch emulates it, many times slower than fp32; it is meant for GPUs without bf16 "
            "(use --precision auto here)",
        )
    if cfg.strategy != "ddp" and world.size == 1:
        emit(
            "note",
            message=f"--strategy {cfg.strategy} shares a model between processes; with one process it "
            "changes nothing (add --nproc N, or start the run with torchrun)",
        )

    def epoch_of(s: int) -> float:
        return round(s / steps_per_epoch, 3)

    def run_eval() -> None:
        # Through the DeepSpeed engine, whose forward keeps ZeRO-3's gathering in order (it syncs no gradients).
        stats = evaluate(train_ctx if world.deepspeed else ctx, objective, run.val, cfg.batch_size, world)
        val_loss = stats.pop("loss")
        improved = stopper.update(step, val_loss)
        record = {"epoch": epoch_of(step), "val_loss": val_loss, **{f"val_{k}": v for k, v in stats.items()}}
        history["initial"] = history["initial"] or record
        history["last"] = record
        best = improved and step > 0
        if best:
            save(weights_dir)
            history.update(best_val_loss=val_loss, best_step=step)
        emit("eval", record=record, best=best)

    def save(path: Path) -> None:
        # Every process takes part (sharded weights are gathered); process 0 writes.
        whole = world.weights_to_save(model, method.adapter)
        if world.main:
            save_weights(model, tok, path, whole)

    # Generated answers are scored by process 0 alone (the others wait for it at the next step's all-reduce).
    # With sharded weights every forward needs every process, so answers are not generated during training.
    generation_eval = bool(cfg.eval_every and objective.generates and run.val_examples and world.main)
    if cfg.eval_every and world.sharded_weights:
        generation_eval = False
        emit(
            "note",
            message=f"eval_every: no answers are generated during training under --strategy {world.strategy} "
            f"(each process holds a shard of the weights); score them after with `lapidar eval {run.run_dir}`",
        )

    def run_generation_eval() -> None:
        # Answers generated for a few validation rows and scored (accuracy, ROUGE-L, ... by answer shape).
        scores = generation_metrics(
            model, tok, run.val_examples[: cfg.eval_rows], cfg.eval_metrics, max_new_tokens=None, bf16=bf16
        )
        record = {"epoch": epoch_of(step), **{f"val_{k}": v for k, v in scores.items()}, "_generated": list(scores)}
        emit("eval", record=record)

    model.train()
    stop_reason = "reached max_steps" if cfg.max_steps else "finished all epochs"
    diverged: str | None = None
    interrupted = False
    resumed_at = step
    tokens_this_process = 0
    window_start = started = time.perf_counter()
    last_train: dict[str, float] = {}

    def checkpoint() -> Path | None:
        state, whole = loop_state(), world.weights_to_save(model, method.adapter)  # every process takes part
        engine = world.save_engine(train_model, optimizer, run.run_dir / "checkpoints" / f".engine-{step:06d}")
        path = (
            save_checkpoint(run.run_dir, model, step, cfg.keep_checkpoints, state, whole, engine)
            if world.main
            else None
        )
        world.barrier()  # a resume after this point finds the checkpoint complete
        return path

    try:
        if run.val and step == 0:
            run_eval()
            if generation_eval:
                run_generation_eval()
        while step < total_steps and not stopper.should_stop and not diverged and not interrupted:
            order = _order(objective, run.train, global_batch, cfg.seed + epoch, True, padding_free)
            groups = [order[g : g + cfg.grad_accum] for g in range(0, len(order), cfg.grad_accum)]
            while next_group < len(groups):
                group = groups[next_group]
                scale = _world_scale(sum(objective.units(item) for b in group for item in b), world.size)
                step_tokens = 0
                for i, global_rows in enumerate(group):
                    batch, filler = world.shard(global_rows, cfg.batch_size)
                    with world.no_sync(train_model, last=i == len(group) - 1):
                        out = objective.batch(train_ctx, batch, "train")
                        if not torch.isfinite(out.loss_sum):
                            diverged = f"the {run.objective} loss became {out.loss_sum.item()} at step {step + 1}"
                            if world.size == 1:
                                break
                            # The other processes wait in DDP's all-reduce (or FSDP's reduce-scatter, which runs
                            # in the backward pass through the layers): a backward pass, whose gradients are
                            # dropped below.
                            if world.sharded:
                                world.backward(train_model, out.loss_sum.nan_to_num(0.0, 0.0, 0.0).mul(0))
                            else:
                                sum(p.sum() for p in trainable).mul(0).backward()
                            continue
                        world.backward(train_model, scaler.scale(out.loss_sum * (0.0 if filler else scale)))
                    if not filler:
                        window.add(out)
                        step_tokens += out.tokens
                # One decision for all processes: stop if any process diverged.
                any_diverged, step_tokens_all = world.sum([float(diverged is not None), step_tokens])
                if any_diverged and not diverged:
                    diverged = f"the {run.objective} loss stopped being a number at step {step + 1} in another process"
                tokens_seen += int(step_tokens_all)
                tokens_this_process += step_tokens
                if diverged:
                    bus.emit("step", step=step + 1, total=total_steps, record={"train_loss": out.loss_sum.item()})
                    world.zero_grad(train_model, optimizer)
                    break
                if world.step(train_model, optimizer, trainable, cfg.max_grad_norm, scaler):
                    skipped_steps += 1
                    if skipped_steps == 1:
                        emit(
                            "note",
                            message=f"fp16: the gradients of step {step + 1} overflowed; the step was skipped and "
                            f"the loss scale lowered to {scaler.get_scale():g} (normal in the first steps; the "
                            "summary counts them)",
                        )
                scheduler.step()
                step += 1
                next_group += 1

                if step % cfg.log_steps == 0 or step == total_steps:
                    elapsed = time.perf_counter() - window_start
                    window = window.reduced(world)
                    last_train = window.means()
                    record = {
                        "epoch": epoch_of(step),
                        "train_loss": last_train["loss"],
                        "lr": scheduler.get_last_lr()[0],
                        "tokens_per_s": window.tokens / max(elapsed, 1e-9),
                        **{k: v for k, v in last_train.items() if k != "loss"},
                    }
                    emit("step", record={**record, "_first_step": resumed_at})
                    window = _Tally()
                    window_start = time.perf_counter()
                if run.val and (step % cfg.eval_steps == 0 or step == total_steps):
                    run_eval()
                if generation_eval and cfg.eval_every and (step % cfg.eval_every == 0 or step == total_steps):
                    run_generation_eval()
                if step % save_every == 0 or step == total_steps:
                    emit("checkpoint", path=str(checkpoint()))
                if stopper.should_stop:
                    stop_reason = stopper.reason
                    break
                if world.any(stop is not None and stop.is_set()):
                    interrupted = True
                    break
                if step >= total_steps:
                    break
            if diverged or stopper.should_stop or interrupted or step >= total_steps:
                break
            epoch, next_group = epoch + 1, 0
    except KeyboardInterrupt:
        interrupted = True
        world.zero_grad(train_model, optimizer)
    except BaseException:
        bus.close(False)  # an unexpected error: the sinks are closed, the error goes on
        raise

    if interrupted:
        stop_reason = f"interrupted at step {step}"
        ckpt = checkpoint()
        emit(
            "checkpoint",
            path=str(ckpt),
            message=f"Interrupted: checkpoint saved in {ckpt}; continue with --resume {run.run_dir}",
        )
    if diverged:
        stop_reason = f"diverged: {diverged}"
    elif history["best_step"] is None or not run.val:
        # No validation (or it never beat the untrained model): the result is the last state.
        save(weights_dir)
    wall = time.perf_counter() - started
    initial, last = history["initial"] or {}, history["last"] or {}
    summary: dict[str, Any] = {
        "model": run.source.label,
        "random_init": run.source.random_init,
        "method": cfg.method,
        "objective": run.objective,
        "data_format": run.data_format,
        "train_rows": len(run.train),
        "val_rows": len(run.val),
        "steps": step,
        "total_steps_planned": total_steps,
        "epochs": epoch_of(step),
        "tokens_seen": tokens_seen,
        "final_train_loss": last_train.get("loss", float("nan")),
        "initial_val_loss": initial.get("val_loss"),
        "best_val_loss": history["best_val_loss"],
        "best_step": history["best_step"],
        "final_val_loss": last.get("val_loss"),
    }
    if objective.preference:
        summary["beta"] = cfg.beta
        for key in ("reward_margin", "reward_accuracy"):
            summary[f"initial_val_{key}"] = initial.get(f"val_{key}")
            summary[f"final_val_{key}"] = last.get(f"val_{key}")
    summary.update(
        {
            "stop_reason": stop_reason,
            "interrupted": interrupted,
            "resumed_from_step": resumed_at or None,
            "saved_weights": weights_dir.name,
            "saved_from_step": history["best_step"] if history["best_step"] is not None else step,
            "wall_time_s": round(wall, 1),
            # Trained tokens per second of all processes together.
            "tokens_per_s": round(world.sum([tokens_this_process])[0] / max(wall, 1e-9), 1),
            "processes": world.size,
            "peak_memory_mib": peak_rss_mib(),
            "peak_memory_kind": "process RSS",
            "precision": "bf16" if bf16 else "fp16" if fp16 else "fp32",
            "device": str(device),
        }
    )
    if fp16:
        summary["fp16_skipped_steps"] = skipped_steps
    if torch.cuda.is_available():
        summary["peak_cuda_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if world.main:
        write_json(run.run_dir / "summary.json", summary)
    emit("finished", summary=summary)
    bus.close(diverged is None)
    if world.main:
        title = f"{run.source.label} · {cfg.method}" + (f" · {run.objective}" if objective.preference else "")
        plot_losses(run.run_dir / "metrics.jsonl", run.run_dir / "loss.png", title)
        plot_generation_metrics(run.run_dir)
    world.barrier()  # the run directory is complete before any process returns
    if diverged:
        good = weights_dir if weights_dir.exists() else latest_checkpoint(run.run_dir)
        where = f"; the last good weights are in {good}" if good else ""
        raise TrainingDiverged(f"training diverged: {diverged}{where}; lower --lr (now {cfg.lr}) and train again")
    return summary
