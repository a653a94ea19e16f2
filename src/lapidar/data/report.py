"""Show a data-quality `Report`: rich tables in the terminal, or one self-contained HTML page."""

from __future__ import annotations

import jinja2
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lapidar.data.quality import Report

__all__ = ["print_report", "render_html"]

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _verdict(report: Report) -> str:
    n = {s: sum(f.severity == s for f in report.findings) for s in _STYLE}
    plural = {s: "" if k == 1 else "s" for s, k in n.items()}
    counts = f"{n['error']} error{plural['error']}, {n['warning']} warning{plural['warning']}, {n['info']} note{plural['info']}"
    if report.usable:
        return f"usable for training ({counts})"
    return f"NOT usable for training ({counts}): fix the errors and check again"


def print_report(console: Console, report: Report) -> None:
    """Print the report: summary, token lengths, findings, verdict."""
    head = Table(title=f"Data check: {report.path}", show_header=False, title_justify="left")
    head.add_row("rows", f"{report.rows}")
    head.add_row("format", f"{report.fmt} ({report.kind}) — {report.reason}")
    if report.val_path:
        head.add_row("validation", f"{report.val_path} ({report.val_rows} rows)")
    if report.languages:
        head.add_row(
            "languages", ", ".join(f"{k} {v}" for k, v in sorted(report.languages.items(), key=lambda kv: -kv[1]))
        )
    if report.labels:
        head.add_row("labels", ", ".join(f"{k!r} {v}" for k, v in sorted(report.labels.items(), key=lambda kv: -kv[1])))
    console.print(head)

    t = report.tokens
    lengths = Table(title=f"Tokens per row (Qwen2.5 tokenizer and chat template; max_length={report.max_length})")
    for col in ("min", "median", "p90", "p99", "max", "mean", "over max_length", "answer cut", "answer lost"):
        lengths.add_column(col, justify="right")
    keys = ("min", "median", "p90", "p99", "max", "mean", "over_max_length", "answer_cut", "answer_lost")
    lengths.add_row(*(str(t[k]) for k in keys))
    console.print(lengths)
    if report.histogram:
        top = max(n for _, n in report.histogram)
        hist = Table(show_header=True, box=None)
        hist.add_column("tokens", justify="right")
        hist.add_column("rows", justify="right")
        hist.add_column("")
        for label, n in report.histogram:
            hist.add_row(label, str(n), "█" * max(1 if n else 0, round(30 * n / top)))
        console.print(hist)

    if report.findings:
        table = Table(title="Findings", show_lines=True)
        for col in ("severity", "finding", "rows", "first rows", "fix"):
            table.add_column(col, overflow="fold")
        for f in report.findings:
            first = ", ".join(f.rows) + (" …" if f.count > len(f.rows) else "")
            what = escape(f.title) + "".join(f"\n  [dim]{escape(d)}[/dim]" for d in f.details[:3])
            table.add_row(f"[{_STYLE[f.severity]}]{f.severity}[/]", what, str(f.count), escape(first), escape(f.fix))
        console.print(table)
    else:
        console.print("[green]No findings.[/green]")
    style = "bold green" if report.usable else "bold red"
    console.print(f"[{style}]{escape(_verdict(report))}[/{style}]")


_TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Data check: {{ r.path }}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;width:100%}td,th{border:1px solid #ddd;padding:.35em .6em;
vertical-align:top;text-align:left}th{background:#f5f5f5}.error{color:#b00020;font-weight:bold}
.warning{color:#a06000}.info{color:#00639b}.bar{background:#4a7bd0;height:.9em;display:inline-block}
.details{color:#666;font-size:.9em;margin:.3em 0 0 1em}.verdict{font-size:1.2em;font-weight:bold}
.ok{color:#1b7f3b}.bad{color:#b00020}code{background:#f3f3f3;padding:0 .2em}
</style></head><body>
<h1>Data check</h1>
<p class="verdict {{ 'ok' if r.usable else 'bad' }}">{{ verdict }}</p>
<table>
<tr><th>file</th><td>{{ r.path }}</td></tr>
<tr><th>rows</th><td>{{ r.rows }}</td></tr>
<tr><th>format</th><td>{{ r.fmt }} ({{ r.kind }}) — {{ r.reason }}</td></tr>
{% if r.val_path %}<tr><th>validation</th><td>{{ r.val_path }} ({{ r.val_rows }} rows)</td></tr>{% endif %}
{% if r.languages %}<tr><th>languages</th><td>{% for k, v in r.languages|dictsort(by='value', reverse=true) %}{{ k }} {{ v }}{{ ', ' if not loop.last }}{% endfor %}</td></tr>{% endif %}
{% if r.labels %}<tr><th>labels</th><td>{% for k, v in r.labels|dictsort(by='value', reverse=true) %}“{{ k }}” {{ v }}{{ ', ' if not loop.last }}{% endfor %}</td></tr>{% endif %}
</table>
<h2>Tokens per row</h2>
<p>Qwen2.5 tokenizer and chat template; max_length = {{ r.max_length }}.</p>
<table><tr>{% for k in ['min','median','p90','p99','max','mean','over_max_length','answer_cut','answer_lost'] %}<th>{{ k|replace('_',' ') }}</th>{% endfor %}</tr>
<tr>{% for k in ['min','median','p90','p99','max','mean','over_max_length','answer_cut','answer_lost'] %}<td>{{ r.tokens[k] }}</td>{% endfor %}</tr></table>
<table><tr><th>tokens</th><th>rows</th><th style="width:60%"></th></tr>
{% for label, n in r.histogram %}<tr><td>{{ label }}</td><td>{{ n }}</td><td><span class="bar" style="width:{{ (100 * n / top)|round(1) }}%"></span></td></tr>
{% endfor %}</table>
<h2>Findings</h2>
{% if r.findings %}<table><tr><th>severity</th><th>finding</th><th>rows</th><th>first rows</th><th>fix</th></tr>
{% for f in r.findings %}<tr><td class="{{ f.severity }}">{{ f.severity }}</td><td>{{ f.title }}
{% if f.details %}<div class="details">{% for d in f.details %}{{ d }}<br>{% endfor %}</div>{% endif %}</td>
<td>{{ f.count }}</td><td>{{ f.rows|join(', ') }}{{ ' …' if f.count > f.rows|length }}</td><td>{{ f.fix }}</td></tr>
{% endfor %}</table>{% else %}<p class="ok">No findings.</p>{% endif %}
</body></html>
"""
)


def render_html(report: Report) -> str:
    """One self-contained HTML page (no scripts, no external files)."""
    top = max([n for _, n in report.histogram] or [1])
    return _TEMPLATE.render(r=report, verdict=_verdict(report), top=top)
