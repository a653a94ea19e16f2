"""`lapidar data check|clean|convert|split`: look at training data, fix it, reshape it, split it.

Thin wrappers: the work happens in `lapidar.data` (formats, quality, clean, convert, split).
"""

from __future__ import annotations

import functools
import gc
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lapidar.data.formats import FORMATS, Dataset, bundled_example, load_dataset, parse_columns
from lapidar.data.readers import write_rows
from lapidar.errors import UserError, unknown_choice
from lapidar.io import write_json, write_text

__all__ = ["app", "check", "clean", "convert", "split"]

app = typer.Typer(
    help="Check, clean, convert and split training data (JSON, JSONL, CSV/TSV, Parquet, text, directories).",
    no_args_is_help=True,
)
console = Console()

FormatOpt = Annotated[str | None, typer.Option("--format", help=f"Force a format: {', '.join(FORMATS)}.")]
ColumnsOpt = Annotated[
    str | None, typer.Option(help="Map your columns onto known fields, e.g. prompt=pergunta,completion=resposta.")
]
ModelOpt = Annotated[
    str, typer.Option(help="Tokenizer and chat template to measure with (all Qwen2.5 sizes share the tokenizer).")
]


def _load(spec: str, fmt: str | None, columns: str | None) -> tuple[Dataset, Dataset | None]:
    """A file or directory, or `example:NAME` (a bundled dataset: train and validation)."""
    mapping = parse_columns(columns)
    if spec.startswith("example:"):
        train, val = bundled_example(spec.removeprefix("example:"))
        return load_dataset(train, fmt, mapping), load_dataset(val, fmt, mapping)
    return load_dataset(Path(spec), fmt, mapping), None


@functools.lru_cache(maxsize=2)
def _tokenizer(model: str):
    from lapidar.commands import quiet_libraries
    from lapidar.models.loading import load_tokenizer, resolve_model

    quiet_libraries()
    return load_tokenizer(resolve_model(model))


def _say_format(ds: Dataset) -> None:
    console.print(f"[bold]{ds.path}[/bold]: {len(ds.examples)} rows, format [bold]{ds.fmt}[/bold] ({ds.reason})")


def _refuse_overwrite(inputs: list[Path], *outputs: Path) -> None:
    for out in outputs:
        for src in inputs:
            if out.resolve() == src.resolve():
                raise UserError(f"{out}: that is the input file; choose another --output (the input is never changed)")


@app.command()
def check(
    file: Annotated[str, typer.Argument(help="Data file or directory, or example:claims.")],
    val: Annotated[Path | None, typer.Option(help="Validation file: also checked, and for leakage.")] = None,
    max_length: Annotated[int, typer.Option(help="Tokens per example in training (rows beyond are cut).")] = 1024,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Also write the report as an HTML page here.")] = None,
    fmt: FormatOpt = None,
    columns: ColumnsOpt = None,
    near_threshold: Annotated[float, typer.Option(help="Similarity (0-1) that counts as a near-duplicate.")] = 0.8,
    model: ModelOpt = "tiny-qwen2.5",
) -> None:
    """Report on data quality; exit status 0 when the data is usable for training, 2 when it is not."""
    # Reading a big file makes millions of small dicts and lists and no reference cycles: the cyclic garbage
    # collector's passes over them cost about 6 s of CPU on 100,000 rows and free nothing.
    gc.disable()
    try:
        from lapidar.data.quality import check_dataset

        ds, bundled_val = _load(file, fmt, columns)
        val_ds = load_dataset(val, fmt, parse_columns(columns)) if val else bundled_val
        report = check_dataset(ds, _tokenizer(model), max_length, val_ds, threshold=near_threshold)
    finally:
        gc.enable()
    from lapidar.data.report import print_report, render_html

    print_report(console, report)
    if json_out:
        write_json(json_out, report.to_dict())
        console.print(f"JSON report: {json_out}")
    if html_out:
        write_text(html_out, render_html(report))
        console.print(f"HTML report: {html_out}")
    if not report.usable:
        raise typer.Exit(2)


