"""`lapidar estimate` and the check `lapidar train` runs before loading a model: will this run fit, how long will
an epoch take, and what is the cheapest change that makes it fit.

The numbers come from `lapidar.training.memory` (a model of lapidar's own training path) and
`lapidar.training.hardware` (the GPU table, this machine's RAM and a matmul probe). Nothing large is loaded:
the model's shape comes from the preset table or the model directory's config.json, the data is tokenised only
when it is given.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lapidar.config import TrainConfig
from lapidar.errors import UserError
from lapidar.methods import get_method, resolve_targets
from lapidar.training.distributed import SHARDED
from lapidar.training.hardware import Device, bf16_rule, cpu_device, find_gpu, fp16_rule, parse_memory, this_machine
from lapidar.training.memory import (
    ATTENTION,
    MLP,
    GiB,
    MemoryEstimate,
    ModelShape,
    Plan,
    disk_bytes,
    estimate_memory,
    flops_per_token,
)

__all__ = [
    "EFFICIENCY",
    "MEMORY_FIELDS",
    "DataStats",
    "Fix",
    "Report",
    "check_disk",
    "check_fits",
    "checkpoint_choice",
    "data_stats",
    "epoch_seconds",
    "estimate",
    "fixes",
    "model_shape",
    "plan_from_config",
    "precision",
    "print_report",
    "verdict",
]

FITS, TIGHT, NO_FIT = "fits", "tight", "does not fit"
# The estimate is within ±15% of measured peaks (bench/ESTIMATE_ACCURACY.md); "tight" is that band.
MARGIN = 0.15
# Share of the device's peak matmul throughput a training step reaches. CPU: measured for lapidar's path on a
# 2-core AVX-512 machine (LoRA on Qwen2.5-0.5B shape, fp32); GPU: typical of PyTorch eager training with SDPA
# (no fused kernels), lower with a 4/8-bit base that is dequantised at every matmul.
EFFICIENCY = {"cpu": 0.45, "cuda": 0.40, "cuda-quantised": 0.25}


# The TrainConfig fields the memory model reads (the ones `lapidar estimate` takes as flags, minus the data): a
# combination of these decides whether a trial fits; the others (lr, epochs, warmup...) do not change memory.
MEMORY_FIELDS = (
    "model",
    "init",
    "max_length",
    "method",
    "target_modules",
    "lora_r",
    "lora_dropout",
    "freeze_trainable_layers",
    "freeze_extra_modules",
    "galore_rank",
    "optimizer",
    "batch_size",
    "grad_accum",
    "precision",
    "gradient_checkpointing",
    "checkpoint_layers",
    "padding_free",
)


@dataclass(frozen=True)
class DataStats:
    """What the training data implies for memory and time (token counts after tokenisation and truncation)."""

    rows: int
    tokens: int  # non-padding tokens per epoch
    padded_tokens: int  # positions fed per epoch, padding included (none when padding-free)
    label_tokens: int
    widest: int  # padded width of the widest batch (padding-free: its tokens / batch size)
    most_labels: int  # label positions of the fullest batch


@dataclass
class Fix:
    """One change to the run and what it gives."""

    change: str
    plan: Plan
    estimate: MemoryEstimate
    verdict: str


@dataclass
class Report:
    """Everything `lapidar estimate` prints (and writes with --json)."""

    model: str
    plan: Plan
    estimate: MemoryEstimate
    device: Device
    capacity: float
    verdict: str
    fixes: list[Fix]
    stats: DataStats | None
    epoch_s: float | None
    tokens_per_s: float | None
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (bytes as GiB rounded to 0.01)."""

        def gib(x: float) -> float:
            return round(x / GiB, 2)

        p = self.plan
        return {
            "model": self.model,
            "method": p.method,
            "params": p.shape.n_params,
            "trainable_params": self.estimate.trainable_params,
            "batch_size": p.batch_size,
            "grad_accum": p.grad_accum,
            "seq_len": p.seq_len,
            "label_tokens": p.labels,
            "gradient_checkpointing": p.gradient_checkpointing,
            "checkpoint_layers": p.checkpointed_layers,
            "precision": precision(p),
            "quant": p.quant_bits,
            "gpus": p.gpus,
            "zero": p.zero,
            "offload": p.offload,
            "device": self.device.name,
            "capacity_gib": gib(self.capacity),
            "peak_gib": gib(self.estimate.total),
            "peak_phase": self.estimate.peak_phase,
            "breakdown_gib": {k: gib(v) for k, v in self.estimate.breakdown().items()},
            "verdict": self.verdict,
            "fixes": [
                {"change": f.change, "peak_gib": gib(f.estimate.total), "verdict": f.verdict} for f in self.fixes
            ],
            "data": None if self.stats is None else self.stats.__dict__,
            "tokens_per_s": self.tokens_per_s,
            "epoch_seconds": self.epoch_s,
            "notes": self.notes + self.estimate.notes,
        }


