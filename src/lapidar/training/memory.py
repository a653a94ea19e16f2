"""How much memory and time a training run needs, as lapidar's own training path spends them. Pure functions.

The model follows the training loop (`training/loop.py`, `training/loss.py`) step by step rather than a generic rule of thumb:

- base weights stay in the dtype they were saved in (random-init presets: fp32 below 1B parameters, bf16 above;
  Qwen2.5 checkpoints: bf16); QLoRA keeps the decoder's linear layers in 4/8 bits and peft's
  `prepare_model_for_kbit_training` upcasts everything else (embeddings, lm_head, norms) to fp32;
- under bf16 autocast, LoRA-family runs hold the decoder's frozen fp32 linear weights in bf16
  (`methods.frozen_linears_to_bf16`; embeddings and norms keep their dtype);
- a run that computes in fp32 holds a 16-bit checkpoint in fp32 (`methods.upcast_for_fp32_compute`), except the
  frozen weights under the fused LoRA layers, which stay 16-bit (`as_trained`);
- adapters (LoRA, DoRA...) are fp32; gradients and AdamW states have the dtype of the parameter they belong to;
- compute runs under bf16 autocast where `hardware.use_bf16` says so; autocast then keeps a bf16 copy of every linear
  weight of fp32 models for the backward pass;
- the loss projects only label positions onto the vocabulary, FUSED_CHUNK rows at a time, with the gradient
  computed in the same pass (`training/loss.py`): one `[chunk, V]` fp32 buffer, never `[B, T, V]`;
- saved activations per decoder layer and token were measured with `torch.autograd.graph.saved_tensors_hooks`
  on Qwen2 layers of several shapes (HF transformers 5, SDPA attention) and are exact linear functions of the hidden
  and intermediate sizes; see `layer_activation_bytes`;
- on CPU the peak resident memory also holds the Python/torch/tokenizer baseline and what glibc's allocator keeps
  after freeing activations; both were calibrated against real runs on a 2-core machine
  (bench/ESTIMATE_ACCURACY.md has the measured-vs-predicted table).

Everything is in bytes. `estimate_memory(plan)` gives the peak and its breakdown, `flops_per_token(plan)` the
compute a trained token costs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from lapidar.methods import Method, get_method
from lapidar.training.loss import FUSED_CHUNK

__all__ = [
    "ATTENTION",
    "MLP",
    "GiB",
    "MemoryEstimate",
    "ModelShape",
    "Plan",
    "activation_bytes",
    "as_trained",
    "disk_bytes",
    "estimate_memory",
    "flops_per_token",
    "layer_activation_bytes",
    "logits_bytes",
    "lora_params",
    "trainable_params",
    "weight_bytes",
]

GiB = 2**30
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")

# Resident memory of a CPU training process before the model: Python, torch, transformers, peft, the Qwen2.5
# tokenizer, the loop's bookkeeping (measured: 0.53-0.60 GiB on Linux, torch 2.13).
CPU_BASELINE = 600 * 2**20
# On GPU: the CUDA context and kernels outside PyTorch's allocator, plus allocator slack.
GPU_CONTEXT = int(0.75 * GiB)
GPU_SLACK = 0.05
# No term for glibc's heap keeping freed activation temporaries: lapidar fixes the mmap threshold before training on
# CPU (hardware.return_freed_blocks). With glibc's default dynamic threshold the resident set grew by about 1.15x
# the activations of a step (0.5B LoRA, batch 4 x 512: 13.5 GiB instead of 9.8 GiB).
BYTES_PER_DATA_TOKEN = 120  # tokenised rows held as Python lists (input ids + labels) plus the examples' text


@dataclass(frozen=True)
class ModelShape:
    """The architecture numbers that decide memory and compute (a Qwen2 decoder)."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @property
    def kv_dim(self) -> int:
        """Width of the k and v projections."""
        return self.hidden // self.heads * self.kv_heads

    def module_dims(self, module: str) -> tuple[int, int]:
        """(in_features, out_features) of one linear module of a decoder layer."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }[module]

    @property
    def layer_linear_params(self) -> int:
        """Weights of the seven linear modules of one decoder layer."""
        return sum(a * b for a, b in (self.module_dims(m) for m in ATTENTION + MLP))

    @property
    def layer_params(self) -> int:
        """All parameters of one decoder layer (linear weights, q/k/v biases, two norms)."""
        return self.layer_linear_params + self.hidden + 2 * self.kv_dim + 2 * self.hidden

    @property
    def embedding_params(self) -> int:
        """Parameters of the token embedding (and of the lm_head, which has the same shape)."""
        return self.vocab * self.hidden

    @property
    def n_params(self) -> int:
        """Parameter count, tied embeddings counted once (as `ModelPreset.n_params`)."""
        return self.layers * self.layer_params + self.embedding_params * (1 if self.tied else 2) + self.hidden

    @classmethod
    def from_preset(cls, preset) -> ModelShape:
        """From a `lapidar.models.presets.ModelPreset`."""
        return cls(
            preset.name,
            preset.hidden_size,
            preset.intermediate_size,
            preset.num_hidden_layers,
            preset.num_attention_heads,
            preset.num_key_value_heads,
            preset.vocab_size,
            preset.tie_word_embeddings,
        )

    @classmethod
    def from_config(cls, name: str, config: dict) -> ModelShape:
        """From a Hugging Face `config.json` of a Qwen2-style model."""
        return cls(
            name,
            config["hidden_size"],
            config["intermediate_size"],
            config["num_hidden_layers"],
            config["num_attention_heads"],
            config.get("num_key_value_heads", config["num_attention_heads"]),
            config["vocab_size"],
            bool(config.get("tie_word_embeddings", False)),
        )


@dataclass(frozen=True)
class Plan:
    """One training setup, as far as memory and compute are concerned."""

    shape: ModelShape
    method: str = "lora"
    batch_size: int = 4
    seq_len: int = 1024  # padded width of the widest micro-batch
    label_tokens: int | None = None  # label positions in the fullest micro-batch (None: every position)
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    checkpoint_layers: int = 0  # the first N decoder layers recompute their activations (gradient_checkpointing: all)
    weight_bytes: int = 2  # bytes per base weight as saved: 4 (fp32) or 2 (bf16)
    bf16: bool = True  # 16-bit autocast: bf16, or fp16 where `fp16` (else compute in the weights' dtype)
    fp16: bool = False  # the 16-bit autocast is fp16 with loss scaling (GPUs without bf16); same bytes as bf16
    quant: str | None = None  # "4bit" / "8bit" base (QLoRA); implied by the qlora methods
    lora_r: int = 16
    lora_dropout: float = 0.05
    targets: tuple[str, ...] = ATTENTION + MLP
    freeze_layers: int = 2
    freeze_extra: tuple[str, ...] = ()
    optimizer: str = "adamw"
    galore_rank: int = 128
    gpus: int = 1
    zero: int = 0  # DeepSpeed-style ZeRO stage over `gpus`: 0 (plain data parallel), 2 or 3
    offload: bool = False  # zero3-offload: optimiser states (and the step) in CPU RAM, not on the GPU
    fp32_masters: bool = False  # DeepSpeed ZeRO: an fp32 copy of the trained weights, sharded like the states
    device: str = "cuda"  # "cuda" or "cpu"
    # Set by `as_trained`: a 16-bit checkpoint held in fp32 for fp32 compute, the fused LoRA layers' frozen base
    # weights still in 2 bytes.
    bases16: bool = False
    data_tokens: int = 0  # tokenised training data held in memory (CPU baseline grows with it)

    @property
    def tokens(self) -> int:
        """Positions in the widest micro-batch."""
        return self.batch_size * self.seq_len

    @property
    def labels(self) -> int:
        """Label positions in the fullest micro-batch."""
        return self.tokens if self.label_tokens is None else min(self.label_tokens, self.tokens)

    @property
    def method_entry(self) -> Method:
        """The method's registry entry: what trains, how the base is held, which optimiser it implies."""
        return get_method(self.method)

    @property
    def adapter(self) -> bool:
        """Whether the method trains an adapter on a frozen base."""
        return self.method_entry.adapter

    @property
    def partial(self) -> bool:
        """Whether only some of the base's layers train (freeze)."""
        return self.method_entry.partial

    @property
    def quant_bits(self) -> str | None:
        """The base quantisation in effect: the flag, or the one the method implies."""
        return self.quant or self.method_entry.quant

    @property
    def optimizer_in_effect(self) -> str:
        """The method's own optimiser (galore, q-galore) if it implies one, else `optimizer`."""
        return self.method_entry.optimizer or self.optimizer

    @property
    def checkpointed_layers(self) -> int:
        """How many decoder layers recompute their activations in the backward pass."""
        return self.shape.layers if self.gradient_checkpointing else min(self.checkpoint_layers, self.shape.layers)

    @property
    def bf16_frozen_linears(self) -> bool:
        """Whether training holds the decoder's frozen fp32 linear weights in bf16 (methods.frozen_linears_to_bf16):
        under bf16 autocast, for the adapter methods whose registry entry allows it."""
        return self.bf16 and self.weight_bytes == 4 and self.quant_bits is None and self.method_entry.bf16_frozen_base

    def with_(self, **changes) -> Plan:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass
