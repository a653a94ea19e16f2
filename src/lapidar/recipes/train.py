"""Supervised fine-tuning recipe: data -> model -> optimiser -> loop -> checkpoints -> summary.

`setup()` checks everything that can be checked before a large model is loaded (config, data files, rows,
tokenisation) and creates the run directory; `main()` loads the model and calls `fit()`, the training loop, which is
kept in plain sight in this file.
"""

from __future__ import annotations

import math
import random
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lapidar.config import TrainConfig, save_yaml
from lapidar.data.formats import Example, bundled_example, load_examples
from lapidar.data.quality import fatal_findings, raise_on_fatal
from lapidar.data.tokenize import Encoded, answer_spans, collate, encode_conversation
from lapidar.errors import UserError, unknown_choice
from lapidar.io import atomic_dir, write_json
from lapidar.methods import METHODS, apply_method, resolve_targets
from lapidar.models.loading import RUN_FILE, ModelSource, load_model, load_tokenizer, resolve_model
from lapidar.training.loss import causal_lm_loss
from lapidar.training.observers import EarlyStopping, MetricsLog, plot_losses
from lapidar.training.schedule import lr_factor

__all__ = ["RunData", "fit", "main", "setup"]


@dataclass
class RunData:
    """Everything `fit` needs besides the model: the config, the run directory and the encoded data."""

    cfg: TrainConfig
    run_dir: Path
    source: ModelSource
    tokenizer: Any
    train: list[Encoded]
    val: list[Encoded]
    data_format: str
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- setup


def _data_paths(cfg: TrainConfig) -> tuple[Path, Path | None]:
    if cfg.data is None:
        raise UserError("no training data: pass --data FILE (JSON/JSONL/CSV) or --data example:claims")
    if cfg.data.startswith("example:"):
        train, val = bundled_example(cfg.data.removeprefix("example:"))
        return train, Path(cfg.val_data) if cfg.val_data else val
    return Path(cfg.data), Path(cfg.val_data) if cfg.val_data else None


def _default_run_dir(cfg: TrainConfig) -> Path:
    name = cfg.name or Path(cfg.model).name.replace("/", "-")
    return Path("runs") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{name}"


def _encode_all(tokenizer, examples: list[Example], max_length: int, notes: list[str], what: str) -> list[Encoded]:
    out, truncated, dropped = [], 0, 0
    for ex in examples:
        enc = encode_conversation(tokenizer, ex.messages, max_length, ex.source)
        truncated += enc.truncated
        if enc.n_answer_tokens == 0:
            dropped += 1
            continue
        out.append(enc)
    if truncated:
        notes.append(f"{truncated} {what} rows are longer than max_length={max_length} tokens and were cut")
    if dropped:
        notes.append(f"{dropped} {what} rows were skipped: their answer starts after max_length={max_length}")
    return out


def _split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    if fraction <= 0 or len(examples) < 5:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(examples) * fraction))
    val_idx = set(order[:n_val])
    return [e for i, e in enumerate(examples) if i not in val_idx], [examples[i] for i in sorted(val_idx)]


