"""Training recipe: data -> model -> optimiser -> loop -> checkpoints -> summary.

`setup()` checks everything that can be checked before a large model is loaded (config, data files, rows, the
objective the data implies, tokenisation) and creates the run directory; `main()` loads and prepares the model and
calls `fit()` — the supervised / continued-pretraining loop, kept in plain sight in this file — or the preference
loop of `recipes/preference.py` for DPO/KTO. Runs resume from their last checkpoint with `--resume RUN_DIR`.
"""

from __future__ import annotations

import json
import math
import random
import resource
import shutil
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lapidar.config import TrainConfig, load_config, save_yaml
from lapidar.data.formats import Example, bundled_example, load_examples
from lapidar.data.quality import fatal_findings, raise_on_fatal
from lapidar.data.tokenize import Encoded, answer_spans, collate, collate_padding_free, encode_conversation
from lapidar.errors import UserError
from lapidar.evaluation.diagnosis import diagnose, print_findings
from lapidar.evaluation.evaluate import generation_metrics
from lapidar.evaluation.report import plot_generation_metrics
from lapidar.io import atomic_dir, write_json, write_text
from lapidar.methods import apply_method, get_method, quantization_config, resolve_targets
from lapidar.models.attention import enable_padding_free
from lapidar.models.loading import RUN_FILE, ModelSource, load_model, load_tokenizer, resolve_model
from lapidar.models.qwen import BASE_EOS
from lapidar.models.tokens import NewTokens, add_new_tokens, init_new_rows, resize_embeddings
from lapidar.training.hardware import cpu_native_bf16, return_freed_blocks
from lapidar.training.loss import causal_lm_loss
from lapidar.training.observers import EarlyStopping, MetricsLog, plot_losses, progress_bar, read_metrics
from lapidar.training.optim import build_optimizer
from lapidar.training.schedule import lr_factor
from lapidar.training.trackers import open_trackers

__all__ = ["RunData", "fit", "main", "peak_rss_mib", "save_weights", "setup", "use_bf16"]

# What each kind of data trains by default, and which kinds each objective accepts.
OBJECTIVE_FOR_KIND = {"sft": "sft", "text": "pretrain", "preference": "dpo", "feedback": "kto"}
KINDS_FOR_OBJECTIVE = {"sft": ("sft",), "pretrain": ("text",), "dpo": ("preference",), "kto": ("feedback",)}
STATE_FILE = "trainer_state.pt"


@dataclass
class RunData:
    """Everything a training loop needs besides the model: config, run directory, tokenizer and data."""

    cfg: TrainConfig
    run_dir: Path
    source: ModelSource
    tokenizer: Any
    objective: str
    train_examples: list[Example]
    val_examples: list[Example]
    train: list[Encoded]  # tokenised for sft/pretrain (empty for dpo/kto, which tokenise pairs themselves)
    val: list[Encoded]
    data_format: str
    notes: list[str] = field(default_factory=list)
    trackers: Any = None  # W&B/MLflow sinks (lapidar.training.trackers.Trackers), opened before the model loads
    new_tokens: NewTokens = field(default_factory=NewTokens)  # --new-tokens, already added to `tokenizer`


# ---------------------------------------------------------------- setup


def _data_paths(cfg: TrainConfig) -> tuple[Path, Path | None]:
    if cfg.data is None:
        raise UserError("no training data: pass --data FILE (JSON/JSONL/CSV/Parquet/text) or --data example:claims")
    if cfg.data.startswith("example:"):
        train, val = bundled_example(cfg.data.removeprefix("example:"))
        return train, Path(cfg.val_data) if cfg.val_data else val
    return Path(cfg.data), Path(cfg.val_data) if cfg.val_data else None


def _default_run_dir(cfg: TrainConfig) -> Path:
    name = cfg.name or Path(cfg.model).name.replace("/", "-")
    return Path("runs") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{name}"


def _encode_chats(tokenizer, examples: list[Example], max_length: int, notes: list[str], what: str) -> list[Encoded]:
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


def _pack_texts(tokenizer, examples: list[Example], block: int) -> list[Encoded]:
    """Continued pretraining: documents joined with <|endoftext|> and cut into blocks of `block` tokens.

    Every token carries loss; a block may span two documents, as in GPT-style pretraining.
    """
    eos = tokenizer.convert_tokens_to_ids(BASE_EOS)
    stream: list[int] = []
    for ex in examples:
        stream += tokenizer(ex.text or "", add_special_tokens=False)["input_ids"] + [eos]
    blocks = [stream[i : i + block] for i in range(0, len(stream), block)]
    return [Encoded(b, list(b), False) for b in blocks if len(b) >= 16]


