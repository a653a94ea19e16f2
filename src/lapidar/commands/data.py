"""`lapidar data check|clean|convert|split|synth`: look at training data, fix it, reshape it, split it, grow it.

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

from lapidar.data.formats import FORMATS, Dataset, load_dataset, load_spec, parse_columns
from lapidar.data.readers import write_rows
from lapidar.errors import UserError, unknown_choice
from lapidar.io import write_json, write_text

__all__ = ["app", "check", "clean", "convert", "split", "synth"]

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
    return load_spec(spec, fmt, columns)


@functools.lru_cache(maxsize=2)
def _tokenizer(model: str):
    from lapidar.commands import quiet_libraries
    from lapidar.models.loading import tokenizer_for

    quiet_libraries()
    return tokenizer_for(model)


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


@app.command()
def synth(
    inputs: Annotated[
        list[str], typer.Argument(help="Your data file (or example:NAME); in documents mode, documents or folders.")
    ],
    output: Annotated[Path, typer.Option(help="JSONL file the rows are appended to (a rerun continues it).")],
    base_url: Annotated[str, typer.Option(help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")],
    model: Annotated[str, typer.Option("--model", help="Model name the endpoint serves.")],
    mode: Annotated[str, typer.Option(help="answer | paraphrase | seeds | documents.")] = "answer",
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the API key (never written).")] = (
        "OPENAI_API_KEY"
    ),
    max_rows: Annotated[int | None, typer.Option(help="Stop once the output holds this many rows.")] = None,
    max_cost: Annotated[float | None, typer.Option(help="Stop once this much is spent (see --price-in/out).")] = None,
    price_in: Annotated[float, typer.Option(help="Price per million prompt tokens.")] = 0.0,
    price_out: Annotated[float, typer.Option(help="Price per million completion tokens.")] = 0.0,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 4,
    rate_limit: Annotated[float | None, typer.Option(help="At most this many requests per second.")] = None,
    retries: Annotated[int, typer.Option(help="Retries (with backoff) on connection errors, 429 and 5xx.")] = 4,
    temperature: Annotated[float, typer.Option(help="Sampling temperature of the generating requests.")] = 0.7,
    judge: Annotated[bool, typer.Option(help="Ask the endpoint to grade each row 1-5; keep >= --min-score.")] = False,
    min_score: Annotated[int, typer.Option(help="Lowest judge score kept.")] = 4,
    variants: Annotated[int, typer.Option(help="paraphrase: new phrasings per question.")] = 1,
    keep_answers: Annotated[
        bool,
        typer.Option("--keep-answers/--regenerate-answers", help="paraphrase: keep the answers, or write them again."),
    ] = True,
    per_chunk: Annotated[int, typer.Option(help="documents: question/answer pairs per passage.")] = 3,
    chunk_chars: Annotated[int, typer.Option(help="documents: characters per passage.")] = 2000,
    system: Annotated[str | None, typer.Option(help="answer: a system prompt for the stronger model.")] = None,
    near_threshold: Annotated[float, typer.Option(help="Similarity (0-1) that counts as a near-duplicate.")] = 0.8,
    fmt: FormatOpt = None,
    columns: ColumnsOpt = None,
) -> None:
    """Write training rows with a stronger model behind an OpenAI-compatible endpoint (resumable, deduplicated)."""
    import os
    import time as _time

    from lapidar.data import synth as s

    if mode not in s.MODES:
        raise UserError(unknown_choice("--mode", mode, s.MODES))
    if max_rows is not None and max_rows < 1:
        raise UserError(f"--max-rows: expected 1 or more, got {max_rows}")
    if output.suffix.lower() != ".jsonl":
        raise UserError(f"{output}: --output must be a .jsonl file (rows are appended one per line)")
    endpoint = s.Endpoint(
        base_url,
        model,
        os.environ.get(api_key_env) or None,
        api_key_env,
        retries=retries,
        rate_limit=rate_limit,
        temperature=temperature,
    )
    questions: list[str] = []
    conversations: list[list[dict]] = []
    punctuated = True
    if mode == "documents":
        from lapidar.data.documents import document_chunks

        paths = [Path(p) for p in inputs]
        for p in paths:
            if not p.exists():
                raise UserError(f"{p}: no such file or folder; name your documents (PDF, DOCX, Markdown, HTML, text)")
        chunks = document_chunks(paths, chunk_chars)
        if not chunks:
            raise UserError(
                f"{', '.join(inputs)}: no text found in documents lapidar reads (.pdf .docx .md .html .txt)"
            )
        tasks = [s.document_task(c.file, c.index, c.text, per_chunk) for c in chunks]
        _refuse_overwrite(paths, output)
    else:
        if len(inputs) != 1:
            raise UserError(f"mode {mode} reads one data file; got {len(inputs)}: {' '.join(inputs)}")
        ds, _ = _load(inputs[0], fmt, columns)
        _say_format(ds)
        if not inputs[0].startswith("example:"):
            _refuse_overwrite([Path(inputs[0])], output)
        for ex in ds.examples:
            conv = ex.conversations()[0] if ex.conversations() else ex.messages
            if conv and any(m["role"] == "user" for m in conv):
                conversations.append([{"role": m["role"], "content": m["content"]} for m in conv])
        if not conversations:
            raise UserError(f"{ds.path}: no rows with a question ({ds.kind} data); synth needs question/answer rows")
        questions = [next(m["content"] for m in reversed(c) if m["role"] == "user") for c in conversations]
        answers = [c[-1]["content"] for c in conversations if c[-1]["role"] == "assistant"]
        punctuated = sum(1 for a in answers if a.rstrip()[-1:] in ".!?。！？") > 0.8 * max(len(answers), 1)
        if mode == "answer":
            tasks = [s.answer_task(c, system) for c in conversations]
        elif mode == "paraphrase":
            again = None if keep_answers else endpoint
            tasks = [s.paraphrase_task(c, n, again) for c in conversations for n in range(variants)]
        else:
            pairs = [(q, c[-1]["content"]) for q, c in zip(questions, conversations, strict=True)]
            tasks = [s.seeds_task(i, pairs) for i in range(max_rows or len(pairs))]
    opts = s.SynthOptions(
        output, max_rows, max_cost, price_in, price_out, concurrency, judge, min_score, near_threshold
    )
    last = [0.0]

    def progress(r: s.SynthResult) -> None:
        if _time.monotonic() - last[0] < 2 and r.requests % 20:
            return
        last[0] = _time.monotonic()
        rate = r.written / r.seconds if r.seconds else 0.0
        per_row = r.cost(opts) / r.written if r.written else 0.0
        console.print(
            f"{r.requests} requests · {r.written} rows ({rate:.2f} rows/s) · {sum(r.dropped.values())} dropped · "
            f"{r.prompt_tokens:,} + {r.completion_tokens:,} tokens · cost {r.cost(opts):.4f} ({per_row:.5f}/row)"
        )

    existing = [] if mode == "answer" else questions  # answer mode keeps the user's questions on purpose
    console.print(f"{len(tasks)} requests to make in mode {mode} through {endpoint.url} ({model})")
    result = s.run_synth(tasks, endpoint, opts, existing, progress, punctuated)
    table = Table(title=f"data synth ({mode}): {result.stop_reason}")
    for col in ("", ""):
        table.add_column(col)
    table.add_row("rows written now", str(result.written))
    table.add_row("inputs already done (skipped)", str(result.skipped_done))
    for reason, n in sorted(result.dropped.items()):
        table.add_row(f"dropped: {reason}", str(n))
    table.add_row("tokens (prompt + completion)", f"{result.prompt_tokens:,} + {result.completion_tokens:,}")
    table.add_row("cost", f"{result.cost(opts):.4f}")
    table.add_row("time", f"{result.seconds:.1f} s")
    console.print(table)
    console.print(f"Rows: {output} · dropped inputs and reasons: {s.sidecar_path(output)}")
    console.print(f"Next: [bold]lapidar data check {escape(str(output))}[/bold]")
