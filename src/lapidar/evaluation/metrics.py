"""Scoring generated answers against reference answers: one registry, metric name -> how to score.

A metric scores each answer (`row`) and the whole set (`corpus`, by default the mean of the row scores). Scores
are fractions in [0, 1] except BLEU and chrF (sacrebleu's 0-100 scale, as papers report them) and answer_length
(generated tokens). Text normalisation follows the SQuAD evaluation script (lowercase, drop punctuation and
English articles, collapse spaces); words are runs of letters/digits, and each CJK character is a word of its
own, so Chinese and Japanese answers are not scored as one giant token.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import re
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lapidar.errors import UserError, unknown_choice
from lapidar.inference.tools import TOOL_OPEN, ToolCall, parse_tool_calls

__all__ = [
    "METRICS",
    "Answer",
    "Metric",
    "confusion_matrix",
    "custom_metric",
    "default_metrics",
    "json_schema_metric",
    "label",
    "load_json_schema",
    "normalize",
    "resolve_metrics",
    "score",
    "task_shape",
    "words",
]


@dataclass(frozen=True)
class Answer:
    """One generated answer and the reference it is compared with."""

    prediction: str
    reference: str
    stopped_at_eos: bool = True
    n_tokens: int = 0  # generated tokens before EOS
    source: str = ""  # "file: row N", for error messages


@dataclass(frozen=True)
class Metric:
    """How to score answers. `row` gives a per-answer score; `corpus` the set's score (default: mean of rows)."""

    name: str
    description: str
    row: Callable[[Answer], float] | None = None
    corpus: Callable[[Sequence[Answer]], float] | None = None
    higher_is_better: bool | None = True  # None: neither (answer length)
    scale: str = "fraction"  # "fraction" (0-1), "0-100" or "tokens"


# ---------------------------------------------------------------- text helpers

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W_])+")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def _strip_punct(text: str) -> str:
    return "".join(" " if ch in _PUNCT or unicodedata.category(ch).startswith("P") else ch for ch in text)


def normalize(text: str) -> str:
    """SQuAD-style normal form: lowercase, no punctuation, no English articles, single spaces."""
    text = _ARTICLES.sub(" ", _strip_punct(text.lower()))
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """Lowercased words (letter/digit runs; one word per CJK character)."""
    return _WORD.findall(text.lower())


def label(text: str) -> str:
    """A class label's normal form: lowercase, surrounding spaces and punctuation removed ("Sports." -> "sports")."""
    text = " ".join(text.lower().split())
    return text.strip("".join(_PUNCT) + "。、！？「」 ")


def _parse_json(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text.strip())
    except (json.JSONDecodeError, RecursionError):
        return False, None


# ---------------------------------------------------------------- row scores


def _exact(a: Answer) -> float:
    return float(a.prediction.strip() == a.reference.strip())


def _normalized_exact(a: Answer) -> float:
    return float(normalize(a.prediction) == normalize(a.reference))


def _accuracy(a: Answer) -> float:
    return float(label(a.prediction) == label(a.reference))


def _contains(a: Answer) -> float:
    ref = normalize(a.reference)
    pred = normalize(a.prediction)
    return float(f" {ref} " in f" {pred} ") if ref else float(not pred)


def _token_f1(a: Answer) -> float:
    pred, ref = words(normalize(a.prediction)), words(normalize(a.reference))
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _rouge_l(a: Answer) -> float:
    # Same definition as Google's rouge-score (LCS F-measure, no stemming); its tokenizer keeps only [a-z0-9].
    pred, ref = words(a.prediction), words(a.reference)
    if not pred or not ref:
        return 0.0
    lcs = _lcs(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def _bleu_tokenizer(answers: Sequence[Answer]) -> str:
    # sacrebleu's default "13a" splits on spaces; Chinese/Japanese need its character-level "zh" tokenizer.
    return "zh" if any(re.search(f"[{_CJK}]", a.reference) for a in answers) else "13a"


def _sentence_bleu(a: Answer) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_bleu(a.prediction, [a.reference], tokenize=_bleu_tokenizer([a])).score)


def _corpus_bleu(answers: Sequence[Answer]) -> float:
    import sacrebleu

    preds, refs = [a.prediction for a in answers], [a.reference for a in answers]
    return float(sacrebleu.corpus_bleu(preds, [refs], tokenize=_bleu_tokenizer(answers)).score)


def _sentence_chrf(a: Answer) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_chrf(a.prediction, [a.reference]).score)


def _corpus_chrf(answers: Sequence[Answer]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_chrf([a.prediction for a in answers], [[a.reference for a in answers]]).score)


