"""The web app's chat: answers from a run (or from the model it started from), streamed token by token.

Models are loaded on first use with the same loader as `lapidar serve` and decoded by the same `Engine`; at most
`keep` stay in memory (the least recently used is dropped). A run still training, or stopped, answers with its
newest checkpoint; once its final weights appear they are loaded instead. One answer is generated at a time on
the whole app, so two columns asked at once take turns instead of halving each other's speed.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from lapidar.errors import UserError
from lapidar.models.loading import RUN_FILE
from lapidar.server.engine import Engine, Job, PromptTooLong
from lapidar.training.checkpoint import latest_checkpoint
from lapidar.ui.workspace import Workspace

__all__ = ["SIDES", "ChatModels", "parse_chat_request", "question_turns"]

SIDES = ("run", "base")  # the run's trained weights, or the model it started from
MAX_NEW_TOKENS = 1024


def question_turns(messages: Any) -> list[dict[str, str]]:
    """A conversation up to a question, as the page sends it for a chat or a vote: [{role, content}] ending with
    the user's turn, copied with only those two keys; UserError naming the bad turn."""
    if not isinstance(messages, list) or not messages:
        raise UserError('messages: expected a list of {"role": ..., "content": ...} ending with a user turn')
    clean: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise UserError(f"messages[{i}]: expected role system, user or assistant with a text content")
        if not isinstance(m.get("content"), str):
            raise UserError(f"messages[{i}].content: expected text, got {type(m.get('content')).__name__}")
        clean.append({"role": m["role"], "content": m["content"]})
    if clean[-1]["role"] != "user":
        raise UserError(f"messages[{len(clean) - 1}]: the last turn must be the user's question")
    return clean


def parse_chat_request(body: dict[str, Any]) -> tuple[str, str, list[dict[str, str]], int, float]:
    """(run, side, messages, max_tokens, temperature) from POST /api/chat's body; UserError naming a bad field."""
    run = Workspace.check_name(str(body.get("run") or ""), "run name")
    side = str(body.get("side") or "run")
    if side not in SIDES:
        raise UserError(f"side {side!r}: choose {' or '.join(SIDES)}")
    clean = question_turns(body.get("messages"))
    try:
        max_tokens = int(body["max_tokens"] if body.get("max_tokens") is not None else 256)
        temperature = float(body["temperature"] if body.get("temperature") is not None else 0.0)
    except (TypeError, ValueError):
        raise UserError("max_tokens must be a whole number and temperature a number") from None
    if not 1 <= max_tokens <= MAX_NEW_TOKENS:
        raise UserError(f"max_tokens: expected 1 to {MAX_NEW_TOKENS}, got {max_tokens}")
    if not 0.0 <= temperature <= 2.0:
        raise UserError(f"temperature: expected 0 to 2, got {temperature}")
    return run, side, clean, max_tokens, temperature


def _weights(run_dir: Path) -> tuple[str | None, float]:
    """Which weights a run answers with now: its final ones (None) or its newest checkpoint, and their mtime."""
    meta = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    final = run_dir / meta["weights"]
    if final.is_dir():
        return None, final.stat().st_mtime
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise UserError(f"run {run_dir.name} has no weights yet: wait for its first checkpoint, or for it to finish")
    return str(ckpt.relative_to(run_dir)), ckpt.stat().st_mtime


class ChatModels:
    """Loaded chat models by (run, side, weights), the least recently used dropped beyond `keep`."""

    def __init__(self, ws: Workspace, keep: int = 2):
        self.ws = ws
        self.keep = keep
        self._engines: OrderedDict[tuple[str, str, str | None, float], Engine] = OrderedDict()
        self._load_lock = threading.Lock()
        self._generate = asyncio.Lock()

    def engine(self, run: str, side: str) -> Engine:
        """The engine for one column, loading it (blocking, seconds to minutes) when it is not in memory."""
        from lapidar.inference.generate import load_for_inference

        run_dir = self.ws.run_dir(run)
        if not (run_dir / RUN_FILE).is_file():
            raise UserError(f"no run {run!r} in {self.ws.dir('runs')} with a model yet; GET /api/runs lists them")
        checkpoint, stamp = (None, 0.0) if side == "base" else _weights(run_dir)
        key = (run, side, checkpoint, stamp)
        with self._load_lock:
            if key in self._engines:
                self._engines.move_to_end(key)
                return self._engines[key]
            for old in [k for k in self._engines if k[:2] == (run, side)]:
                del self._engines[old]  # an older version of these weights
            loaded = load_for_inference(str(run_dir), checkpoint, base_only=side == "base")
            config = loaded.model.config
            engine = Engine(loaded, int(getattr(config, "max_position_embeddings", 4096)))
            self._engines[key] = engine
            while len(self._engines) > self.keep:
                self._engines.popitem(last=False)
            return engine

    async def stream(
        self, run: str, side: str, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> AsyncIterator[dict[str, Any]]:
        """Events for one answer: {"model"}, then {"delta"} pieces, then {"done", finish_reason, tokens}."""
        from lapidar.data.tokenize import render_prompt

        engine = await asyncio.to_thread(self.engine, run, side)
        loaded = engine.loaded
        yield {"model": loaded.label, "random": loaded.random_init}
        prompt = render_prompt(loaded.tokenizer, messages)
        ids = loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        try:
            job = engine.check(Job(list(ids), max_tokens, temperature, seed=0))
        except PromptTooLong as e:
            raise UserError(f"{e}; start a new chat or shorten the question") from None
        async with self._generate:
            async for d in engine.stream(job):
                if d.text:
                    yield {"delta": d.text}
                if d.finish_reason is not None:
                    yield {
                        "done": True,
                        "finish_reason": d.finish_reason,
                        "prompt_tokens": d.prompt_tokens,
                        "completion_tokens": d.completion_tokens,
                    }