class MemoryEstimate:
    """Peak memory of one training process (one GPU, or the CPU process) and where it goes, in bytes."""

    weights: float
    trainable: float  # adapter weights (a full fine-tune trains the weights themselves: counted there)
    gradients: float
    optimizer: float
    activations: float  # saved for the backward pass, plus the backward pass's own buffers at the peak
    logits: float  # the fused loss's [chunk, V] buffer (and the bf16 head copy under autocast)
    overhead: float  # process baseline / CUDA context, allocator slack, one-off peaks of loading
    trainable_params: int
    peak_phase: str  # where the peak falls: "forward (loss)", "backward", "optimizer step"
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        """The peak: the sum of the components."""
        return (
            self.weights
            + self.trainable
            + self.gradients
            + self.optimizer
            + self.activations
            + self.logits
            + self.overhead
        )

    def breakdown(self) -> dict[str, float]:
        """Component name -> bytes, in display order."""
        return {
            "weights": self.weights,
            "trainable parameters": self.trainable,
            "gradients": self.gradients,
            "optimizer states": self.optimizer,
            "activations": self.activations,
            "logits / loss": self.logits,
            "framework overhead": self.overhead,
        }


# ---------------------------------------------------------------- parameters


def lora_params(shape: ModelShape, r: int, targets: tuple[str, ...], dora: bool = False) -> int:
    """LoRA parameters over all layers: r x (in + out) per targeted module (+ the magnitude vector for DoRA)."""
    per_layer = 0
    for m in targets:
        a, b = shape.module_dims(m)
        per_layer += r * (a + b) + (b if dora else 0)
    return shape.layers * per_layer


