"""Batch prediction: answer every row of a data file and write the rows back with a `prediction` column.

    lapidar predict RUN --data questions.jsonl --output predictions.jsonl

Rows are read in any training format (messages, sharegpt, alpaca, prompt/completion, question/answer,
input/output); the answer field may be missing. The prompt is the conversation without its final assistant
answer (kept in the output, so predictions can be compared with it), or the whole conversation if it has none.

Output is JSONL in input order, appended and flushed batch by batch: an interrupted run resumes where it stopped
(rows already in the output are checked against the input and skipped; a half-written last line is dropped).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lapidar.data.formats import FORMATS, Message, convert_rows, detect_format
from lapidar.data.readers import read_rows
from lapidar.data.tokenize import render_prompt
from lapidar.errors import UserError, unknown_choice
from lapidar.inference.generate import Loaded, SamplingOptions, gen_kwargs, random_notice

__all__ = ["PredictOptions", "PromptRow", "main", "predict_batch", "prompt_messages", "read_prompts", "resume_point"]

# Single-turn formats name their answer field; a prediction file may leave it out (there is nothing to compare
# with yet). Such rows get an empty answer so the training-data converters apply unchanged, then lose it again.
ANSWER_FOR_PROMPT = {"instruction": "output", "prompt": "completion", "question": "answer", "input": "output"}
ANSWER_FIELDS = ("output", "completion", "answer", "chosen", "rejected", "label", "messages", "conversations")
OUTPUT_FIELDS = ("prediction", "prediction_warning")  # added to each row (replacing input columns of that name)


@dataclass(frozen=True)
class PredictOptions:
    """`lapidar predict` settings besides the model and the files."""

    batch_size: int = 8
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    fmt: str | None = None  # data format; None = detect, as for training data


@dataclass(frozen=True)
class PromptRow:
    """One input row: its original columns and the messages to answer."""

    row: dict[str, Any]
    messages: list[Message]
    source: str  # "file: line N"
    tools: list[Any] | None = None  # the row's tool specs, rendered into the prompt as in training


def prompt_messages(messages: list[Message]) -> list[Message]:
    """The conversation up to (not including) its final assistant answer; all of it when it has none."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
    return messages[:last] if last == len(messages) - 1 else list(messages)


def _with_empty_answer(value: Any) -> Any:
    if not isinstance(value, dict) or any(value.get(k) is not None for k in ANSWER_FIELDS):
        return value
    for prompt_field, answer_field in ANSWER_FOR_PROMPT.items():
        if value.get(prompt_field) is not None:
            return {**value, answer_field: ""}
    return value


def read_prompts(path: Path, fmt: str | None = None) -> list[PromptRow]:
    """Read a data file into prompts, with the readers, format detection and converters of training data."""
    rows = read_rows(path)
    if not rows:
        raise UserError(f"{path}: the file holds no rows")
    values = [_with_empty_answer(r.value) for r in rows]
    if fmt is None:
        fmt, _ = detect_format(rows, values)
    elif fmt not in FORMATS:
        raise unknown_choice("data format", fmt, list(FORMATS))
    if FORMATS[fmt].kind == "text":
        raise UserError(
            f"{path}: rows in {fmt} format are raw text, not prompts; use chat rows (messages, prompt, ...)"
        )
    out = []
    for row, ex in zip(rows, convert_rows(rows, fmt, values=values), strict=True):
        messages = [m for m in ex.messages if m["role"] != "assistant" or m["content"] or m is not ex.messages[-1]]
        prompt = prompt_messages(messages)
        if not prompt:
            raise UserError(f"{row.where}: nothing to answer: the row has no message before its answer")
        out.append(PromptRow(dict(row.value), prompt, row.where, ex.tools))
    return out


