"""Export recipe: run -> merged weights -> files (HF folder, GGUF, Ollama) -> equivalence checks -> report.

    lapidar export RUN --format merged --output DIR            # plain transformers folder
    lapidar export RUN --format gguf --quant q4_k_m            # one .gguf file for llama.cpp
    lapidar export RUN --format ollama --name my-model         # .gguf + Modelfile, prints `ollama create ...`

Every format starts from the same merged model; `FORMATS` maps a format name to the function that writes it and
the function that checks the written files against the run's own model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lapidar.errors import UserError, unknown_choice
from lapidar.export import gguf as gguf_export
from lapidar.export import ollama
from lapidar.export.merged import ExportSource, merge_weights, open_source, save_merged
from lapidar.export.verify import Check, Reference, check_gguf, check_merged, reference
from lapidar.io import atomic_dir, write_json, write_text
from lapidar.training.hardware import cpu_has_amx

__all__ = ["FORMATS", "ExportOptions", "ExportResult", "main"]

EXPORT_FILE = "lapidar_export.json"  # what was exported, from what, and the check results
DEFAULT_PROMPTS = ["What is the capital of France?", "Write one sentence about the sea.", "What is 12 + 30?"]


@dataclass
class ExportOptions:
    """Everything `lapidar export` takes."""

    target: str  # run directory (or model directory / preset)
    format: str = "merged"
    output: Path | None = None  # default: <run>/export/<format>[-<quant>]
    quant: str = "f16"  # gguf and ollama only
    name: str | None = None  # Ollama model name; default: the run directory's name
    verify: bool = True
    n_prompts: int = 3
    max_new_tokens: int = 32


@dataclass
class ExportResult:
    """Where the files went and how the checks came out."""

    output: Path
    files: list[Path]
    checks: list[Check] = field(default_factory=list)
    next_step: str = ""

    @property
    def ok(self) -> bool:
        """False when a required check failed."""
        return all(c.ok or not c.required for c in self.checks)


@dataclass
class Written:
    """What a format's writer produced inside the (temporary) output directory."""

    files: list[Path]
    gguf: Path | None = None
    next_step: str = ""


# ---------------------------------------------------------------- the formats


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._") or "model"


def _gguf_file(src: ExportSource, merged, directory: Path, quant: str, console: Console) -> Path:
    q = gguf_export.get_quant(quant)
    dest = directory / f"{_slug(src.name)}-{quant}.gguf"
    common: dict[str, Any] = {"name": src.name, "eos_token": src.eos_token, "description": src.description}
    tokenizer = src.loaded.tokenizer
    use_llama = q.llama_ftype is not None and (q.native is None or gguf_export.llama_cpp_available())
    if not use_llama:
        console.print(f"writing {dest.name} ({quant})")
        gguf_export.write_gguf(merged, tokenizer, dest, quant, **common)
        return dest
    # llama.cpp quantises from a full-precision GGUF, like `convert_hf_to_gguf.py` + `llama-quantize`.
    import torch

    source_quant = "f32" if merged.dtype == torch.float32 else "bf16"
    intermediate = directory / f".intermediate-{source_quant}.gguf"
    console.print(f"writing {source_quant} GGUF, then quantising to {quant} with llama.cpp")
    gguf_export.write_gguf(merged, tokenizer, intermediate, source_quant, **common)
    gguf_export.quantize_gguf(intermediate, dest, quant)
    intermediate.unlink()
    return dest


def _write_merged(src: ExportSource, merged, directory: Path, opts: ExportOptions, console: Console) -> Written:
    console.print("saving merged weights, tokenizer, chat template and generation config")
    save_merged(src, merged, directory)
    return Written(sorted(p for p in directory.iterdir() if p.is_file()))


def _write_gguf(src: ExportSource, merged, directory: Path, opts: ExportOptions, console: Console) -> Written:
    path = _gguf_file(src, merged, directory, opts.quant, console)
    assert opts.output is not None
    return Written([path], gguf=path, next_step=f"llama-server -m {opts.output / path.name}")


def _write_ollama(src: ExportSource, merged, directory: Path, opts: ExportOptions, console: Console) -> Written:
    path = _gguf_file(src, merged, directory, opts.quant, console)
    num_ctx = min(4096, merged.config.max_position_embeddings)
    note = src.description
    write_text(directory / "Modelfile", ollama.modelfile(path.name, src.kind, num_ctx=num_ctx, note=note))
    name = _slug(opts.name or src.name)
    assert opts.output is not None
    command = ollama.create_command(name, str(opts.output / "Modelfile"))
    return Written([path, directory / "Modelfile"], gguf=path, next_step=command)


def _verify_merged(output: Path, written: Written, src: ExportSource, refs, opts: ExportOptions) -> list[Check]:
    return check_merged(output, refs, opts.max_new_tokens)


def _verify_gguf(output: Path, written: Written, src: ExportSource, refs, opts: ExportOptions) -> list[Check]:
    assert written.gguf is not None
    exact = gguf_export.get_quant(opts.quant).exact
    if cpu_has_amx() and not exact:
        Console(stderr=True).print(
            "[yellow]note:[/yellow] this CPU has Intel AMX. llama.cpp's AMX weight repacking is known to crash on "
            "quantised files (llama.cpp issue #20824), so lapidar checks this file with repacking off. If "
            "llama-server crashes on it here, start it with its no-repack option."
        )
    return check_gguf(output / written.gguf.name, src.loaded.tokenizer, refs, opts.max_new_tokens, exact)