def setup(cfg: TrainConfig, console: Console) -> RunData:
    """Validate config and data, load the tokenizer, encode, and create the run directory (no model yet)."""
    if cfg.method not in METHODS:
        raise unknown_choice("method", cfg.method, list(METHODS))
    resolve_targets(cfg.target_modules)
    train_path, val_path = _data_paths(cfg)
    examples, fmt = load_examples(train_path)
    val_examples = load_examples(val_path)[0] if val_path else []
    notes: list[str] = []
    if not val_path:
        examples, val_examples = _split(examples, cfg.val_fraction, cfg.seed)
        if val_examples:
            notes.append(f"held out {len(val_examples)} of {len(examples) + len(val_examples)} rows for validation")
        else:
            notes.append("no validation data: early stopping is off (pass --val-data or use more rows)")

    source = resolve_model(cfg.model, cfg.init)
    tokenizer = load_tokenizer(source)
    # The fatal data checks of `lapidar data check` run before any model weights are loaded.
    raise_on_fatal(fatal_findings(examples, tokenizer, cfg.max_length, val_examples), cfg.data)
    train = _encode_all(tokenizer, examples, cfg.max_length, notes, "training")
    val = _encode_all(tokenizer, val_examples, cfg.max_length, notes, "validation")
    if not train:
        raise UserError(f"{train_path}: no usable training rows (every answer was cut off by max_length)")

    run_dir = Path(cfg.output) if cfg.output else _default_run_dir(cfg)
    if (run_dir / RUN_FILE).exists():
        raise UserError(f"{run_dir} already holds a run; choose another --output or delete it")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg.model_dump(), run_dir / "config.yaml")
    write_json(
        run_dir / RUN_FILE,
        {
            "base_model": str(source.path.resolve()),
            "model_name": source.name,
            "kind": source.kind,
            "random_init": source.random_init,
            "method": cfg.method,
            "weights": "adapter" if cfg.method == "lora" else "model",
        },
    )
    _show_first_example(console, tokenizer, examples[0])
    return RunData(cfg, run_dir, source, tokenizer, train, val, fmt, notes)


def _show_first_example(console: Console, tokenizer, example: Example) -> None:
    """Print the first example as the model will see it, answers (the trained part) highlighted."""
    text, spans = answer_spans(tokenizer, example.messages, example.source)
    parts, pos = [], 0
    for start, end in spans:
        parts += [f"[dim]{escape(text[pos:start])}[/dim]", f"[bold green]{escape(text[start:end])}[/bold green]"]
        pos = end
    parts.append(f"[dim]{escape(text[pos:])}[/dim]")
    console.print("[bold]First training example as the model sees it[/bold] (loss only on the green part):")
    console.print("".join(parts).rstrip())


# ---------------------------------------------------------------- helpers of the loop


def _use_bf16(cfg: TrainConfig, n_params: int) -> bool:
    if cfg.precision != "auto":
        return cfg.precision == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    # On CPU, bf16 pays off only when large matmuls dominate and the CPU has native bf16 instructions.
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return n_params >= 100_000_000 and ("avx512_bf16" in flags or "amx_bf16" in flags)


