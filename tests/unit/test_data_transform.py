"""Cleaning, converting and splitting data files (no tokenizer needed)."""

from __future__ import annotations

import pytest

from lapidar.data.clean import CleanOptions, clean
from lapidar.data.convert import convert_examples
from lapidar.data.formats import load_dataset, parse_columns
from lapidar.data.readers import read_rows, write_rows
from lapidar.data.split import split
from lapidar.errors import UserError
from tests.conftest import FIXTURES, qa_rows, write_jsonl

DATA = FIXTURES / "data"


# ---------------------------------------------------------------- clean


def test_clean_default_fixes_and_log():
    before = (DATA / "messy_alpaca.jsonl").read_bytes()
    result = clean(load_dataset(DATA / "messy_alpaca.jsonl"), CleanOptions())
    drops = [(e["row"], e["reason"]) for e in result.log if e["action"] == "drop"]
    assert drops == [("line 3", "exact duplicate of line 1"), ("line 4", "empty answer")]
    edits = [(e["row"], e["fix"], e["field"]) for e in result.log if e["action"] == "edit"]
    assert edits == [
        ("line 2", "unicode", "output"),
        ("line 10", "unicode", "output"),
        ("line 12", "whitespace", "instruction"),
        ("line 12", "whitespace", "output"),
    ]
    assert result.log[0]["before"].endswith("cafÃ© on the ground floor; it opens at 8am.")
    assert result.rows[1]["output"] == "Try the café on the ground floor; it opens at 8am."
    assert len(result.rows) == 13 and result.dropped == 2 and result.edited_rows == 3
    assert (DATA / "messy_alpaca.jsonl").read_bytes() == before  # the input is never modified


def test_clean_optional_fixes_do_not_leak_personal_data():
    opts = CleanOptions(near_duplicates=True, mask_pii=True, strip_control_tokens=True)
    result = clean(load_dataset(DATA / "messy_alpaca.jsonl"), opts)
    assert ("line 8", "near duplicate of line 1 (89% similar)") in [(e["row"], e.get("reason")) for e in result.log]
    masked = next(e for e in result.log if e.get("fix") == "personal-data")
    assert masked["masked"] == ["ma•••@gm•••.com", "+• (•••) •••-••71", "•••• •••• •••• 1111"]
    assert "maria.silva" not in str(result.log) and "4111 1111" not in str(result.log)
    rows = {r["instruction"]: r for r in result.rows}
    assert rows["Update my contact details."]["input"] == "Email: [EMAIL], phone [PHONE], card [CARD]"
    assert rows["How do I end a conversation?"]["output"] == "Just say goodbye."