@torch.no_grad()
def predict_batch(
    loaded: Loaded,
    batch: list[list[Message]],
    opts: SamplingOptions,
    tools: list[list[Any] | None] | None = None,
) -> list[tuple[str, bool]]:
    """Answer several conversations in one padded forward pass each step; `tools[i]` are conversation i's tool
    specs (None: no tools). Returns (text, stopped_at_eos)."""
    tok = loaded.tokenizer
    tools = tools or [None] * len(batch)
    texts = [render_prompt(tok, m, t) for m, t in zip(batch, tools, strict=True)]
    side = tok.padding_side
    tok.padding_side = "left"  # decoder-only: pad on the left so every answer starts right after its prompt
    try:
        enc = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    finally:
        tok.padding_side = side
    device = next(loaded.model.parameters()).device
    enc = {k: v.to(device) for k, v in enc.items()}
    out = loaded.model.generate(**enc, **gen_kwargs(loaded, opts))
    answers = []
    for seq in out[:, enc["input_ids"].shape[1] :].tolist():
        stopped = tok.eos_token_id in seq
        if stopped:
            seq = seq[: seq.index(tok.eos_token_id)]
        answers.append((tok.decode(seq, skip_special_tokens=True), stopped))
    return answers


def _input_columns(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in OUTPUT_FIELDS}


def resume_point(output: Path, rows: list[PromptRow]) -> int:
    """How many rows `output` already holds for this input (0 if none); drops a half-written last line."""
    if output.is_dir():
        raise UserError(f"--output {output} is a directory; pass a file name such as {output / 'predictions.jsonl'}")
    if not output.exists():
        return 0
    data = output.read_bytes()
    if data and not data.endswith(b"\n"):  # interrupted mid-line: keep the complete lines only
        data = data[: data.rfind(b"\n") + 1]
        output.write_bytes(data)
    done = 0
    for lineno, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            previous = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{output}: line {lineno} is not JSON; remove the file to start over") from None
        if done >= len(rows) or any(previous.get(k) != v for k, v in _input_columns(rows[done].row).items()):
            raise UserError(
                f"{output}: line {lineno} does not match {rows[min(done, len(rows) - 1)].source}; the file holds "
                "predictions for other data: choose another --output or delete it"
            )
        done += 1
    return done


def main(
    loaded: Loaded, data: Path, output: Path, opts: PredictOptions | None = None, console: Console | None = None
) -> dict:
    """Predict every row of `data` not yet in `output`; returns counts for the summary."""
    opts = opts or PredictOptions()
    console = console or Console(stderr=True)
    if opts.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {opts.batch_size}")
    rows = read_prompts(data, opts.fmt)
    done = resume_point(output, rows)
    notice = random_notice(loaded)
    if notice:
        console.print(f"[yellow]{loaded.label}[/yellow]: every prediction is marked with prediction_warning")
    if done:
        console.print(f"resuming: {done} of {len(rows)} rows are already in {output}")
    output.parent.mkdir(parents=True, exist_ok=True)
    cut = 0
    progress = Progress(
        TextColumn("[bold blue]predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    )
    with progress, output.open("a", encoding="utf-8") as f:
        task = progress.add_task("predict", total=len(rows), completed=done)
        for start in range(done, len(rows), opts.batch_size):
            batch = rows[start : start + opts.batch_size]
            # Seeded per batch position, so a resumed run samples what an uninterrupted one would have.
            sampling = SamplingOptions(**{**opts.sampling.__dict__, "seed": opts.sampling.seed + start})
            torch.manual_seed(sampling.seed)
            answers = predict_batch(loaded, [r.messages for r in batch], sampling, [r.tools for r in batch])
            for r, (text, stopped) in zip(batch, answers, strict=True):
                record = {**r.row, "prediction": text}
                if notice:
                    record["prediction_warning"] = notice
                cut += not stopped
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            progress.update(task, completed=start + len(batch))
    written = len(rows) - done
    console.print(f"wrote {written} predictions to {output} ({done} were already there)")
    if cut:
        console.print(
            f"[yellow]{cut} answers stopped at --max-new-tokens {opts.sampling.max_new_tokens}, not at the end of "
            "the answer[/yellow]"
        )
    return {"rows": len(rows), "skipped": done, "written": written, "cut": cut}
