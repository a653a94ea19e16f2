"""`lapidar data synth`: training rows written by a stronger model behind any OpenAI-compatible endpoint.

Modes: `answer` (the stronger model answers the user's questions), `paraphrase` (new phrasings of the questions,
answers kept or written again), `seeds` (new question/answer pairs in the style of a few sampled examples) and
`documents` (pairs grounded in passages of the user's PDF/DOCX/Markdown/HTML/text files; `documents.py` cuts them).

Every piece of work has a stable key (the question's text, a seed number, a document chunk); each row written
carries it in `meta.synth_key`, and each input dropped is logged with its reason in OUT.synth.jsonl. Both files are
appended and flushed row by row, so a killed run loses nothing written, and a rerun skips every key already done.
Rows are filtered as `data check` would flag them (empty, cut mid-sentence, refused, another language) and
deduplicated, exactly and with the same near-duplicate search, against the input data and the rows written before.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lapidar.data.dedup import near_duplicate_pairs, normalise
from lapidar.data.scan import ends_mid_sentence, guess_language, looks_refused
from lapidar.errors import UserError

__all__ = [
    "MODES",
    "Endpoint",
    "SynthOptions",
    "SynthResult",
    "Task",
    "parse_json_reply",
    "run_synth",
    "sidecar_path",
]

MODES = ("answer", "paraphrase", "seeds", "documents")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def sidecar_path(out: Path) -> Path:
    """OUT.synth.jsonl: the inputs dropped, with their reason (and the run's bookkeeping)."""
    return out.with_name(out.name + ".synth.jsonl")


# ---------------------------------------------------------------- the endpoint


@dataclass
class Endpoint:
    """An OpenAI-compatible chat endpoint (`{base_url}/chat/completions`), retried with backoff, rate-limited."""

    base_url: str
    model: str
    api_key: str | None = None
    key_env: str = "OPENAI_API_KEY"
    timeout: float = 120.0
    retries: int = 4
    rate_limit: float | None = None  # requests per second, all threads together
    backoff: float = 1.0
    temperature: float = 0.7
    _last: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def _wait_turn(self) -> None:
        if not self.rate_limit:
            return
        with self._lock:
            gap = 1.0 / self.rate_limit - (time.monotonic() - self._last)
            if gap > 0:
                time.sleep(gap)
            self._last = time.monotonic()

    def chat(
        self, messages: list[dict[str, str]], temperature: float = 0.7, max_tokens: int = 1024
    ) -> tuple[str, dict]:
        """(reply text, usage) for one request; UserError when the endpoint cannot be used at all."""
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            self._wait_turn()
            try:
                r = httpx.post(self.url, json=body, headers=headers, timeout=self.timeout)
            except httpx.HTTPError as e:
                problem = f"cannot reach {self.url} ({type(e).__name__}: {e})"
                continue
            if r.status_code in (401, 403):
                raise UserError(
                    f"{self.url} refused the API key (HTTP {r.status_code}); set ${self.key_env} to a key it accepts "
                    f"(or pass --api-key-env NAME)"
                )
            if r.status_code in RETRY_STATUS:
                problem = f"{self.url} answered HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code >= 400:
                raise UserError(f"{self.url} answered HTTP {r.status_code}: {r.text[:300].strip()}")
            try:
                data = r.json()
                text = data["choices"][0]["message"]["content"] or ""
            except (ValueError, KeyError, IndexError, TypeError):
                raise UserError(
                    f"{self.url} did not answer like an OpenAI chat endpoint (got {r.text[:120]!r}); --base-url is "
                    "the address that ends in /v1, e.g. http://127.0.0.1:8000/v1"
                ) from None
            return text, data.get("usage") or {}
        raise UserError(f"{problem}; gave up after {self.retries + 1} tries; is the server up and --base-url right?")


# ---------------------------------------------------------------- prompts and replies


def parse_json_reply(text: str) -> Any:
    """The first JSON object or array in a reply (``` fences and chatter around it ignored); None when none parses."""
    cleaned = re.sub(r"```(?:json)?", "", text)
    decoder = json.JSONDecoder()
    for i, ch in enumerate(cleaned):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(cleaned[i:])
                return value
            except ValueError:
                continue
    return None


def _pairs(value: Any) -> list[tuple[str, str]]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("question"), str) and isinstance(item.get("answer"), str):
            out.append((item["question"].strip(), item["answer"].strip()))
    return out


