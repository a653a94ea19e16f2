"""The shortcuts that make `lapidar data check` fast give exactly the numbers of the slow paths they replace."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lapidar.data import dedup, quality
from lapidar.data.formats import Example

PIECES = [
    "Olá, você está bem?", "日本語のテキストです。", "中文文本，测试一下。", "Привет, как дела?", "مرحبا بالعالم",
    "👍🏽 emoji 🎉🎉", "e\u0301 combining (not NFC)", "café naïve", "  spaces   and\ttabs\n\n\nnewlines",
    "123456789 0.5 1e999", "<|im_end|> inside", "<tool_call>x</tool_call>", "ﬁ ligature ＡＢＣ", "\u200b zero width",
    "ß ẞ İ ı", "a'S a'll 'RE", "\r\n crlf \r", "x" * 300, "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "The deductible is $250 (§7.3).",
]  # fmt: skip


def _examples(n: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        turns = [
            {"role": "user", "content": " ".join(rng.choice(PIECES) for _ in range(rng.randint(1, 6)))},
            {"role": "assistant", "content": " ".join(rng.choice(PIECES) for _ in range(rng.randint(1, 8)))},
        ]
        if i % 3 == 0:
            turns.insert(0, {"role": "system", "content": "You are Harbor Mutual's claims assistant."})
        out.append(Example(messages=turns, source=f"f: line {i + 1}", ref=f"line {i + 1}"))
    return out


def test_tiktoken_counts_are_the_tokenizers_own(tokenizer, monkeypatch):
    examples = _examples(2500)
    texts = [quality._chatml_spans(e.messages)[0] for e in examples]
    assert quality._tiktoken_for(tokenizer._tokenizer, texts) is not None  # the fast path is taken
    fast = quality.token_stats_batch(examples, tokenizer, 64)
    monkeypatch.setattr(quality, "_tiktoken_for", lambda backend, texts: None)
    assert fast == quality.token_stats_batch(examples, tokenizer, 64)
    assert sum(s.answer_cut for s in fast) > 100  # the long rows' path is exercised too


def test_tiktoken_is_not_used_for_another_vocabulary(tokenizer):
    texts = [quality._chatml_spans(e.messages)[0] for e in _examples(2500)]
    other = tokenizer._tokenizer.__class__.from_str(tokenizer._tokenizer.to_str())
    other.add_tokens(["<claim_id>"])  # --new-tokens: split out by the tokenizer, unknown to tiktoken
    assert quality._tiktoken_for(other, texts) is None
    assert quality._tiktoken_for(tokenizer._tokenizer, texts[:100]) is None  # small batches: not worth loading


@pytest.mark.parametrize("n", [1, 7, 500])
def test_signatures_without_sets_equal_the_sets_signatures(n):
    rng = random.Random(n)
    texts = [" ".join(rng.choice(PIECES) for _ in range(rng.randint(0, 5))) for _ in range(n)]
    keys = [dedup.normalise(t) for t in texts]
    assert np.array_equal(dedup._signatures(keys), dedup.minhash_signatures(*dedup.shingle_sets(texts)))
