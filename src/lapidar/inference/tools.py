"""Tool calling with Qwen2.5: tool specs into the prompt, `<tool_call>` blocks out of the answer.

Qwen2.5's chat template lists the tool specs in the system turn and asks the model to answer a call as

    <tool_call>
    {"name": "get_claim_status", "arguments": {"claim_id": "HM-1042"}}
    </tool_call>

one block per call (several blocks = parallel calls). `parse_tool_calls` turns an answer into OpenAI-style
`tool_calls` plus the text outside the blocks; `ToolCallStream` does the same piece by piece for streaming, and
the non-streaming parse is the streaming one run over the whole text, so both give the same result. A block whose
JSON does not parse (or has no "name") is not a call: it stays in the content as the model wrote it.

The same parse scores tool calls in `lapidar eval` (metric tool_call_match), so what the server returns and what
eval counts as a call are one definition. Prompts with tools are rendered by `lapidar.data.tokenize.render_prompt`,
the function training uses.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lapidar.errors import UserError

__all__ = [
    "TOOL_CLOSE",
    "TOOL_OPEN",
    "ParsedAnswer",
    "ToolCall",
    "ToolCallStream",
    "load_tools",
    "new_call_id",
    "parse_tool_calls",
]

TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for: its name and its arguments as parsed JSON."""

    name: str
    arguments: Any

    def arguments_json(self) -> str:
        """The arguments as the JSON string OpenAI's `function.arguments` carries."""
        return json.dumps(self.arguments, ensure_ascii=False)

    def canonical(self) -> str:
        """A form that is equal for equal calls whatever the order of the argument keys."""
        return json.dumps({"name": self.name, "arguments": self.arguments}, sort_keys=True, ensure_ascii=False)

    def openai(self, call_id: str) -> dict[str, Any]:
        """The call as an entry of an OpenAI chat completion's `message.tool_calls`."""
        return {"id": call_id, "type": "function", "function": {"name": self.name, "arguments": self.arguments_json()}}


@dataclass(frozen=True)
class ParsedAnswer:
    """An answer split into its text (None when there is none) and its tool calls, in the order written."""

    content: str | None
    calls: list[ToolCall] = field(default_factory=list)


def new_call_id() -> str:
    """An id for a tool call, in OpenAI's `call_...` style (the model does not write one)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def _parse_block(body: str) -> ToolCall | None:
    """The call written between `<tool_call>` and `</tool_call>`, or None when it is not one."""
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        return None
    arguments = value.get("arguments", {})
    if isinstance(arguments, str):  # some models write the OpenAI form, arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except (json.JSONDecodeError, RecursionError):
            return None
    return ToolCall(value["name"], arguments)


def _held_prefix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that could be the start of `tag` (wait for more before sending it)."""
    for n in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


class ToolCallStream:
    """Splits answer text, fed piece by piece, into content text and `ToolCall`s as soon as each is certain.

    Content is sent as it arrives except what may still turn out to be part of a `<tool_call>` tag, and except
    whitespace: leading whitespace and whitespace at the very end of the answer are dropped (Qwen writes a newline
    between blocks), whitespace between two pieces of text is kept.
    """

    def __init__(self) -> None:
        self._pending = ""  # text not yet decided
        self._inside = False  # between <tool_call> and </tool_call>
        self._space = ""  # whitespace held until more text follows it
        self._started = False  # some content has been sent

    def _text(self, text: str) -> list[str | ToolCall]:
        text = self._space + text
        body = text.rstrip()
        self._space = text[len(body) :]
        if not self._started:
            body = body.lstrip()
        if not body:
            return []
        self._started = True
        return [body]

    def feed(self, text: str) -> list[str | ToolCall]:
        """Add generated text; return the content pieces and calls it completes, in order."""
        self._pending += text
        out: list[str | ToolCall] = []
        while True:
            if self._inside:
                end = self._pending.find(TOOL_CLOSE)
                if end < 0:
                    return out
                body, self._pending = self._pending[:end], self._pending[end + len(TOOL_CLOSE) :]
                self._inside = False
                call = _parse_block(body)
                out += [call] if call is not None else self._text(TOOL_OPEN + body + TOOL_CLOSE)
            else:
                start = self._pending.find(TOOL_OPEN)
                if start < 0:
                    keep = _held_prefix(self._pending, TOOL_OPEN)
                    sendable = self._pending[: len(self._pending) - keep]
                    self._pending = self._pending[len(sendable) :]
                    return out + self._text(sendable)
                out += self._text(self._pending[:start])
                self._pending = self._pending[start + len(TOOL_OPEN) :]
                self._inside = True

    def close(self) -> list[str | ToolCall]:
        """The answer ended: return what is still held back."""
        pending, self._pending = self._pending, ""
        if not self._inside:
            return self._text(pending)
        self._inside = False
        # No closing tag: a complete call is still a call (the model may end its turn right after the JSON); an
        # unfinished one (cut by max_tokens) is text.
        call = _parse_block(pending)
        return [call] if call is not None else self._text(TOOL_OPEN + pending)


def parse_tool_calls(text: str) -> ParsedAnswer:
    """Split a whole answer into content (None when empty) and tool calls."""
    stream = ToolCallStream()
    events = stream.feed(text) + stream.close()
    content = "".join(e for e in events if isinstance(e, str))
    return ParsedAnswer(content or None, [e for e in events if isinstance(e, ToolCall)])


def load_tools(path: Path) -> list[dict]:
    """Read a JSON file holding a list of tool specs (`--tools FILE` of generate and chat), normalised as training
    data's `tools` are (OpenAI form; bare `{name, description, parameters}` specs wrapped)."""
    from lapidar.data.formats import normalize_tools

    if not path.is_file():
        raise UserError(f"--tools {path}: file not found; expected a JSON file holding a list of tool specs")
    try:
        value = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: line {e.lineno}: not valid JSON ({e.msg}); expected a list of tool specs") from None
    specs = normalize_tools([value] if isinstance(value, dict) else value, str(path))
    if not specs:
        raise UserError(f"{path}: the list of tool specs is empty; give at least one, or leave out --tools")
    return specs