def test_clean_keeps_csv_columns(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('pergunta,resposta\n"  Olá? ",Sim.\n"Olá?",Sim.\nVazio?,\n', encoding="utf-8")
    ds = load_dataset(path, columns=parse_columns("prompt=pergunta,completion=resposta"))
    result = clean(ds, CleanOptions())
    write_rows(tmp_path / "out.csv", result.rows)
    assert [r.value for r in read_rows(tmp_path / "out.csv")] == [{"pergunta": "Olá?", "resposta": "Sim."}]
    assert [e["reason"] for e in result.log if e["action"] == "drop"] == ["exact duplicate of row 2", "empty answer"]


# ---------------------------------------------------------------- convert


@pytest.mark.parametrize("target", ["messages", "alpaca", "sharegpt"])
def test_convert_round_trips_chat_rows(tmp_path, target):
    rows = [
        {"instruction": "Q2", "input": "", "output": "A2", "system": "S", "history": [["Q1", "A1"]]},
        {"instruction": "Q3", "input": "", "output": "A3"},
    ]
    original = load_dataset(write_jsonl(tmp_path / "in.jsonl", rows)).examples
    out = write_jsonl(tmp_path / f"{target}.jsonl", convert_examples(original, target))
    again = load_dataset(out)
    assert again.fmt == target
    assert [e.messages for e in again.examples] == [e.messages for e in original]


@pytest.mark.parametrize("target", ["messages", "sharegpt"])
def test_convert_keeps_tool_calls(tmp_path, target):
    original = load_dataset(DATA / "sharegpt.json").examples
    again = load_dataset(write_jsonl(tmp_path / "x.jsonl", convert_examples(original, target))).examples
    assert [e.messages for e in again] == [e.messages for e in original]
    assert again[0].tools == original[0].tools
    if target == "sharegpt":
        turns = convert_examples(original, target)[0]["conversations"]
        assert [t["from"] for t in turns] == ["human", "function_call", "observation", "gpt"]


@pytest.mark.parametrize(("src", "target"), [("preference.jsonl", t) for t in ("messages", "alpaca", "sharegpt")])
def test_convert_preference_rows(tmp_path, src, target):
    original = load_dataset(DATA / src).examples
    again = load_dataset(write_jsonl(tmp_path / "x.jsonl", convert_examples(original, target)))
    assert again.kind == "preference"
    assert [(e.messages, e.chosen, e.rejected) for e in again.examples] == [
        (e.messages, e.chosen, e.rejected) for e in original
    ]


@pytest.mark.parametrize("target", ["messages", "sharegpt"])
def test_convert_feedback_rows(tmp_path, target):
    original = load_dataset(DATA / "feedback.jsonl").examples
    again = load_dataset(write_jsonl(tmp_path / "x.jsonl", convert_examples(original, target)))
    assert again.kind == "feedback"
    assert [(e.messages, e.completion, e.label) for e in again.examples] == [
        (e.messages, e.completion, e.label) for e in original
    ]


def test_convert_refuses_what_a_target_cannot_hold():
    with pytest.raises(UserError, match=r"sharegpt.json: row 1: alpaca needs alternating user/assistant turns"):
        convert_examples(load_dataset(DATA / "sharegpt.json").examples, "alpaca")
    with pytest.raises(UserError, match=r"notes.md: line 1: raw text has no conversation"):
        convert_examples(load_dataset(DATA / "notes.md").examples, "messages")
    with pytest.raises(UserError, match=r"unknown target format 'chatml'; valid choices: alpaca, messages, sharegpt"):
        convert_examples([], "chatml")


# ---------------------------------------------------------------- split


def _qa_file(tmp_path, n=40):
    pairs = [
        (f"Question number {i} about policy section {i * 7}?", f"Answer {i}: see section {i * 7}.") for i in range(n)
    ]
    pairs += [pairs[3], (pairs[5][0], "A different answer for the same question.")]  # duplicate + shared prompt
    pairs += [("Question number 9 about policy section 63 ?", "Answer 9: see section 63.")]  # near-duplicate of 9
    return write_jsonl(tmp_path / "qa.jsonl", qa_rows(pairs))


def test_split_is_deterministic_and_leakage_free(tmp_path):
    ds = load_dataset(_qa_file(tmp_path))
    a, b = split(ds, 0.25, seed=1), split(ds, 0.25, seed=1)
    assert (a.train, a.val) == (b.train, b.val)
    assert split(ds, 0.25, seed=2).val != a.val
    assert len(a.val) == 11 and len(a.train) == 32  # round(0.25 * 43) and a.groups_kept_together == 3
    for group in ([3, 40], [5, 41], [9, 42]):
        assert all(i in a.val for i in group) or all(i in a.train for i in group)


def test_split_is_stratified_by_label(tmp_path):
    rows = qa_rows(
        [(f"Ticket {i}: {'thanks' if i % 4 else 'broken'} #{i}", "happy" if i % 4 else "angry") for i in range(40)]
    )
    ds = load_dataset(write_jsonl(tmp_path / "x.jsonl", rows))
    result = split(ds, 0.2, seed=0, near=False)
    assert result.stratified and result.labels == {"angry": (8, 2), "happy": (24, 6)}


def test_split_refuses_when_nothing_can_be_held_out(tmp_path):
    ds = load_dataset(write_jsonl(tmp_path / "x.jsonl", qa_rows([("A?", "a."), ("B?", "b.")])))
    with pytest.raises(UserError, match=r"cannot hold out 10% of 2 rows"):
        split(ds, 0.1, seed=0)
    with pytest.raises(UserError, match=r"--val-fraction must be between 0 and 1"):
        split(ds, 1.5, seed=0)


def test_split_feedback_keeps_a_prompts_ratings_together():
    result = split(load_dataset(DATA / "feedback.jsonl"), 0.4, seed=0)
    sides = [i in result.val for i in range(5)]
    assert sides[0] == sides[1] and sides[2] == sides[3]  # 👍 and 👎 answers to one prompt stay on one side
    assert {k: sum(v) for k, v in result.labels.items()} == {"👍 good": 3, "👎 bad": 2}
