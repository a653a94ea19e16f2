"""`lapidar eval` and `lapidar report`: score a model on test rows, and explain a run in one HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lapidar.commands import quiet_libraries
from lapidar.evaluation.metrics import METRICS

__all__ = ["eval_command", "report"]

console = Console()


def eval_command(
    target: Annotated[str, typer.Argument(help="Run directory, preset name or model directory.")],
    data: Annotated[
        Path, typer.Option(help="Test file (JSON/JSONL/CSV); each row's final assistant message is the reference.")
    ],
    metrics: Annotated[
        str | None,
        typer.Option(
            help=f"Comma-separated: {', '.join([*METRICS, 'json_schema'])}. Default: chosen from the answers' "
            "shape (labels, JSON, tool calls or free text); the first is the headline metric."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Where eval.json and predictions.jsonl go (default RUN/eval).")
    ] = None,
    compare_base: Annotated[
        bool, typer.Option("--compare-base", help="Also score the run's base model; list rows that got better/worse.")
    ] = False,
    probe: Annotated[
        str,
        typer.Option(
            help="General-ability probe scored on the base and the fine-tune: builtin (run directories only), "
            "a data file, or none."
        ),
    ] = "builtin",
    json_schema: Annotated[
        Path | None, typer.Option(help="JSON Schema file; adds the json_schema metric (answers that conform).")
    ] = None,
    metric_fn: Annotated[
        str | None,
        typer.Option(
            help="Custom metric module:function or file.py:function, called fn(prediction, reference) -> number."
        ),
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Longest answer (default: 1.5x the longest reference + 10, at most 512).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts generated together.")] = 8,
    limit: Annotated[int | None, typer.Option(min=1, help="Score only the first N rows.")] = None,
) -> None:
    """Score a model's greedy answers on a test file (and the base model's with --compare-base)."""
    from lapidar.evaluation.evaluate import EvalSettings, main

    quiet_libraries()
    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    main(
        EvalSettings(
            target=target,
            data=data,
            output=output,
            metrics=names,
            compare_base=compare_base,
            probe=probe,
            json_schema=json_schema,
            metric_fn=metric_fn,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            limit=limit,
        ),
        console,
    )


def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `lapidar train`.")],
) -> None:
    """Write RUN_DIR/report.html: diagnosis, curves, evaluation and config in one page that opens offline."""
    from lapidar.evaluation.diagnosis import diagnose, print_findings
    from lapidar.evaluation.report import write_report

    path = write_report(run_dir)
    print_findings(console, diagnose(run_dir))
    console.print(f"Report: {path}")