def _split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    if fraction <= 0 or len(examples) < 5:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(examples) * fraction))
    val_idx = set(order[:n_val])
    return [e for i, e in enumerate(examples) if i not in val_idx], [examples[i] for i in sorted(val_idx)]


def _objective(cfg: TrainConfig, kind: str, path: Path) -> tuple[str, str]:
    """(objective, why) — the one asked for, or the one the data implies."""
    if cfg.objective == "auto":
        objective = OBJECTIVE_FOR_KIND[kind]
        return objective, f"objective {objective} (chosen because {path.name} holds {kind} rows)"
    if kind not in KINDS_FOR_OBJECTIVE[cfg.objective]:
        wanted = " or ".join(KINDS_FOR_OBJECTIVE[cfg.objective])
        raise UserError(
            f"{path}: --objective {cfg.objective} needs {wanted} rows but the file holds {kind} rows; "
            f"use --objective {OBJECTIVE_FOR_KIND[kind]} or --objective auto"
        )
    return cfg.objective, f"objective {cfg.objective}"


def setup(cfg: TrainConfig, console: Console, resume: bool = False) -> RunData:
    """Validate config and data, load the tokenizer, encode, and create the run directory (no model yet)."""
    method = get_method(cfg.method)
    if method.adapter:
        resolve_targets(cfg.target_modules)
    train_path, val_path = _data_paths(cfg)
    all_kinds = tuple(OBJECTIVE_FOR_KIND)
    examples, fmt = load_examples(train_path, kinds=all_kinds)
    objective, why = _objective(cfg, examples[0].kind, train_path)
    val_examples = load_examples(val_path, kinds=KINDS_FOR_OBJECTIVE[objective])[0] if val_path else []
    notes: list[str] = [why]
    if not val_path:
        examples, val_examples = _split(examples, cfg.val_fraction, cfg.seed)
        if val_examples:
            notes.append(f"held out {len(val_examples)} of {len(examples) + len(val_examples)} rows for validation")
        else:
            notes.append("no validation data: early stopping is off (pass --val-data or use more rows)")

    source = resolve_model(cfg.model, cfg.init)
    tokenizer = load_tokenizer(source)
    new_tokens = add_new_tokens(tokenizer, cfg.new_tokens)  # before encoding, so the data uses them
    notes += new_tokens.notes()
    # The fatal checks of `lapidar data check` run before any model weights are loaded.
    raise_on_fatal(fatal_findings(examples, tokenizer, cfg.max_length, val_examples), cfg.data)
    train: list[Encoded] = []
    val: list[Encoded] = []
    if objective == "sft":
        train = _encode_chats(tokenizer, examples, cfg.max_length, notes, "training")
        val = _encode_chats(tokenizer, val_examples, cfg.max_length, notes, "validation")
        if not train:
            raise UserError(f"{train_path}: no usable training rows (every answer was cut off by max_length)")
    elif objective == "pretrain":
        train = _pack_texts(tokenizer, examples, cfg.max_length)
        val = _pack_texts(tokenizer, val_examples, cfg.max_length)
        if not train:
            raise UserError(f"{train_path}: the texts hold fewer than 16 tokens in all; nothing to train on")
        notes.append(f"packed {len(examples)} documents into {len(train)} blocks of up to {cfg.max_length} tokens")

    run_dir = Path(cfg.output) if cfg.output else _default_run_dir(cfg)
    if not resume:
        if (run_dir / RUN_FILE).exists():
            raise UserError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir}, or choose another --output"
            )
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
                "objective": objective,
                "weights": "adapter" if method.adapter else "model",
                "new_tokens": cfg.new_tokens,  # re-added in this order at loading time: the same ids
            },
        )
    if objective == "sft":
        _show_first_example(console, tokenizer, examples[0])
    # Opened here so that a missing wandb/mlflow package fails before a large model is loaded.
    trackers = open_trackers(cfg.report_to, run_dir, run_dir.name)
    return RunData(
        cfg, run_dir, source, tokenizer, objective, examples, val_examples, train, val, fmt, notes, trackers, new_tokens
    )


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


