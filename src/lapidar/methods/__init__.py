"""Training methods, one registry: name -> `Method` (how to load the base, how to mark what trains, when to use it).

Each `prepare` function takes the loaded base model, the run config and the embedding rows of `--new-tokens` (which
must train too), marks what trains, and returns the model to optimise. Loading options (4-bit / 8-bit base) and the optimiser a method implies live in the same entry, so the
training recipe never branches on method names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lapidar.errors import UserError, unknown_choice
from lapidar.models.qwen import EMBEDDING_MODULES, LORA_TARGETS

if TYPE_CHECKING:
    from lapidar.config import TrainConfig

__all__ = [
    "METHODS",
    "Method",
    "apply_method",
    "frozen_linears_to_bf16",
    "get_method",
    "quantization_config",
    "resolve_targets",
    "upcast_for_fp32_compute",
]

QWEN_LINEAR = set(LORA_TARGETS["all-linear"])


@dataclass(frozen=True)
class Method:
    """One training method."""

    prepare: Callable[[Any, TrainConfig, list[int]], Any]  # (model, cfg, token ids whose rows train)
    when: str  # one line for `lapidar methods`: when to choose it
    adapter: bool = True  # saves a peft adapter (else the whole model)
    quant: str | None = None  # "4bit" / "8bit": the base is loaded quantised with bitsandbytes
    optimizer: str | None = None  # the optimiser the method implies (galore, q-galore)
    # What the optimiser needs: the method's own parameter groups, from the trainable (name, parameter) pairs
    # (None: one group at the configured learning rate).
    param_groups: Callable[[list[tuple[str, Any]], TrainConfig], list[dict[str, Any]]] | None = None
    # What the memory estimate needs beyond `adapter`/`quant`/`optimizer` (training/memory.py):
    partial: bool = False  # only some of the base's layers train (freeze)
    dora: bool = False  # the adapter adds a magnitude vector per target (DoRA)
    # What the user should hear about this method on this model (a setting that does not do what it says), from the
    # loaded model and the config; shown with the run's notes.
    notes: Callable[[Any, TrainConfig], list[str]] | None = None
    # Whether the frozen linear weights of the decoder may be held in bf16 when training computes under bf16
    # autocast (`frozen_linears_to_bf16`): exact for adapters whose forward only multiplies by the base weight.
    bf16_frozen_base: bool = False
    # Whether the LoRA layers are `fused_lora.FusedLoraLinear` (vanilla LoRA on plain nn.Linear layers only: not
    # DoRA's variant, not bitsandbytes' quantised layers).
    fused_lora: bool = False


def frozen_linears_to_bf16(model, dtype: Any = None) -> int:
    """Hold every frozen `nn.Linear` weight (and bias) of the decoder layers in bf16 (or `dtype`: fp16 under fp16
    autocast, from fp32 or bf16 weights); return how many parameters changed dtype.

    Under bf16 autocast a linear layer casts an fp32 weight to bf16 at every forward and keeps that copy for the
    backward pass, so a frozen fp32 weight costs 4 bytes held + 2 bytes per step, and computes exactly what a bf16
    weight computes: storing it in bf16 gives bit-identical losses and gradients (tests/unit/test_bf16_base.py)
    at a third of the bytes. Embeddings, norms and the lm_head keep their dtype: the embedding lookup and RMSNorm are
    not autocast, and in fp32 they keep the residual stream in fp32. Trainable weights (adapters) stay fp32.
    """
    import torch

    from lapidar.training.hardware import release_mapped_pages

    dtype = dtype or torch.bfloat16
    sources = (torch.float32,) if dtype == torch.bfloat16 else (torch.float32, torch.bfloat16)

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model

    def live() -> list:
        return [*inner.parameters(), *inner.buffers()]

    changed = 0
    for layer in inner.model.layers:
        dropped = []
        for module in layer.modules():
            if type(module) is not torch.nn.Linear:
                continue  # peft's LoRA wrappers hold their base layer as a plain nn.Linear child
            for param in module.parameters(recurse=False):
                if param.requires_grad or param.dtype not in sources:
                    continue
                dropped.append(param.data)
                param.data = param.data.to(dtype)
                changed += param.numel()
        # transformers 5 leaves loaded weights as views of the mmapped safetensors file, and every fp32 page read
        # for the cast would stay resident until the file is unmapped (all 1.9 GB of the 0.5B shape at once, beside
        # the new copies): drop them layer by layer.
        release_mapped_pages(dropped, live())
    if changed:
        # The other frozen weights are copied out of the mapping too, so that it closes (a tied lm_head reads the
        # whole embedding at every step and would page it back in), one tensor at a time for the same reason.
        for param in inner.parameters():
            if not param.requires_grad and param.dtype == torch.float32:
                old = param.data
                param.data = old.clone()
                release_mapped_pages([old], live())
    return changed


def upcast_for_fp32_compute(model) -> tuple[int, int, Any]:
    """Make a run that computes in fp32 compute in fp32 on a checkpoint saved in 16 bits (Qwen2.5's are bf16).

    Without autocast a bf16 weight makes its layer compute in bf16, so a bf16 checkpoint would train in pure bf16:
    several times slower on a CPU that only emulates bf16, and not the fp32 the run says. Every 16-bit parameter
    and buffer is upcast to fp32 (exact), except the frozen base weights under the fused LoRA layers
    (`fused_lora.FusedLoraLinear`), which cast theirs inside each matmul: they stay 16-bit in memory, half the
    bytes, with the same results. Returns (parameters upcast, parameters kept in 16 bits, the 16-bit dtype found or
    None); (0, 0, None) for a model held in fp32 already.
    """
    import torch

    from lapidar.methods.fused_lora import FusedLoraLinear
    from lapidar.training.hardware import release_mapped_pages

    narrow = (torch.bfloat16, torch.float16)
    kept: set[int] = set()
    for module in model.modules():
        if isinstance(module, FusedLoraLinear) and type(module.base_layer) is torch.nn.Linear:
            weight = module.base_layer.weight
            if not weight.requires_grad and weight.dtype in narrow:
                kept.add(id(weight))
    upcast = held = 0
    found = None
    for tensors in (list(model.parameters()), list(model.buffers())):
        for tensor in tensors:
            if tensor.dtype not in narrow:
                continue
            found = found or tensor.dtype
            if id(tensor) in kept:
                held += tensor.numel()
                continue
            old = tensor.data
            tensor.data = old.float()
            if isinstance(tensor, torch.nn.Parameter):
                upcast += tensor.numel()
            # Views of the mmapped checkpoint: let their pages go, one tensor at a time.
            release_mapped_pages([old], [*model.parameters(), *model.buffers()])
    return upcast, held, found


def resolve_targets(names: list[str]) -> list[str]:
    """Expand presets (`attention`, `mlp`, `all-linear`) into Qwen2.5 module names; reject unknown names."""
    out: list[str] = []
    for name in names:
        for module in LORA_TARGETS.get(name, [name]):
            if module not in QWEN_LINEAR:
                raise UserError(
                    f"unknown target module {name!r}; valid: {', '.join([*LORA_TARGETS, *sorted(QWEN_LINEAR)])}"
                )
            if module not in out:
                out.append(module)
    return out


def _tied(model) -> bool:
    return model.get_output_embeddings().weight is model.get_input_embeddings().weight


def _embedding_options(model, cfg: TrainConfig, token_ids: list[int]) -> dict[str, Any]:
    """The peft options that train embeddings next to LoRA: none, the rows of new tokens, or both whole matrices."""
    embed, head = EMBEDDING_MODULES
    if cfg.train_embeddings:
        # Trainable copies of both (vocab_rows, hidden) matrices, saved whole with the adapter; ensure_weight_tying
        # keeps a tied pair one matrix.
        return {"modules_to_save": [embed, head], "ensure_weight_tying": _tied(model)}
    if token_ids:
        # peft TrainableTokens: only these rows train, saved as a (len(ids), hidden) tensor; every other row stays
        # bit-identical. A tied lm_head follows the embedding's rows; an untied one trains the same rows of its own.
        rows = {embed: token_ids} if _tied(model) else {embed: token_ids, head: token_ids}
        return {"trainable_token_indices": rows}
    return {}


def _lora_with(**options: Any) -> Callable[[Any, TrainConfig, list[int]], Any]:
    """A `prepare` for LoRA with peft `options`. Where the method's entry says `fused_lora`, the target layers are
    `fused_lora.FusedLoraLinear` (peft's parameters and function, one autograd node per projection)."""

    def prepare(model, cfg: TrainConfig, token_ids: list[int]):
        """LoRA (Hu et al. 2021, arXiv:2106.09685): frozen base, low-rank A·B trained on the target projections."""
        import torch
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=resolve_targets(cfg.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
            **_embedding_options(model, cfg, token_ids),
            **options,
        )
        # ZeRO-3 gathers a layer's weights only when that very module is called; the fused layer reads the base
        # and adapter weights itself, so peft's layer (which calls them) runs instead.
        if get_method(cfg.method).fused_lora and not cfg.strategy.startswith("zero3"):
            from lapidar.methods.fused_lora import FusedLoraLinear

            lora._register_custom_module({torch.nn.Linear: FusedLoraLinear})
        return get_peft_model(model, lora)

    return prepare


def _lora_plus_groups(named: list[tuple[str, Any]], cfg: TrainConfig) -> list[dict[str, Any]]:
    """LoRA+ (Hayou et al. 2024, arXiv:2402.12354): B learns `loraplus_lr_ratio` times faster than A."""
    b = [p for n, p in named if "lora_B" in n]
    rest = [p for n, p in named if "lora_B" not in n]
    return [{"params": rest, "lr": cfg.lr}, {"params": b, "lr": cfg.lr * cfg.loraplus_lr_ratio}]


def _qlora(model, cfg: TrainConfig, token_ids: list[int]):
    """QLoRA (Dettmers et al. 2023, arXiv:2305.14314): LoRA on top of a bitsandbytes-quantised frozen base."""
    from peft import prepare_model_for_kbit_training

    # Casts norms to fp32 and makes the (frozen) embedding output require grad so that checkpointing works.
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    # bitsandbytes repacks 4-bit weights for its AVX512-BF16 CPU kernel at the first eval-mode, no-grad forward (a
    # validation pass), and that kernel's path then fails in training (`result += bias` on a leaf that requires grad).
    # The repacking is an inference optimisation; a model being trained keeps the trainable layout.
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
    return _lora_with()(model, cfg, token_ids)


def _full(model, cfg: TrainConfig, token_ids: list[int]):
    """Full fine-tuning: every weight trains (~16 bytes/parameter with fp32 AdamW)."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _unfreeze_embeddings(model, rows: list[int] | None) -> None:
    """Let the embedding (and an untied lm_head) train: whole, or only `rows`.

    Only `rows`: gradients of the other rows are zeroed, so AdamW leaves them bit-identical (its update of a weight
    whose gradient was always zero is zero) unless weight_decay > 0, which shrinks every trainable weight.
    """
    import torch

    weights = [model.get_input_embeddings().weight] + ([] if _tied(model) else [model.get_output_embeddings().weight])
    for weight in weights:  # (vocab_rows, hidden)
        weight.requires_grad_(True)
        if rows is not None:
            mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
            mask[rows] = 1
            weight.register_hook(lambda grad, mask=mask: grad * mask)


def _freeze(model, cfg: TrainConfig, token_ids: list[int]):
    """Freeze everything but the last N decoder layers and the named extra modules (transfer learning)."""
    layers = model.model.layers
    n = min(cfg.freeze_trainable_layers, len(layers))  # more than the model has: all of them (`_freeze_notes` says so)
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in list(layers)[len(layers) - n :]:
        for p in layer.parameters():
            p.requires_grad_(True)
    named = dict(model.named_modules())
    for extra in cfg.freeze_extra_modules:
        matches = [m for name, m in named.items() if name == extra or name.endswith(f".{extra}")]
        if not matches:
            raise UserError(f"freeze_extra_modules: no module named {extra!r}; e.g. norm, lm_head, embed_tokens")
        for m in matches:
            for p in m.parameters():
                p.requires_grad_(True)
    if cfg.train_embeddings or token_ids:
        _unfreeze_embeddings(model, None if cfg.train_embeddings else token_ids)
    if not any(p.requires_grad for p in model.parameters()):
        raise UserError("freeze: nothing left to train; set freeze_trainable_layers >= 1 or freeze_extra_modules")
    return model


def _freeze_notes(model, cfg: TrainConfig) -> list[str]:
    """Say so when `freeze_trainable_layers` leaves no decoder layer frozen: the run is then close to full fine-tuning
    (every layer's weights and their optimiser state), not the cheap transfer learning `freeze` is chosen for."""
    layers = len(model.model.layers)
    n = cfg.freeze_trainable_layers
    if n < layers:
        return []
    joint = "but" if n > layers else "and"
    return [
        f"freeze: freeze_trainable_layers={n} {joint} the model has {layers} layers: all {layers} layers train, this "
        "is nearly a full fine-tune (only the embeddings, final norm and lm_head stay frozen); lower "
        f"--freeze-trainable-layers below {layers} to freeze the first layers, or use --method full"
    ]


METHODS: dict[str, Method] = {
    "lora": Method(
        _lora_with(),
        "default: small adapter on attention+MLP; ~1% of weights train, quick and safe",
        bf16_frozen_base=True,
        fused_lora=True,
    ),
    "lora-plus": Method(
        _lora_with(),
        "LoRA with a higher LR for B (loraplus_lr_ratio): often converges faster at the same cost",
        param_groups=_lora_plus_groups,
        bf16_frozen_base=True,
        fused_lora=True,
    ),
    "dora": Method(
        _lora_with(use_dora=True),
        "weight-decomposed LoRA (arXiv:2402.09353): closer to full fine-tuning quality at low rank; slower steps",
        dora=True,
    ),
    "rslora": Method(
        _lora_with(use_rslora=True),
        "rank-stabilised LoRA (scale alpha/sqrt(r)): use with high ranks (r >= 64)",
        bf16_frozen_base=True,
        fused_lora=True,
    ),
    "pissa": Method(
        _lora_with(init_lora_weights="pissa_niter_4"),
        "LoRA initialised from the principal singular vectors (arXiv:2404.02948): faster early progress",
        bf16_frozen_base=True,
        fused_lora=True,
    ),
    "olora": Method(
        _lora_with(init_lora_weights="olora"),
        "LoRA initialised from a QR decomposition of the weights (OLoRA, arXiv:2406.01775)",
        bf16_frozen_base=True,
        fused_lora=True,
    ),
    "qlora": Method(
        _qlora, "LoRA on a 4-bit NF4 base (double quantisation): ~4x less memory for weights", quant="4bit"
    ),
    "qlora-8bit": Method(_qlora, "LoRA on an 8-bit base: between LoRA and 4-bit QLoRA in memory", quant="8bit"),
    "full": Method(_full, "every weight trains: most capacity, ~16 bytes/parameter; small models or big GPUs", False),
    "freeze": Method(
        _freeze,
        "only the last N layers (+ named modules) train: cheap transfer learning, no adapter",
        False,
        partial=True,
        notes=_freeze_notes,
    ),
    "galore": Method(
        _full,
        "full-parameter training with low-rank projected gradients (arXiv:2403.03507): full FT in less memory",
        False,
        optimizer="galore",
    ),
    "q-galore": Method(
        _full,
        "GaLore with quantised projections (arXiv:2407.08296); needs the q-galore-torch package",
        False,
        optimizer="q-galore",
    ),
}


def get_method(name: str) -> Method:
    """Look a method up; an unknown name lists the valid ones."""
    if name not in METHODS:
        raise unknown_choice("method", name, list(METHODS))
    return METHODS[name]


def quantization_config(method: Method, compute_dtype: Any = None):
    """The `BitsAndBytesConfig` a quantised method loads its base with (None for others)."""
    if method.quant is None:
        return None
    try:
        import bitsandbytes  # noqa: F401
        import torch
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise UserError(
            "qlora needs the bitsandbytes package: pip install 'lapidar[qlora]' (or pip install bitsandbytes)"
        ) from None
    if method.quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype or torch.float32,
    )


def apply_method(model, cfg: TrainConfig, token_ids: Sequence[int] = (), notes: list[str] | None = None):
    """Prepare `model` for training with `cfg.method`; the embedding rows of `token_ids` (new tokens) train too.

    What the method has to tell the user about this model (e.g. `freeze` that freezes no layer) is appended to
    `notes` (the run's notes, shown when training starts).
    """
    method = get_method(cfg.method)
    if method.notes is not None and notes is not None:
        notes += method.notes(model, cfg)
    return method.prepare(model, cfg, list(token_ids))
