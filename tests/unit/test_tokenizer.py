"""The offline tokenizer must encode exactly like the official Qwen2.5 tokenizer.json."""

from __future__ import annotations

import json

import pytest

from lapidar.models.qwen import CONTROL_TOKENS
from tests.conftest import FIXTURES

KNOWN = json.loads((FIXTURES / "qwen25_known_ids.json").read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("case", KNOWN, ids=[f"{i}:{c['text'][:20]!r}" for i, c in enumerate(KNOWN)])
def test_known_qwen25_ids(tokenizer, case):
    assert tokenizer.encode(case["text"], add_special_tokens=False) == case["ids"]


def test_known_cases_cover_hard_text():
    texts = " ".join(c["text"] for c in KNOWN)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in texts), "Chinese"
    assert any(ord(ch) > 0x1F000 for ch in texts), "emoji"
    assert "   " in texts and "\t" in texts and "\n\n" in texts, "whitespace runs"
    assert "println!(" in texts or "def " in texts, "code"


def test_all_22_control_tokens_have_their_ids(tokenizer):
    assert len(CONTROL_TOKENS) == 22
    for offset, token in enumerate(CONTROL_TOKENS):
        assert tokenizer.convert_tokens_to_ids(token) == 151643 + offset
        # and they are matched as single tokens inside text
        assert tokenizer.encode(f"a{token}b", add_special_tokens=False) == [64, 151643 + offset, 65]


def test_eos_pad_and_vocab(tokenizer):
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 151645
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id == 151643
    assert len(tokenizer) == 151665
    assert tokenizer.bos_token is None


def test_decode_roundtrip(tokenizer):
    text = "Olá, 世界! 😀 x\t=\t1  \n\n"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_nfc_normalisation(tokenizer):
    # "e" + combining acute is normalised to "é" before BPE, as the official tokenizer does.
    assert tokenizer.encode("cafe\u0301", add_special_tokens=False) == tokenizer.encode(
        "café", add_special_tokens=False
    )
