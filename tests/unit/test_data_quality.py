"""The data-quality report: what it finds, on which rows, and what is fatal."""

from __future__ import annotations

import json

import pytest

from lapidar.data.formats import bundled_example, load_dataset
from lapidar.data.quality import (
    check,
    check_dataset,
    fatal_findings,
    raise_on_fatal,
    token_stats,
    token_stats_batch,
)
from lapidar.data.report import render_html
from lapidar.errors import UserError
from tests.conftest import FIXTURES, qa_rows, write_jsonl

DATA = FIXTURES / "data"


@pytest.fixture(scope="module")
def messy_report(tokenizer):
    return check_dataset(
        load_dataset(DATA / "messy_alpaca.jsonl"), tokenizer, 1024, load_dataset(DATA / "messy_val.jsonl")
    )


def test_messy_file_findings_point_at_the_right_rows(messy_report):
    found = {f.code: (f.severity, f.rows) for f in messy_report.findings}
    assert found == {
        "empty-answer": ("error", ["line 4"]),
        "control-tokens": ("error", ["line 6"]),
        "mojibake": ("warning", ["line 2"]),
        "control-chars": ("warning", ["line 10"]),
        "html": ("warning", ["line 7"]),
        "pii-email": ("warning", ["line 5"]),
        "pii-phone": ("warning", ["line 5"]),
        "pii-card": ("warning", ["line 5"]),
        "exact-duplicates": ("warning", ["line 3"]),
        "conflicting-answers": ("warning", ["line 13", "line 15"]),
        "near-duplicates": ("warning", ["line 8"]),
        "mid-sentence": ("warning", ["line 9"]),
        "leakage-exact": ("warning", ["validation line 1"]),
        "leakage-near": ("warning", ["validation line 2"]),
        "whitespace": ("info", ["line 12"]),
        "language-mix": ("info", ["line 11"]),
    }
    assert not messy_report.usable
    assert [f.severity for f in messy_report.findings] == sorted(
        (f.severity for f in messy_report.findings), key=["error", "warning", "info"].index
    )


def test_findings_show_examples_and_fixes(messy_report):
    by_code = {f.code: f for f in messy_report.findings}
    assert by_code["mojibake"].details == ["line 2 (assistant): 'cafÃ©' → 'café'"]
    assert by_code["pii-card"].details == ["line 5 (user): •••• •••• •••• 1111"]  # masked, never the number
    assert by_code["exact-duplicates"].details == ["line 3 = line 1"]
    assert by_code["near-duplicates"].details == ["line 8 ≈ line 1 (89%)"]
    assert by_code["leakage-exact"].details == ["validation line 1 = training line 13"]
    assert "--mask-pii" in by_code["pii-email"].fix and "--strip-control-tokens" in by_code["control-tokens"].fix
    assert by_code["language-mix"].title.startswith("more than one language: en ")


def test_report_serialises(messy_report):
    data = json.loads(json.dumps(messy_report.to_dict(), ensure_ascii=False))
    assert data["rows"] == 15 and data["val_rows"] == 3 and data["fmt"] == "alpaca" and data["usable"] is False
    assert data["tokens"]["over_max_length"] == 0 and sum(b["rows"] for b in data["histogram"]) == 15
    html = render_html(messy_report)
    assert "NOT usable" in html and "&lt;|im_end|&gt;" in html and "<script" not in html


def test_fatal_findings_only_errors(tokenizer):
    examples = load_dataset(DATA / "messy_alpaca.jsonl").examples
    fatal = fatal_findings(examples, tokenizer, 1024)
    assert [f.code for f in fatal] == ["empty-answer", "control-tokens"]
    with pytest.raises(UserError) as e:
        raise_on_fatal(fatal, "messy.jsonl")
    message = str(e.value)
    assert "\n" not in message and "answer missing or empty" in message and "(line 4)" in message
    assert message.endswith("lapidar data check messy.jsonl")


