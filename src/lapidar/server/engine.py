"""The server's generation engine: one request on the model at a time, tokens decoded in a loop in plain sight.

A hand-written decoding loop (instead of `model.generate`) gives what an API server needs in one place: stop
strings that end the answer without being returned, text streamed as soon as it cannot be part of a stop string,
token counts for `usage`, and cancellation when a streaming client goes away. Greedy decoding picks the same
tokens as `model.generate(do_sample=False)`.

Concurrency: an `asyncio.Lock` queues requests in arrival order; the loop itself runs in a worker thread so the
event loop keeps accepting (and rejecting) requests while a generation runs.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import torch

from lapidar.inference.generate import Loaded

__all__ = ["Delta", "Engine", "Job", "PromptTooLong"]


class PromptTooLong(ValueError):
    """The prompt leaves no room for an answer in the model's context window."""


@dataclass(frozen=True)
class Job:
    """One generation: prompt token ids and decoding settings."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Delta:
    """A piece of answer text; the last one of a job carries `finish_reason` ("stop" or "length")."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _pick(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """Next token from logits [vocab]: argmax at temperature 0, else nucleus sampling."""
    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        keep = sorted_probs.cumsum(-1) - sorted_probs < top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


class Engine:
    """Runs jobs on a loaded model, one at a time."""

    def __init__(self, loaded: Loaded, context_length: int):
        self.loaded = loaded
        self.context_length = context_length
        tok = loaded.tokenizer
        self.end_ids = {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")}
        # transformers 5 renamed forward(past_key_values=) to forward(cache=); use whichever this version has.
        base = model.get_base_model() if hasattr(model := loaded.model, "get_base_model") else model
        self._cache_arg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    def check(self, job: Job) -> Job:
        """Fit max_tokens into the context window; raise PromptTooLong when the prompt alone fills it."""
        room = self.context_length - len(job.prompt_ids)
        if room < 1:
            raise PromptTooLong(
                f"the prompt is {len(job.prompt_ids)} tokens; this model's context holds {self.context_length}"
            )
        if job.max_tokens > room:
            return Job(job.prompt_ids, room, job.temperature, job.top_p, job.stop, job.seed)
        return job

    @torch.no_grad()
    def decode(self, job: Job, cancel: threading.Event | None = None) -> Iterator[Delta]:
        """The decoding loop (blocking). Yields text pieces, then a final Delta with finish_reason and counts."""
        model, tok = self.loaded.model, self.loaded.tokenizer
        device = next(model.parameters()).device
        generator = torch.Generator().manual_seed(job.seed if job.seed is not None else torch.seed())
        # Hold back enough characters that a stop string split across tokens is never half-sent.
        hold = max((len(s) for s in job.stop), default=1) - 1
        input_ids = torch.tensor([job.prompt_ids], device=device)
        past, answer, sent, finish, n_end = None, [], "", "length", 0
        text = ""
        for _ in range(job.max_tokens):
            if cancel is not None and cancel.is_set():
                finish = "cancelled"
                break
            out = model(input_ids=input_ids, use_cache=True, logits_to_keep=1, **{self._cache_arg: past})
            past = getattr(out, self._cache_arg)
            token = _pick(out.logits[0, -1].cpu(), job.temperature, job.top_p, generator)
            if token in self.end_ids:
                finish, n_end = "stop", 1  # the end-of-turn token counts as generated, as in OpenAI's usage
                break
            answer.append(token)
            text = tok.decode(answer, skip_special_tokens=True)
            hits = [i for i in (text.find(s) for s in job.stop) if i >= 0]
            if hits:
                text, finish = text[: min(hits)], "stop"
                break
            # An incomplete UTF-8 sequence decodes as U+FFFD: wait for the token that completes it.
            safe = len(text) - hold if not text.endswith("\ufffd") else len(text.rstrip("\ufffd")) - hold
            if safe > len(sent):
                yield Delta(text[len(sent) : safe])
                sent = text[:safe]
            input_ids = torch.tensor([[token]], device=device)
        yield Delta(text[len(sent) :], finish, len(job.prompt_ids), len(answer) + n_end)

    # ---------------------------------------------------------------- async side

    def _get_lock(self) -> asyncio.Lock:
        # An asyncio.Lock belongs to one event loop: the server has one; in-process test clients may start several.
        return self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())

    async def run(self, job: Job) -> Delta:
        """Wait for the model, generate the whole answer, return it as one Delta."""
        async with self._get_lock():
            return await asyncio.to_thread(self._collect, job)

    def _collect(self, job: Job) -> Delta:
        pieces, last = [], Delta("")
        for d in self.decode(job):
            pieces.append(d.text)
            last = d
        return Delta("".join(pieces), last.finish_reason, last.prompt_tokens, last.completion_tokens)

    async def stream(self, job: Job) -> AsyncIterator[Delta]:
        """Wait for the model, then yield Deltas as the worker thread produces them.

        Closing the iterator (the client disconnected) stops the loop after the current token and frees the model.
        """
        async with self._get_lock():
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Delta | BaseException | None] = asyncio.Queue()
            cancel = threading.Event()

            def work() -> None:
                try:
                    for d in self.decode(job, cancel):
                        loop.call_soon_threadsafe(queue.put_nowait, d)
                except BaseException as e:
                    loop.call_soon_threadsafe(queue.put_nowait, e)
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, None)

            thread = threading.Thread(target=work, name="lapidar-generate", daemon=True)
            thread.start()
            try:
                while (item := await queue.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                cancel.set()
                try:
                    await asyncio.to_thread(thread.join)
                except asyncio.CancelledError:  # the client went away: wait (one token at most) in place
                    thread.join()
                    raise
