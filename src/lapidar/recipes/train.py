"""Training recipe: data -> model -> the one loop -> summary.

`setup()` checks everything that can be checked before a large model is loaded (config, data files, rows, the
objective the data implies, tokenisation, trackers) and creates the run directory; `main()` checks the memory
estimate, loads and prepares the model, and hands it to `lapidar.training.loop.fit` — the same loop for sft,
pretrain, dpo and kto. `main()` is the command: it chooses the console sink (rich on a terminal, plain lines in a
log) and turns SIGINT/SIGTERM into a stop request (checkpoint, then exit). Runs resume with `--resume RUN_DIR`.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lapidar.config import TrainConfig, load_config, save_yaml
from lapidar.data.formats import Example, bundled_example, load_examples
from lapidar.data.quality import fatal_findings, note_warnings, raise_on_fatal
from lapidar.data.tokenize import answer_spans
from lapidar.errors import UserError
from lapidar.evaluation.diagnosis import diagnose, print_findings
from lapidar.io import write_json
from lapidar.methods import (
    apply_method,
    frozen_linears_to_bf16,
    get_method,
    quantization_config,
    resolve_targets,
    upcast_for_fp32_compute,
)
from lapidar.models.loading import RUN_FILE, load_model, load_tokenizer, resolve_model
from lapidar.models.qwen import checkpoint_first_layers
from lapidar.models.tokens import add_new_tokens, init_new_rows, resize_embeddings
from lapidar.training.checkpoint import STATE_FILE, latest_checkpoint
from lapidar.training.distributed import (
    ENGINES,
    World,
    check_strategy,
    join,
    launch,
    launch_ray,
    launcher_strategy,
)
from lapidar.training.estimate import check_disk, check_fits
from lapidar.training.events import Sink, console_sink
from lapidar.training.hardware import quant_compute_dtype, return_freed_blocks, use_bf16, use_fp16
from lapidar.training.loop import RunData, StopRequest, TrainingDiverged, fit
from lapidar.training.objectives import KINDS_FOR_OBJECTIVE, OBJECTIVE_FOR_KIND, get_objective
from lapidar.training.optim import check_optimizer
from lapidar.training.trackers import open_trackers

__all__ = ["load_prepared_model", "main", "print_summary", "resume_config", "setup", "stop_on_signals"]


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
    check_optimizer(method.optimizer or cfg.optimizer)  # a missing package fails before data and weights load
    check_strategy(cfg.strategy, cfg.method, cfg.precision)  # a missing deepspeed, what cannot be sharded
    train_path, val_path = _data_paths(cfg)
    all_kinds = tuple(OBJECTIVE_FOR_KIND)
    examples, fmt = load_examples(train_path, kinds=all_kinds)
    objective, why = _objective(cfg, examples[0].kind, train_path)
    val_examples = load_examples(val_path, kinds=KINDS_FOR_OBJECTIVE[objective])[0] if val_path else []
    # What reading changed (a key given twice, a number read as text...): one line per kind, before the split.
    notes: list[str] = [why, *note_warnings(examples, train_path), *note_warnings(val_examples, val_path)]
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
    encode = get_objective(objective).encode
    train = encode(tokenizer, examples, cfg, notes, "training")
    val = encode(tokenizer, val_examples, cfg, notes, "validation")
    if not train:
        raise UserError(
            f"{train_path}: no usable training rows (every answer starts after max_length={cfg.max_length}, or the "
            "texts hold fewer than 16 tokens in all); raise --max-length or add rows"
        )

    run_dir = Path(cfg.output) if cfg.output else _default_run_dir(cfg)
    if not resume:
        if (run_dir / RUN_FILE).exists():
            raise UserError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir}, or choose another --output"
            )
        check_disk(cfg, run_dir, console)  # before anything is written
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
    # With tool specs the system turn lists them as the model will see them (context: no loss).
    text, spans = answer_spans(tokenizer, example.messages, example.source, example.tools)
    parts, pos = [], 0
    for start, end in spans:
        parts += [f"[dim]{escape(text[pos:start])}[/dim]", f"[bold green]{escape(text[start:end])}[/bold green]"]
        pos = end
    parts.append(f"[dim]{escape(text[pos:])}[/dim]")
    console.print("[bold]First training example as the model sees it[/bold] (loss only on the green part):")
    console.print("".join(parts).rstrip())


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
    # 4-bit compute in bf16 where bf16 is asked for or native on the GPU, fp16 where the run trains in fp16, else fp32.
    quant = quantization_config(method, quant_compute_dtype(cfg.precision))
    model = load_model(run.source, quantization_config=quant)
    resize_embeddings(model, len(run.tokenizer))
    init_new_rows(model, run.new_tokens)
    if torch.cuda.is_available() and quant is None:
        model = model.to("cuda")
    if cfg.gradient_checkpointing or cfg.checkpoint_layers:
        model.config.use_cache = False
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if not cfg.gradient_checkpointing:
            checkpoint_first_layers(model, cfg.checkpoint_layers)
    bf16 = use_bf16(cfg.precision, sum(p.numel() for p in model.parameters()))
    fp32_compute = not bf16 and not use_fp16(cfg.precision) and quant is None
    if fp32_compute and not method.fused_lora:
        # A 16-bit checkpoint computing in fp32: upcast before the method reads the weights (DoRA's magnitudes,
        # a full fine-tune's fp32 parameters and optimiser states).
        _fp32_compute(model, cfg.precision, run.notes)
    model = apply_method(model, cfg, run.new_tokens.ids, run.notes)  # what the method says about this model
    if method.bf16_frozen_base and quant is None and bf16:
        # Same losses as fp32 frozen weights under autocast, a third of their bytes (methods.frozen_linears_to_bf16).
        frozen_linears_to_bf16(model)
    elif not bf16 and use_fp16(cfg.precision):
        _fp16_weights(model, method.bf16_frozen_base and quant is None, run.notes)
    elif fp32_compute and method.fused_lora:
        _fp32_compute(
            model, cfg.precision, run.notes
        )  # after the LoRA layers exist: the weights under them stay 16-bit
    return model


_WHY_FP32 = ": this device has no fast bf16, or the model is too small for it to pay"


def _fp32_compute(model, precision: str, notes: list[str]) -> None:
    """A run that computes in fp32 on a 16-bit checkpoint: hold it in fp32 (`methods.upcast_for_fp32_compute`)."""
    upcast, held, narrow = upcast_for_fp32_compute(model)
    if narrow is None:
        return
    name = "bf16" if narrow == torch.bfloat16 else "fp16"
    kept = f"; the {held:,} frozen weights under the LoRA layers stay {name} in memory (half the bytes, same results)"
    notes.append(
        f"{name} checkpoint, and the run computes in fp32 (--precision {precision}{_WHY_FP32 if precision == 'auto' else ''}"
        f"): {upcast:,} parameters are held in fp32 (an exact upcast){kept if held else ''}"
    )


def _fp16_weights(model, frozen_to_fp16: bool, notes: list[str]) -> None:
    """Under fp16 autocast: trained weights in fp32 (the gradient scaler unscales and steps fp32 gradients; fp16
    weights would lose small updates), frozen decoder linears in fp16 (what autocast computes with anyway)."""
    promoted = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            promoted += param.numel()
    if promoted:
        notes.append(f"fp16: {promoted:,} trained parameters held in fp32 (they were loaded in 16 bits)")
    if frozen_to_fp16:
        frozen_linears_to_bf16(model, torch.float16)


@contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[None]:
    """Ctrl-C and SIGTERM (a scheduler's kill) ask the loop to stop at the next step: it checkpoints and returns.

    A second signal interrupts at once (KeyboardInterrupt; the loop still checkpoints). Only the main thread can
    install handlers: elsewhere (a web worker's thread) this does nothing and the caller sets `stop` itself.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set(f"stopped by {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(
    cfg: TrainConfig,
    console: Console | None = None,
    resume: Path | None = None,
    sinks: list[Sink] | None = None,
    stop: StopRequest | None = None,
) -> tuple[dict, Path]:
    """Run a whole training job (or continue one); returns (summary, run directory).

    `sinks` replace the console view (default: rich on a terminal, plain lines otherwise); without `stop`, SIGINT and
    SIGTERM stop the run cleanly.
    """
    console = console or Console()
    cfg, launched_note = _launcher_strategy(cfg)
    world = join(cfg.strategy)  # one of several processes when torchrun / accelerate launch started this one
    if launched_note and world.main:
        console.print(f"[yellow]note:[/yellow] {launched_note}")
    if world.size == 1 and (cfg.nproc > 1 or cfg.launcher == "ray") and not os.environ.get(PREPARED_ENV):
        return _launch(cfg, console, resume)
    checkpoint = None
    if resume is not None:
        checkpoint = latest_checkpoint(resume)
        if checkpoint is None:
            raise UserError(f"{resume} has no complete checkpoint to resume from (checkpoints/step-*/{STATE_FILE})")
    torch.manual_seed(cfg.seed)
    if not world.main:
        console = Console(file=io.StringIO())  # process 0 talks to the user
    run = _setup_in_world(cfg, console, resume is not None, world)
    _check_memory(run, console, world)
    model = load_prepared_model(run)
    own_stop = stop is None
    stop = stop or StopRequest()
    with stop_on_signals(stop) if own_stop else nullcontext():
        try:
            summary = fit(run, model, sinks if sinks is not None else [console_sink(console)], stop, checkpoint)
        except TrainingDiverged:
            print_findings(console, diagnose(run.run_dir))
            raise
    print_summary(console, summary, run.run_dir)
    print_findings(console, diagnose(run.run_dir))
    return summary, run.run_dir


def _launcher_strategy(cfg: TrainConfig) -> tuple[TrainConfig, str]:
    """`cfg` with the strategy `accelerate launch` asked for (its FSDP or DeepSpeed option), and the note saying so."""
    asked = launcher_strategy()
    if asked is None or asked == cfg.strategy:
        return cfg, ""
    if cfg.strategy != "ddp":
        raise UserError(
            f"--strategy {cfg.strategy} and accelerate launch (which asks for --strategy {asked}) disagree; drop "
            f"--strategy (the launcher's choice is used), or leave FSDP/DeepSpeed out of the accelerate launch options"
        )
    return cfg.model_copy(update={"strategy": asked}), (
        f"accelerate launch asked for {ENGINES[asked]}: training with --strategy {asked} (lapidar's own settings "
        f"for it; the launcher's other FSDP/DeepSpeed options are not read)"
    )


def _setup_in_world(cfg: TrainConfig, console: Console, resume: bool, world: World) -> RunData:
    """`setup` in every process; process 0 creates the run directory and the others use the one it made.

    `lapidar train --nproc N` has made the directory before starting the processes (LAPIDAR_PREPARED names it).
    """
    if world.size == 1:
        return setup(cfg, console, resume=resume)
    prepared = os.environ.get(PREPARED_ENV)
    if world.main:
        try:
            run = setup(cfg, Console(file=io.StringIO()) if prepared else console, resume=resume or bool(prepared))
        except UserError as e:
            world.broadcast(("error", str(e)))
            raise
        world.broadcast(("ok", str(run.run_dir)))
    else:
        status, value = world.broadcast(None)
        if status == "error":
            raise UserError(value)
        run = setup(cfg.model_copy(update={"output": value}), console, resume=True)
    run.world = world
    return run


PREPARED_ENV = "LAPIDAR_PREPARED"  # set by `lapidar train --nproc N` for the processes it starts


def _check_memory(run: RunData, console: Console, world: World, processes: int = 1) -> None:
    """Refuse (before any weights load) a run that clearly cannot fit this machine; --force overrides.

    With several processes, process 0 decides for all of them (the launcher already did under --nproc): the
    processes on one machine share its RAM, and one verdict keeps them from disagreeing.
    """
    cfg = run.cfg
    objective = get_objective(run.objective)
    rows = objective.memory_rows(run.train)
    sized = cfg.model_copy(update={"batch_size": cfg.batch_size * objective.rows_per_item})
    if world.size == 1:
        _checkpoint_layers(run, check_fits(sized, console, rows, processes))
        return
    problem, layers = None, None
    if world.main:
        # Under `--nproc` the launcher has printed the estimate and refused or allowed the run; process 0 decides
        # the checkpointed layers again, quietly, for all of them.
        launched = bool(os.environ.get(PREPARED_ENV))
        try:
            out = Console(file=io.StringIO()) if launched else console
            layers = check_fits(sized, out, rows, int(os.environ.get("LOCAL_WORLD_SIZE", world.size)))
        except UserError as e:
            problem = None if launched else str(e)
    problem, layers = world.broadcast((problem, layers))
    if problem:
        raise UserError(problem)
    _checkpoint_layers(run, layers)


def _checkpoint_layers(run: RunData, layers: int | None) -> None:
    """Train with the first `layers` decoder layers checkpointed, as the memory check chose (None: as configured)."""
    if layers is not None:
        run.cfg = run.cfg.model_copy(update={"checkpoint_layers": layers})
        run.notes.append(
            f"selective activation checkpointing: the first {layers} decoder layers recompute their activations in "
            "the backward pass, so that the run fits this machine's memory (--checkpoint-layers 0 turns it off)"
        )


def _launch(cfg: TrainConfig, console: Console, resume: Path | None) -> tuple[dict, Path]:
    """`lapidar train --nproc N`: check everything and create the run directory here, then let torchrun start N
    processes that train it; returns their summary.

    Bad data or a bad config fail here, in one process, with the usual one-line message; Ctrl-C reaches the
    processes (they checkpoint and stop), not this waiting launcher.
    """
    if resume is not None:
        run_dir, args = resume, ["train", "--resume", str(resume)]
    else:
        run = setup(cfg, console)
        _check_memory(run, console, World(), processes=cfg.nproc)
        run_dir = run.run_dir
        args = ["train", str(run_dir / "config.yaml"), "--output", str(run_dir)]
    engine = ENGINES[cfg.strategy]
    if cfg.launcher == "ray":
        console.print(f"Starting {cfg.nproc} Ray Train workers (TorchTrainer, {engine}) for {run_dir}")
        config = {"run_dir": str(run_dir.resolve()), "cwd": os.getcwd(), "resume": resume is not None}
        launch_ray(cfg.nproc, _ray_worker, config, str((run_dir / "ray").resolve()))
        status = 0
    else:
        console.print(f"Starting {cfg.nproc} training processes (torchrun, {engine}) for {run_dir}")
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal sends Ctrl-C to the processes too
        try:
            status = launch(cfg.nproc, args, env={PREPARED_ENV: str(run_dir)})
        finally:
            signal.signal(signal.SIGINT, previous)
    summary_file = run_dir / "summary.json"
    if status != 0 or not summary_file.is_file():
        raise UserError(
            f"the {cfg.nproc} training processes stopped with exit status {status} (their messages are above); "
            f"{run_dir} keeps what they wrote"
            + (f"; continue with --resume {run_dir}" if latest_checkpoint(run_dir) else "")
        )
    return json.loads(summary_file.read_text()), run_dir


def _ray_worker(config: dict) -> None:
    """One Ray Train worker: the run the launcher prepared, trained by this worker's share of the processes."""
    os.chdir(config["cwd"])  # relative data paths in config.yaml mean what they meant to the launcher
    os.environ[PREPARED_ENV] = config["run_dir"]
    run_dir = Path(config["run_dir"])
    main(resume_config(run_dir), resume=run_dir if config["resume"] else None)


def resume_config(run_dir: Path) -> TrainConfig:
    """The config of an existing run, to continue it with `--resume`."""
    if not (run_dir / "config.yaml").is_file() or not (run_dir / RUN_FILE).is_file():
        raise UserError(f"{run_dir} is not a lapidar run directory (config.yaml or {RUN_FILE} is missing)")
    cfg = load_config(run_dir / "config.yaml", {})
    cfg.output = str(run_dir)
    return cfg