def _batches(data: list[Encoded], batch_size: int, seed: int, shuffle: bool) -> list[list[Encoded]]:
    """Length-grouped batches: shuffle, sort within windows of 50 batches, shuffle the batch order.

    Grouping similar lengths wastes less compute on padding; the window keeps the order random.
    """
    idx = list(range(len(data)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(idx)
    window = batch_size * 50
    batches = []
    for w in range(0, len(idx), window):
        chunk = sorted(idx[w : w + window], key=lambda i: len(data[i].input_ids))
        batches += [[data[i] for i in chunk[b : b + batch_size]] for b in range(0, len(chunk), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


@torch.no_grad()
def evaluate_loss(model, data: list[Encoded], batch_size: int, pad_id: int, device, bf16: bool) -> float:
    """Mean validation loss per answer token."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in _batches(data, batch_size, 0, shuffle=False):
        tensors = {k: v.to(device) for k, v in collate(batch, pad_id).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss_sum, n = causal_lm_loss(model, tensors)
        total, count = total + loss_sum.item(), count + n
    model.train(was_training)
    return total / max(count, 1)


def _save_weights(model, tokenizer, path: Path) -> None:
    with atomic_dir(path) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))


def _peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / 1024, 1)


# ---------------------------------------------------------------- the loop


def fit(run: RunData, model, console: Console) -> dict:
    """Train `model` on `run.train`, evaluating on `run.val`; returns the run summary."""
    cfg, tok = run.cfg, run.tokenizer
    device = next(model.parameters()).device
    pad_id = tok.pad_token_id
    n_params = sum(p.numel() for p in model.parameters())
    bf16 = _use_bf16(cfg, n_params)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999))

    steps_per_epoch = math.ceil(math.ceil(len(run.train) / cfg.batch_size) / cfg.grad_accum)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    warmup = round(cfg.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup, cfg.scheduler))
    stopper = EarlyStopping(cfg.patience if run.val else None, cfg.min_delta)
    log = MetricsLog(run.run_dir)
    weights_dir = run.run_dir / ("adapter" if cfg.method == "lora" else "model")

    n_trainable = sum(p.numel() for p in trainable)
    console.print(
        f"[bold]Training[/bold] {run.source.label} with {cfg.method}: {n_trainable:,} of {n_params:,} parameters "
        f"train ({100 * n_trainable / n_params:.2f}%); {len(run.train)} train / {len(run.val)} validation rows; "
        f"{total_steps} steps of {cfg.batch_size}x{cfg.grad_accum} examples; "
        f"{'bf16 autocast' if bf16 else 'fp32'} on {device}"
    )
    for note in run.notes:
        console.print(f"[yellow]note:[/yellow] {note}")

    history: dict = {"initial_val_loss": None, "best_val_loss": None, "best_step": None, "last_val_loss": None}

    def run_eval(step: int) -> None:
        val_loss = evaluate_loss(model, run.val, cfg.batch_size, pad_id, device, bf16)
        improved = stopper.update(step, val_loss)
        if history["initial_val_loss"] is None:
            history["initial_val_loss"] = val_loss
        history["last_val_loss"] = val_loss
        log.write({"step": step, "epoch": round(step / steps_per_epoch, 3), "val_loss": val_loss})
        mark = "  [green]best so far, saved[/green]" if improved and step > 0 else ""
        console.print(f"step {step:>5}  validation loss {val_loss:.4f}{mark}")
        if improved and step > 0:
            _save_weights(model, tok, weights_dir)
            history.update(best_val_loss=val_loss, best_step=step)

    torch.manual_seed(cfg.seed)
    model.train()
    if run.val:
        run_eval(0)

    step, epoch, tokens_seen, stop_reason = 0, 0, 0, "reached max_steps" if cfg.max_steps else "finished all epochs"
    window_loss, window_tokens, window_seen, window_start = 0.0, 0, 0, time.perf_counter()
    last_train_loss = float("nan")
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold blue]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[tps]} tok/s"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    interrupted = False
    try:
        with progress:
            task = progress.add_task("train", total=total_steps, loss="-", tps="-")
            while step < total_steps and not stopper.should_stop:
                batches = _batches(run.train, cfg.batch_size, cfg.seed + epoch, shuffle=True)
                for g in range(0, len(batches), cfg.grad_accum):
                    group = batches[g : g + cfg.grad_accum]
                    group_tokens = sum(e.n_answer_tokens for b in group for e in b)
                    for batch in group:
                        tensors = {k: v.to(device) for k, v in collate(batch, pad_id).items()}
                        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                            loss_sum, n = causal_lm_loss(model, tensors)
                        # Normalise by the answer tokens of the whole accumulated step, so every token weighs
                        # the same whatever batch it landed in.
                        (loss_sum / group_tokens).backward()
                        window_loss += loss_sum.item()
                        window_tokens += n
                        seen = int(tensors["attention_mask"].sum())
                        window_seen += seen
                        tokens_seen += seen
                    if not math.isfinite(window_loss):
                        raise UserError(
                            f"training diverged at step {step + 1} (loss is {window_loss}); lower --lr "
                            f"(now {cfg.lr}) and try again"
                        )
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1

                    if step % cfg.log_steps == 0 or step == total_steps:
                        elapsed = time.perf_counter() - window_start
                        last_train_loss = window_loss / max(window_tokens, 1)
                        tps = window_seen / max(elapsed, 1e-9)
                        log.write(
                            {
                                "step": step,
                                "epoch": round(step / steps_per_epoch, 3),
                                "train_loss": last_train_loss,
                                "lr": scheduler.get_last_lr()[0],
                                "tokens_per_s": tps,
                            }
                        )
                        progress.update(task, loss=f"{last_train_loss:.3f}", tps=f"{tps:,.0f}")
                        window_loss, window_tokens, window_seen, window_start = 0.0, 0, 0, time.perf_counter()
                    progress.update(task, completed=step)

                    if run.val and (step % cfg.eval_steps == 0 or step == total_steps):
                        run_eval(step)
                        if stopper.should_stop:
                            stop_reason = (
                                f"early stopping: validation loss did not improve for {stopper.patience} "
                                f"evaluations after step {stopper.best_step}"
                            )
                            break
                    if cfg.save_steps and step % cfg.save_steps == 0:
                        _save_checkpoint(model, tok, run.run_dir, step, cfg.keep_checkpoints)
                    if step >= total_steps:
                        break
                epoch += 1
    except KeyboardInterrupt:
        interrupted = True
        stop_reason = f"interrupted by the user at step {step}"
    finally:
        log.close()

    if history["best_step"] is None or not run.val:
        # No validation (or it never improved): the result is the last state.
        _save_weights(model, tok, weights_dir)
    wall = time.perf_counter() - started
    summary = {
        "model": run.source.label,
        "random_init": run.source.random_init,
        "method": cfg.method,
        "data_format": run.data_format,
        "train_rows": len(run.train),
        "val_rows": len(run.val),
        "steps": step,
        "total_steps_planned": total_steps,
        "epochs": round(step / steps_per_epoch, 3),
        "tokens_seen": tokens_seen,
        "final_train_loss": last_train_loss,
        "initial_val_loss": history["initial_val_loss"],
        "best_val_loss": history["best_val_loss"],
        "best_step": history["best_step"],
        "final_val_loss": history["last_val_loss"],
        "stop_reason": stop_reason,
        "saved_weights": weights_dir.name,
        "saved_from_step": history["best_step"] if history["best_step"] is not None else step,
        "wall_time_s": round(wall, 1),
        "tokens_per_s": round(tokens_seen / max(wall, 1e-9), 1),
        "peak_memory_mib": _peak_rss_mib(),
        "peak_memory_kind": "process RSS",
        "precision": "bf16" if bf16 else "fp32",
        "device": str(device),
    }
    if torch.cuda.is_available():
        summary["peak_cuda_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    write_json(run.run_dir / "summary.json", summary)
    plot_losses(run.run_dir / "metrics.jsonl", run.run_dir / "loss.png", f"{run.source.label} · {cfg.method}")
    if interrupted:
        console.print(f"[yellow]Interrupted; weights saved in {weights_dir}[/yellow]")
    return summary


def _save_checkpoint(model, tokenizer, run_dir: Path, step: int, keep: int) -> None:
    ckpt_root = run_dir / "checkpoints"
    _save_weights(model, tokenizer, ckpt_root / f"step-{step:06d}")
    old = sorted(p for p in ckpt_root.glob("step-*") if p.is_dir())
    for path in old[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def print_summary(console: Console, summary: dict, run_dir: Path) -> None:
    """The end-of-run table."""
    table = Table(title=f"Run finished: {run_dir}", show_header=False)
    for key in (
        "model",
        "steps",
        "tokens_seen",
        "initial_val_loss",
        "best_val_loss",
        "best_step",
        "final_train_loss",
        "stop_reason",
        "wall_time_s",
        "tokens_per_s",
        "peak_memory_mib",
    ):
        value = summary.get(key)
        if isinstance(value, float):
            value = f"{value:.4f}" if "loss" in key else f"{value:,.1f}"
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)
    console.print(
        f"Weights: {run_dir / summary['saved_weights']}  ·  curves: {run_dir / 'loss.png'}  ·  "
        f"TensorBoard: tensorboard --logdir {run_dir / 'tensorboard'}"
    )


def main(cfg: TrainConfig, console: Console | None = None) -> tuple[dict, Path]:
    """Run a whole training job; returns (summary, run directory)."""
    console = console or Console(stderr=False)
    torch.manual_seed(cfg.seed)
    run = setup(cfg, console)
    model = load_model(run.source)
    if torch.cuda.is_available():
        model = model.to("cuda")
    model = apply_method(model, cfg)
    summary = fit(run, model, console)
    print_summary(console, summary, run.run_dir)
    sys.stdout.flush()
    return summary, run.run_dir
