"""Write a Qwen2 causal LM as a GGUF file (llama.cpp / Ollama format) with the `gguf` package, and quantise it.

What llama.cpp's own `convert_hf_to_gguf.py` does for Qwen2, written out for a model already in memory:
hyperparameters under the `qwen2.*` keys, tensors renamed with gguf's Qwen2 name map (no q/k permutation: Qwen2
checkpoints use the rotary layout llama.cpp expects), 1-D tensors (norms, biases) kept in F32, and the tokenizer
as GPT-2-style byte-level BPE with the `qwen2` pre-tokeniser, merges, token types, special ids and chat template.
With tied embeddings there is no `output.weight`: llama.cpp's Qwen2 loader then reuses `token_embd.weight`.

Quantisation beyond q8_0 (and q8_0 too when it is installed) is llama.cpp's own quantiser through
`llama_cpp.llama_model_quantize`, so k-quants are exactly what `llama-quantize` would write.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lapidar.errors import UserError, unknown_choice

__all__ = [
    "INSTALL_HINT",
    "QUANTS",
    "Quant",
    "get_quant",
    "gguf_token_table",
    "llama_cpp_available",
    "quantize_gguf",
    "write_gguf",
]

INSTALL_HINT = "install the export extra: pip install 'lapidar[export]' (compiles llama.cpp, ~5 min)"


@dataclass(frozen=True)
class Quant:
    """One `--quant` choice: how tensors are stored, and whether llama.cpp's quantiser makes it."""

    name: str
    file_type: str  # gguf.LlamaFileType member name
    native: str | None  # gguf.GGMLQuantizationType written directly by `write_gguf`, or None
    llama_ftype: str | None  # llama_cpp.LLAMA_FTYPE_* used by llama_model_quantize, or None
    exact: bool  # True when greedy output is expected to equal the HF model's


QUANTS: dict[str, Quant] = {
    "f32": Quant("f32", "ALL_F32", "F32", None, exact=True),
    "f16": Quant("f16", "MOSTLY_F16", "F16", None, exact=True),
    "bf16": Quant("bf16", "MOSTLY_BF16", "BF16", None, exact=True),
    # q8_0 is written in numpy by gguf (as convert_hf_to_gguf --outtype q8_0) when llama.cpp is missing.
    "q8_0": Quant("q8_0", "MOSTLY_Q8_0", "Q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0", exact=False),
    "q6_k": Quant("q6_k", "MOSTLY_Q6_K", None, "LLAMA_FTYPE_MOSTLY_Q6_K", exact=False),
    "q5_k_m": Quant("q5_k_m", "MOSTLY_Q5_K_M", None, "LLAMA_FTYPE_MOSTLY_Q5_K_M", exact=False),
    "q4_k_m": Quant("q4_k_m", "MOSTLY_Q4_K_M", None, "LLAMA_FTYPE_MOSTLY_Q4_K_M", exact=False),
}


def get_quant(name: str) -> Quant:
    """Look up a `--quant` name; unknown names list the valid ones."""
    if name not in QUANTS:
        raise unknown_choice("GGUF quantisation", name, list(QUANTS))
    return QUANTS[name]


def llama_cpp_available() -> bool:
    """True when llama-cpp-python imports (it is compiled from source by `pip install 'lapidar[export]'`)."""
    try:
        import llama_cpp  # noqa: F401
    except Exception:  # an ImportError, or an OSError from a broken shared library
        return False
    return True


# ---------------------------------------------------------------- tokenizer


def _looks_special(token: str) -> bool:
    # convert_hf_to_gguf's `does_token_look_special`: <|...|> markers are control tokens even when the
    # tokenizer does not flag them special (Qwen's fim/repo markers); <tool_call> stays user-defined text.
    return token.startswith("<|") and token.endswith("|>")