def _freeze_params(plan: Plan) -> int:
    s = plan.shape
    n = min(plan.freeze_layers, s.layers) * s.layer_params
    for extra in plan.freeze_extra:
        n += {"norm": s.hidden, "lm_head": s.embedding_params, "embed_tokens": s.embedding_params}.get(extra, 0)
    if s.tied and {"lm_head", "embed_tokens"} <= set(plan.freeze_extra):
        n -= s.embedding_params
    return n


def trainable_params(plan: Plan) -> int:
    """How many parameters train."""
    if plan.adapter:
        return lora_params(plan.shape, plan.lora_r, plan.targets, dora=plan.method_entry.dora)
    if plan.partial:
        return _freeze_params(plan)
    return plan.shape.n_params


def _head_trains(plan: Plan) -> bool:
    if not plan.adapter and not plan.partial:
        return True
    if plan.partial:
        return bool({"lm_head"} & set(plan.freeze_extra)) or (plan.shape.tied and "embed_tokens" in plan.freeze_extra)
    return False


def as_trained(plan: Plan) -> Plan:
    """`plan` with the weights in the dtype training holds them in: a 16-bit checkpoint (weight_bytes 2) in a run
    that computes in fp32 (no autocast, no quantised base) is upcast to fp32, the frozen weights under the fused
    LoRA layers excepted (`methods.upcast_for_fp32_compute`). Every other plan is returned as it is."""
    if plan.bf16 or plan.weight_bytes != 2 or plan.quant_bits is not None:
        return plan
    return plan.with_(weight_bytes=4, bases16=True)