def _examples_block(examples: list[tuple[str, str]]) -> str:
    return "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in examples)


JSON_PAIR = 'Reply with JSON only: {"question": "...", "answer": "..."}.'


@dataclass(frozen=True)
class Task:
    """One request: its key, the messages sent, how to make rows from the reply, and what it is about."""

    key: str
    messages: list[dict[str, str]]
    make: Callable[[str], list[tuple[list[dict[str, str]], dict[str, Any]]] | str]  # rows, or the drop reason
    question: str = ""  # the input question (for language and dedup checks)


def _key(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


def answer_task(conv: list[dict[str, str]], system: str | None) -> Task:
    """The stronger model answers the conversation's last question."""
    prompt = conv[:-1] if conv and conv[-1]["role"] == "assistant" else conv
    question = prompt[-1]["content"] if prompt else ""
    sent = [m for m in prompt if not (system and m["role"] == "system")]
    if system:
        sent = [{"role": "system", "content": system}, *sent]

    def make(reply: str):
        return [([*prompt, {"role": "assistant", "content": reply.strip()}], {})]

    return Task("answer:" + _key(json.dumps(prompt, ensure_ascii=False)), sent, make, question)


def paraphrase_task(conv: list[dict[str, str]], n: int, endpoint: Endpoint | None) -> Task:
    """A new phrasing of the conversation's last question; the answer kept, or written again when `endpoint`."""
    question = next(m["content"] for m in reversed(conv) if m["role"] == "user")
    answer = conv[-1]["content"] if conv[-1]["role"] == "assistant" else ""
    ask = (
        "Rewrite this question so it asks exactly the same thing in different words, in the same language and tone."
        f'\n\nQuestion: {question}\n\nReply with JSON only: {{"question": "..."}}'
    )

    def make(reply: str):
        value = parse_json_reply(reply)
        new = value.get("question") if isinstance(value, dict) else None
        if not isinstance(new, str) or not new.strip():
            return "unparseable"
        new = new.strip()
        if normalise(new) == normalise(question):
            return "same as the input"
        prompt = [m for m in conv[:-1] if m["role"] != "user" or m["content"] != question] + [
            {"role": "user", "content": new}
        ]
        text = answer
        if endpoint is not None:
            text, _ = endpoint.chat(prompt)
        return [([*prompt, {"role": "assistant", "content": text.strip()}], {"paraphrase_of": question})]

    return Task(f"paraphrase:{n}:" + _key(question), [{"role": "user", "content": ask}], make, question)


def seeds_task(i: int, examples: list[tuple[str, str]], k: int = 3) -> Task:
    """A new pair in the domain and style of `k` examples drawn (seeded by `i`) from the user's data."""
    rng = random.Random(i)
    shown = rng.sample(examples, min(k, len(examples)))
    ask = (
        "Here are examples of questions and the answers we want:\n\n"
        f"{_examples_block(shown)}\n\nWrite one NEW question of the same kind (a different case, not a rewording) "
        f"and the answer in the same style, in the same language. {JSON_PAIR}"
    )

    def make(reply: str):
        pairs = _pairs(parse_json_reply(reply))
        if not pairs:
            return "unparseable"
        q, a = pairs[0]
        return [([{"role": "user", "content": q}, {"role": "assistant", "content": a}], {})]

    return Task(f"seed:{i}", [{"role": "user", "content": ask}], make, shown[0][0] if shown else "")


def document_task(file: str, index: int, text: str, per_chunk: int) -> Task:
    """Up to `per_chunk` pairs answered by one passage; each row records the passage it came from."""
    ask = (
        f"Passage from {Path(file).name}:\n\n{text}\n\nWrite {per_chunk} question(s) a user could ask that this "
        "passage answers, each with the answer taken from the passage only, in the passage's language. Reply with "
        'JSON only: [{"question": "...", "answer": "..."}, ...]'
    )

    def make(reply: str):
        pairs = _pairs(parse_json_reply(reply))
        if not pairs:
            return "unparseable"
        source = {"file": file, "chunk": index, "passage": text}
        return [
            ([{"role": "user", "content": q}, {"role": "assistant", "content": a}], {"source": source})
            for q, a in pairs[:per_chunk]
        ]

    return Task(f"doc:{file}#{index}", [{"role": "user", "content": ask}], make, text[:500])


# ---------------------------------------------------------------- filters


def drop_reason(question: str, answer: str, language: str | None, punctuated: bool) -> str | None:
    """Why a generated row is not kept (the checks `data check` makes), or None."""
    if not question.strip() or not answer.strip():
        return "empty"
    if looks_refused(answer):
        return "refused"
    if ends_mid_sentence(answer, punctuated):
        return "truncated"
    if language and language != "und":
        got = guess_language(answer + " " + question)
        if got not in ("und", language):
            return f"wrong language ({got}, expected {language})"
    return None


class Seen:
    """Questions already in the data or written: exact (normalised) and near duplicates (`data check`'s search)."""

    def __init__(self, questions: list[str], threshold: float):
        self.threshold = threshold
        self.texts: list[str] = []
        self.keys: set[str] = set()
        for q in questions:
            self.add(q)

    def add(self, question: str) -> None:
        self.texts.append(question)
        self.keys.add(normalise(question))

    def duplicate(self, question: str) -> str | None:
        if normalise(question) in self.keys:
            return "duplicate"
        last = len(self.texts)
        if last and any(last in (p.a, p.b) for p in near_duplicate_pairs([*self.texts, question], self.threshold)):
            return "near-duplicate"
        return None


# ---------------------------------------------------------------- the run


@dataclass
class SynthOptions:
    out: Path
    max_rows: int | None = None
    max_cost: float | None = None
    price_in: float = 0.0  # per million prompt tokens
    price_out: float = 0.0  # per million completion tokens
    concurrency: int = 4
    judge: bool = False
    min_score: int = 4
    near_threshold: float = 0.8
    language: str | None = None


@dataclass
class SynthResult:
    written: int = 0
    skipped_done: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    seconds: float = 0.0
    stop_reason: str = "all inputs done"

    def cost(self, opts: SynthOptions) -> float:
        return (self.prompt_tokens * opts.price_in + self.completion_tokens * opts.price_out) / 1e6


def _done_keys(out: Path) -> tuple[set[str], list[str]]:
    """Keys already handled by an earlier run (written or dropped), and the questions it wrote."""
    done: set[str] = set()
    questions: list[str] = []
    for path in (out, sidecar_path(out)):
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # the half line a kill left: that key is simply done again
            key = (row.get("meta") or {}).get("synth_key") or row.get("synth_key")
            if key:
                done.add(key)
            msgs = row.get("messages")
            if isinstance(msgs, list):
                questions += [m.get("content", "") for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
    return done, questions


JUDGE = (
    "Grade this training example for a fine-tuned assistant from 1 (useless or wrong) to 5 (correct, helpful, "
    'well written).\n\nQuestion: {q}\n\nAnswer: {a}\n\nReply with JSON only: {{"score": N}}'
)


def run_synth(
    tasks: list[Task],
    endpoint: Endpoint,
    opts: SynthOptions,
    existing_questions: list[str],
    on_progress: Callable[[SynthResult], None] | None = None,
    punctuated: bool = True,
) -> SynthResult:
    """Send every task not done yet, filter and deduplicate the rows, append them to `opts.out` as they come."""
    result = SynthResult()
    done, written_questions = _done_keys(opts.out)
    todo = [t for t in tasks if t.key not in done]
    result.skipped_done = len(tasks) - len(todo)
    seen = Seen(existing_questions + written_questions, opts.near_threshold)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    total_written = len(written_questions)

    def drop(log, key: str, reason: str, detail: str = "") -> None:
        result.dropped[reason.split(" (")[0]] = result.dropped.get(reason.split(" (")[0], 0) + 1
        log.write(json.dumps({"synth_key": key, "reason": reason, "detail": detail[:300]}, ensure_ascii=False) + "\n")
        log.flush()

    def work(task: Task) -> tuple[Task, str, list | str, dict, list[int] | None]:
        """One task in a worker thread: the request, its rows (made once: paraphrase may ask the endpoint again),
        and with --judge a score per row."""
        reply, usage = endpoint.chat(task.messages)
        made = task.make(reply)
        scores = None
        if opts.judge and not isinstance(made, str):
            scores = []
            for msgs, _ in made:
                verdict, u2 = endpoint.chat(
                    [{"role": "user", "content": JUDGE.format(q=msgs[-2]["content"], a=msgs[-1]["content"])}],
                    temperature=0.0,
                )
                for k in ("prompt_tokens", "completion_tokens"):
                    usage[k] = usage.get(k, 0) + u2.get(k, 0)
                value = parse_json_reply(verdict)
                score = value.get("score") if isinstance(value, dict) else None
                scores.append(int(score) if isinstance(score, int | float) else 0)
        return task, reply, made, usage, scores

    with (
        opts.out.open("a", encoding="utf-8") as out,
        sidecar_path(opts.out).open("a", encoding="utf-8") as log,
        ThreadPoolExecutor(max_workers=max(1, opts.concurrency)) as pool,
    ):
        queue: Iterator[Task] = iter(todo)
        running: set[Future] = set()

        def fill() -> None:
            while len(running) < max(1, opts.concurrency):
                task = next(queue, None)
                if task is None:
                    return
                running.add(pool.submit(work, task))

        fill()
        try:
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    running.discard(fut)
                    task, reply, made, usage, scores = fut.result()  # a UserError (401, wrong URL) ends the run here
                    result.requests += 1
                    result.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                    result.completion_tokens += int(usage.get("completion_tokens") or 0)
                    if isinstance(made, str):
                        drop(log, task.key, made, reply)
                        continue
                    kept = 0
                    for i, (msgs, meta) in enumerate(made):
                        key = task.key if len(made) == 1 else f"{task.key}/{i}"
                        q, a = msgs[-2]["content"], msgs[-1]["content"]
                        reason = drop_reason(q, a, opts.language, punctuated) or seen.duplicate(q)
                        if reason is None and scores is not None:
                            score = scores[i]
                            reason = f"judged {score}/5" if score < opts.min_score else None
                            meta = {**meta, "judge_score": score}
                        if reason is not None:
                            drop(log, key, reason, a)
                            continue
                        if opts.max_rows is not None and total_written >= opts.max_rows:
                            break
                        row = {"messages": msgs, "meta": {"synth_key": key, **meta}}
                        out.write(json.dumps(row, ensure_ascii=False) + "\n")
                        out.flush()
                        seen.add(q)
                        result.written += 1
                        total_written += 1
                        kept += 1
                    if len(made) > 1:  # a document chunk: its own key marks it done, whatever was kept
                        log.write(json.dumps({"synth_key": task.key, "reason": "done", "kept": kept}) + "\n")
                        log.flush()
                    result.seconds = time.monotonic() - started
                    if on_progress:
                        on_progress(result)
                if opts.max_rows is not None and total_written >= opts.max_rows:
                    result.stop_reason = f"--max-rows {opts.max_rows} reached"
                    break
                if opts.max_cost is not None and result.cost(opts) >= opts.max_cost:
                    result.stop_reason = f"--max-cost {opts.max_cost:g} reached ({result.cost(opts):.4f} spent)"
                    break
                fill()
        finally:
            for fut in running:
                fut.cancel()
    result.seconds = time.monotonic() - started
    return result
