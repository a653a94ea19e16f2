"""Request bodies of the OpenAI-compatible API, validated with pydantic (unknown OpenAI fields are ignored)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ChatMessage", "ChatRequest", "CompletionRequest", "StreamOptions", "TextPart"]

MAX_STOP = 4  # as OpenAI's API


class TextPart(BaseModel):
    """One part of a multi-part message; only text parts can be answered by a text model."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One chat turn."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        """The content as one string (parts joined, None as empty)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


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


class ChatRequest(_Sampling):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Newer name of max_tokens.")


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
