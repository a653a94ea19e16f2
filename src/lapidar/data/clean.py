"""Safe fixes for a data file: every change is logged with its row, and the input is never touched.

Fixes are applied to the raw rows (so the output keeps the input's format and column names); decisions about
dropping rows are made on the converted examples after the fixes, so a row repaired into a duplicate of another
is caught. Order: what reading noted (numbers as text, non-finite numbers, consecutive turns merged) -> unicode
repair -> whitespace -> (control tokens) -> (personal data) -> drop rows with a key given twice -> drop empty
answers -> drop exact duplicates -> (drop near-duplicates) -> (drop rows longer than max_length).

Every note reading and converting left on a row (`Example.notes`) gets a log entry saying what was done about it:
an edit, a drop, or `"action": "note"` with the note when the row is written as it is (a system turn in the middle
of a conversation: moving it would change what the conversation means).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from lapidar.data import scan
from lapidar.data.dedup import UnionFind, near_duplicate_pairs
from lapidar.data.formats import Dataset, convert_rows
from lapidar.data.quality import exact_key, near_text, token_stats
from lapidar.data.readers import note_field, note_kind, turn_role, turn_speaker_key

__all__ = ["DUPLICATE_KEYS", "CleanOptions", "CleanResult", "clean"]

# What to do with a row that gives a key twice: the file cannot say which value was meant.
DUPLICATE_KEYS = ("drop", "keep-last")


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
    duplicate_keys: str = "drop"  # a row with a key given twice: drop it, or keep-last (the value JSON keeps)
    merge_turns: bool = True  # two user (or two assistant) turns in a row -> one turn, a blank line between


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


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _as_text(value: Any, path: str, columns: dict[str, str]) -> tuple[Any, Any] | None:
    """`value` with the number at field `path` ("output", "messages[1].content") written as text, and that number;
    None when the path does not lead to a number. The first part may be a `--columns` target: its column is used."""
    parts = [int(i) if i else key for key, i in _PATH_PART.findall(path)]
    if not parts or not isinstance(parts[0], str):
        return None
    parts[0] = columns.get(parts[0], parts[0])

    def rebuild(node: Any, rest: list) -> tuple[Any, Any] | None:
        if not rest:
            return (str(node), node) if isinstance(node, bool | int | float) else None
        head, tail = rest[0], rest[1:]
        if isinstance(head, int) and isinstance(node, list) and head < len(node):
            done = rebuild(node[head], tail)
            return None if done is None else ([*node[:head], done[0], *node[head + 1 :]], done[1])
        if isinstance(head, str) and isinstance(node, dict) and head in node:
            done = rebuild(node[head], tail)
            return None if done is None else ({**node, head: done[0]}, done[1])
        return None

    return rebuild(value, parts)


def _merge_turns(value: Any) -> tuple[Any, list[tuple[str, list[int]]], list[str]]:
    """Merge each run of user (or assistant) turns into one turn, texts joined by a blank line.

    Returns (new value, merged runs as (list key, original indices), runs left as they are: their first field).
    A run is merged only when its turns are the same but for their text and every text is plain text."""
    if not isinstance(value, dict):
        return value, [], []
    out = dict(value)
    merged: list[tuple[str, list[int]]] = []
    left: list[str] = []
    for key, turns in value.items():
        if not (isinstance(turns, list) and turns and turn_speaker_key(turns[0])):
            continue
        kept: list[Any] = []
        indexes: list[list[int]] = []
        for i, turn in enumerate(turns):
            role, previous = turn_role(turn), kept[-1] if kept else None
            if previous is not None and role in ("user", "assistant") and turn_role(previous) == role:
                text_key = "content" if turn_speaker_key(turn) == "role" else "value"
                a, b = previous.get(text_key), turn.get(text_key)
                same = {k: v for k, v in previous.items() if k != text_key} == {
                    k: v for k, v in turn.items() if k != text_key
                }
                if isinstance(a, str) and isinstance(b, str) and same:
                    kept[-1] = {**previous, text_key: f"{a.rstrip()}\n\n{b.lstrip()}"}
                    indexes[-1].append(i)
                    continue
                left.append(f"{key}[{i}]")
            kept.append(turn)
            indexes.append([i])
        if len(kept) < len(turns):
            out[key] = kept
            merged += [(key, run) for run in indexes if len(run) > 1]
    return out, merged, left


def _act_on_notes(
    ds: Dataset, opts: CleanOptions, log: list[dict[str, Any]]
) -> tuple[list[Any], dict[int, tuple[str, str]]]:
    """What `clean` does about each row note: the raw values after these edits, and the rows to drop
    (index -> (kind, reason)). Every note gets a log entry."""
    values = [r.value for r in ds.rows]
    drop: dict[int, tuple[str, str]] = {}
    for i, (row, ex) in enumerate(zip(ds.rows, ds.examples, strict=True)):
        for note in ex.notes:
            kind, field = note_kind(note), note_field(note) or "(row)"
            entry: dict[str, Any] = {"row": row.ref, "action": "edit", "fix": kind, "field": field, "note": note}
            if kind == "duplicate-key" and opts.duplicate_keys == "drop":
                drop.setdefault(i, ("duplicate-key", f"{note}; which value was meant cannot be told"))
                continue  # the drop's log entry is written with the others
            if kind == "duplicate-key":
                entry["done"] = "kept the last value (--duplicate-keys keep-last)"
            elif kind == "duplicate-key-same":
                entry["done"] = "written once"
            elif kind == "non-finite-number":
                entry["done"] = "written as text"
            elif kind == "number-as-text":
                done = _as_text(values[i], field, ds.columns)
                if done is None:
                    entry |= {"action": "note", "done": "left as it is (the field could not be found in the row)"}
                else:
                    values[i] = done[0]
                    entry |= {"before": done[1], "after": str(done[1]), "done": "written as text"}
            elif kind == "consecutive-turns" and opts.merge_turns:
                continue  # merged below, one entry per merged run
            elif kind == "consecutive-turns":
                entry |= {"action": "note", "done": "left as it is (--keep-consecutive-turns)"}
            else:
                entry |= {"action": "note", "done": "left as it is"}
            log.append(entry)
        if opts.merge_turns and any(note_kind(n) == "consecutive-turns" for n in ex.notes):
            values[i], merged, left = _merge_turns(values[i])
            notes = {note_field(n): n for n in ex.notes if note_kind(n) == "consecutive-turns"}
            for key, run in merged:
                log.append(
                    {
                        "row": row.ref,
                        "action": "edit",
                        "fix": "consecutive-turns",
                        "field": f"{key}[{run[1]}]",
                        "note": notes.get(f"{key}[{run[1]}]", ""),
                        "done": f"merged {', '.join(f'{key}[{j}]' for j in run)} into one turn",
                    }
                )
            for field in left:
                log.append(
                    {
                        "row": row.ref,
                        "action": "note",
                        "fix": "consecutive-turns",
                        "field": field,
                        "note": notes.get(field, ""),
                        "done": "left as it is (the turns differ in more than their text, or it is not plain text)",
                    }
                )
    return values, drop


def clean(ds: Dataset, opts: CleanOptions, tokenizer=None) -> CleanResult:
    """Clean a loaded dataset; `tokenizer` is needed only for `opts.max_length`."""
    if opts.duplicate_keys not in DUPLICATE_KEYS:
        raise ValueError(f"duplicate_keys must be one of {DUPLICATE_KEYS}")
    log: list[dict[str, Any]] = []
    values, by_note = _act_on_notes(ds, opts, log)
    fixes = _fixes(opts)
    rows = [replace(r, value=_fix_value(v, fixes, r.ref, "", log)) for r, v in zip(ds.rows, values, strict=True)]
    examples = convert_rows(rows, ds.fmt, ds.columns)
    edited = len({e["row"] for e in log if e["action"] == "edit"})

    drop: dict[int, str] = {i: reason for i, (_, reason) in by_note.items()}
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

    counts: Counter[str] = Counter(f"{'edited' if e['action'] == 'edit' else 'left as it is'}: {e['fix']}" for e in log)
    for i, reason in drop.items():
        entry = {"row": examples[i].ref, "action": "drop", "reason": reason}
        if by_note.get(i, ("", ""))[1] == reason:
            entry |= {"fix": by_note[i][0], "note": reason, "done": "row dropped"}
        log.append(entry)
        kind = (
            by_note[i][0].replace("-", " ")
            if by_note.get(i, ("", ""))[1] == reason
            else reason.split(" of ")[0].split(" (")[0].split(" tokens")[0]
        )
        counts["dropped: " + kind] += 1
    order = {r.ref: i for i, r in enumerate(rows)}
    log.sort(key=lambda e: order[e["row"]])  # stable: a row's edits keep their order, its drop comes last
    kept = [r.value for i, r in enumerate(rows) if i not in drop]
    return CleanResult(kept, log, counts, len(drop), edited)
