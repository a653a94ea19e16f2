"""Evaluation recipe: greedy answers for a test file, scored; optionally next to the base model; plus a probe of
general ability before and after fine-tuning (does the model still know what it knew?).

Test rows are ordinary training rows: the prompt is the conversation without its final assistant message and the
reference is that message. Outputs: OUT/eval.json (settings, scores, comparison, probe) and OUT/predictions.jsonl
(one object per row: prompt, reference, prediction, per-row scores); OUT defaults to RUN_DIR/eval.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lapidar.data.formats import Example, load_dataset, require_kind
from lapidar.data.tokenize import collate, encode_conversation, render_prompt
from lapidar.errors import UserError
from lapidar.evaluation.metrics import (
    Answer,
    Metric,
    confusion_matrix,
    label,
    load_json_schema,
    resolve_metrics,
    score,
    task_shape,
)
from lapidar.inference.generate import Loaded, load_for_inference
from lapidar.inference.tools import parse_tool_calls
from lapidar.io import write_json, write_text
from lapidar.models.loading import RANDOM_LABEL, RUN_FILE, ModelSource
from lapidar.training.loss import causal_lm_loss

__all__ = [
    "PROBE_METRICS",
    "EvalSettings",
    "ModelScores",
    "answer_loss",
    "auto_max_new_tokens",
    "base_model",
    "bundled_probe",
    "generate_answers",
    "generation_metrics",
    "load_test_examples",
    "main",
    "score_model",
]

PROBE_METRICS = ["contains", "token_f1", "eos_rate"]
# A probe result counts as forgetting when the share of correct answers drops by this much ...
FORGET_DROP = 0.10
# ... or the loss on the probe's reference answers rises by this share.
FORGET_LOSS_RISE = 0.10


@dataclass(frozen=True)
class EvalSettings:
    """What `lapidar eval` was asked to do (one field per flag)."""

    target: str
    data: Path
    output: Path | None = None
    metrics: list[str] | None = None
    compare_base: bool = False
    probe: str = "builtin"  # "builtin", "none" or a data file
    json_schema: Path | None = None
    metric_fn: str | None = None
    max_new_tokens: int | None = None
    batch_size: int = 8
    limit: int | None = None


@dataclass
class ModelScores:
    """One model's results on one set of examples."""

    label: str
    random_init: bool
    answers: list[Answer]
    totals: dict[str, float]
    rows: list[dict[str, float]]
    loss: float
    perplexity: float
    confusion: dict | None = None

    def summary(self) -> dict:
        """The part of eval.json that describes this model."""
        out: dict[str, Any] = {
            "label": self.label,
            "random_init": self.random_init,
            "scores": self.totals,
            "loss": self.loss,
            "perplexity": self.perplexity,
        }
        if self.confusion is not None:
            out["confusion_matrix"] = self.confusion
        return out


# ---------------------------------------------------------------- data


def load_test_examples(path: Path, limit: int | None = None) -> list[Example]:
    """Read a test file; every row must end with the reference answer (an assistant message)."""
    ds = load_dataset(path)
    require_kind(ds, ("sft",), "`lapidar eval` (prompts with reference answers)")
    examples = ds.examples
    for ex in examples:
        role = ex.messages[-1]["role"]
        if role != "assistant":
            raise UserError(
                f"{ex.source}: the last message must be the reference answer (role 'assistant'), found {role!r}"
            )
    return examples[:limit] if limit else examples


def bundled_probe() -> Path:
    """The general-knowledge and instruction probe shipped with lapidar (30 short questions)."""
    return Path(str(importlib.resources.files("lapidar.resources").joinpath("probes.jsonl")))


# ---------------------------------------------------------------- generation and loss


@dataclass(frozen=True)
class _Generated:
    text: str
    stopped: bool
    n_tokens: int


def _stop_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(configured if isinstance(configured, list) else [configured])
    return {i for i in ids if i is not None}


