"""Events out of the training loop, and the sinks that show or store them.

The loop never prints. It emits `Event`s — `start`, `note`, `step`, `eval`, `checkpoint`, `finished` — to an
`EventBus`, and every observer is a sink: the terminal's rich progress bar, a plain one-line-per-interval log (used
when stdout is not a terminal: a log file, CI, a cluster job, a web page showing the log), metrics.jsonl +
TensorBoard, W&B/MLflow, a benchmark's clock, a web app's live view. So the same loop runs in a CLI, a web worker or
a Ray worker; each front end picks its sinks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape

__all__ = [
    "Event",
    "EventBus",
    "MetricsSink",
    "PlainSink",
    "Sink",
    "TerminalSink",
    "TrackerSink",
    "console_sink",
    "eta_seconds",
    "eval_line",
    "format_duration",
]

KINDS = ("start", "note", "step", "eval", "checkpoint", "finished")


@dataclass(frozen=True)
class Event:
    """One thing that happened in a run.

    kind: start (`message`: what trains, on what) · note (`message`) · step (`record`: the logged training metrics of
    the last `log_steps` steps: train_loss, lr, tokens_per_s, ...) · eval (`record`: val_loss and val_* statistics;
    `best`: whether it is the best so far and saved) · checkpoint (`path`) · finished (`summary`).
    `step`/`total` are optimiser steps; `elapsed` seconds since the loop started.
    """

    kind: str
    step: int = 0
    total: int = 0
    elapsed: float = 0.0
    record: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    best: bool = False
    path: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


class Sink(Protocol):
    """Anything that receives events. `close(ok)` is called once at the end (ok False: the run failed)."""

    def handle(self, event: Event) -> None: ...

    def close(self, ok: bool) -> None: ...


class EventBus:
    """Fans events out to sinks, in order."""

    def __init__(self, sinks: Iterable[Sink] = ()):
        self.sinks: list[Sink] = list(sinks)
        self.started = time.perf_counter()

    def emit(self, kind: str, **fields: Any) -> Event:
        """Build an event of `kind` (one of KINDS) and hand it to every sink."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}; valid: {', '.join(KINDS)}")
        event = Event(kind, elapsed=time.perf_counter() - self.started, **fields)
        for sink in self.sinks:
            sink.handle(event)
        return event

    def close(self, ok: bool) -> None:
        """Close every sink, even when one of them fails."""
        errors = []
        for sink in self.sinks:
            try:
                sink.close(ok)
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]


def format_duration(seconds: float) -> str:
    """`1:02:03` / `2:03` style."""
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def eta_seconds(event: Event) -> float:
    """Seconds left for a step event, at the pace of the steps this process has run."""
    return event.elapsed / max(event.step - event.record.get("_first_step", 0), 1) * (event.total - event.step)


def eval_line(event: Event) -> str:
    """The evaluation line both console sinks print."""
    r = event.record
    text = f"step {event.step:>5}  validation loss {r['val_loss']:.4f}" if "val_loss" in r else f"step {event.step:>5}"
    if "val_reward_margin" in r:
        text += f"  reward margin {r['val_reward_margin']:+.4f}  accuracy {r.get('val_reward_accuracy', 0.0):.2f}"
    generated = {
        k: v for k, v in r.items() if k.startswith("val_") and k.removeprefix("val_") in r.get("_generated", ())
    }
    if generated:
        text += "  " + "  ".join(f"{k.removeprefix('val_')} {v:.3f}" for k, v in generated.items())
    return text