def _calls(text: str) -> list[ToolCall]:
    return parse_tool_calls(text).calls


def _tool_call_match(a: Answer) -> float:
    # Parallel calls are independent, so their order does not matter; argument keys compare as parsed JSON.
    return float(
        sorted(c.canonical() for c in _calls(a.prediction)) == sorted(c.canonical() for c in _calls(a.reference))
    )


def _tool_name_match(a: Answer) -> float:
    return float(sorted(c.name for c in _calls(a.prediction)) == sorted(c.name for c in _calls(a.reference)))


def _json_valid(a: Answer) -> float:
    return float(_parse_json(a.prediction)[0])


def _macro_f1(answers: Sequence[Answer]) -> float:
    """Mean F1 over the reference label set; predictions outside it count as wrong, not as extra classes.

    Equals scikit-learn's `f1_score(y_true, y_pred, labels=sorted(set(y_true)), average="macro", zero_division=0)`.
    """
    refs, preds = [label(a.reference) for a in answers], [label(a.prediction) for a in answers]
    classes = sorted(set(refs))
    if not classes:
        return 0.0
    f1s = []
    for c in classes:
        tp = sum(r == c and p == c for r, p in zip(refs, preds, strict=True))
        fp = sum(r != c and p == c for r, p in zip(refs, preds, strict=True))
        fn = sum(r == c and p != c for r, p in zip(refs, preds, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s)


def confusion_matrix(answers: Sequence[Answer]) -> dict:
    """Counts of (reference label, predicted label); predictions outside the label set go to "(other)".

    `matrix[i][j]` = rows whose reference is `labels[i]` and prediction is `columns[j]`.
    """
    refs = [label(a.reference) for a in answers]
    classes = sorted(set(refs))
    preds = [p if p in classes else "(other)" for p in (label(a.prediction) for a in answers)]
    columns = classes + (["(other)"] if "(other)" in preds else [])
    matrix = [[sum(r == c and p == col for r, p in zip(refs, preds, strict=True)) for col in columns] for c in classes]
    return {"labels": classes, "columns": columns, "matrix": matrix}


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("exact_match", "answer equals the reference exactly (surrounding spaces ignored)", _exact),
        Metric("normalized_exact_match", "equal after lowercasing and removing punctuation/articles", _normalized_exact),
        Metric("accuracy", "predicted class label equals the reference label (case, end punctuation ignored)", _accuracy),
        Metric("macro_f1", "F1 per reference label, averaged (classification)", corpus=_macro_f1),
        Metric("contains", "normalised reference appears in the normalised answer (for short facts)", _contains),
        Metric("token_f1", "word-overlap F1 between answer and reference (SQuAD definition)", _token_f1),
        Metric("rouge_l", "ROUGE-L F-measure: longest common word subsequence", _rouge_l),
        Metric("bleu", "BLEU (sacrebleu, 0-100); corpus score, per-row sentence BLEU", _sentence_bleu, _corpus_bleu, scale="0-100"),
        Metric("chrf", "chrF character n-gram F-score (sacrebleu, 0-100)", _sentence_chrf, _corpus_chrf, scale="0-100"),
        Metric("json_valid", "answer parses as JSON", _json_valid),
        Metric("tool_call_match", "the answer's tool calls equal the reference's: names and JSON arguments (key and call order ignored; no call = no call)", _tool_call_match),
        Metric("tool_name_match", "the answer calls the same functions as the reference (arguments not compared)", _tool_name_match),
        Metric("answer_length", "generated tokens per answer", lambda a: float(a.n_tokens), higher_is_better=None, scale="tokens"),
        Metric("eos_rate", "share of answers that ended with the end-of-answer token", lambda a: float(a.stopped_at_eos)),
    )
}  # fmt: skip

# ---------------------------------------------------------------- metrics that need an argument


def load_json_schema(path: Path) -> dict:
    """Read and check a JSON Schema file (errors name the file)."""
    from jsonschema import exceptions, validators

    if not path.is_file():
        raise UserError(f"JSON schema file not found: {path}")
    ok, schema = _parse_json(path.read_text(encoding="utf-8-sig"))
    if not ok or not isinstance(schema, dict | bool):
        raise UserError(f"{path}: not a JSON Schema (expected a JSON object)")
    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as e:
        raise UserError(
            f"{path}: invalid JSON Schema at {'/'.join(map(str, e.path)) or '(root)'}: {e.message}"
        ) from None
    return schema  # type: ignore[return-value]


