"""The registry of Qwen2.5 presets: name -> hub id, variant and architecture.

The architecture numbers are those of each model's official `config.json`; they let lapidar build any preset
randomly initialised at its real shape (`--init random`) without downloading it, for benchmarks and memory checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lapidar.errors import unknown_choice

__all__ = ["PRESETS", "TINY", "ModelPreset", "get_preset"]


@dataclass(frozen=True)
class ModelPreset:
    """One Qwen2.5 model: where it lives on the hub, whether it is chat-tuned, and its architecture."""

    name: str
    hub_id: str | None  # None: embedded, built locally
    kind: str  # "instruct" (ChatML template, EOS <|im_end|>) or "base" (plain template, EOS <|endoftext|>)
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int = 151936
    max_position_embeddings: int = 32768
    rope_theta: float = 1000000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    description: str = ""
    extra: dict = field(default_factory=dict)

    def config_dict(self) -> dict:
        """The `transformers.Qwen2Config` keyword arguments for this architecture."""
        return {
            "model_type": "qwen2",
            "architectures": ["Qwen2ForCausalLM"],
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "attention_dropout": 0.0,
            "use_sliding_window": False,
            "sliding_window": self.max_position_embeddings,
            "max_window_layers": self.num_hidden_layers,
            "bos_token_id": 151643,
            "eos_token_id": 151645 if self.kind == "instruct" else 151643,
            **self.extra,
        }

    @property
    def n_params(self) -> int:
        """Parameter count (tied embeddings counted once)."""
        h, i, n = self.hidden_size, self.intermediate_size, self.num_hidden_layers
        head_dim = h // self.num_attention_heads
        kv = self.num_key_value_heads * head_dim
        attn = h * h + h + 2 * (h * kv + kv) + h * h  # q (bias), k/v (bias), o (no bias)
        mlp = 3 * h * i
        per_layer = attn + mlp + 2 * h
        emb = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return n * per_layer + emb + h


# (size, hidden, intermediate, layers, heads, kv heads, tied, vocab)
_SHAPES = {
    "0.5B": (896, 4864, 24, 14, 2, True, 151936),
    "1.5B": (1536, 8960, 28, 12, 2, True, 151936),
    "3B": (2048, 11008, 36, 16, 2, True, 151936),
    "7B": (3584, 18944, 28, 28, 4, False, 152064),
    "14B": (5120, 13824, 48, 40, 8, False, 152064),
    "32B": (5120, 27648, 64, 40, 8, False, 152064),
    "72B": (8192, 29568, 80, 64, 8, False, 152064),
}
# Where the official base checkpoints differ from the instruct ones (their config.json files).
_LONG = {"max_position_embeddings": 131072}
_EPS5 = {"rms_norm_eps": 1e-5}
_QWEN_BASE: dict[str, dict] = {
    "1.5B": _LONG,
    "7B": _LONG,
    "14B": _LONG | _EPS5,
    "32B": _LONG | _EPS5,
    "72B": _LONG | _EPS5,
}
_CODER_BASE = {"14B": _EPS5, "32B": _EPS5}
_MATH_BASE = {"72B": _EPS5}


def _family(prefix: str, sizes: list[str], base: dict[str, dict], **common) -> dict[str, ModelPreset]:
    out: dict[str, ModelPreset] = {}
    for size in sizes:
        h, i, n, heads, kv, tied, vocab = _SHAPES[size]
        for kind, suffix in (("base", ""), ("instruct", "-Instruct")):
            overrides = common | (base.get(size, {}) if kind == "base" else {})
            hub = f"Qwen/{prefix}-{size}{suffix}"
            name = f"{prefix.lower()}-{size.lower()}{suffix.lower()}"
            out[name] = ModelPreset(
                name=name,
                hub_id=hub,
                kind=kind,
                hidden_size=h,
                intermediate_size=i,
                num_hidden_layers=n,
                num_attention_heads=heads,
                num_key_value_heads=kv,
                vocab_size=vocab,
                tie_word_embeddings=tied,
                description=f"{hub} ({'chat-tuned' if kind == 'instruct' else 'base, not chat-tuned'})",
                **overrides,
            )
    return out


TINY = ModelPreset(
    name="tiny-qwen2.5",
    hub_id=None,
    kind="instruct",
    hidden_size=128,
    intermediate_size=512,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    tie_word_embeddings=True,
    # Fan-in scaled init (1/sqrt(hidden) = 0.088) instead of Qwen's 0.02: with hidden 128 and a frozen final
    # norm, 0.02 caps every logit below ~2.6, so LoRA could never make the model confident about any token.
    extra={"initializer_range": 0.088},
    description=(
        "embedded default: RANDOMLY INITIALISED tiny Qwen2 model (4 layers, hidden 128) with the real Qwen2.5 "
        "tokenizer and chat template; for trying lapidar offline, its answers are not meaningful"
    ),
)

PRESETS: dict[str, ModelPreset] = {
    TINY.name: TINY,
    **_family("Qwen2.5", list(_SHAPES), _QWEN_BASE),
    **_family("Qwen2.5-Coder", ["0.5B", "1.5B", "3B", "7B", "14B", "32B"], _CODER_BASE),
    **_family("Qwen2.5-Math", ["1.5B", "7B", "72B"], _MATH_BASE, max_position_embeddings=4096, rope_theta=10000.0),
}


def get_preset(name: str) -> ModelPreset:
    """Look a preset up by name (case-insensitive); an unknown name lists the valid ones."""
    key = name.lower()
    if key in PRESETS:
        return PRESETS[key]
    for preset in PRESETS.values():
        if preset.hub_id and preset.hub_id.lower() == key:
            return preset
    raise unknown_choice("model preset", name, list(PRESETS))
