"""The four silent data changes of issue 13, through the real commands: `data check`, `train` and `data clean`
each name the file, the line and the field."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lapidar import cli

pytestmark = pytest.mark.recipe

runner = CliRunner()

# Written as text: json.dumps cannot write a key twice, nor 1e999.
ALPACA = (
    '{"instruction": "Is fire covered?", "instruction": "Is flood covered?", "output": "Flood is excluded (§5.2)."}\n'
    '{"instruction": 1e999, "output": "That number is too large to insure."}\n'
    '{"instruction": "How many days to report a theft?", "output": 42}\n'
    '{"instruction": "Is glass covered?", "output": "Yes, with a $250 deductible (§7.3)."}\n'
    '{"instruction": "Is hail covered?", "output": "Yes, hail is covered (§5.1)."}\n'
)
TURNS = (
    '{"messages": [{"role": "user", "content": "Hi."}, {"role": "user", "content": "Is hail covered?"}, '
    '{"role": "assistant", "content": "Yes (§5.1)."}]}\n'
    '{"messages": [{"role": "user", "content": "Is theft covered?"}, {"role": "assistant", "content": "Yes."}]}\n'
)
DUPLICATE = (
    "field 'instruction' appears twice on this line; the first value 'Is fire covered?' would be lost (the last, "
    "'Is flood covered?', is used)"
)
INFINITE = (
    "field 'instruction': the number 1e999 does not fit a 64-bit float (it would read as infinity); read as the "
    "text '1e999'"
)
NUMBER = "field 'output': expected text, got a number (42); read as the text '42'"
TURN = (
    "field 'messages[1]': a second user turn in a row (messages[0] is a user turn too); the turns of a "
    "conversation alternate between user and assistant"
)


def lapidar(*args: str):
    return runner.invoke(cli.app, list(args), env={"COLUMNS": "200"})


def flat(text: str) -> str:
    """Terminal output with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture
def files(tmp_path):
    alpaca, turns = tmp_path / "claims.jsonl", tmp_path / "turns.jsonl"
    alpaca.write_text(ALPACA, encoding="utf-8")
    turns.write_text(TURNS, encoding="utf-8")
    return alpaca, turns


def test_data_check_warns_with_file_line_and_field(files, tmp_path):
    alpaca, turns = files
    result = lapidar("data", "check", str(alpaca), "--json", str(tmp_path / "a.json"))
    assert result.exit_code == 0, result.output  # warnings: still usable
    details = {f["code"]: f["details"] for f in json.loads((tmp_path / "a.json").read_text())["findings"]}
    assert details["duplicate-key"] == [f"{alpaca}: line 1: {DUPLICATE}"]
    assert details["non-finite-number"] == [f"{alpaca}: line 2: {INFINITE}"]
    assert details["number-as-text"] == [f"{alpaca}: line 3: {NUMBER}"]
    assert "a key given more than once in a row" in flat(result.output)
    result = lapidar("data", "check", str(turns), "--json", str(tmp_path / "t.json"))
    details = {f["code"]: f["details"] for f in json.loads((tmp_path / "t.json").read_text())["findings"]}
    assert details["consecutive-turns"] == [f"{turns}: line 1: {TURN}"]


def test_data_clean_says_what_it_does_about_each(files, tmp_path):
    alpaca, turns = files
    out = tmp_path / "clean.jsonl"
    result = lapidar("data", "clean", str(alpaca), "--output", str(out))
    assert result.exit_code == 0, result.output
    shown = flat(result.output)
    assert f"{alpaca}: line 1: {DUPLICATE}; which value was meant cannot be told → row dropped" in shown
    assert f"{alpaca}: line 2: {INFINITE} → written as text" in shown
    assert f"{alpaca}: line 3: {NUMBER} → written as text" in shown
    assert "kept 4 of 5 rows (1 dropped, 2 edited)" in shown
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0] == {"instruction": "1e999", "output": "That number is too large to insure."}
    assert rows[1]["output"] == "42"
    # The cleaned file is one a check no longer warns about.
    check = lapidar("data", "check", str(out), "--json", str(tmp_path / "c.json"))
    codes = {f["code"] for f in json.loads((tmp_path / "c.json").read_text())["findings"]}
    assert check.exit_code == 0 and not codes & {"duplicate-key", "non-finite-number", "number-as-text"}

    result = lapidar("data", "clean", str(turns), "--output", str(out))
    assert f"{turns}: line 1: {TURN} → merged messages[0], messages[1] into one turn" in flat(result.output)
    assert json.loads(out.read_text().splitlines()[0])["messages"][0]["content"] == "Hi.\n\nIs hail covered?"
    result = lapidar("data", "clean", str(alpaca), "--output", str(out), "--duplicate-keys", "keep-first")
    assert result.exit_code != 0 and "unknown --duplicate-keys 'keep-first'; valid choices: drop, keep-last" in flat(
        str(result.exception)
    )
    result = lapidar("data", "clean", str(alpaca), "--output", str(out), "--duplicate-keys", "keep-last")
    assert result.exit_code == 0 and "kept the last value (--duplicate-keys keep-last)" in flat(result.output)


def test_train_shows_the_warnings_before_it_starts(files, tmp_path):
    alpaca, _ = files
    proc = subprocess.run(
        [
            sys.executable, "-m", "lapidar", "train", "--model", "tiny-qwen2.5", "--data", str(alpaca),
            "--val-fraction", "0", "--max-steps", "1", "--batch-size", "2", "--output", str(tmp_path / "run"),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    notes = [line for line in proc.stdout.splitlines() if line.startswith("note: ")]
    assert (
        "note: a key given more than once in a row (JSON keeps the last value; the others are lost) — 1 row: "
        f"{alpaca}: line 1: {DUPLICATE}; all of them: lapidar data check {alpaca}"
    ) in notes
    assert any(f"{alpaca}: line 2: {INFINITE}" in n for n in notes)
    assert any(f"{alpaca}: line 3: {NUMBER}" in n for n in notes)
