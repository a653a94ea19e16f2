"""Open a run for export, fold its LoRA adapter into the base weights, and save a plain Hugging Face model folder.

The saved folder needs nothing from lapidar or peft: `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained(DIR)`
load it, `apply_chat_template` renders the chat format the run was trained with, and `generation_config.json`
stops at the right end-of-turn token (<|im_end|> for instruct models, <|endoftext|> for base models).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lapidar.errors import UserError
from lapidar.inference.generate import Loaded, load_for_inference
from lapidar.io import write_json, write_text
from lapidar.models.loading import RANDOM_LABEL, RUN_FILE, resolve_model
from lapidar.models.qwen import BASE_EOS, INSTRUCT_EOS, PAD_TOKEN, save_tokenizer

__all__ = ["ExportSource", "merge_weights", "open_source", "save_merged"]

MARKER = "lapidar_model.json"  # read by lapidar.models.loading: lets `lapidar chat DIR` label random weights


@dataclass
class ExportSource:
    """The model to export: loaded as `lapidar generate` would load it, plus what the export files record."""

    loaded: Loaded
    name: str  # short name for files and Ollama, e.g. the run directory's name
    kind: str  # "instruct" or "base"
    random_init: bool
    description: str  # one line for model cards and GGUF metadata

    @property
    def eos_token(self) -> str:
        """The token that ends an answer in the chat format this model was trained with."""
        return INSTRUCT_EOS if self.kind == "instruct" else BASE_EOS


def open_source(target: str) -> ExportSource:
    """Load a run directory (base + adapter, or full weights), a model directory or a preset for export."""
    path = Path(target)
    run_file = path / RUN_FILE
    if run_file.is_file():
        meta = json.loads(run_file.read_text(encoding="utf-8"))
        kind, random_init = meta["kind"], bool(meta["random_init"])
        name = path.resolve().name
        description = f"lapidar run {name}: {meta['method']} fine-tune of {meta['model_name']}"
    else:
        if path.exists() and not (path / "config.json").is_file():
            raise UserError(
                f"{path}: not a lapidar run directory ({RUN_FILE} missing) nor a model directory (config.json "
                "missing); pass the directory given to `lapidar train --output`"
            )
        source = resolve_model(target)
        kind, random_init, name = source.kind, source.random_init, Path(source.name).name
        description = f"{source.name} exported by lapidar"
    loaded = load_for_inference(target)
    if random_init:
        description += f" {RANDOM_LABEL}"
    return ExportSource(loaded, name, kind, random_init, description)


def merge_weights(model) -> Any:
    """Fold LoRA deltas into the base weights (peft `merge_and_unload`); full-weight models pass through.

    Keeps tied embeddings tied: Qwen2.5 up to 3B (and tiny-qwen2.5) share `embed_tokens` and `lm_head`, and
    LoRA on the decoder's linear layers leaves both alone, so the saved model keeps one matrix.
    """
    from peft import PeftModel

    merged = model.merge_and_unload() if isinstance(model, PeftModel) else model
    config = merged.config
    out_w, in_w = merged.get_output_embeddings().weight, merged.get_input_embeddings().weight
    if config.tie_word_embeddings and out_w is not in_w:
        if torch.equal(out_w, in_w):
            merged.tie_weights()
        else:  # training changed one of the two matrices: they are no longer one, save both
            config.tie_word_embeddings = False
    merged.eval()
    return merged


def _generation_config(model, tokenizer, kind: str):
    from transformers import GenerationConfig

    base = getattr(model, "generation_config", None)
    gen = GenerationConfig.from_dict(base.to_dict()) if base is not None else GenerationConfig()
    ids = tokenizer.convert_tokens_to_ids
    # Instruct: stop at <|im_end|>, and at <|endoftext|> as Qwen2.5-Instruct's own generation_config does.
    gen.eos_token_id = [ids(INSTRUCT_EOS), ids(BASE_EOS)] if kind == "instruct" else ids(BASE_EOS)
    gen.pad_token_id = ids(PAD_TOKEN)
    gen.bos_token_id = ids(BASE_EOS)
    return gen


def _model_card(src: ExportSource) -> str:
    warning = f"\n**{RANDOM_LABEL}**\n" if src.random_init else ""
    return (
        f"# {src.name}\n\n{src.description}\n{warning}\n"
        "A plain Hugging Face Qwen2 model (LoRA adapter merged into the base weights).\n\n"
        "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
        'tok = AutoTokenizer.from_pretrained("DIR")\nmodel = AutoModelForCausalLM.from_pretrained("DIR")\n'
        'ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, '
        'return_tensors="pt", return_dict=True)\n'
        'print(tok.decode(model.generate(**ids, max_new_tokens=64)[0, ids["input_ids"].shape[1]:], '
        "skip_special_tokens=True))\n```\n"
    )


def save_merged(src: ExportSource, merged, directory: Path) -> None:
    """Write weights (safetensors), config, tokenizer with chat template, generation config and a model card."""
    tokenizer = src.loaded.tokenizer
    merged.config.eos_token_id = tokenizer.convert_tokens_to_ids(src.eos_token)
    merged.config.bos_token_id = tokenizer.convert_tokens_to_ids(BASE_EOS)
    merged.generation_config = _generation_config(merged, tokenizer, src.kind)
    merged.save_pretrained(str(directory))
    save_tokenizer(tokenizer, directory)
    write_json(
        directory / MARKER,
        {"name": src.name, "kind": src.kind, "random_init": src.random_init, "note": src.description},
    )
    write_text(directory / "README.md", _model_card(src))