def auto_max_new_tokens(tokenizer, references: Sequence[str]) -> int:
    """Room for the longest reference answer and half as much again (at most 512 tokens)."""
    longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references), default=32)
    return min(512, int(longest * 1.5) + 10)


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    prompts: Sequence[list[dict]],
    max_new_tokens: int,
    batch_size: int = 8,
    bf16: bool = False,
    tools: Sequence[list | None] | None = None,
) -> list[_Generated]:
    """Greedy answers for many prompts, `batch_size` at a time, left-padded and grouped by length.

    `tools[i]` are prompt i's tool specs, rendered into its system turn by the chat template (None: no tools)."""
    tools = tools or [None] * len(prompts)
    encoded = [
        tokenizer(render_prompt(tokenizer, p, t), add_special_tokens=False)["input_ids"]
        for p, t in zip(prompts, tools, strict=True)
    ]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    device = next(model.parameters()).device
    stop = _stop_ids(model, tokenizer)
    pad = tokenizer.pad_token_id
    results: dict[int, _Generated] = {}
    was_training = model.training
    model.eval()
    try:
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            width = max(len(encoded[i]) for i in idx)
            # Left padding: every prompt ends at the same position, so new tokens start at `width` for all rows.
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[row, width - len(encoded[i]) :] = 1
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    eos_token_id=sorted(stop),
                    pad_token_id=pad,
                )
            for row, i in enumerate(idx):
                new = out[row, width:].tolist()
                end = next((k for k, t in enumerate(new) if t in stop), None)
                kept = new if end is None else new[:end]
                results[i] = _Generated(tokenizer.decode(kept, skip_special_tokens=True), end is not None, len(kept))
    finally:
        model.train(was_training)
    return [results[i] for i in range(len(encoded))]