def gguf_token_table(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Token strings and gguf token types for ids 0..vocab_size-1 (the embedding's padding rows are UNUSED)."""
    import gguf

    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(token)
            is_control = added[i].special or _looks_special(token)
            types.append(gguf.TokenType.CONTROL if is_control else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    return tokens, [int(t) for t in types]


def _merges(tokenizer) -> list[str]:
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    if model.get("type") != "BPE":
        raise UserError(f"GGUF export needs a byte-level BPE tokenizer (Qwen2.5's); this one is {model.get('type')}")
    # tokenizers >= 0.20 stores merges as pairs; GGUF wants "a b" strings (byte-level BPE has no raw spaces).
    return [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]


def _add_tokenizer(writer, tokenizer, vocab_size: int, eos_token: str) -> None:
    tokens, types = gguf_token_table(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")  # llama.cpp's name for Qwen2's split regex (single digits, NFC)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(_merges(tokenizer))
    ids = tokenizer.convert_tokens_to_ids
    writer.add_bos_token_id(ids("<|endoftext|>"))  # Qwen's config.json bos id; never prepended (below)
    writer.add_eos_token_id(ids(eos_token))
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


# ---------------------------------------------------------------- weights


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(config, "rope_theta", 1_000_000.0)))


def _add_hparams(writer, config) -> None:
    import gguf

    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type == "yarn":  # Qwen2.5's documented long-context setting
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    elif rope_type != "default":
        raise UserError(f"GGUF export supports default and yarn RoPE; this model's config uses {rope_type!r}")


def _encode_tensor(tensor: torch.Tensor, qtype_name: str) -> tuple[np.ndarray, Any]:
    """numpy data plus the raw gguf type (None when numpy's dtype says it). 1-D tensors are always F32."""
    import gguf

    data = tensor.detach().to(torch.float32).cpu().numpy()
    if data.ndim == 1 or qtype_name == "F32":
        return data, None
    if qtype_name == "F16":
        return data.astype(np.float16), None
    qtype = gguf.GGMLQuantizationType[qtype_name]
    try:
        return gguf.quants.quantize(data, qtype), qtype
    except gguf.quants.QuantError:  # rows not a multiple of the block size: what convert_hf_to_gguf does
        return data.astype(np.float16), None


def _state_dict(model) -> dict[str, torch.Tensor]:
    """Named tensors to write; `lm_head.weight` is dropped when it is the (tied) embedding."""
    state = dict(model.state_dict())
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    if tied:
        state.pop("lm_head.weight", None)
    return state


def write_gguf(
    model,
    tokenizer,
    path: Path,
    quant: str,
    *,
    name: str,
    eos_token: str,
    description: str = "",
    on_tensor: Callable[[str], None] | None = None,
) -> None:
    """Write `model` (a transformers Qwen2ForCausalLM, adapters merged) and its tokenizer as one GGUF file.

    `quant` must be written natively (f32, f16, bf16, q8_0); other types go through `quantize_gguf`.
    """
    import gguf

    q = get_quant(quant)
    if q.native is None:
        raise ValueError(f"{quant} is made by llama.cpp's quantiser, not written directly")
    config = model.config
    if config.model_type != "qwen2":
        raise UserError(f"GGUF export supports Qwen2/Qwen2.5 models; this one is {config.model_type!r}")
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN2])
    writer.add_name(name)
    if description:
        writer.add_description(description)
    _add_hparams(writer, config)
    writer.add_file_type(int(gguf.LlamaFileType[q.file_type]))
    if q.native not in ("F32", "F16", "BF16"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, tokenizer, config.vocab_size, eos_token)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, config.num_hidden_layers)
    for hf_name, tensor in _state_dict(model).items():
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UserError(f"GGUF export: no llama.cpp name for tensor {hf_name} (not a plain Qwen2 model?)")
        data, raw = _encode_tensor(tensor, q.native)
        writer.add_tensor(gguf_name, data, raw_dtype=raw)
        if on_tensor:
            on_tensor(gguf_name)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def quantize_gguf(source: Path, target: Path, quant: str, threads: int | None = None) -> None:
    """Quantise a GGUF file with llama.cpp's quantiser (same code as the `llama-quantize` tool)."""
    q = get_quant(quant)
    if q.llama_ftype is None:
        raise ValueError(f"{quant} is not a llama.cpp quantisation type")
    if not llama_cpp_available():
        raise UserError(f"--quant {quant} needs llama-cpp-python, which is not installed; {INSTALL_HINT}")
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, q.llama_ftype)
    params.nthread = threads or max(1, (os.cpu_count() or 1))
    with _captured_stderr() as log:
        rc = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if rc != 0 or not target.is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
        raise RuntimeError(f"llama.cpp failed to quantise {source} to {quant} (return code {rc}):\n{tail}")


@contextlib.contextmanager
def _captured_stderr() -> Iterator[Path]:
    """Send the C library's stderr (llama.cpp logs a line per tensor) to a file, shown only on failure."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "llama.log"
        with log.open("wb") as f:
            os.dup2(f.fileno(), 2)
            try:
                yield log
            finally:
                os.dup2(saved, 2)
                os.close(saved)
