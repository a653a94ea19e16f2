"""A fused LoRA linear layer: the frozen projection, the dropout and the low-rank update in one autograd node.

peft's `lora.Linear` computes `base(x) + B(A(dropout(x))) * scaling` as separate ops. Under bf16 autocast on CPU
that costs, per target module and step: a cast of `x` to bf16 for the base matmul, an fp32 dropout of `x` (a
Bernoulli draw per element, the slowest op of the whole step: 12 ms for a 2k x 896 input), a second cast of the
dropped `x`, a `[tokens, out]` multiply by `scaling` and a `[tokens, out]` add; the backward pass pays for the same
again, plus two fp32 input gradients that are summed. On the Qwen2.5-0.5B shape those elementwise ops took about
40% of a LoRA step (torch.profiler, 2 threads, AVX512-BF16 CPU).

`lora_linear` computes the same function with one cast of `x`, a dropout mask drawn 16 bits per element from 64-bit
random words (4x fewer generator calls), the mask applied in the compute dtype, `scaling / (1 - p)` folded into the
rank-r activation, and the update accumulated into the base output by `addmm_`. It saves the dropped input (compute
dtype) and the rank-r activation; the mask is drawn again from its seed in the backward pass rather than kept
(1 byte per input element per module: 0.4 GB on the 0.5B bench batch, for about 2% of the step time). The bf16 copy
of an input is made once and shared by the projections that read it (q/k/v, gate/up), and kept for the backward
pass in place of each module's dropped copy, which is made again from it. The drop probability is rounded to a multiple of 1/65536
(0.05 -> 0.0500030518), and the rescaling uses that rounded value, so the layer stays unbiased.

Used for the vanilla LoRA family (lora, lora-plus, rslora, pissa, olora) through peft's custom-module hook, so the
adapter's parameters, names, saving, loading and merging are peft's own; any other case (DoRA, merged or disabled
adapters, several active adapters, a trainable base, mixed dtypes without autocast) runs peft's forward unchanged.
Equivalence with peft's layer (outputs and gradients, with and without dropout, fp32 and bf16 autocast):
tests/unit/test_fused_lora.py.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, cast

import torch
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn

__all__ = ["FusedLoraLinear", "draw_seed", "drop_rate", "keep_mask", "lora_linear"]

_P_STEPS = 1 << 16  # the drop probability's resolution (16-bit random lanes)


def keep_mask(
    shape: torch.Size | tuple[int, ...], p: float, device: torch.device, seed: int
) -> tuple[torch.Tensor, float]:
    """A bool mask of `shape` that keeps each element with probability 1 - p' (p' = p rounded to 1/65536), and p'.

    Draws 64-bit words from a generator seeded with `seed` (the same seed, the same mask: the backward pass
    regenerates it instead of keeping it) and compares their four 16-bit lanes with a threshold.
    """
    n = 1
    for d in shape:
        n *= d
    threshold = round(p * _P_STEPS)  # = drop_rate(p) * _P_STEPS
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(2**63), 2**63 - 1, generator=generator)
    lanes = words.view(torch.int16)[:n].view(shape)
    return lanes >= threshold - (1 << 15), drop_rate(p)


def drop_rate(p: float) -> float:
    """The rate `keep_mask` really drops at: p rounded to a multiple of 1/65536."""
    return round(p * _P_STEPS) / _P_STEPS


def draw_seed() -> int:
    """A mask seed from torch's global generator: `torch.manual_seed` fixes it, and activation checkpointing's RNG
    replay draws the same one when it recomputes a layer."""
    return int(torch.randint(0, 2**62, (), dtype=torch.int64).item())


class _LoraLinear(torch.autograd.Function):
    """y = xc W^T + b + ((xc * m) A^T) B^T * s, with W and b frozen and every tensor in xc's dtype; m is the dropout
    mask of `seed` (none when seed is None). `xc` is `x` in the compute dtype, detached (possibly shared by the
    projections that read the same input); `x` only carries the gradient, in its own dtype. W may be held in a
    narrower dtype (a bf16 checkpoint computing in fp32): it is cast in the forward pass and again in the backward
    pass, never kept in the compute dtype between them."""

    @staticmethod
    def forward(ctx, x, xc, weight, bias, lora_a, lora_b, scale: float, p: float, seed: int | None):
        # x, xc [..., in], weight [out, in], bias [out] | None, lora_a [r, in], lora_b [out, r]
        x2 = xc.reshape(-1, xc.shape[-1])
        y = torch.nn.functional.linear(x2, weight.to(xc.dtype), bias)  # [N, out]
        dropped = x2 if seed is None else x2 * keep_mask(x2.shape, p, x2.device, seed)[0]
        h = (dropped @ lora_a.t()) * scale  # [N, r]: the scaling folded into the rank-r activation
        y.addmm_(h, lora_b.t())
        # Only the shared input is kept: the dropped copy is made again from it and the mask's seed.
        ctx.save_for_backward(xc, weight, lora_a, lora_b, h)
        ctx.scale, ctx.p, ctx.seed, ctx.x_dtype = scale, p, seed, x.dtype
        return y.view(*xc.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        xc, weight, lora_a, lora_b, h = ctx.saved_tensors
        x2 = xc.reshape(-1, xc.shape[-1])
        mask = None if ctx.seed is None else keep_mask(x2.shape, ctx.p, x2.device, ctx.seed)[0]
        g = grad.reshape(-1, grad.shape[-1])  # [N, out]
        grad_h = (g @ lora_b) * ctx.scale  # [N, r]
        grad_a = grad_h.t() @ (x2 if mask is None else x2 * mask)  # [r, in]
        grad_b = g.t() @ h  # [out, r]
        grad_x = None
        if ctx.needs_input_grad[0]:
            through_lora = grad_h @ lora_a  # [N, in]
            if mask is not None:
                through_lora.mul_(mask)
            grad_x = torch.addmm(through_lora, g, weight.to(g.dtype)).view(*grad.shape[:-1], weight.shape[1])
            # Returned in x's dtype, so that the gradients of projections sharing an input add up in fp32, as
            # they do under autocast.
            grad_x = grad_x.to(ctx.x_dtype)
        return grad_x, None, None, None, grad_a, grad_b, None, None, None


class _SharedCast(threading.local):
    """The compute-dtype copy of the last input cast, reused while the same unchanged tensor comes again: q, k and
    v (and gate and up) read the same normed hidden states, and one bf16 copy serves all of them, forward and
    backward. Both are held weakly: the copy lives as long as a backward pass keeps it (without gradients, the next
    projection casts again), never between steps. One entry per thread (a web worker may train beside another)."""

    entry: tuple[tuple[int, torch.dtype], weakref.ref, weakref.ref] | None = None

    def __call__(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if x.dtype == dtype:
            return x.detach()
        key = (x._version, dtype)  # the same tensor (the weak reference below), unchanged, in the same dtype
        if self.entry is not None and self.entry[0] == key and self.entry[1]() is x:
            copy = self.entry[2]()
            if copy is not None:
                return copy
        with torch.no_grad():
            copy = x.to(dtype)
        self.entry = (key, weakref.ref(x), weakref.ref(copy))
        return copy


_shared_cast = _SharedCast()


def lora_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scaling: float,
    p: float,
    seed: int | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """`linear(x, weight, bias) + linear(linear(dropout(x, p), lora_a), lora_b) * scaling` in one autograd node,
    computed in `dtype` (default: `weight`'s; x is cast to it once, and the copy shared with the next call on the
    same x); the gradient of x comes back in x's dtype.

    `bias`, `lora_a` and `lora_b` must be in `dtype` (the caller casts under autocast); `weight` may be held in
    another dtype (cast for each matmul, never kept cast); `weight` and `bias` must not require grad. `p > 0` applies the dropout mask `keep_mask(x.shape, p, x.device, seed)` (a fresh
    seed from `draw_seed` unless given); `p == 0` means no dropout (evaluation).
    """
    xc = _shared_cast(x, dtype or weight.dtype)
    if p <= 0:
        return _LoraLinear.apply(x, xc, weight, bias, lora_a, lora_b, scaling, 0.0, None)
    seed = draw_seed() if seed is None else seed
    return _LoraLinear.apply(x, xc, weight, bias, lora_a, lora_b, scaling / (1 - drop_rate(p)), p, seed)


def _computes_in(held: torch.dtype, compute: torch.dtype) -> bool:
    """Whether a frozen weight held in `held` computes in `compute` without autocast: the same dtype, or a 16-bit
    weight upcast to fp32 (exact)."""
    return held == compute or (compute == torch.float32 and held in (torch.bfloat16, torch.float16))


def _held_narrower(base: nn.Module, x: torch.Tensor) -> bool:
    """Whether `base` is a plain linear layer whose weight is held in 16 bits while x arrives in fp32 outside
    autocast (the layout `methods.upcast_for_fp32_compute` makes)."""
    if type(base) is not nn.Linear or torch.is_autocast_enabled(x.device.type):
        return False
    weight = cast(nn.Linear, base).weight
    return weight.dtype != x.dtype and _computes_in(weight.dtype, x.dtype)


class FusedLoraLinear(PeftLoraLinear):
    """peft's LoRA linear layer, with `lora_linear` as the forward pass wherever it computes the same function."""

    def _fusable(self, x: torch.Tensor, args: tuple, kwargs: dict[str, Any]) -> str | None:
        """The single adapter to fuse, or None where peft's own forward must run."""
        if args or kwargs or self.disable_adapters or self.merged or len(self.active_adapters) != 1:
            return None
        name = self.active_adapters[0]
        base = self.base_layer
        if name not in self.lora_A or name in self.lora_variant or type(base) is not nn.Linear:
            return None
        if base.weight.requires_grad or (base.bias is not None and base.bias.requires_grad):
            return None
        a, b, dropout = self.lora_A[name], self.lora_B[name], self.lora_dropout[name]
        if a.bias is not None or b.bias is not None or not isinstance(dropout, nn.Dropout | nn.Identity):
            return None
        if not torch.is_autocast_enabled(x.device.type) and not (
            x.dtype == a.weight.dtype and _computes_in(base.weight.dtype, x.dtype)
        ):
            return None
        return name

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        name = self._fusable(x, args, kwargs)
        if name is None:
            if self.disable_adapters and not args and not kwargs and _held_narrower(self.base_layer, x):
                # The base alone (a preference run's reference pass): its 16-bit weight computes in x's dtype.
                plain = cast(nn.Linear, self.base_layer)
                bias = None if plain.bias is None else plain.bias.to(x.dtype)
                return torch.nn.functional.linear(x, plain.weight.to(x.dtype), bias)
            return super().forward(x, *args, **kwargs)
        device = x.device.type
        base = cast(nn.Linear, self.base_layer)
        a, b = cast(nn.Linear, self.lora_A[name]), cast(nn.Linear, self.lora_B[name])
        dropout = self.lora_dropout[name]
        p = dropout.p if isinstance(dropout, nn.Dropout) and dropout.training else 0.0
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        with torch.autocast(device, enabled=False):
            # The casts are autograd ops outside the fused node: gradients reach fp32 inputs and adapters in fp32,
            # as under autocast.
            bias = None if base.bias is None else base.bias.to(dtype)
            # A frozen weight is cast inside the fused node (one projection at a time, never kept cast): a no-op where
            # it is held in the compute dtype, the upcast of a 16-bit checkpoint's weight where the run computes in
            # fp32 (`methods.upcast_for_fp32_compute`).
            return lora_linear(
                x, base.weight, bias, a.weight.to(dtype), b.weight.to(dtype), self.scaling[name], p, dtype=dtype
            )