def weight_bytes(plan: Plan) -> float:
    """Bytes of the base model's weights as lapidar holds them during training (one full copy)."""
    s = plan.shape
    if plan.bases16 and plan.adapter and plan.method_entry.fused_lora:
        held16 = s.layers * sum(a * b for a, b in (s.module_dims(m) for m in plan.targets))
        return s.n_params * 4 - held16 * 2
    if plan.bf16_frozen_linears:
        return s.n_params * 4 - s.layers * s.layer_linear_params * 2
    if plan.quant_bits is None:
        return s.n_params * plan.weight_bytes
    linear = s.layers * s.layer_linear_params
    # NF4 + double quantisation: 4 bits + ~0.13 bits of block scales; int8: 1 byte + an fp32 scale per row.
    per = 0.516 if plan.quant_bits == "4bit" else 1.0 + 4 / s.hidden
    # peft's prepare_model_for_kbit_training upcasts every weight it does not quantise to fp32.
    return linear * per + (s.n_params - linear) * 4


def _optimizer_bytes(plan: Plan, n_train: int, param_bytes: int) -> float:
    """Optimiser state. torch's AdamW keeps two states in the parameter's dtype."""
    optimizer = plan.optimizer_in_effect
    if optimizer in ("galore", "q-galore"):
        # GaLore: Adam states of the projected [max(m, n), rank] gradient plus the [min(m, n), rank] projector for
        # the decoder's 2-D weights; plain AdamW states for everything else (embeddings, norms, biases).
        s = plan.shape
        projected = 0
        for m in ATTENTION + MLP:
            a, b = s.module_dims(m)
            r = min(plan.galore_rank, a, b)
            projected += 2 * max(a, b) * r + min(a, b) * r
        rest = s.n_params - s.layers * s.layer_linear_params
        return s.layers * projected * param_bytes + 2 * rest * (1 if optimizer == "q-galore" else param_bytes)
    per_param = {
        "adamw": 2 * param_bytes,
        "adamw-8bit": 2 + 8 / 2048,  # two int8 states + fp32 block scales
        "lion": param_bytes,
        "adafactor": 0.02 * param_bytes,  # factored second moment: one row and one column per matrix
    }.get(plan.optimizer, 2 * param_bytes)
    return n_train * per_param


# Tokenizer and config files saved beside every set of weights (tokenizer.json alone is 11 MB for Qwen2.5).
SAVED_FILES_BYTES = 20 * 2**20


def disk_bytes(plan: Plan, keep: int) -> float:
    """Bytes a run directory grows to: the saved weights (the adapter in fp32, or the whole model in the dtype
    training holds it) and up to `keep` + 1 checkpoints at once (a new one is complete before the oldest goes), each
    the weights plus the optimiser states (and DeepSpeed's fp32 master copies)."""
    plan = as_trained(plan)
    n_train = trainable_params(plan)
    if plan.adapter:
        weights, param_bytes = n_train * 4.0, 4
    else:
        weights, param_bytes = plan.shape.n_params * float(plan.weight_bytes), plan.weight_bytes
    states = _optimizer_bytes(plan, n_train, param_bytes) + (n_train * 4.0 if plan.fp32_masters and plan.zero else 0)
    saved = weights + SAVED_FILES_BYTES
    return saved + (keep + 1) * (saved + states)


# ---------------------------------------------------------------- activations


