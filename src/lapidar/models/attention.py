"""Padding-free attention: several examples concatenated into one row, each attending only to itself.

A padded batch `[B, T_max]` spends the whole model's compute and activation memory on pad tokens; with examples of
mixed length a third or more of a batch can be padding. lapidar instead concatenates a batch's examples into one
row `[1, sum(lengths)]` with `position_ids` restarting at 0 for each example, and passes the segment boundaries as
`cu_seq_lens_q` (the name transformers' FlashAttention-2 varlen path uses). The attention function registered here
runs PyTorch's scaled-dot-product attention once per segment with `is_causal=True`, so attention never crosses
examples, costs sum(n_i^2) rather than (sum n_i)^2, and needs no `[T, T]` mask. Without `cu_seq_lens_q` (generation,
padded evaluation) it is transformers' own SDPA path, unchanged.

The same idea as FlashAttention's varlen kernels and TRL's `padding_free=True`, which need CUDA; this one runs
anywhere SDPA does. Equivalence with the padded batch is pinned by tests/unit/test_padding_free.py.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

__all__ = ["PADDING_FREE", "enable_padding_free", "supports_padding_free"]

PADDING_FREE = "lapidar_padding_free"


def _segment_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention over `[1, H, N, D]` tensors split at `cu_seq_lens_q` ([S+1] offsets); returns `[1, N, H, D]`."""
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or query.shape[0] != 1:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    gqa = query.shape[1] != key.shape[1]  # Qwen2.5: 14 query heads share 2 key/value heads (0.5B)
    p = dropout if module.training else 0.0
    edges = bounds.tolist()
    parts = [
        F.scaled_dot_product_attention(
            query[:, :, s:e],
            key[:, :, s:e],
            value[:, :, s:e],
            dropout_p=p,
            scale=scaling,
            is_causal=True,
            enable_gqa=gqa,
        )
        for s, e in itertools.pairwise(edges)
        if e > s
    ]
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)  # [1, H, N, D]
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(PADDING_FREE, _segment_attention)
# SDPA's own masks: generation and padded batches need them; for a packed row `_segment_attention` ignores the mask
# transformers builds and uses the boundaries instead.
ALL_MASK_ATTENTION_FUNCTIONS.register(PADDING_FREE, sdpa_mask)


def supports_padding_free(model) -> bool:
    """Whether `model`'s attention can run padding-free: full causal attention through transformers' interface."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "use_sliding_window", False):
        return False
    return getattr(config, "_attn_implementation", None) in ("sdpa", PADDING_FREE)


def enable_padding_free(model) -> bool:
    """Switch `model` (a transformers model, possibly peft-wrapped) to the padding-free attention; False if it can't."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not supports_padding_free(base):
        return False
    base.set_attn_implementation(PADDING_FREE)
    return True