# ---------------------------------------------------------------- model and data


def _dtype_bytes(config: dict) -> int:
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    return 4 if "32" in dtype else 2


def model_shape(spec: str, init: str = "pretrained") -> tuple[ModelShape, int]:
    """(shape, bytes per saved weight) of a preset, hub id or model directory, without loading weights.

    Random-init presets are saved in fp32 below 1B parameters and bf16 above (`models/loading.py`); Qwen2.5
    checkpoints are bf16; a local directory says so in its config.json.
    """
    from lapidar.models.loading import read_model_config
    from lapidar.models.presets import PRESETS, get_preset

    path = Path(spec).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        config = read_model_config(path)  # truncated JSON, another architecture: one line, as for `train`
        return ModelShape.from_config(path.name, config), _dtype_bytes(config)
    try:
        preset = get_preset(spec)
    except UserError:
        # A directory that is not here yet (a config written for another machine): match its name to a preset.
        found = PRESETS.get(path.name.lower())
        if found is None:
            raise UserError(
                f"cannot tell the shape of {spec!r}: not a preset (see `lapidar models`), not a model directory "
                "with config.json; pass a preset name with the same architecture"
            ) from None
        preset = found
    shape = ModelShape.from_preset(preset)
    random_init = preset.hub_id is None or init == "random"
    return shape, (4 if random_init and preset.n_params < 1e9 else 2)


