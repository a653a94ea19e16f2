"""`lapidar export`, `lapidar predict` and `lapidar serve`: use a trained run outside training."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from lapidar.commands import quiet_libraries

__all__ = ["export", "predict", "serve"]

console = Console()
err_console = Console(stderr=True)


def export(
    run_dir: Annotated[str, typer.Argument(help="Run directory (or a model directory / preset name).")],
    format: Annotated[
        str, typer.Option("--format", help="merged (HF folder), gguf, or ollama (GGUF + Modelfile).")
    ] = "merged",
    output: Annotated[Path | None, typer.Option(help="Output directory (default RUN/export/FORMAT[-QUANT]).")] = None,
    quant: Annotated[str, typer.Option(help="GGUF type: f32, f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m.")] = "f16",
    name: Annotated[str | None, typer.Option(help="Ollama model name (default: the run's name).")] = None,
    verify: Annotated[bool, typer.Option(help="Check the export answers like the run's model.")] = True,
    prompts: Annotated[int, typer.Option(help="How many prompts of the run's data the check uses.")] = 3,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length compared by the check.")] = 32,
) -> None:
    """Merge the LoRA adapter into the base model and write it as a HF folder, a GGUF file or an Ollama model."""
    from lapidar.recipes import export as recipe

    quiet_libraries()
    opts = recipe.ExportOptions(
        target=run_dir,
        format=format,
        output=output,
        quant=quant,
        name=name,
        verify=verify,
        n_prompts=prompts,
        max_new_tokens=max_new_tokens,
    )
    result = recipe.main(opts, console)
    if result.next_step:
        console.print(f"Next: [bold]{escape(result.next_step)}[/bold]")
    if not result.ok:
        err_console.print(
            f"[red]error:[/red] the export in {escape(str(result.output))} does not answer like the run's model (see the "
            "table above); the files are kept for inspection"
        )
        raise typer.Exit(1)


def predict(
    run_dir: Annotated[str, typer.Argument(help="Run directory, preset name or model directory.")],
    data: Annotated[Path, typer.Option(help="Rows to answer (JSONL/JSON/CSV in any training format).")],
    output: Annotated[Path, typer.Option(help="JSONL file: input columns + `prediction`; resumed if it exists.")],
    batch_size: Annotated[int, typer.Option(help="Rows generated together.")] = 8,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy (default); > 0 samples.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling threshold.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    format: Annotated[
        str | None, typer.Option("--format", help="Data format (default: detected, as for training data).")
    ] = None,
) -> None:
    """Answer every row of a data file; the prompt is each conversation without its final answer."""
    from lapidar.inference import predict as recipe
    from lapidar.inference.generate import SamplingOptions, load_for_inference

    # A bad data file, or an output file holding other predictions, fails before the model is loaded.
    recipe.resume_point(output, recipe.read_prompts(data, format))
    quiet_libraries()
    loaded = load_for_inference(run_dir)
    sampling = SamplingOptions(max_new_tokens, temperature, top_p, seed)
    recipe.main(loaded, data, output, recipe.PredictOptions(batch_size, sampling, format), err_console)


def serve(
    run_dir: Annotated[str, typer.Argument(help="Run directory, preset name or model directory.")],
    host: Annotated[str, typer.Option(help="Address to listen on; non-loopback needs --api-key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(help="Require `Authorization: Bearer KEY` (default: $LAPIDAR_API_KEY).", show_default=False),
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="Model id reported by /v1/models.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Answer length when a request sets no max_tokens.")] = 512,
    max_body: Annotated[int, typer.Option(help="Largest request body in bytes (larger: 413).")] = 1_000_000,
    engine: Annotated[
        str, typer.Option(help="builtin (this process, CPU or GPU) or vllm (vLLM's OpenAI server; CUDA GPUs).")
    ] = "builtin",
) -> None:
    """Serve the model over an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models)."""
    from lapidar.errors import UserError
    from lapidar.server import check_bind

    key = api_key or os.environ.get("LAPIDAR_API_KEY") or None
    check_bind(host, port, key)  # before the (slow) model load
    if engine not in ("builtin", "vllm"):
        raise UserError(f"--engine {engine}: use builtin or vllm")
    if engine == "vllm":
        import subprocess

        from lapidar.server.vllm import check_vllm, vllm_command

        argv = vllm_command(check_vllm(), Path(run_dir), model_name or Path(run_dir).resolve().name, host, port, key)
        shown_argv = " ".join("***" if a == key else a for a in argv)
        console.print(f"[bold]Starting vLLM[/bold]: {escape(shown_argv)}", highlight=False)
        raise typer.Exit(subprocess.call(argv))
    import uvicorn

    from lapidar.inference.generate import load_for_inference
    from lapidar.server.app import create_app

    quiet_libraries()
    loaded = load_for_inference(run_dir)
    model_id = model_name or Path(run_dir).resolve().name
    app = create_app(loaded, model_id, api_key=key, default_max_tokens=max_tokens, max_body=max_body)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"[bold]Serving[/bold] {loaded.label} as [bold]{model_id}[/bold] at http://{shown}:{port}/v1")
    if loaded.random_init:
        console.print(f"[yellow]{loaded.label}: every response carries lapidar_warning[/yellow]")
    console.print("auth: " + ("Bearer key required" if key else "none (loopback only)"), highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