@torch.no_grad()
def answer_loss(
    model, tokenizer, examples: Sequence[Example], max_length: int = 1024, batch_size: int = 8, bf16: bool = False
) -> float:
    """Teacher-forced cross-entropy per answer token (nats), exactly as training measures validation loss."""
    encoded = [encode_conversation(tokenizer, ex.messages, max_length, ex.source, ex.tools) for ex in examples]
    encoded = sorted((e for e in encoded if e.n_answer_tokens), key=lambda e: len(e.input_ids))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for b in range(0, len(encoded), batch_size):
            batch = {k: v.to(device) for k, v in collate(encoded[b : b + batch_size], tokenizer.pad_token_id).items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss_sum, n = causal_lm_loss(model, batch)
            total, count = total + loss_sum.item(), count + n
    finally:
        model.train(was_training)
    return total / count if count else float("nan")


def _answers(generated: Sequence[_Generated], examples: Sequence[Example]) -> list[Answer]:
    return [
        Answer(g.text, ex.messages[-1]["content"], g.stopped, g.n_tokens, ex.source)
        for g, ex in zip(generated, examples, strict=True)
    ]


def generation_metrics(
    loaded_or_model: Loaded | Any,
    tokenizer: Any,
    examples: Sequence[Example],
    metrics: Sequence[str] | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 8,
    bf16: bool = False,
) -> dict[str, float]:
    """Generate greedy answers for `examples` and score them; for evaluation during training.

    `loaded_or_model` is a `Loaded` (then `tokenizer` may be None) or a (peft) model in any mode: it is put in
    eval mode for generation and restored afterwards. `metrics` None picks the defaults for the answers' shape
    (e.g. accuracy and macro_f1 for labels). Returns {metric name: value}, e.g. {"accuracy": 0.8, ...}.
    """
    if isinstance(loaded_or_model, Loaded):
        model, tokenizer = loaded_or_model.model, tokenizer or loaded_or_model.tokenizer
    else:
        model = loaded_or_model
    # Only chat rows that end with an answer can be scored (not raw text or preference pairs).
    examples = [ex for ex in examples if ex.kind == "sft" and ex.messages and ex.messages[-1]["role"] == "assistant"]
    if not examples:
        return {}
    references = [ex.messages[-1]["content"] for ex in examples]
    chosen = resolve_metrics(metrics, references)
    budget = max_new_tokens or auto_max_new_tokens(tokenizer, references)
    generated = generate_answers(
        model, tokenizer, [ex.messages[:-1] for ex in examples], budget, batch_size, bf16, [ex.tools for ex in examples]
    )
    return score(_answers(generated, examples), chosen)[0]


def score_model(
    loaded: Loaded,
    examples: Sequence[Example],
    metrics: Sequence[Metric],
    max_new_tokens: int,
    batch_size: int = 8,
    max_length: int = 1024,
    classification: bool = False,
) -> ModelScores:
    """Answer every example greedily, score the answers, and measure the loss on the references."""
    generated = generate_answers(
        loaded.model,
        loaded.tokenizer,
        [ex.messages[:-1] for ex in examples],
        max_new_tokens,
        batch_size,
        tools=[ex.tools for ex in examples],
    )
    answers = _answers(generated, examples)
    totals, rows = score(answers, metrics)
    loss = answer_loss(loaded.model, loaded.tokenizer, examples, max_length, batch_size)
    return ModelScores(
        label=loaded.label,
        random_init=loaded.random_init,
        answers=answers,
        totals=totals,
        rows=rows,
        loss=loss,
        perplexity=math.exp(min(loss, 700.0)) if math.isfinite(loss) else float("nan"),
        confusion=confusion_matrix(answers) if classification else None,
    )


# ---------------------------------------------------------------- the base model of a run


def _run_meta(target: str) -> dict | None:
    path = Path(target) / RUN_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


@contextlib.contextmanager
def base_model(loaded: Loaded, meta: dict) -> Iterator[Loaded]:
    """The run's base model: the same weights with the adapter switched off (no second copy in memory) for
    LoRA runs; loaded from its directory for full fine-tunes."""
    source = ModelSource(meta["model_name"], Path(meta["base_model"]), meta["kind"], meta["random_init"])
    if hasattr(loaded.model, "disable_adapter"):
        with loaded.model.disable_adapter():
            yield Loaded(loaded.model, loaded.tokenizer, f"base {source.label}", source.random_init)
        return
    base = load_for_inference(str(source.path))
    yield Loaded(base.model, loaded.tokenizer, f"base {source.label}", source.random_init)


# ---------------------------------------------------------------- comparison and probe


def _changes(base: dict[str, float], tuned: dict[str, float]) -> dict[str, dict[str, float]]:
    return {k: {"base": base[k], "model": tuned[k], "change": tuned[k] - base[k]} for k in tuned if k in base}


def _row_changes(model: ModelScores, base: ModelScores, primary: str, examples: Sequence[Example]) -> dict:
    better: list[dict] = []
    worse: list[dict] = []
    same = 0
    for i, (m, b) in enumerate(zip(model.rows, base.rows, strict=True)):
        delta = m.get(primary, 0.0) - b.get(primary, 0.0)
        if abs(delta) < 1e-12:
            same += 1
            continue
        entry = {
            "index": i,
            "source": examples[i].source,
            "prompt": examples[i].messages[-2]["content"] if len(examples[i].messages) > 1 else "",
            "reference": model.answers[i].reference,
            "base_prediction": base.answers[i].prediction,
            "prediction": model.answers[i].prediction,
            "base_score": b.get(primary),
            "score": m.get(primary),
        }
        (better if delta > 0 else worse).append(entry)
    better.sort(key=lambda e: e["base_score"] - e["score"])
    worse.sort(key=lambda e: e["score"] - e["base_score"])
    return {"metric": primary, "better": better, "worse": worse, "unchanged": same}


def _forgetting_verdict(before: ModelScores, after: ModelScores) -> dict:
    drop = before.totals["contains"] - after.totals["contains"]
    rise = (after.loss - before.loss) / before.loss if before.loss > 0 and math.isfinite(before.loss) else 0.0
    reasons = []
    if drop >= FORGET_DROP:
        reasons.append(
            f"correct probe answers fell from {before.totals['contains']:.0%} to {after.totals['contains']:.0%}"
        )
    if rise >= FORGET_LOSS_RISE:
        reasons.append(f"loss on the probe answers rose {rise:.0%} ({before.loss:.3f} -> {after.loss:.3f})")
    if before.random_init:
        verdict = "the base model has random weights, so the probe cannot measure forgetting (it knew nothing)"
    elif reasons:
        verdict = "possible forgetting: " + "; ".join(reasons)
    else:
        verdict = "no sign of forgetting on the probe"
    return {
        "forgetting": bool(reasons) and not before.random_init,
        "verdict": verdict,
        "contains_drop": drop,
        "loss_rise": rise,
    }


# ---------------------------------------------------------------- output


def _call_list(text: str) -> list[dict]:
    return [{"name": c.name, "arguments": c.arguments} for c in parse_tool_calls(text).calls]


def _prediction_rows(examples: Sequence[Example], model: ModelScores, base: ModelScores | None, shape: str) -> str:
    lines = []
    for i, ex in enumerate(examples):
        a = model.answers[i]
        row: dict[str, Any] = {
            "index": i,
            "source": ex.source,
            "prompt": ex.messages[:-1],
            "reference": a.reference,
            "prediction": a.prediction,
            "stopped_at_eos": a.stopped_at_eos,
            "n_tokens": a.n_tokens,
            "scores": model.rows[i],
        }
        if ex.tools:
            row["tools"] = ex.tools
        if shape == "classification":
            row["labels"] = {"reference": label(a.reference), "prediction": label(a.prediction)}
        if shape == "tool_call":  # the calls as the metric saw them, so a miss can be read at a glance
            row["tool_calls"] = {"reference": _call_list(a.reference), "prediction": _call_list(a.prediction)}
        if model.random_init:
            row["note"] = RANDOM_LABEL
        if base is not None:
            b = base.answers[i]
            row["base"] = {
                "prediction": b.prediction,
                "stopped_at_eos": b.stopped_at_eos,
                "n_tokens": b.n_tokens,
                "scores": base.rows[i],
            }
            if shape == "classification":
                row["base"]["label"] = label(b.prediction)
        lines.append(json.dumps(row, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def _fmt(metric: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if metric in ("bleu", "chrf", "answer_length"):
        return f"{value:.1f}"
    if metric in ("loss", "perplexity"):
        return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.3g}"
    return f"{value:.3f}"


def _print_scores(console: Console, title: str, model: ModelScores, base: ModelScores | None) -> None:
    table = Table(title=title)
    table.add_column("metric")
    if base is not None:
        table.add_column("base", justify="right")
    table.add_column("fine-tuned" if base is not None else "model", justify="right")
    if base is not None:
        table.add_column("change", justify="right")
    names = [*model.totals, "loss", "perplexity"]
    for name in names:
        value = model.totals.get(name, getattr(model, name, None))
        cells = [name]
        if base is not None:
            b = base.totals.get(name, getattr(base, name, None))
            delta = None if b is None or value is None else value - b
            change = "-" if delta is None else ("+" if delta >= 0 else "") + _fmt(name, delta)
            cells += [_fmt(name, b), _fmt(name, value), change]
        else:
            cells.append(_fmt(name, value))
        table.add_row(*cells)
    console.print(table)


def _short(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return escape(text if len(text) <= n else text[: n - 1] + "…")


def _print_row_changes(console: Console, changes: dict, show: int = 5) -> None:
    metric = changes["metric"]
    console.print(
        f"[bold]Rows by {metric}:[/bold] {len(changes['better'])} better, {len(changes['worse'])} worse, "
        f"{changes['unchanged']} unchanged"
    )
    for key, colour in (("better", "green"), ("worse", "red")):
        for e in changes[key][:show]:
            console.print(
                f"  [{colour}]{key}[/{colour}] {escape(e['source'].rpartition(': ')[2])}: {_short(e['prompt'], 60)}\n"
                f"      reference {_short(e['reference'])}\n"
                f"      base      {_short(e['base_prediction'])}  ({e['base_score']:.2f})\n"
                f"      tuned     {_short(e['prediction'])}  ({e['score']:.2f})"
            )


# ---------------------------------------------------------------- the recipe


def _output_dir(settings: EvalSettings, meta: dict | None) -> Path:
    if settings.output is not None:
        return settings.output
    if meta is not None:
        return Path(settings.target) / "eval"
    return Path("evals") / Path(settings.target).name.replace("/", "-")


def _max_length(target: str) -> int:
    """The run's max_length (answers are cut where training cut them), else the training default."""
    import yaml

    cfg = Path(target) / "config.yaml"
    if cfg.is_file():
        data = yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}
        return int(data.get("max_length") or 1024)
    return 1024


def _probe_examples(settings: EvalSettings, meta: dict | None) -> tuple[Path | None, list[Example]]:
    """The probe to run: the bundled one for runs (it needs a base to compare with), the user's file always."""
    if settings.probe == "none" or (settings.probe == "builtin" and meta is None):
        return None, []
    path = bundled_probe() if settings.probe == "builtin" else Path(settings.probe)
    return path, load_test_examples(path)


@dataclass
class _Plan:
    """Everything decided before a model is loaded (so bad input fails fast)."""

    meta: dict | None
    examples: list[Example]
    metrics: list[Metric]
    shape: str
    classification: bool
    primary: str
    probe_path: Path | None
    probe_examples: list[Example]
    out_dir: Path
    max_length: int


def _plan(settings: EvalSettings) -> _Plan:
    meta = _run_meta(settings.target)
    if settings.compare_base and meta is None:
        raise UserError(
            f"--compare-base needs a run directory ({settings.target} has no {RUN_FILE} naming a base model)"
        )
    examples = load_test_examples(settings.data, settings.limit)
    schema = load_json_schema(settings.json_schema) if settings.json_schema else None
    references = [ex.messages[-1]["content"] for ex in examples]
    metrics = resolve_metrics(settings.metrics, references, schema, settings.metric_fn)
    shape = task_shape(references)
    # The headline metric: the first one that scores single rows and where higher is better.
    scored = [m.name for m in metrics if m.row is not None and m.higher_is_better]
    probe_path, probe_examples = _probe_examples(settings, meta)
    return _Plan(
        meta=meta,
        examples=examples,
        metrics=metrics,
        shape=shape,
        classification=shape == "classification" or any(m.name in ("accuracy", "macro_f1") for m in metrics),
        primary=scored[0] if scored else metrics[0].name,
        probe_path=probe_path,
        probe_examples=probe_examples,
        out_dir=_output_dir(settings, meta),
        max_length=_max_length(settings.target),
    )


def main(settings: EvalSettings, console: Console | None = None) -> dict:
    """Run `lapidar eval`; writes eval.json and predictions.jsonl and returns eval.json's content."""
    console = console or Console()
    plan = _plan(settings)
    batch, length = settings.batch_size, plan.max_length

    loaded = load_for_inference(settings.target)
    budget = settings.max_new_tokens or auto_max_new_tokens(
        loaded.tokenizer, [ex.messages[-1]["content"] for ex in plan.examples]
    )
    console.print(
        f"[bold]Evaluating[/bold] {escape(loaded.label)} on {len(plan.examples)} rows of {settings.data} "
        f"({plan.shape} answers; metrics {', '.join(m.name for m in plan.metrics)}; greedy, up to {budget} new tokens)"
    )
    model = score_model(loaded, plan.examples, plan.metrics, budget, batch, length, plan.classification)
    probe_metrics = resolve_metrics(PROBE_METRICS, [])
    probe_budget = 0
    probe_after = probe_before = base = None
    if plan.probe_examples:
        # Probe answers are short facts, but a chatty model needs room to reach them.
        refs = [ex.messages[-1]["content"] for ex in plan.probe_examples]
        probe_budget = max(48, auto_max_new_tokens(loaded.tokenizer, refs))
        probe_after = score_model(loaded, plan.probe_examples, probe_metrics, probe_budget, batch, length)
    if plan.meta is not None and (settings.compare_base or plan.probe_examples):
        with base_model(loaded, plan.meta) as base_loaded:
            if settings.compare_base:
                base = score_model(base_loaded, plan.examples, plan.metrics, budget, batch, length, plan.classification)
            if plan.probe_examples:
                probe_before = score_model(base_loaded, plan.probe_examples, probe_metrics, probe_budget, batch, length)

    result: dict[str, Any] = {
        "target": settings.target,
        "data": str(settings.data),
        "rows": len(plan.examples),
        "task_shape": plan.shape,
        "metrics": [m.name for m in plan.metrics],
        "metric_descriptions": {m.name: m.description for m in plan.metrics},
        "primary_metric": plan.primary,
        "settings": {
            "greedy": True,
            "max_new_tokens": budget,
            "batch_size": batch,
            "max_length": length,
            "json_schema": str(settings.json_schema) if settings.json_schema else None,
            "metric_fn": settings.metric_fn,
        },
        "random_init": loaded.random_init,
        "model": model.summary(),
        "base": base.summary() if base else None,
    }
    if loaded.random_init:
        result["note"] = RANDOM_LABEL
    if base is not None:
        result["comparison"] = _changes(
            base.totals | {"loss": base.loss, "perplexity": base.perplexity},
            model.totals | {"loss": model.loss, "perplexity": model.perplexity},
        )
        result["row_changes"] = _row_changes(model, base, plan.primary, plan.examples)
    if probe_after is not None:
        probe: dict[str, Any] = {
            "data": str(plan.probe_path),
            "rows": len(plan.probe_examples),
            "model": probe_after.summary(),
        }
        if probe_before is not None:
            probe["base"] = probe_before.summary()
            probe |= _forgetting_verdict(probe_before, probe_after)
        result["probe"] = probe

    out = plan.out_dir
    write_text(out / "predictions.jsonl", _prediction_rows(plan.examples, model, base, plan.shape))
    if probe_after is not None:
        write_text(
            out / "probe_predictions.jsonl", _prediction_rows(plan.probe_examples, probe_after, probe_before, "text")
        )
    write_json(out / "eval.json", result)
    _print_results(console, result, settings, model, base, probe_after, probe_before)
    if loaded.random_init:
        console.print(f"[yellow]{RANDOM_LABEL}[/yellow]")
    console.print(f"Results: {out / 'eval.json'}  ·  answers: {out / 'predictions.jsonl'}")
    return result


def _print_results(
    console: Console,
    result: dict,
    settings: EvalSettings,
    model: ModelScores,
    base: ModelScores | None,
    probe_after: ModelScores | None,
    probe_before: ModelScores | None,
) -> None:
    _print_scores(console, f"{settings.data}: {result['rows']} rows", model, base)
    if model.confusion is not None:
        _print_confusion(console, model.confusion)
    if base is not None:
        _print_row_changes(console, result["row_changes"])
    if probe_after is not None:
        _print_scores(console, f"General-ability probe ({result['probe']['rows']} rows)", probe_after, probe_before)
        if "verdict" in result["probe"]:
            colour = "yellow" if result["probe"]["forgetting"] else "green"
            console.print(f"[{colour}]Probe: {escape(result['probe']['verdict'])}[/{colour}]")


def _print_confusion(console: Console, confusion: dict) -> None:
    table = Table(title="Confusion matrix (rows: reference, columns: prediction)")
    table.add_column("")
    for col in confusion["columns"]:
        table.add_column(escape(col), justify="right")
    for name, counts in zip(confusion["labels"], confusion["matrix"], strict=True):
        table.add_row(escape(name), *map(str, counts))
    console.print(table)