def data_stats(encoded: list, batch_size: int, seed: int = 42, padding_free: bool = True) -> DataStats:
    """Token counts of tokenised rows (`Encoded`) in the batches of lapidar's loader.

    A padding-free batch is one row of its examples' total length; its "width" here is that total spread over the
    batch (`Plan` counts batch x width positions).
    """
    from lapidar.data.batching import batches as make_batches

    batches = make_batches(encoded, batch_size, seed, True, padding_free)
    if padding_free:
        widths = [-(-sum(len(e.input_ids) for e in b) // len(b)) for b in batches] or [0]
    else:
        widths = [max(len(e.input_ids) for e in b) for b in batches] or [0]
    labels = [sum(e.n_answer_tokens for e in b) for b in batches] or [0]
    return DataStats(
        rows=len(encoded),
        tokens=sum(len(e.input_ids) for e in encoded),
        padded_tokens=sum(w * len(b) for w, b in zip(widths, batches, strict=False)),
        label_tokens=sum(labels),
        widest=max(widths),
        most_labels=max(labels),
    )


def _load_stats(cfg: TrainConfig) -> DataStats:
    from lapidar.data.formats import load_examples
    from lapidar.data.tokenize import encode_conversation
    from lapidar.models.loading import load_tokenizer, resolve_model
    from lapidar.models.qwen import build_tokenizer

    examples, _ = load_examples(_data_path(cfg), kinds=("sft", "text"))
    try:
        tokenizer = load_tokenizer(resolve_model(cfg.model, cfg.init))
    except UserError:
        tokenizer = build_tokenizer("instruct")  # the shape is known but the model is not here: Qwen2.5's tokenizer
    if examples and examples[0].kind == "text":
        from lapidar.data.batching import pack_texts
        from lapidar.models.qwen import BASE_EOS

        # The very blocks training packs (same tokenizer, same block length).
        texts = [e.text or "" for e in examples]
        encoded = pack_texts(tokenizer, texts, cfg.max_length, tokenizer.convert_tokens_to_ids(BASE_EOS))
    else:
        encoded = [encode_conversation(tokenizer, e.messages, cfg.max_length, e.source) for e in examples]
        encoded = [e for e in encoded if e.n_answer_tokens]
    if not encoded:
        raise UserError(f"{cfg.data}: no usable training rows")
    return data_stats(encoded, cfg.batch_size, cfg.seed, cfg.padding_free)


def _data_path(cfg: TrainConfig) -> Path:
    from lapidar.data.formats import bundled_example

    assert cfg.data is not None
    if cfg.data.startswith("example:"):
        return bundled_example(cfg.data.removeprefix("example:"))[0]
    path = Path(cfg.data)
    if not path.exists():
        raise UserError(f"data file not found: {path}")
    return path


# ---------------------------------------------------------------- plan, verdict, fixes


def plan_from_config(
    cfg: TrainConfig,
    device: Device,
    stats: DataStats | None = None,
    *,
    quant: str | None = None,
    gpus: int = 1,
    zero: int = 0,
    offload: bool = False,
    masters: bool = False,
) -> Plan:
    """The memory plan of a training config on `device` (with the widths of `stats` when the data is known)."""
    shape, weight_bytes = model_shape(cfg.model, cfg.init)
    method = get_method(cfg.method)
    targets = tuple(resolve_targets(cfg.target_modules)) if method.adapter else ()
    bf16 = bf16_rule(cfg.precision, shape.n_params, device.kind == "cuda", bool(device.bf16))
    fp16 = not bf16 and fp16_rule(cfg.precision, device.kind == "cuda", bool(device.bf16))
    if fp16 and not method.adapter:
        weight_bytes = 4  # trained weights are held in fp32 under fp16 (the gradient scaler steps fp32 masters)
    seq_len, labels = cfg.max_length, None
    if stats is not None:
        seq_len, labels = min(stats.widest, cfg.max_length), stats.most_labels
    if quant and not method.adapter:
        raise UserError(f"--quant {quant} needs an adapter method (lora, qlora...); {cfg.method} trains the base")
    return Plan(
        shape=shape,
        method=cfg.method,
        batch_size=cfg.batch_size,
        seq_len=seq_len,
        label_tokens=labels,
        grad_accum=cfg.grad_accum,
        gradient_checkpointing=cfg.gradient_checkpointing,
        checkpoint_layers=cfg.checkpoint_layers or 0,
        weight_bytes=weight_bytes,
        bf16=bf16 or fp16,
        fp16=fp16,
        quant=quant or method.quant,
        lora_r=cfg.lora_r,
        lora_dropout=cfg.lora_dropout,
        targets=targets,
        freeze_layers=cfg.freeze_trainable_layers,
        freeze_extra=tuple(cfg.freeze_extra_modules),
        optimizer=method.optimizer or cfg.optimizer,
        galore_rank=cfg.galore_rank,
        gpus=gpus,
        zero=zero,
        offload=offload,
        fp32_masters=masters,
        device=device.kind,
        data_tokens=0 if stats is None else stats.tokens,
    )


def verdict(peak: float, capacity: float) -> str:
    """fits (below capacity by more than the estimate's error), tight (within it), does not fit (above it)."""
    if peak <= capacity * (1 - MARGIN):
        return FITS
    if peak <= capacity * (1 + MARGIN):
        return TIGHT
    return NO_FIT


def _recompute_share(k: int, n: int) -> str:
    """The extra compute of checkpointing k of n layers (a second forward: about a third of a step's per layer)."""
    return f"{round(100 * k / (3 * n))}% more compute"


def checkpoint_choice(plan: Plan, capacity: float) -> tuple[int, MemoryEstimate] | None:
    """The fewest decoder layers to checkpoint (the first N, more than `plan` already does) for `plan` to fit
    `capacity` by the estimate's margin, with that estimate: selective checkpointing recomputes only as much as the
    memory needs. None when `plan` checkpoints every layer already, or when even all of them would not fit."""
    if plan.gradient_checkpointing:
        return None
    for k in range(plan.checkpoint_layers + 1, plan.shape.layers + 1):
        est = estimate_memory(plan.with_(checkpoint_layers=k))
        if verdict(est.total, capacity) == FITS:
            return k, est
    return None


def _candidates(plan: Plan, multi_gpu: bool = True) -> list[tuple[str, str, Plan]]:
    """(lever, change, plan) for single changes, cheapest first: the same training a little slower, then less
    memory for some quality, then shorter rows, then more GPUs (`multi_gpu`: only where `--gpus` is a flag)."""
    out: list[tuple[str, str, Plan]] = []
    for b in sorted({plan.batch_size // 2, 1}, reverse=True):
        if 1 <= b < plan.batch_size:
            accum = plan.grad_accum * math.ceil(plan.batch_size / b)
            labels = None if plan.label_tokens is None else math.ceil(plan.label_tokens * b / plan.batch_size)
            change = f"--batch-size {b} --grad-accum {accum} (same effective batch)"
            out.append(("batch", change, plan.with_(batch_size=b, grad_accum=accum, label_tokens=labels)))
    if not plan.gradient_checkpointing:
        n = plan.shape.layers
        for k in sorted({n // 4, n // 2}):
            if plan.checkpointed_layers < k < n:
                change = f"--checkpoint-layers {k} (~{_recompute_share(k, n)})"
                out.append(("ckpt", change, plan.with_(checkpoint_layers=k)))
        out.append(("ckpt", "--gradient-checkpointing (~1/3 more compute)", plan.with_(gradient_checkpointing=True)))
    if plan.adapter and set(plan.targets) - {"q_proj", "v_proj"}:
        change = "--target-modules q_proj,v_proj (fewer LoRA modules)"
        out.append(("targets", change, plan.with_(targets=("q_proj", "v_proj"))))
    if plan.adapter and plan.quant_bits is None:
        out.append(("method", "--method qlora (4-bit base)", plan.with_(method="qlora", quant="4bit")))
    if not plan.adapter:  # full, galore, q-galore, freeze: the base itself trains
        all_linear = ATTENTION + MLP
        lora = plan.with_(method="lora", optimizer="adamw", targets=all_linear)
        out.append(("method", "--method lora (adapter on a frozen base)", lora))
        out.append(("method", "--method qlora (adapter on a 4-bit base)", lora.with_(method="qlora", quant="4bit")))
    if not plan.adapter and not plan.partial and plan.optimizer_in_effect == "adamw":
        # Full fine-tuning with plain AdamW (a method that implies its own optimiser keeps it).
        out.append(("optimizer", "--optimizer adamw-8bit", plan.with_(optimizer="adamw-8bit")))
    for length in (plan.seq_len // 2, plan.seq_len // 4):
        if length >= 128:
            labels = None if plan.label_tokens is None else math.ceil(plan.label_tokens * length / plan.seq_len)
            change = f"--max-length {length} (longer rows are cut)"
            out.append(("length", change, plan.with_(seq_len=length, label_tokens=labels)))
    if plan.device == "cuda" and multi_gpu:
        for n in (2, 4, 8):
            if n > plan.gpus or (n == plan.gpus and plan.zero < 3):
                change = f"--gpus {n} --zero 3 (weights, gradients and states sharded)"
                out.append(("gpus", change, plan.with_(gpus=n, zero=3)))
    return out


def fixes(plan: Plan, capacity: float, limit: int = 4, multi_gpu: bool = True) -> list[Fix]:
    """The cheapest changes that make `plan` fit `capacity`: single changes in order of cost; when none is
    enough, the cheapest combination (one change per lever, each lever taken at its first option that helps).

    Each change is written as the flags that make it; `multi_gpu=False` leaves out `--gpus`/`--zero`, which
    `lapidar estimate` has and `lapidar train` does not.
    """
    found: list[Fix] = []
    for _, change, candidate in _candidates(plan, multi_gpu):
        est = estimate_memory(candidate)
        if verdict(est.total, capacity) == FITS:
            found.append(Fix(change, candidate, est, FITS))
            if len(found) >= limit:
                break
    if found:
        return found
    current, taken = plan, {}
    while True:
        options = [(lever, change, p) for lever, change, p in _candidates(current, multi_gpu) if lever not in taken]
        if not options:
            return []
        # The cheapest remaining lever, at the option that lowers the peak most.
        lever = options[0][0]
        _, change, current = min((o for o in options if o[0] == lever), key=lambda o: estimate_memory(o[2]).total)
        taken[lever] = change
        if verdict(estimate_memory(current).total, capacity) == FITS:
            break
    # Drop the levers the combination does not need (an early cheap one can be made moot by a later one).
    changes = list(taken.values())
    for change in list(changes):
        trial = _apply(plan, [c for c in changes if c != change])
        if trial is not None and verdict(estimate_memory(trial).total, capacity) == FITS:
            changes.remove(change)
    final = _apply(plan, changes) or current
    text = " + ".join(c.split(" (")[0] for c in changes)
    return [Fix(text, final, estimate_memory(final), FITS)]


def _apply(plan: Plan, changes: list[str]) -> Plan | None:
    for change in changes:
        options = {c: p for _, c, p in _candidates(plan)}
        if change not in options:
            return None
        plan = options[change]
    return plan


def precision(plan: Plan) -> str:
    """How training computes: bf16 autocast, bf16 weights, or fp32 (a 4/8-bit base computes in fp32 on CPU)."""
    if plan.fp16:
        return "fp16 autocast, loss scaling"
    if plan.bf16:
        return "bf16 autocast"
    return "fp32"  # a 16-bit checkpoint is upcast for it (memory.as_trained)


# ---------------------------------------------------------------- time


def epoch_seconds(plan: Plan, stats: DataStats, device: Device, efficiency: float | None = None) -> tuple[float, float]:
    """(seconds per epoch, trained tokens per second) from the data's token counts and a throughput model."""
    peak = device.peak_tflops(plan.bf16, plan.fp16) * 1e12
    if efficiency is None:
        key = "cpu" if device.kind == "cpu" else ("cuda-quantised" if plan.quant_bits else "cuda")
        efficiency = EFFICIENCY[key]
    mean_len = stats.padded_tokens / max(stats.rows, 1)
    label_fraction = stats.label_tokens / max(stats.padded_tokens, 1)
    per_token = flops_per_token(plan, mean_len, label_fraction)
    seconds = stats.padded_tokens * per_token / (peak * efficiency * max(plan.gpus, 1))
    return seconds, stats.tokens / max(seconds, 1e-9)


# ---------------------------------------------------------------- the whole report


def _own_rss() -> float:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0.0


def _resolve_device(device: str | None, memory: str | None, probe: bool) -> Device:
    if device:
        d = find_gpu(device)
        if memory:
            d = dataclasses.replace(d, memory=parse_memory(memory))
        return d
    if memory:
        return Device(f"a device with {memory}", parse_memory(memory), 100.0, 20.0, "cuda", "bf16 assumed")
    return this_machine(probe, extra_available=_own_rss())


def estimate(
    cfg: TrainConfig,
    *,
    device: str | None = None,
    memory: str | None = None,
    quant: str | None = None,
    gpus: int = 1,
    zero: int = 0,
    strategy: str | None = None,
    stats: DataStats | None = None,
    probe: bool = True,
    read_data: bool = True,
    shards: int = 1,
) -> Report:
    """Estimate `cfg` on a named device (or `memory` bytes, or this machine).

    The data's widths come from `stats`, else from tokenising `cfg.data` (unless `read_data` is False); without
    either the estimate assumes full-length rows. `shards`: processes on this machine that shard weights, gradients
    and optimiser states between them (`--nproc N --strategy fsdp` on CPU); the estimate is one process's.
    """
    offload = False
    if shards > 1:
        strategy = cfg.strategy
    if strategy is not None:
        # fsdp shards weights, gradients and optimiser states like ZeRO-3 (FSDP's FULL_SHARD).
        stages = {"ddp": 0, **SHARDED}
        if strategy not in stages:
            raise UserError(f"--strategy {strategy}: use one of {', '.join(stages)}")
        if zero and zero != stages[strategy]:
            raise UserError(f"--strategy {strategy} and --zero {zero} disagree; give one of them")
        zero, offload = stages[strategy], strategy == "zero3-offload"
    if zero not in (0, 2, 3):
        raise UserError(f"--zero {zero}: use 2 or 3 (or leave it out for plain data parallel)")
    if gpus < 1:
        raise UserError("--gpus must be at least 1")
    dev = _resolve_device(device, memory, probe)
    if shards > 1:
        gpus = shards
    elif dev.kind == "cpu" and gpus > 1:
        raise UserError("--gpus needs a GPU: name one with --device (e.g. --device 'A100 80GB')")
    notes: list[str] = []
    if stats is None and cfg.data and read_data:
        stats = _load_stats(cfg)
    if stats is None:
        notes.append(
            f"no --data: assumes every row is max_length={cfg.max_length} tokens and every token is trained "
            "(an upper bound); pass --data for real widths and the time per epoch"
        )
    # DeepSpeed's ZeRO (--strategy zero*, or --zero N) steps an fp32 copy of the trained weights; FSDP2 steps them.
    masters = zero > 0 and strategy != "fsdp"
    plan = plan_from_config(cfg, dev, stats, quant=quant, gpus=gpus, zero=zero, offload=offload, masters=masters)
    est = estimate_memory(plan)
    if dev.note:
        notes.append(f"{dev.name}: {dev.note}")
    epoch_s = tps = None
    if stats is not None and (dev.kind == "cuda" or dev.fp32_tflops > 0):
        epoch_s, tps = epoch_seconds(plan, stats, dev)
    capacity = dev.memory
    return Report(
        model=cfg.model,
        plan=plan,
        estimate=est,
        device=dev,
        capacity=capacity,
        verdict=verdict(est.total, capacity),
        fixes=fixes(plan, capacity) if verdict(est.total, capacity) != FITS else [],
        stats=stats,
        epoch_s=epoch_s,
        tokens_per_s=tps,
        notes=notes,
    )


def _gib(x: float) -> str:
    return f"{x / GiB:.2f} GiB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def print_report(console: Console, report: Report) -> None:
    """The estimate as tables: breakdown, verdict, fixes, time per epoch."""
    p, est = report.plan, report.estimate
    title = (
        f"{escape(report.model)} ({p.shape.n_params / 1e9:.2f}B) · {p.method} · batch {p.batch_size}x{p.grad_accum} · "
        f"{p.seq_len} tokens · {precision(p)}{_checkpointing_label(p)}"
        + (f" · {p.quant_bits}" if p.quant_bits else "")
        + (f" · {p.gpus} GPUs ZeRO-{p.zero}{' offload' if p.offload else ''}" if p.gpus > 1 else "")
    )
    table = Table(title=title, show_header=True)
    table.add_column("peak memory per process", justify="left")
    table.add_column("", justify="right")
    for name, value in est.breakdown().items():
        table.add_row(name, _gib(value))
    table.add_row("[bold]peak[/bold] (" + est.peak_phase + ")", f"[bold]{_gib(est.total)}[/bold]")
    console.print(table)
    console.print(f"trainable parameters: {est.trainable_params:,} of {p.shape.n_params:,}")
    colour = {FITS: "green", TIGHT: "yellow", NO_FIT: "red"}[report.verdict]
    console.print(
        f"[bold {colour}]{report.verdict}[/bold {colour}] on {escape(report.device.name)}: "
        f"{_gib(est.total)} of {_gib(report.capacity)} (estimate ±{MARGIN:.0%})"
    )
    if report.fixes:
        fix_table = Table(title="cheapest changes that make it fit", show_header=True)
        fix_table.add_column("change")
        fix_table.add_column("new peak", justify="right")
        for f in report.fixes:
            fix_table.add_row(escape(f.change), _gib(f.estimate.total))
        console.print(fix_table)
    elif report.verdict != FITS:
        console.print("[red]no change lapidar knows makes it fit; use a larger device or a smaller model[/red]")
    if report.epoch_s is not None and report.stats is not None:
        console.print(
            f"time per epoch: ~{_duration(report.epoch_s)} ({report.stats.tokens:,} tokens, "
            f"~{report.tokens_per_s:,.0f} trained tokens/s on {escape(report.device.name)})"
        )
    for note in report.notes + est.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")


# ---------------------------------------------------------------- the check before training


def _checkpointing_label(p: Plan) -> str:
    k = p.checkpointed_layers
    if not k:
        return ""
    return " · checkpointing" if k == p.shape.layers else f" · checkpointing {k}/{p.shape.layers} layers"


def check_fits(cfg: TrainConfig, console: Console, data: list | None = None, processes: int = 1) -> int | None:
    """Print the memory estimate of `cfg` on this machine; raise UserError when it clearly cannot fit. Returns the
    number of decoder layers to checkpoint when `cfg.checkpoint_layers` is unset and the run would otherwise be tight
    or not fit (the fewest that make it fit, `checkpoint_choice`), else None.

    For the sft and pretrain objectives. `data` is the tokenised training rows (`Encoded`, as `setup` builds them);
    without them the estimate assumes full-length rows. "Clearly" means above the capacity by more than the
    estimate's error (15%). `cfg.force` (when the config has it) turns the refusal into a warning. `processes`
    training processes on this machine share its RAM (each holds a whole model copy, or its shard under fsdp); on
    GPUs each has its own.
    """
    try:
        stats = data_stats(data, cfg.batch_size, cfg.seed, cfg.padding_free) if data else None
        # Processes that shard the model (fsdp) each hold their share of it; ddp processes each hold all of it.
        sharded = processes > 1 and getattr(cfg, "strategy", "ddp") in SHARDED
        report = estimate(cfg, stats=stats, probe=False, read_data=False, shards=processes if sharded else 1)
    except UserError as e:
        console.print(f"[yellow]note:[/yellow] no memory estimate: {escape(str(e))}")
        return None
    est, cap, judged = report.estimate, report.capacity, report.verdict
    share = ""
    if processes > 1 and report.device.kind == "cpu":
        cap = report.capacity / processes
        judged = verdict(est.total, cap)
        share = f" to each of {processes} processes"
    head = (
        f"[bold]Memory estimate[/bold]: peak {_gib(est.total)} ({est.peak_phase}) of {_gib(cap)} available{share} on "
        f"{escape(report.device.name)}: {judged}"
    )
    auto = getattr(cfg, "checkpoint_layers", 0) is None
    choice = checkpoint_choice(report.plan, cap) if auto and judged != FITS else None
    if choice is not None:
        k, new = choice
        n = report.plan.shape.layers
        console.print(
            f"{head}; recomputing the activations of the first {k} of {n} decoder layers in the backward pass "
            f"(about {_recompute_share(k, n)}) brings it to {_gib(new.total)}: fits (--checkpoint-layers 0 turns "
            "this off)"
        )
        return k
    console.print(head)
    if judged != NO_FIT:
        return None
    # Advice for `lapidar train`: only changes made with its own flags (no --gpus).
    train_fixes = fixes(report.plan, cap, multi_gpu=False)
    advice = "; ".join(f"{f.change} -> {_gib(f.estimate.total)}" for f in train_fixes) or "a larger machine"
    message = (
        f"this run needs about {_gib(est.total)} but {report.device.name} has {_gib(cap)}{share}; "
        f"cheapest changes: {advice}; see `lapidar estimate` for the breakdown, or pass --force to try anyway"
    )
    if getattr(cfg, "force", False):
        console.print(f"[yellow]warning (--force):[/yellow] {escape(message)}")
        return None
    raise UserError(message)


def check_disk(cfg: TrainConfig, run_dir: Path, console: Console) -> None:
    """Refuse, before anything is written, a run whose directory would outgrow the free space of its file system
    (`disk_bytes`: the weights and up to keep_checkpoints + 1 checkpoints); `cfg.force` makes it a warning."""
    import shutil

    plan = plan_from_config(cfg, cpu_device(probe=False))
    needed = disk_bytes(plan, cfg.keep_checkpoints)
    where = run_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if needed <= free:
        return
    message = (
        f"{run_dir}: this run writes up to {_gib(needed)} (its weights and up to {cfg.keep_checkpoints + 1} "
        f"checkpoints with their optimiser states) but {where} has {_gib(free)} free; free some space, write the run "
        "elsewhere with --output DIR, keep fewer checkpoints with --keep-checkpoints 1, or pass --force to try anyway"
    )
    if getattr(cfg, "force", False):
        console.print(f"[yellow]warning (--force):[/yellow] {escape(message)}")
        return
    raise UserError(message)


def cpu_capacity() -> float:
    """RAM this process could use now (available + its own resident set)."""
    return cpu_device(probe=False, extra_available=_own_rss()).memory
