"""The README's first command: teach the embedded tiny model to route Harbor Mutual claims to the right team, and
show on held-out claims that it learned.

The model has random weights, so it cannot know insurance; what the quickstart shows is that fine-tuning works: a
task a 20M-parameter model can learn from 400 rows (claim note -> one of five team names), scored before and after
on 60 claims it never saw, with the same metrics and the same greedy answers `lapidar eval --compare-base` uses.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lapidar.config import TrainConfig
from lapidar.data.formats import Example, bundled_example
from lapidar.evaluation.evaluate import (
    ModelScores,
    auto_max_new_tokens,
    base_model,
    load_test_examples,
    score_model,
)
from lapidar.evaluation.metrics import label, resolve_metrics
from lapidar.inference.generate import load_for_inference
from lapidar.io import write_json
from lapidar.models.loading import RANDOM_LABEL, RUN_FILE
from lapidar.recipes import train

__all__ = ["EXAMPLE", "QUICKSTART", "SHOWN_METRICS", "main"]

EXAMPLE = "claims-routing"
# Pinned for the randomly initialised tiny model on 2 CPU cores (the whole command well under two minutes); held-out
# accuracy 0% -> 90%+ on seeds 42, 1 and 2.
QUICKSTART: dict[str, Any] = {
    "model": "tiny-qwen2.5",
    "data": f"example:{EXAMPLE}",
    "name": "quickstart",
    "epochs": 2,
    "lr": 2e-3,
    "batch_size": 8,
    "lora_r": 32,
    "lora_alpha": 64,
    "lora_dropout": 0.0,
    # Random tied embeddings under a frozen final norm cap every logit near 11 (|h| = sqrt(128), rows of norm ~1),
    # so LoRA alone moves the team names' logits slowly (75% after 150 steps); training the embedding rows too
    # gets past 90% in 100 steps. A pretrained model needs neither: its embeddings already mean something.
    "train_embeddings": True,
    "eval_steps": 25,
    "max_length": 256,
    "warmup_ratio": 0.05,
    # The trainable embeddings make a checkpoint ~300 MB (weights and AdamW state): write one at the end (and on
    # Ctrl-C) instead of one per evaluation, ~1 GB less written; the best adapter is still saved at each eval.
    "save_steps": 100,
    "keep_checkpoints": 1,
}
# The metrics of the before/after table, in order; `lapidar eval` computes these and a few more.
SHOWN_METRICS = ["accuracy", "macro_f1", "exact_match"]
RESULT_FILE = "quickstart.json"


def main(output: str, max_steps: int | None, console: Console) -> Path:
    """Train, then score the untrained and the trained model on the held-out claims and show some of their
    answers. Writes RUN/quickstart.json (the scores) and returns the run directory."""
    out = Path(output)
    if (out / RUN_FILE).is_file():
        console.print(f"[dim]replacing the previous quickstart run in {out}[/dim]")
        shutil.rmtree(out)
    if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in os.environ:
        # The tiny model's matrices (128 wide, ~450 tokens a step) are too small to split across threads: on 2
        # shared cores one thread ran the whole quickstart in 1:36, two threads in 3:14-6:23 (they wait for each
        # other whenever another process holds a core).
        torch.set_num_threads(1)
        console.print("[dim]using 1 CPU thread, fastest for this tiny model (set OMP_NUM_THREADS to choose)[/dim]")
    cfg = TrainConfig(**QUICKSTART, output=output, max_steps=max_steps)
    _, run_dir = train.main(cfg, console)

    _, val_path = bundled_example(EXAMPLE)
    held_out = load_test_examples(val_path)
    before, after = _score(run_dir, held_out, cfg.max_length)
    teams = Counter(label(ex.messages[-1]["content"]) for ex in held_out)
    majority = teams.most_common(1)[0][1] / len(held_out)
    result = {
        "data": str(val_path),
        "rows": len(held_out),
        "teams": dict(sorted(teams.items())),
        "majority_rate": majority,
        "before": before.summary(),
        "after": after.summary(),
    }
    write_json(run_dir / RESULT_FILE, result)

    console.print(
        f"\n[bold]Held-out claims[/bold]: {len(held_out)} claim notes the model never trained on, "
        f"{len(teams)} teams ({', '.join(teams)})"
    )
    _print_scores(console, before, after, majority)
    _print_answers(console, held_out, before, after)
    console.print(
        f"[yellow]{RANDOM_LABEL}[/yellow] tiny-qwen2.5 starts from random weights: it knows no English and no "
        "insurance, so 'before' is noise. 'After' shows what fine-tuning does: from 400 labelled claims it learned "
        "which words point to which team, and it routes claims it has never seen. Point --model at a real "
        "Qwen2.5 checkpoint for a model that also understands them."
    )
    # One command per line, never wrapped, so each can be copied (and the test can run the eval one).
    console.print("Next steps:")
    for command in (
        f"lapidar chat {run_dir}",
        f"lapidar eval {run_dir} --data {_shown_path(val_path)} --compare-base",
        f"lapidar report {run_dir}",
    ):
        console.print(f"  {escape(command)}", soft_wrap=True)
    return run_dir


def _score(run_dir: Path, examples: list[Example], max_length: int) -> tuple[ModelScores, ModelScores]:
    """(untrained, trained) scores: the run with its adapter switched off, then on — what `lapidar eval
    --compare-base` does, with its default metrics for label answers and its answer budget."""
    loaded = load_for_inference(str(run_dir))
    references = [ex.messages[-1]["content"] for ex in examples]
    metrics = resolve_metrics(None, references)
    budget = auto_max_new_tokens(loaded.tokenizer, references)
    meta = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    with base_model(loaded, meta) as untrained:
        before = score_model(untrained, examples, metrics, budget, max_length=max_length, classification=True)
    after = score_model(loaded, examples, metrics, budget, max_length=max_length, classification=True)
    return before, after


def _percent(value: float) -> str:
    return f"{value:.1%}"


def _print_scores(console: Console, before: ModelScores, after: ModelScores, majority: float) -> None:
    table = Table(title="Held-out scores (greedy answers)")
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    for name in SHOWN_METRICS:
        table.add_row(name, _percent(before.totals[name]), _percent(after.totals[name]))
    table.add_row("answer loss", f"{before.loss:.3f}", f"{after.loss:.3f}")
    console.print(table)
    right = round(after.totals["accuracy"] * len(after.answers))
    console.print(
        f"Routed correctly: {right} of {len(after.answers)} after training, "
        f"{round(before.totals['accuracy'] * len(before.answers))} before; always answering the most common team "
        f"would score {_percent(majority)}."
    )


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return escape(text if len(text) <= n else text[: n - 1] + "…")


def _mark(prediction: str, reference: str) -> str:
    ok = label(prediction) == label(reference)
    return f"{_short(prediction, 18) or '(empty)'} {'[green]✓[/green]' if ok else '[red]✗[/red]'}"


def _print_answers(console: Console, examples: list[Example], before: ModelScores, after: ModelScores) -> None:
    """The first held-out claim of each team, so every team shows up once."""
    shown: dict[str, int] = {}
    for i, ex in enumerate(examples):
        shown.setdefault(label(ex.messages[-1]["content"]), i)
    table = Table(title="Some held-out claims", show_lines=True)
    table.add_column("claim")
    table.add_column("expected", style="bold")
    table.add_column("before")
    table.add_column("after")
    for i in shown.values():
        ref = after.answers[i].reference
        table.add_row(
            _short(examples[i].messages[-2]["content"], 80),
            escape(ref),
            _mark(before.answers[i].prediction, ref),
            _mark(after.answers[i].prediction, ref),
        )
    console.print(table)


def _shown_path(path: Path) -> str:
    """The data file as a command-line argument: relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
