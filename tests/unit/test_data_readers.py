"""Reading rows from every supported file type, with row references a user can find in the file."""

from __future__ import annotations

import json

import pytest

from lapidar.data.readers import read_rows, write_rows
from lapidar.errors import UserError
from tests.conftest import FIXTURES

DATA = FIXTURES / "data"


def values(rows):
    return [r.value for r in rows]


def test_csv_quoted_multiline_cells_stay_in_one_row():
    rows = read_rows(DATA / "multiline.csv")
    assert [r.ref for r in rows] == ["row 2", "row 3", "row 4"]  # spreadsheet rows: the header is row 1
    first, second, third = values(rows)
    assert first["resposta"] == "Você precisa de:\n- boletim de ocorrência\n- nota fiscal do bem"
    assert first["fonte"] == "manual, §9"  # a quoted delimiter is not a split
    assert second["resposta"] == 'A franquia é de R$ 250, conforme a cláusula "7.3".'
    assert third["resposta"] == "Não.\n\nEnchentes são excluídas (§5.2)."
    assert third["fonte"] == ""


@pytest.mark.parametrize(("name", "sep"), [("semi.csv", ";"), ("tabs.tsv", "\t"), ("pipes.csv", "|")])
def test_csv_delimiter_is_detected(tmp_path, name, sep):
    path = tmp_path / name
    path.write_text(f"prompt{sep}completion\nHi, there{sep}Hello, friend\n", encoding="utf-8")
    assert values(read_rows(path)) == [{"prompt": "Hi, there", "completion": "Hello, friend"}]


def test_csv_row_with_extra_cells_names_the_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("prompt,completion\na,b\nc,d,e\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.csv: row 3: 3 cells but the header has 2 columns.*double quotes"):
        read_rows(path)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("prompt,completion\nolá,sim\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.csv: line 2: .*not UTF-8.*re-save"):
        read_rows(path)


def test_utf16_with_bom_is_read(tmp_path):
    path = tmp_path / "excel.tsv"
    path.write_bytes("prompt\tcompletion\nolá\tsim\n".encode("utf-16"))
    assert values(read_rows(path)) == [{"prompt": "olá", "completion": "sim"}]


def test_jsonl_error_names_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"x.jsonl: line 3: not valid JSON"):
        read_rows(path)


@pytest.mark.parametrize(
    "data",
    [
        [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}],
        {"train": [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]},
        {"prompt": ["a", "c"], "completion": ["b", "d"]},  # columns
        {"prompt": {"0": "a", "1": "c"}, "completion": {"0": "b", "1": "d"}},  # pandas' default to_json
    ],
)
def test_json_shapes(tmp_path, data):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    rows = read_rows(path)
    assert values(rows) == [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]
    assert [r.ref for r in rows] == ["row 1", "row 2"]


def test_json_with_two_row_arrays_asks_for_one(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"train": [{"a": 1}], "test": [{"a": 2}, {"a": 3}]}), encoding="utf-8")
    with pytest.raises(UserError, match=r"several row arrays \(train, test\): keep one per file"):
        read_rows(path)


def test_parquet_round_trip(tmp_path):
    rows = [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": None}]
    write_rows(tmp_path / "x.parquet", rows)
    back = read_rows(tmp_path / "x.parquet")
    assert values(back) == rows and back[1].ref == "row 2"


def test_text_blocks_start_at_their_line():
    rows = read_rows(DATA / "notes.md")
    assert [r.ref for r in rows] == ["line 1", "line 3", "line 7", "line 9"]
    assert rows[1].value == {"text": "Every claim needs a claim number.\nWrite it on every document."}


def test_directory_reads_every_data_file_and_skips_hidden(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.jsonl").write_text('{"text": "b"}\n', encoding="utf-8")
    (tmp_path / "sub" / "a.txt").write_text("a1\n\na2\n", encoding="utf-8")
    (tmp_path / ".hidden.jsonl").write_text('{"text": "h"}\n', encoding="utf-8")
    (tmp_path / "README").write_text("not data", encoding="utf-8")
    rows = read_rows(tmp_path)
    assert [r.ref for r in rows] == ["b.jsonl: line 1", "sub/a.txt: line 1", "sub/a.txt: line 3"]
    assert rows[1].where == f"{tmp_path / 'sub' / 'a.txt'}: line 1"


def test_unknown_extension_lists_choices(tmp_path):
    path = tmp_path / "x.xlsx"
    path.write_bytes(b"")
    with pytest.raises(UserError, match=r"unknown data file type.*'.xlsx'.*\.csv, \.json, \.jsonl, \.md, \.parquet"):
        read_rows(path)


def test_csv_writer_round_trips_nested_values(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "a,b\nc"}], "n": 1}]
    write_rows(tmp_path / "x.csv", rows)
    back = read_rows(tmp_path / "x.csv")[0].value
    assert json.loads(back["messages"]) == rows[0]["messages"] and back["n"] == "1"
