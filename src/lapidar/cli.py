"""The `lapidar` command line: one thin function per command; the work happens in recipes/ and inference/."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from lapidar.commands import quiet_libraries
from lapidar.config.options import config_options, flag_name
from lapidar.errors import UserError

__all__ = ["app", "main"]

# bitsandbytes (imported by peft) logs "please `pip install kernels`" on CPUs with AVX512-BF16 at import time; that
# package fetches its kernels from the Hugging Face hub, and bitsandbytes falls back to its own CPU kernel anyway.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

app = typer.Typer(
    help="lapidar: fine-tune Qwen2.5 on your own data, check the result, and use it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
TOOLS_HELP = "JSON file with a list of tool specs ({type: function, function: {name, parameters}}) for the prompt."


@app.command()
@config_options()
def train(
    config: Annotated[Path | None, typer.Argument(help="YAML config file; flags below override its values.")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue this run directory from its last checkpoint (no other flags).")
    ] = None,
    **overrides: Any,
) -> None:
    """Fine-tune a model; writes config, metrics, TensorBoard logs, loss.png, weights and summary.json.

    Every config key is a flag (docs/config.md); a flag overrides the YAML value."""
    from lapidar.config import load_config
    from lapidar.recipes import train as recipe

    if resume is not None:
        given = [flag_name(k) for k, v in overrides.items() if v is not None] + ([str(config)] if config else [])
        if given:
            raise UserError(f"--resume continues a run with its saved config.yaml; drop {', '.join(given)}")
        cfg = recipe.resume_config(resume)
    else:
        cfg = load_config(config, overrides)
    quiet_libraries()
    recipe.main(cfg, console, resume=resume)


@app.command()
def generate(
    target: Annotated[str, typer.Argument(help="Run directory, preset name, hub id or model directory.")],
    prompt: Annotated[str, typer.Option(help="The user message to answer.")],
    system: Annotated[str | None, typer.Option(help="Optional system message.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy (default); > 0 samples.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling threshold.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    repetition_penalty: Annotated[float, typer.Option(help="> 1 discourages repeating tokens (1 = off).")] = 1.0,
    tools: Annotated[Path | None, typer.Option(help=TOOLS_HELP)] = None,
) -> None:
    """Print one answer to stdout (for scripts). Notes go to stderr."""
    from lapidar.inference.generate import SamplingOptions, load_for_inference
    from lapidar.inference.generate import generate as gen
    from lapidar.inference.tools import load_tools

    specs = load_tools(tools) if tools else None
    quiet_libraries()
    loaded = load_for_inference(target)
    if loaded.random_init:
        err_console.print(f"[yellow]{loaded.label}[/yellow]")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    opts = SamplingOptions(max_new_tokens, temperature, top_p, seed, repetition_penalty)
    text, stopped = gen(loaded, messages, opts, specs)
    sys.stdout.write(text + "\n")
    if not stopped:
        err_console.print(f"[yellow](stopped at --max-new-tokens {max_new_tokens}, not at end of answer)[/yellow]")


@app.command()
def chat(
    target: Annotated[str, typer.Argument(help="Run directory, preset name, hub id or model directory.")],
    system: Annotated[str | None, typer.Option(help="Optional system message.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy (default); > 0 samples.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling threshold.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    repetition_penalty: Annotated[float, typer.Option(help="> 1 discourages repeating tokens (1 = off).")] = 1.0,
    tools: Annotated[Path | None, typer.Option(help=TOOLS_HELP)] = None,
) -> None:
    """Talk to a model, multi-turn, answers streamed. /reset starts over, /exit (or Ctrl-D) quits."""
    from lapidar.inference.generate import SamplingOptions, load_for_inference, stream
    from lapidar.inference.tools import load_tools

    specs = load_tools(tools) if tools else None
    quiet_libraries()
    loaded = load_for_inference(target)
    console.print(f"[bold]Chatting with {loaded.label}[/bold]  (/reset to start over, /exit to quit)")
    history: list[dict] = [{"role": "system", "content": system}] if system else []
    opts = SamplingOptions(max_new_tokens, temperature, top_p, seed, repetition_penalty)
    while True:
        try:
            user = console.input("[bold cyan]you> [/bold cyan]")
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        if user.strip() in {"/exit", "/quit"}:
            break
        if user.strip() == "/reset":
            history = history[:1] if system else []
            console.print("[dim](conversation cleared)[/dim]")
            continue
        if not user.strip():
            continue
        history.append({"role": "user", "content": user})
        console.print("[bold magenta]model>[/bold magenta] ", end="")
        pieces = []
        for piece in stream(loaded, history, opts, specs):
            pieces.append(piece)
            console.print(piece, end="", markup=False, highlight=False)
        console.print()
        history.append({"role": "assistant", "content": "".join(pieces)})


@app.command()
def models(
    materialise: Annotated[
        str | None, typer.Option(help="Build an embedded/random preset into the cache now and print its path.")
    ] = None,
) -> None:
    """List the model presets (every Qwen2.5 size and variant, plus the embedded tiny-qwen2.5)."""
    from rich.table import Table

    from lapidar.models.loading import resolve_model
    from lapidar.models.presets import PRESETS

    if materialise:
        quiet_libraries()
        console.print(str(resolve_model(materialise, "random")))
        return
    table = Table(title="Qwen2.5 presets (--model NAME)")
    for col in ("preset", "hub id", "kind", "params", "layers", "hidden", "heads (kv)"):
        table.add_column(col)
    for p in PRESETS.values():
        table.add_row(
            p.name,
            p.hub_id or "(embedded, random weights)",
            p.kind,
            f"{p.n_params / 1e9:.2f}B" if p.n_params > 1e8 else f"{p.n_params / 1e6:.1f}M",
            str(p.num_hidden_layers),
            str(p.hidden_size),
            f"{p.num_attention_heads} ({p.num_key_value_heads})",
        )
    console.print(table)


@app.command()
def methods() -> None:
    """List the training methods (--method) and when to use each."""
    from rich.table import Table

    from lapidar.methods import METHODS

    table = Table(title="Training methods (--method NAME)")
    table.add_column("method")
    table.add_column("saves")
    table.add_column("when to use it")
    for name, m in METHODS.items():
        table.add_row(name, "adapter" if m.adapter else "full model", m.when)
    console.print(table)


@app.command()
def quickstart(
    output: Annotated[str, typer.Option(help="Run directory.")] = "runs/quickstart",
    max_steps: Annotated[int | None, typer.Option(help="Shorten the demo run.")] = None,
) -> None:
    """The whole job on the embedded default: train tiny-qwen2.5 on the bundled claims data, then compare answers."""
    from lapidar.recipes import quickstart as recipe

    quiet_libraries()
    recipe.main(output, max_steps, console)


# ---- commands defined in lapidar/commands/ (one module per area), registered here --------------------------
# (add one `app.command(...)(module.function)` line per command)
from lapidar.commands import export as export_cmds  # noqa: E402

app.command("export")(export_cmds.export)
app.command("predict")(export_cmds.predict)
app.command("serve")(export_cmds.serve)
from lapidar.commands import data as data_cmds  # noqa: E402

app.add_typer(data_cmds.app, name="data", help="Check, clean, convert and split training data.")
from lapidar.commands import evaluate as evaluate_cmds  # noqa: E402

app.command("eval")(evaluate_cmds.eval_command)
app.command("report")(evaluate_cmds.report)
from lapidar.commands import bench as bench_cmds  # noqa: E402
from lapidar.commands import estimate as estimate_cmds  # noqa: E402

app.command("estimate")(estimate_cmds.estimate)
app.command("bench")(bench_cmds.bench)
from lapidar.commands import ui as ui_cmds  # noqa: E402

app.command("ui")(ui_cmds.ui)
from lapidar.commands import sweep as sweep_cmds  # noqa: E402

app.command("sweep")(sweep_cmds.sweep)
# ---- end of registered commands -----------------------------------------------------------------------------


def main() -> None:
    """Console-script entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except UserError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)