def layer_activation_bytes(plan: Plan, trainable_layer: bool) -> float:
    """Bytes saved for the backward pass per token by one decoder layer on the gradient path.

    Measured with saved-tensor hooks (HF Qwen2 layer, SDPA) for fp32 weights, with and without bf16 autocast:
    a layer whose weights train keeps 40h + 16i bytes per token in fp32 (34h + 8i under autocast); a frozen layer
    that only passes gradients down keeps 24h + 12i (16h + 6i). LoRA adds what its modules keep: with dropout
    each targeted module saves its dropped-out input (not when fused: see below); without dropout the shared inputs.
    """
    h, i = plan.shape.hidden, plan.shape.intermediate
    # Under autocast with fp32 weights (or a quantised base, whose other weights peft upcasts to fp32) the saved
    # tensors are a mix of bf16 casts and fp32 norms; with bf16 weights everything is bf16.
    autocast_fp32_weights = plan.bf16 and (plan.weight_bytes == 4 or plan.quant_bits is not None)
    targets = set(plan.targets) if plan.adapter else set()
    fused = plan.method_entry.fused_lora
    if autocast_fp32_weights:
        base = 34 * h + 8 * i if trainable_layer else 16 * h + 6 * i
        extra_attn0, extra_gu0, extra_down0 = (1.6 if fused else 9.6) * h, 4.8 * h, 2.8 * i
        drop_attn, drop_gu, drop_down = 4.0 * h, 4.0 * h, 4.0 * i
    else:
        base = 40 * h + 16 * i if trainable_layer else 24 * h + 12 * i
        extra_attn0, extra_gu0, extra_down0 = 4 * h, 4 * h, 4 * i
        drop_attn, drop_gu, drop_down = 7 * h, 6 * h, 4 * i
    if fused:
        # methods.fused_lora keeps one bf16 copy per distinct input (q/k/v and gate/up share theirs) and makes the
        # dropped copies and masks again in the backward pass: dropout adds nothing (saved-tensor hooks, all-linear:
        # 8h per token less than peft's layers under autocast without dropout, 32h + 4i less with it).
        drop_attn = drop_gu = drop_down = 0.0
    extra = 0.0
    if targets:
        extra += extra_attn0 if targets & set(ATTENTION) else 0.0
        extra += extra_gu0 if targets & {"gate_proj", "up_proj"} else 0.0
        extra += extra_down0 if "down_proj" in targets else 0.0
        if plan.lora_dropout > 0:
            extra += drop_attn * len(targets & set(ATTENTION))
            extra += drop_gu * len(targets & {"gate_proj", "up_proj"})
            extra += drop_down * ("down_proj" in targets)
        extra += 4 * plan.lora_r * len(targets)
    if plan.quant_bits is not None:
        # bitsandbytes' matmul keeps its own copies of the linear inputs for the backward pass.
        extra += 8 * h + 4 * i
    if plan.weight_bytes == 2 and plan.quant_bits is None:
        # bf16 weights: the residual stream and saved tensors are bf16; RMSNorm still keeps fp32 copies.
        return (base + extra) / 2 + 8 * h
    return base + extra


def _grad_path_layers(plan: Plan) -> tuple[int, int]:
    """(layers on the gradient path whose weights train, layers that only pass gradients down)."""
    n = plan.shape.layers
    if plan.partial:
        k = min(plan.freeze_layers, n)
        below = n - k if "embed_tokens" in plan.freeze_extra else 0
        return k, below
    if plan.adapter:
        return 0, n
    return n, 0


