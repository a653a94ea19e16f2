"""Shared fixtures: the real Qwen2.5 tokenizer and the embedded tiny model, built once per test session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def tiny_source():
    """The embedded tiny-qwen2.5 model directory (materialised in the lapidar cache on first use)."""
    from lapidar.models.loading import resolve_model

    return resolve_model("tiny-qwen2.5")


@pytest.fixture(scope="session")
def tokenizer(tiny_source):
    """The offline-built Qwen2.5 tokenizer with the instruct (ChatML) template."""
    from lapidar.models.loading import load_tokenizer

    return load_tokenizer(tiny_source)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write rows as JSONL and return the path."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def qa_rows(pairs: list[tuple[str, str]], system: str | None = None) -> list[dict]:
    """Turn (question, answer) pairs into messages rows."""
    rows = []
    for q, a in pairs:
        msgs = [{"role": "system", "content": system}] if system else []
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        rows.append({"messages": msgs})
    return rows


# An OpenAI-style function spec the tool-calling tests share.
CLAIM_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_claim_status",
            "description": "Look up an insurance claim by its id.",
            "parameters": {"type": "object", "properties": {"claim_id": {"type": "string"}}, "required": ["claim_id"]},
        },
    }
]
