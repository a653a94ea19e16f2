"""The OpenAI-compatible HTTP API: /v1/models, /v1/chat/completions, /v1/completions (streamed or not).

Tool calling: a chat request's `tools` are rendered by the model's chat template (Qwen2.5 lists them in the
system turn) and the answer's `<tool_call>` blocks come back as OpenAI `tool_calls` with finish_reason
"tool_calls", streamed as `delta.tool_calls` entries (lapidar.inference.tools). `tool_choice` "auto" and "none"
(tools left out of the prompt, text answer) are supported; "required" and a named function are refused with 400,
as forcing a call needs constrained decoding.

Safety by default: the body size is capped (413), bodies are validated (400 with an OpenAI-style error object),
an API key, when set, is required as `Authorization: Bearer KEY` (401), and no request can take the server down:
every failure becomes a JSON error for that request only. Answers of a randomly initialised model carry a
`lapidar_warning` field and an `X-Lapidar-Warning` header.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lapidar.data.formats import normalize_tools
from lapidar.data.tokenize import render_prompt
from lapidar.errors import UserError
from lapidar.inference.generate import Loaded, random_notice
from lapidar.inference.tools import ToolCallStream, new_call_id, parse_tool_calls
from lapidar.server.engine import Delta, Engine, Job, PromptTooLong
from lapidar.server.schemas import ChatRequest, CompletionRequest

__all__ = ["DEFAULT_MAX_BODY", "create_app"]

DEFAULT_MAX_BODY = 1_000_000  # bytes


def _error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": code}},
        status_code=status,
    )


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with 413, by Content-Length or while streaming."""

    class TooLarge(StarletteHTTPException):
        """Raised from `receive`; an HTTPException so FastAPI's body parsing passes it on unchanged."""

        def __init__(self, max_bytes: int):
            super().__init__(413, f"request body is larger than {max_bytes} bytes")

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body is larger than {self.max_bytes} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _error(413, message, code="body_too_large")(scope, receive, send)
            return
        seen, started = 0, False

        async def limited_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyLimit.TooLarge(self.max_bytes)
            return msg

        async def tracked_send(msg):
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyLimit.TooLarge:
            if not started:
                await _error(413, message, code="body_too_large")(scope, receive, send)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        if err.get("type") == "json_invalid":
            return f"body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}"
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request body"


