"""What reading would change silently is noted on the row, reported by the quality check and acted on by clean.

The four cases a new user hit (issue 13): a key given twice (the first value lost), a number JSON cannot hold
(1e999 read as infinity), a number where an answer text is expected, and two user turns in a row.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lapidar.data.clean import CleanOptions, clean
from lapidar.data.formats import load_dataset
from lapidar.data.quality import check, note_warnings
from lapidar.data.readers import note_field, note_kind, read_rows
from lapidar.errors import UserError

# Written as text: json.dumps cannot write a key twice, nor 1e999.
ALPACA = (
    '{"instruction": "Is fire covered?", "instruction": "Is flood covered?", "output": "Flood is excluded (§5.2)."}\n'
    '{"instruction": 1e999, "output": "That number is too large to insure."}\n'
    '{"instruction": "How many days to report a theft?", "output": 42}\n'
    '{"instruction": "Is glass covered?", "output": "Yes, with a $250 deductible (§7.3)."}\n'
)
MESSAGES = (
    '{"messages": [{"role": "user", "content": "Hi."}, {"role": "user", "content": "Is hail covered?"}, '
    '{"role": "assistant", "content": "Yes (§5.1)."}]}\n'
    '{"messages": [{"role": "user", "content": "Is theft covered?"}, {"role": "assistant", "content": "Yes."}, '
    '{"role": "assistant", "content": "Report it within 48 hours (§9.1)."}]}\n'
    '{"messages": [{"role": "user", "content": "Is mould covered?"}, {"role": "system", "content": "Be brief."}, '
    '{"role": "assistant", "content": "No (§5.4)."}]}\n'
    '{"messages": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "", "tool_calls": '
    '[{"function": {"name": "w", "arguments": {}}}]}, {"role": "tool", "content": "sun"}, {"role": "tool", '
    '"content": "warm"}, {"role": "assistant", "content": "Sunny and warm."}]}\n'
)


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- reading


def test_a_key_given_twice_is_noted_with_both_values(tmp_path):
    rows = read_rows(_file(tmp_path, "a.jsonl", ALPACA))
    assert rows[0].value["instruction"] == "Is flood covered?"  # what every JSON reader keeps
    assert rows[0].notes == (
        "field 'instruction' appears twice on this line; the first value 'Is fire covered?' would be lost "
        "(the last, 'Is flood covered?', is used)",
    )
    assert [note_kind(n) for n in rows[0].notes] == ["duplicate-key"]
    assert note_field(rows[0].notes[0]) == "instruction"
    assert rows[3].notes == ()


def test_nested_and_repeated_keys_name_their_path(tmp_path):
    text = (
        '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "content": "c", '
        '"content": "d"}]}\n{"messages": [{"role": "user", "content": "x", "content": "x"}, '
        '{"role": "assistant", "content": "y"}]}\n'
    )
    rows = read_rows(_file(tmp_path, "m.jsonl", text))
    assert rows[0].value["messages"][1] == {"role": "assistant", "content": "d"}
    assert rows[0].notes == (
        "field 'messages[1].content' appears three times on this line; the earlier values 'b', 'c' would be lost "
        "(the last, 'd', is used)",
    )
    assert rows[1].notes == (
        "field 'messages[0].content' appears twice on this line, with the same value; nothing is lost",
    )
    assert note_kind(rows[1].notes[0]) == "duplicate-key-same"


def test_json_arrays_say_row_and_an_outer_key_twice_is_an_error(tmp_path):
    rows = read_rows(_file(tmp_path, "a.json", '[{"prompt": "q", "prompt": "p", "completion": "c"}]'))
    assert rows[0].notes == (
        "field 'prompt' appears twice in this row; the first value 'q' would be lost (the last, 'p', is used)",
    )
    with pytest.raises(UserError, match=r"o\.json: the key 'rows' appears more than once in the outer object"):
        read_rows(_file(tmp_path, "o.json", '{"rows": [{"text": "a"}], "rows": [{"text": "b"}]}'))


@pytest.mark.parametrize(
    ("literal", "what"),
    [
        ("1e999", "the number 1e999 does not fit a 64-bit float (it would read as infinity)"),
        ("-1e999", "the number -1e999 does not fit a 64-bit float (it would read as -infinity)"),
        ("NaN", "NaN is not a number JSON allows"),
        ("Infinity", "Infinity is not a number JSON allows"),
        ("-Infinity", "-Infinity is not a number JSON allows"),
    ],
)
def test_non_finite_numbers_are_kept_as_written_and_noted(tmp_path, literal, what):
    path = _file(tmp_path, "n.jsonl", f'{{"prompt": {literal}, "completion": "c", "score": 0.5}}\n')
    (row,) = read_rows(path)
    assert row.value == {"prompt": literal, "completion": "c", "score": 0.5}  # not the text "inf"
    assert row.notes == (f"field 'prompt': {what}; read as the text {literal!r}",)
    assert note_kind(row.notes[0]) == "non-finite-number"
    ex = load_dataset(path).examples[0]
    assert ex.messages[0]["content"] == literal and ex.notes == row.notes


def test_turn_order_notes_name_the_turn(tmp_path):
    rows = read_rows(_file(tmp_path, "m.jsonl", MESSAGES))
    assert rows[0].notes == (
        "field 'messages[1]': a second user turn in a row (messages[0] is a user turn too); the turns of a "
        "conversation alternate between user and assistant",
    )
    assert rows[1].notes[0].startswith("field 'messages[2]': a second assistant turn in a row (messages[1]")
    assert [note_kind(n) for n in rows[2].notes] == ["system-not-first"]
    assert note_field(rows[2].notes[0]) == "messages[1]"
    assert rows[3].notes == ()  # tool results in a row are parallel calls, not a broken conversation
    sharegpt = '{"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}, {"from": "gpt", "value": "c"}]}\n'
    assert note_kind(read_rows(_file(tmp_path, "s.jsonl", sharegpt))[0].notes[0]) == "consecutive-turns"


# ---------------------------------------------------------------- the quality report and train's warnings


def test_check_reports_each_case_with_file_line_and_field(tmp_path, tokenizer):
    path = _file(tmp_path, "claims.jsonl", ALPACA)
    findings, _, _ = check(load_dataset(path).examples, tokenizer, 256, near=False)
    found = {f.code: f for f in findings}
    assert found["duplicate-key"].severity == "warning" and found["duplicate-key"].rows == ["line 1"]
    assert found["duplicate-key"].details == [
        f"{path}: line 1: field 'instruction' appears twice on this line; the first value 'Is fire covered?' would "
        "be lost (the last, 'Is flood covered?', is used)"
    ]
    assert found["non-finite-number"].details == [
        f"{path}: line 2: field 'instruction': the number 1e999 does not fit a 64-bit float (it would read as "
        "infinity); read as the text '1e999'"
    ]
    assert found["number-as-text"].details == [
        f"{path}: line 3: field 'output': expected text, got a number (42); read as the text '42'"
    ]
    turns = _file(tmp_path, "turns.jsonl", MESSAGES)
    findings, _, _ = check(load_dataset(turns).examples, tokenizer, 256, near=False)
    found = {f.code: f for f in findings}
    assert found["consecutive-turns"].rows == ["line 1", "line 2"]
    assert found["consecutive-turns"].details[0].startswith(f"{turns}: line 1: field 'messages[1]': a second user turn")
    assert found["system-not-first"].rows == ["line 3"]


def test_note_warnings_are_one_line_per_kind(tmp_path):
    path = _file(tmp_path, "claims.jsonl", ALPACA)
    lines = note_warnings(load_dataset(path).examples, path)
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert lines[0] == (
        "a key given more than once in a row (JSON keeps the last value; the others are lost) — 1 row: "
        f"{path}: line 1: field 'instruction' appears twice on this line; the first value 'Is fire covered?' would "
        f"be lost (the last, 'Is flood covered?', is used); all of them: lapidar data check {path}"
    )
    assert note_warnings(load_dataset(_file(tmp_path, "ok.jsonl", ALPACA.splitlines()[3])).examples, path) == []


# ---------------------------------------------------------------- what clean does about them


def test_clean_drops_ambiguous_rows_and_writes_numbers_as_text(tmp_path):
    ds = load_dataset(_file(tmp_path, "claims.jsonl", ALPACA))
    result = clean(ds, CleanOptions())
    assert [r["instruction"] for r in result.rows] == ["1e999", "How many days to report a theft?", "Is glass covered?"]
    assert result.rows[1]["output"] == "42"  # text now: the cleaned file checks clean
    by_fix = {e.get("fix"): e for e in result.log}
    assert by_fix["duplicate-key"]["action"] == "drop" and by_fix["duplicate-key"]["row"] == "line 1"
    assert by_fix["duplicate-key"]["reason"].startswith("field 'instruction' appears twice on this line")
    assert by_fix["number-as-text"] | {"note": ""} == {
        "row": "line 3", "action": "edit", "fix": "number-as-text", "field": "output", "note": "",
        "before": 42, "after": "42", "done": "written as text",
    }  # fmt: skip
    assert by_fix["non-finite-number"]["field"] == "instruction"
    assert by_fix["non-finite-number"]["done"] == "written as text"
    assert result.counts["dropped: duplicate key"] == 1 and result.counts["edited: number-as-text"] == 1
    kept = clean(ds, CleanOptions(duplicate_keys="keep-last"))
    assert kept.rows[0]["instruction"] == "Is flood covered?"
    assert next(e for e in kept.log if e["fix"] == "duplicate-key")["done"].startswith("kept the last value")


def test_clean_merges_consecutive_turns_and_leaves_a_late_system_turn(tmp_path):
    ds = load_dataset(_file(tmp_path, "turns.jsonl", MESSAGES))
    result = clean(ds, CleanOptions())
    assert result.rows[0]["messages"] == [
        {"role": "user", "content": "Hi.\n\nIs hail covered?"},
        {"role": "assistant", "content": "Yes (§5.1)."},
    ]
    assert [m["role"] for m in result.rows[1]["messages"]] == ["user", "assistant"]
    merges = [e for e in result.log if e["fix"] == "consecutive-turns"]
    assert [(e["row"], e["field"], e["done"]) for e in merges] == [
        ("line 1", "messages[1]", "merged messages[0], messages[1] into one turn"),
        ("line 2", "messages[2]", "merged messages[1], messages[2] into one turn"),
    ]
    late = next(e for e in result.log if e["fix"] == "system-not-first")
    assert (late["action"], late["field"], late["done"]) == ("note", "messages[1]", "left as it is")
    assert result.rows[2] == json.loads(MESSAGES.splitlines()[2])
    assert result.counts["left as it is: system-not-first"] == 1
    assert result.edited_rows == 2  # notes left as they are are not edits
    # The merged file reads without a note; --keep-consecutive-turns leaves the turns and says so.
    out = tmp_path / "out.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in result.rows), encoding="utf-8")
    assert [n for r in read_rows(out) for n in r.notes if note_kind(n) == "consecutive-turns"] == []
    left = clean(ds, CleanOptions(merge_turns=False))
    assert left.rows[0] == json.loads(MESSAGES.splitlines()[0])
    assert {e["done"] for e in left.log if e["fix"] == "consecutive-turns"} == {
        "left as it is (--keep-consecutive-turns)"
    }