def _visible(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


class PlainSink:
    """One plain line per logging interval (and per evaluation, checkpoint and note): for logs that are not a terminal.

    `step 20/99  loss 9.1234  lr 2.00e-04  1,812 tok/s  elapsed 0:12  eta 0:47`
    """

    def __init__(self, console: Console):
        self.console = console

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def handle(self, event: Event) -> None:
        if event.kind in ("start", "note"):
            self._print(event.message if event.kind == "start" else f"note: {event.message}")
        elif event.kind == "step":
            r = event.record
            eta = eta_seconds(event)
            parts = [f"step {event.step}/{event.total}", f"loss {r['train_loss']:.4f}"]
            if "reward_margin" in r:
                parts.append(f"margin {r['reward_margin']:+.3f}")
            if "lr" in r:
                parts += [f"lr {r['lr']:.2e}", f"{r['tokens_per_s']:,.0f} tok/s"]
            parts += [f"elapsed {format_duration(event.elapsed)}", f"eta {format_duration(eta)}"]
            self._print("  ".join(parts))
        elif event.kind == "eval":
            self._print(eval_line(event) + ("  best so far, saved" if event.best else ""))
        elif event.kind == "checkpoint" and event.message:
            self._print(event.message)

    def close(self, ok: bool) -> None:
        self.console.file.flush()


class TerminalSink:
    """The rich view for a terminal: a live progress bar (steps, loss, tokens/s, ETA) and the evaluation lines."""

    def __init__(self, console: Console):
        self.console = console
        self.progress: Any = None
        self.task: Any = None

    def handle(self, event: Event) -> None:
        if event.kind == "start":
            self.console.print(escape(event.message))
            return
        if event.kind == "note":
            self.console.print(f"[yellow]note:[/yellow] {escape(event.message)}")
            return
        if event.kind == "eval":
            mark = "  [green]best so far, saved[/green]" if event.best else ""
            self._open(event)
            self.progress.console.print(escape(eval_line(event)) + mark)
            return
        if event.kind == "checkpoint" and event.message:
            self.console.print(f"[yellow]{escape(event.message)}[/yellow]")
            return
        if event.kind == "step":
            self._open(event)
            r = event.record
            fields = {"loss": f"{r['train_loss']:.3f}", "tps": f"{r.get('tokens_per_s', 0.0):,.0f}"}
            if "reward_margin" in r:
                fields["loss"] += f"  margin {r['reward_margin']:+.3f}"
            self.progress.update(self.task, completed=event.step, **fields)
        if event.kind == "finished":
            self._stop()

    def _open(self, event: Event) -> None:
        if self.progress is not None:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold blue]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=event.total, completed=event.step, loss="-", tps="-")

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def close(self, ok: bool) -> None:
        self._stop()


def console_sink(console: Console) -> Sink:
    """The rich view on a terminal, plain lines everywhere else (files, pipes, CI, captured output)."""
    return TerminalSink(console) if console.is_terminal else PlainSink(console)


class MetricsSink:
    """metrics.jsonl (one JSON object per step/eval record) and TensorBoard scalars.

    `purge_step`: a resumed run first drops what the interrupted one logged after its checkpoint.
    """

    def __init__(self, run_dir: Path, purge_step: int | None = None, tensorboard: bool = True):
        from lapidar.training.observers import MetricsLog

        self.log = MetricsLog(run_dir, tensorboard=tensorboard, purge_step=purge_step)

    def handle(self, event: Event) -> None:
        if event.kind == "step" and event.record:
            # total_steps and eta_s, for whoever follows the file (the web app's progress bar)
            where = {"total_steps": event.total, "eta_s": round(eta_seconds(event), 1)}
            self.log.write({"step": event.step, **where, **_visible(event.record)})
        elif event.kind == "eval" and event.record:
            self.log.write({"step": event.step, **_visible(event.record)})

    def close(self, ok: bool) -> None:
        self.log.close()


class TrackerSink:
    """W&B / MLflow (lapidar.training.trackers.Trackers): the run's config at start, every record, the end state."""

    def __init__(self, trackers, config: dict[str, Any]):
        self.trackers = trackers
        self.config = config
        self.started = False

    def handle(self, event: Event) -> None:
        if not self.started:
            self.trackers.start(self.config)
            self.started = True
        if event.kind in ("step", "eval") and event.record:
            self.trackers.log({"step": event.step, **_visible(event.record)}, event.step)

    def close(self, ok: bool) -> None:
        self.trackers.finish(ok)
