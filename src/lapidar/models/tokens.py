"""New domain tokens (`--new-tokens`): add them to the tokenizer, give them embedding rows, say which rows train.

Qwen2.5's embedding matrix has spare rows: `vocab_size` is 151,936 while the tokenizer holds 151,665 ids, so up to
271 new tokens fit without resizing; the matrix is resized only beyond that. A new row starts at the mean of the
existing rows (Hewitt 2021, "Initializing New Word Embeddings for Pretrained Language Models",
https://nlp.stanford.edu/~johnhew/vocab-expansion.html): a fresh token then shifts the next-token distribution by
little, where a random row can dominate it. Qwen2.5 up to 3B ties `lm_head` to `embed_tokens` (one matrix); larger
sizes have their own `lm_head`, whose new rows get the mean of its rows the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["NewTokens", "add_new_tokens", "init_new_rows", "resize_embeddings"]

RESIZE_MULTIPLE = 64  # a resized vocabulary is padded to a multiple of 64 rows, as Qwen2.5's own 151,936 is


@dataclass(frozen=True)
class NewTokens:
    """The outcome of adding tokens: which ids train and which rows were created."""

    ids: list[int] = field(default_factory=list)  # every listed token's id: the embedding rows that train
    added: list[int] = field(default_factory=list)  # ids of tokens that were not in the vocabulary before
    existing: dict[str, int] = field(default_factory=dict)  # listed tokens already single ids: not added again
    n_before: int = 0  # tokenizer length before adding: rows [0, n_before) are the pretrained vocabulary

    def notes(self) -> list[str]:
        """One line per outcome, for the start of a training run."""
        out = []
        if self.added:
            out.append(
                f"--new-tokens: added {len(self.added)} tokens (ids {self.added[0]}-{self.added[-1]}), embeddings "
                "start at the mean of the existing ones"
            )
        for token, i in self.existing.items():
            out.append(
                f"--new-tokens: {token!r} is already in the vocabulary (id {i}); not added again, its row trains"
            )
        return out


def add_new_tokens(tokenizer, tokens: list[str]) -> NewTokens:
    """Add `tokens` that are not yet single ids to `tokenizer` (in place, in order, so ids are reproducible).

    New tokens are ordinary added tokens (not `special`): they match exactly, are never split, and stay in decoded
    answers, as Qwen2.5's own `<tool_call>` markers do.
    """
    from tokenizers import AddedToken

    n_before = len(tokenizer)
    existing: dict[str, int] = {}
    fresh: list[str] = []
    for token in tokens:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            existing[token] = ids[0]
        elif token not in fresh:
            fresh.append(token)
    if fresh:
        tokenizer.add_tokens(
            [
                AddedToken(t, special=False, normalized=False, single_word=False, lstrip=False, rstrip=False)
                for t in fresh
            ]
        )
    added = [int(tokenizer.convert_tokens_to_ids(t)) for t in fresh]
    ids = [existing[t] if t in existing else int(tokenizer.convert_tokens_to_ids(t)) for t in dict.fromkeys(tokens)]
    return NewTokens(ids=ids, added=added, existing=existing, n_before=n_before)


def resize_embeddings(model, n_tokens: int) -> bool:
    """Grow the embedding (and an untied `lm_head`) to hold `n_tokens` ids if it does not yet; True if resized.

    Called with the same `n_tokens` at training and at loading time, so both build the same shape.
    """
    if n_tokens <= model.get_input_embeddings().weight.shape[0]:
        return False
    # mean_resizing=False: init_new_rows sets the rows that matter; the padding rows are never used.
    model.resize_token_embeddings(n_tokens, pad_to_multiple_of=RESIZE_MULTIPLE, mean_resizing=False)
    return True


@torch.no_grad()
def init_new_rows(model, new: NewTokens) -> None:
    """Set the rows of `new.added` to the mean of the pretrained rows, in the input embedding and an untied lm_head."""
    if not new.added:
        return
    rows = torch.tensor(new.added)
    matrices = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not matrices[0]:
        matrices.append(output.weight)
    for weight in matrices:  # (vocab_rows, hidden)
        mean = weight[: new.n_before].float().mean(dim=0)
        weight[rows.to(weight.device)] = mean.to(weight.dtype)
