"""`lapidar report RUN_DIR`: one self-contained HTML page about a run (opens offline: no scripts, no links out;
charts are PNGs embedded as base64), plus `metrics.png`, the curves of the generation metrics.

Sections: diagnosis, key numbers, curves (loss, learning rate, throughput, generation metrics), evaluation
(before/after table, probe, confusion matrix, sample answers) when eval/eval.json exists, data and config.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from lapidar.errors import UserError
from lapidar.evaluation.diagnosis import Finding, RunRecords, diagnose, read_run
from lapidar.io import write_text

__all__ = ["plot_generation_metrics", "write_report"]


# ---------------------------------------------------------------- charts


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _pyplot().close(fig)
    return buf.getvalue()


def _finite(series: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    return [(s, v) for s, v in series if math.isfinite(v)]


def _line_chart(
    series: dict[str, list[tuple[int, float]]], ylabel: str, title: str, marks: dict | None = None
) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=100)
    for name, points in series.items():
        points = _finite(points)
        if points:
            style = "o-" if name.startswith("validation") else "-"
            ax.plot(*zip(*points, strict=True), style, label=name, markersize=3)
    left, right = ax.get_xlim()
    for step, text in (marks or {}).items():
        ax.axvline(step, color="#999", linestyle="--", linewidth=1)
        # in the right half of the chart the label goes left of its line, or it runs past the axes
        ha = "right" if step > (left + right) / 2 else "left"
        ax.annotate(text, (step, ax.get_ylim()[1]), fontsize=8, ha=ha, va="top", color="#555")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _generation_chart(generation: dict[str, list[tuple[int, float]]]) -> bytes | None:
    series = {k: _finite(v) for k, v in generation.items() if _finite(v)}
    if not series:
        return None
    plt = _pyplot()
    cols = min(3, len(series))
    rows = math.ceil(len(series) / cols)
    # at least 7 inches wide (as wide as the loss chart): narrower, the suptitle is cut off on both sides
    fig, axes = plt.subplots(rows, cols, figsize=(max(7.0, 3.3 * cols), 2.6 * rows), dpi=100, squeeze=False)
    for ax, (name, points) in zip(axes.flat, series.items(), strict=False):
        ax.plot(*zip(*points, strict=True), "o-", markersize=3, color="#2ca02c")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(series) :]:
        ax.axis("off")
    fig.suptitle("validation metrics besides loss (generation metrics, reward accuracy...)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def plot_generation_metrics(run_dir: Path) -> Path | None:
    """Write RUN_DIR/metrics.png: one small chart per validation metric other than the loss in metrics.jsonl
    (`val_<name>`: generation metrics such as val_accuracy, a preference run's val_reward_accuracy).

    Returns the path, or None when no such metric was logged."""
    png = _generation_chart(read_run(run_dir).generation)
    if png is None:
        return None
    out = run_dir / "metrics.png"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(png)
    tmp.replace(out)
    return out


# ---------------------------------------------------------------- HTML pieces


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return _e(value if value is not None else "-")
    if isinstance(value, float):
        if not math.isfinite(value):
            return _e(value)
        return f"{value:.4g}" if abs(value) >= 1e6 or (value and abs(value) < 1e-3) else f"{value:,.{digits}f}"
    return _e(f"{value:,}" if isinstance(value, int) else value)


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None, raw: bool = False) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{c if raw else _e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _findings_html(findings: list[Finding]) -> str:
    items = []
    for f in findings:
        step = f" <span class=step>step {f.step}</span>" if f.step is not None else ""
        items.append(
            f'<div class="finding {f.severity}"><div class=title><span class=sev>{_e(f.severity)}</span> '
            f"{_e(f.title)}{step}</div><div>{_e(f.evidence)}</div><div class=sugg>→ {_e(f.suggestion)}</div></div>"
        )
    return "".join(items) or "<p>Nothing to report.</p>"


_KEY_NUMBERS = (
    "model",
    "method",
    "steps",
    "epochs",
    "tokens_seen",
    "initial_val_loss",
    "best_val_loss",
    "best_step",
    "final_val_loss",
    "final_train_loss",
    "stop_reason",
    "saved_from_step",
    "wall_time_s",
    "tokens_per_s",
    "peak_memory_mib",
    "precision",
    "device",
)


def _data_summary(r: RunRecords) -> str:
    from lapidar.data.formats import bundled_example, load_examples

    s, cfg = r.summary or {}, r.config
    rows: list[list[Any]] = [
        ["format", s.get("data_format", "-")],
        ["training rows (after encoding)", s.get("train_rows", "-")],
        ["validation rows", s.get("val_rows", "-")],
        ["max_length (tokens)", cfg.get("max_length", "-")],
        ["tokens seen in training", _num(s.get("tokens_seen"))],
    ]
    files: list[tuple[str, Path]] = []
    data = cfg.get("data")
    if isinstance(data, str) and data.startswith("example:"):
        try:
            train, val = bundled_example(data.removeprefix("example:"))
            files += [("training file", train), ("validation file", val)]
        except UserError:
            pass
    elif data:
        files.append(("training file", Path(data)))
    if cfg.get("val_data"):
        files = [f for f in files if f[0] != "validation file"] + [("validation file", Path(cfg["val_data"]))]
    for what, path in files:
        try:
            examples, _ = load_examples(path)
        except UserError:
            rows.append([what, f"{path} (no longer readable)"])
            continue
        answers = [len(ex.messages[-1]["content"].split()) for ex in examples]
        prompts = [sum(len(m["content"].split()) for m in ex.messages[:-1]) for ex in examples]
        rows.append(
            [
                what,
                f"{path}: {len(examples)} rows; prompt words mean {sum(prompts) / len(prompts):.1f} / max "
                f"{max(prompts)}; answer words mean {sum(answers) / len(answers):.1f} / max {max(answers)}",
            ]
        )
    return _table(rows)


def _better_sign(metric: str) -> int:
    """+1 when a higher value of `metric` is better, -1 when lower is (loss, perplexity), 0 when neither (answer
    length). Metrics outside the registry (--json-schema, custom functions) are scores: higher is better."""
    from lapidar.evaluation.metrics import METRICS

    if metric in ("loss", "perplexity"):
        return -1
    known = METRICS.get(metric)
    higher = known.higher_is_better if known is not None else True
    return 0 if higher is None else (1 if higher else -1)


def _eval_html(ev: dict, run_dir: Path) -> str:
    parts = [
        f"<p>{_e(ev.get('rows'))} rows of <code>{_e(ev.get('data'))}</code> ({_e(ev.get('task_shape'))} answers), "
        f"greedy, up to {_e(ev.get('settings', {}).get('max_new_tokens'))} new tokens. Headline metric: "
        f"<b>{_e(ev.get('primary_metric'))}</b>.</p>"
    ]
    model, base = ev.get("model") or {}, ev.get("base")
    names = [*ev.get("metrics", []), "loss", "perplexity"]

    def value(side: dict, name: str) -> Any:
        return side.get("scores", {}).get(name, side.get(name))

    if base:
        rows = []
        for n in names:
            b, m = value(base, n), value(model, n)
            change = m - b if isinstance(m, int | float) and isinstance(b, int | float) else None
            sign = 0 if change is None or abs(change) < 1e-12 else _better_sign(n) * (1 if change > 0 else -1)
            cls = {1: "better", -1: "worse"}.get(sign, "")
            rows.append(
                [_e(n), _num(b), _num(m), f"<span class={cls}>{'-' if change is None else f'{change:+.4g}'}</span>"]
            )
        parts.append("<h3>Before / after</h3>" + _table(rows, ["metric", "base", "fine-tuned", "change"], raw=True))
    else:
        parts.append(_table([[n, _num(value(model, n))] for n in names], ["metric", "model"]))
    probe = ev.get("probe")
    if probe:
        rows = []
        for n in [*probe.get("model", {}).get("scores", {}), "loss"]:
            rows.append([n, _num(value(probe.get("base") or {}, n)), _num(value(probe["model"], n))])
        parts.append(
            f"<h3>General-ability probe ({_e(probe.get('rows'))} rows)</h3>"
            + _table(rows, ["metric", "base", "fine-tuned"])
            + (f"<p>{_e(probe['verdict'])}</p>" if probe.get("verdict") else "")
        )
    confusion = model.get("confusion_matrix")
    if confusion:
        rows = [[lab, *counts] for lab, counts in zip(confusion["labels"], confusion["matrix"], strict=True)]
        parts.append(
            "<h3>Confusion matrix (rows: reference, columns: prediction)</h3>"
            + _table(rows, ["", *confusion["columns"]])
        )
    parts.append(_samples_html(run_dir / "eval" / "predictions.jsonl", ev))
    return "".join(parts)


def _samples_html(path: Path, ev: dict, n: int = 8) -> str:
    if not path.is_file():
        return ""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    changes = ev.get("row_changes") or {}
    picked = [e["index"] for e in changes.get("worse", [])[:3]] + [e["index"] for e in changes.get("better", [])[:3]]
    picked += [r["index"] for r in rows if r["index"] not in picked][: max(0, n - len(picked))]
    by_index = {r["index"]: r for r in rows}
    primary = ev.get("primary_metric", "")
    table = []
    for i in picked:
        r = by_index[i]
        prompt = r["prompt"][-1]["content"] if r["prompt"] else ""
        stop = "" if r["stopped_at_eos"] else " ⟂ (cut at the token limit)"
        base = r.get("base")
        table.append(
            [
                _e(prompt),
                _e(r["reference"]),
                _e(base["prediction"]) + f"<br><small>{_e(primary)} {_num(base['scores'].get(primary), 2)}</small>"
                if base
                else "",
                _e(r["prediction"] + stop) + f"<br><small>{_e(primary)} {_num(r['scores'].get(primary), 2)}</small>",
            ]
        )
    header = ["prompt (last message)", "reference", "base answer", "fine-tuned answer"]
    if not any(by_index[i].get("base") for i in picked):
        header, table = [*header[:2], "answer"], [[row[0], row[1], row[3]] for row in table]
    return "<h3>Sample answers</h3>" + _table(table, header, raw=True)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1050px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.4}
h1{font-size:1.5em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f4f4f4}
img{max-width:100%;display:block;margin:.5em 0}
.finding{border-left:5px solid #999;padding:.4em .8em;margin:.5em 0;background:#fafafa}
.finding .title{font-weight:600}.finding .sugg{color:#444;margin-top:.2em}
.finding .sev{text-transform:uppercase;font-size:.75em;letter-spacing:.05em;margin-right:.4em}
.problem{border-color:#d62728}.warning{border-color:#e6a100}.info{border-color:#1f77b4}.good{border-color:#2ca02c}
.step{font-weight:400;color:#666;font-size:.85em}.better{color:#2ca02c}.worse{color:#d62728}
.random{background:#fff3cd;border:1px solid #e6a100;padding:.5em .8em}code{background:#f4f4f4;padding:0 .2em}
"""


def write_report(run_dir: Path | str) -> Path:
    """Write RUN_DIR/report.html (and metrics.png when generation metrics were logged); returns the HTML path."""
    run_dir = Path(run_dir)
    r = read_run(run_dir)
    findings = diagnose(run_dir)
    summary, cfg = r.summary or {}, r.config
    overfit = next((f.step for f in findings if f.code == "overfitting"), None)
    best = summary.get("best_step")
    marks = {best: f" best (step {best})"} if best is not None else {}
    if overfit is not None and overfit != best:
        marks[overfit] = f" overfitting from {overfit}"
    loss_png = _line_chart(
        {"training loss": r.train, "validation loss": r.val}, "cross-entropy (nats/token)", "loss", marks
    )
    lr_png = _line_chart({"learning rate": r.lr}, "learning rate", "learning-rate schedule") if r.lr else None
    tps_png = _line_chart({"tokens/s": r.throughput}, "tokens per second", "throughput") if r.throughput else None
    gen_png = _generation_chart(r.generation)
    if gen_png is not None:
        plot_generation_metrics(run_dir)

    title = f"lapidar run {run_dir.name}"
    random = (
        "<p class=random><b>RANDOMLY INITIALISED base weights.</b> Every answer and number here comes from a "
        "random model: they show the pipeline works, not what a real model would do.</p>"
        if summary.get("random_init")
        else ""
    )
    key_rows = [[k.replace("_", " "), _num(summary[k], 4 if "loss" in k else 1)] for k in _KEY_NUMBERS if k in summary]
    if r.summary is None:
        key_rows = [["status", "the run did not finish (no summary.json)"]]
    sections = [
        f"<h1>{_e(title)}</h1><p>Generated {datetime.now():%Y-%m-%d %H:%M} from <code>{_e(run_dir)}</code>.</p>",
        random,
        "<h2>Diagnosis</h2>" + _findings_html(findings),
        "<h2>Key numbers</h2>" + _table(key_rows, raw=True),
        "<h2>Curves</h2>" + _img(loss_png, "loss curves") + _img(lr_png, "learning rate") + _img(tps_png, "throughput"),
    ]
    if gen_png is not None:
        sections.append("<h2>Validation metrics during training</h2>" + _img(gen_png, "validation metrics"))
    if r.eval is not None:
        sections.append("<h2>Evaluation</h2>" + _eval_html(r.eval, run_dir))
    else:
        sections.append(
            "<h2>Evaluation</h2><p>No evaluation yet: run <code>lapidar eval "
            f"{_e(run_dir)} --data TEST_FILE --compare-base</code> and then this report again to add a before/after "
            "table and sample answers.</p>"
        )
    sections.append("<h2>Data</h2>" + _data_summary(r))
    sections.append("<h2>Config</h2>" + _table([[k, json.dumps(v)] for k, v in cfg.items()], ["key", "value"]))
    page = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(sections)}</body></html>\n"
    )
    out = run_dir / "report.html"
    write_text(out, page)
    return out
