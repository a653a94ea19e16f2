"""Answer metrics: each one against its textbook definition or the reference implementation (scikit-learn,
rouge-score, sacrebleu) on the same inputs."""

from __future__ import annotations

import json
import random

import pytest

from lapidar.errors import UserError
from lapidar.evaluation.metrics import (
    METRICS,
    Answer,
    confusion_matrix,
    custom_metric,
    default_metrics,
    json_schema_metric,
    label,
    load_json_schema,
    normalize,
    resolve_metrics,
    score,
    task_shape,
    words,
)


def row(name: str, prediction: str, reference: str, **kw) -> float:
    fn = METRICS[name].row
    assert fn is not None
    return fn(Answer(prediction, reference, **kw))


def test_exact_and_normalised_match():
    assert row("exact_match", " Paris\n", "Paris") == 1.0
    assert row("exact_match", "paris", "Paris") == 0.0
    assert row("normalized_exact_match", "The Paris!", "paris") == 1.0
    assert normalize("  The  Eiffel-Tower, in PARIS. ") == "eiffel tower in paris"


def test_labels_ignore_case_and_end_punctuation():
    assert label(" Sports.\n") == "sports"
    assert row("accuracy", "Weather!", "weather") == 1.0
    assert row("accuracy", "weather report", "weather") == 0.0


def test_token_f1_squad_definition():
    # prediction 4 words, reference 3, 2 shared: P = 2/4, R = 2/3, F1 = 2PR/(P+R) = 4/7
    assert row("token_f1", "the cat sat on mat", "a cat on the rug") == pytest.approx(
        2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3)
    )
    assert row("token_f1", "", "") == 1.0 and row("token_f1", "x", "") == 0.0


def test_cjk_characters_are_words():
    assert words("今天天气很好, ok") == ["今", "天", "天", "气", "很", "好", "ok"]
    assert row("token_f1", "今天天气很好", "今天天气不好") == pytest.approx(5 / 6)


def test_contains_for_probe_answers():
    assert row("contains", "The capital of France is Paris.", "Paris") == 1.0
    assert row("contains", "Parisian food", "Paris") == 0.0  # whole words only
    assert row("contains", "It is 1, 3, 5.", "1, 3, 5") == 1.0


def test_rouge_l_matches_rouge_score():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    pairs = [
        ("the cat sat on the mat", "the cat is on the mat"),
        ("police within 48 hours", "Report a theft to the police within 48 hours."),
        ("completely different", "nothing shared here"),
        ("A B C D", "b d c a"),
        ("", "something"),
    ]
    for pred, ref in pairs:
        expected = scorer.score(ref, pred)["rougeL"].fmeasure
        assert row("rouge_l", pred, ref) == pytest.approx(expected), (pred, ref)


def test_macro_f1_and_confusion_match_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    classes = ["sports", "weather", "food"]
    refs = [rng.choice(classes) for _ in range(60)]
    preds = [r if rng.random() < 0.6 else rng.choice([*classes, "pizza", "???"]) for r in refs]
    answers = [Answer(p.capitalize() + ".", r) for p, r in zip(preds, refs, strict=True)]
    totals, rows = score(answers, resolve_metrics(["accuracy", "macro_f1"], refs))
    labels = sorted(set(refs))
    assert totals["accuracy"] == pytest.approx(sk.accuracy_score(refs, preds))
    assert totals["macro_f1"] == pytest.approx(
        sk.f1_score(refs, preds, labels=labels, average="macro", zero_division=0)
    )
    assert [r["accuracy"] for r in rows] == [float(p == r) for p, r in zip(preds, refs, strict=True)]
    cm = confusion_matrix(answers)
    expected = sk.confusion_matrix(refs, preds, labels=labels).tolist()
    assert cm["labels"] == labels and cm["columns"] == [*labels, "(other)"]
    assert [r[:3] for r in cm["matrix"]] == expected
    assert sum(map(sum, cm["matrix"])) == len(refs)


