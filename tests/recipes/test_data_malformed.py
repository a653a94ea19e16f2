"""`lapidar data check` on a corpus of broken files: exit status 2, one clear line naming the file, the row and the
field, never a traceback. Each file in tests/fixtures/data/malformed/ is listed here with the fragments its message
must contain; a new broken file without an entry fails `test_every_file_has_an_expectation`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lapidar import cli
from tests.conftest import FIXTURES

pytestmark = pytest.mark.recipe

MALFORMED = FIXTURES / "data" / "malformed"

# file -> fragments the single error line must contain (after the file name, which is always checked)
ERRORS: dict[str, tuple[str, ...]] = {
    "ambiguous_row.jsonl": ("line 1", "fit several formats", "--format prompt-completion"),
    "array_of_strings.json": ("row 1", "expected an object (one example) per row, got text"),
    "blank_lines_only.jsonl": ("the file holds no rows",),
    "bom_garbage.jsonl": ("line 1", "not valid JSON"),
    "broken_json_line4.json": ("line 4", "not valid JSON", "Expecting ',' delimiter"),
    "content_is_object.jsonl": ("line 2", "field 'messages[0].content'", "expected text, got an object"),
    "csv_duplicate_header.csv": ("row 1 (header)", "'output' appears twice"),
    "csv_extra_cells.csv": ("row 3", "4 cells but the header has 2 columns", "double quotes"),
    "csv_header_only.csv": ("the file holds no rows",),
    "csv_missing_output_column.csv": ("row 2", "cannot tell the format from fields ['input', 'instruction']"),
    "csv_unclosed_quote.csv": ("row 2", "quoted cell is never closed"),
    "deep_nesting.json": ("nested more than about 1000 levels deep",),
    "empty.json": ("the file is empty",),
    "empty.jsonl": ("the file holds no rows",),
    "feedback_label_maybe.jsonl": ("line 2", "field 'label'", "'maybe' is not a feedback label"),
    "history_not_pairs.json": ("row 1", "field 'history[0]'", "[question, answer] pair"),
    "image_part.jsonl": ("line 1", "field 'messages[0].content[0]'", "only text parts", "'image_url'"),
    "invalid_utf8.jsonl": ("line 2", "is not UTF-8 text", "re-save the file as UTF-8"),
    "jsonl_bad_line3.jsonl": ("line 3", "not valid JSON", "one JSON object"),
    "jsonl_in_json.json": ("line 2", "Extra data", "rename it to .jsonl"),
    "jsonl_list_row.jsonl": ("line 2", "expected an object (one example) per row, got an array"),
    "jsonl_null_row.jsonl": ("line 2", "per row, got null"),
    "jsonl_python_repr.jsonl": ("line 1", "not valid JSON", "double quotes"),
    "kto_tag_unknown.json": ("row 1", "field 'kto_tag'", "'perhaps' is not a feedback label"),
    "latin1.csv": ("line 2", "is not UTF-8 text"),
    "messages_is_number.jsonl": ("line 2", "field 'messages'", "got a number"),
    "missing_output.jsonl": ("line 3", "fields ['input', 'instruction']", "the other rows are alpaca"),
    "mixed_formats.jsonl": ("mixed formats", "3 rows look like alpaca", "1 row looks like messages (first: line 3)"),
    "nested_junk.jsonl": ("line 1", "field 'messages[0]'", "expected an object with 'role'"),
    "null_output.jsonl": ("line 2", "fields ['instruction'] (null: output)", "the other rows are alpaca"),
    "parquet_is_text.parquet": ("not a readable Parquet file",),
    "preference_missing_rejected.jsonl": ("line 2", "fields ['chosen', 'prompt']", "the other rows are preference"),
    "prompt_is_list_of_strings.jsonl": ("line 1", "field 'prompt[0]'", "expected an object with 'role'"),
    "scalar.json": ("expected a JSON array of rows, got a number",),
    "several_arrays.json": ("several row arrays (train, test)", "keep one per file"),
    "system_is_list.json": ("row 1", "field 'system'", "expected text, got an array"),
    "tool_call_without_name.jsonl": ("line 1", "field 'messages[1].tool_calls[0]'", "{function: {name, arguments}}"),
    "tool_calls_not_list.jsonl": ("line 1", "field 'messages[1].tool_calls'", "expected a list of tool calls"),
    "truncated.json": ("line 3", "not valid JSON", "Unterminated string"),
    "trailing_comma.json": ("line 4", "not valid JSON"),
    "turn_without_role.jsonl": ("line 1", "field 'messages[0]'", "expected an object with 'role'"),
    "unequal_columns.json": ("column arrays have different lengths (instruction: 2, output: 1)",),
    "unknown_extension.xlsx": ("unknown data file type", "'.xlsx'", "valid choices: .csv"),
    "unknown_speaker.json": ("row 2", "field 'conversations[1].from'", "unknown speaker 'robot'"),
}

# Files that load but cannot be trained on: the check's report (not a one-line error) names the row and exits 2.
REPORTS: dict[str, tuple[str, ...]] = {
    "messages_without_assistant.jsonl": ("answer missing or empty", "line 2", "NOT usable for training"),
}


def _check(monkeypatch, capsys, path) -> tuple[int, str, str]:
    """`lapidar data check PATH` through the console-script entry point, in this process."""
    monkeypatch.setattr(sys, "argv", ["lapidar", "data", "check", str(path)])
    monkeypatch.setenv("COLUMNS", "200")
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_file_has_an_expectation():
    files = {p.name for p in MALFORMED.iterdir()}
    assert files == set(ERRORS) | set(REPORTS)
    assert len(files) >= 30


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_malformed_file_is_one_clear_error(monkeypatch, capsys, name):
    code, out, err = _check(monkeypatch, capsys, MALFORMED / name)
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and f"{MALFORMED / name}" in lines[0], lines[0]
    for fragment in ERRORS[name]:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_unusable_file_gets_a_report_naming_the_row(monkeypatch, capsys, name):
    code, out, err = _check(monkeypatch, capsys, MALFORMED / name)
    assert code == 2 and "Traceback" not in out + err
    text = " ".join(out.split())
    for fragment in REPORTS[name]:
        assert fragment in text, (fragment, out)


@pytest.mark.parametrize("name", ["deep_nesting.json", "tool_calls_not_list.jsonl", "invalid_utf8.jsonl"])
def test_end_to_end_process_exits_2_without_traceback(name):
    """The real `python -m lapidar` process, for the files that once crashed or stop inside the decoder."""
    proc = subprocess.run(
        [sys.executable, "-m", "lapidar", "data", "check", str(MALFORMED / name)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert ERRORS[name][0] in proc.stderr
