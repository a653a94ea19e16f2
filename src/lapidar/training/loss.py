"""Next-token cross-entropy computed only where it counts.

A causal LM normally projects every position onto the 151,936-token vocabulary and then throws away the masked
positions. Here the hidden states are first reduced to the positions that carry a label, and the vocabulary
projection runs in chunks of those: the full `[B, T, V]` logits tensor is never built.

In training, the projection and the cross-entropy are fused (`linear_cross_entropy`): each chunk's gradients with
respect to the hidden states (and the head weight, when it trains) are computed right after its loss, and the
chunk's logits are freed before the next one. Autograd would otherwise keep every chunk's `[n, V]` log-softmax
for the backward pass and build two more `[N, V]` tensors in it — about 4 x N x V x 4 bytes at the peak, which
dominates the memory of a LoRA run. The same idea as Liger's fused linear cross-entropy and Apple's Cut
Cross-Entropy (Wijmans et al. 2024, arXiv:2411.09009), in plain PyTorch so that it runs on CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from lapidar.data.tokenize import IGNORE
from lapidar.training.distributed import unwrap

__all__ = ["CHUNK", "FUSED_CHUNK", "causal_lm_loss", "label_forward", "linear_cross_entropy"]

CHUNK = 2048  # label positions per vocabulary projection without fusion: 2048 x 151936 fp32 logits = 1.2 GB
FUSED_CHUNK = 256  # label positions per fused projection: 256 x 151936 fp32 logits = 156 MB live at a time


class _LinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(h_i W^T, y_i) for h [N, H], W [V, H], y [N]; gradients are computed in the forward pass."""

    @staticmethod
    def forward(ctx, h, weight, targets, dtype, chunk, need_h, need_w):
        w = weight.to(dtype)  # [V, H]; a no-op unless autocast asks for bf16
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        for s in range(0, targets.numel(), chunk):
            hc, yc = h[s : s + chunk].to(dtype), targets[s : s + chunk]  # [c, H], [c]
            # One [c, V] float32 buffer holds the logits, then exp(logits - max), then the softmax, then its
            # gradient: no temporary of that size is made (logsumexp would make one).
            logits = (hc @ w.t()).float()  # [c, V]
            picked = logits.gather(1, yc[:, None])  # [c, 1]
            top = logits.amax(dim=-1, keepdim=True)  # [c, 1]
            probs = logits.sub_(top).exp_()
            norm = probs.sum(dim=-1, keepdim=True)  # [c, 1]
            total += (norm.log() + top - picked).sum()
            if need_h or need_w:
                # d(sum CE)/d logits = softmax - one_hot(y)
                probs.div_(norm)
                probs[torch.arange(yc.numel(), device=yc.device), yc] -= 1.0
                g = probs.to(dtype)  # [c, V]
                if grad_h is not None:
                    grad_h[s : s + chunk] = g @ w
                if grad_w is not None and g.dtype == grad_w.dtype:
                    grad_w.addmm_(g.t(), hc)
                elif grad_w is not None:
                    grad_w += (g.t() @ hc).float()
                del g
            del logits, probs
        ctx.grads = (grad_h, None if grad_w is None else grad_w.to(weight.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.grads
        ctx.grads = None
        return (
            None if grad_h is None else grad_h * grad_out.to(grad_h.dtype),
            None if grad_w is None else grad_w * grad_out.to(grad_w.dtype),
            None,
            None,
            None,
            None,
            None,
        )


def linear_cross_entropy(h: torch.Tensor, head: torch.nn.Linear, targets: torch.Tensor, chunk: int = FUSED_CHUNK):
    """Summed cross-entropy of `head(h)` against `targets` (h [N, H], targets [N]) without keeping [N, V] logits.

    Under autocast the projection runs in the autocast dtype (as `head(h)` would) and the softmax in float32.
    """
    device = h.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else head.weight.dtype
    need_h = torch.is_grad_enabled() and h.requires_grad
    need_w = torch.is_grad_enabled() and head.weight.requires_grad
    with torch.autocast(device, enabled=False):
        return _LinearCrossEntropy.apply(h, head.weight, targets, dtype, chunk, need_h, need_w)


def label_forward(model, batch: dict[str, torch.Tensor], reduce: Callable[[torch.Tensor, torch.Tensor, Any], Any]):
    """Run the model's own forward and apply `reduce(h, keep, head)` to its final hidden states, inside it.

    `batch` comes from `collate` (input_ids/attention_mask/labels [B, T]) or `collate_padding_free` (input_ids/
    labels/position_ids [1, N] and cu_seq_lens_q). `reduce` gets the final-norm output `h` [B, T, H], the label mask
    `keep` [B, T-1] (position t predicts token t+1) and the lm_head, and returns the loss or log-probs.

    Why a hook on the final norm rather than calling the decoder and the head ourselves: the call goes through the
    wrapped model's forward (peft, DDP, FSDP), so their hooks run — DDP's gradient sync, FSDP/ZeRO-3 gathering the
    sharded head weight, which is unsharded only while the forward runs — and the projection onto the vocabulary
    happens while it is. The model itself projects no position (`logits_to_keep` empty), which costs nothing.
    """
    inner = unwrap(model)  # a DDP/FSDP wrapper's module: the peft or transformers model
    base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    head = base.lm_head
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    result: list[Any] = []

    def hook(_module, _inputs, output):
        result.append(reduce(output, keep, head))

    # The model's own projection then runs on no position at all, and without autocast: under autocast it would
    # still cast the whole [V, H] head weight to bf16 (110 ms and 272 MB on the 0.5B shape, at the forward's peak).
    device = batch["input_ids"].device.type
    autocast_was = torch.is_autocast_enabled(device)

    def head_off(_module, _inputs):
        torch.set_autocast_enabled(device, False)

    def head_back(_module, _inputs, _output):
        torch.set_autocast_enabled(device, autocast_was)

    handles = [
        base.model.norm.register_forward_hook(hook),
        head.register_forward_pre_hook(head_off),
        head.register_forward_hook(head_back),
    ]
    try:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids", "cu_seq_lens_q") if k in batch}
        # use_cache=False: Qwen2's config asks for a KV cache, which training would fill and never read.
        no_position = torch.zeros(0, dtype=torch.long, device=batch["input_ids"].device)
        model(**inputs, use_cache=False, logits_to_keep=no_position)
    finally:
        torch.set_autocast_enabled(device, autocast_was)
        for handle in handles:
            handle.remove()
    if len(result) != 1:
        raise RuntimeError(f"the model's final norm ran {len(result)} times in one forward; expected once")
    return result[0]


def causal_lm_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Return (summed token loss, number of label tokens) for a batch from `collate` (input_ids/attention_mask/labels
    [B, T]) or `collate_padding_free` (input_ids/labels/position_ids [1, N] and cu_seq_lens_q).

    The count is returned apart so that the caller can sum it over micro-batches and processes before normalising.
    """
    targets = batch["labels"][:, 1:]  # position t predicts token t+1
    y = targets[targets != IGNORE]  # [N], N = label tokens in the batch

    def reduce(hidden: torch.Tensor, keep: torch.Tensor, head) -> torch.Tensor:
        h = hidden[:, :-1][keep]  # [N, H]
        # A ZeRO-3 head (`ds_id`) holds its weight only while it is called itself.
        if type(head) is torch.nn.Linear and head.bias is None and not hasattr(head.weight, "ds_id"):
            return linear_cross_entropy(h, head, y)
        # A wrapped, quantised or ZeRO-3 head: plain chunked projection, autograd keeps each chunk's log-softmax.
        total = hidden.new_zeros((), dtype=torch.float32)
        for s in range(0, y.numel(), CHUNK):
            logits = head(h[s : s + CHUNK]).float()  # [n, V]
            total = total + F.cross_entropy(logits, y[s : s + CHUNK], reduction="sum")
        return total

    return label_forward(model, batch, reduce), int(y.numel())