def activation_bytes(plan: Plan) -> tuple[float, float]:
    """(bytes saved for the backward pass by the widest micro-batch, extra buffers at the start of backward)."""
    s, tokens = plan.shape, plan.tokens
    act = 2 if (plan.weight_bytes == 2 and plan.quant_bits is None) or plan.bf16 else 4
    trainable, passing = _grad_path_layers(plan)
    # Bottom up, as in the model: the layers that only pass gradients down sit below the ones whose weights train.
    per_layer = [layer_activation_bytes(plan, False)] * passing + [layer_activation_bytes(plan, True)] * trainable
    resid = 2 if plan.weight_bytes == 2 and plan.quant_bits is None else 4
    k = min(plan.checkpointed_layers, len(per_layer))
    if k:
        # A checkpointed layer keeps only its input; the backward pass recomputes one of them at a time, once it
        # has passed (and freed) every layer above the checkpointed ones.
        saved = k * tokens * s.hidden * resid + tokens * max(sum(per_layer[k:]), max(per_layer[:k]))
    else:
        saved = tokens * sum(per_layer)
    if plan.bf16 and plan.weight_bytes == 4 and plan.quant_bits is None and not plan.bf16_frozen_linears:
        # Autocast's bf16 copy of each linear weight is saved for the backward pass of every layer on the path.
        saved += len(per_layer) * s.layer_linear_params * 2
    # Outside the layers: final norm, the gathered label rows and their gradient, the 4-D attention mask.
    saved += tokens * s.hidden * resid * 2 + plan.labels * s.hidden * resid * 2
    saved += plan.batch_size * plan.seq_len**2 * act
    # The top layer's backward makes gradient buffers for its MLP and attention inputs.
    backward = tokens * (3 * s.intermediate + 4 * s.hidden) * act if per_layer else 0.0
    return saved, backward


def logits_bytes(plan: Plan) -> float:
    """The fused loss's live buffers: one [chunk, V] fp32 block of logits (softmax, then its gradient, in place),
    its bf16 twin when the projection runs in bf16, and a bf16 copy of an fp32 head weight under autocast."""
    s = plan.shape
    chunk = min(FUSED_CHUNK, plan.labels)
    compute_bf16 = plan.bf16 or (plan.weight_bytes == 2 and plan.quant_bits is None)
    head_bytes = 4 if plan.quant_bits is not None else plan.weight_bytes
    out = chunk * s.vocab * (6 if compute_bf16 else 4)
    if compute_bf16 and head_bytes == 4:
        out += s.embedding_params * 2
    return out


# ---------------------------------------------------------------- the estimate