def create_app(
    loaded: Loaded,
    model_id: str,
    api_key: str | None = None,
    default_max_tokens: int = 512,
    max_body: int = DEFAULT_MAX_BODY,
) -> FastAPI:
    """Build the API around one loaded model."""
    context = int(getattr(loaded.model.config, "max_position_embeddings", 32768))
    engine = Engine(loaded, context)
    tok = loaded.tokenizer
    warning = random_notice(loaded)
    created = int(time.time())
    app = FastAPI(title="lapidar", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, max_bytes=max_body)

    @app.middleware("http")
    async def auth_and_label(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1/"):
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
                return _error(401, "missing or wrong API key (send Authorization: Bearer KEY)", code="invalid_api_key")
        response = await call_next(request)
        if warning:
            response.headers["X-Lapidar-Warning"] = warning
        return response

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError):
        return _error(400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        return _error(exc.status_code, str(exc.detail), code=codes.get(exc.status_code))

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception):
        return _error(500, f"generation failed: {type(exc).__name__}: {exc}", kind="server_error")

    def labelled(body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "lapidar_warning": warning} if warning else body

    def usage(d: Delta) -> dict[str, int]:
        return {
            "prompt_tokens": d.prompt_tokens,
            "completion_tokens": d.completion_tokens,
            "total_tokens": d.prompt_tokens + d.completion_tokens,
        }

    def job(req: ChatRequest | CompletionRequest, prompt_ids: list[int]) -> Job:
        max_tokens = getattr(req, "max_completion_tokens", None) or req.max_tokens or default_max_tokens
        return engine.check(Job(prompt_ids, max_tokens, req.temperature, req.top_p, tuple(req.stop_list()), req.seed))

    def sse(chunks: AsyncIterator[dict]) -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            try:
                async for chunk in chunks:
                    yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
            except Exception as e:  # headers are sent: report in the stream, keep the server up
                err = {"error": {"message": f"generation failed: {e}", "type": "server_error"}}
                yield f"data: {json.dumps(err)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model_id}

    @app.get("/v1/models")
    async def models() -> dict:
        entry = labelled({"id": model_id, "object": "model", "created": created, "owned_by": "lapidar"})
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        # Normalised as training data's tools are, so a spec renders byte for byte as the model was trained on it.
        tools = normalize_tools(req.active_tools(), "tools") if req.active_tools() else None
        try:
            prompt = render_prompt(tok, [m.for_template() for m in req.messages], tools)
        except UserError as e:
            return _error(400, str(e), code="tools_not_supported")
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        try:
            work = job(req, ids)
        except PromptTooLong as e:
            return _error(400, str(e), code="context_length_exceeded")
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "created": now, "model": model_id}
        max_calls = None if req.parallel_tool_calls else 1
        if not req.stream:
            d = await engine.run(work)
            message: dict[str, Any] = {"role": "assistant", "content": d.text}
            finish = d.finish_reason
            if tools:
                parsed = parse_tool_calls(d.text)
                calls = parsed.calls[:max_calls]
                message["content"] = parsed.content if calls else parsed.content or ""
                if calls:
                    message["tool_calls"] = [c.openai(new_call_id()) for c in calls]
                    finish = "tool_calls"
            choice = {"index": 0, "message": message, "finish_reason": finish}
            return labelled({**head, "object": "chat.completion", "choices": [choice], "usage": usage(d)})

        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        async def chunks() -> AsyncIterator[dict]:
            base = {**head, "object": "chat.completion.chunk"}

            def chunk(delta: dict, finish: str | None = None) -> dict:
                return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

            yield labelled(chunk({"role": "assistant", "content": ""}))
            # With tools, text goes through the parser: content is sent as soon as it cannot be part of a
            # <tool_call> block, a block is held until it closes and then sent as one tool_calls entry.
            parser = ToolCallStream() if tools else None
            n_calls = 0

            def pieces(events: list) -> list[dict]:
                nonlocal n_calls
                out = []
                for e in events:
                    if isinstance(e, str):
                        out.append(chunk({"content": e}))
                    elif max_calls is None or n_calls < max_calls:
                        # As OpenAI streams a call: id, type and name first, then the arguments.
                        call = {"index": n_calls, "id": new_call_id(), "type": "function"}
                        out.append(chunk({"tool_calls": [{**call, "function": {"name": e.name, "arguments": ""}}]}))
                        out.append(
                            chunk({"tool_calls": [{"index": n_calls, "function": {"arguments": e.arguments_json()}}]})
                        )
                        n_calls += 1
                return out

            async for d in engine.stream(work):
                if parser is None:
                    if d.text:
                        yield chunk({"content": d.text})
                else:
                    for c in pieces(parser.feed(d.text) + (parser.close() if d.finish_reason else [])):
                        yield c
                if d.finish_reason:
                    yield chunk({}, "tool_calls" if n_calls else d.finish_reason)
                    if include_usage:
                        yield {**base, "choices": [], "usage": usage(d)}

        return sse(chunks())

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest):
        ids = tok(req.prompt_text(), add_special_tokens=False)["input_ids"]
        if not ids:
            return _error(400, "prompt: must not be empty")
        try:
            work = job(req, ids)
        except PromptTooLong as e:
            return _error(400, str(e), code="context_length_exceeded")
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": now, "model": model_id}
        if not req.stream:
            d = await engine.run(work)
            choice = {"index": 0, "text": d.text, "logprobs": None, "finish_reason": d.finish_reason}
            return labelled({**head, "choices": [choice], "usage": usage(d)})

        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        async def chunks() -> AsyncIterator[dict]:
            first = True
            async for d in engine.stream(work):
                if d.text or d.finish_reason:
                    choice = {"index": 0, "text": d.text, "logprobs": None, "finish_reason": d.finish_reason}
                    chunk = {**head, "choices": [choice]}
                    yield labelled(chunk) if first else chunk
                    first = False
                if d.finish_reason and include_usage:
                    yield {**head, "choices": [], "usage": usage(d)}

        return sse(chunks())

    return app