def json_schema_metric(schema: dict) -> Metric:
    """Share of answers that are valid JSON and conform to `schema`."""
    from jsonschema import validators

    validator = validators.validator_for(schema)(schema)

    def conforms(a: Answer) -> float:
        ok, value = _parse_json(a.prediction)
        return float(ok and validator.is_valid(value))

    return Metric("json_schema", "answer is JSON that conforms to the --json-schema", conforms)


def _import_function(spec: str) -> Callable:
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise UserError(f"--metric-fn {spec!r}: expected module:function or path/to/file.py:function")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise UserError(f"--metric-fn {spec!r}: file not found: {path}")
        module_spec = importlib.util.spec_from_file_location(f"lapidar_user_metric_{path.stem}", path)
        if module_spec is None or module_spec.loader is None:
            raise UserError(f"--metric-fn {spec!r}: cannot import {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise UserError(f"--metric-fn {spec!r}: cannot import module {target!r} ({e})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"--metric-fn {spec!r}: {target} has no function {name!r}")
    return fn


def custom_metric(spec: str) -> Metric:
    """A user metric `module:function` or `file.py:function`, called as `fn(prediction, reference) -> number`."""
    fn = _import_function(spec)
    name = spec.rpartition(":")[2]

    def call(a: Answer) -> float:
        try:
            value = fn(a.prediction, a.reference)
        except Exception as e:  # the user's code: report it as one line naming the row, like any user error
            raise UserError(f"--metric-fn {spec} raised {type(e).__name__}: {e} on {a.source or 'a row'}") from e
        if isinstance(value, bool | int | float) and math.isfinite(float(value)):
            return float(value)
        raise UserError(f"--metric-fn {spec}: returned {value!r} for {a.source or 'a row'}; expected a finite number")

    return Metric(name, f"custom metric {spec}", call)


# ---------------------------------------------------------------- choosing metrics


def task_shape(references: Sequence[str]) -> str:
    """Classify the answers: `tool_call` (some reference calls a tool), `json` (every reference is a JSON object or
    array), `classification` (a small set of short labels, each used about twice or more) or `text`."""
    refs = [r.strip() for r in references]
    if any(TOOL_OPEN in r and _calls(r) for r in refs):
        return "tool_call"
    if refs and all(r[:1] in "{[" and _parse_json(r)[0] for r in refs):
        return "json"
    labels = {label(r) for r in refs}
    short = all(len(r.split()) <= 4 and len(r) <= 40 for r in refs)
    if short and 2 <= len(labels) <= min(20, len(refs) // 2):
        return "classification"
    return "text"


_DEFAULTS = {
    "classification": ["accuracy", "macro_f1", "exact_match", "normalized_exact_match"],
    "json": ["json_valid", "exact_match", "token_f1"],
    "tool_call": ["tool_call_match", "tool_name_match", "exact_match", "token_f1"],
    "text": ["token_f1", "rouge_l", "bleu", "chrf", "exact_match", "normalized_exact_match"],
}


def default_metrics(references: Sequence[str]) -> list[str]:
    """The metrics that suit the answers' shape; the first one is the headline metric."""
    return [*_DEFAULTS[task_shape(references)], "answer_length", "eos_rate"]


def resolve_metrics(
    names: Sequence[str] | None,
    references: Sequence[str],
    json_schema: dict | None = None,
    metric_fn: str | None = None,
) -> list[Metric]:
    """Turn metric names (None: defaults for the references' shape) into metrics, in order.

    A custom metric and a JSON schema, when given, come first: they are what the user asked to be judged on.
    """
    chosen = list(names) if names else default_metrics(references)
    out: list[Metric] = []
    if metric_fn:
        out.append(custom_metric(metric_fn))
    if json_schema is not None:
        out.append(json_schema_metric(json_schema))
    for name in chosen:
        if name == "json_schema":
            if json_schema is None:
                raise UserError("metric 'json_schema' needs --json-schema FILE")
            continue
        if name not in METRICS:
            raise unknown_choice("metric", name, [*METRICS, "json_schema"])
        if all(m.name != name for m in out):
            out.append(METRICS[name])
    return out


def score(answers: Sequence[Answer], metrics: Sequence[Metric]) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Score every answer. Returns (set-level scores, per-answer scores)."""
    rows: list[dict[str, float]] = [{m.name: m.row(a) for m in metrics if m.row is not None} for a in answers]
    totals: dict[str, float] = {}
    for m in metrics:
        if m.corpus is not None:
            totals[m.name] = m.corpus(answers) if answers else 0.0
        else:
            totals[m.name] = sum(r[m.name] for r in rows) / len(rows) if rows else 0.0
    return totals, rows