def test_bundled_claims_data_is_usable(tokenizer):
    train, val = bundled_example("claims")
    if not train.is_file():
        pytest.skip("bundled claims data not written yet")
    report = check_dataset(load_dataset(train), tokenizer, 1024, load_dataset(val))
    assert report.usable, [(f.code, f.rows) for f in report.findings if f.severity == "error"]
    assert fatal_findings(load_dataset(train).examples, tokenizer, 1024, load_dataset(val).examples) == []


def test_max_length_cut_and_lost_answers(tokenizer, tmp_path):
    long_q = ("Please explain the whole claims process " * 10).strip()
    rows = qa_rows([("Short?", "Yes. " * 40), (long_q, "Fine."), ("Hi?", "Hello.")])
    ds = load_dataset(write_jsonl(tmp_path / "x.jsonl", rows))
    findings, stats, _ = check(ds.examples, tokenizer, 60)
    found = {f.code: (f.severity, f.rows) for f in findings}
    assert found["answer-cut"] == ("warning", ["line 1"])
    assert found["answer-lost"] == ("warning", ["line 2"])
    assert [s.truncated for s in stats] == [True, True, False]
    every = check(ds.examples[1:2], tokenizer, 60)[0]
    assert [(f.code, f.severity) for f in every] == [("answer-lost", "error")]


def test_batched_token_stats_equal_one_row_at_a_time(tokenizer, tmp_path):
    # Rows shorter than max_length are measured without character offsets; the numbers must be the same, also at
    # the edges (a row of exactly max_length tokens, one more, one less).
    long_q = ("Please explain the whole claims process " * 10).strip()
    rows = qa_rows([("Short?", "Yes. " * 40), (long_q, "Fine."), ("Hi?", "Hello.")])
    examples = load_dataset(write_jsonl(tmp_path / "x.jsonl", rows)).examples
    sizes = [s.n_tokens for s in token_stats_batch(examples, tokenizer, 10**6)]
    for max_length in sorted({8, 60, 1024} | {n + d for n in sizes for d in (-1, 0, 1)}):
        one_by_one = [token_stats(e, tokenizer, max_length) for e in examples]
        assert token_stats_batch(examples, tokenizer, max_length) == one_by_one, max_length


def test_label_balance_for_classification_like_data(tokenizer, tmp_path):
    rows = qa_rows(
        [
            (f"Review {i}: {'great' if i % 10 else 'awful'} service", "positive" if i % 10 else "negative")
            for i in range(30)
        ]
    )
    ds = load_dataset(write_jsonl(tmp_path / "x.jsonl", rows))
    report = check_dataset(ds, tokenizer, 256, near=False)
    assert report.labels == {"positive": 27, "negative": 3}
    balance = next(f for f in report.findings if f.code == "label-balance")
    assert balance.severity == "warning" and balance.rows == ["line 1", "line 11", "line 21"]
    assert "'positive' 90%" in balance.title and "right 90% of the time" in balance.fix


def test_preference_and_text_checks(tokenizer):
    pref = check_dataset(load_dataset(DATA / "preference.jsonl"), tokenizer, 1024)
    assert [(f.code, f.rows) for f in pref.findings if f.severity == "error"] == [("identical-preference", ["line 4"])]
    text = check_dataset(load_dataset(DATA / "notes.md"), tokenizer, 8)
    assert [(f.code, f.rows) for f in text.findings] == [("too-long", ["line 3", "line 7", "line 9"])]
    assert text.usable


def test_validation_problems_are_prefixed(tokenizer, tmp_path):
    train = load_dataset(write_jsonl(tmp_path / "t.jsonl", qa_rows([("A?", "Yes.")]))).examples
    val = load_dataset(write_jsonl(tmp_path / "v.jsonl", qa_rows([("B?", ""), ("C?", "No.")]))).examples
    fatal = fatal_findings(train, tokenizer, 256, val)
    assert [(f.code, f.rows) for f in fatal] == [("val-empty-answer", ["validation line 1"])]