@dataclass(frozen=True)
class Format:
    """How one `--format` is written and checked."""

    write: Callable[[ExportSource, Any, Path, ExportOptions, Console], Written]
    verify: Callable[[Path, Written, ExportSource, list[Reference], ExportOptions], list[Check]]
    needs_llama_cpp_to_verify: bool


FORMATS: dict[str, Format] = {
    "merged": Format(_write_merged, _verify_merged, needs_llama_cpp_to_verify=False),
    "gguf": Format(_write_gguf, _verify_gguf, needs_llama_cpp_to_verify=True),
    "ollama": Format(_write_ollama, _verify_gguf, needs_llama_cpp_to_verify=True),
}


# ---------------------------------------------------------------- setup


def verification_prompts(target: str, n: int) -> list[list[dict]]:
    """The first `n` prompts of the run's validation (else training) data; fixed questions when unreadable."""
    import yaml

    from lapidar.data.formats import bundled_example, load_examples
    from lapidar.inference.predict import prompt_messages

    cfg_path = Path(target) / "config.yaml"
    try:
        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        data = cfg.get("val_data") or cfg.get("data") or ""
        if data.startswith("example:"):
            _, val = bundled_example(data.removeprefix("example:"))
            data = str(val)
        examples, _ = load_examples(Path(data))
        prompts = [prompt_messages(e.messages) for e in examples[:n]]
        if prompts:
            return prompts
    except (OSError, UserError, AttributeError, yaml.YAMLError):
        pass
    return [[{"role": "user", "content": q}] for q in DEFAULT_PROMPTS[:n]]


def setup(opts: ExportOptions) -> ExportOptions:
    """Check the options before any model is loaded; fill in the default output directory."""
    if opts.format not in FORMATS:
        raise unknown_choice("export format", opts.format, list(FORMATS))
    if opts.format == "merged" and opts.quant != "f16":
        raise UserError(
            f"--quant {opts.quant} applies to --format gguf or ollama; a merged folder keeps the model's dtype"
        )
    if opts.output is not None and opts.output.suffix.lower() == ".gguf":
        raise UserError(f"--output {opts.output}: expected a directory (the .gguf file is written inside it)")
    if opts.format != "merged":
        q = gguf_export.get_quant(opts.quant)
        try:
            import gguf  # noqa: F401
        except ImportError:
            raise UserError(f"--format {opts.format} needs the gguf package; {gguf_export.INSTALL_HINT}") from None
        if q.native is None and not gguf_export.llama_cpp_available():
            raise UserError(
                f"--quant {opts.quant} needs llama.cpp's quantiser (llama-cpp-python); {gguf_export.INSTALL_HINT}; "
                f"or choose one of {', '.join(k for k, v in gguf_export.QUANTS.items() if v.native)}"
            )
    if opts.output is None:
        suffix = "" if opts.format == "merged" else f"-{opts.quant}"
        opts.output = Path(opts.target) / "export" / f"{opts.format}{suffix}"
    out = opts.output
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / EXPORT_FILE).is_file())):
        raise UserError(
            f"--output {out}: exists and is not an earlier lapidar export; choose a new directory or remove it"
        )
    return opts


# ---------------------------------------------------------------- main


def print_checks(console: Console, title: str, checks: list[Check]) -> None:
    """The result table: one row per check."""
    table = Table(title=title)
    for col in ("check", "result", "expected", "status"):
        table.add_column(col)
    for c in checks:
        status = "[green]PASS[/green]" if c.ok else ("[red]FAIL[/red]" if c.required else "[yellow]WARN[/yellow]")
        table.add_row(escape(c.name), escape(c.value), escape(c.expected), status)
    console.print(table)


def main(opts: ExportOptions, console: Console | None = None) -> ExportResult:
    """Export a run in one format and check the result; returns the files and the checks."""
    console = console or Console()
    opts = setup(opts)
    fmt = FORMATS[opts.format]
    verify = opts.verify
    if verify and fmt.needs_llama_cpp_to_verify and not gguf_export.llama_cpp_available():
        console.print(
            f"[yellow]note:[/yellow] equivalence check skipped: llama-cpp-python is not installed "
            f"({escape(gguf_export.INSTALL_HINT)})"
        )
        verify = False

    src = open_source(opts.target)
    console.print(f"[bold]Exporting[/bold] {escape(src.loaded.label)} as {opts.format}")
    if src.random_init:
        console.print(f"[yellow]{escape(src.description)}[/yellow]")
    refs = (
        reference(src.loaded, verification_prompts(opts.target, opts.n_prompts), opts.max_new_tokens) if verify else []
    )
    merged = merge_weights(src.loaded.model)

    assert opts.output is not None
    with atomic_dir(opts.output) as tmp:
        written = fmt.write(src, merged, tmp, opts, console)
    files = [opts.output / p.name for p in written.files]
    checks = fmt.verify(opts.output, written, src, refs, opts) if verify else []
    record = {
        "source": opts.target,
        "format": opts.format,
        "quant": None if opts.format == "merged" else opts.quant,
        "random_init": src.random_init,
        "description": src.description,
        "files": [p.name for p in files],
        "checks": [c.__dict__ for c in checks],
    }
    write_json(opts.output / EXPORT_FILE, record)
    if checks:
        print_checks(console, f"Equivalence check: {escape(str(opts.output))}", checks)
    console.print(f"[bold]Exported[/bold] to {escape(str(opts.output))}: {escape(', '.join(p.name for p in files))}")
    return ExportResult(opts.output, files, checks, written.next_step)
