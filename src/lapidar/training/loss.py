"""Next-token cross-entropy computed only where it counts.

A causal LM normally projects every position onto the 151,936-token vocabulary and then throws away the masked
positions. Here the hidden states are first reduced to the positions that carry a label, and the vocabulary
projection runs in chunks of those: the full `[B, T, V]` logits tensor is never built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lapidar.data.tokenize import IGNORE

__all__ = ["causal_lm_loss", "decoder_and_head"]

CHUNK = 2048  # label positions per vocabulary projection: 2048 x 151936 fp32 logits = 1.2 GB at most


def decoder_and_head(model):
    """The decoder stack and the lm_head of a (possibly peft-wrapped) Qwen2ForCausalLM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model, base.lm_head


def causal_lm_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Return (summed token loss, number of label tokens) for a batch of input_ids/attention_mask/labels [B, T]."""
    decoder, head = decoder_and_head(model)
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]  # position t predicts token t+1
    keep = targets != IGNORE
    h = hidden[:, :-1][keep]  # [N, H], N = label tokens in the batch
    y = targets[keep]  # [N]
    total = hidden.new_zeros((), dtype=torch.float32)
    for s in range(0, y.numel(), CHUNK):
        logits = head(h[s : s + CHUNK]).float()  # [n, V]
        total = total + F.cross_entropy(logits, y[s : s + CHUNK], reduction="sum")
    return total, int(y.numel())
