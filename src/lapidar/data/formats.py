"""Read training files and convert each row into one internal form: a list of chat messages.

Readers (by file extension) yield `(row_number, dict)`; formats (a registry: name -> detector + converter) turn a
row into `[{"role": ..., "content": ...}, ...]`. Every error names the file, the row and the field.
"""

from __future__ import annotations

import csv
import importlib.resources
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lapidar.errors import UserError, unknown_choice

__all__ = ["FORMATS", "Example", "bundled_example", "detect_format", "load_examples", "read_rows"]

Message = dict[str, str]


@dataclass(frozen=True)
class Example:
    """One training example: chat messages ending with an assistant answer, and where it came from."""

    messages: list[Message]
    source: str  # "file:row"


def bundled_example(name: str) -> tuple[Path, Path]:
    """Paths of a bundled dataset (`example:claims`): (train, validation)."""
    files = importlib.resources.files("lapidar.resources")
    known = {"claims": ("claims_train.jsonl", "claims_validation.jsonl")}
    if name not in known:
        raise unknown_choice("bundled example", name, [f"example:{k}" for k in known])
    train, val = known[name]
    return Path(str(files.joinpath(train))), Path(str(files.joinpath(val)))


# ---------------------------------------------------------------- readers


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(
                    f"{path}: line {lineno}: not valid JSON ({e.msg} at column {e.colno}); each line of a .jsonl "
                    "file must be one JSON object"
                ) from None


def _read_json(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: line {e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise UserError(f"{path}: expected a JSON array of rows (or an object holding one array of rows)")
        data = lists[0]
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON array of rows, got {type(data).__name__}")
    yield from enumerate(data, start=1)


def _read_csv(path: Path) -> Iterator[tuple[int, Any]]:
    text = path.read_text(encoding="utf-8-sig")
    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    reader = csv.DictReader(text.splitlines(keepends=True), dialect=dialect)
    for i, row in enumerate(reader, start=2):  # row 1 is the header
        yield i, {k: v for k, v in row.items() if k is not None}


READERS: dict[str, Callable[[Path], Iterator[tuple[int, Any]]]] = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".tsv": _read_csv,
}


def read_rows(path: Path) -> list[tuple[int, Any]]:
    """Read every row of a data file as `(row_number, value)`."""
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise unknown_choice(f"data file type for {path}", path.suffix or "(none)", list(READERS))
    try:
        return list(reader(path))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: byte {e.start}: not UTF-8 text; re-save the file as UTF-8") from None


# ---------------------------------------------------------------- formats


def _text(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"{where}: field {field!r}: expected text, got {type(value).__name__}")
    return value


def _from_messages(row: dict, where: str) -> list[Message]:
    msgs = row["messages"]
    if not isinstance(msgs, list):
        raise UserError(f"{where}: field 'messages': expected a list of {{role, content}} objects")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise UserError(f"{where}: field 'messages[{i}]': expected an object with 'role' and 'content'")
        out.append({"role": m["role"], "content": _text(m["content"], where, f"messages[{i}].content")})
    return out


_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _from_sharegpt(row: dict, where: str) -> list[Message]:
    turns = row["conversations"]
    if not isinstance(turns, list):
        raise UserError(f"{where}: field 'conversations': expected a list of {{from, value}} objects")
    out = [{"role": "system", "content": _text(row["system"], where, "system")}] if row.get("system") else []
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or "from" not in t or "value" not in t:
            raise UserError(f"{where}: field 'conversations[{i}]': expected an object with 'from' and 'value'")
        role = _SHAREGPT_ROLES.get(str(t["from"]).lower())
        if role is None:
            raise UserError(
                f"{where}: field 'conversations[{i}].from': unknown speaker {t['from']!r}; "
                f"expected one of {', '.join(_SHAREGPT_ROLES)}"
            )
        out.append({"role": role, "content": _text(t["value"], where, f"conversations[{i}].value")})
    return out


def _from_alpaca(row: dict, where: str) -> list[Message]:
    prompt = _text(row["instruction"], where, "instruction")
    if row.get("input"):
        prompt = f"{prompt}\n\n{_text(row['input'], where, 'input')}"
    out = [{"role": "system", "content": _text(row["system"], where, "system")}] if row.get("system") else []
    for i, pair in enumerate(row.get("history") or []):
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise UserError(f"{where}: field 'history[{i}]': expected a [question, answer] pair")
        out += [{"role": "user", "content": str(pair[0])}, {"role": "assistant", "content": str(pair[1])}]
    out += [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": _text(row["output"], where, "output")},
    ]
    return out


def _pair(prompt_key: str, answer_key: str) -> Callable[[dict, str], list[Message]]:
    def convert(row: dict, where: str) -> list[Message]:
        return [
            {"role": "user", "content": _text(row[prompt_key], where, prompt_key)},
            {"role": "assistant", "content": _text(row[answer_key], where, answer_key)},
        ]

    return convert


# name -> (fields that identify it, converter). Checked in order; the first whose fields are all present wins.
FORMATS: dict[str, tuple[tuple[str, ...], Callable[[dict, str], list[Message]]]] = {
    "messages": (("messages",), _from_messages),
    "sharegpt": (("conversations",), _from_sharegpt),
    "alpaca": (("instruction", "output"), _from_alpaca),
    "prompt-completion": (("prompt", "completion"), _pair("prompt", "completion")),
    "question-answer": (("question", "answer"), _pair("question", "answer")),
    "input-output": (("input", "output"), _pair("input", "output")),
}


def detect_format(row: Any, where: str) -> str:
    """Name the format of one row from the fields it has."""
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object per row, got {type(row).__name__}")
    for name, (keys, _) in FORMATS.items():
        if all(k in row for k in keys):
            return name
    wanted = "; ".join(f"{n}: {', '.join(k)}" for n, (k, _) in FORMATS.items())
    raise UserError(f"{where}: cannot tell the format from fields {sorted(row)}; expected one of — {wanted}")


def _check_conversation(messages: list[Message], where: str) -> None:
    roles = [m["role"] for m in messages]
    allowed = {"system", "user", "assistant", "tool"}
    for i, r in enumerate(roles):
        if r not in allowed:
            raise UserError(f"{where}: message {i}: unknown role {r!r}; expected one of {', '.join(sorted(allowed))}")
    if "assistant" not in roles:
        raise UserError(f"{where}: no assistant message, so there is nothing to learn; add the expected answer")
    if not any(m["content"].strip() for m in messages if m["role"] == "assistant"):
        raise UserError(f"{where}: every assistant answer is empty; fill in the answer or remove the row")


def load_examples(path: Path, fmt: str | None = None) -> tuple[list[Example], str]:
    """Read a file and convert every row to messages. Returns (examples, format name)."""
    rows = read_rows(path)
    if not rows:
        raise UserError(f"{path}: the file holds no rows")
    if fmt is None:
        fmt = detect_format(rows[0][1], f"{path}: row {rows[0][0]}")
    elif fmt not in FORMATS:
        raise unknown_choice("data format", fmt, list(FORMATS))
    keys, convert = FORMATS[fmt]
    examples = []
    for rowno, row in rows:
        where = f"{path}: row {rowno}"
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")
        missing = [k for k in keys if k not in row]
        if missing:
            raise UserError(
                f"{where}: missing field {missing[0]!r} (the file's first row is in {fmt} format, which needs "
                f"{', '.join(keys)}); fix the row or remove it"
            )
        messages = convert(row, where)
        _check_conversation(messages, where)
        examples.append(Example(messages=messages, source=where))
    return examples, fmt
