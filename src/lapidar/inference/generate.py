"""Load a run, a preset or a model directory for inference, and generate answers (greedy or sampled)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from threading import Thread
from typing import Any

import torch

from lapidar.data.tokenize import render_prompt
from lapidar.errors import UserError
from lapidar.models.loading import RANDOM_LABEL, RUN_FILE, ModelSource, load_model, load_tokenizer, resolve_model
from lapidar.models.tokens import add_new_tokens, resize_embeddings

__all__ = ["Loaded", "SamplingOptions", "gen_kwargs", "generate", "load_for_inference", "stream"]


@dataclass
class Loaded:
    """A model ready to answer, with the tokenizer whose chat template it was trained with."""

    model: Any
    tokenizer: Any
    label: str  # what to show the user, flagged when the weights are random
    random_init: bool


@dataclass(frozen=True)
class SamplingOptions:
    """Decoding settings. temperature 0 means greedy."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    repetition_penalty: float = 1.0  # > 1 discourages repeating tokens (CTRL, arXiv:1909.05858)


def load_for_inference(target: str, checkpoint: str | None = None, base_only: bool = False) -> Loaded:
    """Open a run directory (base + trained weights), a preset name, a hub id or a model directory.

    `base_only` with a run directory: the model the run started from, untrained (to compare answers with)."""
    path = Path(target)
    run_file = path / RUN_FILE
    if run_file.is_file():
        meta = json.loads(run_file.read_text(encoding="utf-8"))
        weights = path / (checkpoint or meta["weights"])
        if not weights.is_dir() and not base_only:
            raise UserError(f"{weights} does not exist: the run in {path} has not saved weights yet")
        base = ModelSource(meta["model_name"], Path(meta["base_model"]), meta["kind"], meta["random_init"])
        if not base.path.is_dir():
            raise UserError(
                f"{run_file}: base model directory {base.path} is gone; restore it (for tiny-qwen2.5 run "
                "`lapidar models --materialise tiny-qwen2.5`) or retrain"
            )
        tokenizer = load_tokenizer(base)
        if base_only:
            model = load_model(base)
            label, random_init = f"{base.label}, before run {path.name}", base.random_init
        else:
            add_new_tokens(tokenizer, meta.get("new_tokens", []))  # same order as in training: the same ids
            if meta["weights"] == "adapter":
                from peft import PeftModel

                base_model = load_model(base)
                resize_embeddings(base_model, len(tokenizer))  # the shape training gave it, when it had to grow
                model = PeftModel.from_pretrained(base_model, str(weights))
            else:
                model = load_model(ModelSource(base.name, weights, base.kind, base.random_init))
            label, random_init = f"run {path.name} ({meta['method']} on {base.label})", base.random_init
    else:
        if path.exists() and not (path / "config.json").exists():
            raise UserError(f"{path} is neither a lapidar run directory ({RUN_FILE} missing) nor a model directory")
        source = resolve_model(target)
        tokenizer = load_tokenizer(source)
        model = load_model(source)
        label, random_init = source.label, source.random_init
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return Loaded(model, tokenizer, label, random_init)


def _inputs(loaded: Loaded, messages: list[dict], tools: list | None = None) -> dict[str, torch.Tensor]:
    text = render_prompt(loaded.tokenizer, messages, tools)
    enc = loaded.tokenizer(text, add_special_tokens=False, return_tensors="pt")
    device = next(loaded.model.parameters()).device
    return {k: v.to(device) for k, v in enc.items()}


def gen_kwargs(loaded: Loaded, opts: SamplingOptions) -> dict:
    """`model.generate` keyword arguments for these decoding settings."""
    tok = loaded.tokenizer
    kwargs = {
        "max_new_tokens": opts.max_new_tokens,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
        "do_sample": opts.temperature > 0,
        "repetition_penalty": opts.repetition_penalty,
    }
    if opts.temperature > 0:
        kwargs.update(temperature=opts.temperature, top_p=opts.top_p, top_k=0)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


@torch.no_grad()
def generate(
    loaded: Loaded, messages: list[dict], opts: SamplingOptions | None = None, tools: list | None = None
) -> tuple[str, bool]:
    """Answer the last user turn of `messages`, with `tools` (tool specs) in the prompt when given.

    Returns (text, stopped_at_eos); a tool call is in the text as Qwen2.5 writes it (`<tool_call>...</tool_call>`,
    see lapidar.inference.tools.parse_tool_calls)."""
    opts = opts or SamplingOptions()
    torch.manual_seed(opts.seed)
    inputs = _inputs(loaded, messages, tools)
    out = loaded.model.generate(**inputs, **gen_kwargs(loaded, opts))
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    stopped = bool(new) and new[-1] == loaded.tokenizer.eos_token_id
    return loaded.tokenizer.decode(new, skip_special_tokens=True), stopped


def stream(
    loaded: Loaded, messages: list[dict], opts: SamplingOptions | None = None, tools: list | None = None
) -> Iterator[str]:
    """Yield the answer piece by piece as it is generated (`tools` as for `generate`)."""
    from transformers import TextIteratorStreamer

    opts = opts or SamplingOptions()
    torch.manual_seed(opts.seed)
    inputs = _inputs(loaded, messages, tools)
    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)

    def work() -> None:
        with torch.no_grad():
            loaded.model.generate(**inputs, **gen_kwargs(loaded, opts), streamer=streamer)

    thread = Thread(target=work, daemon=True)
    thread.start()
    yield from streamer
    thread.join()


def random_notice(loaded: Loaded) -> str | None:
    """The warning to show next to any output of a randomly initialised model."""
    return RANDOM_LABEL if loaded.random_init else None
