"""Request bodies of the OpenAI-compatible API, validated with pydantic (unknown OpenAI fields are ignored)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["ChatMessage", "ChatRequest", "CompletionRequest", "FunctionCall", "StreamOptions", "TextPart", "ToolCallIn"]

MAX_STOP = 4  # as OpenAI's API


class TextPart(BaseModel):
    """One part of a multi-part message; only text parts can be answered by a text model."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    """The function an earlier assistant turn called; `arguments` is a JSON string, as OpenAI sends it."""

    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1)
    arguments: str = "{}"

    @field_validator("arguments")
    @classmethod
    def _json_arguments(cls, v: str) -> str:
        try:
            json.loads(v)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"not valid JSON ({e.msg} at column {e.colno}); send the arguments as a JSON string"
            ) from None
        return v


class ToolCallIn(BaseModel):
    """One entry of an assistant message's `tool_calls` in the request (the conversation so far)."""

    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One chat turn: an assistant turn may carry `tool_calls`, a `tool` turn carries a call's result."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _calls_are_assistant_turns(self) -> ChatMessage:
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"only assistant messages carry tool_calls, this one has role {self.role!r}")
        return self

    def text(self) -> str:
        """The content as one string (parts joined, None as empty)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)

    def for_template(self) -> dict[str, Any]:
        """The turn as Qwen2.5's chat template reads it: arguments as JSON values (the template writes them with
        `tojson`, as the model was trained to write them), not as strings."""
        out: dict[str, Any] = {"role": self.role, "content": self.text()}
        if self.tool_calls:
            out["tool_calls"] = [
                {
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": json.loads(c.function.arguments)},
                }
                for c in self.tool_calls
            ]
        return out


class StreamOptions(BaseModel):
    """`stream_options`: send a last chunk with token usage."""

    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(None, description="Ignored: the server answers with the one model it loaded.")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, description="Longest answer in tokens (default: server setting).")
    stop: str | list[str] | None = Field(None, description="Up to 4 strings that end the answer (not included).")
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1, description="Only one choice per request is supported.")

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if any(s == "" for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    def stop_list(self) -> list[str]:
        """The stop sequences as a list."""
        return self.stop if isinstance(self.stop, list) else []


TOOL_CHOICES = ("auto", "none")


class ChatRequest(_Sampling):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Newer name of max_tokens.")
    tools: list[dict[str, Any]] | None = Field(
        None, description="Function specs {type: function, function: {name, description, parameters}}."
    )
    tool_choice: Any = Field(None, description='"auto" (default with tools) or "none" (answer in text).')
    parallel_tool_calls: bool = Field(True, description="false: return only the first call of an answer.")
    functions: Any = Field(None, description="Deprecated OpenAI form of tools: refused with a pointer to tools.")

    @field_validator("tools")
    @classmethod
    def _check_tools(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        # Kept as sent (key order included): the template writes each spec with tojson, as training did.
        for i, spec in enumerate(v or []):
            fn = spec.get("function")
            if spec.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise ValueError(f'tools[{i}]: expected {{"type": "function", "function": {{"name": ..., ...}}}}')
        return v

    @field_validator("tool_choice")
    @classmethod
    def _check_tool_choice(cls, v: Any) -> Any:
        if v is None or v in TOOL_CHOICES:
            return v
        shown = v if isinstance(v, str) else json.dumps(v)
        raise ValueError(
            f"{shown!r} is not supported: lapidar serve cannot force the model to call a tool (no constrained "
            'decoding); send "auto" (the model decides) or "none" (no tools)'
        )

    @field_validator("functions")
    @classmethod
    def _no_functions(cls, v: Any) -> Any:
        if v is not None:
            raise ValueError('the deprecated form is not supported; send tools=[{"type": "function", "function": ...}]')
        return v

    def active_tools(self) -> list[dict[str, Any]] | None:
        """The tools to put in the prompt and parse calls for: none when tool_choice is "none"."""
        return self.tools if self.tools and self.tool_choice != "none" else None


class CompletionRequest(_Sampling):
    """POST /v1/completions: raw text continuation, no chat template."""

    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and len(v) != 1:
            raise ValueError("send one prompt per request (a string, or a list holding one string)")
        return v

    def prompt_text(self) -> str:
        """The single prompt."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]