@app.command()
def clean(
    file: Annotated[Path, typer.Argument(help="Data file or directory (never modified).")],
    output: Annotated[Path, typer.Option(help="Cleaned file (.jsonl, .json, .csv, .tsv, .parquet, .txt).")],
    log: Annotated[Path | None, typer.Option(help="Change log (default: OUTPUT's name + .log.jsonl).")] = None,
    near_duplicates: Annotated[bool, typer.Option(help="Also drop near-duplicates (first of each kept).")] = False,
    near_threshold: Annotated[float, typer.Option(help="Similarity (0-1) that counts as a near-duplicate.")] = 0.8,
    mask_pii: Annotated[bool, typer.Option(help="Replace emails, phones, cards, IBANs, ids by [EMAIL]...")] = False,
    strip_control_tokens: Annotated[bool, typer.Option(help="Remove <|im_start|>, <|im_end|>, ...")] = False,
    max_length: Annotated[int | None, typer.Option(help="Drop rows longer than this many tokens.")] = None,
    keep_duplicates: Annotated[bool, typer.Option(help="Keep exact duplicates.")] = False,
    duplicate_keys: Annotated[
        str,
        typer.Option(
            help="A row that gives a key twice (which value was meant is unknown): drop it, or keep-last (the "
            "value JSON keeps)."
        ),
    ] = "drop",
    keep_consecutive_turns: Annotated[
        bool, typer.Option(help="Leave two user (or assistant) turns in a row as they are instead of merging them.")
    ] = False,
    fmt: FormatOpt = None,
    columns: ColumnsOpt = None,
    model: ModelOpt = "tiny-qwen2.5",
) -> None:
    """Apply safe fixes (unicode repair, whitespace, empty and duplicate rows; optionally more) and log each one."""
    from lapidar.data.clean import DUPLICATE_KEYS, CleanOptions
    from lapidar.data.clean import clean as run_clean

    if duplicate_keys not in DUPLICATE_KEYS:
        raise unknown_choice("--duplicate-keys", duplicate_keys, list(DUPLICATE_KEYS))

    log = log or output.with_name(f"{output.stem}.log.jsonl")
    _refuse_overwrite([file], output, log)
    if log.resolve() == output.resolve():
        raise UserError(f"{log}: the log cannot be the output file; choose another --log")
    ds, _ = _load(str(file), fmt, columns)
    _say_format(ds)
    opts = CleanOptions(
        drop_duplicates=not keep_duplicates,
        near_duplicates=near_duplicates,
        near_threshold=near_threshold,
        strip_control_tokens=strip_control_tokens,
        mask_pii=mask_pii,
        max_length=max_length,
        duplicate_keys=duplicate_keys,
        merge_turns=not keep_consecutive_turns,
    )
    result = run_clean(ds, opts, _tokenizer(model) if max_length else None)
    write_rows(output, result.rows)
    write_text(log, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in result.log))
    table = Table(title="Changes", show_header=True)
    table.add_column("change")
    table.add_column("rows", justify="right")
    for what, n in sorted(result.counts.items()):
        table.add_row(what, str(n))
    if result.counts:
        console.print(table)
    # What was done about each thing reading noted (a key given twice, a number read as text...): the note names
    # the field, so a user sees which value of which row, not only a count.
    noted = [e for e in result.log if e.get("note")]
    for e in noted[:10]:
        console.print(f"{escape(str(ds.path))}: {escape(e['row'])}: {escape(e['note'])} [bold]→ {escape(e['done'])}[/]")
    if len(noted) > 10:
        console.print(f"… {len(noted) - 10} more in {log}")
    console.print(
        f"kept {len(result.rows)} of {len(ds.rows)} rows ({result.dropped} dropped, {result.edited_rows} edited) "
        f"-> {output}; every change is listed in {log}"
    )


@app.command()
def convert(
    file: Annotated[Path, typer.Argument(help="Data file or directory.")],
    to: Annotated[str, typer.Option(help="Target format: messages, alpaca or sharegpt.")],
    output: Annotated[Path, typer.Option(help="Output file (.jsonl or .json).")],
    fmt: FormatOpt = None,
    columns: ColumnsOpt = None,
) -> None:
    """Rewrite a file in another format (messages, alpaca, sharegpt)."""
    from lapidar.data.convert import convert_examples

    _refuse_overwrite([file], output)
    ds, _ = _load(str(file), fmt, columns)
    _say_format(ds)
    rows = convert_examples(ds.examples, to)
    write_rows(output, rows)
    console.print(f"wrote {len(rows)} rows in {to} format -> {output}")


@app.command()
def split(
    file: Annotated[Path, typer.Argument(help="Data file or directory.")],
    output: Annotated[
        Path,
        typer.Option("--output", "--output-dir", help="Directory where train.* and validation.* are written."),
    ],
    val_fraction: Annotated[float, typer.Option(help="Share of rows for validation.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same split.")] = 0,
    near_threshold: Annotated[float, typer.Option(help="Similarity (0-1) that keeps rows together.")] = 0.8,
    fmt: FormatOpt = None,
    columns: ColumnsOpt = None,
) -> None:
    """Split into train and validation: duplicates and shared prompts stay on one side; stratified by label."""
    from lapidar.data.split import split as run_split

    ds, _ = _load(str(file), fmt, columns)
    _say_format(ds)
    result = run_split(ds, val_fraction, seed, threshold=near_threshold)
    suffix = file.suffix.lower() if file.is_file() else ".jsonl"
    train_path, val_path = output / f"train{suffix}", output / f"validation{suffix}"
    _refuse_overwrite([file], train_path, val_path)
    write_rows(train_path, [ds.rows[i].value for i in result.train])
    write_rows(val_path, [ds.rows[i].value for i in result.val])
    console.print(
        f"train: {len(result.train)} rows -> {train_path}\nvalidation: {len(result.val)} rows -> {val_path}\n"
        f"{result.groups_kept_together} groups of duplicates / shared prompts ({result.rows_in_groups} rows) "
        "kept on one side"
    )
    if result.stratified:
        table = Table(title="Stratified by label")
        for col in ("label", "train", "validation"):
            table.add_column(col)
        for label, (n_train, n_val) in result.labels.items():
            table.add_row(label, str(n_train), str(n_val))
        console.print(table)