def test_bleu_and_chrf_are_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    preds = ["the cat sat on the mat", "report it within 48 hours"]
    refs = ["the cat is on the mat", "report a theft within 48 hours"]
    answers = [Answer(p, r) for p, r in zip(preds, refs, strict=True)]
    totals, rows = score(answers, resolve_metrics(["bleu", "chrf"], refs))
    assert totals["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert totals["chrf"] == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score)
    assert rows[0]["bleu"] == pytest.approx(sacrebleu.sentence_bleu(preds[0], [refs[0]]).score)
    assert row("bleu", "exactly the same words here", "exactly the same words here") == pytest.approx(100.0)


def test_json_validity_and_schema(tmp_path):
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(
        json.dumps({"type": "object", "required": ["label"], "properties": {"label": {"enum": ["a", "b"]}}})
    )
    schema = load_json_schema(schema_file)
    conforms = json_schema_metric(schema).row
    assert conforms is not None
    assert conforms(Answer('{"label": "a"}', "")) == 1.0
    assert conforms(Answer('{"label": "c"}', "")) == 0.0
    assert conforms(Answer("label: a", "")) == 0.0
    assert row("json_valid", " [1, 2] ", "") == 1.0 and row("json_valid", "{'a': 1}", "") == 0.0

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "no-such-type"}))
    with pytest.raises(UserError, match=r"bad\.json: invalid JSON Schema"):
        load_json_schema(bad)
    with pytest.raises(UserError, match="not found"):
        load_json_schema(tmp_path / "missing.json")


def test_custom_metric_from_file_and_module(tmp_path):
    path = tmp_path / "my_metrics.py"
    path.write_text(
        "def starts_same(pred, ref):\n    return pred[:1] == ref[:1]\n\ndef broken(pred, ref):\n    return 'x'\n"
    )
    metric = custom_metric(f"{path}:starts_same")
    assert metric.name == "starts_same" and metric.row is not None
    assert metric.row(Answer("abc", "axe")) == 1.0 and metric.row(Answer("b", "a")) == 0.0
    assert custom_metric("operator:eq").row(Answer("x", "x")) == 1.0  # any importable module works
    with pytest.raises(UserError, match="expected a finite number"):
        custom_metric(f"{path}:broken").row(Answer("a", "b", source="t.jsonl: line 3"))  # type: ignore[misc]
    with pytest.raises(UserError, match=r"raised TypeError: .* on t.jsonl: line 3"):
        custom_metric("os.path:isabs").row(Answer("a", "b", source="t.jsonl: line 3"))  # type: ignore[misc]
    with pytest.raises(UserError, match="has no function 'nope'"):
        custom_metric(f"{path}:nope")
    with pytest.raises(UserError, match="module:function"):
        custom_metric("no_colon_here")


def test_defaults_follow_the_shape_of_the_answers():
    labels = ["sports", "food", "weather", "food", "sports", "weather"]
    assert task_shape(labels) == "classification"
    assert default_metrics(labels)[:2] == ["accuracy", "macro_f1"]
    assert task_shape(['{"a": 1}', "[1, 2]"]) == "json"
    assert task_shape(["The deductible is $250.", "Report within 48 hours."]) == "text"
    assert default_metrics(["a sentence here", "another one"])[0] == "token_f1"
    assert "eos_rate" in default_metrics(labels) and "answer_length" in default_metrics(labels)


def test_unknown_metric_names_the_choices():
    with pytest.raises(UserError, match=r"unknown metric 'acuracy'; valid choices: .*accuracy"):
        resolve_metrics(["acuracy"], ["x"])
    with pytest.raises(UserError, match="needs --json-schema"):
        resolve_metrics(["json_schema"], ["x"])


def test_length_and_eos_rate():
    answers = [Answer("a", "a", stopped_at_eos=True, n_tokens=3), Answer("b", "a", stopped_at_eos=False, n_tokens=9)]
    totals, _ = score(answers, resolve_metrics(["answer_length", "eos_rate"], ["a", "a"]))
    assert totals == {"answer_length": 6.0, "eos_rate": 0.5}


def test_generation_metrics_skips_rows_without_an_answer():
    from lapidar.data.formats import Example
    from lapidar.evaluation.evaluate import generation_metrics

    rows = [Example([], "t.jsonl: line 1", kind="text", text="raw"), Example([{"role": "user", "content": "q"}], "x")]
    assert generation_metrics(None, None, rows) == {}  # nothing to score: the model is not even touched
