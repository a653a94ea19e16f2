"""Rows in and out of files: JSON, JSONL, CSV/TSV, Parquet, plain text/Markdown, and directories of them.

Every row keeps where it came from, so each message can point at it: `line N` for JSONL (the physical line) and
text files (the line a block starts on), `row N` for JSON arrays and Parquet (1-based) and for CSV/TSV (the
spreadsheet row: the header is row 1, so a quoted cell spanning several lines still counts as one row).

Plain `.txt`/`.md` files are raw text for continued pretraining. They are split into blocks at blank lines (one or
more empty lines), one example per block — the same unit as `datasets`' text loader with `sample_by="paragraph"`.
Blocks, rather than whole files, give duplicate detection, length checks and train/validation splits a useful
granularity; an objective that wants long documents packs consecutive blocks back together.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lapidar.errors import UserError, unknown_choice
from lapidar.io import write_text

__all__ = [
    "READERS",
    "SPEAKERS",
    "WRITERS",
    "Row",
    "json_type",
    "note_field",
    "note_kind",
    "read_rows",
    "turn_role",
    "turn_speaker_key",
    "write_rows",
]


@dataclass(frozen=True)
class Row:
    """One raw row: its value (usually a dict), the file it came from and its position there."""

    value: Any
    path: Path
    ref: str  # "line 3" / "row 3", or "sub/a.jsonl: line 3" when the input is a directory
    # What reading changed or could not keep, each naming the field: "field 'instruction': the key appears twice ...".
    # The quality report shows them as warnings and `data clean` says what it does about them.
    notes: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """`file: line N`, for error messages."""
        return f"{self.path}: {self.ref.rsplit(': ', 1)[-1]}"


# ---------------------------------------------------------------- readers: Path -> [(ref, value)]


def _decode(path: Path) -> str:
    """Read a text file as UTF-8 (BOM allowed); UTF-16 with a BOM (Excel's "Unicode text") is accepted too."""
    raw = path.read_bytes()
    try:
        if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return raw.decode("utf-16")
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(
            f"{path}: line {line}: byte {e.start} is not UTF-8 text; re-save the file as UTF-8 "
            "(in Excel: Save As > CSV UTF-8)"
        ) from None


def _too_deep(path: Path, where: str) -> UserError:
    # json's C decoder recurses once per nesting level; Python's recursion limit (1000) ends it.
    return UserError(f"{path}: {where}nested more than about 1000 levels deep; this is not a file of examples")


# ---------------------------------------------------------------- what JSON parsing would change silently
#
# Python's json module keeps the last value of a key given twice and reads 1e999 as infinity (and accepts the
# non-standard NaN/Infinity). Neither may pass unnoticed. The decoder's hooks mark such values cheaply while parsing
# (a dict subclass that remembers the pairs, a str subclass holding the number as written); only a row where a hook
# fired is walked again, to name each field by its path and turn the marks back into plain values.


class _Repeated(dict):
    """An object with a key given more than once: the dict JSON keeps (last values), plus every pair as written."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


class _NonFinite(str):
    """A number JSON cannot hold as written in the file ("1e999", "-1e999", "NaN", "Infinity")."""

    __slots__ = ()


class _Decoder:
    """A JSON decoder whose hooks mark repeated keys and non-finite numbers; `marked` says whether one fired."""

    def __init__(self) -> None:
        self.marked = False
        self.decoder = json.JSONDecoder(
            object_pairs_hook=self._object, parse_float=self._float, parse_constant=self._constant
        )

    def _object(self, pairs: list[tuple[str, Any]]) -> dict:
        value = dict(pairs)
        if len(value) == len(pairs):
            return value
        self.marked = True
        return _Repeated(pairs)

    def _float(self, literal: str) -> float | str:
        number = float(literal)
        if math.isfinite(number):
            return number
        self.marked = True
        return _NonFinite(literal)

    def _constant(self, literal: str) -> str:
        self.marked = True
        return _NonFinite(literal)

    def decode(self, text: str) -> Any:
        self.marked = False
        return self.decoder.decode(text)


def _shown(value: Any) -> str:
    """A value as a note quotes it: text in quotes, cut at 60 characters; anything else as JSON."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = text if len(text) <= 60 else text[:57] + "…"
    return f"'{text}'" if isinstance(value, str) else text


_TIMES = {2: "twice", 3: "three times"}


def _unmark(value: Any, path: str, where: str, notes: list[str]) -> Any:
    """`value` with the decoder's marks replaced by plain dicts and strings, and a note for each mark."""
    if isinstance(value, _NonFinite):
        what = (
            f"the number {value} does not fit a 64-bit float (it would read as "
            f"{'-' if value.startswith('-') else ''}infinity)"
            if value[-1:].isdigit()
            else f"{value} is not a number JSON allows"
        )
        notes.append(f"field {path!r}: {what}; read as the text {str(value)!r}")
        return str(value)
    if isinstance(value, list):
        return [_unmark(v, f"{path}[{i}]", where, notes) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if isinstance(value, _Repeated):
        seen: dict[str, list[Any]] = {}
        for k, v in value.pairs:
            seen.setdefault(k, []).append(v)
        for k, values in seen.items():
            if len(values) == 1:
                continue
            field = f"{path}.{k}" if path else k
            times = _TIMES.get(len(values), f"{len(values)} times")
            if all(v == values[-1] for v in values):
                notes.append(f"field {field!r} appears {times} {where}, with the same value; nothing is lost")
            else:
                lost = ", ".join(_shown(v) for v in values[:-1])
                first = "the first value" if len(values) == 2 else "the earlier values"
                notes.append(
                    f"field {field!r} appears {times} {where}; {first} {lost} would be lost "
                    f"(the last, {_shown(values[-1])}, is used)"
                )
    return {k: _unmark(v, f"{path}.{k}" if path else k, where, notes) for k, v in value.items()}


# ---------------------------------------------------------------- conversations whose turns do not alternate

# Every speaker name lapidar reads, in both styles ({role, content} and ShareGPT's {from, value}), and the role it
# plays; lapidar.data.formats converts turns with it.
SPEAKERS = {
    # OpenAI / TRL
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
    # ShareGPT
    "human": "user",
    "gpt": "assistant",
    "observation": "tool",
    "function_call": "assistant",
}
# The turns that must alternate: tool results and function calls are left out (several in a row are normal, as in
# parallel calls).
_SPEAKER_ROLES = {k: v for k, v in SPEAKERS.items() if v != "tool" and k != "function_call"}


def turn_speaker_key(turn: Any) -> str | None:
    """The key that names a turn's speaker: "role" ({role, content}) or "from" (ShareGPT), else None."""
    if isinstance(turn, dict):
        if "role" in turn:
            return "role"
        if "from" in turn:
            return "from"
    return None


def turn_role(turn: Any) -> str | None:
    """system / user / assistant for a chat turn in either style; None for tool turns and anything else."""
    key = turn_speaker_key(turn)
    return _SPEAKER_ROLES.get(str(turn[key]).lower()) if key else None


def _turn_notes(value: Any) -> list[str]:
    """Notes on the turn lists of a row: two user (or assistant) turns in a row, a system turn that is not first."""
    if not isinstance(value, dict):
        return []
    notes = []
    for key, turns in value.items():
        if not (isinstance(turns, list) and turns and turn_speaker_key(turns[0])):
            continue
        previous = None
        for i, turn in enumerate(turns):
            role = turn_role(turn)
            if role is None or (role != "system" and role != previous):  # the common case, nothing to note
                previous = role  # None after a tool turn: several tool results or calls in a row are normal
                continue
            field = f"{key}[{i}]"
            if role == "system" and i > 0:
                notes.append(
                    f"field {field!r}: a system turn after the conversation has begun (the chat template puts the "
                    "system prompt first; this one is shown to the model mid-conversation)"
                )
            elif role in ("user", "assistant") and role == previous:
                notes.append(
                    f"field {field!r}: a second {role} turn in a row ({key}[{i - 1}] is a {role} turn too); the "
                    "turns of a conversation alternate between user and assistant"
                )
            previous = role
    return notes


# The kind of each note, told by the words it is written with (notes are one-line strings, see `Row.notes`);
# the quality report groups notes by kind and `data clean` decides per kind what it does.
_NOTE_KINDS = (
    ("duplicate-key-same", re.compile(r"^field .* appears .*, with the same value; nothing is lost$")),
    ("duplicate-key", re.compile(r"^field .* appears (?:twice|three times|\d+ times) ")),
    ("non-finite-number", re.compile(r"does not fit a 64-bit float|is not a number JSON allows")),
    ("number-as-text", re.compile(r"expected text, got (?:a number|true/false)")),
    ("consecutive-turns", re.compile(r"a second (?:user|assistant) turn in a row")),
    ("system-not-first", re.compile(r"a system turn after the conversation has begun")),
)
_NOTE_FIELD = re.compile(r"""^field (['"])(.*?)\1""")


def note_kind(note: str) -> str:
    """The kind of a row note: duplicate-key(-same), non-finite-number, number-as-text, consecutive-turns,
    system-not-first, or "other"."""
    return next((kind for kind, pattern in _NOTE_KINDS if pattern.search(note)), "other")


def note_field(note: str) -> str | None:
    """The field a note names ("messages[2].content"), or None."""
    m = _NOTE_FIELD.match(note)
    return m.group(2) if m else None


def _read_jsonl(path: Path) -> Iterator[tuple[str, Any, tuple[str, ...]]]:
    decoder = _Decoder()
    for lineno, line in enumerate(_decode(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = decoder.decode(line)
        except json.JSONDecodeError as e:
            raise UserError(
                f"{path}: line {lineno}: not valid JSON ({e.msg} at column {e.colno}); each line of a .jsonl "
                "file must be one JSON object"
            ) from None
        except RecursionError:
            raise _too_deep(path, f"line {lineno}: ") from None
        except ValueError as e:  # e.g. an integer of more than 4300 digits (Python's int-to-text limit)
            raise UserError(f"{path}: line {lineno}: not a readable JSON value ({e})") from None
        notes: list[str] = []
        if decoder.marked:
            value = _unmark(value, "", "on this line", notes)
        yield f"line {lineno}", value, tuple(notes)


def _columns_to_rows(path: Path, data: dict) -> list[dict] | None:
    """Column-oriented JSON (`{"col": [v1, v2]}` or pandas' `{"col": {"0": v1, "1": v2}}`) as rows, else None."""
    values = list(data.values())
    if len(values) < 1:
        return None
    if all(isinstance(v, dict) for v in values):
        indexes = [list(v) for v in values]
        if not all(i == indexes[0] and all(str(k).isdigit() for k in i) for i in indexes) or not indexes[0]:
            return None
        return [{c: data[c][k] for c in data} for k in indexes[0]]
    if all(isinstance(v, list) for v in values):
        if len({len(v) for v in values}) != 1:
            return None
        if all(isinstance(x, dict) for v in values for x in v):
            return None  # several lists of row objects: splits, not columns
        return [dict(zip(data, cells, strict=True)) for cells in zip(*values, strict=True)]
    return None


def _read_json(path: Path) -> Iterator[tuple[str, Any, tuple[str, ...]]]:
    text = _decode(path)
    if not text.strip():
        raise UserError(f"{path}: the file is empty")
    decoder = _Decoder()
    try:
        data = decoder.decode(text)
    except json.JSONDecodeError as e:
        hint = ""
        if e.msg == "Extra data" and text.lstrip().startswith("{"):
            hint = "; it looks like JSON Lines (one object per line): rename it to .jsonl"
        raise UserError(f"{path}: line {e.lineno}: not valid JSON ({e.msg} at column {e.colno}){hint}") from None
    except RecursionError:
        raise _too_deep(path, "") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits (Python's int-to-text limit)
        raise UserError(f"{path}: not a readable JSON value ({e})") from None
    if isinstance(data, _Repeated):
        # The file's outer object is not a row: a key given twice there loses a whole column or list of rows.
        key = next(k for k, n in Counter(k for k, _ in data.pairs).items() if n > 1)
        raise UserError(f"{path}: the key {key!r} appears more than once in the outer object; rename or merge them")
    if isinstance(data, dict):
        rows = _columns_to_rows(path, data)
        if rows is None:
            lists = [k for k, v in data.items() if isinstance(v, list)]
            if len(lists) > 1 and not any(isinstance(x, dict) for k in lists for x in data[k]):
                sizes = ", ".join(f"{k}: {len(data[k])}" for k in lists)
                raise UserError(
                    f"{path}: the column arrays have different lengths ({sizes}); every column needs one value per row"
                )
            if len(lists) != 1:
                raise UserError(
                    f"{path}: expected a JSON array of rows, an object holding one array of rows, or an object of "
                    f"equally long column arrays; found keys {sorted(data)}"
                    + (f" with several row arrays ({', '.join(lists)}): keep one per file" if lists else "")
                )
            rows = data[lists[0]]
        data = rows
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON array of rows, got {json_type(data)}")
    for i, value in enumerate(data, start=1):
        notes: list[str] = []
        if decoder.marked:
            value = _unmark(value, "", "in this row", notes)
        yield f"row {i}", value, tuple(notes)


def _sniff_delimiter(path: Path, text: str) -> str:
    """The delimiter is the candidate that occurs most often in the header line (cells there are rarely quoted)."""
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    if counts[best] == 0:
        return "\t" if path.suffix.lower() == ".tsv" else ","
    return best


def _read_csv(path: Path) -> Iterator[tuple[str, Any, tuple[str, ...]]]:
    text = _decode(path)
    delimiter = _sniff_delimiter(path, text)
    # The csv module must see the raw text with its newlines (newline=""): a quoted cell may span several lines.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"', doublequote=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise UserError(f"{path}: row 1 (header): column name {dupes[0]!r} appears twice; rename one of them")
        rowno = 1
        for cells in reader:
            rowno += 1
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) > len(header):
                raise UserError(
                    f"{path}: row {rowno}: {len(cells)} cells but the header has {len(header)} columns; a cell "
                    f"probably contains the delimiter {delimiter!r} — put such cells in double quotes"
                )
            cells += [""] * (len(header) - len(cells))
            yield f"row {rowno}", {h: c for h, c in zip(header, cells, strict=True) if h}, ()
    except csv.Error as e:
        raise UserError(f"{path}: row {reader.line_num}: {e}; check the quoting of that row") from None
    # Without `strict`, csv silently runs a quote that is never closed to the end of the file, swallowing the
    # rows after it into one cell. An odd number of quote characters is the cheap sign; a strict parse confirms.
    if text.count('"') % 2:
        try:
            for _ in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"', strict=True):
                pass
        except csv.Error as e:
            if "end of data" in str(e):
                raise UserError(
                    f"{path}: row {rowno}: a quoted cell is never closed, so every line after it was read into "
                    'that cell; add the closing "'
                ) from None


def _read_parquet(path: Path) -> Iterator[tuple[str, Any, tuple[str, ...]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for damaged files
        raise UserError(f"{path}: not a readable Parquet file ({e})") from None
    for i, value in enumerate(table.to_pylist(), start=1):
        yield f"row {i}", {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in value.items()}, ()


def _read_text(path: Path) -> Iterator[tuple[str, Any, tuple[str, ...]]]:
    block: list[str] = []
    start = 0
    for lineno, line in enumerate([*_decode(path).splitlines(), ""], start=1):
        if line.strip():
            if not block:
                start = lineno
            block.append(line)
        elif block:
            yield f"line {start}", {"text": "\n".join(block)}, ()
            block = []


# A reader yields `(ref, value, notes)` per row: where the row is, its value, what reading it changed.
READERS: dict[str, Callable[[Path], Iterator[tuple[str, Any, tuple[str, ...]]]]] = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".tsv": _read_csv,
    ".parquet": _read_parquet,
    ".txt": _read_text,
    ".md": _read_text,
}


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages: object, array, text, number, true/false, null."""
    names = {dict: "an object", list: "an array", str: "text", bool: "true/false", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _files_in(directory: Path) -> list[Path]:
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file()
        and p.suffix.lower() in READERS
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )
    if not files:
        raise UserError(f"{directory}: no data files in this directory (looked for {', '.join(READERS)})")
    return files


def read_rows(path: Path) -> list[Row]:
    """Read every row of a data file, or of every data file under a directory (sorted by path)."""
    if path.is_dir():
        return [
            Row(r.value, r.path, f"{r.path.relative_to(path)}: {r.ref}", r.notes)
            for f in _files_in(path)
            for r in read_rows(f)
        ]
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise unknown_choice(f"data file type for {path}", path.suffix or "(none)", list(READERS))
    return [Row(value, path, ref, notes + tuple(_turn_notes(value))) for ref, value, notes in reader(path)]


# ---------------------------------------------------------------- writers: rows -> file (atomically)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)  # nested values round-trip: the formats parse JSON cells


def _write_jsonl(path: Path, rows: list[Any]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _write_json(path: Path, rows: list[Any]) -> None:
    write_text(path, json.dumps(rows, indent=2, ensure_ascii=False) + "\n")


def _write_csv(path: Path, rows: list[Any]) -> None:
    columns: list[str] = []
    for r in rows:
        if not isinstance(r, dict):
            raise UserError(f"{path}: only rows that are objects can be written as CSV; write .jsonl instead")
        columns += [k for k in r if k not in columns]
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter="\t" if path.suffix.lower() == ".tsv" else ",", lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_cell(r.get(c)) for c in columns])
    write_text(path, buf.getvalue())


def _write_parquet(path: Path, rows: list[Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise UserError(f"{path}: these rows do not fit one Parquet schema ({e}); write .jsonl instead") from None
    tmp.replace(path)


def _write_text(path: Path, rows: list[Any]) -> None:
    blocks = []
    for r in rows:
        if not (isinstance(r, dict) and set(r) == {"text"}):
            raise UserError(f"{path}: only raw-text rows ({{'text': ...}}) can be written as {path.suffix}")
        blocks.append(str(r["text"]).strip())
    write_text(path, "\n\n".join(blocks) + "\n")


WRITERS: dict[str, Callable[[Path, list[Any]], None]] = {
    ".jsonl": _write_jsonl,
    ".json": _write_json,
    ".csv": _write_csv,
    ".tsv": _write_csv,
    ".parquet": _write_parquet,
    ".txt": _write_text,
    ".md": _write_text,
}


def write_rows(path: Path, rows: list[Any]) -> None:
    """Write rows in the file type that `path`'s extension names; the file appears whole or not at all."""
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise unknown_choice(f"output file type for {path}", path.suffix or "(none)", list(WRITERS))
    path.parent.mkdir(parents=True, exist_ok=True)
    writer(path, rows)
