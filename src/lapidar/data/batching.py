"""Batching and packing: the one place that decides which rows go into which batch, in which order.

Every caller (the training loop, evaluation, `lapidar estimate`, `lapidar bench`) uses these, so the batches a run
sees, the ones the memory estimate sizes and the ones the benchmark times are the same.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from lapidar.data.tokenize import Encoded

__all__ = ["batch_order", "batches", "pack_texts"]

T = TypeVar("T")


def batches(
    data: Sequence[T], batch_size: int, seed: int, shuffle: bool, padding_free: bool = False, length=None
) -> list[list[T]]:
    """Batches of `data` in a random order; padded batches are length-grouped (sorted within windows of 50).

    Grouping similar lengths wastes less compute on padding; the window keeps the order random. Padding-free
    batches have no padding to save, so they stay plain random draws (which also keeps the biggest batch, and with it
    the peak memory, smaller). The order depends only on `seed`, so a resumed run sees exactly the batches the
    interrupted one would have. `length(item)` gives an item's length for grouping (default: `len(item.input_ids)`).
    """
    length = length or (lambda item: len(item.input_ids))
    idx = list(range(len(data)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(idx)
    if padding_free:
        return [[data[i] for i in idx[b : b + batch_size]] for b in range(0, len(idx), batch_size)]
    window = batch_size * 50
    out: list[list[T]] = []
    for w in range(0, len(idx), window):
        chunk = sorted(idx[w : w + window], key=lambda i: length(data[i]))
        out += [[data[i] for i in chunk[b : b + batch_size]] for b in range(0, len(chunk), batch_size)]
    if shuffle:
        rng.shuffle(out)
    return out


def batch_order(n: int, batch_size: int, seed: int, shuffle: bool) -> list[list[int]]:
    """Indices 0..n-1 in batches of `batch_size`, shuffled by `seed` (plain random draws, no length grouping)."""
    return batches(list(range(n)), batch_size, seed, shuffle, padding_free=True)


def pack_texts(tokenizer, texts: Sequence[str], block: int, eos_id: int) -> list[Encoded]:
    """Continued pretraining: documents joined with the end-of-text token and cut into blocks of `block` tokens.

    Every token carries loss; a block may span two documents, as in GPT-style pretraining. Blocks shorter than 16
    tokens (the tail) are dropped.
    """
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [eos_id]
    blocks = [stream[i : i + block] for i in range(0, len(stream), block)]
    return [Encoded(b, list(b), False) for b in blocks if len(b) >= 16]