def estimate_memory(plan: Plan) -> MemoryEstimate:
    """Peak memory of one process of `plan`, and its breakdown at the peak.

    The peak is the largest of three moments of a training step, on top of what lives throughout (weights,
    adapters, optimiser states, the process baseline):
    the end of the forward pass (saved activations + the loss's logits buffer), the start of the backward pass
    (saved activations + the first gradient buffers), and the optimiser step (gradients + the optimiser's
    temporaries). Gradients from earlier micro-batches are alive during the next ones (grad_accum > 1); on CPU the
    heap pages of freed gradients stay resident, so they count in every moment there.
    """
    plan = as_trained(plan)
    s = plan.shape
    notes: list[str] = []
    cpu = plan.device == "cpu"
    n_gpus = max(plan.gpus, 1)
    zero = plan.zero if n_gpus > 1 else 0
    weights = weight_bytes(plan)
    n_train = trainable_params(plan)
    if plan.adapter:
        trainable, param_bytes = n_train * 4.0, 4
    else:
        trainable, param_bytes = 0.0, (4 if plan.quant_bits else plan.weight_bytes)
    grads = float(n_train * param_bytes)
    states = float(_optimizer_bytes(plan, n_train, param_bytes))
    # Optimiser temporaries: torch's AdamW runs one tensor at a time on CPU (sqrt and division of the largest
    # state: 2 x its size); on GPU the foreach kernels copy every state at once (1 x the trainable bytes).
    if plan.adapter:
        largest = max(s.module_dims(m)[0] * plan.lora_r for m in plan.targets) if plan.targets else 0
    elif plan.partial and not {"lm_head", "embed_tokens"} & set(plan.freeze_extra):
        largest = s.hidden * s.intermediate
    else:
        largest = s.embedding_params
    step_temp = 2.0 * largest * param_bytes if cpu else grads
    if plan.fp32_masters and zero:
        # DeepSpeed's ZeRO optimiser steps fp32 partitions of the trained weights (a copy even of fp32 weights) and
        # writes them back: 4 bytes per trained parameter more, the "K = 12" of the ZeRO paper (arXiv:1910.02054).
        states += n_train * 4.0
        notes.append("DeepSpeed: an fp32 master copy of the trained weights, sharded with the optimiser states")
    if zero >= 2:
        grads, states, step_temp = grads / n_gpus, states / n_gpus, step_temp / n_gpus
    if zero >= 3:
        weights = weights / n_gpus + 2 * s.layer_params * (plan.weight_bytes if plan.quant_bits is None else 1)
        notes.append("ZeRO-3: weights sharded over the GPUs, two layers gathered at a time")
    if plan.offload and not cpu:
        # DeepSpeed's offload_optimizer: fp32 states and the Adam step live in host RAM (arXiv:2101.06840).
        notes.append(f"offload: {states / 2**30:.2f} GiB of optimiser states per GPU held in CPU RAM instead")
        states, step_temp = 0.0, 0.0
    saved, backward = activation_bytes(plan)
    logits = logits_bytes(plan)
    # A trainable lm_head gets its fp32 gradient during the forward pass (the fused loss computes it there).
    head_grad = s.embedding_params * 4.0 if _head_trains(plan) else 0.0
    resident_grads = grads if (plan.grad_accum > 1 or (cpu and not plan.adapter)) else 0.0
    phases = {
        "forward (loss)": (resident_grads or head_grad, saved, logits, 0.0),
        "backward": (max(resident_grads, head_grad), saved + backward, 0.0, 0.0),
        "optimizer step": (grads, 0.0, 0.0, step_temp),
    }
    phase = max(phases, key=lambda k: sum(phases[k]))
    g, a, lg, temp = phases[phase]
    if cpu:
        overhead = CPU_BASELINE + plan.data_tokens * BYTES_PER_DATA_TOKEN + temp
        if plan.quant_bits is not None:
            # Quantising reads every weight of the mmapped checkpoint (those pages stay resident); bitsandbytes' CPU
            # path keeps about half a byte more per quantised weight (measured residual, 0.5B shape).
            linear = s.layers * s.layer_linear_params
            overhead += linear * plan.weight_bytes + linear * 0.5
            notes.append("CPU: the checkpoint pages read while quantising stay in resident memory")
    else:
        overhead = GPU_CONTEXT + GPU_SLACK * (weights + trainable + states + g + a + lg) + temp
    return MemoryEstimate(
        weights=weights,
        trainable=trainable,
        gradients=g,
        optimizer=states,
        activations=a,
        logits=lg,
        overhead=overhead,
        trainable_params=n_train,
        peak_phase=phase,
        notes=notes,
    )


# ---------------------------------------------------------------- compute


def flops_per_token(plan: Plan, mean_len: float | None = None, label_fraction: float = 1.0) -> float:
    """Training FLOPs per token fed (forward + backward, matmuls and causal attention) of lapidar's path.

    Per decoder layer: forward 2P + A (P: linear weights, A = 2 T h: QK^T and AV over T/2 keys on average); the
    backward pass computes input gradients (2P + 2A) on every layer above the lowest one that trains and weight
    gradients (2P) only where weights train; checkpointing adds a second forward. The lm_head runs only on label
    positions (2VH each for the logits, the hidden-state gradient, and the weight gradient when it trains).
    """
    s = plan.shape
    t = mean_len or plan.seq_len
    p, a = 2 * s.layer_linear_params, 2 * t * s.hidden
    trainable, passing = _grad_path_layers(plan)
    on_path = trainable + passing
    total = s.layers * (p + a) + on_path * (p + 2 * a) + trainable * p
    total += min(plan.checkpointed_layers, on_path) * (p + a)  # checkpointed layers run their forward twice
    if plan.adapter:
        total += 6 * lora_params(s, plan.lora_r, plan.targets)  # forward, input and weight gradients
    head = 2 * s.embedding_params * label_fraction
    return total + head * (2 + (1 if _head_trains(plan) else 0))