# ---------------------------------------------------------------- helpers shared by the loops


def use_bf16(cfg: TrainConfig, n_params: int) -> bool:
    """Whether to train under bf16 autocast: asked for, or `auto` on hardware that runs bf16 fast."""
    if cfg.precision != "auto":
        return cfg.precision == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    # On CPU, bf16 pays off only when large matmuls dominate and the CPU has native bf16 instructions.
    return n_params >= 100_000_000 and cpu_native_bf16()


def _batches(
    data: list[Encoded], batch_size: int, seed: int, shuffle: bool, padding_free: bool = False
) -> list[list[Encoded]]:
    """Batches in a random order; padded batches are length-grouped (sorted within windows of 50 batches).

    Grouping similar lengths wastes less compute on padding; the window keeps the order random. Padding-free
    batches have no padding to save, so they stay plain random draws (which also keeps the biggest batch, and with it
    the peak memory, smaller). The order depends only on `seed`, so a resumed run sees exactly the batches the
    interrupted one would have.
    """
    idx = list(range(len(data)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(idx)
    if padding_free:
        return [[data[i] for i in idx[b : b + batch_size]] for b in range(0, len(idx), batch_size)]
    window = batch_size * 50
    batches = []
    for w in range(0, len(idx), window):
        chunk = sorted(idx[w : w + window], key=lambda i: len(data[i].input_ids))
        batches += [[data[i] for i in chunk[b : b + batch_size]] for b in range(0, len(chunk), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def to_tensors(batch: list[Encoded], pad_id: int, device, padding_free: bool) -> dict[str, torch.Tensor]:
    """A batch as model inputs on `device`: one padding-free row, or right-padded rows."""
    tensors = collate_padding_free(batch) if padding_free else collate(batch, pad_id)
    return {k: v.to(device) for k, v in tensors.items()}


@torch.no_grad()
def evaluate_loss(
    model, data: list[Encoded], batch_size: int, pad_id: int, device, bf16: bool, padding_free: bool = False
) -> float:
    """Mean validation loss per label token."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in _batches(data, batch_size, 0, shuffle=False):
        tensors = to_tensors(batch, pad_id, device, padding_free)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss_sum, n = causal_lm_loss(model, tensors)
        total, count = total + loss_sum.item(), count + n
    model.train(was_training)
    return total / max(count, 1)


def save_weights(model, tokenizer, path: Path) -> None:
    """Save trained weights (adapter or whole model) and, when given, the tokenizer, atomically."""
    with atomic_dir(path) as tmp:
        model.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _neftune(model, alpha: float) -> None:
    """NEFTune (Jain et al. 2023, arXiv:2310.05914): uniform noise of scale alpha/sqrt(L*d) on input embeddings,
    in training mode only."""

    def hook(module, _inputs, output):
        if module.training:
            dims = output.size(1) * output.size(2)
            output = output + torch.empty_like(output).uniform_(-1, 1) * (alpha / math.sqrt(dims))
        return output

    model.get_input_embeddings().register_forward_hook(hook)


# ---------------------------------------------------------------- checkpoints


def _save_checkpoint(run_dir: Path, model, step: int, keep: int, state: dict) -> Path:
    """Write weights + optimiser/scheduler/RNG/loop state into checkpoints/step-N atomically; keep the last K."""
    root = run_dir / "checkpoints"
    path = root / f"step-{step:06d}"
    with atomic_dir(path) as tmp:
        model.save_pretrained(str(tmp))
        torch.save(state, tmp / STATE_FILE)
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and (p / STATE_FILE).is_file())
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run (None if it has none)."""
    done = sorted(p for p in (run_dir / "checkpoints").glob("step-*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


def _load_checkpoint_weights(model, path: Path, adapter: bool) -> None:
    from safetensors.torch import load_file

    if adapter:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
        return
    state: dict = {}
    for shard in sorted(path.glob("*.safetensors")):
        state.update(load_file(str(shard)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith("lm_head.weight")]:
        raise UserError(f"{path}: checkpoint does not match the model (missing {missing[:3]}, extra {unexpected[:3]})")


# ---------------------------------------------------------------- the loop


def fit(run: RunData, model, console: Console, resume_from: Path | None = None) -> dict:
    """Train `model` on `run.train` (sft or pretrain), evaluating on `run.val`; returns the run summary."""
    cfg, tok = run.cfg, run.tokenizer
    method = get_method(cfg.method)
    device = next(model.parameters()).device
    pad_id = tok.pad_token_id
    n_params = sum(p.numel() for p in model.parameters())
    bf16 = use_bf16(cfg, n_params)
    optimizer = build_optimizer(model, cfg, method.optimizer)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]

    steps_per_epoch = math.ceil(math.ceil(len(run.train) / cfg.batch_size) / cfg.grad_accum)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    warmup = round(cfg.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup, cfg.scheduler))
    stopper = EarlyStopping(cfg.patience if run.val else None, cfg.min_delta)
    weights_dir = run.run_dir / ("adapter" if method.adapter else "model")
    save_every = cfg.save_steps or cfg.eval_steps
    if cfg.neftune_alpha:
        _neftune(model, cfg.neftune_alpha)
    padding_free = cfg.padding_free and enable_padding_free(model)

    # Loop state: everything a checkpoint must hold to continue exactly where the run stopped.
    step, epoch, next_group, tokens_seen = 0, 0, 0, 0
    history: dict = {"initial_val_loss": None, "best_val_loss": None, "best_step": None, "last_val_loss": None}
    window = {"loss": 0.0, "tokens": 0, "seen": 0}
    torch.manual_seed(cfg.seed)
    if resume_from is not None:
        state = torch.load(resume_from / STATE_FILE, weights_only=False)
        _load_checkpoint_weights(model, resume_from, method.adapter)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, next_group, tokens_seen = state["step"], state["epoch"], state["next_group"], state["tokens_seen"]
        history, window = state["history"], state["window"]
        stopper.__dict__.update(state["stopper"])
        torch.set_rng_state(state["torch_rng"])
        # Forget what the interrupted run logged after this checkpoint; it will be logged again.
        metrics = run.run_dir / "metrics.jsonl"
        kept = [r for r in read_metrics(metrics) if r["step"] <= step] if metrics.exists() else []
        write_text(metrics, "".join(json.dumps(r) + "\n" for r in kept))
        console.print(f"[bold]Resuming[/bold] {run.run_dir} from {resume_from.name} (step {step} of {total_steps})")

    def loop_state() -> dict:
        return {
            "step": step,
            "epoch": epoch,
            "next_group": next_group,
            "tokens_seen": tokens_seen,
            "history": history,
            "window": window,
            "stopper": dict(stopper.__dict__),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    log = MetricsLog(run.run_dir, purge_step=step + 1 if resume_from is not None else None, trackers=run.trackers)
    if run.trackers is not None:
        run.trackers.start(cfg.model_dump())
    n_trainable = sum(p.numel() for p in trainable)
    console.print(
        f"[bold]Training[/bold] {escape(run.source.label)}: {run.objective} with {cfg.method}, "
        f"{n_trainable:,} of {n_params:,} parameters train ({100 * n_trainable / n_params:.2f}%); "
        f"{len(run.train)} train / {len(run.val)} validation {'blocks' if run.objective == 'pretrain' else 'rows'}; "
        f"{total_steps} steps of {cfg.batch_size}x{cfg.grad_accum}{' (padding-free)' if padding_free else ''}; "
        f"{'bf16 autocast' if bf16 else 'fp32'} on {device}"
    )
    for note in run.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")

    def run_eval() -> None:
        val_loss = evaluate_loss(model, run.val, cfg.batch_size, pad_id, device, bf16, padding_free)
        improved = stopper.update(step, val_loss)
        if history["initial_val_loss"] is None:
            history["initial_val_loss"] = val_loss
        history["last_val_loss"] = val_loss
        log.write({"step": step, "epoch": round(step / steps_per_epoch, 3), "val_loss": val_loss})
        mark = "  [green]best so far, saved[/green]" if improved and step > 0 else ""
        console.print(f"step {step:>5}  validation loss {val_loss:.4f}{mark}")
        if improved and step > 0:
            save_weights(model, tok, weights_dir)
            history.update(best_val_loss=val_loss, best_step=step)

    def run_generation_eval() -> None:
        # Answers generated for a few validation rows and scored (accuracy, ROUGE-L, ... by answer shape).
        scores = generation_metrics(
            model, tok, run.val_examples[: cfg.eval_rows], cfg.eval_metrics, max_new_tokens=None, bf16=bf16
        )
        log.write(
            {"step": step, "epoch": round(step / steps_per_epoch, 3), **{f"val_{k}": v for k, v in scores.items()}}
        )
        console.print(f"step {step:>5}  " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))

    generation_eval = bool(cfg.eval_every and run.objective == "sft" and run.val_examples)
    model.train()
    if run.val and step == 0:
        run_eval()
        if generation_eval:
            run_generation_eval()

    stop_reason = "reached max_steps" if cfg.max_steps else "finished all epochs"
    diverged: str | None = None
    resumed_at = step
    window_start = started = time.perf_counter()
    last_train_loss = float("nan")
    progress = progress_bar(console, "train")
    # SIGTERM (a scheduler's kill) is handled like Ctrl-C: checkpoint, then exit.
    previous_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    interrupted = False
    try:
        with progress:
            task = progress.add_task("train", total=total_steps, completed=step, loss="-", tps="-")
            while step < total_steps and not stopper.should_stop:
                batches = _batches(run.train, cfg.batch_size, cfg.seed + epoch, True, padding_free)
                groups = [batches[g : g + cfg.grad_accum] for g in range(0, len(batches), cfg.grad_accum)]
                while next_group < len(groups):
                    group = groups[next_group]
                    group_tokens = sum(e.n_answer_tokens for b in group for e in b)
                    step_loss = 0.0
                    for batch in group:
                        tensors = to_tensors(batch, pad_id, device, padding_free)
                        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                            loss_sum, _ = causal_lm_loss(model, tensors)
                        # Normalise by the label tokens of the whole accumulated step, so every token weighs
                        # the same whatever micro-batch it landed in.
                        (loss_sum / group_tokens).backward()
                        step_loss += loss_sum.item()
                        seen = sum(len(e.input_ids) for e in batch)
                        window["seen"] += seen
                        tokens_seen += seen
                    if not math.isfinite(step_loss):
                        diverged = f"loss became {step_loss} at step {step + 1}"
                        log.write({"step": step + 1, "train_loss": step_loss})
                        optimizer.zero_grad(set_to_none=True)
                        break
                    window["loss"] += step_loss
                    window["tokens"] += group_tokens
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    next_group += 1

                    if step % cfg.log_steps == 0 or step == total_steps:
                        elapsed = time.perf_counter() - window_start
                        last_train_loss = window["loss"] / max(window["tokens"], 1)
                        tps = window["seen"] / max(elapsed, 1e-9)
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
                        window = {"loss": 0.0, "tokens": 0, "seen": 0}
                        window_start = time.perf_counter()
                    progress.update(task, completed=step)

                    if run.val and (step % cfg.eval_steps == 0 or step == total_steps):
                        run_eval()
                    if generation_eval and cfg.eval_every and (step % cfg.eval_every == 0 or step == total_steps):
                        run_generation_eval()
                    if step % save_every == 0 or step == total_steps:
                        _save_checkpoint(run.run_dir, model, step, cfg.keep_checkpoints, loop_state())
                    if stopper.should_stop:
                        stop_reason = stopper.reason
                        break
                    if step >= total_steps:
                        break
                if diverged or stopper.should_stop or step >= total_steps:
                    break
                epoch, next_group = epoch + 1, 0
    except KeyboardInterrupt:
        interrupted = True
        optimizer.zero_grad(set_to_none=True)
        stop_reason = f"interrupted at step {step}"
        ckpt = _save_checkpoint(run.run_dir, model, step, cfg.keep_checkpoints, loop_state())
        console.print(f"[yellow]Interrupted: checkpoint saved in {ckpt}; continue with --resume {run.run_dir}[/yellow]")
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        log.close(ok=diverged is None)

    if diverged:
        stop_reason = f"diverged: {diverged}"
    elif history["best_step"] is None or not run.val:
        # No validation (or it never improved): the result is the last state.
        save_weights(model, tok, weights_dir)
    wall = time.perf_counter() - started
    summary = {
        "model": run.source.label,
        "random_init": run.source.random_init,
        "method": cfg.method,
        "objective": run.objective,
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
        "interrupted": interrupted,
        "resumed_from_step": resumed_at or None,
        "saved_weights": weights_dir.name,
        "saved_from_step": history["best_step"] if history["best_step"] is not None else step,
        "wall_time_s": round(wall, 1),
        "tokens_per_s": round((tokens_seen if not resumed_at else window["seen"]) / max(wall, 1e-9), 1),
        "peak_memory_mib": peak_rss_mib(),
        "peak_memory_kind": "process RSS",
        "precision": "bf16" if bf16 else "fp32",
        "device": str(device),
    }
    if torch.cuda.is_available():
        summary["peak_cuda_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    write_json(run.run_dir / "summary.json", summary)
    plot_losses(run.run_dir / "metrics.jsonl", run.run_dir / "loss.png", f"{run.source.label} · {cfg.method}")
    plot_generation_metrics(run.run_dir)
    if diverged:
        print_findings(console, diagnose(run.run_dir))
        good = weights_dir if weights_dir.exists() else latest_checkpoint(run.run_dir)
        where = f"; the last good weights are in {good}" if good else ""
        raise UserError(f"training diverged: {diverged}{where}; lower --lr (now {cfg.lr}) and train again")
    return summary


def print_summary(console: Console, summary: dict, run_dir: Path) -> None:
    """The end-of-run table."""
    table = Table(title=f"Run finished: {run_dir}", show_header=False)
    keys = ["model", "objective", "steps", "tokens_seen", "initial_val_loss", "best_val_loss", "best_step"]
    keys += ["final_train_loss", "stop_reason", "wall_time_s", "tokens_per_s", "peak_memory_mib"]
    for key in keys:
        value = summary.get(key)
        if isinstance(value, float):
            value = f"{value:.4f}" if "loss" in key else f"{value:,.1f}"
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)
    console.print(
        f"Weights: {run_dir / summary['saved_weights']}  ·  curves: {run_dir / 'loss.png'}  ·  "
        f"TensorBoard: tensorboard --logdir {run_dir / 'tensorboard'}"
    )


def load_prepared_model(run: RunData):
    """Load the base model the way the method needs it (quantised or not) and mark what trains."""
    cfg = run.cfg
    method = get_method(cfg.method)
    if not torch.cuda.is_available():
        # Training on CPU: freed activations go back to the OS instead of staying in glibc's heap (a third less
        # peak memory on the 0.5B shape; see hardware.return_freed_blocks).
        return_freed_blocks()
    # 4-bit compute in bf16 only where bf16 is asked for or native on the GPU; fp32 on CPU otherwise.
    bf16_compute = cfg.precision == "bf16" or (
        cfg.precision == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    )
    quant = quantization_config(method, compute_bf16=bf16_compute)
    model = load_model(run.source, quantization_config=quant)
    resize_embeddings(model, len(run.tokenizer))
    init_new_rows(model, run.new_tokens)
    if torch.cuda.is_available() and quant is None:
        model = model.to("cuda")
    if cfg.gradient_checkpointing:
        model.config.use_cache = False
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return apply_method(model, cfg, run.new_tokens.ids)


def main(cfg: TrainConfig, console: Console | None = None, resume: Path | None = None) -> tuple[dict, Path]:
    """Run a whole training job (or continue one); returns (summary, run directory)."""
    console = console or Console()
    checkpoint = None
    if resume is not None:
        checkpoint = latest_checkpoint(resume)
        if checkpoint is None:
            raise UserError(f"{resume} has no complete checkpoint to resume from (checkpoints/step-*/{STATE_FILE})")
    torch.manual_seed(cfg.seed)
    run = setup(cfg, console, resume=resume is not None)
    # Refuse (before any weights load) a run that clearly cannot fit this machine; --force overrides.
    from lapidar.recipes.estimate import check_fits

    check_fits(cfg, console, run.train or None)
    model = load_prepared_model(run)
    if run.objective in ("dpo", "kto"):
        from lapidar.recipes.preference import fit_preference

        if resume is not None:
            raise UserError("--resume is not supported for dpo/kto runs yet; start the run again")
        summary = fit_preference(run, model, console)
    else:
        summary = fit(run, model, console, resume_from=checkpoint)
    print_summary(console, summary, run.run_dir)
    print_findings(console, diagnose(run.run_dir))
    return summary, run.run_dir


def resume_config(run_dir: Path) -> TrainConfig:
    """The config of an existing run, to continue it with `--resume`."""
    if not (run_dir / "config.yaml").is_file() or not (run_dir / RUN_FILE).is_file():
        raise UserError(f"{run_dir} is not a lapidar run directory (config.yaml or {RUN_FILE} is missing)")
    cfg = load_config(run_dir / "config.yaml", {})
    cfg.output = str(run_dir)
    return cfg
