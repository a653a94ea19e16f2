"""`lapidar data check|clean|convert|split` through the real CLI: exit codes, files written, messages."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from lapidar import cli
from lapidar.data.formats import bundled_example, load_dataset
from tests.conftest import FIXTURES, qa_rows, write_jsonl

pytestmark = pytest.mark.recipe

DATA = FIXTURES / "data"
runner = CliRunner()


def lapidar(*args: str):
    return runner.invoke(cli.app, list(args), env={"COLUMNS": "200"})


def lapidar_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the console-script entry point (user errors -> one line on stderr, exit 2)."""
    monkeypatch.setattr(sys, "argv", ["lapidar", *args])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


def test_check_messy_file_exits_2_and_writes_reports(tmp_path):
    result = lapidar(
        "data", "check", str(DATA / "messy_alpaca.jsonl"), "--val", str(DATA / "messy_val.jsonl"),
        "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"),
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "NOT usable for training (2 errors, 12 warnings, 2 notes)" in result.output
    assert "alpaca (sft) — every row has the fields instruction, output" in result.output
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["usable"] is False and report["rows"] == 15
    assert {f["code"] for f in report["findings"] if f["severity"] == "error"} == {"empty-answer", "control-tokens"}
    assert "<h1>Data check</h1>" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_check_bundled_claims_exits_0():
    if not bundled_example("claims")[0].is_file():
        pytest.skip("bundled claims data not written yet")
    result = lapidar("data", "check", "example:claims")
    assert result.exit_code == 0, result.output
    assert "usable for training (0 errors" in result.output and "260" in result.output


def test_check_csv_with_column_mapping_and_max_length(tmp_path):
    result = lapidar(
        "data", "check", str(DATA / "multiline.csv"), "--columns", "prompt=pergunta,completion=resposta",
        "--max-length", "40", "--json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["fmt"] == "prompt-completion" and report["languages"] == {"pt": 3}
    assert (report["tokens"]["over_max_length"], report["tokens"]["answer_cut"], report["tokens"]["answer_lost"]) == (
        3,
        2,
        1,
    )
    cut = {f["code"]: f["rows"] for f in report["findings"]}
    assert cut == {"answer-lost": ["row 2"], "answer-cut": ["row 3", "row 4"]}  # spreadsheet rows


def test_user_errors_are_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    code, _, err = lapidar_main(monkeypatch, capsys, "data", "check", str(DATA / "mixed.jsonl"))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "mixed formats — 2 rows look like alpaca" in err and "Traceback" not in err
    out = tmp_path / "x.jsonl"
    code, _, err = lapidar_main(
        monkeypatch, capsys, "data", "convert", str(DATA / "notes.md"), "--to", "alpaca", "--output", str(out)
    )
    assert code == 2 and "raw text has no conversation" in err and not out.exists()


def test_clean_writes_output_and_log_and_never_the_input(monkeypatch, capsys, tmp_path):
    src = tmp_path / "messy.jsonl"
    src.write_bytes((DATA / "messy_alpaca.jsonl").read_bytes())
    result = lapidar(
        "data", "clean", str(src), "--output", str(tmp_path / "clean.jsonl"), "--mask-pii", "--strip-control-tokens"
    )
    assert result.exit_code == 0, result.output
    assert "kept 13 of 15 rows (2 dropped, 5 edited)" in result.output
    log = [json.loads(line) for line in (tmp_path / "clean.log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {(e["row"], e["action"]) for e in log} >= {("line 3", "drop"), ("line 4", "drop"), ("line 5", "edit")}
    assert src.read_bytes() == (DATA / "messy_alpaca.jsonl").read_bytes()
    checked = lapidar("data", "check", str(tmp_path / "clean.jsonl"))
    assert checked.exit_code == 0, checked.output

    code, _, err = lapidar_main(monkeypatch, capsys, "data", "clean", str(src), "--output", str(src))
    assert code == 2 and "that is the input file" in err


def test_convert_and_split(tmp_path):
    result = lapidar(
        "data", "convert", str(DATA / "sharegpt.json"), "--to", "messages", "--output", str(tmp_path / "m.jsonl")
    )
    assert result.exit_code == 0, result.output and "wrote 2 rows in messages format" in result.output
    assert load_dataset(tmp_path / "m.jsonl").fmt == "messages"

    pairs = [(f"Question {i} about section {i}?", f"See section {i}.") for i in range(30)]
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(pairs + pairs[:2]))
    args = ("data", "split", str(data), "--val-fraction", "0.2", "--output-dir", str(tmp_path / "out"), "--seed", "3")
    first = lapidar(*args)
    assert first.exit_code == 0, first.output
    assert "2 groups of duplicates / shared prompts (4 rows) kept on one side" in first.output
    train = (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8")
    val = (tmp_path / "out" / "validation.jsonl").read_text(encoding="utf-8")
    assert len(val.splitlines()) == 6 and len(train.splitlines()) == 26
    assert not set(train.splitlines()) & set(val.splitlines())  # no row on both sides
    assert lapidar(*args).exit_code == 0
    assert (tmp_path / "out" / "validation.jsonl").read_text(encoding="utf-8") == val  # same seed, same split
