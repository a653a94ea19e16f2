"""Safe fixes for a data file: every change is logged with its row, and the input is never touched.

Fixes are applied to the raw rows (so the output keeps the input's format and column names); decisions about
dropping rows are made on the converted examples after the fixes, so a row repaired into a duplicate of another
is caught. Order: unicode repair -> whitespace -> (control tokens) -> (personal data) -> drop empty answers ->
drop exact duplicates -> (drop near-duplicates) -> (drop rows longer than max_length).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from lapidar.data import scan
from lapidar.data.dedup import UnionFind, near_duplicate_pairs
from lapidar.data.formats import Dataset, convert_rows
from lapidar.data.quality import exact_key, near_text, token_stats

__all__ = ["CleanOptions", "CleanResult", "clean"]


@dataclass(frozen=True)
class CleanOptions:
    """Which fixes to apply. The defaults are the ones that cannot change what a row means."""

    fix_unicode: bool = True  # repair mojibake, drop control characters, NFC
    whitespace: bool = True  # CRLF, trailing spaces, runs of blank lines, surrounding whitespace
    drop_empty: bool = True  # rows whose answer is missing or empty
    drop_duplicates: bool = True  # exact duplicates (the first is kept)
    near_duplicates: bool = False  # near-duplicates (the first of each group is kept)
    near_threshold: float = 0.8
    strip_control_tokens: bool = False  # remove <|im_start|>, <|im_end|>, <|endoftext|>, ...
    mask_pii: bool = False  # emails, phones, cards, IBANs, ids -> [EMAIL], [PHONE], ...
    max_length: int | None = None  # drop rows longer than this many tokens (needs a tokenizer)


@dataclass
class CleanResult:
    """The cleaned rows (raw, ready to write), the change log, and counts per kind of change."""

    rows: list[Any]
    log: list[dict[str, Any]]
    counts: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    edited_rows: int = 0


def _fixes(opts: CleanOptions) -> list[tuple[str, Callable[[str], str]]]:
    fixes: list[tuple[str, Callable[[str], str]]] = []
    if opts.fix_unicode:
        fixes.append(("unicode", scan.fix_unicode))
    if opts.whitespace:
        fixes.append(("whitespace", scan.normalise_whitespace))
    if opts.strip_control_tokens:
        fixes.append(("control-tokens", scan.strip_control_tokens))
    if opts.mask_pii:
        fixes.append(("personal-data", lambda t: scan.mask_pii(t)[0]))
    return fixes


def _fix_value(value: Any, fixes: list, ref: str, path: str, log: list[dict[str, Any]]) -> Any:
    """Apply the string fixes to every string inside a row (dict keys are left alone), logging each change."""
    if isinstance(value, dict):
        return {k: _fix_value(v, fixes, ref, f"{path}.{k}" if path else str(k), log) for k, v in value.items()}
    if isinstance(value, list):
        return [_fix_value(v, fixes, ref, f"{path}[{i}]", log) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    for name, fix in fixes:
        fixed = fix(value)
        if fixed != value:
            entry: dict[str, Any] = {"row": ref, "action": "edit", "fix": name, "field": path or "(row)"}
            if name == "personal-data":
                # The log must not leak what was masked: only the masked forms are written.
                entry["masked"] = [p.masked for p in scan.find_pii(value)]
            else:
                entry["before"], entry["after"] = value, fixed
            log.append(entry)
            value = fixed
    return value


def clean(ds: Dataset, opts: CleanOptions, tokenizer=None) -> CleanResult:
    """Clean a loaded dataset; `tokenizer` is needed only for `opts.max_length`."""
    log: list[dict[str, Any]] = []
    fixes = _fixes(opts)
    rows = [replace(r, value=_fix_value(r.value, fixes, r.ref, "", log)) for r in ds.rows]
    examples = convert_rows(rows, ds.fmt, ds.columns)
    edited = len({e["row"] for e in log})

    drop: dict[int, str] = {}
    if opts.drop_empty:
        for i, ex in enumerate(examples):
            answers = ex.answers()
            if not answers or any(not text.strip() for _, text in answers):
                drop[i] = "empty answer" if answers else "no answer"
    if opts.drop_duplicates:
        first: dict[str, int] = {}
        for i, ex in enumerate(examples):
            if i not in drop and (j := first.setdefault(exact_key(ex), i)) != i:
                drop[i] = f"exact duplicate of {examples[j].ref}"
    if opts.near_duplicates:
        keep = [i for i in range(len(examples)) if i not in drop]
        pairs = near_duplicate_pairs([near_text(examples[i]) for i in keep], opts.near_threshold)
        uf = UnionFind(len(keep))
        best: dict[int, float] = {}
        for p in pairs:
            uf.union(p.a, p.b)
            best[p.b] = max(best.get(p.b, 0.0), p.similarity)
        for k, i in enumerate(keep):
            root = uf.find(k)
            if root != k:
                drop[i] = f"near duplicate of {examples[keep[root]].ref} ({best.get(k, 1.0):.0%} similar)"
    if opts.max_length is not None:
        if tokenizer is None:
            raise ValueError("clean(max_length=...) needs a tokenizer")
        for i, ex in enumerate(examples):
            if i not in drop:
                n = token_stats(ex, tokenizer, opts.max_length).n_tokens
                if n > opts.max_length:
                    drop[i] = f"longer than max_length={opts.max_length} tokens ({n})"

    counts: Counter[str] = Counter(f"edited: {e['fix']}" for e in log)
    for i, reason in drop.items():
        log.append({"row": examples[i].ref, "action": "drop", "reason": reason})
        counts["dropped: " + reason.split(" of ")[0].split(" (")[0].split(" tokens")[0]] += 1
    order = {r.ref: i for i, r in enumerate(rows)}
    log.sort(key=lambda e: order[e["row"]])  # stable: a row's edits keep their order, its drop comes last
    kept = [r.value for i, r in enumerate(rows) if i not in drop]
    return CleanResult(kept, log, counts, len(drop), edited)
