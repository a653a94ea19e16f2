"""Render conversations with the model's chat template, tokenise, and mask everything but the answers.

The loss is computed only on the assistant's answers and the end-of-turn token that follows them, so the model
learns to answer and to stop — not to repeat questions. Answer spans are found on the rendered *text* (the template
is rendered for each prefix of the conversation) and mapped to tokens with the tokenizer's offsets, so this works for
any prefix-consistent chat template, not only ChatML.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lapidar.errors import UserError

__all__ = ["IGNORE", "Encoded", "answer_spans", "collate", "collate_padding_free", "encode_conversation"]

IGNORE = -100  # label value that cross-entropy skips


@dataclass(frozen=True)
class Encoded:
    """One tokenised example: `input_ids` and `labels` of equal length (labels = IGNORE outside answers)."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def n_answer_tokens(self) -> int:
        """How many tokens carry loss."""
        return sum(1 for x in self.labels if x != IGNORE)


def _render(tokenizer, messages, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def answer_spans(tokenizer, messages: list[dict], where: str = "") -> tuple[str, list[tuple[int, int]]]:
    """Render `messages`; return the text and the character spans `[start, end)` that the loss is taken on.

    Each span covers one assistant answer plus the EOS token the template puts after it.
    """
    text = _render(tokenizer, messages, add_generation_prompt=False)
    eos = tokenizer.eos_token
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        upto = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not (text.startswith(upto) and upto.startswith(prompt)):
            raise UserError(f"{where}: the chat template does not render this conversation prefix by prefix")
        end = upto.rfind(eos)
        if end < len(prompt):
            raise UserError(
                f"{where}: the chat template does not end assistant message {i} with the EOS token {eos!r}; "
                "the model would never learn to stop"
            )
        spans.append((len(prompt), end + len(eos)))
    return text, spans


def encode_conversation(tokenizer, messages: list[dict], max_length: int, where: str = "") -> Encoded:
    """Tokenise one conversation and build its labels (answers + EOS kept, everything else IGNORE)."""
    text, spans = answer_spans(tokenizer, messages, where)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    labels = [IGNORE] * len(ids)
    si = 0
    for t, (start, end) in enumerate(enc["offset_mapping"]):
        while si < len(spans) and start >= spans[si][1]:
            si += 1
        if si < len(spans) and start >= spans[si][0] and end <= spans[si][1] and end > start:
            labels[t] = ids[t]
    truncated = len(ids) > max_length
    return Encoded(ids[:max_length], labels[:max_length], truncated)


def collate(batch: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest example. Shapes: input_ids/labels/attention_mask [B, T]."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def collate_padding_free(batch: list[Encoded]) -> dict[str, torch.Tensor]:
    """Concatenate a batch into one row with no padding (see `lapidar.models.attention`).

    Returns input_ids/labels/position_ids [1, N] (N = the examples' total length, positions restarting at 0 for each
    example) and cu_seq_lens_q [S+1] (the examples' start offsets, then N). Each example's first label is IGNORE, so
    the last token of one example is never trained to predict the first token of the next; a padded batch never
    uses that label either (position t predicts t+1).
    """
    lengths = [len(e.input_ids) for e in batch]
    ids = torch.tensor([t for e in batch for t in e.input_ids], dtype=torch.long)[None]
    labels = torch.tensor([t for e in batch for t in e.labels], dtype=torch.long)[None]
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    bounds = torch.tensor([0, *lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    labels[0, bounds[:-1].long()] = IGNORE
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "cu_seq_lens_q": bounds}
